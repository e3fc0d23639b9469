"""A notebook session started through the hub's REST API, as the integration tests need one:
bob's, on the cpu partition (no GPU), ready when this returns."""

from __future__ import annotations

BOB_CPU = {"partition": "cpu", "account": "research-climate", "gpus": 0, "cpus": 1,
           "memory": "1G", "runtime": "00:10:00"}


def start_bob_cpu(api, wait_for, runtime: str = BOB_CPU["runtime"]):
    """POST bob's server with :data:`BOB_CPU` (``runtime`` as given) and wait until the hub
    says it is ready; returns ``api`` (bob's session of ``hub_api``)."""
    r = api.post(f"{api.base}/users/bob/server",
                 json={"user_options": {**BOB_CPU, "runtime": runtime}})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (api.get(f"{api.base}/users/bob").json()["servers"].get("") or {})
             .get("ready"), "bob's server ready")
    return api
