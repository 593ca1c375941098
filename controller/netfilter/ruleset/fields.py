"""What a match can read: nft's payload, meta, ct and extension-header keys (``src/proto.c``,
``src/meta.c``, ``src/ct.c``, ``src/exthdr.c``).

A :class:`Field` names its data type, the IP version and L4 protocol it implies (nft adds these
as implicit dependencies: ``tcp dport`` only matches TCP), and where the value lives: an attribute
of the rule context, or bits of the network/transport header (the kernel's ``nft_payload`` with
base ``NFT_PAYLOAD_NETWORK_HEADER``/``TRANSPORT_HEADER``, offset and length).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.netfilter.ruleset import datatypes as dt
from controller.netfilter.ruleset.datatypes import DataType


@dataclass(frozen=True, slots=True)
class Field:
    ns: str
    key: str
    dtype: DataType
    l3: int | None = None  # IP version the match implies
    l4: int | None = None  # L4 protocol the match implies
    source: tuple = ()  # ("ctx", attr) | ("nh"|"th", bit offset, bits) | ("exthdr", nh, off, bits)

    @property
    def nft(self) -> str:
        """The spelling ``nft list ruleset`` uses (``iifname``, not ``meta iifname``)."""
        if self.ns == "meta" and self.key in _PRINTED_BARE:
            return self.key
        return f"{self.ns} {self.key}"

    @property
    def value(self) -> tuple[str, str]:
        return self.ns, self.key

    @property
    def is_protocol(self) -> bool:
        return self.dtype is dt.INET_PROTO


_BARE_META = frozenset({"iifname", "oifname", "iif", "oif", "mark", "iiftype", "oiftype",
                        "skuid", "skgid", "nftrace", "rtclassid",
                        "iifgroup", "oifgroup", "cgroup", "ipsec", "time", "day", "hour"})

_PRINTED_BARE = frozenset({"iifname", "oifname", "iif", "oif", "iifgroup", "oifgroup"})
"""meta keys nft prints without ``meta`` (``meta_key_is_unqualified``)."""

FIELDS: dict[tuple[str, str], Field] = {}


def _add(ns: str, key: str, dtype: DataType, l3: int | None = None, l4: int | None = None,
         source: tuple = ()) -> None:
    FIELDS[(ns, key)] = Field(ns, key, dtype, l3, l4, source)


def _hdr(ns: str, base: str, l3: int | None, l4: int | None,
         fields: list[tuple[str, int, int, DataType | None]]) -> None:
    for key, off, bits, dtype in fields:
        _add(ns, key, dtype or dt.INTEGER.get(bits, dt.INTEGER[32]), l3, l4, (base, off, bits))


I = None  # noqa: E741 - "integer of the field's width"
_hdr("ip", "nh", 4, None, [
    ("version", 0, 4, I), ("hdrlength", 4, 4, I), ("dscp", 8, 6, dt.DSCP_TYPE),
    ("ecn", 14, 2, dt.ECN), ("length", 16, 16, I), ("id", 32, 16, I), ("frag-off", 48, 16, I),
    ("ttl", 64, 8, I), ("protocol", 72, 8, dt.INET_PROTO), ("checksum", 80, 16, I),
    ("saddr", 96, 32, dt.IPV4_ADDR), ("daddr", 128, 32, dt.IPV4_ADDR),
])
_hdr("ip6", "nh", 6, None, [
    ("version", 0, 4, I), ("dscp", 4, 6, dt.DSCP_TYPE), ("ecn", 10, 2, dt.ECN),
    ("flowlabel", 12, 20, I), ("length", 32, 16, I), ("nexthdr", 48, 8, dt.INET_PROTO),
    ("hoplimit", 56, 8, I), ("saddr", 64, 128, dt.IPV6_ADDR), ("daddr", 192, 128, dt.IPV6_ADDR),
])
_PORTS = [("sport", 0, 16, dt.INET_SERVICE), ("dport", 16, 16, dt.INET_SERVICE)]
_hdr("tcp", "th", None, 6, [*_PORTS,
    ("sequence", 32, 32, I), ("ackseq", 64, 32, I), ("doff", 96, 4, I), ("reserved", 100, 4, I),
    ("flags", 104, 8, dt.TCP_FLAG), ("window", 112, 16, I), ("checksum", 128, 16, I),
    ("urgptr", 144, 16, I),
])
_hdr("udp", "th", None, 17, [*_PORTS, ("length", 32, 16, I), ("checksum", 48, 16, I)])
_hdr("udplite", "th", None, 136, [*_PORTS, ("csumcov", 32, 16, I), ("checksum", 48, 16, I)])
_hdr("th", "th", None, None, _PORTS)
_hdr("sctp", "th", None, 132, [*_PORTS, ("vtag", 32, 32, I), ("checksum", 64, 32, I)])
_hdr("dccp", "th", None, 33, [*_PORTS, ("type", 67, 4, dt.DCCP_PKTTYPE)])
_hdr("icmp", "th", None, 1, [
    ("type", 0, 8, dt.ICMP_TYPE), ("code", 8, 8, dt.ICMP_CODE), ("checksum", 16, 16, I),
    ("id", 32, 16, I), ("sequence", 48, 16, I), ("gateway", 32, 32, I), ("mtu", 48, 16, I),
])
_hdr("icmpv6", "th", None, 58, [
    ("type", 0, 8, dt.ICMPV6_TYPE), ("code", 8, 8, dt.ICMPV6_CODE), ("checksum", 16, 16, I),
    ("parameter-problem", 32, 32, I), ("packet-too-big", 32, 32, I), ("id", 32, 16, I),
    ("sequence", 48, 16, I), ("max-delay", 32, 16, I), ("mtu", 32, 32, I),
])
_hdr("igmp", "th", 4, 2, [
    ("type", 0, 8, dt.IGMP_TYPE), ("mrt", 8, 8, I), ("checksum", 16, 16, I),
    ("group", 32, 32, I),
])
_hdr("ah", "th", None, 51, [
    ("nexthdr", 0, 8, dt.INET_PROTO), ("hdrlength", 8, 8, I), ("reserved", 16, 16, I),
    ("spi", 32, 32, I), ("sequence", 64, 32, I),
])
_hdr("esp", "th", None, 50, [("spi", 0, 32, I), ("sequence", 32, 32, I)])
_hdr("comp", "th", None, 108, [
    ("nexthdr", 0, 8, dt.INET_PROTO), ("flags", 8, 8, I), ("cpi", 16, 16, I),
])
_hdr("ether", "ll", None, None, [
    ("daddr", 0, 48, dt.ETHER_ADDR), ("saddr", 48, 48, dt.ETHER_ADDR),
    ("type", 96, 16, dt.ETHER_TYPE),
])
_hdr("vlan", "ll", None, None, [
    ("id", 116, 12, I), ("cfi", 115, 1, I), ("dei", 115, 1, I), ("pcp", 112, 3, I),
    ("type", 128, 16, dt.ETHER_TYPE),
])

# IPv6 extension headers (``exthdr``): found by walking the header chain (``ipv6_find_hdr``).
for _name, _nh, _fields in (
    ("hbh", 0, [("nexthdr", 0, 8, dt.INET_PROTO), ("hdrlength", 8, 8, I)]),
    ("rt", 43, [("nexthdr", 0, 8, dt.INET_PROTO), ("hdrlength", 8, 8, I), ("type", 16, 8, I),
                ("seg-left", 24, 8, I)]),
    ("rt0", 43, [("addr[1]", 64, 128, dt.IPV6_ADDR), ("addr[2]", 192, 128, dt.IPV6_ADDR)]),
    ("srh", 43, [("last-entry", 32, 8, I), ("flags", 40, 8, I), ("tag", 48, 16, I),
                 *((f"sid[{n}]", 64 + 128 * (n - 1), 128, dt.IPV6_ADDR) for n in range(1, 9))]),
    ("frag", 44, [("nexthdr", 0, 8, dt.INET_PROTO), ("reserved", 8, 8, I),
                  ("frag-off", 16, 13, I), ("reserved2", 29, 2, I), ("more-fragments", 31, 1, I),
                  ("id", 32, 32, I)]),
    ("dst", 60, [("nexthdr", 0, 8, dt.INET_PROTO), ("hdrlength", 8, 8, I)]),
    ("mh", 135, [("nexthdr", 0, 8, dt.INET_PROTO), ("hdrlength", 8, 8, I),
                 ("type", 16, 8, dt.MH_TYPE), ("reserved", 24, 8, I), ("checksum", 32, 16, I)]),
):
    for _key, _off, _bits, _dtype in _fields:
        _add(_name, _key, _dtype or dt.INTEGER.get(_bits, dt.INTEGER[32]), 6, None,
             ("exthdr", _nh, _off, _bits))

# meta keys (nft_meta_get_eval); the ones a router mirror knows come from the context.
for _key, _dtype, _src in (
    ("l4proto", dt.INET_PROTO, ("ctx", "proto")),
    ("protocol", dt.ETHER_TYPE, ("ctx", "ethertype")),
    ("nfproto", dt.NFPROTO, ("ctx", "nfproto")),
    ("length", dt.INTEGER[32], ("ctx", "length")),
    ("mark", dt.MARK, ("ctx", "mark")),
    ("iifname", dt.IFNAME, ("ctx", "iifname")),
    ("oifname", dt.IFNAME, ("ctx", "oifname")),
    ("iif", dt.IFNAME, ("ctx", "iifname")),
    ("oif", dt.IFNAME, ("ctx", "oifname")),
    ("pkttype", dt.PKTTYPE, ("ctx", "pkttype")),
    ("iiftype", dt.IFTYPE, ("ctx", "iftype")),
    ("oiftype", dt.IFTYPE, ("ctx", "iftype")),
    ("priority", dt.INTEGER[32], ()),
    ("skuid", dt.UID, ()),
    ("skgid", dt.GID, ()),
    ("nftrace", dt.INTEGER[1], ()),
    ("rtclassid", dt.REALM, ()),
    ("iifgroup", dt.DEVGROUP, ()),
    ("oifgroup", dt.DEVGROUP, ()),
    ("cgroup", dt.INTEGER[32], ()),
    ("cpu", dt.INTEGER[32], ()),
    ("random", dt.INTEGER[32], ()),
    ("secpath", dt.BOOLEAN, ("ctx", "zero")),
    ("ipsec", dt.BOOLEAN, ("ctx", "zero")),
    ("sdif", dt.IFNAME, ()),
    ("sdifname", dt.IFNAME, ()),
    ("time", dt.BY_NAME["time"], ("ctx", "time")),
    ("day", dt.DAY, ("ctx", "day")),
    ("hour", dt.BY_NAME["hour"], ("ctx", "hour")),
):
    _add("meta", _key, _dtype, None, None, _src)

# ct keys (nft_ct_get_eval) on the packet's connection.
for _key, _dtype, _src in (
    ("state", dt.CT_STATE, ("ctx", "ct_state_bits")),
    ("status", dt.CT_STATUS, ("ctx", "ct_status")),
    ("mark", dt.MARK, ("ctx", "ct_mark")),
    ("direction", dt.CT_DIR, ("ctx", "ct_direction")),
    ("zone", dt.INTEGER[16], ("ctx", "ct_zone")),
    ("helper", dt.STRING, ("ctx", "ct_helper")),
    ("timeout", dt.STRING, ()),  # a ct timeout object's name (set only)
    ("expectation", dt.STRING, ()),  # a ct expectation object's name (set only)
    ("expiration", dt.INTEGER[32], ()),
    ("label", dt.BY_NAME["ct_label"], ()),
    ("l3proto", dt.NFPROTO, ("ctx", "nfproto")),
    ("protocol", dt.INET_PROTO, ("ctx", "proto")),
    ("count", dt.INTEGER[32], ()),
    ("id", dt.INTEGER[32], ()),
    ("avgpkt", dt.INTEGER[64], ()),
    ("bytes", dt.INTEGER[64], ()),
    ("packets", dt.INTEGER[64], ()),
    ("secmark", dt.INTEGER[32], ()),
):
    _add("ct", _key, _dtype, None, None, _src)
for _dir in ("original", "reply"):
    for _key, _dtype in (
        ("saddr", None), ("daddr", None), ("proto-src", dt.INET_SERVICE),
        ("proto-dst", dt.INET_SERVICE), ("l3proto", dt.NFPROTO), ("protocol", dt.INET_PROTO),
        ("bytes", dt.INTEGER[64]), ("packets", dt.INTEGER[64]), ("avgpkt", dt.INTEGER[64]),
        ("zone", dt.INTEGER[16]),
    ):
        _add("ct", f"{_dir} {_key}", _dtype or dt.IPV4_ADDR, None, None, ())
    for _v, _ns, _dtype in ((4, "ip", dt.IPV4_ADDR), (6, "ip6", dt.IPV6_ADDR)):
        for _key in ("saddr", "daddr"):
            _add("ct", f"{_dir} {_ns} {_key}", _dtype, _v, None, ())

# rt keys (nft_rt_get_eval): routing information of the packet.
_add("rt", "nexthop", dt.IPV4_ADDR, None, None, ())
_add("rt", "ip nexthop", dt.IPV4_ADDR, 4, None, ())
_add("rt", "ip6 nexthop", dt.IPV6_ADDR, 6, None, ())
_add("rt", "mtu", dt.INTEGER[16], None, None, ())
_add("rt", "classid", dt.REALM, None, None, ())
_add("rt", "ipsec", dt.BOOLEAN, None, None, ("ctx", "zero"))

NAMESPACES = frozenset(ns for ns, _ in FIELDS)
"""Words that start a selector (``ip``, ``tcp``, ``meta``, ``ct``, ...)."""
BARE_META = _BARE_META
"""meta keys nft reads without ``meta`` (``meta_key_unqualified``: ``mark``, ``iifname``, ...)."""
