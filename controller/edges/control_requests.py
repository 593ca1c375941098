"""Control-socket requests checked before a handler sees them: one line of JSON, bounded in
depth, an object with a string ``op`` and arguments of the types that op takes.

Whoever can open the socket may send anything; a bad request must cost that request an
answer naming what is wrong, never a traceback (a list as a switch name used to reach
``dict`` lookups as an unhashable key, a deeply nested line ``json.loads``'s recursion).
A request is an object of scalars and lists of strings, so its depth is 2; nothing legitimate
comes near ``MAX_DEPTH``, and the check runs before ``json.loads`` recurses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 16
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # a JSON string, escapes included
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")  # every byte but the brackets


class BadRequest(ValueError):
    """The request is malformed; the message says how (sent back as the answer's error)."""


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of an op: its JSON type and whether the op needs it."""

    kind: type
    required: bool = False
    items: type | None = None  # the element type of a list


SWITCH = Arg(str)  # a switch's name (its config file's stem)
SHAPES: dict[str, dict[str, Arg]] = {
    "ping": {},
    "snapshot": {"switch": SWITCH},
    "ruleset": {"switch": SWITCH},
    "ruleset_apply": {"switch": SWITCH, "text": Arg(str, required=True),
                      "filename": Arg(str)},
    "monitor": {"switch": SWITCH, "types": Arg(list, items=str)},
}
"""The arguments each op takes; an op not listed here is checked for ``switch`` only."""
_GENERIC = {"switch": SWITCH}


def decode(line: bytes) -> dict[str, Any]:
    """The request on ``line``, or BadRequest."""
    try:
        if too_deep(line):
            json.loads(line)  # a syntax error is the better message when there is one
            raise RecursionError
        request = json.loads(line)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise BadRequest(str(exc)) from None
    except RecursionError:
        raise BadRequest(f"arrays and objects nested deeper than {MAX_DEPTH}") from None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise BadRequest("a request is a JSON object with a string 'op'")
    return request


def too_deep(line: bytes) -> bool:
    """Whether arrays and objects on ``line`` nest deeper than MAX_DEPTH (brackets inside
    strings do not count).

    All at C speed, before ``json.loads`` recurses: strings go (one regex pass), then every
    byte but brackets, then MAX_DEPTH times the innermost empty pairs; brackets left over are
    deeper than that (or unbalanced, which ``json.loads`` then names).
    """
    brackets = _STRING.sub(b"", line).translate(None, _BRACKETS)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"").replace(b"{}", b"")
    return bool(brackets)


def check(request: dict[str, Any]) -> None:
    """BadRequest unless every argument of ``request`` has the type its op takes."""
    op = request["op"]
    shape = SHAPES.get(op)
    for name, arg in (shape or _GENERIC).items():
        if name not in request:
            if arg.required:
                raise BadRequest(f"{op}: missing '{name}'")
            continue
        value = request[name]
        if not _is(value, arg.kind):
            raise BadRequest(f"{op}: '{name}' must be {_NAMES[arg.kind]}"
                             f"{_of(arg)}, not {_json_type(value)}")
        bad = next((i for i, v in enumerate(value) if not _is(v, arg.items)), None) \
            if arg.items is not None else None
        if bad is not None:
            raise BadRequest(f"{op}: '{name}' must be {_NAMES[arg.kind]}{_of(arg)}; item "
                             f"{bad} is {_json_type(value[bad])}")
    if shape is not None:
        unknown = sorted(set(request) - set(shape) - {"op"})
        if unknown:
            takes = ", ".join(shape) or "no arguments"
            raise BadRequest(f"{op}: unknown argument {unknown[0]!r} (takes: {takes})")


def _of(arg: Arg) -> str:
    return f" of {_NAMES[arg.items][2:]}s" if arg.items is not None else ""


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


_NAMES = {str: "a string", list: "an array", int: "an integer", dict: "an object"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return _NAMES.get(type(value), type(value).__name__)
