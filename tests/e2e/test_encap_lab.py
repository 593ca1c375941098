"""The encap lab (mininet/encap.py): real TCP/UDP stacks on hosts behind a VLAN, a QinQ and a
PPPoE link (userspace shims: this kernel has no 8021Q or PPP) through the P4 switch.

Every flow reaches the flowtable with its tags or session in the key, the frames on the wire
carry them (sniffed on the host's veth, below the shim), and the router drops what the kernel
drops. The switch holds encapsulated flows only once the flowtable.p4 with encapsulation keys
is compiled: until then the driver refuses them and they stay [OFFLOAD] (the software fast
path); the [HW_OFFLOAD] tests skip naming both hashes (tests/p4build.require_current).
"""

from __future__ import annotations

import sys

import pytest

from tests.e2e.conftest import Sniffer, conn_to, run, serve, start, wait_for
from tests.p4build import require_current

pytestmark = pytest.mark.e2e

OFFLOADED = ("OFFLOAD", "HW_OFFLOAD")


@pytest.fixture(scope="module")
def lab(target):
    from controller.lab import Lab

    with Lab("encap", target, grpc_port=9577) as lab:
        yield lab


def tcp_through(lab, client: str, server: str, dst: str, port: int, want: tuple[str, ...]):
    """30 segments client -> server:port; waits until the connection's offload state is one
    of ``want``; returns the client's and the server's sniffed frames and the connection."""
    near, far = Sniffer(lab, client, port), Sniffer(lab, server, port)
    srv = serve(lab, server, "tcp-server", str(port))
    cli = start(lab, client, "tcp-client", dst, str(port), "30", "0.05")
    assert wait_for(lambda: (c := conn_to(lab, port)) and c["offload"] in want), \
        conn_to(lab, port)
    cli.communicate(timeout=30)
    out, _ = srv.communicate(timeout=30)
    assert '"received_bytes": 3000' in out
    return near.result(), far.result(), conn_to(lab, port)


def check_vlan_to_uplink(lab, port: int, want: tuple[str, ...]) -> None:
    near, far, conn = tcp_through(lab, "h1", "h4", "192.0.2.1", port, want)
    sent = [p for p in near if p["dport"] == port]
    back = [p for p in near if p["sport"] == port]
    assert sent and all(p["encap"] == ["vlan:10"] for p in sent)
    assert back and all(p["encap"] == ["vlan:10"] and p["l4_csum_ok"] and p["ip_csum_ok"]
                        and p["ttl"] == 63 for p in back)
    assert far and all(p["encap"] == [] for p in far)
    assert conn["encap"] == ["vlan:10", ""]


def check_vlan_to_pppoe(lab, port: int, want: tuple[str, ...]) -> None:
    near, far, conn = tcp_through(lab, "h1", "h3", "203.0.113.1", port, want)
    out = [p for p in far if p["dport"] == port]
    assert out and all(p["encap"] == ["pppoe:4660"] and p["src"] == "203.0.113.5"
                       and p["dst_mac"] == "00:00:00:00:03:01" and p["l4_csum_ok"]
                       for p in out)
    back = [p for p in near if p["sport"] == port]
    assert back and all(p["encap"] == ["vlan:10"] and p["dst"] == "10.0.10.1"
                        and p["l4_csum_ok"] for p in back)
    assert conn["reply"]["dst"] == "203.0.113.5"  # masqueraded
    assert conn["encap"] == ["vlan:10", "pppoe:0x1234"]


def check_qinq_udp(lab, port: int, want: tuple[str, ...]) -> None:
    wire = Sniffer(lab, "h2", port)
    echo = serve(lab, "h4", "udp-echo", str(port))
    try:
        result = run(lab, "h2", "udp-client", "192.0.2.1", str(port), "30", "0.05")
        assert result == {"sent": 30, "received": 30}
        assert wait_for(lambda: (c := conn_to(lab, port)) and c["offload"] in want)
    finally:
        echo.kill()
    frames = wire.result()
    assert frames and all(p["encap"] == ["802.1ad:100", "vlan:10"] for p in frames)


def test_vlan_lan_to_untagged_uplink_in_the_flowtable(lab):
    check_vlan_to_uplink(lab, 5301, OFFLOADED)


def test_vlan_lan_to_pppoe_wan_masqueraded_in_the_flowtable(lab):
    check_vlan_to_pppoe(lab, 5302, OFFLOADED)


def test_qinq_udp_in_the_flowtable(lab):
    check_qinq_udp(lab, 5303, OFFLOADED)


def test_oversize_for_the_pppoe_session_gets_frag_needed(lab):
    h1 = lab.host("h1")
    assert " 0% packet loss" in h1.cmd("ping -c 1 -W 5 -M do -s 1464 203.0.113.1")  # 1492
    out = h1.cmd("ping -c 1 -W 5 -M do -s 1465 203.0.113.1")  # 1493: the router says 1492
    assert "mtu = 1492" in out or "mtu=1492" in out, out


def test_frames_of_an_unknown_vlan_are_dropped(lab):
    before = lab.stats()["drops"].get("unknown_vlan", 0)
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q, Ether

    frame = bytes(Ether(src="00:00:00:00:01:01", dst="00:00:00:00:01:fe") / Dot1Q(vlan=11)
                  / IP(src="10.0.11.1", dst="192.0.2.1") / UDP(sport=1, dport=2)
                  / b"test").hex()  # VLAN 11: there is no eth0.11
    script = ("import socket,sys; s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); "
              "s.bind((sys.argv[1],0)); s.send(bytes.fromhex(sys.argv[2]))")
    intf = lab.host("h1").defaultIntf().name
    lab.host("h1").cmd(f"{sys.executable} -c '{script}' {intf} {frame}")
    assert wait_for(lambda: lab.stats()["drops"].get("unknown_vlan", 0) > before)


def test_vlan_lan_to_untagged_uplink_in_hardware(lab):
    require_current("p4src/flowtable.p4")
    check_vlan_to_uplink(lab, 5311, ("HW_OFFLOAD",))


def test_vlan_lan_to_pppoe_wan_in_hardware(lab):
    require_current("p4src/flowtable.p4")
    check_vlan_to_pppoe(lab, 5312, ("HW_OFFLOAD",))


def test_qinq_udp_in_hardware(lab):
    require_current("p4src/flowtable.p4")
    check_qinq_udp(lab, 5313, ("HW_OFFLOAD",))
