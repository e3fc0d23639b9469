"""The demo datasets, generated once and deterministically (fixed seeds) by ``workbench up``.

One Parquet file per data space, a few MB each, with realistic columns and values:
hourly grid load per region (energy), 15-minute traffic counts per road sensor (mobility),
per-minute machine sensor readings with failures (manufacturing), crop yields per region and
year (agriculture) and pseudonymised hospital admissions (health). A file that exists is left
alone; the same seed gives the same rows on every machine.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import atomicfile

REGIONS = ["DE-North", "DE-South", "FR-North", "FR-South", "IT-North", "IT-South", "ES",
           "PL", "NL", "BE", "AT", "CZ"]


def grid_load() -> pa.Table:
    rng = np.random.default_rng(20230101)
    hours = np.arange(np.datetime64("2023-01-01T00"), np.datetime64("2025-01-01T00"),
                      np.timedelta64(1, "h"))
    n = len(hours)
    hour = (hours.astype("datetime64[h]").astype(np.int64)) % 24
    day = hours.astype("datetime64[D]")
    doy = (day - day.astype("datetime64[Y]")).astype(np.int64)
    weekday = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    holidays = {np.datetime64(d) for y in (2023, 2024) for d in
                (f"{y}-01-01", f"{y}-05-01", f"{y}-12-25", f"{y}-12-26")}
    is_holiday = np.array([d in holidays for d in day])
    cols = {k: [] for k in ("timestamp", "region", "load_mw", "temperature_c", "is_holiday")}
    for i, region in enumerate(REGIONS):
        base = 4000 + 1500 * (i % 5) + rng.uniform(0, 800)
        temp = 11 - 9 * np.cos(2 * np.pi * (doy - 15) / 365) + rng.normal(0, 2.5, n) - (i % 3)
        daily = 0.18 * np.sin(2 * np.pi * (hour - 7) / 24) + 0.08 * np.sin(4 * np.pi * hour / 24)
        weekly = np.where(weekday >= 5, -0.12, 0.0) + np.where(is_holiday, -0.15, 0.0)
        heating = 0.012 * np.clip(15 - temp, 0, None) + 0.006 * np.clip(temp - 24, 0, None)
        load = base * (1 + daily + weekly + heating) + rng.normal(0, base * 0.02, n)
        cols["timestamp"].append(hours)
        cols["region"].append(np.full(n, region))
        cols["load_mw"].append(np.round(load, 1))
        cols["temperature_c"].append(np.round(temp, 1))
        cols["is_holiday"].append(is_holiday)
    return pa.table({
        "timestamp": pa.array(np.concatenate(cols["timestamp"]).astype("datetime64[s]")),
        "region": pa.array(np.concatenate(cols["region"])).dictionary_encode(),
        "load_mw": np.concatenate(cols["load_mw"]),
        "temperature_c": np.concatenate(cols["temperature_c"]),
        "is_holiday": np.concatenate(cols["is_holiday"]),
    })


def traffic_counts() -> pa.Table:
    rng = np.random.default_rng(20240101)
    times = np.arange(np.datetime64("2024-01-01T00:00"), np.datetime64("2024-07-01T00:00"),
                      np.timedelta64(15, "m"))
    n = len(times)
    minutes = times.astype(np.int64) % (24 * 60)
    weekday = (times.astype("datetime64[D]").astype(np.int64) + 3) % 7
    parts = {k: [] for k in ("timestamp", "sensor_id", "road", "lanes", "vehicles",
                             "heavy_vehicles", "mean_speed_kmh")}
    for s in range(60):
        motorway = s < 24
        road = f"A{1 + s % 9}" if motorway else f"B{10 + s % 17}"
        lanes = 3 if motorway else 2
        capacity = (1800 if motorway else 900) * lanes / 4
        peaks = (np.exp(-((minutes - 8 * 60) / 70) ** 2) +
                 0.9 * np.exp(-((minutes - 17.5 * 60) / 90) ** 2))
        daytime = 0.15 + 0.45 * np.clip(np.sin(np.pi * (minutes - 5 * 60) / (18 * 60)), 0, None)
        level = daytime + 0.6 * peaks * np.where(weekday >= 5, 0.35, 1.0)
        vehicles = rng.poisson(capacity * level * rng.uniform(0.7, 1.2))
        heavy = rng.binomial(vehicles, 0.14 if motorway else 0.07)
        free = 118 if motorway else 62
        speed = free * (1 - 0.55 * np.clip(vehicles / capacity - 0.6, 0, None)) \
            + rng.normal(0, 3, n)
        parts["timestamp"].append(times)
        parts["sensor_id"].append(np.full(n, f"S{s:03d}"))
        parts["road"].append(np.full(n, road))
        parts["lanes"].append(np.full(n, lanes, dtype=np.int8))
        parts["vehicles"].append(vehicles.astype(np.int32))
        parts["heavy_vehicles"].append(heavy.astype(np.int32))
        parts["mean_speed_kmh"].append(np.round(np.clip(speed, 5, None), 1))
    return pa.table({
        "timestamp": pa.array(np.concatenate(parts["timestamp"]).astype("datetime64[s]")),
        "sensor_id": pa.array(np.concatenate(parts["sensor_id"])).dictionary_encode(),
        "road": pa.array(np.concatenate(parts["road"])).dictionary_encode(),
        "lanes": np.concatenate(parts["lanes"]),
        "vehicles": np.concatenate(parts["vehicles"]),
        "heavy_vehicles": np.concatenate(parts["heavy_vehicles"]),
        "mean_speed_kmh": np.concatenate(parts["mean_speed_kmh"]),
    })


def machine_sensors() -> pa.Table:
    rng = np.random.default_rng(20250901)
    times = np.arange(np.datetime64("2025-08-01T00:00"), np.datetime64("2025-08-31T00:00"),
                      np.timedelta64(2, "m"))
    n = len(times)
    failure_types = np.array(["", "tool_wear", "overheating", "power", "overstrain"])
    parts = {k: [] for k in ("timestamp", "machine_id", "machine_type", "temperature_c",
                             "vibration_mm_s", "pressure_bar", "rpm", "tool_wear_min",
                             "failure", "failure_type")}
    for m in range(40):
        kind = "LMH"[m % 3]
        wear = np.zeros(n)
        failure = np.zeros(n, dtype=bool)
        ftype = np.zeros(n, dtype=np.int8)
        t = 0
        while t < n:  # tool changes every 3-6 h; some runs end in a failure
            run = int(rng.integers(90, 180))
            wear[t:t + run] = np.arange(min(run, n - t)) * 2
            if rng.random() < 0.18 and t + run < n:
                failure[t + run - 1] = True
                ftype[t + run - 1] = rng.integers(1, 5)
            t += run
        temp = 62 + 6 * (kind == "H") + wear * 0.02 + rng.normal(0, 1.2, n)
        vib = 2.2 + wear * 0.004 + rng.gamma(2, 0.25, n)
        rpm = rng.normal(1500 + 200 * (kind == "L"), 60, n)
        for i in np.flatnonzero(failure):  # the hour before a failure drifts
            lo = max(0, i - 30)
            ramp = np.linspace(0, 1, i + 1 - lo)
            temp[lo:i + 1] += 9 * ramp
            vib[lo:i + 1] += 3 * ramp
        parts["timestamp"].append(times)
        parts["machine_id"].append(np.full(n, f"M{m:02d}"))
        parts["machine_type"].append(np.full(n, kind))
        parts["temperature_c"].append(np.round(temp, 2))
        parts["vibration_mm_s"].append(np.round(vib, 3))
        parts["pressure_bar"].append(np.round(rng.normal(6.0, 0.15, n), 3))
        parts["rpm"].append(np.round(rpm).astype(np.int32))
        parts["tool_wear_min"].append(wear.astype(np.int32))
        parts["failure"].append(failure)
        parts["failure_type"].append(failure_types[ftype])
    return pa.table({
        "timestamp": pa.array(np.concatenate(parts["timestamp"]).astype("datetime64[s]")),
        "machine_id": pa.array(np.concatenate(parts["machine_id"])).dictionary_encode(),
        "machine_type": pa.array(np.concatenate(parts["machine_type"])).dictionary_encode(),
        **{k: np.concatenate(parts[k]) for k in ("temperature_c", "vibration_mm_s",
                                                 "pressure_bar", "rpm", "tool_wear_min",
                                                 "failure")},
        "failure_type": pa.array(np.concatenate(parts["failure_type"])).dictionary_encode(),
    })


def crop_yields() -> pa.Table:
    rng = np.random.default_rng(20000101)
    crops = {"wheat": 5.8, "maize": 8.9, "barley": 4.9, "rapeseed": 3.2, "sugar_beet": 72.0,
             "potatoes": 34.0, "sunflower": 2.3, "rye": 4.1}
    countries = ["DE", "FR", "IT", "ES", "PL", "NL", "BE", "AT", "CZ", "RO", "HU", "DK"]
    rows = {k: [] for k in ("region", "country", "year", "crop", "area_ha", "production_t",
                            "yield_t_ha", "precipitation_mm", "mean_temp_c")}
    for r in range(120):
        country = countries[r % len(countries)]
        region = f"{country}{(r // len(countries)) + 1:02d}"
        soil = rng.normal(1.0, 0.12)
        climate_p = rng.uniform(350, 900)
        climate_t = rng.uniform(8, 17)
        for year in range(2000, 2025):
            precip = max(120.0, rng.normal(climate_p, 110))
            temp = climate_t + 0.035 * (year - 2000) + rng.normal(0, 0.8)
            for crop, base in crops.items():
                if rng.random() < 0.15:
                    continue
                trend = 1 + 0.008 * (year - 2000)
                stress = 1 - 0.0009 * max(0, 450 - precip) - 0.03 * max(0, temp - 15)
                yld = max(0.2, base * soil * trend * stress * rng.normal(1, 0.07))
                area = float(np.round(rng.lognormal(9.5, 0.8)))
                rows["region"].append(region)
                rows["country"].append(country)
                rows["year"].append(year)
                rows["crop"].append(crop)
                rows["area_ha"].append(area)
                rows["production_t"].append(round(area * yld, 1))
                rows["yield_t_ha"].append(round(yld, 3))
                rows["precipitation_mm"].append(round(precip, 1))
                rows["mean_temp_c"].append(round(temp, 2))
    table = pa.table(rows)
    return table.set_column(2, "year", table["year"].cast(pa.int16()))


def health_admissions() -> pa.Table:
    rng = np.random.default_rng(20251101)
    n_patients, key = 40_000, b"demo-pseudonymisation-key"
    patients = [hashlib.sha256(key + str(i).encode()).hexdigest()[:16]
                for i in range(n_patients)]
    age = rng.integers(0, 95, n_patients)
    sex = rng.choice(["F", "M"], n_patients)
    region = rng.choice(REGIONS, n_patients)
    chapters = {"I": ("I10", "I21", "I48", "I50"), "J": ("J18", "J44", "J45"),
                "E": ("E11", "E86"), "K": ("K35", "K80"), "S": ("S72", "S06"),
                "C": ("C34", "C50", "C18"), "N": ("N39", "N18"), "F": ("F32", "F10")}
    chapter_names = list(chapters)
    per_patient = rng.poisson(1.6, n_patients) + 1
    idx = np.repeat(np.arange(n_patients), per_patient)
    n = len(idx)
    old = age[idx] >= 65
    ch = rng.choice(len(chapter_names), n, p=[.2, .15, .1, .1, .12, .13, .1, .1])
    codes = [chapters[chapter_names[c]][rng.integers(len(chapters[chapter_names[c]]))]
             for c in ch]
    stay = rng.gamma(2.0 + 1.5 * old, 2.2).round().astype(np.int16) + 1
    admitted = np.datetime64("2022-01-01") + rng.integers(0, 3 * 365, n).astype("timedelta64[D]")
    crp = np.round(rng.lognormal(2.0 + 0.8 * np.isin(ch, [1, 6]), 0.9), 1)
    hb = np.round(rng.normal(13.5 - 0.8 * (sex[idx] == "F") - 0.6 * old, 1.4), 1)
    creat = np.round(rng.lognormal(-0.05 + 0.35 * (np.array(codes) == "N18"), 0.25), 2)
    risk = -2.6 + 0.6 * old + 0.08 * stay + 0.4 * np.isin(ch, [0, 5]) + 0.01 * crp
    readmit = rng.random(n) < 1 / (1 + np.exp(-risk))
    band = np.minimum(age[idx] // 10 * 10, 90)
    bands = np.array([f"{b}-{b + 9}" if b < 90 else "90+" for b in range(0, 100, 10)])
    return pa.table({
        "patient_pseudonym": pa.array([patients[i] for i in idx]),
        "admission_month": pa.array(admitted.astype("datetime64[M]").astype(str)),
        "age_band": pa.array(bands[band // 10]).dictionary_encode(),
        "sex": pa.array(sex[idx]).dictionary_encode(),
        "region": pa.array(region[idx]).dictionary_encode(),
        "icd10_chapter": pa.array(np.array(chapter_names)[ch]).dictionary_encode(),
        "icd10_code": pa.array(codes).dictionary_encode(),
        "length_of_stay_days": stay,
        "crp_mg_l": crp,
        "haemoglobin_g_dl": hb,
        "creatinine_mg_dl": creat,
        "readmitted_30d": readmit,
    })


#: dataset id -> (file name, generator): the demo catalogue's distributions
DEMO: dict[str, tuple[str, Callable[[], pa.Table]]] = {
    "grid-load": ("grid_load.parquet", grid_load),
    "traffic-counts": ("traffic_counts.parquet", traffic_counts),
    "machine-sensors": ("machine_sensors.parquet", machine_sensors),
    "crop-yields": ("crop_yields.parquet", crop_yields),
    "health-records": ("admissions.parquet", health_admissions),
}


def generate(root: Path, only: list[str] | None = None) -> list[str]:
    """Write every demo dataset that is missing under ``root/<id>/``; returns those written.
    Directories are created root-only (0700); :mod:`fsaccess` then opens them to readers."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    written = []
    for dataset_id, (name, make) in DEMO.items():
        if only and dataset_id not in only:
            continue
        directory = root / dataset_id
        target = directory / name
        if target.exists():
            continue
        directory.mkdir(mode=0o700, exist_ok=True)
        with atomicfile.replacing(target, 0o600) as tmp:
            pq.write_table(make(), tmp, compression="zstd", row_group_size=256 * 1024)
        written.append(dataset_id)
    return written
