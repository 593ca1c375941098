"""Kernel flowtable behaviours 5-8 and 18: the software fast path (§3)."""

from __future__ import annotations

import dataclasses

import pytest

from controller.ip import frames
from controller.ip.packet import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, l4_checksum_ok, parse
from controller.netfilter.admission import admit
from controller.netfilter.ct import IPPROTO_UDP, ORIGINAL, REPLY, Status, TcpState
from controller.netfilter.fastpath import CLASSIC, FORWARD
from controller.netfilter.flowtable import CLOSING, HW_DYING, TEARDOWN
from tests.unit.ft_helpers import (
    H1,
    H1_MAC,
    H2,
    H2_MAC,
    R1_MAC,
    R2_MAC,
    ROUTER_WAN,
    ROUTES,
    Rig,
    make_conn,
    packet_for,
    port_of,
)


def _offloaded(rig: Rig, **kw: object):
    conn = make_conn(**kw)  # type: ignore[arg-type]
    flow = rig.admit(conn)
    assert flow is not None
    return conn, flow


def test_b05_fallbacks_in_kernel_order() -> None:
    rig = Rig(offload=False)
    conn, _ = _offloaded(rig)
    fwd = rig.fast.forward
    arp = parse(frames.arp_request(H1_MAC, H1, H2))
    assert fwd(arp, 1, rig.now).reason == "non_ip"
    icmp = parse(
        frames.ip_frame(R1_MAC, H1_MAC, frames.ip(H1, H2, 1, frames.icmp(8, 0, b"\0" * 8)))
    )
    assert fwd(icmp, 1, rig.now).reason == "not_tcp_udp"
    assert fwd(packet_for(conn, ORIGINAL, ttl=1), 1, rig.now).reason == "ttl"
    assert fwd(packet_for(conn, ORIGINAL), 3, rig.now).reason == "not_flowtable_device"
    frag = packet_for(conn, ORIGINAL)
    frag.fragment = True
    frag.ttl = 1  # fragments are checked before the TTL
    assert fwd(frag, 1, rig.now).reason == "fragment"
    opts = packet_for(conn, ORIGINAL)
    opts.options = True
    assert fwd(opts, 1, rig.now).reason == "ip_options"
    miss = make_conn(sport=1, conn_id=9)
    assert fwd(packet_for(miss, ORIGINAL), 1, rig.now).reason == "miss"
    assert rig.fast.counters["classic_miss"] == 1


def test_b05_ipv6_extension_header_falls_back() -> None:
    rig = Rig(offload=False)
    conn, _ = _offloaded(rig, family=6)
    pkt = packet_for(conn, ORIGINAL)
    assert rig.fast.forward(pkt, 1, rig.now).verdict == FORWARD
    ext = packet_for(conn, ORIGINAL)
    ext.ext_header, ext.proto = True, 0  # hop-by-hop options first
    assert rig.fast.forward(ext, 1, rig.now).reason == "ipv6_ext_header"


def test_b05_packet_over_mtu_falls_back_and_flow_stays() -> None:
    rig = Rig(offload=False)
    conn = make_conn()
    small = (dataclasses.replace(ROUTES[0], mtu=60), ROUTES[1])
    flow = admit(rig.ft, conn, packet_for(conn, 0), 0, 1, lambda c, d, p, f: small, rig.now)
    assert flow is not None
    assert (
        rig.fast.forward(packet_for(conn, ORIGINAL, payload=b"x" * 40), 1, rig.now).reason == "mtu"
    )
    assert not flow.flags & TEARDOWN
    assert (
        rig.fast.forward(packet_for(conn, ORIGINAL, payload=b"x" * 20), 1, rig.now).verdict
        == FORWARD
    )


def test_b06_fin_rst_closing_mode() -> None:
    rig = Rig()
    conn, flow = _offloaded(rig)
    rig.drain()
    res = rig.fast.forward(packet_for(conn, ORIGINAL, flags=TCP_FIN | TCP_ACK), 1, rig.now)
    assert res.verdict == FORWARD and flow.flags & CLOSING
    rig.tick(5)
    assert rig.fast.forward(packet_for(conn, REPLY, flags=TCP_ACK), 2, rig.now).verdict == FORWARD
    assert len(rig.queue) == 0  # CLOSING: refresh does not re-offload
    rig.gc()  # next GC removes the hardware rules, software entry stays
    assert flow.flags & HW_DYING and not flow.flags & TEARDOWN
    rig.drain()
    assert not rig.hw.rules and not conn.status & Status.HW_OFFLOAD
    assert rig.fast.forward(packet_for(conn, REPLY, flags=TCP_RST), 2, rig.now).verdict == FORWARD
    syn = rig.fast.forward(packet_for(conn, ORIGINAL, flags=TCP_SYN), 1, rig.now)
    assert syn.verdict == CLASSIC and syn.reason == "tcp_syn_closing" and flow.flags & TEARDOWN
    assert conn.tcp_state == TcpState.CLOSE and conn.timeout == rig.now + 10


