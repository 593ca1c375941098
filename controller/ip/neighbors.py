"""ARP and NDP neighbour cache of the router: answer, learn, resolve, queue, age (sans-IO).

Mirrors the kernel's ``net/core/neighbour.c`` NUD machine with its default timers and limits
(``base_reachable_time`` 30 s, ``retrans_time`` 1 s, ``delay_first_probe_time`` 5 s,
``mcast_solicit``/``ucast_solicit`` 3, ``gc_stale_time`` 60 s, ``gc_thresh3`` 1024) and the
``arp_process`` / ``ndisc_recv_ns`` / ``ndisc_recv_na`` learning rules. Every method takes
``now`` and returns the frames to send; :meth:`NeighborTable.poll` advances timers. Packets
wait per neighbour in a bounded queue while it resolves; when resolution fails they come back
as ``unreachable`` so that the caller answers ICMP host unreachable, as ``arp_error_report`` /
``ndisc_error_report`` do.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from controller.config import NeighborConfig, PortConfig, RouterConfig
from controller.ip import frames
from controller.ip.packet import (
    ARP_REPLY,
    ARP_REQUEST,
    ND_NA_OVERRIDE,
    ND_NA_SOLICITED,
    NDISC_NEIGHBOUR_ADVERTISEMENT,
    NDISC_NEIGHBOUR_SOLICITATION,
    Packet,
)
from controller.ip.routing import select_source

_IPV6_UNSPECIFIED = bytes(16)
_IPV6_ALL_NODES = ipaddress.ip_address("ff02::1").packed


class Nud(enum.Enum):
    """Neighbour unreachability detection states (``NUD_*``)."""

    INCOMPLETE = "INCOMPLETE"
    REACHABLE = "REACHABLE"
    STALE = "STALE"
    DELAY = "DELAY"
    PROBE = "PROBE"
    FAILED = "FAILED"
    PERMANENT = "PERMANENT"


_VALID = frozenset({Nud.REACHABLE, Nud.STALE, Nud.DELAY, Nud.PROBE, Nud.PERMANENT})


@dataclass(frozen=True, slots=True)
class NeighborParams:
    """Timers and limits; defaults are the kernel's (``ip -s ntable``)."""

    reachable_time: float = 30.0
    retrans_time: float = 1.0
    delay_first_probe_time: float = 5.0
    mcast_solicit: int = 3
    ucast_solicit: int = 3
    unres_qlen: int = 101  # unres_qlen_bytes 212992 / truesize of a full-size frame
    gc_stale_time: float = 60.0
    arp_accept: bool = False  # create entries from gratuitous ARP (net.ipv4.conf.*.arp_accept)
    gc_thresh2: int = 512  # forced GC shrinks the table towards this
    max_entries: int = 1024  # gc_thresh3: no new entries beyond it


class Tx(NamedTuple):
    """A frame to send out of a port."""

    port: int
    frame: bytes


@dataclass(slots=True)
class NeighborOutput:
    """What a call asks the caller to do: send frames, and report unresolvable packets."""

    send: list[Tx] = field(default_factory=list)
    # Queued frames (port they were for, frame as queued) whose next hop failed to resolve:
    # the caller answers each with ICMP host / address unreachable.
    unreachable: list[Tx] = field(default_factory=list)

    def extend(self, other: NeighborOutput) -> None:
        self.send.extend(other.send)
        self.unreachable.extend(other.unreachable)


@dataclass(slots=True)
class Neighbor:
    addr: bytes
    port: int
    mac: bytes | None
    state: Nud
    updated: float  # last state change or confirmation
    used: float  # last time a packet went to it
    deadline: float | None = None  # next timer
    probes: int = 0
    queue: deque[bytearray] = field(default_factory=deque)


