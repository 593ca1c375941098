"""A compiled v1model program: parse → verify checksums → ingress → traffic manager → egress →
update checksums → deparse, with simple_switch's semantics for standard_metadata (egress_spec,
drop port 511, mcast_grp, instance_type, clone/resubmit/recirculate).

``Pipeline.from_json`` compiles the BMv2 JSON once into closures; ``process`` runs one frame and
never raises (an internal error is a counted drop).
"""

from __future__ import annotations

import json
import logging
import operator
from collections import deque
from collections.abc import Callable
from typing import Any

from softswitch.actions import DROP_PORT, ActionCompiler, StdSlots
from softswitch.checksums import (
    Calculation,
    compile_calculation,
    compile_checksum,
    make_updater,
    make_verifier,
)
from softswitch.codegen import Generated, TooDeep, specialise_default
from softswitch.deparser import deparse_order, make_deparser, make_serializer
from softswitch.expressions import ExprCompiler
from softswitch.externs import CounterArray, MeterArray, RegisterArray
from softswitch.json_model import Layout, PipelineError, build_layout, fail, get, parse_hexstr
from softswitch.parser import ParserCompiler, ValueSet
from softswitch.pre import MirrorSession, Pre
from softswitch.state import PacketState, ParserError
from softswitch.tables import ActionInfo, MatchKey, Table

__all__ = ["ActionInfo", "Pipeline", "PipelineError"]

log = logging.getLogger(__name__)

# simple_switch's PKT_INSTANCE_TYPE_* values.
NORMAL, INGRESS_CLONE, EGRESS_CLONE, RECIRC, REPLICATION, RESUBMIT = 0, 1, 2, 4, 5, 6
MAX_PASSES = 16  # bound on resubmit/recirculate passes per input frame
MAX_JOBS = 4096  # bound on all traffic-manager work per input frame (egress clones of clones)
INLINE_CONDITIONALS = 4  # nesting depth of conditionals inlined into one generated function
BIG_PRIORITY = (1 << 31) - 1  # BMv2 priority p (lower wins) ↔ P4Runtime BIG_PRIORITY - p

Node = Callable[[PacketState], Any]


