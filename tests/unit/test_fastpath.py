"""The software fast path beyond the kernel list: agreement with hardware, VLAN, drops."""

from __future__ import annotations

import dataclasses

import pytest

from controller.ip import frames
from controller.ip.packet import parse
from controller.netfilter.admission import admit
from controller.netfilter.ct import IPPROTO_GRE, IPPROTO_TCP, IPPROTO_UDP, ORIGINAL, REPLY
from controller.netfilter.fastpath import DROP, FORWARD
from inet import encap
from inet.encap import Encap
from tests.unit.ft_helpers import (
    H1_MAC,
    R1_MAC,
    ROUTER_WAN,
    ROUTES,
    Rig,
    make_conn,
    packet_for,
    port_of,
)

WAN6 = bytes.fromhex("20010db8000200000000000000000" + "0fe")


@pytest.mark.parametrize(
    ("proto", "family", "nat"),
    [
        (IPPROTO_TCP, 4, {}),
        (IPPROTO_TCP, 4, {"snat": ROUTER_WAN, "snat_port": 61000}),
        (IPPROTO_UDP, 4, {"dnat": bytes([10, 0, 2, 7]), "dnat_port": 5353}),
        (IPPROTO_TCP, 6, {"snat": WAN6, "snat_port": 2000}),
        (IPPROTO_UDP, 6, {}),
    ],
)
def test_software_and_hardware_forward_identically(proto: int, family: int, nat: dict) -> None:
    rig = Rig()
    conn = make_conn(proto, family=family, **nat)
    assert rig.admit(conn) is not None
    rig.drain()
    for direction in (ORIGINAL, REPLY):
        raw = bytes(packet_for(conn, direction).frame)
        hw = rig.hw.process(raw, port_of(direction))
        sw = rig.fast.forward(parse(raw), port_of(direction), rig.now)
        assert hw is not None and sw.verdict == FORWARD
        assert (sw.port, bytes(sw.frame)) == (hw[0], bytes(hw[1]))  # type: ignore[arg-type]


def test_vlan_tagged_flow_is_keyed_by_tag_and_popped() -> None:
    rig = Rig(offload=False)
    conn = make_conn()
    tagged = (dataclasses.replace(ROUTES[0], in_encap=(Encap(10, 0x8100),)), ROUTES[1])
    t = conn.tuples[ORIGINAL]
    datagram = frames.ip(t.src, t.dst, 6, frames.tcp(t.src, t.dst, t.sport, t.dport, flags=0x10))
    raw = frames.ip_frame(R1_MAC, H1_MAC, datagram, vlan=10)
    pkt = parse(raw)
    assert admit(rig.ft, conn, pkt, ORIGINAL, 1, lambda c, d, p, f: tagged, rig.now) is not None
    untagged = packet_for(conn, ORIGINAL)
    assert rig.fast.forward(untagged, 1, rig.now).reason == "miss"
    out = rig.fast.forward(parse(raw), 1, rig.now)
    assert out.verdict == FORWARD
    p = parse(out.frame)  # type: ignore[arg-type]
    assert p.encap == () and p.ttl == 63 and len(out.frame) == len(raw) - 4  # type: ignore[arg-type]


def test_rewrite_error_is_a_counted_drop() -> None:
    rig = Rig(offload=False)
    conn = make_conn(snat=ROUTER_WAN)
    flow = rig.admit(conn)
    assert flow is not None
    pkt = packet_for(conn, ORIGINAL)
    pkt.family = 4
    pkt.l4 = -1  # a header the rewrite cannot reach
    pkt.sport = conn.tuples[ORIGINAL].sport
    conn.tuples = (conn.tuples[0], conn.tuples[1]._replace(dport=1))  # forces a port rewrite
    res = rig.fast.forward(pkt, 1, rig.now)
    assert res.verdict == DROP and rig.fast.counters["drop_rewrite_error"] == 1


def test_counters_name_every_fallback() -> None:
    rig = Rig(offload=False)
    conn = make_conn()
    rig.admit(conn)
    rig.fast.forward(packet_for(conn, ORIGINAL), 1, rig.now)
    rig.fast.forward(packet_for(conn, ORIGINAL, ttl=1), 1, rig.now)
    assert rig.fast.counters == {"forwarded": 1, "classic_ttl": 1}


@pytest.mark.parametrize("family", [4, 6])
def test_gre_v0_is_forwarded_other_versions_fall_back(family: int) -> None:
    rig = Rig(offload=False)
    conn = make_conn(IPPROTO_GRE, family=family, sport=0, dport=0)
    assert rig.admit(conn) is not None
    t = conn.tuples[ORIGINAL]

    def gre(version: int) -> bytearray:
        datagram = frames.ip(
            t.src, t.dst, IPPROTO_GRE, bytes([0, version]) + b"\x08\x00" + b"x" * 8
        )
        return bytearray(frames.ip_frame(R1_MAC, H1_MAC, datagram))

    out = rig.fast.forward(parse(gre(0)), 1, rig.now)
    assert out.verdict == FORWARD and parse(out.frame).ttl == 63  # type: ignore[arg-type]
    assert rig.fast.forward(parse(gre(1)), 1, rig.now).reason == "gre_version"


@pytest.mark.parametrize(
    ("orig_encap", "reply_encap"),
    [
        ((Encap(10, 0x8100),), ()),
        ((Encap(100, 0x88A8), Encap(10, 0x8100)), (Encap(0x1234, 0x8864),)),
        ((Encap(7, 0x8100), Encap(0x42, 0x8864)), (Encap(20, 0x8100),)),
    ],
)
def test_encapsulated_flows_software_and_hardware_alike(orig_encap, reply_encap) -> None:
    """DIRECT xmit pops what a direction came with and pushes what the other one comes with,
    in the software fast path and in the memory driver alike (nf_flow_encap_pop/push)."""
    routes = (dataclasses.replace(ROUTES[0], in_encap=orig_encap),
              dataclasses.replace(ROUTES[1], in_encap=reply_encap))
    rig = Rig()
    conn = make_conn(IPPROTO_UDP, snat=ROUTER_WAN, snat_port=61000)
    pkt = packet_for(conn, ORIGINAL)
    assert admit(rig.ft, conn, pkt, ORIGINAL, 1, lambda c, d, p, f: routes, rig.now) is not None
    rig.drain()
    for direction, encaps in ((ORIGINAL, orig_encap), (REPLY, reply_encap)):
        plain = packet_for(conn, direction).frame
        inner = bytes(plain[14:])
        raw = bytes(plain[:12]) + encap.header(encaps, 0x0800, len(inner)) + inner
        hw = rig.hw.process(raw, port_of(direction))
        sw = rig.fast.forward(parse(raw), port_of(direction), rig.now)
        assert hw is not None and sw.verdict == FORWARD
        assert (sw.port, bytes(sw.frame)) == (hw[0], bytes(hw[1]))  # type: ignore[arg-type]
        out = parse(sw.frame)  # type: ignore[arg-type]
        assert out.encap == (reply_encap if direction == ORIGINAL else orig_encap)
