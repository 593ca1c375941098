"""Actions and their primitives (core BMv2 primitives plus simple_switch's v1model ones).

Each action compiles to one closure ``run(state, params)`` over a list of primitive closures.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from softswitch.checksums import Calculation
from softswitch.codegen import Generated
from softswitch.expressions import Expr, ExprCompiler, Params
from softswitch.externs import CounterArray, MeterArray, RegisterArray
from softswitch.json_model import Layout, fail, get
from softswitch.state import PacketState
from softswitch.unions import assign_union, assign_union_stack, header_copier, shift_union_stack

log = logging.getLogger(__name__)

Prim = Callable[[PacketState, Params], Any]
DROP_PORT = 511


@dataclass(slots=True)
class StdSlots:
    """Slots of the v1model standard_metadata fields (None when the program lacks a field)."""

    ingress_port: int | None
    egress_spec: int | None
    egress_port: int | None
    instance_type: int | None
    packet_length: int | None
    mcast_grp: int | None
    egress_rid: int | None
    checksum_error: int | None
    parser_error: int | None
    ingress_global_timestamp: int | None
    egress_global_timestamp: int | None
    enq_timestamp: int | None
    enq_qdepth: int | None
    deq_timedelta: int | None
    deq_qdepth: int | None

    @classmethod
    def from_layout(cls, layout: Layout, aliases: list | None = None) -> StdSlots:
        """Look each field up in standard_metadata, then through ``field_aliases``, then in
        P4_14's ``intrinsic_metadata`` (where older programs keep mcast_grp and friends)."""
        alias = {a[0]: a[1] for a in aliases or [] if isinstance(a, list) and len(a) == 2}

        def slot(name: str) -> int | None:
            refs = [["standard_metadata", name], alias.get(f"standard_metadata.{name}"),
                    alias.get(f"intrinsic_metadata.{name}"), ["intrinsic_metadata", name],
                    alias.get(f"queueing_metadata.{name}"), ["queueing_metadata", name]]
            for ref in refs:
                hdr = layout.header_by_name.get(ref[0]) if isinstance(ref, list) else None
                if hdr is not None and ref[1] in hdr.by_name:
                    return hdr.by_name[ref[1]].slot
            return None

        return cls(*[slot(n) for n in cls.__slots__])  # type: ignore[attr-defined]


