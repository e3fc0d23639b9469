"""What every web API of the workbench reads from a request, with limits: one JSON body
reader, and whole numbers from query parameters and paths.

The hub services (``extensions/hubservice.py``), the hub's own extra APIs (``spawners/``)
and the session servers' handlers (``extensions/*/handlers.py``) all read bodies here, so a
hostile body is refused the same way everywhere, with a 4xx and a message, never a 500:

- a body over ``MAX_BODY`` bytes: 413;
- not UTF-8, not JSON, nested deeper than ``MAX_DEPTH``, an integer of more than
  ``MAX_INT_DIGITS`` digits (Python's ``int()`` refuses 4,300 with a ``ValueError``, a
  database column overflows long before), ``NaN``/``Infinity`` or a number beyond a float:
  400.

Whole numbers are ASCII digits only: ``str.isdigit()`` also accepts ``²`` and ``①``, which
``int()`` refuses.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tornado.web import RequestHandler

#: the largest request body read, in bytes
MAX_BODY = 64 * 1024
#: how deep arrays and objects may nest in a body
MAX_DEPTH = 32
#: the most digits of an integer in a body: every integer read fits a signed 64-bit column
MAX_INT_DIGITS = 18

#: a string (to its end, or the text's end when unterminated) or a bracket, left to right
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)
_WHOLE = re.compile(r"[0-9]+")


class BadInput(ValueError):
    """A request refused for what it sent: ``status`` (400, 413), ``message`` for the caller,
    ``field`` the parameter or body field it names (None for the body as a whole)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadInput(400, f"the body holds an integer of {len(text.lstrip('-'))} digits; "
                            f"at most {MAX_INT_DIGITS} are read")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadInput(400, f"the body holds a number out of range: {text[:40]}")
    return value


def _constant(name: str):
    raise BadInput(400, f"the body holds {name}, which is not JSON")


def depth(text: str) -> int:
    """How deep arrays and objects nest in the JSON ``text`` (brackets in strings do not
    count); counted without recursion, whatever the depth."""
    deepest = level = 0
    for token in _TOKEN.findall(text):
        if token in ("[", "{"):
            level += 1
            deepest = max(deepest, level)
        elif token in ("]", "}"):
            level -= 1
    return deepest


def read_json(raw: bytes | None, max_bytes: int = MAX_BODY) -> Any:
    """The request body ``raw`` as JSON, None when empty; :class:`BadInput` otherwise."""
    if not raw:
        return None
    if len(raw) > max_bytes:
        raise BadInput(413, f"the request body is over {max_bytes // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(400, f"the body is not UTF-8 text: {e.reason} at byte {e.start}") from e
    if depth(text) > MAX_DEPTH:
        raise BadInput(400, f"the body nests arrays and objects more than {MAX_DEPTH} deep")
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise BadInput(400, f"the body is not JSON: {e}") from e
    except RecursionError as e:  # not reached after the depth check; never a 500 anyway
        raise BadInput(400, "the body nests too deep") from e


def whole(text: str, signed: bool = False, max_digits: int = MAX_INT_DIGITS) -> int | None:
    """The whole number ``text`` ("-3" too when ``signed``) of ASCII digits, else None."""
    digits = text[1:] if signed and text.startswith("-") else text
    if not _WHOLE.fullmatch(digits) or len(digits) > max_digits:
        return None
    return int(text)


def query_int(name: str, text: str, lowest: int = 0, highest: int | None = None) -> int:
    """The query parameter ``name``'s value ``text`` as a whole number in range; else
    :class:`BadInput` 400 naming ``name``."""
    value = whole(text.strip())
    if value is None or value < lowest or (highest is not None and value > highest):
        most = f" to {highest:,}" if highest is not None else " or more"
        raise BadInput(400, f"{name} must be a whole number (digits 0-9) from {lowest}{most}",
                       field=name)
    return value


def json_body(handler: RequestHandler) -> Any:
    """A Tornado handler's request body through :func:`read_json`; a refusal is an
    ``HTTPError`` that the JupyterHub and Jupyter server API handlers answer as JSON with its
    message. Hub-side and session-side handlers call it in place of their own
    ``get_json_body``."""
    from tornado.web import HTTPError  # only the web handlers need it
    try:
        return read_json(handler.request.body)
    except BadInput as e:
        raise HTTPError(e.status, e.message.replace("%", "%%")) from None