class Pipeline:
    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.actions: dict[str, ActionInfo] = {}
        self.counters: dict[str, CounterArray] = {}
        self.registers: dict[str, RegisterArray] = {}
        self.meters: dict[str, MeterArray] = {}
        self.value_sets: dict[str, ValueSet] = {}
        self.pre = Pre()
        # called with (learn list name, field values, now) for each digest at the end of ingress
        self.learn_sink: Callable[[str, tuple[int, ...], float], None] | None = None
        self.drops: dict[str, int] = {"egress_spec": 0, "internal_error": 0, "loop": 0,
                                      "mcast_grp": 0}

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_json(cls, doc: dict, *, table_size_override: int | None = None,
                  specialise: bool | None = None) -> Pipeline:
        """``specialise`` (default: on unless SOFTSWITCH_GENERIC=1) generates straight-line
        Python at load time for the per-packet work (codegen.py, INTERPRETER.md); off, the
        same program runs as a tree of closures. Both paths have one semantics."""
        if specialise is None:
            specialise = specialise_default()
        try:
            return _Builder(doc, table_size_override, specialise).build(cls())
        except TooDeep:  # source CPython's parser refuses: the closures run the program
            return cls.from_json(doc, table_size_override=table_size_override, specialise=False)
        except PipelineError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise PipelineError(f"$: malformed BMv2 JSON ({type(exc).__name__}: {exc})") from exc

    @property
    def assert_failures(self) -> int:
        """Failed ``assert``/``assume`` statements (BMv2 aborts; this switch counts them)."""
        return self._action_compiler.assert_failures

    # ---- packet path ---------------------------------------------------------------------
    def process(self, ingress_port: int, frame: bytes, now: float = 0.0) -> list[tuple[int, bytes]]:
        """Every frame the switch emits for one input frame, as (egress_port, bytes)."""
        try:
            return self._process(ingress_port, bytes(frame), now)
        except Exception:  # the switch must survive any program/packet combination
            self.drops["internal_error"] += 1
            log.exception("softswitch: internal error while processing a frame")
            return []

    def _process(self, in_port: int, frame: bytes, now: float) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        jobs: deque[tuple[str, Any]] = deque()
        queued: dict[int, int] = {}
        s = self._received(in_port, frame, now)
        self._ingress(s, jobs, queued)
        passes = work = 1
        while jobs:
            work += 1
            if work > MAX_JOBS:
                self.drops["loop"] += 1
                break
            kind, job = jobs.popleft()
            if kind == "egress":
                if self._queueing is not None:
                    queued[job[1]] -= 1
                self._egress(*job, jobs, queued, out)
                continue
            passes += 1
            if passes > MAX_PASSES:
                self.drops["loop"] += 1
                break
            self._ingress(job, jobs, queued)
        return out

    def _fresh(self, frame: bytes, now: float) -> PacketState:
        """A packet with a PHV from bm_sim's pool: every header invalid, header fields holding
        what the last finished packet left in them (PHV::reset only marks headers invalid),
        metadata zeroed (PHV::reset_metadata)."""
        f = self._recycled[:]
        zero = self._zero_fields
        for b, e in self._meta_spans:
            f[b:e] = zero[b:e]
        s = PacketState(f, self._init_valid[:], self._n_stacks)
        s.data = frame
        s.now = now
        s.us = int(now * 1e6)
        return s

    def _release(self, s: PacketState) -> None:
        """The packet is gone: its fields are what the next packet's invalid headers read."""
        self._recycled = s.f

    def _received(self, port: int, frame: bytes, now: float) -> PacketState:
        """simple_switch ``receive_``: a frame from a port (the only place ingress_port and
        ingress_global_timestamp are written)."""
        s = self._fresh(frame, now)
        std, f = self._std, s.f
        if std.ingress_port is not None:
            f[std.ingress_port] = port
        igt = self._igt
        if igt is not None:
            f[igt[0]] = s.us & igt[1]
        return s

    def _stamp_slot(self, slot: int | None) -> tuple[int, int] | None:
        """(slot, mask) of a timestamp field: bm_sim's ``get_ts()`` is in microseconds, cut to
        the field's width."""
        return None if slot is None else (slot, self._masks[slot])

    def _queue_slots(self) -> tuple[int, int, int, int, int, int, int] | None:
        """(enq_timestamp, its mask, enq_qdepth, its mask, deq_timedelta, deq_qdepth, its
        mask), when the program has all four (simple_switch ``check_queueing_metadata``)."""
        std = self._std
        slots = (std.enq_timestamp, std.enq_qdepth, std.deq_timedelta, std.deq_qdepth)
        if None in slots:
            return None
        enq, eqd, delta, dqd = slots
        m = self._masks
        return (enq, m[enq], eqd, m[eqd], delta, dqd, m[dqd])

    def _parse_into(self, s: PacketState, set_errors: bool) -> None:
        std, f = self._std, s.f
        try:
            self._parse(s)
        except ParserError as err:
            if set_errors and std.parser_error is not None:
                f[std.parser_error] = err.code
        s.payload = s.data[s.pos :]
        if set_errors and self._verify is not None:
            self._verify(s)

    def _copy_type(self, src: PacketState, dst: PacketState, itype: int, field_list: int) -> None:
        """simple_switch ``copy_field_list_and_set_type``: metadata zeroed, the field list
        copied from ``src``, instance_type set."""
        zero, f = self._zero_fields, dst.f
        for b, e in self._meta_spans:
            f[b:e] = zero[b:e]
        for slot in self._field_lists.get(field_list, ()):
            f[slot] = src.f[slot]
        if self._std.instance_type is not None:
            f[self._std.instance_type] = itype

    def _ingress(self, s: PacketState, jobs: deque, queued: dict[int, int]) -> None:
        """simple_switch ``ingress_thread`` for one packet, in its order: parse, ingress,
        ingress clone, learning, resubmit, multicast, unicast or drop."""
        std = self._std
        if std.packet_length is not None:
            s.f[std.packet_length] = len(s.data)
        self._parse_into(s, True)
        self._run(self._ingress_start, s)
        f = s.f
        if s.clone_session >= 0:
            session = self.pre.session(s.clone_session)
            if session is not None:
                # re-parsed from the frame as received, with the ingress port it came in on
                clone = self._fresh(s.data, s.now)
                if std.ingress_port is not None:
                    clone.f[std.ingress_port] = f[std.ingress_port]
                self._parse_into(clone, False)
                self._copy_type(s, clone, INGRESS_CLONE, s.clone_field_list)
                self._clone_out(clone, session, jobs, queued)
        if s.learn > 0 and self.learn_sink is not None:
            fields = self._learn_lists.get(s.learn)
            if fields is not None:
                self.learn_sink(fields[0], tuple(f[slot] for slot in fields[1]), s.now)
        if s.resubmit >= 0:
            again = self._fresh(s.data, s.now)
            self._copy_type(s, again, RESUBMIT, s.resubmit)
            jobs.append(("ingress", again))
            self._release(s)
            return
        group = f[std.mcast_grp] if std.mcast_grp is not None else 0
        if group:
            if std.instance_type is not None:
                f[std.instance_type] = REPLICATION
            self._multicast(s, group, jobs, queued)
            self._release(s)
            return
        eport = f[std.egress_spec] if std.egress_spec is not None else DROP_PORT
        if eport == DROP_PORT:
            self.drops["egress_spec"] += 1
            self._release(s)
            return
        if std.instance_type is not None:
            f[std.instance_type] = NORMAL
        self._enqueue(s, eport, jobs, queued)

    def _multicast(self, s: PacketState, group: int, jobs: deque, queued: dict[int, int]) -> None:
        """simple_switch ``multicast``: one copy per replica, egress_rid set."""
        rid_slot = self._std.egress_rid
        replicas = self.pre.replicate(group)
        if not replicas:
            self.drops["mcast_grp"] += 1  # a group with no replicas (or none at all)
        for eport, rid in replicas:
            if rid_slot is not None:
                s.f[rid_slot] = rid
            self._enqueue(s.copy(), eport, jobs, queued)

    def _clone_out(self, clone: PacketState, session: MirrorSession, jobs: deque,
                   queued: dict[int, int]) -> None:
        """One copy of ``clone`` per target of ``session``, cut to its truncation."""
        rid_slot = self._std.egress_rid
        for eport, rid in self.pre.clone_targets(session):
            copy = clone.copy()
            copy.max_len = session.truncate
            if rid is not None and rid_slot is not None:
                copy.f[rid_slot] = rid
            self._enqueue(copy, eport, jobs, queued)

    def _enqueue(self, s: PacketState, port: int, jobs: deque, queued: dict[int, int]) -> None:
        """simple_switch ``enqueue``: enq_timestamp and enq_qdepth (packets already waiting
        for that port), then the egress queue."""
        q = self._queueing
        if q is not None:
            depth = queued.get(port, 0)
            s.f[q[0]] = s.us & q[1]
            s.f[q[2]] = depth & q[3]
            queued[port] = depth + 1
        jobs.append(("egress", (s, port)))

    def _egress(self, s: PacketState, port: int, jobs: deque, queued: dict[int, int],
                out: list) -> None:
        """simple_switch ``egress_thread`` for one packet: timestamps and queueing metadata,
        egress_port, egress_spec (drop port + 1), packet_length, egress, egress clone, drop,
        deparse, recirculate or transmit."""
        std, f = self._std, s.f
        egt = self._egt
        if egt is not None:
            f[egt[0]] = s.us & egt[1]
        q = self._queueing
        if q is not None:
            # run to completion: a packet leaves the queue at the time it entered it
            f[q[4]] = 0
            f[q[5]] = queued.get(port, 0) & q[6]
        if std.egress_port is not None:
            f[std.egress_port] = port
        if std.egress_spec is not None:
            f[std.egress_spec] = self._spec_init
        if std.packet_length is not None:
            f[std.packet_length] = len(s.data)  # bm_sim PACKET_LENGTH: the frame as received
        s.exit = False
        s.clone_session = -1
        s.recirculate = -1
        self._run(self._egress_start, s)
        if s.clone_session >= 0:
            session = self.pre.session(s.clone_session)
            if session is not None:
                clone = s.copy()  # clone_with_phv_reset_metadata: headers as egress left them
                self._copy_type(s, clone, EGRESS_CLONE, s.clone_field_list)
                self._clone_out(clone, session, jobs, queued)
        if std.egress_spec is not None and f[std.egress_spec] == DROP_PORT:
            self.drops["egress_spec"] += 1
            self._release(s)
            return
        self._update(s)
        frame = self._deparse(s)
        if s.recirculate >= 0:
            again = self._fresh(frame, s.now)
            self._copy_type(s, again, RECIRC, s.recirculate)
            jobs.append(("ingress", again))
            self._release(s)
            return
        limit = s.truncate
        if s.max_len and (not limit or s.max_len < limit):
            limit = s.max_len
        out.append((port, frame[:limit] if limit else frame))
        self._recycled = f  # _release, inline on the hot path

    @staticmethod
    def _run(start: Node | None, s: PacketState) -> None:
        s.exit = False
        node = start
        while node is not None and not s.exit:
            node = node(s)

    # set by _Builder
    generated: Generated | None  # the generated source (``generated.dump()``), None if generic
    _action_compiler: ActionCompiler
    _field_lists: dict[int, list[int]]
    _learn_lists: dict[int, tuple[str, list[int]]]
    _zero_fields: list[int]
    _recycled: list[int]
    _meta_spans: list[tuple[int, int]]
    _masks: dict[int, int]
    _queueing: tuple[int, int, int, int, int, int, int] | None
    _igt: tuple[int, int] | None
    _egt: tuple[int, int] | None
    _spec_init: int
    _init_valid: list[bool]
    _n_stacks: int
    _std: StdSlots
    _parse: Callable[[PacketState], None]
    _deparse: Callable[[PacketState], bytes]
    _verify: Callable[[PacketState], None] | None  # None: no checksum_error to set
    _update: Callable[[PacketState], None]
    _ingress_start: Node | None
    _egress_start: Node | None
    layout: Layout


