"""The whole router of one switch as a sans-IO object: what the controller does with a punt.

A :class:`Router` owns one instance of everything a router holds (routing table, neighbour
cache, conntrack with NAT, the nft ruleset, its flowtables with their software fast paths, the
offload work queue) and nothing global, so one process can hold several. Frames come in with
:meth:`Router.receive` and go through the software flowtable first (the flowtable's ingress
hook), then the classic path; :meth:`Router.tick` runs the 1 s timers. The edge (daemon,
simulator) moves frames and drains :attr:`Router.offload` into a driver::

    batch = router.offload.take_batch(1000)
    router.offload.complete(driver_results)

Events are plain dicts ``{"type": NEW|UPDATE|DESTROY|OFFLOAD|HW_OFFLOAD|TEARDOWN, ...}`` with
the connection's tuples; flowtable events also carry ``flowtable`` and ``flow``. Every event goes
to ``on_event``; those produced inside :meth:`receive` are also returned in its outcome. An edge
whose listeners come and go (``p4ft monitor``) passes ``wants``: an event type it says no to is
never built (describing a connection costs more than forwarding its packet).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.config import RouterConfig
from controller.ip.classic import ClassicPath, FlowtableKey, Send, flowtable_key
from controller.ip.icmp import RateLimiter
from controller.ip.neighbors import NeighborTable
from controller.ip.packet import ETH_HLEN, Malformed, Packet, parse
from controller.ip.routing import RoutingTable
from controller.netfilter.capacity import CapacityPolicy
from controller.netfilter.conntrack import Conntrack, CtEvent, describe
from controller.netfilter.ct import Status
from controller.netfilter.fastpath import DROP, FORWARD, FastPath
from controller.netfilter.flowtable import FlowEvent, FlowFlag, Flowtable
from controller.netfilter.nat import Nat
from controller.netfilter.offload import OffloadQueue
from controller.netfilter.ruleset import FlowtableDef, Ruleset, loads
from inet import encap
from ndo.api import PuntReason

Event = dict[str, object]
EventCallback = Callable[[Event], None]

PATHS = ("classic", "sw_fastpath", "to_router", "drop")
_PATH_KEYS = {p: f"path_{p}" for p in PATHS}  # per punt: no string formatting


@dataclass(slots=True)
class Outcome:
    """What became of one punted frame: the path it took, frames to send, events it caused."""

    path: str  # one of PATHS
    sends: list[Send] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    reason: str = ""  # for "drop": why


class Router:
    """One switch's router, driven by (frame, ingress port, now)."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        ruleset: Ruleset | None = None,
        on_event: EventCallback | None = None,
        wants: Callable[[str], bool] | None = None,
    ) -> None:
        self.config = config
        self.on_event = on_event
        self.wants = wants
        self.ports = {p.id: p for p in config.ports}
        self.routing = RoutingTable.from_config(config)
        self.neighbors = NeighborTable.from_config(config)
        self.conntrack = Conntrack(max_entries=config.conntrack.max, on_event=self._ct_event)
        self.nat = Nat(self.conntrack)
        ftc = config.flowtable
        self.offload = OffloadQueue(
            CapacityPolicy(ftc.offload_min_packets, ftc.offload_min_bytes), self.neighbors.lookup
        )
        self.flowtables: dict[FlowtableKey, Flowtable] = {}
        self.fastpaths: dict[FlowtableKey, FastPath] = {}
        self._handles: dict[FlowtableKey, int] = {}  # the ruleset object each one was made from
        self._retired: list[Flowtable] = []  # deleted, waiting for their DESTROYs to complete
        self.classic = ClassicPath(
            config,
            routing=self.routing,
            neighbors=self.neighbors,
            conntrack=self.conntrack,
            nat=self.nat,
            flowtables=self.flowtables,
            icmp_limiter=RateLimiter(),
        )
        self.ruleset = Ruleset()
        self.stats: Counter[str] = Counter()
        self.punts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._events: list[Event] | None = None
        self.devices = frozenset(p.name for p in config.devices)  # what a flowtable may hook
        by_name = {p.name: p for p in config.devices}
        self._uppers = {(by_name[p.link].id, p.encap): p for p in config.subdevices
                        if p.link is not None and p.encap is not None}
        if ruleset is None and config.ruleset is not None:
            source = config.ruleset.source or "<ruleset>"
            ruleset = loads(config.ruleset.text, source, self.devices)
        self.apply_ruleset(ruleset or Ruleset(), 0.0)

    # -- packets ----------------------------------------------------------------------------

    def receive(
        self, frame: bytes, in_port: int, now: float, reason: int = PuntReason.MISS
    ) -> Outcome:
        """Handle a frame the hardware punted: software flowtable first, else the classic path."""
        self.punts[reason_name(reason)] += 1
        self._events = events = []
        try:
            outcome = self._receive(frame, in_port, now)
        finally:
            self._events = None
        outcome.events = events
        self.stats[_PATH_KEYS[outcome.path]] += 1
        return outcome

    def _receive(self, frame: bytes, in_port: int, now: float) -> Outcome:
        """The ingress of ``in_port``, then of each VLAN / PPPoE device the frame's
        encapsulations lead to (``__netif_receive_skb`` again after ``vlan_do_receive`` /
        ``pppoe_rcv``): a flowtable hooked on a device sees the frame there, with the
        encapsulations below that device already removed."""
        try:
            pkt = parse(frame)
        except Malformed as exc:
            return self._drop(f"malformed_{exc.reason}")
        dev = in_port
        while True:
            if pkt.family:
                for fast in self.fastpaths.values():
                    result = fast.forward(pkt, dev, now)
                    if result.verdict == FORWARD:
                        assert result.frame is not None
                        if result.sends is not None:  # NEIGH xmit
                            return Outcome("sw_fastpath", self.xmit(result.sends))
                        return Outcome("sw_fastpath", [(result.port, bytes(result.frame))])
                    if result.verdict == DROP:
                        self.drops["sw_fastpath_rewrite_error"] += 1
                        return Outcome("drop", reason=result.reason)
            if not pkt.encap:
                break
            upper = self._upper_device(pkt, dev)
            if isinstance(upper, str):
                return self._drop(upper)
            dev = upper
            # the outer header goes: a tag over more headers is cut out (vlan_do_receive), they
            # stay as they are (a PPPoE session's may carry LCP, which no EtherType names); the
            # last one gives way to the payload's EtherType
            if len(pkt.encap) > 1:
                del pkt.frame[ETH_HLEN - 2 : ETH_HLEN - 2 + encap.VLAN_HLEN]
            else:
                pkt.frame[ETH_HLEN - 2 : pkt.l3] = encap.header((), pkt.ethertype, pkt.ip_len)
            pkt = parse(pkt.frame)
        if pkt.ethertype in (encap.ETH_P_PPP_SES, encap.ETH_P_PPP_DISC):
            return self._drop("pppoe_not_ip")  # discovery, LCP, IPCP: pppd's, not modelled
        result = self.classic.process(pkt, dev, now)
        if result.path == "drop":
            self.drops[result.reason] += 1
        return Outcome(result.path, self.xmit(result.sends), reason=result.reason)

    def _upper_device(self, pkt: Packet, dev: int) -> int | str:
        """The VLAN / PPPoE device on ``dev`` for the frame's outer encapsulation, or why the
        frame is dropped: a tag no VLAN device takes (``vlan_do_receive`` finds none and the
        frame is PACKET_OTHERHOST), a session pppoe_rcv does not know (the id and the peer's
        MAC name it), a PPP protocol or a depth the router does not handle."""
        outer = pkt.encap[0]
        upper = self._uppers.get((dev, outer))
        if upper is None:
            return "pppoe_unknown_session" if outer.proto == encap.ETH_P_PPP_SES else "unknown_vlan"
        if upper.peer_mac is not None and pkt.eth_src != upper.peer_mac:
            return "pppoe_unknown_session"
        if pkt.ethertype == 0:
            return "encap_unsupported"  # a third header, or an inner 802.1ad tag
        if outer.proto == encap.ETH_P_PPP_SES and pkt.ethertype == encap.ETH_P_PPP_SES:
            return "pppoe_not_ip"
        return upper.id

    def _drop(self, reason: str) -> Outcome:
        self.drops[reason] += 1
        return Outcome("drop", reason=reason)

    def xmit(self, sends: list[Send]) -> list[Send]:
        """Frames the router sends out of a device, as they leave the switch port under it:
        each VLAN device on the way down pushes its tag, a PPPoE device its session header and
        the peer's MAC (``vlan_dev_hard_start_xmit``, ``pppoe_xmit``)."""
        if not self._uppers:
            return sends
        out = []
        for dev, frame in sends:
            port = self.classic.ports.get(dev)
            if port is not None and port.link is not None:
                real, encaps = self.classic.lower_path(dev)
                if encaps:  # one header for the whole stack (a PPPoE device is the top one)
                    ethertype = int.from_bytes(frame[12:14], "big")
                    dst = port.peer_mac if port.peer_mac is not None else frame[0:6]
                    head = encap.header(encaps, ethertype, len(frame) - ETH_HLEN)
                    frame = dst + frame[6:12] + head + frame[ETH_HLEN:]
                    dev = real
            out.append((dev, frame))
        return out

    def tick(self, now: float) -> list[Send]:
        """The 1 s timers: flowtable GC, conntrack expiry, neighbour retries and failures."""
        for ft in self.flowtables.values():
            ft.gc_step(now)
        for ft in list(self._retired):
            ft.gc_run(now)
            if not len(ft):
                self._retired.remove(ft)
        self.conntrack.gc(now)
        return self.xmit(self.classic.neighbor_timers(now))

    # -- configuration ----------------------------------------------------------------------------

    def apply_ruleset(self, ruleset: Ruleset, now: float) -> None:
        """Replace the ruleset atomically, as the commit of an nft transaction does.

        A flowtable that is gone, or was deleted and created again in the transaction (a new
        handle: ``flush ruleset`` + the same table, ``delete flowtable`` + ``add flowtable``), is
        freed (``nf_tables_flowtable_destroy`` → ``nf_flow_table_free``): every flow is torn
        down, its hardware rules are destroyed through the offload queue, and its connections go
        back to the classic path, where the new rules see them. Only a flowtable the transaction
        left alone or updated keeps its flows; device changes take effect (flows entering through
        a removed device are torn down).
        """
        wanted = {flowtable_key(fd): fd for fd in ruleset.flowtables()}
        for key in list(self.flowtables):
            fd = wanted.get(key)
            if fd is None or fd.handle != self._handles[key]:
                self._retire(key, now)
        for key, fd in wanted.items():
            ports = self._device_ports(fd)
            ft = self.flowtables.get(key)
            if ft is None:
                self._create_flowtable(key, fd, ports)
                continue
            ft.counter = fd.counter
            ft.remove_devices(tuple(ft.devices - set(ports)), now)
            ft.add_devices(ports)
        for table in ruleset.tables.values():
            for name in table.flowtables:
                ft = self.flowtables[(str(table.family), table.name, name)]
                ft.refs = len(table.flowtable_users(name))
        self.ruleset = ruleset
        self.classic.evaluator = self.classic.make_evaluator(ruleset)

    def port_down(self, port: int, now: float) -> None:
        """NETDEV_DOWN: flows entering through ``port`` are torn down; nothing is routed there."""
        self.classic.down.add(port)
        for ft in self.flowtables.values():
            ft.cleanup_port(port, now)

    def port_up(self, port: int) -> None:
        self.classic.down.discard(port)

    def _create_flowtable(
        self, key: FlowtableKey, fd: FlowtableDef, ports: tuple[int, ...]
    ) -> None:
        ftc = self.config.flowtable
        ft = Flowtable(
            fd.name,
            self.conntrack,
            family=str(fd.family),
            table=fd.table,
            devices=ports,
            offload=fd.offload,
            counter=fd.counter,
            tcp_timeout=ftc.tcp_timeout,
            udp_timeout=ftc.udp_timeout,
            fin_mode=ftc.fin_mode,
            hw=self.offload,
        )
        ft.on_event = lambda ev, ft=ft: self._flow_event(ft, ev)
        self.flowtables[key] = ft
        self.fastpaths[key] = FastPath(ft, self.classic.neigh_xmit)
        self._handles[key] = fd.handle

    def _retire(self, key: FlowtableKey, now: float) -> None:
        ft = self.flowtables.pop(key)
        self.fastpaths.pop(key)
        del self._handles[key]
        ft.refs = 0  # the rules referencing it are gone with the old ruleset
        ft.free(now)
        if len(ft):
            self._retired.append(ft)

    def _device_ports(self, fd: FlowtableDef) -> tuple[int, ...]:
        ports = []
        for name in fd.devices:
            port = self.config.port_by_name(name)
            if port is None:
                self.stats["flowtable_unknown_device"] += 1
            else:
                ports.append(port.id)
        return tuple(ports)

    # -- events ----------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self._events is not None:
            self._events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _wanted(self, kind: str) -> bool:
        if self._events is None and self.on_event is None:
            return False
        return self.wants is None or self.wants(kind)

    def _ct_event(self, event: CtEvent) -> None:
        if self._wanted(event.type):
            self._emit(event.to_dict())

    def _flow_event(self, ft: Flowtable, event: FlowEvent) -> None:
        if not self._wanted(event.type):
            return
        out = event.to_dict()
        flow = ft.flow_by_id(event.flow_id)
        if flow is not None:
            info = describe(flow.conn, self.conntrack.now)
            out.update(original=info["original"], reply=info["reply"], proto=info["proto"])
        self._emit(out)

    # -- introspection ----------------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, object]:
        """Connections, flowtables and counters as JSON-able data (``p4ft flows/stats``)."""
        flows = {}
        for ft in self.flowtables.values():
            for flow in ft.flows():
                flows[flow.conn.id] = (ft, flow)
        conns = []
        for conn in self.conntrack:
            info = describe(conn, now)
            entry = flows.get(conn.id)
            if entry is not None:
                ft, flow = entry
                info.update(
                    flowtable=ft.name,
                    flow=flow.id,
                    flow_flags=_flag_names(flow.flags),
                    sw_packets=flow.sw_packets,
                    sw_bytes=flow.sw_bytes,
                    hw_directions=bin(flow.hw_dirs).count("1"),
                    encap=["+".join(map(str, r.in_encap)) for r in flow.routes],
                    expires_in=max(0.0, round(flow.timeout - now, 3)),
                )
            else:
                info["expires_in"] = max(0.0, round(conn.timeout - now, 3))
            info["offload"] = (
                "HW_OFFLOAD"
                if conn.status & Status.HW_OFFLOAD
                else "OFFLOAD"
                if conn.status & Status.OFFLOAD
                else None
            )
            conns.append(info)
        hw_entries = sum(
            bin(f.hw_dirs).count("1") for ft in self.flowtables.values() for f in ft.flows()
        )
        return {
            "conns": conns,
            "flowtables": [self._describe_flowtable(ft) for ft in self.flowtables.values()],
            "stats": {
                "punts": dict(self.punts),
                "classic_packets": self.classic.counters["packets"],
                "sw_fastpath_hits": self.stats["path_sw_fastpath"],
                "paths": {p: self.stats[f"path_{p}"] for p in PATHS},
                "offload": dict(self.offload.counters),
                "offload_outstanding": dict(self.offload.outstanding()),
                "hw_flows": self.offload.installed(),
                "hw_entries": hw_entries,
                "capacity": dict(self.offload.policy.counters),
                "drops": dict(self.drops),
                "classic": dict(self.classic.counters),
                "conntrack": dict(self.conntrack.stats),
                "conntrack_entries": len(self.conntrack),
                "nat": dict(self.nat.stats),
                "neighbor_drops": dict(self.neighbors.drops),
            },
        }

    def _describe_flowtable(self, ft: Flowtable) -> dict[str, object]:
        names = {p.id: p.name for p in self.config.devices}
        return {
            "family": ft.family,
            "table": ft.table,
            "name": ft.name,
            "devices": sorted(names.get(p, str(p)) for p in ft.devices),
            "flags": [f for f, on in (("offload", ft.offload), ("counter", ft.counter)) if on],
            "flows": len(ft),
            "counters": dict(ft.counters),
        }


_REASON_NAMES = {int(r): r.name.lower() for r in PuntReason}  # per punt: no enum lookup


def reason_name(reason: int) -> str:
    name = _REASON_NAMES.get(reason)
    return f"reason_{reason}" if name is None else name


def _flag_names(flags: int) -> list[str]:
    return [f.name for f in FlowFlag if flags & f and f.name is not None]
