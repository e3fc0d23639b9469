"""The catalogue service with 10,000 datasets: search and open latency through the service,
and ``open_dataset(...).to_pandas()`` against ``pyarrow.parquet.read_table(...).to_pandas()``.

Run as root on the machine of the local AI Factory (hub up, demo datasets generated)::

    /opt/aifactory/venv/bin/python benchmarks/catalogue.py     # ~1 min

It starts a second instance of the real ``catalogue`` service (same code, same hub
authentication: the service's own token, callers' tokens checked against the hub) on a free
port, reading a generated catalogue of 10,000 datasets (the 5 demo datasets among them, so
``open`` hands out real files) and writing its audit records to a temporary database, so the
running service and the real audit trail are not touched. Requests go straight to its port,
as a session's do (``AIFACTORY_SERVICES``), with alice's token.
"""

from __future__ import annotations

import argparse
import json
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
    path.write_text(yaml.safe_dump({"catalogue": demo["catalogue"], "datasets": entries},
                                   sort_keys=False))


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
    argv = [*svc.argv, f"--catalogue={catalogue}",
            f"--CatalogueService.audit_db={workdir / 'audit.sqlite'}",
            f"--CatalogueService.licences={workdir / 'licences.json'}"]
    log = open(workdir / "catalogue.log", "w")
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=str(Path(__file__).resolve().parent.parent))


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", type=int, default=10_000, help="catalogue size (10000)")
    p.add_argument("--queries", type=int, default=300, help="search requests (300)")
    p.add_argument("--opens", type=int, default=100, help="open requests (100)")
    p.add_argument("--reads", type=int, default=101, help="reads of each kind (101)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it reads the service token and the datasets)")
    workdir = Path(tempfile.mkdtemp(prefix="wb-catalogue-bench-"))
    proc = None
    try:
        cat = workdir / "catalogue.yaml"
        big_catalogue(args.datasets, cat)
        port = free_port()
        proc = start_service(workdir, cat, port)
        url = f"http://127.0.0.1:{port}/services/catalogue/"
        client = CatalogueClient(url=url, token=token("alice"))
        deadline = time.monotonic() + 120
        while True:
            try:
                client.datasets("grid")
                break
            except CatalogueUnavailable:  # not up yet: connection refused
                if time.monotonic() > deadline or proc.poll() is not None:
                    log = (workdir / "catalogue.log").read_text()[-2000:]
                    raise SystemExit(f"the service did not start: {log}") from None
                time.sleep(0.5)
        rng = random.Random(1)
        queries = []
        for _ in range(args.queries):
            kind = rng.random()
            if kind < 0.5:
                queries.append({"q": " ".join(rng.sample(WORDS, rng.choice((1, 2))))})
            elif kind < 0.8:
                queries.append({"q": rng.choice(WORDS), "theme": rng.choice(list(SPACES))})
            else:
                queries.append({"personal_data": rng.random() < 0.5,
                                "licence": rng.choice(LICENCES), "format": "PARQUET"})
        for q in queries[:20]:  # warm-up: the hub's token check is cached by the service
            client.datasets(**q)
        counts = []
        search_ms = []
        for q in queries:
            t = time.perf_counter()
            counts.append(len(client.datasets(**q)))
            search_ms.append((time.perf_counter() - t) * 1000)
        everything_ms = [timed(lambda: client.datasets(limit=10_000)) for _ in range(10)]
        open_ms = [timed(lambda: client.open("grid-load")) for _ in range(args.opens)]
        job_open_ms = opens_in_a_job(client, args.opens)
        handle = client.open("traffic-counts")
        path = handle.files[0]
        pandas_ms, arrow_ms = [], []
        timed(lambda: pq.read_table(path).to_pandas())  # the file in the page cache
        for i in range(args.reads):  # interleaved, same file, same run, order alternating
            runs = [(arrow_ms, lambda: pq.read_table(path).to_pandas()),
                    (pandas_ms, lambda: client.open("traffic-counts").to_pandas())]
            for into, fn in (runs if i % 2 == 0 else runs[::-1]):
                into.append(timed(fn))
        rows = pq.read_metadata(path).num_rows
        figures = {
            "datasets": args.datasets,
            "search": {"requests": len(search_ms), "p50_ms": round(pct(search_ms, 50), 2),
                       "p95_ms": round(pct(search_ms, 95), 2),
                       "max_ms": round(max(search_ms), 2),
                       "median_results": statistics.median(counts)},
            "list_all_10000": {"p50_ms": round(pct(everything_ms, 50), 1),
                               "p95_ms": round(pct(everything_ms, 95), 1)},
            "open": {"requests": len(open_ms), "p50_ms": round(pct(open_ms, 50), 2),
                     "p95_ms": round(pct(open_ms, 95), 2), "max_ms": round(max(open_ms), 2)},
            "open_in_job": {"requests": len(job_open_ms),
                            "p50_ms": round(pct(job_open_ms, 50), 2),
                            "p95_ms": round(pct(job_open_ms, 95), 2),
                            "max_ms": round(max(job_open_ms), 2)},
            "read": {"file": path, "rows": rows, "bytes": Path(path).stat().st_size,
                     "pyarrow_median_ms": round(statistics.median(arrow_ms), 1),
                     "open_dataset_to_pandas_median_ms": round(statistics.median(pandas_ms), 1),
                     "ratio": round(statistics.median(pandas_ms) / statistics.median(arrow_ms),
                                    3),
                     "pyarrow_min_ms": round(min(arrow_ms), 1),
                     "open_dataset_to_pandas_min_ms": round(min(pandas_ms), 1),
                     "ratio_of_minima": round(min(pandas_ms) / min(arrow_ms), 3)},
            "load_average": os.getloadavg()[0],
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    s, o, r = figures["search"], figures["open"], figures["read"]
    print(f"catalogue of {args.datasets} datasets, through the service (alice's token):")
    print(f"  search   {s['requests']} queries  p50 {s['p50_ms']:.1f} ms  p95 {s['p95_ms']:.1f}"
          f" ms  max {s['max_ms']:.1f} ms   (goal p95 < 50 ms: "
          f"{'met' if s['p95_ms'] < 50 else 'MISSED'})")
    print(f"  list all 10,000 (no filter)   p50 {figures['list_all_10000']['p50_ms']} ms")
    print(f"  open     {o['requests']} opens    p50 {o['p50_ms']:.1f} ms  p95 {o['p95_ms']:.1f}"
          f" ms  max {o['max_ms']:.1f} ms   (goal < 100 ms: "
          f"{'met' if o['p95_ms'] < 100 else 'MISSED'})")
    j = figures["open_in_job"]
    print(f"  open in a Slurm job (job checked, AdminComment set) p50 {j['p50_ms']:.1f} ms  "
          f"p95 {j['p95_ms']:.1f} ms  max {j['max_ms']:.1f} ms")
    print(f"  read {r['rows']} rows ({r['bytes'] / 1e6:.1f} MB): pyarrow read_table().to_pandas()"
          f" {r['pyarrow_median_ms']} ms, open_dataset().to_pandas() "
          f"{r['open_dataset_to_pandas_median_ms']} ms (medians): ratio {r['ratio']:.3f}; "
          f"best runs {r['pyarrow_min_ms']} / {r['open_dataset_to_pandas_min_ms']} ms: ratio "
          f"{r['ratio_of_minima']:.3f} (goal <= 1.1: "
          f"{'met' if r['ratio'] <= 1.1 else 'MISSED'} on medians)")
    print(f"  (load average during the run: {figures['load_average']:.2f} on "
          f"{os.cpu_count()} CPUs)")
    text = json.dumps(figures)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