class _Builder:
    """Compiles one JSON document into a Pipeline (kept apart so Pipeline stays small)."""

    def __init__(self, doc: dict, table_size_override: int | None, specialise: bool) -> None:
        self.doc = doc
        self.size_override = table_size_override
        self.gen = Generated() if specialise else None
        self.later: list[tuple[str, Any]] = []  # generated names of successors, bound below

    def build(self, p: Pipeline) -> Pipeline:
        doc = self.doc
        layout = build_layout(doc)
        p.layout = layout
        self._externs(p)
        p.generated = self.gen
        exprs = ExprCompiler(layout, p.registers, self.gen)
        serializers = [make_serializer(h, self.gen) for h in layout.headers]
        order = deparse_order(doc, layout)
        calcs: dict[str, Calculation] = {}
        for i, c in enumerate(doc.get("calculations") or []):
            calc = compile_calculation(
                c, f"$.calculations[{i}]", layout, exprs, serializers, order
            )
            calcs[calc.name] = calc
        std = StdSlots.from_layout(layout, doc.get("field_aliases"))
        acomp = ActionCompiler(layout, exprs, std, p.counters, p.registers, p.meters, calcs,
                               frozenset(self.direct_counters.values()))
        p._action_compiler = acomp
        self.action_fns: dict[int, Callable] = {}
        self.action_infos: dict[int, ActionInfo] = {}
        for i, a in enumerate(get(doc, "actions", "$", list)):
            path = f"$.actions[{i}]"
            aid = get(a, "id", path, int)
            info = ActionInfo(
                get(a, "name", path, str),
                [(get(r, "name", path, str), get(r, "bitwidth", path, int))
                 for r in a.get("runtime_data") or []],
            )
            self.action_infos[aid] = info
            self.action_fns[aid] = acomp.compile_action(a, path)
            p.actions.setdefault(info.name, info)
        for i, vs in enumerate(doc.get("parse_vsets") or []):
            path = f"$.parse_vsets[{i}]"
            name = get(vs, "name", path, str)
            p.value_sets[name] = ValueSet(
                name, get(vs, "compressed_bitwidth", path, int), int(vs.get("max_size") or 0)
            )
        pcomp = ParserCompiler(layout, exprs, p.value_sets, acomp.compile_primitive)
        parsers = get(doc, "parsers", "$", list)
        if not parsers:
            raise fail("$.parsers", "the program has no parser")
        p._parse = pcomp.compile(parsers[0], "$.parsers[0]")
        p._deparse = make_deparser(order, serializers, self.gen)
        checksums = [
            compile_checksum(c, f"$.checksums[{i}]", layout, exprs, calcs)
            for i, c in enumerate(doc.get("checksums") or [])
        ]
        p._verify = None if std.checksum_error is None else make_verifier(
            [c for c in checksums if c.verify], std.checksum_error, self.gen)
        p._update = make_updater([c for c in checksums if c.update], self.gen)
        p._std = std
        p._field_lists = self._field_lists(layout, "field_lists")
        names = {ll.get("id"): str(ll.get("name")) for ll in doc.get("learn_lists") or []}
        p._learn_lists = {i: (names[i], slots)
                          for i, slots in self._field_lists(layout, "learn_lists").items()}
        p._zero_fields = [0] * layout.n_slots
        p._recycled = [0] * layout.n_slots
        p._meta_spans = [(h.base, h.base + len(h.fields)) for h in layout.headers if h.metadata]
        p._masks = {fi.slot: (1 << fi.width) - 1 for h in layout.headers for fi in h.fields
                    if fi.width}
        # Fields the program never reads need not be written: nothing else sees metadata.
        read = _fields_read(doc)
        p._queueing = p._queue_slots() if read & _QUEUEING else None
        p._igt = p._stamp_slot(std.ingress_global_timestamp if
                               "ingress_global_timestamp" in read else None)
        p._egt = p._stamp_slot(std.egress_global_timestamp if
                               "egress_global_timestamp" in read else None)
        # simple_switch's egress starts egress_spec at drop port + 1, cut to the field
        p._spec_init = ((DROP_PORT + 1) & p._masks[std.egress_spec]
                        if std.egress_spec is not None else 0)
        p._init_valid = [h.metadata for h in layout.headers]
        p._n_stacks = layout.n_cursors
        pipes = get(doc, "pipelines", "$", list)
        by_name = {pl.get("name"): (i, pl) for i, pl in enumerate(pipes)}
        starts = []
        for role, fallback in (("ingress", 0), ("egress", 1)):
            i, pl = by_name.get(role) or ((fallback, pipes[fallback]) if fallback < len(pipes)
                                          else (None, None))
            starts.append(
                self._control(p, pl, f"$.pipelines[{i}]", exprs, std) if pl is not None else None
            )
        p._ingress_start, p._egress_start = starts
        return p

    def _field_lists(self, layout: Layout, key: str) -> dict[int, list[int]]:
        """v1model field lists (``@field_list`` metadata preserved by resubmit and friends) or
        learn lists (the fields a ``digest`` samples), by id."""
        lists: dict[int, list[int]] = {}
        for i, fl in enumerate(self.doc.get(key) or []):
            path = f"$.{key}[{i}]"
            slots = []
            for j, el in enumerate(fl.get("elements") or []):
                if el.get("type") == "field":
                    _, fi = layout.field(el.get("value"), f"{path}.elements[{j}]")
                    if fi is not None:
                        slots.append(fi.slot)
            lists[get(fl, "id", path, int)] = slots
        return lists

    def _externs(self, p: Pipeline) -> None:
        doc = self.doc
        self.direct_counters: dict[str, str] = {}
        for i, c in enumerate(doc.get("counter_arrays") or []):
            path = f"$.counter_arrays[{i}]"
            name = get(c, "name", path, str)
            if c.get("is_direct"):
                self.direct_counters[get(c, "binding", path, str)] = name
            else:
                p.counters[name] = CounterArray(name, get(c, "size", path, int))
        for i, r in enumerate(doc.get("register_arrays") or []):
            path = f"$.register_arrays[{i}]"
            name = get(r, "name", path, str)
            p.registers[name] = RegisterArray(
                name, get(r, "size", path, int), get(r, "bitwidth", path, int)
            )
        for i, m in enumerate(doc.get("meter_arrays") or []):
            path = f"$.meter_arrays[{i}]"
            name = get(m, "name", path, str)
            if m.get("is_direct"):
                continue  # direct meters are not metered: their result field stays GREEN (0)
            unit = "packets" if m.get("type") == "packets" else "bytes"
            p.meters[name] = MeterArray(name, int(m.get("size") or 0), unit)

    # ---- control flow --------------------------------------------------------------------
    def _control(
        self, p: Pipeline, pl: dict, path: str, exprs: ExprCompiler, std: StdSlots
    ) -> Node | None:
        nodes: dict[str | None, Node | None] = {None: None}
        lookup = nodes.get
        self.later = []
        for i, t in enumerate(pl.get("tables") or []):
            tpath = f"{path}.tables[{i}]"
            table, node = self._table(t, tpath, exprs, std, lookup)
            p.tables[table.name] = table
            nodes[table.name] = node
        if self.gen is not None:
            self._generated_conditionals(pl, path, exprs, nodes)
        else:
            for i, c in enumerate(pl.get("conditionals") or []):
                cpath = f"{path}.conditionals[{i}]"
                cond = exprs.compile(get(c, "expression", cpath), f"{cpath}.expression")
                nodes[get(c, "name", cpath, str)] = _conditional(
                    cond, c.get("true_next"), c.get("false_next"), lookup
                )
        for i, a in enumerate(pl.get("action_calls") or []):
            apath = f"{path}.action_calls[{i}]"
            fn = self._action_fn(get(a, "action_id", apath, int), apath)
            nodes[get(a, "name", apath, str)] = _action_call(fn, a.get("next_node"), lookup)
        for name in _referenced_nodes(pl):
            if name not in nodes:
                raise fail(path, f"reference to unknown control node {name!r}")
        for name, target in self.later:
            self.gen.resolve(name, lookup(target))  # type: ignore[union-attr]
        init = pl.get("init_table")
        if init not in nodes:
            raise fail(f"{path}.init_table", f"unknown node {init!r}")
        return nodes[init]

    def _generated_conditionals(self, pl: dict, path: str, exprs: ExprCompiler,
                                nodes: dict) -> None:
        """Each conditional as one function: its condition inline, and a successor that is
        itself a conditional inlined as a nested ``if`` (up to INLINE_CONDITIONALS deep), so
        ``_run`` dispatches once per decision tree. Conditions have no side effects and never
        set ``exit``, so skipping ``_run``'s check between them changes nothing."""
        conds: dict[str, tuple[str, Any, Any]] = {}
        names = []
        for i, c in enumerate(pl.get("conditionals") or []):
            cpath = f"{path}.conditionals[{i}]"
            src = exprs.source(get(c, "expression", cpath), f"{cpath}.expression")
            name = get(c, "name", cpath, str)
            conds[name] = (src, c.get("true_next"), c.get("false_next"))
            names.append(name)
        calls = {a.get("name") for a in pl.get("action_calls") or []}  # these win a name clash

        def tree(name: str, depth: int, pad: str) -> list[str]:
            src, true_next, false_next = conds[name]
            return [f"{pad}if {src}:", *leaf(true_next, depth + 1, pad + "    "),
                    f"{pad}else:",
                    *leaf(false_next, depth + 1, pad + "    ")]

        def leaf(target: Any, depth: int, pad: str) -> list[str]:
            if target in conds and target not in calls and depth < INLINE_CONDITIONALS:
                return tree(target, depth, pad)
            bound = self.gen.bind(None)  # type: ignore[union-attr]
            self.later.append((bound, target))
            return [f"{pad}return {bound}"]

        for name in names:
            nodes[name] = self.gen.function("branch", "s, p=()", tree(name, 0, ""))  # type: ignore[union-attr]

    def _action_fn(self, aid: int, path: str) -> Callable:
        fn = self.action_fns.get(aid)
        if fn is None:
            raise fail(path, f"unknown action id {aid!r}")
        return fn

    def _table(
        self, t: dict, path: str, exprs: ExprCompiler, std: StdSlots, lookup: Callable
    ) -> tuple[Table, Node]:
        layout = exprs.layout
        name = get(t, "name", path, str)
        if t.get("type", "simple") != "simple":
            raise fail(f"{path}.type", f"table {name}: action profiles are not supported")
        keys, readers = [], []
        for i, k in enumerate(get(t, "key", path, list)):
            mk, reader = self._key(k, f"{path}.key[{i}]", layout)
            keys.append(mk)
            readers.append(reader)
        action_ids = get(t, "action_ids", path, list)
        infos = {}
        for aid in action_ids:
            self._action_fn(aid, f"{path}.action_ids")
            infos[self.action_infos[aid].name] = self.action_infos[aid]
        id_by_name = {self.action_infos[a].name: a for a in action_ids}
        next_tables = t.get("next_tables") or {}
        hit_miss = "__HIT__" in next_tables or "__MISS__" in next_tables
        fallback_next = t.get("base_default_next")

        def resolve(action: str) -> Any:
            aid = id_by_name.get(action)
            fn = self.action_fns[aid] if aid is not None else _noop
            return (fn, next_tables.get(action, fallback_next))

        size = self.size_override or int(t.get("max_size") or 1024)
        default = t.get("default_entry")
        default_action: tuple[str, tuple[int, ...]] = ("", ())
        const_default = False
        if default is not None:
            aid = get(default, "action_id", f"{path}.default_entry", int)
            self._action_fn(aid, f"{path}.default_entry")
            data = tuple(
                parse_hexstr(v, f"{path}.default_entry.action_data")
                for v in default.get("action_data") or []
            )
            default_action = (self.action_infos[aid].name, data)
            const_default = bool(default.get("action_const"))
            if default_action[0] not in id_by_name:
                id_by_name[default_action[0]] = aid
        table = Table(
            name,
            keys,
            infos,
            size,
            support_timeout=bool(t.get("support_timeout")),
            direct_counter=self.direct_counters.get(name),
            default_action=default_action,
            const_default=const_default,
            resolve=resolve,
        )
        if t.get("entries"):
            table.size = max(size, len(t["entries"]))
            for i, e in enumerate(t["entries"]):
                self._const_entry(table, e, f"{path}.entries[{i}]")
            table.const_entries = True
        if self.gen is not None:
            return table, self._generated_table_node(
                table, readers, hit_miss, next_tables, fallback_next, std, lookup)
        node = _table_node(
            table, _key_reader(readers, keys), hit_miss, next_tables, fallback_next, std, lookup
        )
        return table, node

    def _generated_table_node(self, table: Table, readers: list, hit_miss: bool,
                              next_tables: dict, fallback_next: str | None, std: StdSlots,
                              lookup: Callable) -> Node:
        """``_table_node`` as one function: the key tuple built inline, the hit/miss successors
        bound once all nodes exist (``later``), the action's successor looked up by name."""
        gen = self.gen
        assert gen is not None
        parts = [f"s.valid[{w:d}]" if kind == "valid" else
                 f"s.f[{w:d}]" if mask is None else f"(s.f[{w:d}] & {mask:d})"
                 for kind, w, mask in readers]
        tbl, nodes = gen.bind(table), gen.bind(lookup)
        size = f"s.f[{std.packet_length:d}]" if std.packet_length is not None else "len(s.data)"
        if hit_miss:
            hit_name, miss_name = gen.bind(None), gen.bind(None)
            self.later += [(hit_name, next_tables.get("__HIT__", fallback_next)),
                           (miss_name, next_tables.get("__MISS__", fallback_next))]
            on_hit, on_miss = hit_name, miss_name
        else:
            on_hit = on_miss = f"{nodes}(nxt)"
        exact = table.exact_lookup()
        find = gen.bind(exact) if exact is not None else f"{tbl}.lookup"
        lookup_src = f"{find}(({', '.join(parts)},))" if parts else "None"
        return gen.function("table", "s, p=()", [
            f"entry = {lookup_src}",
            "if entry is not None:",
            "    entry.packets += 1",
            f"    entry.bytes += {size}",
            "    entry.last_hit = s.now",
            "    fn, nxt = entry.handle",
            "    fn(s, entry.params)",
            f"    return {on_hit}",
            f"fn, nxt = {tbl}.default_handle",
            f"fn(s, {tbl}.default_action[1])",
            f"return {on_miss}",
        ])

    def _key(self, k: dict, path: str, layout: Layout) -> tuple[MatchKey, Any]:
        mt = get(k, "match_type", path, str)
        target = get(k, "target", path)
        mask = k.get("mask")
        if mt == "valid":
            h = layout.header(target, f"{path}.target").index
            return MatchKey(k.get("name") or f"{target}.$valid$", mt, 1), ("valid", h, None)
        hdr, fi = layout.field(target, f"{path}.target")
        name = k.get("name") or ".".join(target)
        if fi is None:
            return MatchKey(name, mt, 1), ("valid", hdr.index, None)
        m = parse_hexstr(mask, f"{path}.mask") if mask is not None else None
        if fi.signed:
            m = (1 << fi.width) - 1 if m is None else m & ((1 << fi.width) - 1)
        return MatchKey(name, mt, fi.width), ("field", fi.slot, m)

    def _const_entry(self, table: Table, e: dict, path: str) -> None:
        key = []
        for i, (mk, m) in enumerate(zip(table.keys, get(e, "match_key", path, list), strict=True)):
            mpath = f"{path}.match_key[{i}]"
            t = mk.match_type
            if t == "valid":
                key.append(bool(m.get("key")))
            elif t == "exact":
                key.append(parse_hexstr(m.get("key"), mpath))
            elif t == "lpm":
                key.append((parse_hexstr(m.get("key"), mpath), get(m, "prefix_length", mpath, int)))
            elif t == "ternary":
                key.append((parse_hexstr(m.get("key"), mpath), parse_hexstr(m.get("mask"), mpath)))
            elif t == "range":
                key.append((parse_hexstr(m.get("start"), mpath), parse_hexstr(m.get("end"), mpath)))
            elif t == "optional":
                wildcard = parse_hexstr(m.get("mask", "0x1"), mpath) == 0
                key.append((parse_hexstr(m.get("key"), mpath), wildcard))
        ae = get(e, "action_entry", path, dict)
        aid = get(ae, "action_id", f"{path}.action_entry", int)
        self._action_fn(aid, f"{path}.action_entry")
        params = tuple(parse_hexstr(v, path) for v in ae.get("action_data") or [])
        prio = BIG_PRIORITY - int(e.get("priority", 0))
        table.insert(tuple(key), prio, self.action_infos[aid].name, params)


