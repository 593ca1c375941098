"""The software flowtable: a mirror of the kernel's ``nf_flow_table`` core (nf_flow_table_core.c).

A :class:`Flow` is one offloaded connection, present under two keys (ORIGINAL and REPLY). The
table decides nothing about *which* connections enter (``admission``) and forwards nothing
(``fastpath``); it owns the flows' lifecycle: add, lookup, rate-limited
refresh, teardown with the conntrack fix-up, and the 1 s garbage collector that expires flows and
walks hardware flows through DESTROY before freeing them. Hardware commands go to an
:class:`OffloadSink` (``controller.netfilter.offload.OffloadQueue``), never to a driver directly.

Keys are plain tuples for speed: ``(src, dst, sport, dport, in_port, family, proto, encap)`` with
the kernel's zero-filling (ports 0 for non-TCP/UDP, ``encap`` () when untagged), see §1.2;
``encap`` is the tuple's ``encap[]`` as ``inet.encap.Encap`` pairs, outermost first.
"""

from __future__ import annotations

import enum
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from controller.netfilter.ct import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    ORIGINAL,
    REPLY,
    Conn,
    Status,
    TcpState,
)
from inet.encap import Encaps

FinMode = Literal["closing", "teardown"]
FlowKey = tuple[bytes, bytes, int, int, int, int, int, Encaps]

SUBDEVICE_BASE = 1 << 32
"""Ids of VLAN / PPPoE devices (``controller.config``) start here, above every switch port id:
a route in or out of such a device is one the switch has no port for (software only)."""

NF_FLOW_TIMEOUT = 30.0  # seconds; also the default of both per-protocol sysctls
REFRESH_GRANULARITY = 1.0  # HZ: a flow's deadline is rewritten at most once a second
GC_INTERVAL = 1.0
NF_CT_DAY = 86400.0
CT_EXTEND_THRESHOLD = 300.0  # nf_flow_table_extend_ct_timeout acts when < 5 min remain

_DYING = int(Status.DYING)
STATS_THRESHOLD = 0.9  # STATS only once 10 % of the idle budget is used up
_flow_ids = itertools.count(1)  # global: cookies (id * 2 + dir) must be unique per driver
_and = int.__and__  # IntFlag.__and__ is Python-level; the hot path masks plain ints


class FlowFlag(enum.IntFlag):
    """``enum nf_flow_flags`` (≥6.14 order, without the act_ct-only HW_ESTABLISHED)."""

    SNAT = 1 << 0
    DNAT = 1 << 1
    CLOSING = 1 << 2
    TEARDOWN = 1 << 3
    HW = 1 << 4
    HW_DYING = 1 << 5
    HW_DEAD = 1 << 6
    HW_PENDING = 1 << 7
    HW_BIDIRECTIONAL = 1 << 8


SNAT = int(FlowFlag.SNAT)
DNAT = int(FlowFlag.DNAT)
_SRC_NAT, _DST_NAT = int(Status.SRC_NAT), int(Status.DST_NAT)
CLOSING = int(FlowFlag.CLOSING)
TEARDOWN = int(FlowFlag.TEARDOWN)
HW = int(FlowFlag.HW)
HW_DYING = int(FlowFlag.HW_DYING)
HW_DEAD = int(FlowFlag.HW_DEAD)
HW_PENDING = int(FlowFlag.HW_PENDING)
HW_BIDIRECTIONAL = int(FlowFlag.HW_BIDIRECTIONAL)


@dataclass(frozen=True, slots=True)
class FlowRoute:
    """Where packets of one direction come in and go out (``flow_offload_fill_route``).

    ``direct``: xmit type DIRECT, the L2 header cached at admission (``eth_src``, ``eth_dst``);
    else NEIGH: ``next_hop`` is resolved per packet through the neighbour cache
    (``nf_flow_queue_xmit`` / ``neigh_xmit``) and ``eth_dst`` is unused. ``in_encap`` is the
    encapsulation this direction arrives with on ``in_port`` (the tuple's ``encap[]``, part of
    the key); a DIRECT direction pushes the other direction's (``nf_flow_encap_push``), a NEIGH
    one leaves through ``out_port``, a VLAN / PPPoE device that adds its own.
    """

    in_port: int
    out_port: int
    eth_src: bytes
    eth_dst: bytes
    mtu: int
    in_encap: Encaps = ()
    next_hop: bytes = b""
    direct: bool = True


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """What ``p4ft monitor`` and ``p4ft simulate`` show.

    ``type``: OFFLOAD (flow entered the software table), HW_OFFLOAD (hardware accepted ≥1
    direction), TEARDOWN (flow dead for lookups; ``reason`` says why), DESTROY (its hardware
    rules were removed).
    """

    type: str
    flowtable: str
    flow_id: int
    conn_id: int
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": self.type,
            "flowtable": self.flowtable,
            "flow": self.flow_id,
            "conn": self.conn_id,
        }
        if self.reason:
            out["reason"] = self.reason
        return out


