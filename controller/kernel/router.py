"""Kernel mode's sans-IO core: conntrack events in, flowtable decisions and ctnetlink requests out.

The Linux router in the namespace forwards, filters, NATs and tracks; :class:`KernelRouter`
only watches. Per ctnetlink event it updates its mirror of the entry (:mod:`.table`) and says
whether the connection became a *candidate*: eligible under the mirror's admission rules
(:func:`~controller.netfilter.admission.refusal`), of a protocol the policy offloads, not yet
offloaded.
The edge then asks the kernel for both directions' route and neighbour (I/O) and calls
:meth:`KernelRouter.admit`, which admits the connection into the same :class:`Flowtable`
the mirror uses (timeouts, GC, STATS cadence, teardown) through
:func:`~controller.netfilter.admission.admit`;
REPLACE / DESTROY / STATS go through the same :class:`OffloadQueue` to the same ndo driver.

What takes hardware entries away: the kernel destroying the entry (expiry, ``conntrack -D``),
the kernel's TCP state leaving ESTABLISHED (FIN/RST are punted by the switch, so the kernel
sees them), a route or neighbour change affecting a direction, a representor going down, and
the flowtable's own idle expiry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from controller.config import RouterConfig
from controller.kernel.ctnetlink import DESTROY, CtEntry
from controller.kernel.paths import Path, flow_routes
from controller.kernel.policy import OffloadPolicy
from controller.kernel.table import DEFAULT_TIMEOUTS, KernelConntrack, tcp_open
from controller.netfilter.admission import admit, refusal
from controller.netfilter.capacity import CapacityPolicy
from controller.netfilter.conntrack import Timeouts, describe
from controller.netfilter.ct import IPPROTO_TCP, ORIGINAL, REPLY, Conn, CtTuple, Status
from controller.netfilter.flowtable import TEARDOWN, Flow, FlowEvent, Flowtable
from controller.netfilter.offload import OffloadQueue

Event = dict[str, object]
FLOWTABLE = "ft"


@dataclass(frozen=True, slots=True)
class _Established:
    """Admission's view of the "packet" that offloads: none, the kernel already forwarded it."""

    family: int
    options: bool = False
    tcp_flags: int = 0