_QUEUEING = frozenset({"enq_timestamp", "enq_qdepth", "deq_timedelta", "deq_qdepth"})
_PROGRAM_PARTS = ("parsers", "deparsers", "actions", "pipelines", "calculations", "checksums",
                  "field_lists", "learn_lists", "extern_instances", "parse_vsets")


def _fields_read(doc: dict) -> set[str]:
    """Names of the timestamp and queueing fields the program refers to anywhere (by their
    standard_metadata or their aliased name), so the traffic manager writes only those."""
    names = _QUEUEING | {"ingress_global_timestamp", "egress_global_timestamp"}
    text = json.dumps([doc.get(k) for k in _PROGRAM_PARTS])
    return {n for n in names if f'"{n}"' in text or f".{n}" in text}


def _noop(s: PacketState, p: tuple) -> None:
    return None


def _referenced_nodes(pl: dict) -> list[str]:
    names = [pl.get("init_table")]
    for t in pl.get("tables") or []:
        names += list((t.get("next_tables") or {}).values())
        names.append(t.get("base_default_next"))
    for c in pl.get("conditionals") or []:
        names += [c.get("true_next"), c.get("false_next")]
    for a in pl.get("action_calls") or []:
        names.append(a.get("next_node"))
    return [n for n in names if n is not None]