@dataclass
class ActionCompiler:
    """Compiles actions and primitives against one program's layout and externs."""

    layout: Layout
    exprs: ExprCompiler
    std: StdSlots
    counters: dict[str, CounterArray]
    registers: dict[str, RegisterArray]
    meters: dict[str, MeterArray]
    calculations: dict[str, Calculation]
    direct_counters: frozenset[str] = frozenset()  # counted by their table on every hit
    assert_failures: int = 0  # failed assert/assume (BMv2 would abort the process)

    def compile_action(self, doc: dict, path: str) -> Callable[[PacketState, Params], None]:
        gen = self.exprs.gen
        docs = get(doc, "primitives", path, list)
        if gen is not None and not any(
            isinstance(d, dict) and d.get("op") in ("_jump", "_jump_if_zero", "exit") for d in docs
        ):
            return self._generated_action(docs, path, gen)
        prims = [
            self.compile_primitive(p, f"{path}.primitives[{i}]")
            for i, p in enumerate(get(doc, "primitives", path, list))
        ]
        ops = [p.get("op") for p in doc["primitives"]]
        if "_jump" in ops or "_jump_if_zero" in ops or "exit" in ops:
            return _with_jumps(prims)
        if not prims:
            return lambda s, p: None
        if len(prims) == 1:
            return prims[0]

        def run(s: PacketState, p: Params) -> None:
            for prim in prims:
                prim(s, p)

        return run

    def _generated_action(self, docs: list, path: str, gen: Generated) -> Prim:
        """The action as one straight-line function: field assignments inline, every other
        primitive a call to its closure, in order (as ``run`` calls them)."""
        body = []
        for i, d in enumerate(docs):
            ppath = f"{path}.primitives[{i}]"
            line = self._assign_source(d, ppath)
            if line is None:
                line = f"{gen.bind(self.compile_primitive(d, ppath))}(s, p)"
            body.append(line)
        return gen.function("action", "s, p", body)

    def _assign_source(self, doc: Any, path: str) -> str | None:
        """``assign`` to an unsigned field as one statement (what ``_assign_to_slot`` does),
        or None for the closure."""
        if not isinstance(doc, dict) or doc.get("op") not in ("assign", "modify_field"):
            return None
        params = doc.get("parameters")
        if not (isinstance(params, list) and len(params) == 2 and isinstance(params[0], dict)
                and params[0].get("type") == "field" and isinstance(params[1], dict)):
            return None
        value = self.exprs.source(params[1], f"{path}.parameters[1]")
        _, fi = self.layout.field(params[0].get("value"), f"{path}.parameters[0]")
        if fi is None or not fi.width or fi.signed:
            return None
        if params[1].get("type") == "field":
            _, sf = self.layout.field(params[1].get("value"), "assign")
            if sf is not None and sf.width and not sf.signed and sf.width <= fi.width:
                return f"s.f[{fi.slot:d}] = {value}"  # as copy_field: the value already fits
        return f"s.f[{fi.slot:d}] = {value} & {(1 << fi.width) - 1:d}"

    def compile_primitive(self, doc: dict, path: str) -> Prim:
        op = get(doc, "op", path, str)
        params = doc.get("parameters") or []
        method = getattr(self, "_p_" + op.lstrip("_"), None)
        if method is None:
            raise fail(f"{path}.op", f"unsupported primitive {op!r}")
        try:
            return method(params, f"{path}.parameters")
        except (IndexError, TypeError, KeyError) as exc:
            raise fail(path, f"malformed parameters for {op!r}: {exc}") from exc

    # ---- helpers -------------------------------------------------------------------------
    def _expr(self, node: Any, path: str) -> Expr:
        return self.exprs.compile(node, path)

    def _set_std(self, slot: int | None, value: int) -> Prim:
        if slot is None:
            return lambda s, p: None

        def set_std(s: PacketState, p: Params) -> None:
            s.f[slot] = value

        return set_std

    def _extern(self, table: dict, node: dict, path: str) -> Any:
        obj = table.get(node.get("value"))
        if obj is None:
            raise fail(path, f"unknown {node.get('type')} {node.get('value')!r}")
        return obj

    # ---- core primitives -----------------------------------------------------------------
    def _p_assign(self, params: list, path: str) -> Prim:
        value = self._expr(params[1], f"{path}[1]")
        dst = params[0]
        if dst.get("type") == "field":  # the common case: write the slot directly
            _, fi = self.layout.field(dst.get("value"), f"{path}[0]")
            if fi is not None and fi.width and not fi.signed:
                return _assign_to_slot(fi.slot, fi.width, params[1], value, self.layout)
        setter = self.exprs.compile_setter(dst, f"{path}[0]")
        return lambda s, p: setter(s, p, int(value(s, p)))

    _p_modify_field = _p_assign

    def _p_assign_VL(self, params: list, path: str) -> Prim:
        """bm_sim core ``assign_VL`` (Field::assign_VL): a varbit field takes the source's value
        and its current width, which the destination header is then deparsed with."""
        dst_h, dst = self.layout.field(params[0].get("value"), f"{path}[0]")
        src_h, src = self.layout.field(params[1].get("value"), f"{path}[1]")
        if dst is None or src is None or dst.width or src.width:
            raise fail(path, "assign_VL needs two varbit fields")
        d, r, dh, rh = dst.slot, src.slot, dst_h.index, src_h.index

        def assign_vl(s: PacketState, p: Params) -> None:
            s.f[d] = s.f[r]
            s.vlen[dh] = s.vlen.get(rh, 0)

        return assign_vl

    def _p_add_to_field(self, params: list, path: str) -> Prim:
        setter = self.exprs.compile_setter(params[0], f"{path}[0]")
        cur, value = self._expr(params[0], f"{path}[0]"), self._expr(params[1], f"{path}[1]")
        return lambda s, p: setter(s, p, cur(s, p) + value(s, p))

    def _p_subtract_from_field(self, params: list, path: str) -> Prim:
        setter = self.exprs.compile_setter(params[0], f"{path}[0]")
        cur, value = self._expr(params[0], f"{path}[0]"), self._expr(params[1], f"{path}[1]")
        return lambda s, p: setter(s, p, cur(s, p) - value(s, p))

    def _p_assign_header(self, params: list, path: str) -> Prim:
        dst, src = self._expr(params[0], f"{path}[0]"), self._expr(params[1], f"{path}[1]")
        copy = header_copier(self.layout)
        return lambda s, p: copy(s, dst(s, p), src(s, p))

    def _p_assign_union(self, params: list, path: str) -> Prim:
        dst, src = self._expr(params[0], f"{path}[0]"), self._expr(params[1], f"{path}[1]")
        return assign_union(self.layout, dst, src)

    def _p_assign_header_stack(self, params: list, path: str) -> Prim:
        dst = self.layout.stack(params[0].get("value"), f"{path}[0]")
        src = self.layout.stack(params[1].get("value"), f"{path}[1]")
        pairs = list(zip(dst.headers, src.headers, strict=False))
        spans = [(h.base, h.base + len(h.fields)) for h in self.layout.headers]

        def assign_stack(s: PacketState, p: Params) -> None:
            for d, r in pairs:
                (db, de), (rb, re_) = spans[d], spans[r]
                s.f[db:de] = s.f[rb:re_]
                s.valid[d] = s.valid[r]
            s.stack_next[dst.index] = min(s.stack_next[src.index], len(dst.headers))

        return assign_stack

    def _p_assign_union_stack(self, params: list, path: str) -> Prim:
        dst = self.layout.union_stack(params[0].get("value"), f"{path}[0]")
        src = self.layout.union_stack(params[1].get("value"), f"{path}[1]")
        return assign_union_stack(self.layout, dst, src)

    def _p_add_header(self, params: list, path: str) -> Prim:
        hdr = self._expr(params[0], f"{path}[0]")
        spans = [(h.base, len(h.fields)) for h in self.layout.headers]
        siblings = [self.layout.siblings.get(h.index, ()) for h in self.layout.headers]

        def add_header(s: PacketState, p: Params) -> None:
            h = hdr(s, p)
            if not s.valid[h]:
                base, n = spans[h]
                s.f[base : base + n] = [0] * n
                s.valid[h] = True
                for o in siblings[h]:  # a union member made valid invalidates the others
                    s.valid[o] = False

        return add_header

    def _p_remove_header(self, params: list, path: str) -> Prim:
        hdr = self._expr(params[0], f"{path}[0]")

        def remove_header(s: PacketState, p: Params) -> None:
            s.valid[hdr(s, p)] = False

        return remove_header

    def _p_push(self, params: list, path: str) -> Prim:
        return self._shift_stack(params, path, push=True)

    def _p_pop(self, params: list, path: str) -> Prim:
        return self._shift_stack(params, path, push=False)

    def _shift_stack(self, params: list, path: str, push: bool) -> Prim:
        name = params[0].get("value")
        if self.layout.p4c_kind(params[0].get("type"), name) == "header_union_stack":
            us = self.layout.union_stack(name, f"{path}[0]")
            return shift_union_stack(self.layout, us, self._expr(params[1], f"{path}[1]"), push)
        st = self.layout.stack(params[0].get("value"), f"{path}[0]")
        count = self._expr(params[1], f"{path}[1]")
        members = [self.layout.headers[h] for h in st.headers]
        size = len(members)

        def move(s: PacketState, dst: int, src: int) -> None:
            d, r = members[dst], members[src]
            n = len(d.fields)
            s.f[d.base : d.base + n] = s.f[r.base : r.base + n]
            s.valid[d.index] = s.valid[r.index]

        def shift(s: PacketState, p: Params) -> None:
            n = max(0, int(count(s, p)))
            order = range(size - 1, -1, -1) if push else range(size)
            for i in order:
                src = i - n if push else i + n
                if 0 <= src < size:
                    move(s, i, src)
                else:
                    s.valid[members[i].index] = False
            nxt = s.stack_next[st.index]
            s.stack_next[st.index] = min(size, nxt + n) if push else max(0, nxt - n)

        return shift

    def _p_jump(self, params: list, path: str) -> Prim:
        target = self._expr(params[0], f"{path}[0]")
        return lambda s, p: _Jump(target(s, p))

    def _p_jump_if_zero(self, params: list, path: str) -> Prim:
        cond, target = self._expr(params[0], f"{path}[0]"), self._expr(params[1], f"{path}[1]")
        return lambda s, p: None if cond(s, p) else _Jump(target(s, p))

    def _p_exit(self, params: list, path: str) -> Prim:
        def exit_(s: PacketState, p: Params) -> None:
            s.exit = True

        return exit_

    def _p_log_msg(self, params: list, path: str) -> Prim:
        fmt = params[0].get("value", "")
        args = [self._expr(a, f"{path}[1]") for a in (params[1].get("value") or [])]

        def log_msg(s: PacketState, p: Params) -> None:
            if log.isEnabledFor(logging.DEBUG):
                values = iter([a(s, p) for a in args])
                log.debug("log_msg: %s", "".join(
                    str(next(values, "?")) if part == "" else part
                    for part in _split_format(fmt)
                ))

        return log_msg

    def _p_assert(self, params: list, path: str) -> Prim:
        cond = self._expr(params[0], f"{path}[0]")

        def check(s: PacketState, p: Params) -> None:
            if not cond(s, p):
                # BMv2 aborts the process; a switch counts it and keeps forwarding.
                self.assert_failures += 1

        return check

    _p_assume = _p_assert

    def _p_no_op(self, params: list, path: str) -> Prim:
        return lambda s, p: None

    # ---- v1model / simple_switch ---------------------------------------------------------
    def _p_mark_to_drop(self, params: list, path: str) -> Prim:
        spec, grp = self.std.egress_spec, self.std.mcast_grp

        def mark_to_drop(s: PacketState, p: Params) -> None:
            if spec is not None:
                s.f[spec] = DROP_PORT
            if grp is not None:
                s.f[grp] = 0

        return mark_to_drop

    _p_drop = _p_mark_to_drop

    def _p_count(self, params: list, path: str) -> Prim:
        if params[0].get("value") in self.direct_counters:
            return lambda s, p: None  # a direct counter counts with its table's hit
        counter = self._extern(self.counters, params[0], f"{path}[0]")
        index = self._expr(params[1], f"{path}[1]")
        length = self.std.packet_length

        def count(s: PacketState, p: Params) -> None:
            counter.count(index(s, p), s.f[length] if length is not None else len(s.data))

        return count

    def _p_execute_meter(self, params: list, path: str) -> Prim:
        meter = self._extern(self.meters, params[0], f"{path}[0]")
        index = self._expr(params[1], f"{path}[1]")
        setter = self.exprs.compile_setter(params[2], f"{path}[2]")

        def execute_meter(s: PacketState, p: Params) -> None:
            # bytes meters charge the frame as received (BMv2: pkt.get_ingress_length()).
            setter(s, p, meter.execute(index(s, p), len(s.data), s.now))

        return execute_meter

    def _p_register_read(self, params: list, path: str) -> Prim:
        setter = self.exprs.compile_setter(params[0], f"{path}[0]")
        reg = self._extern(self.registers, params[1], f"{path}[1]")
        index = self._expr(params[2], f"{path}[2]")
        return lambda s, p: setter(s, p, reg.read(index(s, p)))

    def _p_register_write(self, params: list, path: str) -> Prim:
        reg = self._extern(self.registers, params[0], f"{path}[0]")
        index, value = self._expr(params[1], f"{path}[1]"), self._expr(params[2], f"{path}[2]")
        return lambda s, p: reg.write(index(s, p), int(value(s, p)))

    def _p_modify_field_with_hash_based_offset(self, params: list, path: str) -> Prim:
        setter = self.exprs.compile_setter(params[0], f"{path}[0]")
        base = self._expr(params[1], f"{path}[1]")
        calc = self._extern(self.calculations, params[2], f"{path}[2]")
        size = self._expr(params[3], f"{path}[3]")

        def hash_(s: PacketState, p: Params) -> None:
            n = size(s, p)
            h = calc.compute(s, p)
            setter(s, p, base(s, p) + (h % n if n > 0 else h))

        return hash_

    def _p_modify_field_rng_uniform(self, params: list, path: str) -> Prim:
        setter = self.exprs.compile_setter(params[0], f"{path}[0]")
        lo, hi = self._expr(params[1], f"{path}[1]"), self._expr(params[2], f"{path}[2]")

        def rng(s: PacketState, p: Params) -> None:
            a, b = lo(s, p), hi(s, p)
            setter(s, p, random.randint(a, b) if a <= b else a)

        return rng

    def _field_list(self, params: list, i: int, path: str) -> Expr:
        if len(params) > i:
            return self._expr(params[i], f"{path}[{i}]")
        return lambda s, p: 0

    def _p_clone_ingress_pkt_to_egress(self, params: list, path: str) -> Prim:
        session = self._expr(params[0], f"{path}[0]")
        field_list = self._field_list(params, 1, path)

        def clone(s: PacketState, p: Params) -> None:
            s.clone_session = session(s, p)
            s.clone_field_list = field_list(s, p)

        return clone

    _p_clone_egress_pkt_to_egress = _p_clone_ingress_pkt_to_egress

    def _p_resubmit(self, params: list, path: str) -> Prim:
        field_list = self._field_list(params, 0, path)

        def resubmit(s: PacketState, p: Params) -> None:
            s.resubmit = field_list(s, p)

        return resubmit

    _p_resubmit_preserving_field_list = _p_resubmit

    def _p_recirculate(self, params: list, path: str) -> Prim:
        field_list = self._field_list(params, 0, path)

        def recirculate(s: PacketState, p: Params) -> None:
            s.recirculate = field_list(s, p)

        return recirculate

    _p_recirculate_preserving_field_list = _p_recirculate

    def _p_truncate(self, params: list, path: str) -> Prim:
        length = self._expr(params[0], f"{path}[0]")

        def truncate(s: PacketState, p: Params) -> None:
            s.truncate = max(0, int(length(s, p)))

        return truncate

    def _p_generate_digest(self, params: list, path: str) -> Prim:
        """simple_switch ``generate_digest(receiver, learn_list)``: only records the learn list
        (RegisterAccess lf_field_list); the sample is taken from the fields as they are at the
        end of ingress, and the last call wins."""
        learn_list = self._expr(params[1], f"{path}[1]")

        def generate_digest(s: PacketState, p: Params) -> None:
            s.learn = int(learn_list(s, p))

        return generate_digest


