"""The memory driver: rules by cookie, rewrite like the P4 program, stats, capacity, failures."""

from __future__ import annotations

import ipaddress

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from ndo.api import Command, FlowActions, FlowCommand, FlowMatch, FlowRule, Refusal
from ndo.memory import MemoryDriver


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def a(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


MAC_IN, MAC_OUT, MAC_NH = "00:00:00:00:00:01", "00:00:00:00:02:fe", "00:00:00:00:02:02"


def rule(proto: int = 6, family: int = 4, **nat: object) -> FlowRule:
    src, dst = (a("10.0.1.1"), a("10.0.2.2")) if family == 4 else (a("fd00::1"), a("fd00::2"))
    return FlowRule(
        FlowMatch(1, family, src, dst, proto, 40000, 80),
        FlowActions(2, bytes.fromhex("0000000002fe"), bytes.fromhex("000000000202"), 1500, **nat),  # type: ignore[arg-type]
    )


def frame(
    proto: int = 6,
    family: int = 4,
    flags: str = "A",
    ttl: int = 64,
    size: int = 10,
    udp_check: int | None = None,
) -> bytes:
    l3 = (
        IP(src="10.0.1.1", dst="10.0.2.2", ttl=ttl)
        if family == 4
        else IPv6(src="fd00::1", dst="fd00::2", hlim=ttl)
    )
    l4 = TCP(sport=40000, dport=80, flags=flags) if proto == 6 else UDP(sport=40000, dport=80)
    if udp_check is not None:
        l4.chksum = udp_check
    return bytes(Ether(src=MAC_IN, dst="00:00:00:00:01:fe") / l3 / l4 / (b"p" * size))


def replace(drv: MemoryDriver, cookie: int, r: FlowRule):
    return drv.execute_now([FlowCommand(Command.REPLACE, cookie, r)])[0]


def checksums_ok(data: bytes) -> bool:
    pkt = Ether(data)
    l3 = pkt[IP] if IP in pkt else pkt[IPv6]
    l4 = l3.payload
    got = (l3.chksum if IP in pkt else None, l4.chksum)
    if IP in pkt:
        del l3.chksum
    del l4.chksum
    again = Ether(bytes(pkt))
    a3 = again[IP] if IP in again else again[IPv6]
    return got == (a3.chksum if IP in again else None, a3.payload.chksum)


def test_hit_rewrites_macs_ttl_and_counts() -> None:
    drv = MemoryDriver(clock=Clock())
    assert replace(drv, 10, rule()).ok
    out = drv.process(frame(), 1)
    assert out is not None
    port, data = out
    pkt = Ether(data)
    assert port == 2 and pkt.src == MAC_OUT and pkt.dst == MAC_NH and pkt[IP].ttl == 63
    assert checksums_ok(data)
    assert drv.process(frame(), 3) is None  # other ingress port: miss


def test_snat_and_dnat_rewrite_with_valid_checksums() -> None:
    drv = MemoryDriver()
    replace(drv, 2, rule(nat_src=a("192.0.2.1"), nat_sport=61000))
    data = drv.process(frame(), 1)[1]  # type: ignore[index]
    assert (Ether(data)[IP].src, Ether(data)[TCP].sport) == ("192.0.2.1", 61000)
    assert checksums_ok(data)
    drv6 = MemoryDriver()
    replace(drv6, 2, rule(17, 6, nat_dst=a("fd00::9"), nat_dport=53))
    data6 = drv6.process(frame(17, 6), 1)[1]  # type: ignore[index]
    assert (Ether(data6)[IPv6].dst, Ether(data6)[UDP].dport) == ("fd00::9", 53)
    assert Ether(data6)[IPv6].hlim == 63 and checksums_ok(data6)


def test_udp_zero_checksum_stays_zero() -> None:
    drv = MemoryDriver()
    replace(drv, 4, rule(17, nat_src=a("192.0.2.1")))
    data = drv.process(frame(17, udp_check=0), 1)[1]  # type: ignore[index]
    assert Ether(data)[UDP].chksum == 0


def test_fin_rst_ttl_and_mtu_never_hit() -> None:
    drv = MemoryDriver()
    replace(drv, 1, rule())
    assert drv.process(frame(flags="FA"), 1) is None
    assert drv.process(frame(flags="R"), 1) is None
    assert drv.process(frame(ttl=1), 1) is None
    assert drv.process(frame(size=1500), 1) is None
    assert drv.process(b"\x00" * 10, 1) is None  # garbage is a miss, not a crash
    assert drv.rules[1].packets == 0


def test_truncated_fragmented_or_optioned_ipv4_never_hits() -> None:
    drv = MemoryDriver()
    replace(drv, 1, rule())
    replace(drv, 2, rule(17))
    tcp, udp = frame(size=0), frame(17, size=0)
    assert len(tcp) == 54 and len(udp) == 42
    assert drv.process(tcp, 1) is not None and drv.process(udp, 1) is not None
    assert drv.process(tcp[:53], 1) is None  # the TCP flags are not all there
    assert drv.process(udp[:41], 1) is None
    more_fragments = bytearray(tcp)
    more_fragments[20] |= 0x20
    assert drv.process(bytes(more_fragments), 1) is None
    optioned = Ether(src=MAC_IN) / IP(src="10.0.1.1", dst="10.0.2.2", options=b"\x01" * 4)
    assert drv.process(bytes(optioned / TCP(sport=40000, dport=80, flags="A")), 1) is None
    assert (drv.rules[1].packets, drv.rules[2].packets) == (1, 1)


def test_stats_are_deltas_with_lastused() -> None:
    clock = Clock()
    drv = MemoryDriver(clock=clock)
    replace(drv, 1, rule())
    clock.now = 105.0
    drv.process(frame(), 1)
    drv.process(frame(), 1)
    first = drv.execute_now([FlowCommand(Command.STATS, 1)])[0].stats
    assert first is not None and first.packets == 2 and first.lastused == 105.0
    second = drv.execute_now([FlowCommand(Command.STATS, 1)])[0].stats
    assert second is not None and (second.packets, second.bytes) == (0, 0)


def test_capacity_unknown_cookie_and_injected_failures() -> None:
    drv = MemoryDriver(capacity=1)
    assert replace(drv, 1, rule()).ok
    assert replace(drv, 1, rule()).ok  # repeated REPLACE of the same cookie: idempotent
    assert replace(drv, 2, rule(17)).refusal is Refusal.NO_SPACE
    gone = drv.execute_now([FlowCommand(Command.DESTROY, 7)])[0]
    assert gone.refusal is Refusal.UNKNOWN_COOKIE
    assert drv.execute_now([FlowCommand(Command.DESTROY, 1)])[0].ok
    drv.fail = lambda cmd: Refusal.UNAVAILABLE
    assert replace(drv, 3, rule()).refusal is Refusal.UNAVAILABLE
    assert not drv.rules


def test_capacity_bounds_each_family_table_on_its_own() -> None:
    """Like flowtable.p4's flow_v4 / flow_v6: a full IPv6 table leaves IPv4 room."""
    drv = MemoryDriver(capacity=1)
    assert replace(drv, 1, rule(family=6)).ok
    assert replace(drv, 2, rule(17, family=6)).refusal is Refusal.NO_SPACE
    assert replace(drv, 3, rule()).ok
    assert drv.execute_now([FlowCommand(Command.DESTROY, 1)])[0].ok
    assert replace(drv, 2, rule(17, family=6)).ok


def test_unsupported_rules_are_refused() -> None:
    drv = MemoryDriver()
    assert replace(drv, 1, rule(47)).refusal is Refusal.UNSUPPORTED


async def test_async_execute_and_idle_report() -> None:
    clock = Clock()
    drv = MemoryDriver(clock=clock, latency=0.001)
    seen: list[list[int]] = []
    drv.set_idle_callback(lambda cookies: seen.append(list(cookies)))
    results = await drv.execute([FlowCommand(Command.REPLACE, 5, rule())])
    assert results[0].ok
    clock.now += 10
    assert drv.report_idle(5.0) == [5] and seen == [[5]]
