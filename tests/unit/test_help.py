"""Pair-debugging without a hub: the help requests' store and time box, the input rules, the
hub roles and spawner scopes that sharing needs, and the revocation guard's cache."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy.engine import make_url
from traitlets.config import Config

from extensions.help.handlers import HelpClient
from extensions.revocation.guard import RevocationGuard, TieredCache, cache_key
from tests.pg import new_database, postgres_url  # noqa: F401
from workbench import hubconfig, services
from workbench.demo.people import People, Person
from workbench.help import HelpError, HelpStore, State
from workbench.help.jobinfo import output_tail
from workbench.help.store import check_minutes, check_text, now
from workbench.paths import FactoryHome


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    """An empty database for the store: the demo's SQLite file, or a site's PostgreSQL."""
    if request.param == "sqlite":
        return tmp_path / "help.sqlite"
    return new_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(where):
    return HelpStore(where)


def add(store, owner="alice", server="", minutes=60):
    return store.add(owner, server, "group:support", "it fails", "train.ipynb", minutes,
                     {"job_id": 7, "node": "h100-1"})


def test_a_request_is_stored_open_with_its_time_box(store):
    r = add(store)
    assert r.is_open and r.subject == "alice/" and r.job["job_id"] == 7
    assert timedelta(minutes=59) < r.expires_at - r.created_at <= timedelta(minutes=60)
    assert store.open_for("alice") == r
    assert store.due() == []
    assert [x.id for x in store.due(now() + timedelta(minutes=61))] == [r.id]
    assert r.to_json()["helper"] == {"kind": "group", "name": "support"}


def test_one_open_request_per_server(store):
    add(store)
    with pytest.raises(HelpError) as e:
        add(store)
    assert e.value.status == 409
    assert len(store.open_requests()) == 1
    add(store, owner="bob")  # another user's server is another matter
    r = store.open_for("alice")
    assert store.end(r.id, State.CLOSED, "alice").state is State.CLOSED
    add(store)  # once ended, alice may ask again


def test_a_request_ends_once_and_is_joined_once(store):
    r = add(store)
    assert store.add_joined(r.id, "sam").joined == ("sam",)
    with pytest.raises(HelpError) as e:
        store.add_joined(r.id, "sam")
    assert e.value.status == 409 and "already" in e.value.message
    ended = store.end(r.id, State.EXPIRED, "help")
    assert ended.state is State.EXPIRED and ended.ended_by == "help" and ended.ended_at
    assert store.end(r.id, State.CLOSED, "alice") is None  # the first end wins
    with pytest.raises(HelpError) as e:
        store.add_joined(r.id, "tom")
    assert e.value.status == 409
    with pytest.raises(HelpError) as e:
        store.get(999)
    assert e.value.status == 404


def test_the_time_box_survives_a_new_store_on_the_same_file(where):
    r = add(HelpStore(where))
    HelpStore(where).set_expiry(r.id, 1)
    later = HelpStore(where)  # a restarted service
    assert [x.id for x in later.due(now() + timedelta(seconds=61))] == [r.id]
    if str(where).startswith("postgresql"):  # the site's database: readable by psql
        libpq = make_url(where).set(drivername="postgresql")
        with psycopg.connect(libpq.render_as_string(hide_password=False)) as conn:
            assert conn.execute("SELECT state FROM help_requests").fetchone() == ("open",)
    else:
        with sqlite3.connect(where) as conn:  # plain SQLite: readable by any tool
            assert conn.execute("SELECT state FROM help_requests").fetchone() == ("open",)


#: the store's file as the version before SQLAlchemy made it (raw sqlite3)
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS help_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, server TEXT NOT NULL,
    helper TEXT NOT NULL, message TEXT NOT NULL, notebook TEXT NOT NULL,
    minutes INTEGER NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    state TEXT NOT NULL, ended_at TEXT, ended_by TEXT, job TEXT NOT NULL, joined TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_per_server
    ON help_requests (owner, server) WHERE state = 'open';
"""


