"""The memory driver: generic flow hardware in a dictionary.

It stores rules by cookie, forwards frames that hit them with the P4 program's rewrite (MACs,
NAT, TTL - 1, checksums, the ingress VLAN/PPPoE encapsulation popped and the rule's pushed;
FIN/RST, TTL <= 1, oversize, fragments, options and extension headers never hit), counts
packets and bytes per rule, reports STATS as deltas with ``lastused`` on a supplied clock, and
can be given a capacity, a latency and injected failures. Like flowtable.p4
(``flow_v4``, ``flow_v6``) it has one table per address family; a capacity bounds each. It is
what tests and ``p4ft simulate --hw memory`` use as "the switch". Like every ``ndo`` module it
knows nothing of the controller, so it carries its own few lines of header parsing and checksum
arithmetic.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inet import encap
from inet.checksum import apply_delta, replace_delta
from ndo.api import (
    Command,
    Cookie,
    FlowCommand,
    FlowDriver,
    FlowMatch,
    FlowResult,
    FlowRule,
    FlowStats,
    IdleCallback,
    Refusal,
)

_H = struct.Struct("!H")
_PORTS = struct.Struct("!HH")
_TCP, _UDP = 6, 17
_FIN_RST = 0x05
# from the ethertype (offset 12) to the protocol of an IPv4 header: ethertype, version/IHL,
# total length, flags/fragment offset, TTL, protocol
_V4 = struct.Struct("!HBxH2xHBB")
_V4_MIN = 14 + 20 + 8  # Ethernet, IPv4 without options and UDP; TCP needs 54

FailureHook = Callable[[FlowCommand], Refusal | None]
"""Injected failure: return a refusal to make the driver refuse this command."""


_TTL_DELTA = replace_delta(b"\x01\x00", b"\x00\x00")  # TTL - 1 in its 16-bit word, any TTL


@dataclass(frozen=True, slots=True)
class _Rewrite:
    """A rule's rewrite, worked out once at REPLACE: the header bytes it writes and the sums
    it adds to the checksums (RFC 1624: the old values are the match's, so the change to every
    checksum is the same for all the flow's packets)."""

    macs: bytes  # eth dst + eth src
    addrs: bytes | None  # new src + dst addresses, None when NAT leaves both
    ports: bytes | None  # new sport + dport, None when NAT leaves both
    ip_delta: int  # IPv4 header checksum: addresses and TTL
    l4_delta: int  # TCP/UDP checksum: addresses (pseudo-header) and ports
    decrement_ttl: bool

    @classmethod
    def of(cls, rule: FlowRule) -> _Rewrite:
        m, act = rule.match, rule.actions
        old_addrs = m.src + m.dst
        new_addrs = (act.nat_src or m.src) + (act.nat_dst or m.dst)
        old_ports = _PORTS.pack(m.sport, m.dport)
        new_ports = _PORTS.pack(
            m.sport if act.nat_sport is None else act.nat_sport,
            m.dport if act.nat_dport is None else act.nat_dport,
        )
        addr_delta = replace_delta(old_addrs, new_addrs)
        return cls(
            macs=act.eth_dst + act.eth_src,
            addrs=None if new_addrs == old_addrs else new_addrs,
            ports=None if new_ports == old_ports else new_ports,
            ip_delta=addr_delta + (_TTL_DELTA if act.decrement_ttl else 0),
            l4_delta=addr_delta + replace_delta(old_ports, new_ports),
            decrement_ttl=act.decrement_ttl,
        )


def _key(match: FlowMatch) -> tuple:
    """The lookup key of a match: a plain tuple hashes in C, a dataclass in Python. Addresses
    and ports are one string, as they lie in a frame (IPv4 without options, IPv6 without
    extension headers): a lookup slices it once."""
    where = match.src + match.dst + _PORTS.pack(match.sport, match.dport)
    return (match.ingress_port, match.family, match.proto, where, match.encap)


@dataclass(eq=False, slots=True)
class _Entry:
    cookie: Cookie
    rule: FlowRule
    rewrite: _Rewrite
    packets: int = 0
    bytes: int = 0
    reported_packets: int = 0
    reported_bytes: int = 0
    lastused: float = 0.0


class MemoryDriver(FlowDriver):
    """Flow hardware that lives in this process."""

    def __init__(
        self,
        capacity: int | None = None,
        *,
        latency: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        fail: FailureHook | None = None,
    ) -> None:
        if capacity is not None and capacity < 0:
            raise ValueError("capacity must not be negative")
        self.capacity = capacity
        self.latency = latency
        self.clock = clock
        self.fail = fail
        self.rules: dict[Cookie, _Entry] = {}
        self._by_match: dict[tuple, _Entry] = {}  # _key(match) -> its rule
        self.in_table: dict[int, int] = {4: 0, 6: 0}  # rules per family table
        self._idle_callback: IdleCallback | None = None
        self.batches = 0

    # -- FlowDriver -------------------------------------------------------------------------------

    async def execute(self, batch: Sequence[FlowCommand]) -> list[FlowResult]:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return self.execute_now(batch)

    def set_idle_callback(self, callback: IdleCallback | None) -> None:
        self._idle_callback = callback

    def execute_now(self, batch: Sequence[FlowCommand]) -> list[FlowResult]:
        """Synchronous :meth:`execute`, for callers on a virtual clock."""
        self.batches += 1
        return [self._one(cmd) for cmd in batch]

    def _one(self, cmd: FlowCommand) -> FlowResult:
        if self.fail is not None:
            refusal = self.fail(cmd)
            if refusal is not None:
                return FlowResult(cmd.cookie, cmd.command, refusal, "injected failure")
        if cmd.command is Command.REPLACE:
            return self._replace(cmd)
        entry = self.rules.get(cmd.cookie)
        if entry is None:
            return FlowResult(cmd.cookie, cmd.command, Refusal.UNKNOWN_COOKIE, "no such rule")
        if cmd.command is Command.DESTROY:
            del self.rules[cmd.cookie]
            del self._by_match[_key(entry.rule.match)]
            self.in_table[entry.rule.match.family] -= 1
            return FlowResult(cmd.cookie, cmd.command)
        stats = FlowStats(
            entry.packets - entry.reported_packets,
            entry.bytes - entry.reported_bytes,
            entry.lastused if entry.packets else None,
        )
        entry.reported_packets, entry.reported_bytes = entry.packets, entry.bytes
        return FlowResult(cmd.cookie, cmd.command, stats=stats)

    def _replace(self, cmd: FlowCommand) -> FlowResult:
        rule = cmd.rule
        if rule is None:
            return FlowResult(cmd.cookie, cmd.command, Refusal.ERROR, "REPLACE without a rule")
        if rule.match.proto not in (_TCP, _UDP) or rule.match.family not in (4, 6):
            return FlowResult(cmd.cookie, cmd.command, Refusal.UNSUPPORTED, "not TCP/UDP over IP")
        bad = encap.problem(rule.match.encap) or encap.problem(rule.actions.push)
        if bad:
            return FlowResult(cmd.cookie, cmd.command, Refusal.UNSUPPORTED, bad)
        key = _key(rule.match)
        owner = self._by_match.get(key)
        if owner is not None and owner.cookie != cmd.cookie:
            return FlowResult(cmd.cookie, cmd.command, Refusal.ERROR, "match has another cookie")
        entry = self.rules.get(cmd.cookie)
        if entry is None:
            family = rule.match.family
            if self.capacity is not None and self.in_table[family] >= self.capacity:
                return FlowResult(cmd.cookie, cmd.command, Refusal.NO_SPACE, "table full")
            entry = _Entry(cmd.cookie, rule, _Rewrite.of(rule), lastused=self.clock())
            self.rules[cmd.cookie] = entry
            self.in_table[family] += 1
        else:  # a repeated REPLACE (same flow, same family) updates the rule, keeps counters
            del self._by_match[_key(entry.rule.match)]
            entry.rule = rule
            entry.rewrite = _Rewrite.of(rule)
        self._by_match[key] = entry
        return FlowResult(cmd.cookie, cmd.command)

    # -- the data plane ---------------------------------------------------------------------------

    def process(self, frame: bytes | bytearray, in_port: int) -> tuple[int, bytearray] | None:
        """Forward ``frame`` if it hits a rule: (egress port, rewritten frame); None = punt."""
        buf = frame if isinstance(frame, bytes) else bytes(frame)  # slices are the keys: bytes
        if len(buf) >= _V4_MIN:
            # the common frame, untagged IPv4 without options: its header in one unpack
            ethertype, ver_ihl, ip_len, frag, ttl, proto = _V4.unpack_from(buf, 12)
            if ethertype == 0x0800 and ver_ihl == 0x45:
                if frag & 0x3FFF or ttl <= 1:
                    return None
                if proto == _TCP:
                    if len(buf) < 54 or buf[47] & _FIN_RST:
                        return None
                elif proto != _UDP:
                    return None
                entry = self._by_match.get((in_port, 4, proto, buf[26:38], ()))
                if entry is None:
                    return None
                return self._hit(buf, entry, 4, proto, 14, 34, ip_len, ())
        if len(buf) < 14:
            return None
        ethertype = _H.unpack_from(buf, 12)[0]
        if ethertype in (0x0800, 0x86DD):  # untagged: no walk
            encaps: encap.Encaps = ()
            l3 = 14
        else:
            found = encap.walk(buf)
            if found is None or found.ethertype not in (0x0800, 0x86DD) or found.unsupported:
                return None
            encaps, l3, ethertype = found.encaps, found.offset, found.ethertype
        if buf[l3] >> 4 == 4:
            if len(buf) < l3 + 20 or buf[l3] & 0x0F != 5:
                return None
            if _H.unpack_from(buf, l3 + 6)[0] & 0x3FFF:  # MF or a fragment offset
                return None
            family, l4, ttl_at, addrs = 4, l3 + 20, l3 + 8, l3 + 12
            proto = buf[l3 + 9]
            ip_len = _H.unpack_from(buf, l3 + 2)[0]
        elif buf[l3] >> 4 == 6 and len(buf) >= l3 + 40:
            family, l4, ttl_at, addrs = 6, l3 + 40, l3 + 7, l3 + 8
            proto = buf[l3 + 6]
            ip_len = 40 + _H.unpack_from(buf, l3 + 4)[0]
        else:
            return None
        if proto not in (_TCP, _UDP) or buf[ttl_at] <= 1:
            return None
        if len(buf) < l4 + (20 if proto == _TCP else 8):
            return None
        if proto == _TCP and buf[l4 + 13] & _FIN_RST:
            return None
        entry = self._by_match.get((in_port, family, proto, buf[addrs : l4 + 4], encaps))
        if entry is None:
            return None
        return self._hit(buf, entry, family, proto, l3, l4, ip_len, encaps, ethertype)

    def _hit(
        self,
        buf: bytes,
        entry: _Entry,
        family: int,
        proto: int,
        l3: int,
        l4: int,
        ip_len: int,
        encaps: encap.Encaps,
        ethertype: int = 0x0800,
    ) -> tuple[int, bytearray] | None:
        """A frame that matched ``entry``: counted and rewritten (None: over the MTU)."""
        act = entry.rule.actions
        if ip_len > act.mtu:
            return None
        entry.packets += 1
        entry.bytes += len(buf)
        entry.lastused = self.clock()
        out = bytearray(buf)  # copied only for a hit
        _rewrite(out, family, proto, l3, l4, entry.rewrite)
        # nf_flow_encap_pop, then push: everything between the MACs and L3 is replaced
        if encaps or act.push:
            out[12:l3] = encap.header(act.push, ethertype, ip_len)
        return act.egress_port, out

    # -- idle reports -----------------------------------------------------------------------------

    def report_idle(self, idle_for: float) -> list[Cookie]:
        """Cookies unused for ``idle_for`` seconds (the P4 idle timeout); tells the callback."""
        now = self.clock()
        idle = [c for c, e in self.rules.items() if now - e.lastused >= idle_for]
        if idle and self._idle_callback is not None:
            self._idle_callback(idle)
        return idle


def _rewrite(buf: bytearray, family: int, proto: int, l3: int, l4: int, rw: _Rewrite) -> None:
    """The P4 program's rewrite: NAT, TTL - 1 and MACs, checksums updated incrementally (a UDP
    checksum of 0, "none", stays 0; a computed 0 is sent as 0xffff)."""
    if rw.addrs is not None:
        at = l3 + 12 if family == 4 else l3 + 8
        buf[at : at + len(rw.addrs)] = rw.addrs
    if rw.ports is not None:
        buf[l4 : l4 + 4] = rw.ports
    if rw.decrement_ttl:
        buf[l3 + 8 if family == 4 else l3 + 7] -= 1
    if family == 4 and rw.ip_delta:
        _H.pack_into(buf, l3 + 10, apply_delta(_H.unpack_from(buf, l3 + 10)[0], rw.ip_delta))
    if rw.l4_delta:
        if proto == _TCP:
            l4_check = l4 + 16
            _H.pack_into(buf, l4_check, apply_delta(_H.unpack_from(buf, l4_check)[0], rw.l4_delta))
        else:
            old = _H.unpack_from(buf, l4 + 6)[0]
            if old:
                _H.pack_into(buf, l4 + 6, apply_delta(old, rw.l4_delta) or 0xFFFF)
    buf[0:12] = rw.macs
