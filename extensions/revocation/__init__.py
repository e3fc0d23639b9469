"""Revocation in seconds for shared notebook servers (pair-debugging).

The hub refuses a revoked share at once, but a single-user server caches the hub's answer
per token for ``HubAuth.cache_max_age`` (300 s) and never re-checks open websockets
(kernels, terminals, the collaboration document: jupyter-collaboration #434). This server
extension, enabled in every session of this environment, makes a revoked helper's next
HTTP request and open websockets fail within a few seconds (:mod:`.guard`), while the
owner's requests keep the cache.
"""


def _jupyter_server_extension_points():
    return [{"module": "extensions.revocation"}]


def _load_jupyter_server_extension(serverapp):
    from .guard import RevocationGuard

    RevocationGuard(parent=serverapp).install(serverapp)
