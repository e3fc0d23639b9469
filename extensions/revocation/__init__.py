"""Revocation in seconds for shared notebook servers (pair-debugging).

The hub refuses a revoked share at once, but a single-user server caches the hub's answer
per token for ``HubAuth.cache_max_age`` (300 s) and never re-checks open websockets
(kernels, terminals, the collaboration document: jupyter-collaboration #434). This server
extension, enabled in every session of this environment, makes a revoked helper's next
HTTP request and open websockets fail within a few seconds (:mod:`.guard`), while the
owner's requests keep the cache.

It guards from the first request: it is installed while the server loads its extensions,
before it listens. Only the server of a hub's session has anything to guard (its identity
provider holds the hub's ``HubOAuth``, so ``jupyterhub.services.auth`` is imported already);
any other server (``jupyter server`` on a laptop, the benchmark's floor) skips it without
importing :mod:`.guard`, which pulls in JupyterHub's scopes and ORM (0.35-0.6 s of start here).
"""


def _jupyter_server_extension_points():
    return [{"module": "extensions.revocation"}]


def _load_jupyter_server_extension(serverapp):
    if getattr(serverapp.identity_provider, "hub_auth", None) is None:
        serverapp.log.info("revocation guard: not a JupyterHub server, nothing to do")
        return
    from .guard import RevocationGuard

    RevocationGuard(parent=serverapp).install(serverapp)
