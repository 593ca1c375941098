"""A Python model of p4src/flowtable.p4, state for state and statement for statement.

p4c cannot run here, so a changed flowtable.p4 is compiled between sessions and its STF suite
skips until then. This model is written from the P4 source (same header layouts, parser
states, ingress order, actions and deparser order) so that the source's logic and the STF
cases written for it can be checked now: test_flowtable_p4_model runs the whole flowtable.stf
through it. It is a test aid, not a second data plane: the softswitch runs the compiled JSON.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CPU_PORT = 255
MAX_DATA_PORT = 510
ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
ETH_PPPOE_DISC, ETH_PPPOE_SESS = 0x8863, 0x8864
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057
IPV6_EXT = {0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254}
MISS, FIN_RST, TTL, FRAG, EXT, MTU, NON_IP, NOT_TCP_UDP = 1, 2, 3, 4, 5, 6, 7, 8
PPPOE_DISCOVERY, PPP_NOT_IP, ENCAP_UNSUPPORTED = 9, 10, 11

V4_KEYS = ("ingress_port", "src_addr", "dst_addr", "protocol", "sport", "dport",
           "encap0_id", "encap0_proto", "encap1_id", "encap1_proto")
PARAMS = ("port", "smac", "dmac", "src_addr", "dst_addr", "sport", "dport", "mtu",
          "push0_id", "push0_proto", "push1_id", "push1_proto")


@dataclass
class Headers:
    """Valid headers as mutable field lists; None = invalid."""

    packet_in: tuple[int, int] | None = None
    packet_out: int | None = None
    eth: list | None = None  # [dst, src, type]
    vlan0: list | None = None  # [pcp, dei, vid, type]
    vlan1: list | None = None
    pppoe: list | None = None  # [ver, type, code, sid, length, protocol]
    ipv4: list | None = None  # [ver, ihl, tos, len, id, flags, frag, ttl, proto, csum, src, dst]
    ipv6: list | None = None  # [ver, tc, fl, plen, nh, hl, src, dst]
    tcp: list | None = None  # [sport, dport, seq, ack, off, res, flags, win, csum, urg]
    udp: list | None = None  # [sport, dport, len, csum]
    meta: dict = field(default_factory=dict)


def _take(frame: bytes, off: int, n: int) -> bytes | None:
    return frame[off:off + n] if off + n <= len(frame) else None


def parse(frame: bytes, port: int) -> tuple[Headers, int]:
    """FtParser; returns the headers and the payload offset (a short extract stops there)."""
    h = Headers()
    m = h.meta
    m.update(l4_sport=0, l4_dport=0, ipv6_ext_hdr=0)
    off = 0
    if port == CPU_PORT:
        b = _take(frame, 0, 2)
        if b is None:
            return h, 0
        h.packet_out = struct.unpack("!H", b)[0]
        return h, 2
    b = _take(frame, 0, 14)
    if b is None:
        return h, 0
    h.eth = [b[0:6], b[6:12], struct.unpack("!H", b[12:14])[0]]
    off = 14
    m.update(encap0_id=0, encap0_proto=0, encap1_id=0, encap1_proto=0, encap_punt=0)
    state = {ETH_IPV4: "ipv4", ETH_IPV6: "ipv6", ETH_VLAN: "vlan0", ETH_QINQ: "vlan0",
             ETH_PPPOE_SESS: "pppoe0", ETH_PPPOE_DISC: "disc"}.get(h.eth[2], "accept")
    while state != "accept":
        if state in ("vlan0", "vlan1"):
            b = _take(frame, off, 4)
            if b is None:
                return h, off
            tci, etype = struct.unpack("!HH", b)
            tag = [tci >> 13, (tci >> 12) & 1, tci & 0xFFF, etype]
            off += 4
            if state == "vlan0":
                h.vlan0 = tag
                m["encap0_id"], m["encap0_proto"] = tag[2], h.eth[2]
                state = {ETH_IPV4: "ipv4", ETH_IPV6: "ipv6", ETH_VLAN: "vlan1",
                         ETH_QINQ: "unsupported", ETH_PPPOE_SESS: "pppoe1",
                         ETH_PPPOE_DISC: "disc"}.get(etype, "accept")
            else:
                h.vlan1 = tag
                m["encap1_id"], m["encap1_proto"] = tag[2], h.vlan0[3]
                state = {ETH_IPV4: "ipv4", ETH_IPV6: "ipv6", ETH_VLAN: "unsupported",
                         ETH_QINQ: "unsupported", ETH_PPPOE_SESS: "unsupported",
                         ETH_PPPOE_DISC: "disc"}.get(etype, "accept")
        elif state in ("pppoe0", "pppoe1"):
            b = _take(frame, off, 8)
            if b is None:
                return h, off
            vt, code, sid, length, proto = struct.unpack("!BBHHH", b)
            h.pppoe = [vt >> 4, vt & 15, code, sid, length, proto]
            off += 8
            slot = state[-1]
            m[f"encap{slot}_id"], m[f"encap{slot}_proto"] = sid, ETH_PPPOE_SESS
            state = {PPP_IPV4: "ipv4", PPP_IPV6: "ipv6"}.get(proto, "ppp_not_ip")
        elif state == "ppp_not_ip":
            m["encap_punt"] = PPP_NOT_IP
            state = "accept"
        elif state == "disc":
            m["encap_punt"] = PPPOE_DISCOVERY
            state = "accept"
        elif state == "unsupported":
            m["encap_punt"] = ENCAP_UNSUPPORTED
            state = "accept"
        elif state == "ipv4":
            b = _take(frame, off, 20)
            if b is None:
                return h, off
            vi, tos, ln, ident, ff, ttl, proto, csum, src, dst = struct.unpack("!BBHHHBBHII", b)
            h.ipv4 = [vi >> 4, vi & 15, tos, ln, ident, ff >> 13, ff & 0x1FFF, ttl, proto, csum,
                      src, dst]
            off += 20
            state = "accept"
            if h.ipv4[1] == 5 and (h.ipv4[5] & 1) == 0 and h.ipv4[6] == 0:
                state = {6: "tcp", 17: "udp"}.get(proto, "accept")
        elif state == "ipv6":
            b = _take(frame, off, 40)
            if b is None:
                return h, off
            w, plen, nh, hl = struct.unpack("!IHBB", b[:8])
            h.ipv6 = [w >> 28, (w >> 20) & 0xFF, w & 0xFFFFF, plen, nh, hl,
                      int.from_bytes(b[8:24]), int.from_bytes(b[24:40])]
            off += 40
            state = {6: "tcp", 17: "udp"}.get(nh, "accept")
            if nh in IPV6_EXT:
                m["ipv6_ext_hdr"] = 1
        elif state == "tcp":
            b = _take(frame, off, 20)
            if b is None:
                return h, off
            sp, dp, seq, ack, orf, flags, win, csum, urg = struct.unpack("!HHIIBBHHH", b)
            h.tcp = [sp, dp, seq, ack, orf >> 4, orf & 15, flags, win, csum, urg]
            off += 20
            m["l4_sport"], m["l4_dport"] = sp, dp
            state = "accept"
        elif state == "udp":
            b = _take(frame, off, 8)
            if b is None:
                return h, off
            h.udp = list(struct.unpack("!HHHH", b))
            off += 8
            m["l4_sport"], m["l4_dport"] = h.udp[0], h.udp[1]
            state = "accept"
    return h, off


def _r16(old: int, new: int) -> int:
    return (~old & 0xFFFF) + new


def _rN(old: int, new: int, words: int) -> int:
    return sum(_r16((old >> (16 * i)) & 0xFFFF, (new >> (16 * i)) & 0xFFFF) for i in range(words))


def _csum_replace(check: int, delta: int) -> int:
    s = ((~check) & 0xFFFF) + delta
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ipv4_csum(f: list) -> int:
    hdr = struct.pack("!BBHHHBBHII", (f[0] << 4) | f[1], f[2], f[3], f[4], (f[5] << 13) | f[6],
                      f[7], f[8], 0, f[10], f[11])
    s = sum(struct.unpack("!10H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


Tables = dict[str, dict[tuple, dict[str, int]]]


def ingress(h: Headers, port: int, tables: Tables) -> int | None:
    """FtIngress for a frame from a data port (process() handles packet_out): the egress port,
    CPU_PORT with packet_in set for a punt (no meter configured: always GREEN), or None."""
    m = h.meta
    m["punt_reason"] = 0
    m["rewritten"] = 0
    egress = None
    if m["encap_punt"] != 0:
        m["punt_reason"] = m["encap_punt"]
    elif h.ipv4 is not None and h.ipv4[0] == 4:
        m["ip_len"] = h.ipv4[3]
        if h.ipv4[1] != 5 or (h.ipv4[5] & 1) or h.ipv4[6] != 0:
            m["punt_reason"] = FRAG
        elif h.tcp is None and h.udp is None:
            m["punt_reason"] = NOT_TCP_UDP
        elif h.ipv4[7] <= 1:
            m["punt_reason"] = TTL
        else:
            egress = _lookup_and_checks(h, port, tables["flow_v4"], h.ipv4[10], h.ipv4[11],
                                        h.ipv4[8])
    elif h.ipv6 is not None and h.ipv6[0] == 6:
        m["ip_len"] = (h.ipv6[3] + 40) & 0xFFFF
        if m["ipv6_ext_hdr"] == 1:
            m["punt_reason"] = EXT
        elif h.tcp is None and h.udp is None:
            m["punt_reason"] = NOT_TCP_UDP
        elif h.ipv6[5] <= 1:
            m["punt_reason"] = TTL
        else:
            egress = _lookup_and_checks(h, port, tables["flow_v6"], h.ipv6[6], h.ipv6[7],
                                        h.ipv6[4])
    else:
        m["punt_reason"] = NON_IP
    if m["rewritten"] == 1:
        h.vlan0 = h.vlan1 = h.pppoe = None  # pop_encap
        if m["out_encap1_proto"] == ETH_PPPOE_SESS:
            h.pppoe = [1, 1, 0, m["out_encap1_id"], (m["ip_len"] + 2) & 0xFFFF, m["ppp_proto"]]
            h.eth[2] = ETH_PPPOE_SESS
        elif m["out_encap1_proto"] in (ETH_VLAN, ETH_QINQ):
            h.vlan1 = [0, 0, m["out_encap1_id"] & 0xFFF, h.eth[2]]
            h.eth[2] = m["out_encap1_proto"]
        if m["out_encap0_proto"] == ETH_PPPOE_SESS:
            h.pppoe = [1, 1, 0, m["out_encap0_id"], (m["ip_len"] + 2) & 0xFFFF, m["ppp_proto"]]
            h.eth[2] = ETH_PPPOE_SESS
        elif m["out_encap0_proto"] in (ETH_VLAN, ETH_QINQ):
            h.vlan0 = [0, 0, m["out_encap0_id"] & 0xFFF, h.eth[2]]
            h.eth[2] = m["out_encap0_proto"]
        if h.tcp is not None:
            h.tcp[0], h.tcp[1] = m["out_sport"], m["out_dport"]
            h.tcp[8] = _csum_replace(h.tcp[8], m["l4_delta"])
        else:
            h.udp[0], h.udp[1] = m["out_sport"], m["out_dport"]
            if h.udp[3] != 0:
                h.udp[3] = _csum_replace(h.udp[3], m["l4_delta"])
                if h.udp[3] == 0:
                    h.udp[3] = 0xFFFF
        if h.ipv4 is not None:  # FtComputeChecksum
            h.ipv4[9] = _ipv4_csum(h.ipv4)
        return egress
    h.packet_in = (port, m["punt_reason"])
    return CPU_PORT


def _lookup_and_checks(h: Headers, port: int, table: dict, src: int, dst: int,
                       proto: int) -> int | None:
    m = h.meta
    key = (port, src, dst, proto, m["l4_sport"], m["l4_dport"], m["encap0_id"],
           m["encap0_proto"], m["encap1_id"], m["encap1_proto"])
    entry = table.get(key)
    if entry is None:
        m["punt_reason"] = MISS
        return None
    if m["ip_len"] > entry["mtu"]:
        m["punt_reason"] = MTU
        return None
    if h.tcp is not None and h.tcp[6] & 0x05:
        m["punt_reason"] = FIN_RST
        return None
    words = 2 if h.ipv4 is not None else 8
    m["l4_delta"] = (_rN(src, entry["src_addr"], words) + _rN(dst, entry["dst_addr"], words)
                     + _r16(m["l4_sport"], entry["sport"]) + _r16(m["l4_dport"], entry["dport"]))
    h.eth[0], h.eth[1] = entry["dmac"].to_bytes(6), entry["smac"].to_bytes(6)
    if h.ipv4 is not None:
        h.eth[2], m["ppp_proto"] = ETH_IPV4, PPP_IPV4
        h.ipv4[10], h.ipv4[11] = entry["src_addr"], entry["dst_addr"]
        h.ipv4[7] -= 1
    else:
        h.eth[2], m["ppp_proto"] = ETH_IPV6, PPP_IPV6
        h.ipv6[6], h.ipv6[7] = entry["src_addr"], entry["dst_addr"]
        h.ipv6[5] -= 1
    m["out_sport"], m["out_dport"] = entry["sport"], entry["dport"]
    for i in (0, 1):
        m[f"out_encap{i}_id"] = entry[f"push{i}_id"]
        m[f"out_encap{i}_proto"] = entry[f"push{i}_proto"]
    m["rewritten"] = 1
    return entry["port"]


def deparse(h: Headers, payload: bytes) -> bytes:
    """FtDeparser: packet_in, ethernet, vlan0, vlan1, pppoe, ipv4, ipv6, tcp, udp, payload."""
    out = b""
    if h.packet_in is not None:
        out += struct.pack("!HB", *h.packet_in)
    if h.eth is not None:
        out += h.eth[0] + h.eth[1] + struct.pack("!H", h.eth[2])
    for tag in (h.vlan0, h.vlan1):
        if tag is not None:
            out += struct.pack("!HH", (tag[0] << 13) | (tag[1] << 12) | tag[2], tag[3])
    if h.pppoe is not None:
        p = h.pppoe
        out += struct.pack("!BBHHH", (p[0] << 4) | p[1], p[2], p[3], p[4], p[5])
    if h.ipv4 is not None:
        f = h.ipv4
        out += struct.pack("!BBHHHBBHII", (f[0] << 4) | f[1], f[2], f[3], f[4],
                           (f[5] << 13) | f[6], f[7], f[8], f[9], f[10], f[11])
    if h.ipv6 is not None:
        f = h.ipv6
        out += struct.pack("!IHBB", (f[0] << 28) | (f[1] << 20) | f[2], f[3], f[4], f[5])
        out += f[6].to_bytes(16) + f[7].to_bytes(16)
    if h.tcp is not None:
        f = h.tcp
        out += struct.pack("!HHIIBBHHH", f[0], f[1], f[2], f[3], (f[4] << 4) | f[5], f[6], f[7],
                           f[8], f[9])
    if h.udp is not None:
        out += struct.pack("!HHHH", *h.udp)
    return out + payload


def process(frame: bytes, port: int, tables: Tables) -> tuple[int, bytes] | None:
    """One frame through the modelled pipeline: (egress port, bytes) or None (dropped)."""
    h, off = parse(frame, port)
    if h.packet_out is not None:
        out_port = h.packet_out
        if out_port > MAX_DATA_PORT or out_port == CPU_PORT:
            return None
        return out_port, frame[off:]
    egress = ingress(h, port, tables)
    if egress is None:
        return None
    return egress, deparse(h, frame[off:])
