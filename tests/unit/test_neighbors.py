"""ARP/NDP neighbour cache on a fake clock: answer, learn, resolve, queue, age, fail."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether

from controller.config import parse_config
from controller.ip.neighbors import NeighborParams, NeighborTable, Nud
from controller.ip.packet import parse

CONFIG = """
[[ports]]
id = 1
name = "eth0"
mac = "02:00:00:00:01:fe"
addresses = ["10.0.1.254/24", "2001:db8:1::fe/64"]
[[ports]]
id = 2
name = "eth1"
mac = "02:00:00:00:02:fe"
addresses = ["2001:db8:2::fe/64"]
[[neighbors]]
address = "10.0.1.9"
mac = "02:00:00:00:00:09"
port = "eth0"
"""
R_MAC = "02:00:00:00:01:fe"
H_MAC = "02:00:00:00:00:01"
H2_MAC = "02:00:00:00:00:02"


def a(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def table(**params: object) -> NeighborTable:
    return NeighborTable.from_config(parse_config(CONFIG), NeighborParams(**params))  # type: ignore[arg-type]


def arp(op: int, hwsrc: str, psrc: str, pdst: str, dst: str = "ff:ff:ff:ff:ff:ff"):  # type: ignore[no-untyped-def]
    return parse(bytes(Ether(src=hwsrc, dst=dst) / ARP(op=op, hwsrc=hwsrc, psrc=psrc, pdst=pdst)))


def routed_frame(dst: str = "10.0.1.1") -> bytearray:
    return bytearray(bytes(Ether() / IP(src="10.0.2.1", dst=dst) / UDP()))


def test_answers_arp_for_router_address_and_learns_sender() -> None:
    t = table()
    out = t.handle_arp(arp(1, H_MAC, "10.0.1.1", "10.0.1.254"), 1, now=0)
    (tx,) = out.send
    reply = Ether(tx.frame)
    assert tx.port == 1 and reply.dst == H_MAC and reply.src == R_MAC
    assert (reply[ARP].op, reply[ARP].psrc, reply[ARP].hwsrc) == (2, "10.0.1.254", R_MAC)
    assert (reply[ARP].pdst, reply[ARP].hwdst) == ("10.0.1.1", H_MAC)
    assert t.state(a("10.0.1.1"), 1) is Nud.STALE
    assert t.lookup(a("10.0.1.1"), 1) == bytes.fromhex("020000000001")


def test_ignores_arp_for_other_hosts() -> None:
    t = table()
    assert t.handle_arp(arp(1, H_MAC, "10.0.1.1", "10.0.1.2"), 1, now=0).send == []
    assert t.state(a("10.0.1.1"), 1) is None


def test_resolve_queues_probes_and_flushes_on_reply() -> None:
    t = table()
    out = t.resolve(a("10.0.1.1"), 1, routed_frame(), now=0)
    (probe,) = out.send
    req = Ether(probe.frame)
    assert req.dst == "ff:ff:ff:ff:ff:ff" and req[ARP].op == 1
    assert (req[ARP].psrc, req[ARP].pdst, req[ARP].hwsrc) == ("10.0.1.254", "10.0.1.1", R_MAC)
    assert t.state(a("10.0.1.1"), 1) is Nud.INCOMPLETE
    assert t.resolve(a("10.0.1.1"), 1, routed_frame(), now=0.1).send == []  # queued, no probe
    out = t.handle_arp(arp(2, H_MAC, "10.0.1.1", "10.0.1.254", dst=R_MAC), 1, now=0.2)
    assert len(out.send) == 2
    for tx in out.send:
        eth = Ether(tx.frame)
        assert (tx.port, eth.dst, eth.src, eth[IP].dst) == (1, H_MAC, R_MAC, "10.0.1.1")
    assert t.state(a("10.0.1.1"), 1) is Nud.REACHABLE
    out = t.resolve(a("10.0.1.1"), 1, routed_frame(), now=1)
    assert Ether(out.send[0].frame).dst == H_MAC


def test_queue_overflow_drops_oldest() -> None:
    t = table(unres_qlen=2)
    for ttl in (1, 2, 3):
        frame = bytearray(bytes(Ether() / IP(dst="10.0.1.1", ttl=ttl) / UDP()))
        t.resolve(a("10.0.1.1"), 1, frame, now=0)
    assert t.drops["neigh_queue_full"] == 1
    out = t.handle_arp(arp(2, H_MAC, "10.0.1.1", "10.0.1.254", dst=R_MAC), 1, now=0.5)
    assert [Ether(tx.frame)[IP].ttl for tx in out.send] == [2, 3]


def test_resolution_failure_retries_then_reports_unreachable() -> None:
    t = table()
    t.resolve(a("10.0.1.1"), 1, routed_frame(), now=0)
    t.resolve(a("10.0.1.1"), 1, routed_frame(), now=0.5)
    assert t.next_deadline() == 1.0
    assert t.poll(0.9).send == []
    assert len(t.poll(1.0).send) == 1  # second probe
    assert len(t.poll(2.0).send) == 1  # third probe (mcast_solicit = 3)
    out = t.poll(3.0)
    assert out.send == [] and len(out.unreachable) == 2
    assert Ether(out.unreachable[0].frame)[IP].dst == "10.0.1.1"
    assert t.state(a("10.0.1.1"), 1) is Nud.FAILED and t.drops["neigh_failed"] == 2
    # The next packet starts over.
    assert len(t.resolve(a("10.0.1.1"), 1, routed_frame(), now=4).send) == 1
    assert t.state(a("10.0.1.1"), 1) is Nud.INCOMPLETE


def _reachable(t: NeighborTable, now: float) -> None:
    t.resolve(a("10.0.1.1"), 1, routed_frame(), now=now)
    t.handle_arp(arp(2, H_MAC, "10.0.1.1", "10.0.1.254", dst=R_MAC), 1, now=now)
    assert t.state(a("10.0.1.1"), 1) is Nud.REACHABLE


def test_reachable_ages_to_stale_then_delay_probe_reachable() -> None:
    t = table()
    _reachable(t, 0)
    t.poll(29.9)
    assert t.state(a("10.0.1.1"), 1) is Nud.REACHABLE
    t.poll(30)
    assert t.state(a("10.0.1.1"), 1) is Nud.STALE
    out = t.resolve(a("10.0.1.1"), 1, routed_frame(), now=40)
    assert Ether(out.send[0].frame).dst == H_MAC  # STALE still forwards
    assert t.state(a("10.0.1.1"), 1) is Nud.DELAY
    (probe,) = t.poll(45).send
    assert Ether(probe.frame).dst == H_MAC  # unicast re-probe
    assert t.state(a("10.0.1.1"), 1) is Nud.PROBE
    t.handle_arp(arp(2, H_MAC, "10.0.1.1", "10.0.1.254", dst=R_MAC), 1, now=45.5)
    assert t.state(a("10.0.1.1"), 1) is Nud.REACHABLE


def test_probe_without_answer_fails() -> None:
    t = table()
    _reachable(t, 0)
    t.poll(30)
    t.resolve(a("10.0.1.1"), 1, routed_frame(), now=30)
    assert len(t.poll(35).send) == 1
    assert len(t.poll(36).send) == 1
    assert len(t.poll(37).send) == 1
    out = t.poll(38)
    assert out.unreachable == [] and t.state(a("10.0.1.1"), 1) is Nud.FAILED
    assert t.lookup(a("10.0.1.1"), 1) is None


def test_stale_entries_are_collected() -> None:
    t = table()
    t.handle_arp(arp(1, H_MAC, "10.0.1.1", "10.0.1.254"), 1, now=0)
    t.poll(59)
    assert t.state(a("10.0.1.1"), 1) is Nud.STALE
    t.poll(60)
    assert t.state(a("10.0.1.1"), 1) is None


def test_static_entry_is_permanent() -> None:
    t = table()
    out = t.resolve(a("10.0.1.9"), 1, routed_frame("10.0.1.9"), now=0)
    assert Ether(out.send[0].frame).dst == "02:00:00:00:00:09"
    t.handle_arp(arp(2, H2_MAC, "10.0.1.9", "10.0.1.9"), 1, now=1)
    t.poll(1000)
    assert t.state(a("10.0.1.9"), 1) is Nud.PERMANENT
    assert t.lookup(a("10.0.1.9"), 1) == bytes.fromhex("020000000009")


def test_gratuitous_arp_updates_existing_only() -> None:
    t = table()
    t.handle_arp(arp(1, H_MAC, "10.0.1.1", "10.0.1.254"), 1, now=0)
    t.handle_arp(arp(1, H2_MAC, "10.0.1.1", "10.0.1.1"), 1, now=1)
    assert t.lookup(a("10.0.1.1"), 1) == bytes.fromhex("020000000002")
    t.handle_arp(arp(1, H2_MAC, "10.0.1.5", "10.0.1.5"), 1, now=1)
    assert t.state(a("10.0.1.5"), 1) is None
    accepting = table(arp_accept=True)
    accepting.handle_arp(arp(1, H2_MAC, "10.0.1.5", "10.0.1.5"), 1, now=1)
    assert accepting.state(a("10.0.1.5"), 1) is Nud.STALE


def test_broadcast_hint_does_not_demote_reachable() -> None:
    t = table()
    _reachable(t, 0)
    t.handle_arp(arp(1, H_MAC, "10.0.1.1", "10.0.1.254"), 1, now=1)
    assert t.state(a("10.0.1.1"), 1) is Nud.REACHABLE


def test_bad_arp_is_counted() -> None:
    t = table()
    t.handle_arp(arp(7, H_MAC, "10.0.1.1", "10.0.1.254"), 1, now=0)
    t.handle_arp(arp(1, H_MAC, "10.0.1.1", "10.0.1.254"), 99, now=0)
    assert t.drops["arp_invalid"] == 2


def ns(src: str, target: str, lladdr: str | None = H_MAC, hlim: int = 255, dst: str | None = None):  # type: ignore[no-untyped-def]
    solicited = "ff02::1:ff" + ipaddress.ip_address(target).exploded[-7:]
    pkt = (
        Ether(src=H_MAC) / IPv6(src=src, dst=dst or solicited, hlim=hlim) / ICMPv6ND_NS(tgt=target)
    )
    if lladdr:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=lladdr)
    return parse(bytes(pkt))


def na(target: str, mac: str, *, s: int = 1, o: int = 1, dst: str = "2001:db8:1::fe"):  # type: ignore[no-untyped-def]
    return parse(
        bytes(
            Ether(src=mac, dst=R_MAC)
            / IPv6(src=target, dst=dst, hlim=255)
            / ICMPv6ND_NA(tgt=target, S=s, O=o, R=0)
            / ICMPv6NDOptDstLLAddr(lladdr=mac)
        )
    )


def test_answers_ns_for_port_address_and_learns() -> None:
    t = table()
    (tx,) = t.handle_ndp(ns("2001:db8:1::1", "2001:db8:1::fe"), 1, now=0).send
    reply = Ether(tx.frame)
    assert reply.dst == H_MAC and reply[IPv6].dst == "2001:db8:1::1" and reply[IPv6].hlim == 255
    adv = reply[ICMPv6ND_NA]
    assert (adv.tgt, adv.R, adv.S, adv.O) == ("2001:db8:1::fe", 1, 1, 1)
    assert reply[ICMPv6NDOptDstLLAddr].lladdr == R_MAC
    assert t.state(a("2001:db8:1::1"), 1) is Nud.STALE


def test_ns_for_address_of_other_port_is_not_answered() -> None:
    t = table()
    assert t.handle_ndp(ns("2001:db8:1::1", "2001:db8:2::fe"), 1, now=0).send == []


def test_dad_ns_answered_to_all_nodes() -> None:
    t = table()
    dad = ns("::", "2001:db8:1::fe", lladdr=None)
    (tx,) = t.handle_ndp(dad, 1, now=0).send
    reply = Ether(tx.frame)
    assert reply[IPv6].dst == "ff02::1" and reply.dst == "33:33:00:00:00:01"
    assert reply[ICMPv6ND_NA].S == 0
    assert t.state(bytes(16), 1) is None


def test_invalid_ndp_is_counted() -> None:
    t = table()
    assert t.handle_ndp(ns("2001:db8:1::1", "2001:db8:1::fe", hlim=64), 1, now=0).send == []
    t.handle_ndp(na("2001:db8:1::1", H_MAC, dst="ff02::1"), 1, now=0)  # solicited to multicast
    assert t.drops["ndp_invalid"] == 2


def test_resolve_ipv6_with_ns_and_na() -> None:
    t = table()
    frame = bytearray(bytes(Ether() / IPv6(dst="2001:db8:1::1") / UDP()))
    (probe,) = t.resolve(a("2001:db8:1::1"), 1, frame, now=0).send
    sol = Ether(probe.frame)
    assert sol.dst == "33:33:ff:00:00:01" and sol[IPv6].dst == "ff02::1:ff00:1"
    assert sol[IPv6].src == "2001:db8:1::fe" and sol[ICMPv6ND_NS].tgt == "2001:db8:1::1"
    assert sol[ICMPv6NDOptSrcLLAddr].lladdr == R_MAC
    assert t.handle_ndp(na("2001:db8:1::7", H_MAC), 1, now=0.1).send == []  # no entry: ignored
    out = t.handle_ndp(na("2001:db8:1::1", H_MAC), 1, now=0.2)
    (tx,) = out.send
    assert Ether(tx.frame).dst == H_MAC and t.state(a("2001:db8:1::1"), 1) is Nud.REACHABLE


def test_na_without_override_does_not_replace_mac() -> None:
    t = table()
    t.resolve(a("2001:db8:1::1"), 1, bytearray(64), now=0)
    t.handle_ndp(na("2001:db8:1::1", H_MAC), 1, now=0.1)
    t.handle_ndp(na("2001:db8:1::1", H2_MAC, s=0, o=0), 1, now=0.2)
    assert t.lookup(a("2001:db8:1::1"), 1) == bytes.fromhex("020000000001")
    assert t.state(a("2001:db8:1::1"), 1) is Nud.STALE
    t.handle_ndp(na("2001:db8:1::1", H2_MAC, s=0, o=1), 1, now=0.3)
    assert t.lookup(a("2001:db8:1::1"), 1) == bytes.fromhex("020000000002")


def test_no_source_address_fails_at_once() -> None:
    t = table()
    out = t.resolve(a("10.0.2.1"), 2, routed_frame("10.0.2.1"), now=0)
    assert out.send == [] and len(out.unreachable) == 1
    assert t.drops["neigh_failed"] == 1


@pytest.mark.parametrize("cut", [0, 5])
def test_next_deadline_empty_or_static_only(cut: int) -> None:
    t = table()
    t.poll(cut)
    assert t.next_deadline() is None


def test_table_limit_forces_gc_then_refuses() -> None:
    t = table(max_entries=4, gc_thresh2=2)  # the static entry counts too
    for i in range(1, 4):
        t.handle_arp(arp(1, H_MAC, f"10.0.1.{i}", "10.0.1.254"), 1, now=i)  # STALE
    assert len(t.entries) == 4
    t.resolve(a("10.0.1.50"), 1, routed_frame("10.0.1.50"), now=10)
    # Forced GC dropped the least recently used STALE entries, the static one stays.
    assert t.state(a("10.0.1.1"), 1) is None and t.state(a("10.0.1.9"), 1) is Nud.PERMANENT
    assert t.state(a("10.0.1.50"), 1) is Nud.INCOMPLETE
    for i in range(60, 64):
        t.resolve(a(f"10.0.1.{i}"), 1, routed_frame(f"10.0.1.{i}"), now=11)
    assert len(t.entries) <= 4 and t.drops["neigh_table_full"] >= 1
