"""The catalogue's cost as it grows: 1,000, 10,000 and 100,000 datasets, through the service:
load time, the service's memory, search and open latency per size and their growth per 10x of
the catalogue; and ``open_dataset(...).to_pandas()`` against
``pyarrow.parquet.read_table(...).to_pandas()``.

Run as root on the machine of the local AI Factory (hub up, demo datasets generated)::

    /opt/aifactory/venv/bin/python benchmarks/catalogue.py     # ~3 min; --job: also open in a job

For each size it starts a second instance of the real ``catalogue`` service (same code, same
hub authentication: the service's own token, callers' tokens checked against the hub) on a
free port, reading a generated catalogue of that many datasets (the 5 demo datasets among
them, so ``open`` hands out real files) and writing its audit records to a temporary database,
so the running service and the real audit trail are not touched. Requests go straight to its
port, as a session's do (``AIFACTORY_SERVICES``), with alice's token. ``--in-process`` drives
the same store (``CatalogueStore.list``/``open``, answers encoded as the handler does) in a
child process per size, with no hub, no HTTP and no Slurm.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workbench import services  # noqa: E402
from workbench.catalogue.client import CatalogueClient, CatalogueUnavailable  # noqa: E402
from workbench.catalogue.model import default_path  # noqa: E402
from workbench.hubconfig import Site  # noqa: E402
from workbench.slurm import SlurmClient, queries  # noqa: E402

WORDS = ("solar wind load grid traffic road sensor machine failure crop yield soil rain "
         "hospital admission energy mobility port rail freight emissions heat pump battery "
         "charging station price demand forecast satellite forest water river air quality "
         "noise bike bus tram tyre vibration turbine milk wheat maize vineyard").split()
SPACES = {"ENER": "energy", "TRAN": "mobility", "TECH": "manufacturing", "AGRI": "agriculture",
          "HEAL": "health", "ENVI": "environment"}
LICENCES = ["http://publications.europa.eu/resource/authority/licence/CC_BY_4_0",
            "http://publications.europa.eu/resource/authority/licence/CC0",
            "http://publications.europa.eu/resource/authority/licence/DL_DE_BY_2_0"]


def big_catalogue(n: int, path: Path) -> None:
    """The demo catalogue plus ``n - 5`` generated entries (seeded)."""
    demo = yaml.safe_load(default_path().read_text())
    rng = random.Random(8)
    entries = dict(demo["datasets"])
    programmes = [["startups"], ["research"], ["industry"], ["startups", "industry"], "all"]
    for i in range(n - len(entries)):
        theme = rng.choice(list(SPACES))
        words = rng.sample(WORDS, 4)
        entries[f"ds-{i:05d}"] = {
            "title": f"{words[0].title()} {words[1]} data {i}",
            "description": f"Generated entry {i}: {' '.join(rng.sample(WORDS, 12))}.",
            "data_space": SPACES[theme], "theme": theme,
            "publisher": {"name": f"Publisher {i % 97}", "url": "https://example.eu/"},
            "keywords": words, "licence": rng.choice(LICENCES), "access_rights": "PUBLIC",
            "personal_data": theme == "HEAL", "source": "public",
            "distributions": [{"file": "data.parquet", "format": "PARQUET"}],
            "access": {"programmes": rng.choice(programmes)},
        }
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the same YAML, sooner
    path.write_text(yaml.dump({"catalogue": demo["catalogue"], "datasets": entries},
                              Dumper=dumper, sort_keys=False))


def query_shapes(n: int) -> list[tuple[str, dict]]:
    """``n`` seeded queries of each shape, as the API takes them, shapes interleaved."""
    rng = random.Random(1)
    shapes = {
        "word": lambda: {"q": rng.choice(WORDS)},
        "two words": lambda: {"q": " ".join(rng.sample(WORDS, 2))},
        "theme": lambda: {"theme": rng.choice(list(SPACES))},
        "word+theme": lambda: {"q": rng.choice(WORDS), "theme": rng.choice(list(SPACES))},
        "empty": lambda: {},
        "filters": lambda: {"personal_data": rng.random() < 0.5,
                            "licence": rng.choice(LICENCES), "format": "PARQUET"},
    }
    return [(name, make()) for _ in range(n) for name, make in shapes.items()]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(workdir: Path, catalogue: Path, port: int) -> subprocess.Popen:
    site = Site.from_env()
    svc = next(s for s in services.registry(site) if s.name == "catalogue")
    env = services.process_env(svc, site, dict(os.environ))
    env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{port}"
    env["SLURM_CONF"] = site.slurm_conf  # as `workbench up` gives its services
    env["PYTHONPATH"] = str(REPO)  # this checkout's code, whatever is installed
    argv = [*svc.argv, f"--catalogue={catalogue}",
            f"--CatalogueService.audit_db={workdir / 'audit.sqlite'}",
            f"--CatalogueService.licences={workdir / 'licences.json'}"]
    log = open(workdir / "catalogue.log", "w")
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=str(REPO))


def rss_mb(pid: int | str = "self") -> dict:
    """Resident memory now and at its peak (MB) of a process."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "peak_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1)}


