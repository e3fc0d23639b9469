"""One cached reader of the allocations file for every caller (the spawn form, the queue's
words, the catalogue, the dashboards), and one way to replace a file atomically."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from workbench import atomicfile
from workbench.allocations import AllocationError
from workbench.allocations.loader import AllocationsCache, cached, current
from workbench.audit import AuditLog
from workbench.catalogue.store import CatalogueStore
from workbench.paths import data_file

PROJECT = "programmes:\n  research:\n    projects:\n      p1: {members: [root], gpu_hours: %s}\n"


def grant(allocs) -> float:
    return allocs.project("p1").gpu_hours


def test_the_cache_answers_the_same_object_until_the_file_changes(tmp_path):
    path = tmp_path / "allocations.yaml"
    path.write_text(PROJECT % 10)
    cache = AllocationsCache()
    first = cache.get(path)
    assert grant(first) == 10 and cache.get(path) is first
    path.write_text(PROJECT % 20)  # an edit in place, same size, maybe in the same clock tick
    second = cache.get(path)
    assert grant(second) == 20 and cache.get(path) is second
    path.write_text(PROJECT % 300)  # another size
    assert grant(cache.get(path)) == 300
    new = tmp_path / "new.yaml"  # an atomic replace: another inode
    new.write_text(PROJECT % 400)
    os.replace(new, path)
    third = cache.get(path)
    assert grant(third) == 400 and cache.get(path) is third
    # settled: the file's mtime long before the read, and the bytes no longer compared
    old = path.stat()
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns - 10 * AllocationsCache.RACY_NS))
    fourth = cache.get(path)  # another mtime: read again
    assert grant(fourth) == 400 and fourth is not third and cache.get(path) is fourth
    # a later edit moves the mtime forward: seen at once
    path.write_text(PROJECT % 500)
    assert grant(cache.get(path)) == 500


def test_a_file_that_became_unusable_raises_at_every_call_until_fixed(tmp_path):
    path = tmp_path / "allocations.yaml"
    path.write_text(PROJECT % 10)
    cache = AllocationsCache()
    good = cache.get(path)
    path.write_text(PROJECT % -1)
    for _ in range(2):  # not hidden behind the last good value, not only once
        with pytest.raises(AllocationError, match="gpu_hours must be a number >= 0"):
            cache.get(path)
    path.unlink()
    with pytest.raises(AllocationError, match="cannot read"):
        cache.get(path)
    path.write_text(PROJECT % 10)
    fixed = cache.get(path)
    assert grant(fixed) == 10 and fixed is not good and cache.get(path) is fixed


def test_users_are_checked_apart_and_current_says_none_while_unusable(tmp_path):
    path = tmp_path / "allocations.yaml"
    path.write_text(PROJECT.replace("root", "no-such-user-here") % 10)
    assert grant(cached(path)) == 10  # check_users=False: the spawner's and the queue's read
    with pytest.raises(AllocationError, match="no user of this machine"):
        cached(path, check_users=True)  # the catalogue's
    assert current(path) is cached(path)
    path.write_text("programmes: [")
    assert current(path) is None


def test_threads_reading_at_once_share_one_reading(tmp_path):
    path = tmp_path / "allocations.yaml"
    path.write_text(PROJECT % 10)
    cache, seen = AllocationsCache(), []
    threads = [threading.Thread(target=lambda: seen.append(cache.get(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and all(a is seen[0] for a in seen)


def test_the_catalogue_follows_the_allocations_file_and_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "allocations.yaml"
    path.write_text(PROJECT % 10)
    store = CatalogueStore(data_file("cluster", "catalogue.yaml"), tmp_path,
                           AuditLog(tmp_path / "audit.sqlite"), None, allocations_path=path,
                           enforce=False)
    first = store.membership()
    assert [p.name for p in first.projects_of("root")] == ["p1"]
    assert store.membership() is first  # derived once per version of the file
    path.write_text(PROJECT.replace("p1", "p2") % 10)
    assert [p.name for p in store.membership().projects_of("root")] == ["p2"]
    path.write_text("programmes: [")  # broken while served: what it said before
    assert [p.name for p in store.membership().projects_of("root")] == ["p2"]
    broken = CatalogueStore(data_file("cluster", "catalogue.yaml"), tmp_path,
                            AuditLog(tmp_path / "audit.sqlite"), None, allocations_path=path,
                            enforce=False)
    with pytest.raises(AllocationError):  # never readable: no store to serve
        broken.membership()


def test_atomic_writes_replace_whole_with_the_mode_asked_and_leave_nothing_behind(tmp_path):
    path = tmp_path / "state.json"
    atomicfile.write_json(path, {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert path.read_text() == '{"a": [1, 2], "b": 1}'
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    inode = path.stat().st_ino
    atomicfile.write_text(path, "new", mode=0o644)
    assert path.read_text() == "new" and oct(path.stat().st_mode & 0o777) == "0o644"
    assert path.stat().st_ino != inode  # replaced, never rewritten in place
    atomicfile.write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(TypeError):
        atomicfile.write_json(path, {"x": object()})  # fails half way: the old file stays
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(RuntimeError), atomicfile.replacing(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert path.read_bytes() == b"\x00\x01"
    with atomicfile.replacing(tmp_path / "data.bin", mode=0o640) as tmp:
        assert tmp.parent == tmp_path and tmp != tmp_path / "data.bin"
        tmp.write_bytes(b"whole")
    assert (tmp_path / "data.bin").read_bytes() == b"whole"
    assert oct((tmp_path / "data.bin").stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "state.json"]


def test_writers_at_once_each_leave_a_whole_file(tmp_path):
    path = tmp_path / "meta.json"

    def write(i):
        for _ in range(20):
            atomicfile.write_json(path, {"writer": i, "pad": "x" * 1000 * i})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = json.loads(path.read_text())
    assert data["pad"] == "x" * 1000 * data["writer"]
    assert [p.name for p in Path(tmp_path).iterdir()] == ["meta.json"]
