"""Compile BMv2 type-value objects and expression trees into closures ``fn(state, params)``.

Semantics follow bm_sim: arithmetic is infinite precision (Python ints) and a value is truncated
to the destination's width only when it is written into a field; p4c makes wrap-around explicit
with ``&`` masks and ``two_comp_mod``. Signed fields hold their two's-complement value as a
negative int. Booleans and data stay apart (``d2b``/``b2d``), as in bm_sim.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from softswitch.codegen import MAX_SOURCE_DEPTH, Generated, TooDeep
from softswitch.json_model import FieldInfo, HeaderInfo, Layout, fail, get, parse_hexstr
from softswitch.state import PacketState

Params = tuple[int, ...]
Expr = Callable[[PacketState, Params], Any]
Setter = Callable[[PacketState, Params, int], None]

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "<<": operator.lshift,
    ">>": operator.rshift,
    "&": operator.and_,
    "|": operator.or_,
    "^": operator.xor,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _constant(node: Any) -> int | None:
    if isinstance(node, dict) and node.get("type") == "hexstr":
        try:
            return parse_hexstr(node.get("value"), "")
        except Exception:
            return None
    return None


# Closures for ``expr OP constant``: p4c's masks, increments and comparisons against literals
# are most of the expressions on a hot path; specializing skips one call per evaluation.
_WITH_CONSTANT: dict[str, Callable[[Expr, int], Expr]] = {
    "&": lambda e, c: lambda s, p: e(s, p) & c,
    "|": lambda e, c: lambda s, p: e(s, p) | c,
    "+": lambda e, c: lambda s, p: e(s, p) + c,
    "-": lambda e, c: lambda s, p: e(s, p) - c,
    "<<": lambda e, c: lambda s, p: e(s, p) << c,
    ">>": lambda e, c: lambda s, p: e(s, p) >> c,
    "==": lambda e, c: lambda s, p: e(s, p) == c,
    "!=": lambda e, c: lambda s, p: e(s, p) != c,
    "<": lambda e, c: lambda s, p: e(s, p) < c,
    "<=": lambda e, c: lambda s, p: e(s, p) <= c,
    ">": lambda e, c: lambda s, p: e(s, p) > c,
    ">=": lambda e, c: lambda s, p: e(s, p) >= c,
}


def truncator(width: int, signed: bool) -> Callable[[int], int]:
    """How a value is stored into a field of ``width`` bits."""
    mask = (1 << width) - 1
    if not signed:
        return lambda v: v & mask
    half = 1 << (width - 1)
    return lambda v: ((v + half) & mask) - half


def field_setter(fi: FieldInfo) -> Callable[[PacketState, int], None]:
    slot = fi.slot
    if fi.width == 0:  # varbit: stored as is, width tracked by the extractor

        def set_vl(s: PacketState, v: int) -> None:
            s.f[slot] = v

        return set_vl
    mask = (1 << fi.width) - 1
    if not fi.signed:

        def set_unsigned(s: PacketState, v: int) -> None:
            s.f[slot] = v & mask

        return set_unsigned
    trunc = truncator(fi.width, True)

    def set_signed(s: PacketState, v: int) -> None:
        s.f[slot] = trunc(v)

    return set_signed


def _safe_div(a: int, b: int) -> int:
    # bm_sim would abort on a zero divisor; a switch must not, so it yields 0.
    return 0 if b == 0 else int(a / b) if (a < 0) != (b < 0) else a // b


def _safe_mod(a: int, b: int) -> int:
    return 0 if b == 0 else a - b * _safe_div(a, b)


def _checked_shift(op: Callable[[int, int], int]) -> Callable[[int, int], int]:
    # A negative or absurd shift amount from packet data must not raise or exhaust memory.
    def shift(a: int, b: int) -> int:
        if b < 0:
            return 0
        return op(a, min(b, 4096))

    return shift


# Operators whose JSON nodes the source generator hands to the closures (rare on a hot path).
_CLOSURE_ONLY = frozenset({
    "access_field", "access_union_header", "valid_union", "dereference_union_stack",
    "dereference_header_stack", "last_stack_index", "size_stack",
})
_NAMED = ("header", "header_union", "header_stack", "header_union_stack")


class ExprCompiler:
    """Turns JSON nodes into closures. ``registers`` resolves the ``register`` node type.

    With ``gen`` (codegen.Generated), an expression whose nodes all map onto Python operators
    becomes one generated function instead of a tree of closures (``source``)."""

    def __init__(self, layout: Layout, registers: dict[str, Any] | None = None,
                 gen: Generated | None = None) -> None:
        self.layout = layout
        self.registers = registers or {}
        self.gen = gen
        self._masked: dict[str, tuple[str, int]] = {}  # source "(x & c)" -> (x, c), for folding

    # ---- rvalues -------------------------------------------------------------------------
    def compile(self, node: Any, path: str) -> Expr:
        if self.gen is not None:
            try:
                return self.gen.function("expr", "s, p", [f"return {self.source(node, path)}"])
            except TooDeep:
                pass
        return self._closure(node, path)

    def source(self, node: Any, path: str, depth: int = 0) -> str:
        """A Python expression over ``s`` (PacketState) and ``p`` (action data) computing the
        node, validated as ``_closure`` validates it; sub-nodes it does not inline become calls
        to their closure, subtrees past MAX_SOURCE_DEPTH calls to their own generated function
        (needs ``self.gen``)."""
        assert self.gen is not None
        if depth > MAX_SOURCE_DEPTH:  # a deeper subtree becomes its own generated function
            return self._call(self.compile(node, path))
        kind = get(node, "type", path, str)
        value = node.get("value")
        if kind == "field":
            hdr, fi = self.layout.field(value, f"{path}.value")
            return f"int(s.valid[{hdr.index:d}])" if fi is None else f"s.f[{fi.slot:d}]"
        if kind == "hexstr":
            return f"({parse_hexstr(value, f'{path}.value'):d})"
        if kind == "bool":
            return "True" if value else "False"
        if kind in ("runtime_data", "local") and isinstance(value, int):
            return f"p[{value:d}]"
        if kind == "expression":
            return self._expression_source(value, f"{path}.value", depth + 1)
        if kind not in ("runtime_data", "local") and self.layout.p4c_kind(kind, value) in _NAMED:
            return f"({self._named_index(self.layout.p4c_kind(kind, value), value, path):d})"
        return self._call(self._closure(node, path))

    def _call(self, fn: Callable) -> str:
        assert self.gen is not None
        return f"{self.gen.bind(fn)}(s, p)"

    def _expression_source(self, node: Any, path: str, depth: int) -> str:
        if isinstance(node, dict) and "type" in node and "op" not in node:
            return self.source(node, path, depth)
        op = get(node, "op", path, str)
        left_node, right_node = node.get("left"), node.get("right")
        if op == "?":
            c = self.source(get(node, "cond", path), f"{path}.cond", depth + 1)
            a = self.source(left_node, f"{path}.left", depth + 1)
            b = self.source(right_node, f"{path}.right", depth + 1)
            return f"({a} if {c} else {b})"
        if op in _CLOSURE_ONLY:
            return self._call(self._expression(node, path))
        r = self.source(get(node, "right", path), f"{path}.right", depth + 1)
        if op == "valid":
            return f"s.valid[{r}]"
        if op in ("not", "!"):
            return f"(not {r})"
        if op == "~":
            return f"(~{r})"
        if op == "d2b":
            valid_of = self._valid_field(get(node, "right", path))
            return f"s.valid[{valid_of:d}]" if valid_of is not None else f"bool({r})"
        if op == "b2d":
            return f"int({r})"
        if op == "-" and left_node is None:
            return f"(-{r})"
        left = self.source(left_node, f"{path}.left", depth + 1)
        if op in ("and", "or"):
            return f"(bool({left}) {op} bool({r}))"
        helper = {"two_comp_mod": _two_comp_mod, "usat_cast": _usat_cast, "sat_cast": _sat_cast,
                  "/": _safe_div, "%": _safe_mod}.get(op)
        if helper is None and op not in _BINARY:
            raise fail(path, f"unsupported operator {op!r}")
        const = _constant(right_node)
        if op in ("<<", ">>") and not (const is not None and 0 <= const <= 4096):
            helper = _checked_shift(_BINARY[op])
        if helper is not None:
            return f"{self.gen.bind(helper)}({left}, {r})"  # type: ignore[union-attr]
        if op == "&" and const is not None:
            # p4c masks the same value again at every cast: (x & a) & b is x & (a & b)
            inner, mask = self._masked.get(left, (left, -1))
            out = f"({inner} & {mask & const:d})"
            self._masked[out] = (inner, mask & const)
            return out
        return f"({left} {op} {r})"

    def _closure(self, node: Any, path: str) -> Expr:
        kind = get(node, "type", path, str)
        value = node.get("value")
        if kind == "field":
            return self._field(value, path)
        if kind == "hexstr":
            const = parse_hexstr(value, f"{path}.value")
            return lambda s, p: const
        if kind == "bool":
            b = bool(value)
            return lambda s, p: b
        if kind in ("runtime_data", "local"):
            if not isinstance(value, int):
                raise fail(path, "runtime_data index must be an integer")
            return lambda s, p: p[value]
        if kind == "expression":
            return self._expression(value, f"{path}.value")
        kind = self.layout.p4c_kind(kind, value)
        if kind in ("header", "header_union", "header_stack", "header_union_stack"):
            idx = self._named_index(kind, value, path)
            return lambda s, p: idx
        if kind == "stack_field":
            return self._stack_field(value, path)
        if kind == "string":
            return lambda s, p: value
        if kind == "register":
            return self._register(value, path)
        raise fail(path, f"unsupported operand type {kind!r}")

    def _named_index(self, kind: str, name: Any, path: str) -> int:
        """What a named header, union or stack evaluates to: its index (a union stack's is its
        cursor, which ``size_stack``/``last_stack_index`` read)."""
        if kind == "header":
            return self.layout.header(name, path).index
        if kind == "header_union":
            return self.layout.union(name, path).index
        if kind == "header_stack":
            return self.layout.stack(name, path).index
        return self.layout.union_stack(name, path).cursor

    def _field(self, ref: Any, path: str) -> Expr:
        hdr, fi = self.layout.field(ref, f"{path}.value")
        if fi is None:
            h = hdr.index
            return lambda s, p: int(s.valid[h])
        slot = fi.slot
        return lambda s, p: s.f[slot]

    def _stack_field(self, ref: Any, path: str) -> Expr:
        if not (isinstance(ref, list) and len(ref) == 2):
            raise fail(path, "stack_field needs [stack, field]")
        st = self.layout.stack(ref[0], path)
        first = self.layout.headers[st.headers[0]]
        fi = first.by_name.get(ref[1])
        if fi is None:
            raise fail(path, f"stack {st.name!r} has no field {ref[1]!r}")
        offset = fi.slot - first.base
        bases = [self.layout.headers[h].base for h in st.headers]
        sidx = st.index

        def last_field(s: PacketState, p: Params) -> int:
            n = s.stack_next[sidx]
            return s.f[bases[n - 1] + offset] if n else 0

        return last_field

    def _register(self, value: Any, path: str) -> Expr:
        if not (isinstance(value, list) and len(value) == 2):
            raise fail(path, "register needs [name, index]")
        reg = self.registers.get(value[0])
        if reg is None:
            raise fail(path, f"unknown register array {value[0]!r}")
        index = self.compile(value[1], f"{path}.value[1]")
        return lambda s, p: reg.read(index(s, p))

    def _expression(self, node: Any, path: str) -> Expr:
        if isinstance(node, dict) and "type" in node and "op" not in node:
            return self.compile(node, path)
        op = get(node, "op", path, str)
        left_node, right_node = node.get("left"), node.get("right")
        if op == "?":
            cond = self.compile(get(node, "cond", path), f"{path}.cond")
            a = self.compile(left_node, f"{path}.left")
            b = self.compile(right_node, f"{path}.right")
            return lambda s, p: a(s, p) if cond(s, p) else b(s, p)
        if op == "access_field":
            return self._access_field(node, path)
        if op == "access_union_header":
            return self._access_union_header(node, path)
        right = self.compile(get(node, "right", path), f"{path}.right")
        if op == "valid":
            return lambda s, p: s.valid[right(s, p)]
        if op == "valid_union":
            return self._valid_union(right)
        if op == "dereference_union_stack":
            return self._deref_union(node, path, right)
        if op in ("not", "!"):
            return lambda s, p: not right(s, p)
        if op == "~":
            return lambda s, p: ~right(s, p)
        if op == "d2b":
            valid_of = self._valid_field(get(node, "right", path))
            if valid_of is not None:  # isValid(), the most common condition
                return lambda s, p: s.valid[valid_of]
            return lambda s, p: bool(right(s, p))
        if op == "b2d":
            return lambda s, p: int(right(s, p))
        if op == "dereference_header_stack":
            return self._deref(node, path, right)
        if op in ("last_stack_index", "size_stack"):
            delta = 1 if op == "last_stack_index" else 0
            return lambda s, p: s.stack_next[right(s, p)] - delta
        if op == "-" and left_node is None:
            return lambda s, p: -right(s, p)
        left = self.compile(left_node, f"{path}.left")
        if op == "and":
            return lambda s, p: bool(left(s, p)) and bool(right(s, p))
        if op == "or":
            return lambda s, p: bool(left(s, p)) or bool(right(s, p))
        if op == "two_comp_mod":
            return lambda s, p: _two_comp_mod(left(s, p), right(s, p))
        if op == "usat_cast":
            return lambda s, p: _usat_cast(left(s, p), right(s, p))
        if op == "sat_cast":
            return lambda s, p: _sat_cast(left(s, p), right(s, p))
        fn = {"/": _safe_div, "%": _safe_mod}.get(op) or _BINARY.get(op)
        if fn is None:
            raise fail(path, f"unsupported operator {op!r}")
        const = _constant(right_node)
        if op in ("<<", ">>") and not (const is not None and 0 <= const <= 4096):
            fn = _checked_shift(fn)
        elif const is not None and op in _WITH_CONSTANT:
            return _WITH_CONSTANT[op](left, const)
        return lambda s, p: fn(left(s, p), right(s, p))

    def _valid_field(self, node: Any) -> int | None:
        """The header index when ``node`` is the hidden ``$valid$`` field, else None."""
        if isinstance(node, dict) and node.get("type") == "field":
            ref = node.get("value")
            if isinstance(ref, list) and len(ref) == 2 and ref[1] == "$valid$":
                return self.layout.header(ref[0], "$valid$").index
        return None

    def _deref(self, node: dict, path: str, index: Expr) -> Expr:
        st_node = get(node, "left", path, dict)
        return _element(self.layout.stack(st_node.get("value"), f"{path}.left").headers, index)

    def _valid_union(self, union: Expr) -> Expr:
        """bm_sim VALID_UNION: a union is valid when one of its members is (HeaderUnion keeps
        at most one member valid)."""
        members = [u.members for u in self.layout.unions]

        def valid_union(s: PacketState, p: Params) -> bool:
            valid = s.valid
            return any(valid[m] for m in members[union(s, p)])

        return valid_union

    def _deref_union(self, node: dict, path: str, index: Expr) -> Expr:
        """bm_sim DEREFERENCE_UNION_STACK: the union at a runtime index of a union stack."""
        us = self.layout.union_stack(get(node, "left", path, dict).get("value"), f"{path}.left")
        return _element(us.unions, index)

    def _access_union_header(self, node: dict, path: str) -> Expr:
        """bm_sim ACCESS_UNION_HEADER: the member at a constant offset of a union."""
        union = self.compile(get(node, "left", path), f"{path}.left")
        offset = get(node, "right", path, int)
        members = [u.members for u in self.layout.unions]

        def member(s: PacketState, p: Params) -> int:
            return members[union(s, p)][offset]

        return member

    def _access_field(self, node: dict, path: str) -> Expr:
        header = self.compile(get(node, "left", path), f"{path}.left")
        offset = get(node, "right", path, int)
        bases = [h.base for h in self.layout.headers]
        return lambda s, p: s.f[bases[header(s, p)] + offset]

    # ---- lvalues -------------------------------------------------------------------------
    def compile_setter(self, node: Any, path: str) -> Setter:
        """Write access for an assignment target: a field, a stack field or ``access_field``."""
        kind = get(node, "type", path, str)
        value = node.get("value")
        if kind == "field":
            _hdr, fi = self.layout.field(value, f"{path}.value")
            if fi is None:
                raise fail(path, "cannot assign the read-only $valid$ field")
            setter = field_setter(fi)
            return lambda s, p, v: setter(s, v)
        if kind == "expression":
            inner = value
            while isinstance(inner, dict) and inner.get("type") == "expression":
                inner = inner.get("value")
            if isinstance(inner, dict) and inner.get("op") == "access_field":
                return self._access_field_setter(inner, path)
        if kind == "stack_field":
            return self._stack_field_setter(value, path)
        raise fail(path, f"not an assignable target: {kind!r}")

    def _access_field_setter(self, node: dict, path: str) -> Setter:
        header = self.compile(get(node, "left", path), f"{path}.left")
        offset = get(node, "right", path, int)
        setters = [_offset_setters(h) for h in self.layout.headers]

        def set_access(s: PacketState, p: Params, v: int) -> None:
            setters[header(s, p)][offset](s, v)

        return set_access

    def _stack_field_setter(self, ref: Any, path: str) -> Setter:
        st = self.layout.stack(ref[0], path)
        hdrs = [self.layout.headers[h] for h in st.headers]
        fi0 = hdrs[0].by_name.get(ref[1])
        if fi0 is None:
            raise fail(path, f"stack {st.name!r} has no field {ref[1]!r}")
        k = fi0.slot - hdrs[0].base
        setters = [field_setter(h.fields[k]) for h in hdrs]
        sidx = st.index

        def set_last(s: PacketState, p: Params, v: int) -> None:
            n = s.stack_next[sidx]
            if n:
                setters[n - 1](s, v)

        return set_last


def _element(elements: list[int], index: Expr) -> Expr:
    """The stack element at a runtime index; out-of-range indices read/write the last element,
    as BMv2 does not trap."""
    last = len(elements) - 1

    def element(s: PacketState, p: Params) -> int:
        i = index(s, p)
        return elements[i] if 0 <= i <= last else elements[last]

    return element


def _offset_setters(h: HeaderInfo) -> list[Callable[[PacketState, int], None]]:
    return [field_setter(fi) for fi in h.fields]


def _two_comp_mod(v: int, width: int) -> int:
    if width <= 0:
        return 0
    half = 1 << (width - 1)
    return ((v + half) & ((1 << width) - 1)) - half


def _usat_cast(v: int, width: int) -> int:
    return max(0, min(v, (1 << width) - 1))


def _sat_cast(v: int, width: int) -> int:
    if width <= 0:
        return 0
    hi = (1 << (width - 1)) - 1
    return max(-hi - 1, min(v, hi))
