"""The programmable parser: parse states compiled into closures that extract from ``state.data``.

Errors follow P4/v1model: an extract past the end raises PacketTooShort, a select without a match
NoMatch, a full stack StackOutOfBounds, a failed ``verify`` its own error. The pipeline catches the
error, keeps what was extracted so far and continues with ``parser_error`` set, as BMv2 does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from softswitch.expressions import Expr, ExprCompiler
from softswitch.json_model import HeaderInfo, Layout, PipelineError, fail, get, parse_hexstr
from softswitch.state import PacketState, ParserError

Op = Callable[[PacketState, tuple], None]
State = Callable[[PacketState], Any]
MAX_STATES_PER_PACKET = 4096


@dataclass
class ValueSet:
    """A parser value set (``parse_vsets``), filled by the control plane."""

    name: str
    bitwidth: int
    max_size: int = 0
    members: list[tuple[int, int]] = field(default_factory=list)  # (value, mask)

    def add(self, value: int, mask: int | None = None) -> None:
        full = (1 << self.bitwidth) - 1
        if self.max_size and len(self.members) >= self.max_size:
            raise ValueError(f"value set {self.name} is full ({self.max_size})")
        m = full if mask is None else mask & full
        self.members.append((value & m, m))

    def clear(self) -> None:
        self.members.clear()


def _unpack_specs(h: HeaderInfo, total_bits: int, vl: int) -> list[tuple[int, int, int, int]]:
    """(slot, shift, mask, sign_half) per field for a header of ``total_bits``."""
    specs = []
    pos = total_bits
    for fi in h.fields:
        width = vl if fi.width == 0 else fi.width
        pos -= width
        half = (1 << (width - 1)) if fi.signed else 0
        specs.append((fi.slot, pos, (1 << width) - 1, half))
    return specs


def _store(s: PacketState, v: int, specs: list[tuple[int, int, int, int]]) -> None:
    f = s.f
    for slot, shift, mask, half in specs:
        x = (v >> shift) & mask
        f[slot] = x - ((x & half) << 1) if half else x


_NO_DEFAULT = object()  # marks a select without a default transition


def _exact_select(st: dict, path: str) -> tuple[dict[int, Any], Any] | None:
    """Unmasked value transitions (the common ``select``) as (value -> next state, default)."""
    table: dict[int, Any] = {}
    default: Any = _NO_DEFAULT
    if not st.get("transitions"):
        return None
    for i, t in enumerate(st["transitions"]):
        kind = t.get("type") or ("default" if t.get("value") in (None, "default") else "hexstr")
        if kind == "default":
            default = t.get("next_state")
            break  # later transitions are unreachable
        if kind != "hexstr" or t.get("mask") is not None:
            return None
        table.setdefault(parse_hexstr(t.get("value"), f"{path}.transitions[{i}]"),
                         t.get("next_state"))
    return table, default


def _dict_select(
    ops: list[Op], part: tuple, exact: tuple[dict[int, Any], Any], states: dict, no_match: int
) -> State:
    read, _, kmask = part
    table, default = exact

    def select_state(s: PacketState) -> Any:
        for op in ops:
            op(s, ())
        target = table.get(read(s, ()) & kmask, default)
        if target is _NO_DEFAULT:
            raise ParserError(no_match)
        return states[target] if target is not None else None

    return select_state


class ParserCompiler:
    def __init__(
        self,
        layout: Layout,
        exprs: ExprCompiler,
        value_sets: dict[str, ValueSet],
        compile_primitive: Callable[[dict, str], Op],
    ) -> None:
        self.layout = layout
        self.exprs = exprs
        self.value_sets = value_sets
        self.compile_primitive = compile_primitive
        self.too_short = layout.error_code("PacketTooShort")
        self.no_match = layout.error_code("NoMatch")
        self.out_of_bounds = layout.error_code("StackOutOfBounds")
        self.header_too_short = layout.error_code("HeaderTooShort")
        self.invalid_argument = layout.error_code("ParserInvalidArgument")

    def compile(self, doc: dict, path: str) -> Callable[[PacketState], None]:
        """The parser entry point: runs states until accept; raises ParserError on errors."""
        states: dict[str, State] = {}
        next_names: dict[str, list] = {}
        for i, st in enumerate(get(doc, "parse_states", path, list)):
            spath = f"{path}.parse_states[{i}]"
            name = get(st, "name", spath, str)
            states[name] = self._state(st, spath, states)
            next_names[name] = [t.get("next_state") for t in st.get("transitions") or []]
        for name, targets in next_names.items():
            for t in targets:
                if t is not None and t not in states:
                    raise fail(f"{path}.parse_states[{name}]", f"unknown next state {t!r}")
        init = get(doc, "init_state", path, str)
        if init not in states:
            raise fail(f"{path}.init_state", f"unknown state {init!r}")
        start = states[init]
        timeout = self.layout.error_code("ParserTimeout")

        def run(s: PacketState) -> None:
            state: Any = start
            budget = MAX_STATES_PER_PACKET
            while state is not None:
                budget -= 1
                if budget < 0:
                    raise ParserError(timeout)
                state = state(s)

        return run

    # ---- one state -----------------------------------------------------------------------
    def _state(self, st: dict, path: str, states: dict[str, State]) -> State:
        ops = [
            self._op(op, f"{path}.parser_ops[{i}]")
            for i, op in enumerate(st.get("parser_ops") or [])
        ]
        key_parts = [
            self._key_part(k, f"{path}.transition_key[{i}]")
            for i, k in enumerate(st.get("transition_key") or [])
        ]
        rules = [
            self._transition(t, f"{path}.transitions[{i}]", key_parts)
            for i, t in enumerate(st.get("transitions") or [])
        ]
        no_match = self.no_match
        exact = _exact_select(st, path) if len(key_parts) == 1 else None
        if self.exprs.gen is not None:
            return self._generated_state(st, path, ops, key_parts, rules, exact, states)
        if exact is not None:
            return _dict_select(ops, key_parts[0], exact, states, no_match)

        def key(s: PacketState) -> int:
            acc = 0
            for read, bits, mask in key_parts:
                acc = (acc << bits) | (read(s, ()) & mask)
            return acc

        def state(s: PacketState) -> Any:
            for op in ops:
                op(s, ())
            k = key(s) if key_parts else 0
            for matches, target, _ in rules:
                if matches(k):
                    return states[target] if target is not None else None
            if not rules:
                return None
            raise ParserError(no_match)

        return state

    def _generated_state(self, st: dict, path: str, ops: list[Op], key_parts: list,
                         rules: list, exact: tuple | None, states: dict[str, State]) -> State:
        """``state``/``select_state`` as one function: parser ops called (or a ``set``
        written) in order, the key built inline, the transitions an if-chain."""
        gen = self.exprs.gen
        assert gen is not None
        body = []
        for i, (op, node) in enumerate(zip(ops, st.get("parser_ops") or [], strict=True)):
            body.append(self._set_source(node, f"{path}.parser_ops[{i}]")
                        or f"{gen.bind(op)}(s, ())")
        reads = [self._key_source(k, part, f"{path}.transition_key[{i}]")
                 for i, (k, part) in enumerate(zip(st.get("transition_key") or [], key_parts,
                                                    strict=True))]
        table = gen.bind(states)
        raise_no_match = f"raise {gen.bind(ParserError)}({gen.bind(self.no_match)})"
        if exact is not None:
            values, default = exact
            body += [f"k = {reads[0]} & {key_parts[0][2]:d}",
                     f"target = {gen.bind(values)}.get(k, {gen.bind(default)})",
                     f"if target is {gen.bind(_NO_DEFAULT)}:", f"    {raise_no_match}",
                     f"return {table}[target] if target is not None else None"]
            return gen.function("parse_state", "s, p=()", body)
        body.append("k = 0")
        for read, (_, bits, mask) in zip(reads, key_parts, strict=True):
            body.append(f"k = (k << {bits:d}) | ({read} & {mask:d})")
        for matches, target, test in rules:
            goto = f"{table}[{gen.bind(target)}]" if target is not None else "None"
            body += [f"if {test or f'{gen.bind(matches)}(k)'}:", f"    return {goto}"]
        body.append(raise_no_match if rules else "return None")
        return gen.function("parse_state", "s, p=()", body)

    def _key_source(self, k: dict, part: tuple, path: str) -> str:
        if isinstance(k, dict) and k.get("type") == "field":
            return self.exprs.source(k, path)
        return f"{self.exprs.gen.bind(part[0])}(s, ())"  # type: ignore[union-attr]

    def _set_source(self, op: dict, path: str) -> str | None:
        """A parser ``set`` of an unsigned field from an expression as one statement (what the
        ``set`` op's setter does), else None."""
        params = op.get("parameters")
        if op.get("op") != "set" or not (isinstance(params, list) and len(params) == 2):
            return None
        dst, src = params
        if not (isinstance(dst, dict) and dst.get("type") == "field" and isinstance(src, dict)
                and src.get("type") != "lookahead"):
            return None
        _, fi = self.layout.field(dst.get("value"), path)
        if fi is None or not fi.width or fi.signed:
            return None
        value = self.exprs.source(src, f"{path}.parameters[1]")
        return f"s.f[{fi.slot:d}] = int({value}) & {(1 << fi.width) - 1:d}"

    def _transition(self, t: dict, path: str, key_parts: list) -> tuple[Callable, str | None, str]:
        """(matches, next state, the test as source over ``k``: "" when only ``matches``)."""
        # Older p4c output omits "type" and writes the default transition as value "default".
        kind = t.get("type") or ("default" if t.get("value") in (None, "default") else "hexstr")
        target = t.get("next_state")
        mask_text = t.get("mask")
        mask = parse_hexstr(mask_text, f"{path}.mask") if mask_text is not None else -1
        if kind == "default":
            return (lambda k: True), target, "True"
        if kind == "hexstr":
            value = parse_hexstr(t.get("value"), f"{path}.value") & mask
            return (lambda k: (k & mask) == value), target, f"(k & {mask:d}) == {value:d}"
        if kind == "parse_vset":
            vs = self.value_sets.get(t.get("value"))
            if vs is None:
                raise fail(f"{path}.value", f"unknown parse value set {t.get('value')!r}")

            def in_set(k: int) -> bool:
                km = k & mask
                return any((km & m) == (v & mask) for v, m in vs.members)

            return in_set, target, ""
        raise fail(f"{path}.type", f"unsupported transition type {kind!r}")

    def _key_part(self, k: dict, path: str) -> tuple[Expr, int, int]:
        kind = get(k, "type", path, str)
        if kind == "lookahead":
            offset, width = get(k, "value", path, list)
            read = self._lookahead(offset, width)
        elif kind == "field":
            _, fi = self.layout.field(k.get("value"), path)
            width = fi.width if fi is not None else 1
            read = self.exprs.compile(k, path)
        elif kind == "stack_field":
            st = self.layout.stack(k["value"][0], path)
            fi = self.layout.headers[st.headers[0]].by_name.get(k["value"][1])
            if fi is None:
                raise fail(path, f"unknown stack field {k['value']!r}")
            width = fi.width
            read = self.exprs.compile(k, path)
        elif kind == "union_stack_field":
            read, width = self._union_stack_field(k.get("value"), path)
        else:
            raise fail(path, f"unsupported transition key type {kind!r}")
        padded = (width + 7) // 8 * 8
        return read, padded, (1 << padded) - 1

    def _union_stack_field(self, ref: Any, path: str) -> tuple[Expr, int]:
        """``[union stack, member, field]``: the field of that member in the last extracted
        union (bm_sim ParseSwitchKeyBuilder, UNION_STACK_FIELD), with its width."""
        if not (isinstance(ref, list) and len(ref) == 3):
            raise fail(path, f"expected [union stack, member, field], got {ref!r}")
        us, members = self.layout.union_stack_member(ref[0], ref[1], path)
        fi = members[0].by_name.get(ref[2])
        if fi is None:
            raise fail(path, f"member {ref[1]!r} has no field {ref[2]!r}")
        slots = [h.fields[fi.slot - members[0].base].slot for h in members]
        cursor = us.cursor

        def last_field(s: PacketState, p: tuple) -> int:
            n = s.stack_next[cursor]
            return s.f[slots[n - 1]] if n else 0

        return last_field, fi.width

    def _lookahead(self, offset: int, width: int) -> Expr:
        too_short = self.too_short
        nbytes = (offset + width + 7) // 8
        shift = nbytes * 8 - offset - width
        mask = (1 << width) - 1

        def lookahead(s: PacketState, p: tuple) -> int:
            end = s.pos + nbytes
            if end > len(s.data):
                raise ParserError(too_short)
            return (int.from_bytes(s.data[s.pos : end], "big") >> shift) & mask

        return lookahead

    def _value(self, node: dict, path: str) -> Expr:
        if isinstance(node, dict) and node.get("type") == "lookahead":
            offset, width = get(node, "value", path, list)
            return self._lookahead(offset, width)
        return self.exprs.compile(node, path)

    # ---- parser ops ----------------------------------------------------------------------
    def _op(self, op: dict, path: str) -> Op:
        name = get(op, "op", path, str)
        params = get(op, "parameters", path, list)
        if name == "extract":
            return self._extract(params[0], f"{path}.parameters[0]", None)
        if name == "extract_VL":
            length = self.exprs.compile(params[1], f"{path}.parameters[1]")
            return self._extract(params[0], f"{path}.parameters[0]", length)
        if name == "set":
            if self._is_varbit(params[0]):  # bm_sim ParserOpSet: a varbit destination is assign_VL
                return self.compile_primitive({"op": "assign_VL", "parameters": params}, path)
            setter = self.exprs.compile_setter(params[0], f"{path}.parameters[0]")
            value = self._value(params[1], f"{path}.parameters[1]")
            return lambda s, p: setter(s, p, int(value(s, p)))
        if name == "verify":
            cond = self.exprs.compile(params[0], f"{path}.parameters[0]")
            error = self.exprs.compile(params[1], f"{path}.parameters[1]")

            def verify(s: PacketState, p: tuple) -> None:
                if not cond(s, p):
                    raise ParserError(int(error(s, p)))

            return verify
        if name in ("advance", "shift"):
            amount = self.exprs.compile(params[0], f"{path}.parameters[0]")
            unit = 1 if name == "shift" else 8
            too_short, invalid_argument = self.too_short, self.invalid_argument

            def advance(s: PacketState, p: tuple) -> None:
                # bm_sim ParserOpAdvance: bits that are not whole bytes are an invalid argument
                bits = int(amount(s, p)) * (8 // unit)
                if bits % 8:
                    raise ParserError(invalid_argument)
                n = bits // 8
                if n < 0 or s.pos + n > len(s.data):
                    raise ParserError(too_short)
                s.pos += n

            return advance
        if name == "primitive":
            return self.compile_primitive(params[0], f"{path}.parameters[0]")
        raise fail(f"{path}.op", f"unsupported parser op {name!r}")

    def _is_varbit(self, node: Any) -> bool:
        if not (isinstance(node, dict) and node.get("type") == "field"):
            return False
        _, fi = self.layout.field(node.get("value"), "set")
        return fi is not None and fi.width == 0

    def _extract(self, target: dict, path: str, length: Expr | None) -> Op:
        kind = get(target, "type", path, str)
        if kind == "regular":
            h = self.layout.header(target.get("value"), path)
            return self._extract_header(h, length, path)
        if kind == "stack":
            st = self.layout.stack(target.get("value"), path)
            return self._extract_next(
                [self._extract_header(self.layout.headers[m], length, path) for m in st.headers],
                st.index,
            )
        if kind == "union_stack":
            value = target.get("value")
            if not (isinstance(value, list) and len(value) == 2):
                raise fail(path, f"expected [union stack, member], got {value!r}")
            us, members = self.layout.union_stack_member(value[0], value[1], path)
            return self._extract_next(
                [self._extract_header(h, length, path) for h in members], us.cursor
            )
        raise fail(path, f"unsupported extract target {kind!r}")

    def _extract_next(self, extracts: list[Op], cursor: int) -> Op:
        """Extract into the next element of a stack (bm_sim ParserOpExtractStack) or into a
        member of the next union of a union stack (ParserOpExtractUnionStack): a full stack is
        StackOutOfBounds; a failed extract leaves the cursor where it was."""
        size, oob = len(extracts), self.out_of_bounds

        def extract_next(s: PacketState, p: tuple) -> None:
            n = s.stack_next[cursor]
            if n >= size:
                raise ParserError(oob)
            extracts[n](s, p)
            s.stack_next[cursor] = n + 1

        return extract_next

    def _extract_header(self, h: HeaderInfo, length: Expr | None, path: str) -> Op:
        if h.metadata:
            raise PipelineError(f"{path}: cannot extract metadata {h.name!r}")
        index, too_short = h.index, self.too_short
        others = self.layout.siblings.get(h.index, ())
        if h.varbit is not None:
            return self._extract_vl(h, length or (lambda s, p: 0), others)
        nbytes = h.fixed_bits // 8
        specs = _unpack_specs(h, h.fixed_bits, 0)
        gen = self.exprs.gen
        if gen is not None:  # the same steps as ``extract``, _store unrolled per field
            raise_short = f"raise {gen.bind(ParserError)}({gen.bind(too_short)})"
            body = ["pos = s.pos", f"end = pos + {nbytes:d}", "if end > len(s.data):",
                    f"    {raise_short}",
                    "v = int.from_bytes(s.data[pos:end], 'big')", "f = s.f"]
            for slot, shift, mask, half in specs:
                if half:
                    body += [f"x = (v >> {shift:d}) & {mask:d}",
                             f"f[{slot:d}] = x - ((x & {half:d}) << 1)"]
                else:
                    body.append(f"f[{slot:d}] = (v >> {shift:d}) & {mask:d}")
            body += ["valid = s.valid", f"valid[{index:d}] = True"]
            body += [f"valid[{o:d}] = False" for o in others]
            body.append("s.pos = end")
            return gen.function("extract", "s, p", body)

        def extract(s: PacketState, p: tuple) -> None:
            pos = s.pos
            end = pos + nbytes
            if end > len(s.data):
                raise ParserError(too_short)
            _store(s, int.from_bytes(s.data[pos:end], "big"), specs)
            s.valid[index] = True
            for o in others:  # a union member made valid invalidates the other members
                s.valid[o] = False
            s.pos = end

        return extract

    def _extract_vl(self, h: HeaderInfo, length: Expr, others: tuple[int, ...]) -> Op:
        """bm_sim's extract_VL (parser.cpp), its checks in its order: a length that is not a
        multiple of 8 is ParserInvalidArgument, then too few bytes left is PacketTooShort, then
        a header longer than the type's max_length is HeaderTooShort."""
        index, fixed, max_bytes = h.index, h.fixed_bits, h.max_bytes
        too_short, header_too_short = self.too_short, self.header_too_short
        invalid_argument = self.invalid_argument

        def extract_vl(s: PacketState, p: tuple) -> None:
            vl = int(length(s, p))
            if vl % 8:
                raise ParserError(invalid_argument)
            nbytes = (fixed + vl) // 8
            end = s.pos + nbytes
            if vl < 0 or end > len(s.data):
                raise ParserError(too_short)
            if max_bytes and nbytes > max_bytes:
                raise ParserError(header_too_short)
            _store(s, int.from_bytes(s.data[s.pos : end], "big"), _unpack_specs(h, fixed + vl, vl))
            s.vlen[index] = vl
            s.valid[index] = True
            for o in others:
                s.valid[o] = False
            s.pos = end

        return extract_vl
