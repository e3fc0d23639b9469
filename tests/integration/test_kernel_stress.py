"""The same cell run a few hundred times through a session's kernel websocket, as
JupyterLab runs it (through the hub's proxy, the server's kernel bridge and its revocation
guard): every reply arrives. Once a cell's reply never reached its client (a notebook stuck
at "running"); this is the test that would see it again. Set WORKBENCH_STRESS_RUNS for more."""

import asyncio
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.sessions import start_bob_cpu

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

RUNS = int(os.environ.get("WORKBENCH_STRESS_RUNS", "300"))
#: a cell's reply later than this counts as never delivered
REPLY_TIMEOUT_S = 15.0
CELL = "import math\nx = sum(math.sqrt(i) for i in range(20000))\nprint(round(x, 3))\nx"
PRINTED = str(round(sum(i ** 0.5 for i in range(20000)), 3))


def _msg(session: str, code: str) -> tuple[str, str]:
    msg_id = uuid.uuid4().hex
    return msg_id, json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "bob",
                   "session": session, "version": "5.3",
                   "date": datetime.now(UTC).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}})


async def _run_cells(url: str, token: str, runs: int) -> dict:
    conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    session = uuid.uuid4().hex
    took, printed = [], 0
    try:
        for i in range(runs):
            msg_id, text = _msg(session, CELL)
            t0 = time.monotonic()
            await conn.write_message(text)
            deadline = t0 + REPLY_TIMEOUT_S
            reply = idle = None
            out = ""
            while reply is None or idle is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"run {i + 1} of {runs}: no execute_reply/idle within "
                                         f"{REPLY_TIMEOUT_S} s (reply={reply}, idle={idle})")
                raw = await asyncio.wait_for(conn.read_message(), left)
                assert raw is not None, f"run {i + 1}: the kernel socket closed"
                m = json.loads(raw)
                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                kind = m["header"]["msg_type"]
                if kind == "execute_reply":
                    reply = m["content"]["status"]
                elif kind == "status" and m["content"]["execution_state"] == "idle":
                    idle = True
                elif kind == "stream":
                    out += m["content"]["text"]
            assert reply == "ok", (i, reply)
            printed += PRINTED in out
            took.append(time.monotonic() - t0)
    finally:
        conn.close()
    return {"runs": len(took), "printed": printed, "p50_s": statistics.median(took),
            "p99_s": sorted(took)[int(0.99 * (len(took) - 1))], "max_s": max(took)}


def test_a_cell_run_hundreds_of_times_through_the_websocket_always_gets_its_reply(
        hub_api, hub_url, wait_for):
    bob = start_bob_cpu(hub_api("bob"), wait_for, runtime="00:15:00")
    r = bob.post(f"{hub_url}user/bob/api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    token = bob.headers["Authorization"].split()[1]
    try:
        url = hub_url.replace("http", "ws", 1) + f"user/bob/api/kernels/{kernel}/channels"
        figures = asyncio.run(_run_cells(url, token, RUNS))
    finally:
        bob.delete(f"{hub_url}user/bob/api/kernels/{kernel}")
    print(f"{RUNS} cells through the kernel websocket: {figures}")
    assert figures["runs"] == RUNS and figures["printed"] == RUNS
