// Ask for help from JupyterLab (pair-debugging), through the single-user server's
// /workbench/help (extensions/help/handlers.py, which asks the help service):
// - the "Ask for help" command (palette, notebook toolbar button, status bar item) opens a
//   short form: what is wrong, which notebook, how long support may have access;
// - once asked, the status bar says who has access and for how long; a click shows them and
//   offers "Stop sharing";
// - when the share ends (stopped, expired, closed by support) a notification says so;
// - while the help service does not answer, the status bar says so and the command shows
//   the server's message ("The help service is not answering ...; try again in a minute")
//   instead of a form that cannot be sent.
// Only the server's owner gets any of this: a helper in a shared JupyterLab sees nothing.
import { Dialog, Notification, ToolbarButton, showDialog } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

const PLUGIN_ID = '@aifactory/workbench-help:plugin';
const COMMAND = 'workbench-help:ask';
const REFRESH_MS = 5000;
const MINUTES = [30, 60, 120, 240, 480];
// answers that mean the help service (or the way to it) is down, not "not yours"
const DOWN = [0, 502, 503, 504];

async function call(method, path, body) {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'workbench', 'help', path || '');
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
  if (!response.ok && !(data && data.message)) {
    // not JSON (a proxy's page) or no message: say what happened, never show the page
    data = {
      message: `The help service is not answering (HTTP ${response.status}); try again in a minute.`
    };
  }
  return { ok: response.ok, status: response.status, data };
}

function minutesText(m) {
  return m < 60 ? `${m} min` : `${m / 60} h`;
}

function timeLeft(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.ceil((seconds % 3600) / 60);
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : `${m} min`;
}

function element(tag, props, children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  (children || []).forEach(c => node.appendChild(c));
  return node;
}

// The form: what is wrong, which notebook, how long (30 min to 8 h, default 2 h).
class HelpForm extends Widget {
  constructor(notebook) {
    const message = element('textarea', {
      id: 'wb-help-message',
      placeholder: 'What is wrong? e.g. "CUDA out of memory in cell 4 on the GPU node"'
    });
    const path = element('input', { id: 'wb-help-notebook', type: 'text', value: notebook });
    const minutes = element('select', { id: 'wb-help-minutes' });
    MINUTES.forEach(m => {
      minutes.appendChild(
        element('option', { value: String(m), textContent: minutesText(m), selected: m === 120 })
      );
    });
    const form = element('div', { className: 'wb-help-form' }, [
      element('p', {
        textContent:
          'Support engineers will see your message, your job and the end of its output. ' +
          'The one who joins can open this server (this one only) until the time is up ' +
          'or you stop sharing.'
      }),
      element('label', { htmlFor: 'wb-help-message', textContent: 'What is wrong' }),
      message,
      element('label', { htmlFor: 'wb-help-notebook', textContent: 'Notebook' }),
      path,
      element('label', { htmlFor: 'wb-help-minutes', textContent: 'Support may have access for' }),
      minutes
    ]);
    super({ node: form });
    this.fields = { message, path, minutes };
  }

  getValue() {
    return {
      message: this.fields.message.value,
      notebook: this.fields.path.value,
      minutes: Number(this.fields.minutes.value)
    };
  }
}

// The status bar item: "Ask for help", or who has access and how long.
class HelpItem extends Widget {
  constructor(app, tracker) {
    super();
    this.app = app;
    this.tracker = tracker;
    this.id = 'wb-help';
    this.addClass('jp-StatusBar-TextItem');
    this.state = null;
    this.openRequest = null;
    this.unavailable = null; // the message while the help service does not answer
    this.pending = null;
    this.hide();
    this.node.addEventListener('click', () => {
      if (this.openRequest && !this.unavailable) {
        this.showAccess();
      } else {
        this.app.commands.execute(COMMAND);
      }
    });
  }

  get available() {
    return this.state !== null || this.unavailable !== null;
  }

  // one refresh at a time: a slow answer is shared by whoever asks meanwhile
  refresh() {
    if (!this.pending) {
      this.pending = this.load().finally(() => {
        this.pending = null;
      });
    }
    return this.pending;
  }

