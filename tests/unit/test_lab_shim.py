"""The lab's userspace VLAN / PPPoE link (controller.lab.shim): frames both ways, and what is
not the host's left alone."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE

from controller.lab.shim import Shim, main, parse_encaps
from inet.encap import Encap

HOST, ROUTER = "02:00:00:00:00:01", "02:00:00:00:00:fe"
DATAGRAM = IP(src="10.0.10.1", dst="192.0.2.1") / UDP(sport=1, dport=2) / b"hello"
MAC = bytes.fromhex(HOST.replace(":", ""))


def test_parse_encaps() -> None:
    assert parse_encaps("802.1ad:100,vlan:10") == (Encap(100, 0x88A8), Encap(10, 0x8100))
    assert parse_encaps("pppoe:0x1234") == (Encap(0x1234, 0x8864),)
    for bad in ("vlan", "isl:3", "pppoe:1,vlan:2"):
        with pytest.raises(ValueError):
            parse_encaps(bad)


def test_qinq_tags_on_the_way_out_and_off_on_the_way_in() -> None:
    shim = Shim(parse_encaps("802.1ad:100,vlan:10"), MAC)
    plain = bytes(Ether(src=HOST, dst=ROUTER) / DATAGRAM)
    tagged = bytes(Ether(src=HOST, dst=ROUTER) / Dot1AD(vlan=100) / Dot1Q(vlan=10) / DATAGRAM)
    assert shim.to_wire(plain) == tagged
    assert shim.from_wire(tagged) == plain
    arp = bytes(Ether(src=HOST, dst=ROUTER) / ARP())
    assert Ether(shim.to_wire(arp))[Dot1Q].vlan == 10  # ARP goes through the VLAN too
    other = bytes(Ether(src=ROUTER, dst=HOST) / Dot1AD(vlan=100) / Dot1Q(vlan=11) / DATAGRAM)
    assert shim.from_wire(other) is None and shim.from_wire(plain) is None


def test_pppoe_session_only_carries_ip_to_the_peer() -> None:
    shim = Shim(parse_encaps("pppoe:4660"), MAC, bytes.fromhex("0200000000fe"))
    plain = bytes(Ether(src=HOST, dst="02:00:00:00:00:99") / DATAGRAM)
    wire = Ether(shim.to_wire(plain))
    assert wire.dst == ROUTER and wire[PPPoE].sessionid == 4660
    assert wire[PPPoE].len == len(DATAGRAM) + 2 and wire[PPP].proto == 0x21
    back = bytes(Ether(src=ROUTER, dst="02:00:00:00:00:55") / PPPoE(sessionid=4660)
                 / PPP(proto=0x21) / DATAGRAM)
    assert shim.from_wire(back) == bytes(Ether(src=ROUTER, dst=HOST) / DATAGRAM)
    assert shim.to_wire(bytes(Ether(src=HOST) / ARP())) is None
    lcp = bytes(Ether(src=ROUTER, dst=HOST) / PPPoE(sessionid=4660) / PPP(proto=0xC021) / b"x")
    assert shim.from_wire(lcp) is None


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lower", "x", "--tap", "t", "--encap", "pppoe:1", "--tap-mac", HOST]) == 2
    assert "access concentrator" in capsys.readouterr().err