class NeighborTable:
    """The neighbour cache of all router ports, keyed by (port, address)."""

    def __init__(self, ports: Iterable[PortConfig], params: NeighborParams | None = None) -> None:
        self.params = params or NeighborParams()
        self.ports = {p.id: p for p in ports}
        self.entries: dict[tuple[int, bytes], Neighbor] = {}
        self.drops: Counter[str] = Counter()
        self._local = {
            iface.ip.packed: port.id for port in self.ports.values() for iface in port.addresses
        }

    @classmethod
    def from_config(
        cls, config: RouterConfig, params: NeighborParams | None = None
    ) -> NeighborTable:
        table = cls(config.devices, params)
        for static in config.neighbors:
            table.add_static(static)
        return table

    # -- configuration and queries --------------------------------------------------------

    def add_static(self, static: NeighborConfig) -> None:
        """A PERMANENT entry: never aged, never overridden by ARP/NDP."""
        port = next(p.id for p in self.ports.values() if p.name == static.port)
        self.entries[(port, static.address.packed)] = Neighbor(
            static.address.packed, port, static.mac, Nud.PERMANENT, 0.0, 0.0
        )

    def lookup(self, addr: bytes, port: int) -> bytes | None:
        """The MAC of a neighbour in a valid state (what the flowtable needs to offload); on a
        point-to-point (PPPoE) device, the peer's for every address."""
        dev = self.ports.get(port)
        if dev is not None and dev.peer_mac is not None:
            return dev.peer_mac
        entry = self.entries.get((port, addr))
        return entry.mac if entry is not None and entry.state in _VALID else None

    def state(self, addr: bytes, port: int) -> Nud | None:
        entry = self.entries.get((port, addr))
        return entry.state if entry is not None else None

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has work, so an event loop can sleep until then."""
        deadlines = [e.deadline for e in self.entries.values() if e.deadline is not None]
        return min(deadlines) if deadlines else None

    # -- sending ----------------------------------------------------------------------------

    def output(self, next_hop: bytes, port: int, frame: bytearray, now: float) -> bytes | None:
        """The routed frame with its MAC addresses when the neighbour needs no resolving (a
        valid entry, or an IFF_NOARP device's peer): ``neigh_output`` on a connected
        neighbour. None: :meth:`resolve` must queue it. Nothing is allocated on the way."""
        dev = self.ports.get(port)
        if dev is not None and dev.peer_mac is not None:  # IFF_NOARP: no neighbour to resolve
            return self._with_macs(frame, port, dev.peer_mac)
        entry = self.entries.get((port, next_hop))
        if entry is None or entry.state not in _VALID:
            return None
        entry.used = now
        if entry.state is Nud.STALE:
            self._set(entry, Nud.DELAY, now, now + self.params.delay_first_probe_time)
        return self._with_macs(frame, port, entry.mac)  # type: ignore[arg-type]

    def resolve(self, next_hop: bytes, port: int, frame: bytearray, now: float) -> NeighborOutput:
        """Send a routed frame to ``next_hop`` out of ``port``, rewriting its MAC addresses.

        With an unknown next hop the frame waits in the neighbour's queue (the oldest is dropped
        on overflow, as the kernel does) while ARP / NS probes go out.
        """
        out = NeighborOutput()
        ready = self.output(next_hop, port, frame, now)
        if ready is not None:
            out.send.append(Tx(port, ready))
            return out
        entry = self.entries.get((port, next_hop))
        if entry is None or entry.state is Nud.FAILED:
            entry = self._create(port, next_hop, Nud.INCOMPLETE, now)
            if entry is None:
                return out  # table full: dropped like neigh_create's -ENOBUFS
            self._start_probe(entry, now, out)
            if entry.state is Nud.FAILED:  # no source address to probe from
                self.drops["neigh_failed"] += 1
                out.unreachable.append(Tx(port, bytes(frame)))
                return out
        entry.used = now
        if len(entry.queue) >= self.params.unres_qlen:
            entry.queue.popleft()
            self.drops["neigh_queue_full"] += 1
        entry.queue.append(frame)
        return out

    # -- receiving --------------------------------------------------------------------------

    def handle_arp(self, pkt: Packet, port: int, now: float) -> NeighborOutput:
        """Answer requests for router addresses and learn senders (``arp_process``)."""
        out = NeighborOutput()
        if port not in self.ports or pkt.arp_op not in (ARP_REQUEST, ARP_REPLY):
            self.drops["arp_invalid"] += 1
            return out
        sha, spa, tpa = pkt.arp_sha, pkt.arp_spa, pkt.arp_tpa
        if sha[0] & 1:
            self.drops["arp_invalid"] += 1
            return out
        for_us = tpa in self._local
        if pkt.arp_op == ARP_REQUEST and for_us:
            me = self.ports[port].mac
            out.send.append(Tx(port, frames.arp_reply(me, tpa, sha, spa)))
        if spa == bytes(4) or spa in self._local:
            return out  # address probes (RFC 5227) and our own addresses teach nothing
        entry = self.entries.get((port, spa))
        gratuitous = spa == tpa
        if entry is None:
            if not (
                (pkt.arp_op == ARP_REQUEST and for_us) or (gratuitous and self.params.arp_accept)
            ):
                return out
            entry = self._create(port, spa, Nud.STALE, now)
            if entry is None:
                return out
        unicast_reply = pkt.arp_op == ARP_REPLY and for_us and not (pkt.eth_dst[0] & 1)
        self._update(
            entry, sha, Nud.REACHABLE if unicast_reply else Nud.STALE, now, out, override=True
        )
        return out

    def handle_ndp(self, pkt: Packet, port: int, now: float) -> NeighborOutput:
        """Answer NS for router addresses on ``port`` and learn from NS/NA (RFC 4861 §7.2)."""
        out = NeighborOutput()
        if port not in self.ports or not self._ndp_valid(pkt):
            self.drops["ndp_invalid"] += 1
            return out
        if pkt.icmp_type == NDISC_NEIGHBOUR_SOLICITATION:
            self._handle_ns(pkt, port, now, out)
        elif pkt.icmp_type == NDISC_NEIGHBOUR_ADVERTISEMENT:
            self._handle_na(pkt, port, now, out)
        return out

    def _ndp_valid(self, pkt: Packet) -> bool:
        """RFC 4861 §7.1.1/§7.1.2 checks (the checksum is the caller's ``l4_checksum_ok``)."""
        if pkt.family != 6 or pkt.ttl != 255 or pkt.icmp_code != 0 or pkt.nd_target[:1] == b"\xff":
            return False
        if pkt.icmp_type == NDISC_NEIGHBOUR_SOLICITATION and pkt.src == _IPV6_UNSPECIFIED:
            return pkt.dst[:13] == frames.solicited_node(bytes(16))[:13] and not pkt.nd_lladdr
        return not (
            pkt.icmp_type == NDISC_NEIGHBOUR_ADVERTISEMENT
            and pkt.nd_flags & ND_NA_SOLICITED
            and pkt.dst[0] == 0xFF
        )

    def _handle_ns(self, pkt: Packet, port: int, now: float, out: NeighborOutput) -> None:
        target = pkt.nd_target
        if self._local.get(target) != port:
            return  # ndisc_recv_ns answers only for addresses of the receiving device
        me = self.ports[port].mac
        dad = pkt.src == _IPV6_UNSPECIFIED
        dst_ip = _IPV6_ALL_NODES if dad else pkt.src
        dst_mac = frames.multicast_mac(dst_ip) if dad else (pkt.nd_lladdr or pkt.eth_src)
        na = frames.ndp_na(me, target, dst_mac, dst_ip, target, solicited=not dad, router=True)
        out.send.append(Tx(port, na))
        if dad or not pkt.nd_lladdr:
            return
        entry = self.entries.get((port, pkt.src))
        if entry is None:
            entry = self._create(port, pkt.src, Nud.STALE, now)
            if entry is None:
                return
        self._update(entry, pkt.nd_lladdr, Nud.STALE, now, out, override=True)

    def _handle_na(self, pkt: Packet, port: int, now: float, out: NeighborOutput) -> None:
        entry = self.entries.get((port, pkt.nd_target))
        if entry is None:
            if pkt.nd_target in self._local:
                self.drops["ndp_address_conflict"] += 1
            return  # RFC 4861 §7.2.5: no entry, silently discard
        solicited = bool(pkt.nd_flags & ND_NA_SOLICITED)
        override = bool(pkt.nd_flags & ND_NA_OVERRIDE)
        lladdr = pkt.nd_lladdr or entry.mac
        if lladdr is None:
            return  # INCOMPLETE and no link-layer address to learn
        if entry.state is Nud.INCOMPLETE:
            override = True
        elif not override and lladdr != entry.mac:
            if entry.state is Nud.REACHABLE:
                self._set(entry, Nud.STALE, now, None)
            return
        changed = lladdr != entry.mac
        state = Nud.REACHABLE if solicited else (Nud.STALE if changed else entry.state)
        self._update(entry, lladdr, state, now, out, override=override)

    # -- timers -----------------------------------------------------------------------------

    def poll(self, now: float) -> NeighborOutput:
        """Run every timer due at ``now``: retries, state changes, failures, garbage collection."""
        out = NeighborOutput()
        p = self.params
        for key, entry in list(self.entries.items()):
            if entry.state is Nud.PERMANENT:
                continue
            if entry.deadline is not None and entry.deadline <= now:
                self._expire(entry, now, out)
            if entry.state in (Nud.STALE, Nud.FAILED) and now - entry.used >= p.gc_stale_time:
                del self.entries[key]
        return out

    def _expire(self, entry: Neighbor, now: float, out: NeighborOutput) -> None:
        p = self.params
        if entry.state is Nud.REACHABLE:
            self._set(entry, Nud.STALE, now, None)
        elif entry.state is Nud.DELAY:
            self._set(entry, Nud.PROBE, now, None)
            entry.probes = 0
            self._probe(entry, now, out, unicast=True)
        elif entry.state in (Nud.INCOMPLETE, Nud.PROBE):
            limit = p.mcast_solicit if entry.state is Nud.INCOMPLETE else p.ucast_solicit
            if entry.probes >= limit:
                self._fail(entry, now, out)
            else:
                self._probe(entry, now, out, unicast=entry.state is Nud.PROBE)

    def _create(self, port: int, addr: bytes, state: Nud, now: float) -> Neighbor | None:
        """A new entry, or None when ``gc_thresh3`` entries exist even after a forced GC."""
        key = (port, addr)
        if key not in self.entries and len(self.entries) >= self.params.max_entries:
            self._forced_gc()
            if len(self.entries) >= self.params.max_entries:
                self.drops["neigh_table_full"] += 1
                return None
        entry = Neighbor(addr, port, None, state, now, now)
        self.entries[key] = entry
        return entry

    def _forced_gc(self) -> None:
        """``neigh_forced_gc``: drop entries nothing waits on (FAILED, STALE), oldest use first."""
        idle = [
            key
            for key, e in self.entries.items()
            if e.state in (Nud.FAILED, Nud.STALE) and not e.queue
        ]
        idle.sort(key=lambda k: self.entries[k].used)
        for key in idle[: max(1, len(self.entries) - self.params.gc_thresh2)]:
            del self.entries[key]

    def _start_probe(self, entry: Neighbor, now: float, out: NeighborOutput) -> None:
        entry.probes = 0
        self._probe(entry, now, out, unicast=False)

    def _probe(self, entry: Neighbor, now: float, out: NeighborOutput, *, unicast: bool) -> None:
        """Send one ARP request / NS (broadcast/multicast, or unicast to re-check a known MAC)."""
        port = self.ports[entry.port]
        src = select_source(port.addresses, entry.addr)
        if src is None:
            self._fail(entry, now, out)
            return
        if len(entry.addr) == 4:
            frame = frames.arp_request(port.mac, src, entry.addr)
            if unicast and entry.mac is not None:
                frame = entry.mac + frame[6:]
        else:
            frame = frames.ndp_ns(port.mac, src, entry.addr, entry.addr if unicast else None)
            if unicast and entry.mac is not None:
                frame = entry.mac + frame[6:]
        out.send.append(Tx(entry.port, frame))
        entry.probes += 1
        entry.deadline = now + self.params.retrans_time

    def _fail(self, entry: Neighbor, now: float, out: NeighborOutput) -> None:
        self._set(entry, Nud.FAILED, now, None)
        entry.mac = None
        while entry.queue:
            self.drops["neigh_failed"] += 1
            out.unreachable.append(Tx(entry.port, bytes(entry.queue.popleft())))

    def _update(
        self,
        entry: Neighbor,
        mac: bytes,
        state: Nud,
        now: float,
        out: NeighborOutput,
        *,
        override: bool,
    ) -> None:
        """``neigh_update``: take the new address/state and flush the queue when now valid."""
        if entry.state is Nud.PERMANENT:
            return
        changed = mac != entry.mac
        if entry.mac is not None and changed and not override:
            return
        entry.mac = mac
        # A passive hint does not demote a confirmed entry, and an unchanged state keeps its
        # running timer (DELAY, PROBE); anything else is a transition.
        hint_only = state is Nud.STALE and not changed and entry.state is Nud.REACHABLE
        if not hint_only and (state is not entry.state or state is Nud.REACHABLE):
            deadline = now + self.params.reachable_time if state is Nud.REACHABLE else None
            self._set(entry, state, now, deadline)
        while entry.queue:
            out.send.append(Tx(entry.port, self._with_macs(entry.queue.popleft(), entry.port, mac)))

    @staticmethod
    def _set(entry: Neighbor, state: Nud, now: float, deadline: float | None) -> None:
        entry.state = state
        entry.updated = now
        entry.deadline = deadline

    def _with_macs(self, frame: bytearray, port: int, dst_mac: bytes) -> bytes:
        frame[0:6] = dst_mac
        frame[6:12] = self.ports[port].mac
        return bytes(frame)