def test_b06_fin_rst_teardown_mode() -> None:
    rig = Rig(offload=False, fin_mode="teardown")
    conn, flow = _offloaded(rig)
    res = rig.fast.forward(packet_for(conn, REPLY, flags=TCP_RST), 2, rig.now)
    assert res.verdict == CLASSIC and res.reason == "tcp_fin_rst"
    assert flow.flags & TEARDOWN and not conn.status & Status.OFFLOAD
    assert rig.fast.forward(packet_for(conn, ORIGINAL), 1, rig.now).reason == "miss"


def test_b06_hardware_rules_never_match_fin_or_rst() -> None:
    rig = Rig()
    conn, _ = _offloaded(rig)
    rig.drain()
    assert rig.hw.process(frames_of(conn, ORIGINAL, TCP_ACK), 1) is not None
    assert rig.hw.process(frames_of(conn, ORIGINAL, TCP_FIN | TCP_ACK), 1) is None
    assert rig.hw.process(frames_of(conn, REPLY, TCP_RST), 2) is None


def frames_of(conn, direction: int, flags: int) -> bytes:
    return bytes(packet_for(conn, direction, flags=flags).frame)


def test_b07_snat_rewrite_both_directions_with_valid_checksums() -> None:
    rig = Rig(offload=False)
    conn, _ = _offloaded(rig, snat=ROUTER_WAN, snat_port=61000)
    out = rig.fast.forward(packet_for(conn, ORIGINAL), 1, rig.now)
    p = parse(out.frame)  # parse verifies the IPv4 header checksum
    assert (p.src, p.sport, p.dst, p.dport) == (ROUTER_WAN, 61000, H2, 80)
    assert l4_checksum_ok(p) and out.port == 2
    back = rig.fast.forward(packet_for(conn, REPLY), port_of(REPLY), rig.now)
    q = parse(back.frame)
    assert (q.src, q.sport, q.dst, q.dport) == (H2, 80, H1, 40000)
    assert l4_checksum_ok(q) and back.port == 1


def test_b07_dnat_values_come_from_the_opposite_tuple() -> None:
    rig = Rig(offload=False)
    target = bytes([10, 0, 2, 9])
    conn, _ = _offloaded(rig, dnat=target, dnat_port=8080)
    p = parse(rig.fast.forward(packet_for(conn, ORIGINAL), 1, rig.now).frame)
    assert (p.dst, p.dport) == (target, 8080) and l4_checksum_ok(p)
    q = parse(rig.fast.forward(packet_for(conn, REPLY), 2, rig.now).frame)
    assert (q.src, q.sport) == (H2, 80) and l4_checksum_ok(q)


@pytest.mark.parametrize("family", [4, 6])
def test_b07_udp_nat_keeps_checksum_valid_and_zero_stays_zero(family: int) -> None:
    rig = Rig(offload=False)
    wan = ROUTER_WAN if family == 4 else bytes.fromhex("20010db80002" + "00" * 9 + "fe")
    conn, _ = _offloaded(rig, proto=IPPROTO_UDP, family=family, snat=wan, snat_port=5000)
    p = parse(rig.fast.forward(packet_for(conn, ORIGINAL), 1, rig.now).frame)
    assert p.src == wan and p.sport == 5000 and l4_checksum_ok(p)
    if family == 4:
        t = conn.tuples[ORIGINAL]
        l4 = frames.udp(t.src, t.dst, t.sport, t.dport, b"abc", with_checksum=False)
        pkt = parse(frames.ip_frame(R1_MAC, H1_MAC, frames.ip(t.src, t.dst, IPPROTO_UDP, l4)))
        q = parse(rig.fast.forward(pkt, 1, rig.now).frame)
        assert q.frame[q.l4 + 6 : q.l4 + 8] == b"\0\0"


def test_b08_ttl_decremented_by_one_with_l2_rewrite() -> None:
    rig = Rig(offload=False)
    conn, _ = _offloaded(rig)
    p = parse(rig.fast.forward(packet_for(conn, ORIGINAL, ttl=64), 1, rig.now).frame)
    assert p.ttl == 63 and (p.eth_src, p.eth_dst) == (R2_MAC, H2_MAC)
    conn6, _ = _offloaded(rig, family=6, conn_id=2)
    q = parse(rig.fast.forward(packet_for(conn6, REPLY, ttl=2), 2, rig.now).frame)
    assert q.ttl == 1 and (q.eth_src, q.eth_dst) == (R1_MAC, H1_MAC)


def test_b18_fast_path_never_touches_conntrack_state_or_policy() -> None:
    rig = Rig(offload=False)
    conn, flow = _offloaded(rig)
    before = (conn.tcp_state, conn.timeout, list(conn.packets), conn.status)
    for _ in range(3):
        assert rig.fast.forward(packet_for(conn, ORIGINAL), 1, rig.now).verdict == FORWARD
    assert (conn.tcp_state, conn.timeout, list(conn.packets), conn.status) == before
    assert flow.sw_packets == 3


def test_b18_counter_flag_accounts_fast_path_packets_per_direction() -> None:
    rig = Rig(offload=False, counter=True)
    conn, _ = _offloaded(rig)
    pkt = packet_for(conn, REPLY)
    length = pkt.ip_len
    rig.fast.forward(pkt, 2, rig.now)
    assert conn.packets == [0, 1] and conn.bytes == [0, length]