EventSink = Callable[[FlowEvent], None]


class CtView(Protocol):
    """What the flowtable needs from ``controller.netfilter.conntrack.Conntrack``: timers, and the
    OFFLOAD / HW_OFFLOAD bits (flipped silently, as the kernel's bit operations)."""

    def timeout_for(self, conn: Conn) -> float: ...

    def refresh(self, conn: Conn, seconds: float, now: float) -> None: ...

    def set_status(self, conn: Conn, bits: Status) -> None: ...

    def clear_status(self, conn: Conn, bits: Status) -> None: ...


class OffloadSink(Protocol):
    """Hardware work requests (``offload.OffloadQueue``). Each returns False when dropped
    because the flow already has a command outstanding (HW_PENDING)."""

    def replace(self, ft: Flowtable, flow: Flow) -> bool: ...

    def destroy(self, ft: Flowtable, flow: Flow) -> bool: ...

    def stats(self, ft: Flowtable, flow: Flow, now: float) -> bool: ...


def make_key(
    family: int,
    proto: int,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    in_port: int,
    encap: Encaps = (),
) -> FlowKey:
    """Lookup key of one direction; ports are zero unless TCP/UDP (§1.2)."""
    if proto != IPPROTO_TCP and proto != IPPROTO_UDP:
        sport = dport = 0
    return (src, dst, sport, dport, in_port, family, proto, encap)


class Flow:
    """One offloaded connection (``struct flow_offload``), kept lean: a million must fit."""

    __slots__ = (
        "conn",
        "flags",
        "hw_dirs",
        "id",
        "keys",
        "routes",
        "sw_bytes",
        "sw_packets",
        "timeout",
    )

    def __init__(self, flow_id: int, conn: Conn, routes: tuple[FlowRoute, FlowRoute]) -> None:
        self.id = flow_id
        self.conn = conn
        self.routes = routes
        keys = []
        for d in (ORIGINAL, REPLY):
            t = conn.tuples[d]
            r = routes[d]
            keys.append(
                make_key(t.family, t.proto, t.src, t.dst, t.sport, t.dport, r.in_port, r.in_encap)
            )
        self.keys: tuple[FlowKey, FlowKey] = (keys[0], keys[1])
        status = int(conn.status)
        self.flags = (SNAT if status & _SRC_NAT else 0) | (DNAT if status & _DST_NAT else 0)
        self.timeout = 0.0
        self.hw_dirs = 0  # bit d set: hardware holds the rule of direction d
        self.sw_packets = 0  # software fast-path hits, both directions (capacity policy)
        self.sw_bytes = 0

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    def __repr__(self) -> str:
        return f"<Flow {self.id} conn={self.conn.id} flags={FlowFlag(self.flags)!r}>"


NatTargets = tuple[bytes | None, bytes | None, int | None, int | None]


def nat_targets(flow: Flow, direction: int) -> NatTargets:
    """New (src, dst, sport, dport) for packets of ``direction``; None = unchanged (§3.2).

    Values come from the opposite tuple: SNAT ORIGINAL takes REPLY's dst, SNAT REPLY takes
    ORIGINAL's src; DNAT ORIGINAL takes REPLY's src, DNAT REPLY takes ORIGINAL's dst.
    """
    src = dst = sport = dport = None
    orig, reply = flow.conn.tuples
    ports = orig.proto == IPPROTO_TCP or orig.proto == IPPROTO_UDP
    if flow.flags & SNAT:
        if direction == ORIGINAL:
            src, sport = reply.dst, reply.dport
        else:
            dst, dport = orig.src, orig.sport
    if flow.flags & DNAT:
        if direction == ORIGINAL:
            dst, dport = reply.src, reply.sport
        else:
            src, sport = orig.dst, orig.dport
    if not ports:
        sport = dport = None
    return src, dst, sport, dport


def push_encap(flow: Flow, direction: int) -> Encaps:
    """The encapsulations ``direction``'s packets leave with: a DIRECT xmit pushes the other
    direction's ingress ones (``nf_flow_encap_push``, ``nf_flow_rule_route_common``), a NEIGH
    xmit none (its egress device adds its own)."""
    return flow.routes[1 - direction].in_encap if flow.routes[direction].direct else ()