class KernelRouter:
    """One switch's kernel-mode state: the kernel's connections, one flowtable, one queue."""

    def __init__(self, config: RouterConfig, policy: OffloadPolicy, *,
                 timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 on_event: Callable[[Event], None] | None = None,
                 wants: Callable[[str], bool] | None = None) -> None:
        self.config = config
        self.policy = policy
        self.on_event = on_event
        self.wants = wants  # as Router's: event types nobody listens for are never built
        self.conntrack = KernelConntrack(timeouts, on_change=self._ct_changed)
        ftc = config.flowtable
        self.offload = OffloadQueue(CapacityPolicy())  # no software fast path: no min counts
        self.flowtable = Flowtable(
            FLOWTABLE, self.conntrack, devices=tuple(p.id for p in config.ports), offload=True,
            counter=True, tcp_timeout=ftc.tcp_timeout, udp_timeout=ftc.udp_timeout,
            fin_mode=ftc.fin_mode, hw=self.offload, on_event=self._flow_event)
        self.stats: Counter[str] = Counter()
        self.punts: Counter[str] = Counter()  # frames the switch sent to the kernel, by reason
        self.now = 0.0
        self._flows: dict[int, Flow] = {}  # conn id -> its flow
        self._paths: dict[int, tuple[Path, Path]] = {}  # flow id -> the kernel's answer
        self._waiting: dict[tuple[str, bytes], dict[int, Conn]] = {}  # unresolved neighbours

    # -- conntrack -----------------------------------------------------------------------

    def on_ct(self, entry: CtEntry, now: float, *, own: bool = False) -> Conn | None:
        """Apply a ctnetlink event; the connection if the edge should now resolve its paths.

        ``own`` events answer kernel mode's own requests (a timeout update): they change the
        mirror but never offload, or an idle flow's teardown would offload it again at once.
        """
        self.now = now
        conn = self.conntrack.apply(entry, now)
        flow = self._flows.get(conn.id)
        if flow is not None:
            if entry.kind == DESTROY:
                self._remove(flow, now, "ct_dying")
            elif conn.proto == IPPROTO_TCP and not tcp_open(conn):
                self._remove(flow, now, "tcp_state")
            return None
        return conn if not own and self.candidate(conn) else None

    def on_packet(self, tup: CtTuple, now: float) -> Conn | None:
        """A punted packet on its way to the kernel: the connection, if it is a candidate.

        A data packet changes no conntrack state, so the kernel sends no event for it; this is
        how a connection whose flow expired (or was torn down by a route change) is offloaded
        again by its next packet, as the forward chain's ``flow add`` does in the kernel.
        """
        conn = self.conntrack.find(tup)
        if conn is None or conn.id in self._flows or not self.candidate(conn):
            return None
        return conn

    def candidate(self, conn: Conn) -> bool:
        if conn.dying or conn.status & Status.OFFLOAD or not self.policy.wants_protocol(conn.proto):
            return False
        if conn.proto == IPPROTO_TCP and not tcp_open(conn):
            return False
        return refusal(conn, _Established(conn.family)) is None

    def admit(self, conn: Conn, paths: tuple[Path, Path] | None, now: float) -> Flow | None:
        """Offload ``conn`` along ``paths`` (None: the kernel had no route), or count why not."""
        self.now = now
        if not self.candidate(conn):  # the kernel moved on while the paths were resolved
            self.stats["refused_changed"] += 1
            return None
        if paths is None:
            self.stats["refused_no_route"] += 1
            return None
        routes = flow_routes(self.config, paths)
        if isinstance(routes, str):
            self.stats[f"refused_{routes}"] += 1
            for path in paths:
                if path.mac is None:  # retried when the kernel resolves it
                    self._waiting.setdefault((path.oifname, path.nexthop), {})[conn.id] = conn
            return None
        if not self.policy.selects(conn.tuples[ORIGINAL], paths[REPLY].oifname,
                                   paths[ORIGINAL].oifname):
            self.stats["refused_policy"] += 1
            return None
        flow = admit(self.flowtable, conn, _Established(conn.family), ORIGINAL,
                     routes[ORIGINAL].in_port, lambda *_: routes, now)
        if flow is None:
            return None
        self.stats["offloaded"] += 1
        self._flows[conn.id] = flow
        self._paths[flow.id] = paths
        if conn.proto == IPPROTO_TCP:
            self.conntrack.request_liberal(conn)
        return flow

    def on_fin_rst(self, tup: CtTuple, now: float) -> bool:
        """A TCP FIN or RST the switch punted, before the kernel sees it.

        As at the kernel flowtable's hook (``nf_flow_state_check`` in teardown mode): the flow
        is torn down and conntrack fixed up first (``flow_offload_fixup_tcp``), then conntrack
        sees the packet; otherwise ``nf_conntrack_tcp_packet`` would find the RST's sequence
        number unequal to its stale ``td_maxack`` and keep the entry ESTABLISHED. There is no
        software fast path to forward it in CLOSING mode, so kernel mode always tears down.
        Returns True when a conntrack fix-up must reach the kernel before the packet does.
        """
        conn = self.conntrack.find(tup)
        flow = self._flows.get(conn.id) if conn is not None else None
        if conn is None or flow is None or flow.has(TEARDOWN):
            return False
        self._remove(flow, now, "tcp_fin_rst")
        return True

    # -- the kernel's other tables ------------------------------------------------------------

    def offloaded(self) -> list[tuple[Flow, tuple[Path, Path]]]:
        """Live flows and the paths they were offloaded with (to re-check after a route change)."""
        return [(f, self._paths[f.id]) for f in self._flows.values() if f.id in self._paths]

    def revalidate(self, flow: Flow, paths: tuple[Path, Path] | None, now: float) -> None:
        """The routing table changed: a flow whose paths are no longer the kernel's goes."""
        if paths != self._paths.get(flow.id):
            self._remove(flow, now, "route_changed")

    def neighbour_changed(self, ifname: str, address: bytes, mac: bytes | None,
                          now: float) -> list[Conn]:
        """A neighbour entry changed or went away: flows sending to its old MAC go. Returns
        the connections that waited for this neighbour, to be resolved again."""
        for flow, paths in self.offloaded():
            if any(p.oifname == ifname and p.nexthop == address and p.mac != mac for p in paths):
                self._remove(flow, now, "neigh_changed")
        if mac is None:
            return []
        return [c for c in self._waiting.pop((ifname, address), {}).values()
                if self.candidate(c)]

    def link_down(self, ifname: str, now: float) -> None:
        """A representor went down (``NETDEV_DOWN``): flows entering through it go."""
        port = self.config.port_by_name(ifname)
        if port is not None:
            self.flowtable.cleanup_port(port.id, now)
            self._forget_freed()

    def tick(self, now: float) -> list[tuple[int, bytes]]:
        """The flowtable's 1 s GC (expiry, STATS, hardware DESTROY). Nothing to send."""
        self.now = now
        self.flowtable.gc_step(now)
        self._forget_freed()
        for key, conns in list(self._waiting.items()):
            for conn_id in [i for i, c in conns.items() if c.dying]:
                del conns[conn_id]
            if not conns:
                del self._waiting[key]
        return []

    def _remove(self, flow: Flow, now: float, reason: str) -> None:
        self.flowtable.teardown(flow, now, reason)
        self.flowtable.gc_flow(flow, now)
        self._forget_freed()

    def _forget_freed(self) -> None:
        for conn_id, flow in list(self._flows.items()):
            if self.flowtable.flow_by_id(flow.id) is None:
                del self._flows[conn_id]
                self._paths.pop(flow.id, None)

    # -- events and snapshots ------------------------------------------------------------

    def _wanted(self, kind: str) -> bool:
        return self.on_event is not None and (self.wants is None or self.wants(kind))

    def _ct_changed(self, kind: str, conn: Conn) -> None:
        if self._wanted(kind):
            self.on_event({"type": kind, **describe(conn, self.now)})

    def _flow_event(self, event: FlowEvent) -> None:
        if event.type == "TEARDOWN":
            flow = self.flowtable.flow_by_id(event.flow_id)
            if flow is not None and flow.conn.proto == IPPROTO_TCP:
                # flow_offload_fixup_ct (>= 6.14) on every teardown: the kernel's td_maxack
                # is stale, or it would hold a RST it cannot check to ESTABLISHED
                self.conntrack.request_tcp_fixup(flow.conn)
        if not self._wanted(event.type):
            return
        out = event.to_dict()
        flow = self.flowtable.flow_by_id(event.flow_id)
        if flow is not None:
            info = describe(flow.conn, self.now)
            out.update(original=info["original"], reply=info["reply"], proto=info["proto"])
        self.on_event(out)

    def snapshot(self, now: float) -> dict[str, object]:
        """The kernel's connections with their hardware share, and the counters
        (``p4ft flows`` / ``p4ft stats``)."""
        conns = []
        for conn in self.conntrack:
            info = describe(conn, now)
            flow = self._flows.get(conn.id)
            info["expires_in"] = max(0.0, round(conn.timeout - now, 3))
            if flow is not None:
                info.update(flowtable=self.flowtable.name, flow=flow.id,
                            hw_directions=bin(flow.hw_dirs).count("1"),
                            expires_in=max(0.0, round(flow.timeout - now, 3)))
            info["offload"] = ("HW_OFFLOAD" if conn.status & Status.HW_OFFLOAD
                               else "OFFLOAD" if conn.status & Status.OFFLOAD else None)
            conns.append(info)
        ft = self.flowtable
        return {
            "conns": conns,
            "flowtables": [{"family": ft.family, "table": "kernel", "name": ft.name,
                            "devices": sorted(p.name for p in self.config.ports),
                            "flags": ["offload", "counter"], "flows": len(ft),
                            "counters": dict(ft.counters)}],
            "stats": {
                "mode": "kernel",
                "punts": dict(self.punts),
                "kernel": dict(self.stats),
                "offload": dict(self.offload.counters),
                "offload_outstanding": dict(self.offload.outstanding()),
                "hw_flows": self.offload.installed(),
                "hw_entries": sum(bin(f.hw_dirs).count("1") for f in ft.flows()),
                "capacity": dict(self.offload.policy.counters),
                "conntrack": dict(self.conntrack.counters),
                "conntrack_entries": len(self.conntrack),
            },
        }