def test_a_file_written_before_opens_and_reads_unchanged(tmp_path):
    path = tmp_path / "help.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO help_requests (owner, server, helper, message, notebook, minutes, "
            "created_at, expires_at, state, ended_at, ended_by, job, joined) VALUES "
            "('alice', '', 'group:support', 'it fails', 'train.ipynb', 60, "
            "'2026-11-30T10:00:00+00:00', '2026-11-30T11:00:00+00:00', 'closed', "
            "'2026-11-30T10:20:00+00:00', 'alice', '{\"job_id\": 7}', '[\"sam\"]'), "
            "('bob', 'gpu', 'group:support', 'slow', '', 120, '2026-11-30T10:05:00+00:00', "
            "'2099-01-01T00:00:00+00:00', 'open', NULL, NULL, '{}', '[]')")
    conn.close()
    store = HelpStore(path)
    closed, open_ = store.get(1), store.get(2)
    assert closed.to_json() == {
        "id": 1, "owner": "alice", "server": "", "helper": {"kind": "group", "name": "support"},
        "message": "it fails", "notebook": "train.ipynb", "minutes": 60,
        "created_at": "2026-11-30T10:00:00+00:00", "expires_at": "2026-11-30T11:00:00+00:00",
        "seconds_left": 0, "state": "closed", "ended_at": "2026-11-30T10:20:00+00:00",
        "ended_by": "alice", "job": {"job_id": 7}, "joined": ["sam"]}
    assert store.open_requests() == [open_] and open_.subject == "bob/gpu"
    assert [r.id for r in store.joined_by("sam")] == [1]
    with pytest.raises(HelpError) as e:  # the old file's index still holds
        add(store, owner="bob", server="gpu")
    assert e.value.status == 409
    assert add(store).id == 3  # the numbering goes on
    with sqlite3.connect(path) as conn:  # and the old code's readers still read it
        assert conn.execute("SELECT count(*) FROM help_requests WHERE state = 'open'"
                            ).fetchone() == (2,)
    conn.close()