def _assign_to_slot(slot: int, width: int, src: dict, value: Expr, layout: Layout) -> Prim:
    """``field = src`` for an unsigned field, with the common sources written inline."""
    mask = (1 << width) - 1
    kind = src.get("type")
    if kind == "field":
        _, sf = layout.field(src.get("value"), "assign")
        if sf is not None and sf.width and not sf.signed:
            from_slot = sf.slot
            if sf.width <= width:

                def copy_field(s: PacketState, p: Params) -> None:
                    s.f[slot] = s.f[from_slot]

                return copy_field

            def copy_field_masked(s: PacketState, p: Params) -> None:
                s.f[slot] = s.f[from_slot] & mask

            return copy_field_masked
    if kind == "runtime_data" and isinstance(src.get("value"), int):
        i = src["value"]

        def from_param(s: PacketState, p: Params) -> None:
            s.f[slot] = p[i] & mask

        return from_param

    def assign_field(s: PacketState, p: Params) -> None:
        s.f[slot] = value(s, p) & mask

    return assign_field


class _Jump(int):
    """Returned by jump primitives: the index of the next primitive to run."""


def _with_jumps(prims: list[Prim]) -> Callable[[PacketState, Params], None]:
    n = len(prims)

    def run(s: PacketState, p: Params) -> None:
        pc = 0
        budget = 100_000
        while pc < n and not s.exit and budget:
            budget -= 1
            r = prims[pc](s, p)
            pc = int(r) if isinstance(r, _Jump) else pc + 1

    return run


def _split_format(fmt: str) -> list[str]:
    """``"a {} b"`` → ``["a ", "", " b"]`` ("" marks a placeholder)."""
    out: list[str] = []
    for i, chunk in enumerate(fmt.split("{}")):
        if i:
            out.append("")
        out.append(chunk)
    return out
