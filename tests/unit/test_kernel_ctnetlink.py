"""ctnetlink and rtnetlink codecs: kernel messages in, requests out (pyroute2's codecs)."""

from __future__ import annotations

import ipaddress
import struct

from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg
from pyroute2.netlink.rtnl import RTM_DELNEIGH, RTM_NEWNEIGH
from pyroute2.netlink.rtnl.ndmsg import NUD_FAILED, NUD_REACHABLE, ndmsg

from controller.kernel import ctnetlink, rtnetlink
from controller.kernel.netlink import split
from controller.netfilter.ct import IPPROTO_TCP, CtTuple, Status, TcpState


def _ip(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def _event(msg_type: int, flags: int, **attrs: object) -> bytes:
    msg = nfct_msg()
    msg["nfgen_family"] = 2
    msg["attrs"] = [[k, v] for k, v in attrs.items()]
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg.encode()
    return bytes(msg.data)


def _tuple(src: str, dst: str, sport: int, dport: int) -> dict:
    return {"attrs": [
        ["CTA_TUPLE_IP", {"attrs": [["CTA_IP_V4_SRC", src], ["CTA_IP_V4_DST", dst]]}],
        ["CTA_TUPLE_PROTO", {"attrs": [["CTA_PROTO_NUM", 6], ["CTA_PROTO_SRC_PORT", sport],
                                       ["CTA_PROTO_DST_PORT", dport]]}],
    ]}


def test_event_decodes_tuples_state_nat_and_counters() -> None:
    data = _event(
        ctnetlink.CT_NEW, ctnetlink.NLM_F_CREATE,
        CTA_TUPLE_ORIG=_tuple("10.0.1.1", "10.0.2.1", 40000, 5001),
        CTA_TUPLE_REPLY=_tuple("10.0.2.1", "10.0.2.254", 5001, 61000),
        CTA_STATUS=int(Status.CONFIRMED | Status.SRC_NAT | Status.ASSURED),
        CTA_TIMEOUT=120, CTA_ID=99, CTA_MARK=3,
        CTA_PROTOINFO={"attrs": [["CTA_PROTOINFO_TCP", {"attrs": [
            ["CTA_PROTOINFO_TCP_STATE", 3],
            ["CTA_PROTOINFO_TCP_FLAGS_REPLY", {"value": (0x04, 0)}]]}]]},
        CTA_COUNTERS_ORIG={"attrs": [["CTA_COUNTERS_PACKETS", 5], ["CTA_COUNTERS_BYTES", 300]]},
        CTA_COUNTERS_REPLY={"attrs": [["CTA_COUNTERS_PACKETS", 4], ["CTA_COUNTERS_BYTES", 200]]},
    )
    entry = ctnetlink.decode(data, ctnetlink.CT_NEW, ctnetlink.NLM_F_CREATE)
    assert entry.kind == ctnetlink.NEW and entry.id == 99 and entry.mark == 3
    assert entry.tuples[0] == CtTuple(4, IPPROTO_TCP, _ip("10.0.1.1"), _ip("10.0.2.1"), 40000,
                                      5001)
    assert entry.tuples[1].dst == _ip("10.0.2.254") and entry.tuples[1].dport == 61000
    assert entry.status & Status.SRC_NAT and entry.timeout == 120
    assert entry.tcp_state == TcpState.ESTABLISHED and entry.tcp_close_init
    assert entry.packets == (5, 4) and entry.bytes == (300, 200)
    update = ctnetlink.decode(data, ctnetlink.CT_NEW, 0)
    destroy = ctnetlink.decode(data, ctnetlink.CT_DELETE, 0)
    assert (update.kind, destroy.kind) == (ctnetlink.UPDATE, ctnetlink.DESTROY)


def test_a_message_without_tuples_is_refused_not_a_crash() -> None:
    data = _event(ctnetlink.CT_NEW, 0, CTA_ID=1)
    try:
        ctnetlink.decode(data, ctnetlink.CT_NEW, 0)
    except ctnetlink.BadMessage:
        pass
    else:
        raise AssertionError("accepted an entry without tuples")


def test_ipv6_icmp_helper_zone_and_32_bit_counters_decode_as_the_kernel_lays_them_out() -> None:
    def v6(src: str, dst: str) -> dict:
        return {"attrs": [
            ["CTA_TUPLE_IP", {"attrs": [["CTA_IP_V6_SRC", src], ["CTA_IP_V6_DST", dst]]}],
            ["CTA_TUPLE_PROTO", {"attrs": [["CTA_PROTO_NUM", 58], ["CTA_PROTO_ICMPV6_ID", 77],
                                           ["CTA_PROTO_ICMPV6_TYPE", 128]]}]]}
    msg = nfct_msg()
    msg["nfgen_family"] = 10
    msg["attrs"] = [["CTA_TUPLE_ORIG", v6("2001:db8:1::1", "2001:db8:2::1")],
                    ["CTA_TUPLE_REPLY", v6("2001:db8:2::1", "2001:db8:1::1")],
                    ["CTA_ID", 5], ["CTA_ZONE", 7], ["CTA_USE", 1],
                    ["CTA_COUNTERS_ORIG", {"attrs": [["CTA_COUNTERS32_PACKETS", 2],
                                                     ["CTA_COUNTERS32_BYTES", 208]]}],
                    ["CTA_COUNTERS_REPLY", {"attrs": [["CTA_COUNTERS32_PACKETS", 1],
                                                      ["CTA_COUNTERS32_BYTES", 104]]}]]
    msg["header"]["type"] = ctnetlink.CT_NEW
    msg.encode()
    data = bytes(msg.data)
    # CTA_HELP is nested, CTA_HELP_NAME inside (ctnetlink_dump_helpinfo): appended by hand,
    # pyroute2 takes it for a plain string
    name = b"ftp\0"
    helper = struct.pack("=HH", 8 + len(name), 5 | 0x8000) + struct.pack("=HH", 4 + len(name),
                                                                           1) + name
    data = struct.pack("=I", len(data) + len(helper)) + data[4:] + helper
    entry = ctnetlink.decode(data, ctnetlink.CT_NEW, 0)
    assert entry.tuples[0] == CtTuple(6, 58, _ip("2001:db8:1::1"), _ip("2001:db8:2::1"), 77, 0)
    assert (entry.id, entry.zone, entry.helper) == (5, 7, "ftp")
    assert entry.packets == (2, 1) and entry.bytes == (208, 104)
    assert entry.tcp_state is None and entry.timeout is None


def test_a_truncated_or_overrunning_message_is_refused_not_a_crash() -> None:
    data = _event(ctnetlink.CT_NEW, 0, CTA_ID=1,
                  CTA_TUPLE_ORIG=_tuple("10.0.1.1", "10.0.2.1", 1, 2),
                  CTA_TUPLE_REPLY=_tuple("10.0.2.1", "10.0.1.1", 2, 1))
    for bad in (data[:12], data[:-3], data[:20] + b"\xff\x00" + data[22:]):
        bad = struct.pack("=I", len(data)) + bad[4:]
        try:
            ctnetlink.decode(bad, ctnetlink.CT_NEW, 0)
        except ctnetlink.BadMessage:
            continue
        raise AssertionError(f"accepted {bad.hex()}")


def test_update_request_sets_timeout_and_tcp_flags_with_their_masks() -> None:
    orig = CtTuple(4, IPPROTO_TCP, _ip("10.0.1.1"), _ip("10.0.2.1"), 40000, 5001)
    data = ctnetlink.update_request(7, orig, timeout=86400, liberal=True, clear_maxack=True)
    (msg_type, flags, seq, body), = split(data)
    assert (msg_type, seq) == (ctnetlink.CT_NEW, 7) and flags & ctnetlink.NLM_F_ACK
    msg = nfct_msg(body)
    msg.decode()
    assert msg.get_attr("CTA_TIMEOUT") == 86400
    tcp = msg.get_attr("CTA_PROTOINFO").get_attr("CTA_PROTOINFO_TCP")
    # BE_LIBERAL set, MAXACK_SET cleared: flags 0x08 under mask 0x28
    assert tcp.get_attr("CTA_PROTOINFO_TCP_FLAGS_ORIGINAL") == (0x08, 0x28)
    assert tcp.get_attr("CTA_PROTOINFO_TCP_FLAGS_REPLY") == (0x08, 0x28)


def test_neighbour_events_give_the_mac_only_while_resolved() -> None:
    def neigh(state: int) -> bytes:
        msg = ndmsg()
        msg["family"], msg["ifindex"], msg["state"] = 2, 3, state
        msg["attrs"] = [["NDA_DST", "10.0.2.1"], ["NDA_LLADDR", "00:00:00:00:02:01"]]
        msg.encode()
        return bytes(msg.data)

    mac = bytes.fromhex("000000000201")
    assert rtnetlink.decode_neigh(neigh(NUD_REACHABLE), RTM_NEWNEIGH).mac == mac
    assert rtnetlink.decode_neigh(neigh(NUD_FAILED), RTM_NEWNEIGH).mac is None
    assert rtnetlink.decode_neigh(neigh(NUD_REACHABLE), RTM_DELNEIGH).mac is None


def test_split_drops_a_truncated_tail() -> None:
    one = ctnetlink.dump_request(1)
    assert len(split(one + one[:10])) == 1


def test_static_neighbour_from_the_toml_is_a_permanent_entry() -> None:
    (_, _, _, body), = split(rtnetlink.neigh_add_request(3, 5, _ip("10.0.1.1"),
                                                          bytes.fromhex("000000000101")))
    msg = ndmsg(body)
    msg.decode()
    assert (msg["ifindex"], msg["state"]) == (5, 0x80)  # NUD_PERMANENT
    assert msg.get_attr("NDA_DST") == "10.0.1.1"
    assert msg.get_attr("NDA_LLADDR") == "00:00:00:00:01:01"


def _pyroute2(msg, msg_type: int, flags: int, seq: int) -> bytes:  # type: ignore[no-untyped-def]
    msg["header"]["type"], msg["header"]["flags"] = msg_type, flags
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


def test_route_and_neighbour_requests_are_the_bytes_a_generic_codec_builds() -> None:
    from pyroute2.netlink.rtnl import RTM_GETNEIGH, RTM_GETROUTE
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    for dst in ("10.0.2.1", "2001:db8:2::1"):
        route = rtmsg()
        route["family"] = 2 if "." in dst else 10
        route["dst_len"] = 32 if "." in dst else 128
        route["attrs"] = [["RTA_DST", dst]]
        assert rtnetlink.route_get_request(9, _ip(dst)) == _pyroute2(route, RTM_GETROUTE, 1, 9)
        neigh = ndmsg()
        neigh["family"], neigh["ifindex"] = route["family"], 4
        neigh["attrs"] = [["NDA_DST", dst]]
        assert rtnetlink.neigh_get_request(3, 4, _ip(dst)) == _pyroute2(neigh, RTM_GETNEIGH, 1, 3)


def test_a_route_answer_gives_device_gateway_and_mtu() -> None:
    from pyroute2.netlink.rtnl import RTM_NEWROUTE
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    route = rtmsg()
    route["family"] = 2
    route["attrs"] = [["RTA_DST", "10.0.3.1"], ["RTA_OIF", 7], ["RTA_GATEWAY", "10.0.2.1"],
                      ["RTA_METRICS", {"attrs": [["RTAX_MTU", 1400]]}]]
    decoded = rtnetlink.decode_route(_pyroute2(route, RTM_NEWROUTE, 0, 1))
    assert decoded == rtnetlink.Route(7, _ip("10.0.2.1"), 1400)
    route["attrs"] = [["RTA_DST", "10.0.3.1"]]
    assert rtnetlink.decode_route(_pyroute2(route, RTM_NEWROUTE, 0, 1)) is None
