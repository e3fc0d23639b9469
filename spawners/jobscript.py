"""The batch script of a notebook server job, rendered from ``templates/job.sh.j2``."""

from __future__ import annotations

import shlex
from pathlib import Path

import jinja2

from workbench.tags import session_job_name

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
)
_TEMPLATES.filters["shquote"] = shlex.quote


def render_job_script(request, *, user: str, server: str, tag: str, homedir: str, output: str,
                      env_names, env_path: str, prologue: str, argv: list[str]) -> str:
    """``request`` is a validated :class:`~workbench.resources.ResourceRequest`; the rest comes
    from the hub's config. ``env_names`` are the variables the job keeps (``--export``): their
    names are written, never their values."""
    return _TEMPLATES.get_template("job.sh.j2").render(
        job_name=session_job_name(user, server), tag=tag,
        request=request, homedir=homedir, output=output, keepvars=",".join(sorted(env_names)),
        env_path=env_path, prologue=prologue, cmd=" ".join(shlex.quote(a) for a in argv))
