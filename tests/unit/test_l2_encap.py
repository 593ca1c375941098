"""inet.encap (the tags and PPPoE headers every room reads and writes) and the memory driver's
encapsulated flows: the same frames as flowtable.stf's encapsulation cases, built with scapy."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE, PPPoED

from inet import encap
from inet.encap import Encap
from ndo.api import Command, FlowActions, FlowCommand, FlowMatch, FlowRule, Refusal
from ndo.memory import MemoryDriver

VLAN10, SVLAN100, PPPOE = Encap(10, 0x8100), Encap(100, 0x88A8), Encap(0x1234, 0x8864)
IPV4 = IP(src="10.0.10.2", dst="198.51.100.7", ttl=64) / UDP(sport=5000, dport=53) / b"query"


@pytest.mark.parametrize("l2, encaps, ethertype", [
    (Dot1Q(vlan=10, prio=5), (VLAN10,), 0x0800),
    (Dot1AD(vlan=100) / Dot1Q(vlan=10), (SVLAN100, VLAN10), 0x0800),
    (PPPoE(sessionid=0x1234) / PPP(proto=0x0021), (PPPOE,), 0x0800),
    (Dot1Q(vlan=7) / PPPoE(sessionid=0x1234) / PPP(proto=0x0021), (Encap(7, 0x8100), PPPOE),
     0x0800),
])
def test_walk_finds_the_encapsulations_outermost_first(l2, encaps, ethertype) -> None:  # type: ignore[no-untyped-def]
    frame = bytes(Ether() / l2 / IPV4)
    found = encap.walk(frame)
    assert found == encap.Walk(encaps, len(frame) - len(IPV4), ethertype)
    # header() builds what walk() read (PCP dropped, as skb_vlan_push of the id)
    rebuilt = frame[:12] + encap.header(encaps, ethertype, len(IPV4)) + bytes(IPV4)
    unprioritised = bytes(Ether() / Dot1Q(vlan=10) / IPV4) if encaps == (VLAN10,) else frame
    assert rebuilt == unprioritised


@pytest.mark.parametrize("l2, ethertype, unsupported", [
    (PPPoED(code=9), 0x8863, False),
    (PPPoE(sessionid=1) / PPP(proto=0xC021), 0x8864, False),
    (Dot1Q(vlan=1) / Dot1AD(vlan=2), 0x88A8, True),
    (Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3), 0x8100, True),
    (Dot1AD(vlan=1) / Dot1Q(vlan=2) / PPPoE(sessionid=1) / PPP(proto=0x0021), 0x8864, True),
    (Dot1Q(vlan=1) / ARP(), 0x0806, False),
])
def test_walk_stops_where_the_fast_path_does(l2, ethertype, unsupported) -> None:  # type: ignore[no-untyped-def]
    found = encap.walk(bytes(Ether() / l2 / IPV4))
    assert (found.ethertype, found.unsupported) == (ethertype, unsupported)


def test_walk_of_a_frame_ending_inside_a_header_is_none() -> None:
    assert encap.walk(bytes(Ether() / Dot1Q(vlan=1))[:16]) is None
    assert encap.walk(bytes(Ether(type=0x8864)) + b"\x11\x00") is None


def test_pppoe_length_counts_the_ppp_protocol_and_the_packet() -> None:
    head = encap.header((PPPOE,), 0x86DD, 1000)
    assert head == bytes.fromhex("8864 1100 1234 03ea 0057")


def flow(encap_in: tuple[Encap, ...], push: tuple[Encap, ...], mtu: int = 1500) -> FlowRule:
    match = FlowMatch(3, 4, bytes([10, 0, 10, 2]), bytes([198, 51, 100, 7]), 17, 5000, 53,
                      encap_in)
    return FlowRule(match, FlowActions(2, bytes.fromhex("0200000002fe"),
                                       bytes.fromhex("020000000201"), mtu, push=push))


def test_memory_driver_pops_the_ingress_encapsulation_and_pushes_the_rules() -> None:
    hw = MemoryDriver()
    assert hw.execute_now([FlowCommand(Command.REPLACE, 1, flow((SVLAN100, VLAN10),
                                                                (PPPOE,)))])[0].ok
    frame = bytes(Ether() / Dot1AD(vlan=100) / Dot1Q(vlan=10) / IPV4)
    port, out = hw.process(frame, 3)
    got = Ether(bytes(out))
    assert port == 2
    assert got[PPPoE].sessionid == 0x1234 and got[PPPoE].len == len(IPV4) + 2
    assert got[PPP].proto == 0x0021 and got[IP].ttl == 63 and Dot1Q not in got
    # the same addresses untagged, or in another VLAN, are other flows
    assert hw.process(bytes(Ether() / IPV4), 3) is None
    assert hw.process(bytes(Ether() / Dot1AD(vlan=100) / Dot1Q(vlan=11) / IPV4), 3) is None


def test_memory_driver_compares_the_l3_length_with_the_mtu() -> None:
    hw = MemoryDriver()
    hw.execute_now([FlowCommand(Command.REPLACE, 1, flow((VLAN10,), (PPPOE,), len(IPV4)))])
    assert hw.process(bytes(Ether() / Dot1Q(vlan=10) / IPV4), 3) is not None
    bigger = IPV4.copy()
    bigger[UDP].remove_payload()
    bigger = IP(bytes(bigger / b"query!"))
    assert hw.process(bytes(Ether() / Dot1Q(vlan=10) / bigger), 3) is None


def test_memory_driver_refuses_lists_the_kernel_never_builds() -> None:
    hw = MemoryDriver()
    result = hw.execute_now([FlowCommand(Command.REPLACE, 1, flow((PPPOE, VLAN10), ()))])[0]
    assert result.refusal is Refusal.UNSUPPORTED and "innermost" in result.message
