"""Writing a file whole or not at all.

The content goes to a new temporary file beside the target (unique per process and thread),
is flushed to disk, given its mode, and renamed over the target with ``os.replace``: a reader
sees the old content or the new, never half of either, and a crash leaves no torn target.
On an error the temporary file is removed and the target is left as it was.

``write_json(path, obj)``, ``write_text`` and ``write_bytes`` write a value;
``replacing(path)`` hands out the temporary path for a writer that wants a file name (e.g.
``pyarrow.parquet.write_table``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync(path: Path | str, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: Path | str, mode: int = 0o600) -> Iterator[Path]:
    """A temporary path in ``path``'s directory; when the block ends without an error it is
    synced, given ``mode`` and renamed over ``path`` (and the directory synced)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, os.O_RDONLY | os.O_DIRECTORY)


def write_bytes(path: Path | str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` at once (see the module)."""
    with replacing(path, mode) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path | str, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` (UTF-8) at once."""
    write_bytes(path, text.encode(), mode)


def write_json(path: Path | str, obj, mode: int = 0o600, **dumps) -> None:
    """Replace ``path`` with ``obj`` as JSON at once; ``dumps``: ``json.dumps`` options
    (``indent``, ``sort_keys``...)."""
    write_text(path, json.dumps(obj, **dumps), mode)
