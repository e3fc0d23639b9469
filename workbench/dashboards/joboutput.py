"""The tail of a job's output file, for support engineers: bounded and path-checked.

The support service reads as root, so the path is never taken from a viewer: it is the
spawner's output pattern (``{homedir}/.jupyterhub-slurm-%j.log``) or Slurm's default
(``slurm-%j.out`` in the home), for a job id (an integer) of a user that exists. The file
must be a regular file inside that user's home, owned by that user, opened without following
a symbolic link; only its last ``max_bytes`` are read.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

#: output files tried, relative to the owner's home (%j: the job id)
PATTERNS = (".jupyterhub-slurm-%j.log", "slurm-%j.out")

#: the most that is read of one file, in bytes
MAX_BYTES = 16 * 1024


class OutputError(LookupError):
    """No output can be shown; ``str(e)`` says why."""


def home_of(user: str) -> Path:
    try:
        return Path(pwd.getpwnam(user).pw_dir)
    except KeyError as e:
        raise OutputError(f"There is no user {user!r} on this system.") from e


def tail(user: str, job_id: int | str, max_bytes: int = MAX_BYTES, max_lines: int = 60,
         home: Path | None = None) -> tuple[Path, str]:
    """(path, text): the last ``max_lines`` lines (within ``max_bytes``) of the output of
    ``user``'s job ``job_id``."""
    job = str(job_id).split("_")[0]
    if not job.isdigit():
        raise OutputError(f"{job_id!r} is not a job id.")
    home = (home or home_of(user)).resolve()
    uid = pwd.getpwnam(user).pw_uid
    for pattern in PATTERNS:
        path = home / pattern.replace("%j", job)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise OutputError(f"The output of job {job} cannot be read ({e.strerror}).") from e
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise OutputError(f"{path} is not a regular file; not shown.")
            if st.st_uid != uid:
                raise OutputError(f"{path} does not belong to {user}; not shown.")
            if path.parent.resolve() != home:
                raise OutputError(f"{path} is outside {user}'s home; not shown.")
            f.seek(max(st.st_size - max_bytes, 0))
            data = f.read(max_bytes)
        lines = data.decode("utf-8", errors="replace").splitlines()
        if st.st_size > max_bytes and lines:
            lines = lines[1:]  # the first line was cut
        return path, "\n".join(lines[-max_lines:])
    raise OutputError(f"No output file of job {job} in {user}'s home (looked for "
                      f"{', '.join(p.replace('%j', job) for p in PATTERNS)}).")