def token(user: str) -> str:
    site = Site.from_env()
    password = site.home.demo_password_file.read_text().strip()
    r = requests.post(f"http://127.0.0.1:8000/hub/api/users/{user}/tokens",
                      json={"auth": {"username": user, "password": password},
                            "note": "catalogue benchmark", "expires_in": 3600}, timeout=30)
    r.raise_for_status()
    return r.json()["token"]


def opens_in_a_job(client: CatalogueClient, n: int) -> list[float]:
    """Opens recorded against a running job of alice's (a ``sleep`` on the cpu partition),
    as a session's are: the service checks the job and sets its AdminComment."""
    slurm = SlurmClient(slurm_conf=str(Site.from_env().slurm_conf))
    job_id = slurm.run(queries.submit(
        "#!/bin/bash\n#SBATCH -p cpu -A startup-helios -t 5 -o /dev/null -J wb-bench\n"
        "sleep 300\n", "alice"))
    try:
        deadline = time.monotonic() + 60
        while not any(j.job_id == job_id and j.state.is_running
                      for j in slurm.run(queries.jobs())):
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} did not start within 60 s")
            time.sleep(0.5)
        os.environ["SLURM_JOB_ID"] = str(job_id)
        return [timed(lambda: client.open("grid-load")) for _ in range(n)]
    finally:
        os.environ.pop("SLURM_JOB_ID", None)
        slurm.run(queries.cancel(job_id))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def timed(fn) -> float:
    t = time.perf_counter()
    result = fn()
    elapsed = (time.perf_counter() - t) * 1000
    del result  # freeing it is not part of the measure
    return elapsed


def spread(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": round(pct(values, 50), 2),
            "p95_ms": round(pct(values, 95), 2), "max_ms": round(max(values), 2)}


