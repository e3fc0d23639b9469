"""Pair-debugging: ask support for help from JupyterLab, and the ``help`` hub service.

- :mod:`.service` (``python -m extensions.help``): the hub service named ``help`` that
  ``workbench up`` starts: help requests, the support list with **Join**, the expiry timer;
- a Jupyter server extension (:mod:`.handlers`), enabled in every session of this
  environment: ``{base_url}workbench/help`` forwards the session owner's calls to the help
  service with the server's own token (never a helper's: they get 403);
- a prebuilt JupyterLab extension (``labextension/``, source in ``js/``, rebuilt with
  ``js/build.sh``): the **Ask for help** command, toolbar and status-bar button, the form,
  who has access and **Stop sharing**.
"""


def _jupyter_server_extension_points():
    return [{"module": "extensions.help"}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "@aifactory/workbench-help"}]


def _load_jupyter_server_extension(serverapp):
    from .handlers import setup_handlers

    setup_handlers(serverapp)
