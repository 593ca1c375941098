"""Load-time specialisation: straight-line Python generated once from the BMv2 JSON.

The closures of ``expressions.py`` and ``actions.py`` cost one Python call per JSON node on every
packet (a NAT action's checksum arithmetic is a dozen nested calls per assignment). For the node
shapes that map one-to-one onto a Python expression or statement, the compilers emit source text
instead and compile it here, once per program: the same operators on the same values, so the
semantics are those of the closures (INTERPRETER.md), with the per-node call gone.

Injection safety: no name or string from the JSON ever reaches the source. Generated code holds
only integer literals (formatted with ``%d``), Python operators, ``s``/``p``/``f`` and identifiers
made here (``_k0``, ``_k1``, ...) that are bound in the function's namespace to objects the
compilers built (closures, helpers). ``Generated.dump()`` prints every function for debugging;
``SOFTSWITCH_GENERIC=1`` (or ``specialise=False``) keeps the closure path for comparison.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

# CPython's parser refuses deeper nesting (tokenizer MAXLEVEL, 200 parentheses); stay well below.
MAX_SOURCE_DEPTH = 80


class TooDeep(Exception):
    """Source CPython's parser refuses (nesting beyond its limits): an expression keeps its
    closure; anywhere else ``Pipeline.from_json`` falls back to the closure interpreter."""


def specialise_default() -> bool:
    """Specialisation is on unless SOFTSWITCH_GENERIC=1 asks for the closure interpreter."""
    return os.environ.get("SOFTSWITCH_GENERIC", "") not in ("1", "true", "yes")


def packed_source(specs: Sequence[tuple[int, int, int]]) -> str:
    """Fields ``(slot, width, mask)`` of ``f`` packed MSB-first into one int, as source: the
    shifts a serializer and a checksum input both make."""
    shift = sum(width for _, width, _ in specs)
    terms = []
    for slot, width, mask in specs:
        shift -= width
        terms.append(f"((f[{slot:d}] & {mask:d}) << {shift:d})")
    return " | ".join(terms) or "0"


class Generated:
    """The namespace and source text of one program's generated functions."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__builtins__": {"int": int, "bool": bool, "len": len}}
        self.sources: list[str] = []
        self._bound = 0

    def bind(self, obj: Any) -> str:
        """A fresh identifier bound to ``obj`` in the generated code's namespace."""
        name = f"_k{self._bound}"
        self._bound += 1
        self.namespace[name] = obj
        return name

    def resolve(self, name: str, obj: Any) -> None:
        """Bind ``name`` (from ``bind(None)``) once its object exists: control nodes refer to
        nodes built after them."""
        self.namespace[name] = obj

    def function(self, kind: str, params: str, body: list[str]) -> Callable:
        """Compile ``def <kind>_N(params): body`` and return the function."""
        name = f"{kind}_{len(self.sources)}"
        src = f"def {name}({params}):\n" + "".join(f"    {line}\n" for line in body or ["pass"])
        try:
            code = compile(src, f"<softswitch {name}>", "exec")
        except (SyntaxError, RecursionError, MemoryError) as exc:  # nesting beyond the parser
            raise TooDeep(name) from exc
        exec(code, self.namespace)
        self.sources.append(src)
        return self.namespace.pop(name)

    def dump(self) -> str:
        """Every generated function, in the order they were made."""
        return "\n".join(self.sources)