def _key_reader(readers: list, keys: list[MatchKey]) -> Callable[[PacketState], tuple]:
    if all(kind == "field" and mask is None for kind, _, mask in readers):
        slots = [slot for _, slot, _ in readers]
        if not slots:
            return lambda s: ()
        if len(slots) == 1:
            only = slots[0]
            return lambda s: (s.f[only],)
        getter = operator.itemgetter(*slots)
        return lambda s: getter(s.f)

    def read(s: PacketState) -> tuple:
        out = []
        for kind, where, mask in readers:
            if kind == "valid":
                out.append(s.valid[where])
            else:
                v = s.f[where]
                out.append(v & mask if mask is not None else v)
        return tuple(out)

    return read


def _table_node(
    table: Table,
    key: Callable[[PacketState], tuple],
    hit_miss: bool,
    next_tables: dict,
    fallback_next: str | None,
    std: StdSlots,
    lookup: Callable,
) -> Node:
    plen = std.packet_length
    hit_next = next_tables.get("__HIT__", fallback_next)
    miss_next = next_tables.get("__MISS__", fallback_next)
    keyless = not table.keys

    def apply(s: PacketState) -> Any:
        entry = None if keyless else table.lookup(key(s))
        if entry is not None:
            entry.packets += 1
            entry.bytes += s.f[plen] if plen is not None else len(s.data)
            entry.last_hit = s.now
            fn, nxt = entry.handle
            fn(s, entry.params)
            return lookup(hit_next if hit_miss else nxt)
        fn, nxt = table.default_handle
        fn(s, table.default_action[1])
        return lookup(miss_next if hit_miss else nxt)

    return apply


def _conditional(cond: Callable, true_next: Any, false_next: Any, lookup: Callable) -> Node:
    def branch(s: PacketState) -> Any:
        return lookup(true_next if cond(s, ()) else false_next)

    return branch


def _action_call(fn: Callable, next_node: Any, lookup: Callable) -> Node:
    def call(s: PacketState) -> Any:
        fn(s, ())
        return lookup(next_node)

    return call
