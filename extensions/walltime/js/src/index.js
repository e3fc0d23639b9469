// The walltime of the Slurm job behind this JupyterLab, from the single-user server's
// /workbench/walltime (extensions/walltime/handlers.py, which asks the hub):
// - the status bar shows the time left, in the warning colour near the end;
// - once the time left drops under the hub's warning threshold, a notification says when the
//   session ends and offers to extend it;
// - a click on the status bar item opens a popup: the time left, what the session has used
//   so far of what it holds (CPU, peak memory, GPUs: the hub's figures from sstat and the
//   job's own GPU samples, "not measured" where there are none) and the buttons to extend;
// - an extension the hub refuses says why (partition limit, GPU-hours left).
// Outside a workbench session (no Slurm job behind the server) nothing is shown.
import { Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar, showPopup } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

const PLUGIN_ID = '@aifactory/workbench-walltime:plugin';
const REFRESH_MS = 30000;

function hoursMinutes(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : `${m} min`;
}

function gb(bytes) {
  const v = bytes / 1073741824;
  return `${v < 10 ? v.toFixed(1).replace(/\.0$/, '') : Math.round(v)} GB`;
}

// The figures so far, one line each, as the hub gives them (workbench.efficiency.so_far);
// null figures are "not measured", never a number made up.
function usageLines(u, error) {
  if (!u) {
    return [error || 'What this session used so far is not known yet.'];
  }
  const cpu =
    u.cpu_efficiency === null
      ? 'not measured yet'
      : `${Math.round(u.cpu_efficiency * 100)} % of ${u.cpus} CPU${u.cpus === 1 ? '' : 's'}`;
  let mem = u.peak_memory_bytes === null ? 'not measured yet' : gb(u.peak_memory_bytes);
  if (u.peak_memory_bytes !== null && u.requested_memory_bytes) {
    mem += ` of ${gb(u.requested_memory_bytes)}`;
  }
  const lines = [`CPU use so far: ${cpu}`, `Peak memory so far: ${mem}`];
  if (u.gpus_held) {
    lines.push(
      u.gpu_util_pct === null
        ? `GPUs: ${u.gpus_held} held, use not measured (no nvidia-smi samples on this node)`
        : `GPUs: ${u.gpus_used} of ${u.gpus_held} busy, ${Math.round(u.gpu_util_pct)} % on average`
    );
  }
  if (u.advice) {
    lines.push(`Advice: ${u.advice}`);
  }
  return lines;
}

function extendChoices(room) {
  return [30, 60, 120].filter(m => room === null || m <= room);
}

function extendLabel(m) {
  return m < 60 ? `+${m} min` : `+${m / 60} h`;
}

async function call(method, body) {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'workbench', 'walltime');
  const init = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (err) {
    return { ok: false, status: 0, data: { message: `The server did not answer: ${err}` } };
  }
  let data = {};
  try {
    data = await response.json();
  } catch (err) {
    data = {};
  }
  return { ok: response.ok, status: response.status, data };
}

class WalltimeItem extends Widget {
  constructor() {
    super();
    this.id = 'wb-walltime';
    this.addClass('jp-StatusBar-TextItem');
    this.node.title =
      'Walltime of this session (its Slurm job). Click for what it used so far and more time.';
    this.state = null;
    this.warned = false;
    this.offer = null; // the notification offering more time, dismissed once extended
    this.popup = null;
    this.hide();
    this.node.addEventListener('click', () => {
      if (this.state) {
        this.openPopup();
      }
    });
  }

