"""VLAN, QinQ and PPPoE devices in the mirror (examples/encap/router.toml), with the memory
driver as the switch: the classic path through sub-devices, path discovery at `flow add`
(nft_dev_forward_path), the software fast path and the hardware rule carrying the
encapsulations both ways, and the kernel's drops."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE, PPPoED

from controller.config import NeighborConfig, load_config, parse_config
from controller.netfilter.ct import Status
from controller.netfilter.ruleset import loads
from controller.router import Router
from inet.encap import Encap
from ndo.memory import MemoryDriver
from tests.unit import test_router as router_test

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "encap" / "router.toml"
LAN_MAC, WAN_MAC, UP_MAC = "02:00:00:00:01:fe", "02:00:00:00:02:fe", "02:00:00:00:03:fe"
AC_MAC, UP_GW_MAC = "02:00:00:00:02:01", "02:00:00:00:03:01"
H10, H10_MAC = "10.0.10.2", "02:00:00:00:10:02"
H100, H100_MAC = "10.0.100.2", "02:00:00:00:30:02"
PPP_LOCAL, SERVER, UP_SERVER = "203.0.113.5", "93.184.216.34", "198.51.100.7"
VLAN10, SVLAN100, SESSION = Encap(10, 0x8100), Encap(100, 0x88A8), Encap(0x1234, 0x8864)

RULESET = EXAMPLE.with_name("ruleset.nft").read_text()
SOFTWARE = RULESET.replace("        flags offload\n", "")
ONLY_VLAN_DEVICE = RULESET.replace("{ eth0, eth1, eth2 }", "{ eth0.10, eth2 }")


class Bench(router_test.Bench):
    """test_router's Bench on the example's encap router, with ``ruleset`` as its ruleset."""

    def __init__(self, ruleset: str = RULESET) -> None:
        self.now = 1000.0
        self.events = []
        config = load_config(EXAMPLE)
        self.router = Router(config, ruleset=loads(ruleset, "test", self.devices(config)))
        for addr, mac, dev in ((H10, H10_MAC, "eth0.10"), (H100, H100_MAC, "eth0.100.10")):
            self.router.neighbors.add_static(
                NeighborConfig(ipaddress.ip_address(addr), bytes.fromhex(mac.replace(":", "")),
                               dev))
        self.driver = MemoryDriver(clock=lambda: self.now)

    @staticmethod
    def devices(config) -> frozenset[str]:  # type: ignore[no-untyped-def]
        return frozenset(d.name for d in config.devices)


def vlan10(flags: str, payload: bytes = b"", dst: str = SERVER, df: bool = False) -> bytes:
    return bytes(Ether(src=H10_MAC, dst=LAN_MAC) / Dot1Q(vlan=10)
                 / IP(src=H10, dst=dst, flags="DF" if df else 0)
                 / TCP(sport=40000, dport=443, flags=flags) / payload)


def from_ac(flags: str, payload: bytes = b"", sid: int = 0x1234, src_mac: str = AC_MAC,
            dport: int = 61000) -> bytes:
    return bytes(Ether(src=src_mac, dst=WAN_MAC) / PPPoE(sessionid=sid) / PPP(proto=0x0021)
                 / IP(src=SERVER, dst=PPP_LOCAL) / TCP(sport=443, dport=dport, flags=flags)
                 / payload)


def handshake(b: Bench) -> Ether:
    """VLAN 10 host to a server behind PPPoE: SYN, SYN-ACK, ACK; the SYN as it left."""
    path, ((port, syn),) = b.send(vlan10("S"), 1)
    assert (path, port) == ("classic", 2)
    out = Ether(syn)
    assert b.send(from_ac("SA", dport=out[TCP].sport), 2)[0] == "classic"
    assert b.send(vlan10("A"), 1)[0] == "classic"
    return out


def test_classic_path_from_a_vlan_to_pppoe_masquerades_and_encapsulates() -> None:
    b = Bench()
    out = handshake(b)
    assert out.dst == AC_MAC and out.src == WAN_MAC and Dot1Q not in out
    assert out[PPPoE].sessionid == 0x1234 and out[PPPoE].len == out[IP].len + 2
    assert out[PPP].proto == 0x0021 and out[IP].src == PPP_LOCAL and out[IP].ttl == 63


def test_flow_add_finds_the_real_devices_and_the_switch_carries_both_encapsulations() -> None:
    b = Bench()
    handshake(b)
    (ft,) = b.router.flowtables.values()
    (flow,) = ft.flows()
    orig, reply = flow.routes
    assert (orig.in_port, orig.in_encap, orig.out_port, orig.direct) == (1, (VLAN10,), 2, True)
    assert (reply.in_port, reply.in_encap, reply.out_port, reply.direct) == (
        2, (SESSION,), 1, True)
    assert orig.mtu == 1492 and bytes.hex(orig.eth_dst, ":") == AC_MAC
    b.drain()
    (conn,) = list(b.router.conntrack)
    assert conn.status & Status.HW_OFFLOAD
    rules = {r.rule.match.ingress_port: r.rule for r in b.driver.rules.values()}
    assert rules[1].match.encap == (VLAN10,) and rules[1].actions.push == (SESSION,)
    assert rules[2].match.encap == (SESSION,) and rules[2].actions.push == (VLAN10,)
    path, ((port, frame),) = b.send(vlan10("PA", b"data"), 1)
    out = Ether(frame)
    assert (path, port) == ("hw", 2) and out[PPPoE].sessionid == 0x1234
    assert out[PPPoE].len == out[IP].len + 2 and out[IP].src == PPP_LOCAL
    path, ((port, frame),) = b.send(from_ac("PA", b"answer", dport=out[TCP].sport), 2)
    got = Ether(frame)
    assert (path, port) == ("hw", 1) and got[Dot1Q].vlan == 10 and got.dst == H10_MAC
    assert got[IP].dst == H10 and got[TCP].dport == 40000 and PPPoE not in got
    snapshot = b.router.snapshot(b.now)
    assert snapshot["conns"][0]["encap"] == ["vlan:10", "pppoe:0x1234"]


def test_software_flowtable_forwards_both_ways_through_the_devices() -> None:
    b = Bench(SOFTWARE)
    handshake(b)
    (flow,) = next(iter(b.router.flowtables.values())).flows()
    assert [r.direct for r in flow.routes] == [False, False]  # NEIGH: the devices encapsulate
    assert [r.in_encap for r in flow.routes] == [(VLAN10,), (SESSION,)]
    outcome = b.router.receive(vlan10("PA", b"x"), 1, b.now)
    ((port, frame),) = outcome.sends
    assert (outcome.path, port) == ("sw_fastpath", 2)
    assert Ether(frame)[PPPoE].sessionid == 0x1234 and Ether(frame).dst == AC_MAC
    outcome = b.router.receive(from_ac("PA", dport=Ether(frame)[TCP].sport), 2, b.now)
    ((port, frame),) = outcome.sends
    assert (outcome.path, port) == ("sw_fastpath", 1) and Ether(frame)[Dot1Q].vlan == 10


def test_a_flowtable_listing_only_the_vlan_device_keeps_the_flow_on_it_in_software() -> None:
    """nft_dev_forward_path overrides nothing unless the real device is in the flowtable: the
    LAN direction stays keyed on eth0.10, untagged, which its hook sees after the VLAN layer;
    the switch has no such port, so no hardware rule (and eth1 is not listed at all)."""
    b = Bench(ONLY_VLAN_DEVICE)
    vlan_dev = b.router.config.port_by_name("eth0.10").id  # type: ignore[union-attr]
    assert b.send(vlan10("S", dst=UP_SERVER), 1)[0] == "classic"
    reply = bytes(Ether(src=UP_GW_MAC, dst=UP_MAC) / IP(src=UP_SERVER, dst=H10)
                  / TCP(sport=443, dport=40000, flags="SA"))
    b.send(reply, 3)
    b.send(vlan10("A", dst=UP_SERVER), 1)
    (flow,) = next(iter(b.router.flowtables.values())).flows()
    assert (flow.routes[0].in_port, flow.routes[0].in_encap) == (vlan_dev, ())
    assert flow.routes[1].out_port == vlan_dev and not flow.routes[1].direct
    b.drain()
    assert not b.driver.rules and b.router.offload.counters["build_failed"] >= 1
    path, ((port, frame),) = b.send(vlan10("PA", b"x", dst=UP_SERVER), 1)
    assert (path, port) == ("sw_fastpath", 3) and Dot1Q not in Ether(frame)
    outcome = b.router.receive(bytes(Ether(src=UP_GW_MAC, dst=UP_MAC) / IP(src=UP_SERVER, dst=H10)
                                     / TCP(sport=443, dport=40000, flags="A")), 3, b.now)
    ((port, frame),) = outcome.sends
    assert (outcome.path, port) == ("sw_fastpath", 1) and Ether(frame)[Dot1Q].vlan == 10


def test_qinq_host_reaches_the_untagged_uplink_and_the_reply_gets_both_tags() -> None:
    b = Bench()
    up = bytes(Ether(src=H100_MAC, dst=LAN_MAC) / Dot1AD(vlan=100) / Dot1Q(vlan=10)
               / IP(src=H100, dst=UP_SERVER) / UDP(sport=5000, dport=53) / b"q")
    for _ in range(2):  # UDP is offloaded by its second packet (the first is unconfirmed)
        path, ((port, frame),) = b.send(up, 1)
        assert (path, port) == ("classic", 3) and Ether(frame).src == UP_MAC
        assert Dot1Q not in Ether(frame) and Ether(frame).dst == UP_GW_MAC
    (flow,) = next(iter(b.router.flowtables.values())).flows()
    assert flow.routes[0].in_encap == (SVLAN100, VLAN10)
    b.drain()
    answer = bytes(Ether(src=UP_GW_MAC, dst=UP_MAC) / IP(src=UP_SERVER, dst=H100)
                   / UDP(sport=53, dport=5000) / b"a")
    path, ((port, frame),) = b.send(answer, 3)
    got = Ether(frame)
    assert (path, port) == ("hw", 1)
    assert got[Dot1AD].vlan == 100 and got[Dot1Q].vlan == 10 and got[IP].ttl == 63


def test_arp_is_answered_in_the_vlan() -> None:
    b = Bench()
    who = bytes(Ether(src=H10_MAC, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=10)
                / ARP(op=1, hwsrc=H10_MAC, psrc=H10, pdst="10.0.10.254"))
    path, ((port, frame),) = b.send(who, 1)
    got = Ether(frame)
    assert (path, port) == ("to_router", 1) and got[Dot1Q].vlan == 10 and got[ARP].op == 2


@pytest.mark.parametrize("frame, reason", [
    (vlan10("S").replace(b"\x81\x00\x00\x0a", b"\x81\x00\x00\x0b", 1), "unknown_vlan"),
    (from_ac("S", sid=0x4321), "pppoe_unknown_session"),
    (from_ac("S", src_mac="02:00:00:00:09:09"), "pppoe_unknown_session"),
    (bytes(Ether(src=AC_MAC, dst=WAN_MAC) / PPPoED(code=0x07, sessionid=0)), "pppoe_not_ip"),
    (bytes(Ether(src=AC_MAC, dst=WAN_MAC) / PPPoE(sessionid=0x1234) / PPP(proto=0xC021)
           / b"\x09\x01\x00\x08\xde\xad\xbe\xef"), "pppoe_not_ip"),
    (bytes(Ether(src=H10_MAC, dst=LAN_MAC) / Dot1Q(vlan=10) / Dot1Q(vlan=5) / IP()),
     "unknown_vlan"),
])
def test_what_the_kernel_drops(frame: bytes, reason: str) -> None:
    b = Bench()
    outcome = b.router.receive(frame, 1 if frame[12:14] == b"\x81\x00" else 2, b.now)
    assert (outcome.path, outcome.reason, outcome.sends) == ("drop", reason, [])


def test_oversize_for_pppoe_gets_frag_needed_back_in_the_vlan() -> None:
    b = Bench()
    big = vlan10("A", bytes(1493 - 40), df=True)
    outcome = b.router.receive(big, 1, b.now)
    ((port, frame),) = outcome.sends
    got = Ether(frame)
    assert (outcome.reason, port) == ("frag_needed", 1) and got[Dot1Q].vlan == 10
    assert got[ICMP].type == 3 and got[ICMP].code == 4 and got[ICMP].nexthopmtu == 1492
    fits = vlan10("A", bytes(1492 - 40), df=True)
    ((port, frame),) = b.router.receive(fits, 1, b.now).sends
    assert port == 2 and len(frame) == 14 + 8 + 1492


def test_ndp_is_answered_in_the_vlan() -> None:
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6

    b = Bench()
    ns = bytes(Ether(src=H10_MAC, dst="33:33:ff:00:00:fe") / Dot1Q(vlan=10)
               / IPv6(src="2001:db8:10::2", dst="ff02::1:ff00:fe", hlim=255)
               / ICMPv6ND_NS(tgt="2001:db8:10::fe") / ICMPv6NDOptSrcLLAddr(lladdr=H10_MAC))
    outcome = b.router.receive(ns, 1, b.now)
    ((port, frame),) = outcome.sends
    got = Ether(frame)
    assert (outcome.path, port) == ("to_router", 1) and got[Dot1Q].vlan == 10
    assert got[ICMPv6ND_NA].tgt == "2001:db8:10::fe" and got.src == LAN_MAC


def test_arp_probes_for_a_vlan_host_leave_tagged() -> None:
    b = Bench()
    b.router.neighbors.entries.clear()  # no static neighbour for the VLAN hosts
    b.router.neighbors.add_static(NeighborConfig(ipaddress.ip_address("192.0.2.1"),
                                                 bytes.fromhex("020000000301"), "eth2"))
    frame = bytes(Ether(src=UP_GW_MAC, dst=UP_MAC) / IP(src=UP_SERVER, dst=H10)
                  / UDP(sport=53, dport=5000) / b"a")
    outcome = b.router.receive(frame, 3, b.now)
    ((port, probe),) = outcome.sends
    got = Ether(probe)
    assert port == 1 and got[Dot1Q].vlan == 10 and got[ARP].pdst == H10
    assert got[ARP].psrc == "10.0.10.254"


def test_lcp_in_a_pppoe_session_over_a_vlan_is_dropped_as_not_ip() -> None:
    """PPPoE over VLAN 7 (a common WAN): an LCP echo arriving tagged is pppd's business, dropped
    as the untagged one is, once the tag is popped (vlan_do_receive)."""
    text = EXAMPLE.read_text().replace('link = "eth1"', 'link = "eth1.7"') + (
        '\n[[vlans]]\nname = "eth1.7"\nlink = "eth1"\nid = 7\n')
    config = parse_config(text, base_dir=EXAMPLE.parent)
    router = Router(config, ruleset=loads(RULESET, "test", Bench.devices(config)))
    lcp = bytes(Ether(src=AC_MAC, dst=WAN_MAC) / Dot1Q(vlan=7) / PPPoE(sessionid=0x1234)
                / PPP(proto=0xC021) / b"\x09\x01\x00\x08\xde\xad\xbe\xef")
    outcome = router.receive(lcp, 2, 1000.0)
    assert (outcome.path, outcome.reason, outcome.sends) == ("drop", "pppoe_not_ip", [])
