// The walltime of the Slurm job behind this JupyterLab, from the single-user server's
// /workbench/walltime (extensions/walltime/handlers.py, which asks the hub):
// - the status bar shows the time left, in the warning colour near the end;
// - once the time left drops under the hub's warning threshold, a notification says when the
//   session ends and offers to extend it; a click on the status bar item offers it any time;
// - an extension the hub refuses says why (partition limit, GPU-hours left).
// Outside a workbench session (no Slurm job behind the server) nothing is shown.
import { Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

const PLUGIN_ID = '@aifactory/workbench-walltime:plugin';
const REFRESH_MS = 30000;

function hoursMinutes(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : `${m} min`;
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
    this.node.title = 'Walltime of this session (its Slurm job). Click to ask for more time.';
    this.state = null;
    this.warned = false;
    this.offer = null; // the notification offering more time, dismissed once extended
    this.hide();
    this.node.addEventListener('click', () => {
      if (this.state) {
        this.offerMore(false);
      }
    });
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
    const actions = [30, 60, 120]
      .filter(m => room === null || m <= room)
      .map(m => ({
        label: m < 60 ? `+${m} min` : `+${m / 60} h`,
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
      this.show_(res.data);
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