  // The popup above the status bar item: time left, figures so far, extend buttons.
  openPopup() {
    if (this.popup && !this.popup.isDisposed) {
      this.popup.dispose();
    }
    const s = this.state;
    const body = new Widget();
    body.addClass('wb-walltime-popup');
    const add = (tag, text, cls) => {
      const el = document.createElement(tag);
      el.textContent = text;
      if (cls) {
        el.className = cls;
      }
      body.node.appendChild(el);
      return el;
    };
    add(
      'div',
      `${hoursMinutes(s.remaining_s)} left: job ${s.job_id} ends at ` +
        `${new Date(s.end).toLocaleTimeString()}.`,
      'wb-walltime-left'
    );
    const figures = add('ul', '', 'wb-walltime-usage');
    for (const line of usageLines(s.usage, s.usage_error)) {
      const li = document.createElement('li');
      li.textContent = line;
      figures.appendChild(li);
    }
    const room = s.can_extend_min;
    const buttons = add('div', '', 'wb-walltime-extend');
    const choices = extendChoices(room);
    if (choices.length === 0) {
      add('div', 'The partition allows no more time for this session.');
    }
    for (const m of choices) {
      const b = document.createElement('button');
      b.className = 'jp-Button jp-mod-styled jp-mod-accept';
      b.textContent = extendLabel(m);
      b.title = `Extend the walltime by ${m} minutes`;
      b.addEventListener('click', () => {
        this.popup.dispose();
        this.extend(m);
      });
      buttons.appendChild(b);
    }
    this.popup = showPopup({ body, anchor: this, align: 'left' });
  }

  show_(state) {
    this.state = state;
    const warn = state.remaining_s < state.warn_s;
    this.node.textContent = `Walltime: ${hoursMinutes(state.remaining_s)} left`;
    this.toggleClass('wb-walltime-warn', warn);
    this.show();
    if (warn && !this.warned) {
      this.warned = true;
      this.offerMore(true);
    } else if (!warn) {
      this.warned = false;
    }
  }

  async refresh() {
    const res = await call('GET');
    if (res.ok && res.data.running) {
      this.show_(res.data);
    } else {
      this.state = null;
      this.hide();
    }
  }

  offerMore(warning) {
    const s = this.state;
    const end = new Date(s.end).toLocaleTimeString();
    const room = s.can_extend_min;
    const text =
      (warning ? 'Your session ends soon: ' : 'This session has ') +
      `${hoursMinutes(s.remaining_s)} left (job ${s.job_id}, ends at ${end}). ` +
      (warning ? 'Save your work, or ask for more time.' : 'Ask for more time?') +
      (room !== null ? ` Up to ${room} more minutes are possible.` : '');
    const actions = extendChoices(room).map(m => ({
      label: extendLabel(m),
      caption: `Extend the walltime by ${m} minutes`,
      callback: () => this.extend(m)
    }));
    const show = warning ? Notification.warning : Notification.info;
    if (this.offer) {
      Notification.dismiss(this.offer);
    }
    this.offer = show(text, { autoClose: false, actions });
  }

  async extend(minutes) {
    const res = await call('POST', { minutes });
    if (res.ok && res.data.running) {
      if (this.offer) {
        Notification.dismiss(this.offer);
        this.offer = null;
      }
      this.warned = false;
      // the extension's answer has no figures: the ones read last stay until the next refresh
      this.show_({ usage: this.state.usage, usage_error: this.state.usage_error, ...res.data });
      Notification.success(
        `Extended by ${minutes} minutes: ${hoursMinutes(res.data.remaining_s)} left.`,
        { autoClose: 10000 }
      );
    } else {
      Notification.error(
        res.data.message || `The hub did not extend the session (HTTP ${res.status}).`,
        { autoClose: false }
      );
    }
  }
}

const plugin = {
  id: PLUGIN_ID,
  description: 'Walltime left, a warning before the end, and asking for more time.',
  autoStart: true,
  optional: [IStatusBar],
  activate: (app, statusBar) => {
    const item = new WalltimeItem();
    if (statusBar) {
      statusBar.registerStatusItem(PLUGIN_ID, { item, align: 'left', rank: 1000 });
    }
    item.refresh();
    setInterval(() => item.refresh(), REFRESH_MS);
  }
};

export default plugin;
