"""Walltime in JupyterLab: the time left of the Slurm job behind a notebook server, a warning
before the end and asking the hub for more, inside JupyterLab itself.

Two halves, installed with the project and enabled in every server of its environment:

- a Jupyter server extension (:mod:`.handlers`): ``GET/POST {base_url}workbench/walltime``
  forwards to the hub's ``/hub/api/workbench/walltime/{user}/{server}`` with the server's own
  token (``SlurmGPUSpawner.server_token_scopes`` grants it that one server); outside a hub's
  session it answers 404 and JupyterLab shows nothing;
- a prebuilt JupyterLab extension (``labextension/``, source in ``js/``, rebuilt with
  ``js/build.sh``): the status bar item and the notifications.
"""


def _jupyter_server_extension_points():
    return [{"module": "extensions.walltime"}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "@aifactory/workbench-walltime"}]


def _load_jupyter_server_extension(serverapp):
    from .handlers import setup_handlers

    setup_handlers(serverapp)
