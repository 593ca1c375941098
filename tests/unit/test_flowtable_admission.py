"""Kernel flowtable behaviours 3 and 4: ``flow add @ft`` admission (§2.1)."""

from __future__ import annotations

from controller.ip.packet import TCP_ACK, TCP_FIN, TCP_RST
from controller.netfilter.admission import admit, refusal
from controller.netfilter.ct import IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_UDP, Status, TcpState
from controller.netfilter.flowtable import HW_BIDIRECTIONAL
from tests.unit.ft_helpers import ROUTER_WAN, Rig, make_conn, packet_for, resolve


class _Pkt:
    def __init__(self, family: int = 4, options: bool = False, tcp_flags: int = TCP_ACK) -> None:
        self.family, self.options, self.tcp_flags = family, options, tcp_flags


def test_b03_tcp_needs_established_and_assured() -> None:
    conn = make_conn()
    assert refusal(conn, _Pkt()) is None
    conn.status &= ~Status.ASSURED
    assert refusal(conn, _Pkt()) == "tcp_not_established"
    conn = make_conn()
    conn.tcp_state = TcpState.SYN_RECV
    assert refusal(conn, _Pkt()) == "tcp_not_established"


def test_b03_tcp_fin_or_rst_packet_never_offloads() -> None:
    conn = make_conn()
    assert refusal(conn, _Pkt(tcp_flags=TCP_FIN | TCP_ACK)) == "tcp_fin_rst"
    assert refusal(conn, _Pkt(tcp_flags=TCP_RST)) == "tcp_fin_rst"


def test_b03_udp_once_confirmed_without_reply() -> None:
    conn = make_conn(IPPROTO_UDP, status=Status.CONFIRMED)
    assert refusal(conn, _Pkt()) is None
    first = make_conn(IPPROTO_UDP, status=Status(0))
    assert refusal(first, _Pkt()) == "unconfirmed"  # the very first packet


def test_b03_gre_only_without_nat_or_keys() -> None:
    plain = make_conn(IPPROTO_GRE, sport=0, dport=0)
    assert refusal(plain, _Pkt()) is None
    assert refusal(make_conn(IPPROTO_GRE, sport=0, dport=0, snat=ROUTER_WAN), _Pkt()) == "gre_nat"
    assert refusal(make_conn(IPPROTO_GRE, sport=7, dport=9), _Pkt()) == "gre_keys"


def test_b03_other_protocols_helpers_and_flags_never() -> None:
    assert refusal(make_conn(IPPROTO_ICMP), _Pkt()) == "protocol"
    helped = make_conn()
    helped.helper = "ftp"
    assert refusal(helped, _Pkt()) == "helper"
    for bit in (Status.SEQ_ADJUST, Status.NAT_CLASH):
        conn = make_conn()
        conn.status |= bit
        assert refusal(conn, _Pkt()) == "seq_adjust_or_nat_clash"


def test_b03_packet_and_hook_conditions() -> None:
    conn = make_conn()
    assert refusal(conn, _Pkt(options=True)) == "ipv4_options"
    assert refusal(conn, _Pkt(family=6, options=True)) is None
    assert refusal(conn, _Pkt(), ipsec=True) == "ipsec"
    assert refusal(conn, _Pkt(), hook="input") == "not_forward_hook"
    assert refusal(None, _Pkt()) == "untracked"


def test_b03_never_twice_for_the_same_ct() -> None:
    rig = Rig(offload=False)
    other = Rig(offload=False)  # a second flowtable
    conn = make_conn()
    assert rig.admit(conn) is not None
    assert rig.admit(conn) is None and other.admit(conn) is None
    assert rig.ft.counters["refused_already_offloaded"] == 1
    assert other.ft.counters["refused_already_offloaded"] == 1


def test_b03_no_route_releases_the_lock() -> None:
    rig = Rig(offload=False)
    conn = make_conn()
    pkt = packet_for(conn, 0)
    assert admit(rig.ft, conn, pkt, 0, 1, lambda c, d, p, f: None, rig.now) is None
    assert not conn.status & Status.OFFLOAD
    assert rig.ft.counters["refused_no_route"] == 1
    assert admit(rig.ft, conn, pkt, 0, 1, resolve, rig.now) is not None


def test_b04_admission_sets_offload_liberal_day_timeout() -> None:
    rig = Rig(offload=False, tcp_timeout=45, udp_timeout=20)
    conn = make_conn()
    flow = rig.admit(conn)
    assert flow is not None
    assert conn.status & Status.OFFLOAD
    assert all(t.liberal for t in conn.tcp)
    assert conn.timeout - rig.now >= 86400
    assert flow.timeout == rig.now + 45
    assert flow.flags & HW_BIDIRECTIONAL
    udp = make_conn(IPPROTO_UDP, conn_id=2)
    udp_flow = rig.admit(udp)
    assert udp_flow is not None and udp_flow.timeout == rig.now + 20
    assert rig.ft.counters["admitted"] == 2
    assert [e.type for e in rig.events] == ["OFFLOAD", "OFFLOAD"]


def test_b04_nat_flags_come_from_ct_status() -> None:
    from controller.netfilter.flowtable import DNAT, SNAT

    rig = Rig(offload=False)
    flow = rig.admit(make_conn(snat=ROUTER_WAN, dnat=ROUTER_WAN, dnat_port=8080))
    assert flow is not None and flow.flags & SNAT and flow.flags & DNAT
