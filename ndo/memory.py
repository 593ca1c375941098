"""The memory driver: generic flow hardware in a dictionary.

It stores rules by cookie, forwards frames that hit them with the P4 program's rewrite (MACs,
NAT, TTL - 1, checksums; FIN/RST, TTL <= 1, oversize, fragments, options and extension headers
never hit), counts packets and bytes per rule, reports STATS as deltas with ``lastused`` on a
supplied clock, and can be given a capacity, a latency and injected failures. Like flowtable.p4
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

from inet.checksum import update_bytes
from ndo.api import (
    Command,
    Cookie,
    FlowActions,
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
_L4_CHECK = {_TCP: 16, _UDP: 6}

FailureHook = Callable[[FlowCommand], Refusal | None]
"""Injected failure: return a refusal to make the driver refuse this command."""


@dataclass(eq=False, slots=True)
class _Entry:
    rule: FlowRule
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
        self._by_match: dict[FlowMatch, Cookie] = {}
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
            del self._by_match[entry.rule.match]
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
        owner = self._by_match.get(rule.match)
        if owner is not None and owner != cmd.cookie:
            return FlowResult(cmd.cookie, cmd.command, Refusal.ERROR, "match has another cookie")
        entry = self.rules.get(cmd.cookie)
        if entry is None:
            family = rule.match.family
            if self.capacity is not None and self.in_table[family] >= self.capacity:
                return FlowResult(cmd.cookie, cmd.command, Refusal.NO_SPACE, "table full")
            self.rules[cmd.cookie] = _Entry(rule, lastused=self.clock())
            self.in_table[family] += 1
        else:  # a repeated REPLACE (same flow, same family) updates the rule, keeps counters
            del self._by_match[entry.rule.match]
            entry.rule = rule
        self._by_match[rule.match] = cmd.cookie
        return FlowResult(cmd.cookie, cmd.command)

    # -- the data plane ---------------------------------------------------------------------------

    def process(self, frame: bytes | bytearray, in_port: int) -> tuple[int, bytearray] | None:
        """Forward ``frame`` if it hits a rule: (egress port, rewritten frame); None = punt."""
        buf = bytearray(frame)
        if len(buf) < 14 or _H.unpack_from(buf, 12)[0] not in (0x0800, 0x86DD):
            return None
        l3 = 14
        if buf[l3] >> 4 == 4:
            if len(buf) < l3 + 20 or buf[l3] & 0x0F != 5:
                return None
            if _H.unpack_from(buf, l3 + 6)[0] & 0x3FFF:  # MF or a fragment offset
                return None
            family, l4, ttl_at = 4, l3 + 20, l3 + 8
            proto = buf[l3 + 9]
            src, dst = bytes(buf[l3 + 12 : l3 + 16]), bytes(buf[l3 + 16 : l3 + 20])
            ip_len = _H.unpack_from(buf, l3 + 2)[0]
        elif buf[l3] >> 4 == 6 and len(buf) >= l3 + 40:
            family, l4, ttl_at = 6, l3 + 40, l3 + 7
            proto = buf[l3 + 6]
            src, dst = bytes(buf[l3 + 8 : l3 + 24]), bytes(buf[l3 + 24 : l3 + 40])
            ip_len = 40 + _H.unpack_from(buf, l3 + 4)[0]
        else:
            return None
        if proto not in (_TCP, _UDP) or buf[ttl_at] <= 1:
            return None
        if len(buf) < l4 + (20 if proto == _TCP else 8):
            return None
        if proto == _TCP and buf[l4 + 13] & _FIN_RST:
            return None
        sport, dport = _PORTS.unpack_from(buf, l4)
        cookie = self._by_match.get(FlowMatch(in_port, family, src, dst, proto, sport, dport))
        if cookie is None:
            return None
        entry = self.rules[cookie]
        act = entry.rule.actions
        if ip_len > act.mtu:
            return None
        entry.packets += 1
        entry.bytes += len(buf)
        entry.lastused = self.clock()
        self._rewrite(buf, family, proto, l3, l4, act)
        return act.egress_port, buf

    @staticmethod
    def _rewrite(
        buf: bytearray, family: int, proto: int, l3: int, l4: int, act: FlowActions
    ) -> None:
        l4_check = l4 + _L4_CHECK[proto]
        udp_none = proto == _UDP and buf[l4_check : l4_check + 2] == b"\0\0"

        def put(offset: int, new: bytes, in_ip_header: bool) -> None:
            old = bytes(buf[offset : offset + len(new)])
            buf[offset : offset + len(new)] = new
            if family == 4 and in_ip_header:
                ip_check = update_bytes(_H.unpack_from(buf, l3 + 10)[0], old, new)
                _H.pack_into(buf, l3 + 10, ip_check)
            if not udp_none:
                check = update_bytes(_H.unpack_from(buf, l4_check)[0], old, new)
                _H.pack_into(buf, l4_check, (check or 0xFFFF) if proto == _UDP else check)

        addr_at = (l3 + 12, l3 + 16) if family == 4 else (l3 + 8, l3 + 24)
        if act.nat_sport is not None:
            put(l4, _H.pack(act.nat_sport), False)
        if act.nat_src is not None:
            put(addr_at[0], act.nat_src, True)
        if act.nat_dport is not None:
            put(l4 + 2, _H.pack(act.nat_dport), False)
        if act.nat_dst is not None:
            put(addr_at[1], act.nat_dst, True)
        if act.decrement_ttl:
            if family == 4:
                old = bytes(buf[l3 + 8 : l3 + 10])
                buf[l3 + 8] -= 1
                new = bytes(buf[l3 + 8 : l3 + 10])
                _H.pack_into(buf, l3 + 10, update_bytes(_H.unpack_from(buf, l3 + 10)[0], old, new))
            else:
                buf[l3 + 7] -= 1
        buf[0:6] = act.eth_dst
        buf[6:12] = act.eth_src

    # -- idle reports -----------------------------------------------------------------------------

    def report_idle(self, idle_for: float) -> list[Cookie]:
        """Cookies unused for ``idle_for`` seconds (the P4 idle timeout); tells the callback."""
        now = self.clock()
        idle = [c for c, e in self.rules.items() if now - e.lastused >= idle_for]
        if idle and self._idle_callback is not None:
            self._idle_callback(idle)
        return idle