class Service:
    """The catalogue through a second instance of the real service, with alice's token."""

    def __init__(self, workdir: Path, catalogue: Path, alice: str):
        started = time.perf_counter()
        port = free_port()
        self.proc = start_service(workdir, catalogue, port)
        self.client = CatalogueClient(url=f"http://127.0.0.1:{port}/services/catalogue/",
                                      token=alice)
        deadline = time.monotonic() + 900
        while True:
            try:
                self.client.datasets("grid")
                break
            except CatalogueUnavailable:  # not up yet: connection refused
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = (workdir / "catalogue.log").read_text()[-2000:]
                    raise SystemExit(f"the service did not start: {log}") from None
                time.sleep(0.2)
        self.load_s = time.perf_counter() - started

    def search(self, params: dict) -> int:
        return len(self.client.datasets(**params))

    def list_all(self) -> int:
        return len(self.client.datasets(limit=10_000))

    def open(self) -> object:
        return self.client.open("grid-load")

    def memory(self) -> dict:
        return rss_mb(self.proc.pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


class InProcess:
    """The same store the service serves, called directly (what a request costs less HTTP
    and the hub's token check): answers encoded to JSON as the handler does."""

    def __init__(self, workdir: Path, catalogue: Path):
        import asyncio

        from workbench.audit import AuditLog
        from workbench.catalogue.fsaccess import datasets_root
        from workbench.catalogue.policy import LicenceStore, Membership
        from workbench.catalogue.store import CatalogueStore

        self.loop = asyncio.new_event_loop()
        membership = Membership.load()
        audit = AuditLog(str(workdir / "audit.sqlite"))
        started = time.perf_counter()
        self.store = CatalogueStore(catalogue, datasets_root(), audit, None,
                                    LicenceStore(audit), membership=lambda: membership,
                                    enforce=False)
        self.search({"q": "grid"})  # the service reads the catalogue before it listens
        self.load_s = time.perf_counter() - started

    def search(self, params: dict, limit: int = 100) -> int:
        filters = dict(params)
        if "format" in filters:
            filters["fmt"] = filters.pop("format")
        page, total = self.store.list("alice", offset=0, limit=limit, **filters)
        json.dumps({"datasets": page, "count": total, "offset": 0, "limit": limit})
        return len(page)

    def list_all(self) -> int:
        return self.search({}, limit=10_000)

    def open(self) -> object:
        return json.dumps(self.loop.run_until_complete(self.store.open("alice", "grid-load")))

    def memory(self) -> dict:
        return rss_mb()

    def close(self) -> None:
        self.loop.close()


def measure(size: int, args, alice: str | None) -> dict:
    """The figures of one catalogue size (a fresh service, or this process's store)."""
    workdir = Path(tempfile.mkdtemp(prefix="wb-catalogue-bench-"))
    target = None
    try:
        cat = workdir / "catalogue.yaml"
        big_catalogue(size, cat)
        target = InProcess(workdir, cat) if alice is None else Service(workdir, cat, alice)
        shapes = query_shapes(args.queries)
        for _, q in shapes[:30]:  # warm-up: the hub's token check is cached by the service
            target.search(q)
        times: dict[str, list[float]] = {}
        for name, q in shapes:
            t = time.perf_counter()
            target.search(q)
            times.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        everything = [t for ts in times.values() for t in ts]
        figures = {
            "datasets": size, "load_s": round(target.load_s, 2), **target.memory(),
            "search": spread(everything),
            "search_by_shape": {name: spread(ts) for name, ts in times.items()},
            "list_10000": spread([timed(target.list_all) for _ in range(5)]),
            "open": spread([timed(target.open) for _ in range(args.opens)]),
        }
        if alice is not None and size == min(args.sizes):
            if args.job:
                figures["open_in_job"] = spread(opens_in_a_job(target.client, args.opens))
            if args.reads:
                figures["read"] = reads(target.client, args.reads)
        return figures
    finally:
        if target is not None:
            target.close()
        shutil.rmtree(workdir, ignore_errors=True)


def reads(client: CatalogueClient, n: int) -> dict:
    """``open_dataset().to_pandas()`` against ``read_table().to_pandas()`` of the same file,
    interleaved, order alternating, the file in the page cache."""
    path = client.open("traffic-counts").files[0]
    pandas_ms, arrow_ms = [], []
    timed(lambda: pq.read_table(path).to_pandas())
    for i in range(n):
        runs = [(arrow_ms, lambda: pq.read_table(path).to_pandas()),
                (pandas_ms, lambda: client.open("traffic-counts").to_pandas())]
        for into, fn in (runs if i % 2 == 0 else runs[::-1]):
            into.append(timed(fn))
    return {"file": str(path), "rows": pq.read_metadata(path).num_rows,
            "bytes": Path(path).stat().st_size,
            "pyarrow_median_ms": round(statistics.median(arrow_ms), 1),
            "open_dataset_to_pandas_median_ms": round(statistics.median(pandas_ms), 1),
            "ratio": round(statistics.median(pandas_ms) / statistics.median(arrow_ms), 3),
            "pyarrow_min_ms": round(min(arrow_ms), 1),
            "open_dataset_to_pandas_min_ms": round(min(pandas_ms), 1),
            "ratio_of_minima": round(min(pandas_ms) / min(arrow_ms), 3)}


def per_10x(rows: list[dict], get) -> list[float | None]:
    """How much a figure grows per 10x of datasets, between each size and the one before:
    ``(b / a) ** (1 / log10(size_b / size_a))``; 10 is linear, 1 is flat."""
    out: list[float | None] = [None]
    for a, b in zip(rows, rows[1:], strict=False):
        va, vb = get(a), get(b)
        out.append(round((vb / va) ** (1 / math.log10(b["datasets"] / a["datasets"])), 2)
                   if va > 0 else None)
    return out


def report(rows: list[dict], mode: str) -> None:
    lines = [("load (s)", lambda r: r["load_s"]), ("RSS (MB)", lambda r: r["rss_mb"]),
             ("search p50 (ms)", lambda r: r["search"]["p50_ms"]),
             ("search p95 (ms)", lambda r: r["search"]["p95_ms"])]
    for shape in rows[0]["search_by_shape"]:
        lines.append((f"  {shape} p50/p95", lambda r, s=shape: r["search_by_shape"][s]))
    lines += [("list 10,000 p50 (ms)", lambda r: r["list_10000"]["p50_ms"]),
              ("open p50 (ms)", lambda r: r["open"]["p50_ms"]),
              ("open p95 (ms)", lambda r: r["open"]["p95_ms"])]
    print(f"the catalogue as it grows, {mode} (alice's access, a page of 100); "
          "x/10x: growth per 10x of datasets (10 = linear, 1 = flat)")
    print(f"{'':24}" + "".join(f"{r['datasets']:>18,}" for r in rows))
    for label, get in lines:
        cells = []
        for r in rows:
            v = get(r)
            cells.append(f"{v['p50_ms']:.1f} / {v['p95_ms']:.1f}" if isinstance(v, dict)
                         else f"{v:g}")
        key = (lambda r, g=get: g(r)["p95_ms"]) if isinstance(get(rows[0]), dict) else get
        growth = per_10x(rows, key)
        marks = [c + (f" x{g:g}" if g is not None else "")
                 for c, g in zip(cells, growth, strict=True)]
        print(f"{label:24}" + "".join(f"{m:>18}" for m in marks))
    biggest = rows[-1]
    p95 = biggest["search"]["p95_ms"]
    print(f"search p95 at {biggest['datasets']:,}: {p95:.1f} ms (goal < 50 ms: "
          f"{'met' if p95 < 50 else 'MISSED'})")
    first = rows[0]
    if "open_in_job" in first:
        j = first["open_in_job"]
        print(f"open in a Slurm job at {first['datasets']:,} (job checked, AdminComment set): "
              f"p50 {j['p50_ms']:.1f} ms  p95 {j['p95_ms']:.1f} ms  max {j['max_ms']:.1f} ms")
    if "read" in first:
        r = first["read"]
        print(f"read {r['rows']} rows ({r['bytes'] / 1e6:.1f} MB): pyarrow "
              f"read_table().to_pandas() {r['pyarrow_median_ms']} ms, open_dataset()"
              f".to_pandas() {r['open_dataset_to_pandas_median_ms']} ms (medians): ratio "
              f"{r['ratio']:.3f}; best runs {r['pyarrow_min_ms']} / "
              f"{r['open_dataset_to_pandas_min_ms']} ms: ratio {r['ratio_of_minima']:.3f} "
              f"(goal <= 1.1: {'met' if r['ratio'] <= 1.1 else 'MISSED'} on medians)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000",
                   help="catalogue sizes, comma-separated (1000,10000,100000)")
    p.add_argument("--queries", type=int, default=50,
                   help="search requests of each of the 6 shapes per size (50)")
    p.add_argument("--opens", type=int, default=100, help="open requests per size (100)")
    p.add_argument("--job", action="store_true",
                   help="also open in a running Slurm job of alice's, at the smallest size")
    p.add_argument("--reads", type=int, default=101,
                   help="reads of each kind at the smallest size (101; 0: none)")
    p.add_argument("--in-process", action="store_true",
                   help="the store in a child process per size: no hub, HTTP or Slurm")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child of --in-process
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.one:
        print(json.dumps(measure(args.one, args, None)))
        return 0
    if os.geteuid() != 0:
        sys.exit("run as root (it reads the service token and the datasets)")
    rows = []
    alice = None if args.in_process else token("alice")
    for size in args.sizes:
        if args.in_process:  # a fresh process per size: its memory is that size's alone
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(size), "--queries", str(args.queries),
                 "--opens", str(args.opens)], capture_output=True, text=True, check=True)
            rows.append(json.loads(child.stdout.splitlines()[-1]))
        else:
            rows.append(measure(size, args, alice))
        rows[-1]["load_average"] = round(os.getloadavg()[0], 2)
        print(f"{size:,} datasets done (load average {rows[-1]['load_average']})", flush=True)
    mode = "in process (the store, no HTTP)" if args.in_process else \
        "through the service (HTTP, alice's token)"
    report(rows, mode)
    print(f"(load averages during the runs: {[r['load_average'] for r in rows]} on "
          f"{os.cpu_count()} CPUs)")
    text = json.dumps({"mode": "in-process" if args.in_process else "service",
                       "sizes": rows})
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