  async load() {
    const res = await call('GET');
    if (!res.ok && DOWN.includes(res.status)) {
      this.unavailable = res.data.message;
      this.node.textContent = 'Help: not available now';
      this.node.title = this.unavailable;
      this.show();
      return;
    }
    this.unavailable = null;
    if (!res.ok) {
      this.state = null; // not the owner, or no help service: nothing to offer
      this.hide();
      return;
    }
    const before = this.openRequest;
    this.state = res.data;
    this.openRequest = res.data.requests.find(r => r.state === 'open') || null;
    if (before && !this.openRequest) {
      const ended = res.data.requests.find(r => r.id === before.id);
      const how = ended ? ended.state : 'ended';
      Notification.info(`Sharing ended (${how}): support can no longer open this server.`, {
        autoClose: 10000
      });
    }
    const names = res.data.access.map(a => (a.kind === 'group' ? `group ${a.name}` : a.name));
    if (this.openRequest) {
      const who = names.length ? `shared with ${names.join(', ')}` : 'waiting for support';
      this.node.textContent = `Help: ${who} (${timeLeft(this.openRequest.seconds_left)} left)`;
      this.node.title = 'Click to see who has access, or to stop sharing';
    } else {
      this.node.textContent = names.length ? `Shared with ${names.join(', ')}` : 'Ask for help';
      this.node.title = 'Ask support to look at this server with you';
    }
    this.toggleClass('wb-help-shared', names.length > 0);
    this.show();
  }

  currentNotebook() {
    const panel = this.tracker && this.tracker.currentWidget;
    return panel ? panel.context.path : '';
  }

  async ask() {
    await this.refresh();
    if (this.unavailable) {
      Notification.error(this.unavailable, { autoClose: 10000 });
      return;
    }
    if (this.openRequest) {
      return this.showAccess();
    }
    const result = await showDialog({
      title: 'Ask for help',
      body: new HelpForm(this.currentNotebook()),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Send' })]
    });
    if (!result.button.accept) {
      return;
    }
    const res = await call('POST', '', result.value);
    if (res.ok) {
      Notification.success(
        `Help request ${res.data.id} sent: support may join for ` +
          `${minutesText(res.data.minutes)}. Nobody has access until someone joins.`,
        { autoClose: 10000 }
      );
    } else {
      Notification.error(res.data.message || `Not sent (HTTP ${res.status}).`, {
        autoClose: false
      });
    }
    await this.refresh();
  }

  async showAccess() {
    const r = this.openRequest;
    const access = this.state.access;
    const list = element(
      'ul',
      { className: 'wb-help-access', id: 'wb-help-access' },
      access.length
        ? access.map(a =>
            element('li', {
              textContent: `${a.kind === 'group' ? 'group ' : ''}${a.name} (since ${new Date(
                a.created_at
              ).toLocaleTimeString()})`
            })
          )
        : [element('li', { textContent: 'Nobody yet: your request waits for support.' })]
    );
    const body = element('div', {}, [
      element('p', {
        textContent:
          `Help request ${r.id}: "${r.message}". ` +
          `${timeLeft(r.seconds_left)} left. Who can open this server now:`
      }),
      list
    ]);
    const result = await showDialog({
      title: 'Who has access',
      body: new Widget({ node: body }),
      buttons: [Dialog.cancelButton({ label: 'Close' }), Dialog.warnButton({ label: 'Stop sharing' })]
    });
    if (result.button.accept) {
      const res = await call('DELETE', String(r.id));
      if (res.ok) {
        Notification.success('Stopped sharing: nobody else can open this server.', {
          autoClose: 10000
        });
        this.openRequest = null;
      } else {
        Notification.error(res.data.message || `Not stopped (HTTP ${res.status}).`, {
          autoClose: false
        });
      }
      await this.refresh();
    }
  }
}

const plugin = {
  id: PLUGIN_ID,
  description: 'Ask for help: share this server with support for a while, and stop sharing.',
  autoStart: true,
  optional: [IStatusBar, ICommandPalette, INotebookTracker],
  activate: (app, statusBar, palette, tracker) => {
    const item = new HelpItem(app, tracker);
    app.commands.addCommand(COMMAND, {
      label: 'Ask for help',
      caption: 'Share this server with support for a while',
      isEnabled: () => item.available,
      execute: () => item.ask()
    });
    if (palette) {
      palette.addItem({ command: COMMAND, category: 'Help' });
    }
    if (statusBar) {
      statusBar.registerStatusItem(PLUGIN_ID, { item, align: 'left', rank: 1001 });
    }
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: panel => {
        const button = new ToolbarButton({
          className: 'wb-help-button',
          label: 'Ask for help',
          tooltip: 'Share this server with support for a while',
          onClick: () => app.commands.execute(COMMAND)
        });
        panel.toolbar.insertItem(10, 'workbench-help', button);
        return button;
      }
    });
    item.refresh();
    setInterval(() => item.refresh(), REFRESH_MS);
  }
};

export default plugin;
