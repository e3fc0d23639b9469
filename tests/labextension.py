"""The check every prebuilt JupyterLab extension of the project shares: it was built from its
sources as they are now (the digest its ``build.sh`` records) and its entry point is there."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def check_prebuilt(src: Path, built: Path, sources: tuple[str, ...]) -> dict:
    """Assert ``built`` holds the extension built from ``src``'s ``sources``; its package.json."""
    digest = hashlib.sha256(b"".join((src / name).read_bytes() for name in sources)).hexdigest()
    where = src.relative_to(ROOT)
    assert (built / "source.sha256").read_text().strip() == digest, \
        f"{where} changed: run {where}/build.sh"
    meta = json.loads((built / "package.json").read_text())
    assert (built / meta["jupyterlab"]["_build"]["load"]).is_file()
    return meta