class FlowtableError(Exception):
    """A request the flowtable refuses (duplicate key, table freed, bad configuration)."""


class Flowtable:
    """One nft flowtable: ``table <family> <table> { flowtable <name> { ... } }``."""

    def __init__(
        self,
        name: str,
        conntrack: CtView,
        *,
        family: str = "inet",
        table: str = "filter",
        devices: tuple[int, ...] = (),
        offload: bool = False,
        counter: bool = False,
        tcp_timeout: float = NF_FLOW_TIMEOUT,
        udp_timeout: float = NF_FLOW_TIMEOUT,
        fin_mode: FinMode = "closing",
        hw: OffloadSink | None = None,
        on_event: EventSink | None = None,
        gc_batch: int = 100_000,
    ) -> None:
        if fin_mode not in ("closing", "teardown"):
            raise FlowtableError(f"fin_mode must be 'closing' or 'teardown', not {fin_mode!r}")
        if tcp_timeout <= 0 or udp_timeout <= 0:
            raise FlowtableError("flowtable timeouts must be positive")
        if offload and hw is None:
            raise FlowtableError("a 'flags offload' flowtable needs an offload queue")
        if gc_batch < 1:
            raise FlowtableError("gc_batch must be at least 1")
        self.name = name
        self.family = family
        self.table = table
        self.devices = set(devices)
        self._offload = offload
        self.counter = counter
        self.tcp_timeout = float(tcp_timeout)
        self.udp_timeout = float(udp_timeout)
        self.fin_mode: FinMode = fin_mode
        self.conntrack = conntrack
        self.hw = hw
        self.on_event = on_event
        self.gc_batch = gc_batch
        self.counters: Counter[str] = Counter()
        self.freed = False
        self.refs = 0  # rules referencing this flowtable (delete refused while > 0)
        self._map: dict[FlowKey, tuple[Flow, int]] = {}
        self._flows: dict[int, Flow] = {}
        self._gc_pass: Iterator[Flow] | None = None
        self._gc_pass_started = float("-inf")

    # -- configuration (nft_flowtable_update semantics) --------------------------------------

    @property
    def offload(self) -> bool:
        return self._offload

    def set_offload(self, offload: bool) -> None:
        """``flags offload`` cannot be toggled on an existing flowtable (-EOPNOTSUPP)."""
        if offload != self._offload:
            raise FlowtableError("the offload flag of an existing flowtable cannot change")

    def add_devices(self, ports: tuple[int, ...]) -> None:
        self.devices.update(ports)

    def remove_devices(self, ports: tuple[int, ...], now: float) -> None:
        """Devices leaving the flowtable take their flows with them (NETDEV_UNREGISTER)."""
        for port in ports:
            self.devices.discard(port)
            self.cleanup_port(port, now)

    def check_delete(self) -> None:
        """``delete flowtable`` is refused (EBUSY) while a rule references it."""
        if self.refs > 0:
            raise FlowtableError(f"flowtable {self.name} is in use by {self.refs} rule(s)")

    # -- core ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._flows)

    def flows(self) -> list[Flow]:
        return list(self._flows.values())

    def flow_by_id(self, flow_id: int) -> Flow | None:
        return self._flows.get(flow_id)

    def emit(self, type_: str, flow: Flow, reason: str = "") -> None:
        if self.on_event is not None:
            self.on_event(FlowEvent(type_, self.name, flow.id, flow.conn.id, reason))

    def timeout_of(self, proto: int) -> float:
        """``flow_offload_get_timeout``: per-protocol budget, 30 s for anything else."""
        if proto == IPPROTO_TCP:
            return self.tcp_timeout
        if proto == IPPROTO_UDP:
            return self.udp_timeout
        return NF_FLOW_TIMEOUT

    def stats_due(self, flow: Flow, now: float) -> bool:
        """Whether ``nf_flow_offload_stats`` would ask the hardware: only once 10 % of the
        flow's idle budget is used up (``nf_flow_timeout_delta(flow->timeout) < 9/10 *
        timeout``), and only for rules it holds (of none, a driver answers "unknown cookie")."""
        return bool(flow.hw_dirs) and (
            flow.timeout - now < STATS_THRESHOLD * self.timeout_of(flow.conn.proto)
        )

    def new_flow(self, conn: Conn, routes: tuple[FlowRoute, FlowRoute]) -> Flow:
        """``flow_offload_alloc`` (the caller checked the ct is not dying)."""
        return Flow(next(_flow_ids), conn, routes)

    def add(self, flow: Flow, now: float) -> None:
        """``flow_offload_add``: publish both keys, push the ct timeout away, queue REPLACE."""
        if self.freed:
            raise FlowtableError(f"flowtable {self.name} was deleted")
        k0, k1 = flow.keys
        if k0 in self._map or k1 in self._map or k0 == k1:
            self.counters["add_exists"] += 1
            raise FlowtableError("a flow with this key already exists")
        flow.timeout = now + self.timeout_of(flow.conn.proto)
        self._map[k1] = (flow, REPLY)
        self._map[k0] = (flow, ORIGINAL)
        self._flows[flow.id] = flow
        self.conntrack.refresh(flow.conn, NF_CT_DAY, now)
        self.counters["added"] += 1
        self.emit("OFFLOAD", flow)
        if self._offload:
            flow.flags |= HW
            self._hw().replace(self, flow)

    def lookup(self, key: FlowKey) -> tuple[Flow, int] | None:
        """``flow_offload_lookup``: (flow, direction), or None on a miss.

        A flow being torn down, or whose conntrack entry is dying, is a miss.
        """
        entry = self._map.get(key)
        if entry is None:
            return None
        flow = entry[0]
        if flow.flags & TEARDOWN or _and(flow.conn.status, _DYING):
            return None
        return entry

    def refresh(self, flow: Flow, now: float, force: bool = False) -> None:
        """``flow_offload_refresh``: move the deadline, at most one write per second.

        A write on an offload flowtable re-queues REPLACE (how a refused install is retried),
        except for CLOSING flows, whose hardware rules are on their way out.
        """
        deadline = now + self.timeout_of(flow.conn.proto)
        if not force and deadline - flow.timeout <= REFRESH_GRANULARITY:
            return
        flow.timeout = deadline
        if self._offload and not flow.flags & CLOSING:
            self._hw().replace(self, flow)

    def set_closing(self, flow: Flow) -> None:
        """TCP FIN/RST in CLOSING mode (≥6.14): keep forwarding, GC removes the HW rules."""
        if not flow.flags & CLOSING:
            flow.flags |= CLOSING
            self.counters["closing"] += 1

    def teardown(self, flow: Flow, now: float, reason: str) -> None:
        """``flow_offload_teardown``: dead for lookups, ct gives up OFFLOAD and is fixed up.

        Runs once per flow; ``reason`` is what ``p4ft monitor`` shows.
        """
        if flow.flags & TEARDOWN:
            return
        flow.flags |= TEARDOWN
        self.conntrack.clear_status(flow.conn, Status.OFFLOAD)
        self._fixup_ct(flow, now)
        self.counters[f"teardown_{reason}"] += 1
        self.emit("TEARDOWN", flow, reason)

    def _fixup_ct(self, flow: Flow, now: float) -> None:
        """``flow_offload_fixup_ct`` (≥6.14, as in 6.18): hand the connection back to conntrack.

        A CLOSING TCP flow enters CLOSE with the full CLOSE timeout (10 s), whatever the reason
        of the teardown; otherwise the state's timeout, minus the idle budget only if the flow
        has expired (``nf_flow_has_expired``: it already idled that long), and only lowered.
        """
        conn = flow.conn
        proto = conn.proto
        closing = False
        if proto == IPPROTO_TCP:
            closing = bool(flow.flags & CLOSING)
            if closing:
                conn.tcp_state = TcpState.CLOSE
                conn.tcp[ORIGINAL].close_init = True
            for track in conn.tcp:
                track.max_window = 0
                track.maxack_set = False
        elif proto != IPPROTO_UDP:
            return
        timeout = self.conntrack.timeout_for(conn)
        if not closing and flow.timeout - now <= 0:
            timeout = max(0.0, timeout - self.timeout_of(proto))
        if closing or conn.timeout - now > timeout:
            self.conntrack.refresh(conn, timeout, now)

    def _extend_ct_timeout(self, conn: Conn, now: float) -> None:
        """``nf_flow_table_extend_ct_timeout`` (≥6.13): keep an offloaded ct from expiring."""
        if conn.timeout - now >= CT_EXTEND_THRESHOLD:
            return
        proto = conn.proto
        if proto == IPPROTO_UDP:
            extension = NF_CT_DAY
        elif proto == IPPROTO_TCP:
            state = conn.tcp_state
            if state == TcpState.ESTABLISHED:
                extension = NF_CT_DAY
            elif state in (
                TcpState.FIN_WAIT,
                TcpState.CLOSE_WAIT,
                TcpState.LAST_ACK,
                TcpState.TIME_WAIT,
            ):
                extension = CT_EXTEND_THRESHOLD
            else:
                return
        else:
            return
        self.conntrack.refresh(conn, extension, now)

    # -- garbage collection -------------------------------------------------------------------

    def gc_flow(self, flow: Flow, now: float) -> None:
        """``nf_flow_offload_gc_step`` for one flow (§2.5)."""
        if not flow.flags & TEARDOWN:
            if flow.timeout - now <= 0:
                self.teardown(flow, now, "expired")
            elif flow.conn.dying:
                self.teardown(flow, now, "ct_dying")
            else:
                self._extend_ct_timeout(flow.conn, now)
        flags = flow.flags
        if flags & TEARDOWN:
            if not flags & HW:
                self._free(flow)
            elif not flags & HW_DYING:
                self._hw().destroy(self, flow)
            elif flags & HW_DEAD:
                self._free(flow)
        elif flags & CLOSING and flags & HW and not flags & HW_DYING:
            self._hw().destroy(self, flow)
        elif flags & HW:
            self._hw().stats(self, flow, now)

    def gc_step(self, now: float, budget: int | None = None) -> int:
        """Visit up to ``budget`` (default ``gc_batch``) flows of the current GC pass.

        A pass is a snapshot of the flows taken at most once per second; each call continues
        it, so the per-flow semantics of the kernel's 1 s GC hold while no call runs long.
        Returns the number of flows visited.
        """
        if self._gc_pass is None:
            if now - self._gc_pass_started < GC_INTERVAL:
                return 0
            self._gc_pass = iter(list(self._flows.values()))
            self._gc_pass_started = now
        todo = self.gc_batch if budget is None else budget
        visited = 0
        gc_flow, flows, stats_due = self.gc_flow, self._flows, self.stats_due
        for flow in self._gc_pass:
            visited += 1
            # gc_flow's tests inlined, to skip the call for a live flow with nothing to do this
            # pass (a flow freed earlier in this pass, by device down or flush, is skipped): a
            # hardware flow that is not CLOSING with its rules still in place has only
            # nf_flow_offload_stats to do, which returns at once unless a STATS is due.
            flags = flow.flags
            if (
                flags & TEARDOWN
                or flow.timeout <= now
                or _and(flow.conn.status, _DYING)
                or flow.conn.timeout - now < CT_EXTEND_THRESHOLD  # as _extend_ct_timeout
                or (
                    flags & HW
                    and ((flags & CLOSING and not flags & HW_DYING) or stats_due(flow, now))
                )
            ) and flow.id in flows:
                gc_flow(flow, now)
            if visited >= todo:
                break
        else:
            self._gc_pass = None
            self.counters["gc_passes"] += 1
        return visited

    def gc_run(self, now: float) -> None:
        """One complete GC pass now (tests, device cleanup, flowtable free)."""
        for flow in list(self._flows.values()):
            self.gc_flow(flow, now)

    def cleanup_port(self, port: int, now: float) -> int:
        """NETDEV_DOWN: tear down flows whose ingress port (either direction) is ``port``.

        Egress-only matches stay, as in ``nf_flow_table_cleanup``. Returns the count.
        """
        hit = [f for f in self._flows.values() if f.keys[0][4] == port or f.keys[1][4] == port]
        for flow in hit:
            self.teardown(flow, now, "device_down")
            self.gc_flow(flow, now)
        return len(hit)

    def flush(self, now: float) -> None:
        """Tear down every flow; hardware flows are freed once their DESTROY completed."""
        for flow in list(self._flows.values()):
            self.teardown(flow, now, "flush")
            self.gc_flow(flow, now)

    def free(self, now: float) -> None:
        """``nf_flow_table_free``: no more adds; flush. Call :meth:`gc_run` again after the
        offload queue drained, to free the hardware flows (``offload_flush_cleanup``)."""
        self.check_delete()
        self.freed = True
        self.flush(now)

    def _free(self, flow: Flow) -> None:
        """``flow_offload_del``: unlink both keys."""
        for key in flow.keys:
            entry = self._map.get(key)
            if entry is not None and entry[0] is flow:
                del self._map[key]
        del self._flows[flow.id]
        self.counters["freed"] += 1

    def _hw(self) -> OffloadSink:
        assert self.hw is not None  # checked in __init__ for offload flowtables
        return self.hw