def test_two_stores_joining_at_once_lose_nobody(where):
    """Two services (processes) on one database: each join reads and rewrites the joined
    list, so without a lock one would overwrite the other's."""
    r = add(HelpStore(where))
    people = [f"s{i}" for i in range(12)]
    stores = [HelpStore(where), HelpStore(where)]
    start = threading.Barrier(len(people))
    errors = []

    def join(i: int, who: str) -> None:
        start.wait()
        try:
            stores[i % 2].add_joined(r.id, who)
            if i % 3 == 0:
                stores[(i + 1) % 2].remove_joined(r.id, who)
        except Exception as e:  # noqa: BLE001 - reported below, with the others
            errors.append(e)

    threads = [threading.Thread(target=join, args=(i, w)) for i, w in enumerate(people)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    kept = {w for i, w in enumerate(people) if i % 3}
    assert set(HelpStore(where).get(r.id).joined) == kept
    assert len(HelpStore(where).get(r.id).joined) == len(kept)


@pytest.mark.parametrize("value", [29, 481, 0, -5, "60", 60.5, True, None])
def test_minutes_out_of_range_or_not_whole_are_refused(value):
    with pytest.raises(HelpError) as e:
        check_minutes(value)
    assert e.value.status == 400 and "minutes must be" in e.value.message


def test_minutes_in_range_and_texts():
    assert check_minutes(30) == 30 and check_minutes(480) == 480 and check_minutes(1, 1) == 1
    assert check_text("message", "  hi  ", 10) == "hi"
    with pytest.raises(HelpError) as e:
        check_text("message", "x" * (1 << 20), 4000)
    assert e.value.status == 400 and "1048576 characters" in e.value.message
    with pytest.raises(HelpError):
        check_text("message", ["x"], 10)


def test_the_output_tail_is_read_only_from_the_users_own_regular_file(tmp_path):
    import getpass
    import os

    me = getpass.getuser()
    log = tmp_path / "job-7.log"
    log.write_text("start\n" + "line\n" * 2000 + "CUDA error: out of memory\n")
    template = str(tmp_path / "job-%j.log")
    tail = output_tail(me, 7, template, max_bytes=200)
    assert tail.endswith("CUDA error: out of memory\n") and len(tail) <= 200
    assert not tail.startswith("ine")  # cut at a line boundary
    link = tmp_path / "job-8.log"
    os.symlink("/etc/hostname", link)
    assert output_tail(me, 8, template) == ""  # a link is never followed
    assert output_tail(me, 9, template) == ""  # no file
    assert output_tail("no-such-user-xyz", 7, template) == ""


def site(tmp_path):
    return hubconfig.Site(home=FactoryHome(tmp_path), hub_ip="10.0.0.5",
                          people=People((Person("alice"), Person("sam", hub_groups=("support",)),
                                         Person("maria", hub_groups=("managers",)))))


def test_users_may_share_their_own_servers_and_use_the_help_service(tmp_path):
    s = site(tmp_path)
    c = Config()
    hubconfig.configure(c, s)
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    # both the sharing scopes and the services' access scopes on the one user role
    assert [r["name"] for r in c.JupyterHub.load_roles].count("user") == 1
    assert {"self", "shares!user", "read:users:name",
            "access:services!service=help"} <= set(roles["user"]["scopes"])
    [help_service] = [x for x in services.registry(s) if x.name == "help"]
    assert (help_service.port, help_service.access, help_service.display) == (
        8092, (services.EVERY_USER,), True)
    assert c.SlurmGPUSpawner.user_services["help"] == "http://10.0.0.5:8092/services/help/"
    # no role of people holds access to others' servers, nor may share them
    for role in c.JupyterHub.load_roles:
        if role.get("groups") or role["name"] == "user":
            assert not any(sc.startswith(("access:servers", "servers", "admin:"))
                           or sc in ("shares", "read:shares") for sc in role["scopes"]), role


def test_the_owners_browser_token_may_share_a_sharees_may_not():
    from spawners.slurm_gpu import SlurmGPUSpawner

    class User:
        name = "alice"

    spawner = SlurmGPUSpawner()
    spawner.user = User()
    assert spawner.oauth_client_allowed_scopes == [
        "read:users:name", "list:users", "shares!user=alice"]
    assert not any(s.startswith("shares") for s in spawner.server_token_scopes)


def test_the_session_reaches_the_help_service_as_its_owner():
    assert HelpClient.from_env({}) is None
    env = {"AIFACTORY_SERVICES": json.dumps({"help": "http://10.0.0.5:8092/services/help/"}),
           "JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_USER": "alice"}
    client = HelpClient.from_env(env)
    assert (client.user, client.server) == ("alice", "")
    hub = client.hub()
    assert hub.url_of("api/requests") == "http://10.0.0.5:8092/services/help/api/requests"
    assert hub.headers["Authorization"] == "token t"
    assert HelpClient.from_env({**env, "AIFACTORY_SERVICES": "{"}) is None


def test_the_owners_answers_stay_cached_and_others_expire_in_seconds():
    cache = TieredCache("alice", max_age=300, guest_max_age=0.2)
    cache["a"] = {"name": "alice", "kind": "user", "scopes": []}
    cache["s"] = {"name": "sam", "kind": "user", "scopes": []}
    cache["n"] = None  # a refusal
    cache["svc"] = {"name": "alice", "kind": "service", "scopes": []}
    assert all(k in cache for k in ("a", "s", "n", "svc"))
    time.sleep(0.3)
    assert "a" in cache and cache["a"]["name"] == "alice"
    assert "s" not in cache and "n" not in cache and "svc" not in cache
    cache.purge_expired()
    assert list(cache.values) == ["a"]


def test_the_guard_promises_at_most_five_seconds():
    guard = RevocationGuard()
    assert guard.guest_cache_max_age + guard.check_interval <= 5
    from traitlets import TraitError

    with pytest.raises(TraitError):
        RevocationGuard(guest_cache_max_age=30)
    for trait in RevocationGuard.class_own_traits(config=True).values():
        assert trait.help
    assert cache_key("tok", "s1").startswith("token:s1:")


async def test_through_a_hub_outage_the_owner_goes_on_and_others_get_503():
    """A real HubOAuth against a real (tiny) hub API that then goes away."""
    import socket
    from types import SimpleNamespace

    from jupyterhub.services.auth import HubOAuth
    from tornado.httpserver import HTTPServer
    from tornado.web import Application, HTTPError, RequestHandler

    models = {"alice-token": {"name": "alice", "kind": "user", "scopes": ["access:servers"]},
              "sam-token": {"name": "sam", "kind": "user", "scopes": ["access:servers"]}}

    class User(RequestHandler):
        def get(self):
            token = self.request.headers["Authorization"].split()[1]
            self.finish(json.dumps(models[token]))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub = HTTPServer(Application([(r"/hub/api/user", User)]))
    hub.listen(port, "127.0.0.1")
    auth = HubOAuth(api_url=f"http://127.0.0.1:{port}/hub/api", api_token="server-token")
    app = SimpleNamespace(identity_provider=SimpleNamespace(hub_auth=auth,
                                                            get_user=lambda h: None))
    guard = RevocationGuard(hub_outage_grace=0.5)
    os.environ["JUPYTERHUB_USER"] = "alice"
    try:
        assert guard.install(app)
    finally:
        del os.environ["JUPYTERHUB_USER"]
    ask = lambda token: auth.user_for_token(token, use_cache=False, sync=False)  # noqa: E731
    assert (await ask("alice-token"))["name"] == "alice"
    assert (await ask("sam-token"))["name"] == "sam"
    hub.stop()
    await hub.close_all_connections()
    # the hub is gone: the owner's confirmed token goes on, a helper's is refused with 503
    assert (await ask("alice-token"))["name"] == "alice"
    for token in ("sam-token", "never-seen"):
        with pytest.raises(HTTPError) as e:
            await ask(token)
        assert e.value.status_code == 503 and "not answering" in e.value.log_message
    time.sleep(0.6)  # past hub_outage_grace: the owner waits for the hub too
    with pytest.raises(HTTPError) as e:
        await ask("alice-token")
    assert e.value.status_code == 503
