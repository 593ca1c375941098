"""nft's data types: how a constant of each type is read and printed (``src/datatype.c``).

Every constant becomes an integer interval ``(lo, hi)`` on the type's wire encoding (an exact
value is ``(v, v)``; a prefix or range is its interval), or a string for interface names and
helper names. Matching then is one comparison whatever the type, as the kernel compares bytes
(``nft_cmp_eval``/``nft_range_eval``/set lookups). Symbol tables are nft's own
(``ct_state_tbl``, ``tcp_flag_tbl``, ``icmp_type_tbl``, ...).
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass, field

from controller.netfilter.ruleset.errors import Loc, RulesetError

Interval = tuple[int, int]


@dataclass(frozen=True, slots=True)
class DataType:
    """One nft data type: ``bits`` wide; ``symbols`` name values; ``bitmask`` types combine
    symbols with ``,``/``|`` and match implicitly as ``value & x != 0``."""

    name: str
    bits: int
    symbols: dict[str, int] = field(default_factory=dict, compare=False, hash=False)
    bitmask: bool = False
    kind: str = "int"  # int | ipv4 | ipv6 | string | ether

    @property
    def is_string(self) -> bool:
        return self.kind == "string"

    @property
    def max(self) -> int:
        return (1 << self.bits) - 1

    def names(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for name, value in self.symbols.items():
            out.setdefault(value, name)
        return out


def parse_number(text: str) -> int | None:
    """nft's scanner numbers: decimal (leading zeros allowed: ``022`` is 22) or ``0x`` hex."""
    if re.fullmatch(r"[0-9]+", text):
        return int(text, 10)
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        return int(text, 16)
    return None


def _parse_time(dtype: DataType, text: str, loc: Loc) -> int:
    """``meta time`` dates (ns since the epoch), ``meta hour`` clock times (seconds since
    midnight), ``meta day`` names; UTC, as the kernel compares them (``nft_meta_get_eval``)."""
    if dtype.kind == "hour":
        m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", text)
        if m is None or int(m[1]) > 23 or int(m[2]) > 59 or int(m[3] or 0) > 59:
            raise RulesetError(f"invalid hour '{text}' (HH:MM[:SS])", loc)
        return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3] or 0)
    number = parse_number(text)
    if number is not None:
        return number * 1_000_000_000
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            when = datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
        return int(when.timestamp()) * 1_000_000_000
    raise RulesetError(f"invalid date '{text}' (YYYY-MM-DD [HH:MM[:SS]])", loc)


_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str, loc: Loc) -> int:
    """``1d2h3m4s``/``600s``/``10m`` (or plain seconds) as seconds, as nft's time type reads."""
    if text.isdigit():
        return int(text)
    m = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?", text)
    if m is None or not text:
        raise RulesetError(f"invalid duration '{text}'", loc)
    days, hours, minutes, seconds, _ = (int(g or 0) for g in m.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: int) -> str:
    """nft's spelling of a duration: ``1d2h``, ``10m``, ``0s``."""
    out = ""
    for unit, size in _DURATION_UNITS:
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def parse_scalar(dtype: DataType, text: str, loc: Loc) -> int:
    """One value of ``dtype`` (no range, no prefix)."""
    if dtype.kind in ("time", "hour"):
        return _parse_time(dtype, text, loc)
    if dtype.name == "day":
        lowered = text.lower()
        for name, value in dtype.symbols.items():
            if lowered in (name, name[:3]):
                return value
    if dtype.kind in ("ipv4", "ipv6"):
        number = parse_number(text)
        if number is not None and number <= dtype.max:
            return number  # getaddrinfo("1") is 0.0.0.1, inet_aton("0xff") 0.0.0.255
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise RulesetError(f"invalid {'IPv4' if dtype.kind == 'ipv4' else 'IPv6'} address "
                               f"'{text}'", loc) from None
        if addr.version != (4 if dtype.kind == "ipv4" else 6):
            raise RulesetError(f"'{text}' is not an {'IPv4' if dtype.kind == 'ipv4' else 'IPv6'} "
                               "address", loc)
        return int(addr)
    if dtype.kind == "ether":
        if not re.fullmatch(r"[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}", text):
            raise RulesetError(f"invalid Ethernet address '{text}'", loc)
        return int("".join(f"{int(p, 16):02x}" for p in text.split(":")), 16)
    if text in dtype.symbols:
        return dtype.symbols[text]
    value = parse_number(text)
    if value is None:
        known = f" (one of {', '.join(dtype.symbols)})" if 0 < len(dtype.symbols) <= 12 else ""
        raise RulesetError(f"'{text}' is not a valid {dtype.name} value{known}", loc)
    if value > dtype.max:
        raise RulesetError(f"value {value} exceeds valid range 0-{dtype.max} of {dtype.name}", loc)
    return value


def parse_interval(dtype: DataType, text: str, loc: Loc) -> Interval:
    """A constant, ``A-B`` range or ``ADDR/LEN`` prefix of ``dtype`` as an inclusive interval."""
    if dtype.kind in ("ipv4", "ipv6") and "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise RulesetError(f"invalid prefix '{text}'", loc) from None
        if net.version != (4 if dtype.kind == "ipv4" else 6):
            raise RulesetError(f"'{text}' is not an {dtype.name} value", loc)
        return int(net.network_address), int(net.broadcast_address)
    lo_text, hi_text = _split_range(dtype, text)
    if hi_text is not None:
        lo, hi = parse_scalar(dtype, lo_text, loc), parse_scalar(dtype, hi_text, loc)
        if lo > hi:
            raise RulesetError(f"Range has zero or negative size: '{text}'", loc)
        return lo, hi
    value = parse_scalar(dtype, text, loc)
    return value, value


def _split_range(dtype: DataType, text: str) -> tuple[str, str | None]:
    """``A-B`` into its ends; symbols that contain ``-`` (``echo-request``) stay whole."""
    if text in dtype.symbols or "-" not in text[1:]:
        return text, None
    for i, ch in enumerate(text):
        if ch == "-" and i > 0:
            lo, hi = text[:i], text[i + 1 :]
            if (lo in dtype.symbols or _looks_scalar(dtype, lo)) and (
                hi in dtype.symbols or _looks_scalar(dtype, hi)
            ):
                return lo, hi
    return text, None


def _looks_scalar(dtype: DataType, text: str) -> bool:
    if dtype.kind in ("ipv4", "ipv6"):
        try:
            ipaddress.ip_address(text)
            return True
        except ValueError:
            return False
    return parse_number(text) is not None


def format_scalar(dtype: DataType, value: int) -> str:
    if dtype.kind == "time":
        when = datetime.datetime.fromtimestamp(value // 1_000_000_000, datetime.UTC)
        return f'"{when:%Y-%m-%d %H:%M:%S}"'
    if dtype.kind == "hour":
        return f'"{value // 3600:02d}:{value // 60 % 60:02d}:{value % 60:02d}"'
    if dtype.name == "day":
        return f'"{dtype.names().get(value, str(value)).capitalize()}"'
    if dtype.kind == "ipv4":
        return str(ipaddress.IPv4Address(value))
    if dtype.kind == "ipv6":
        return str(ipaddress.IPv6Address(value))
    if dtype.kind == "ether":
        return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))
    name = None if dtype.name == "inet_service" else dtype.names().get(value)  # nft -S only
    if name is not None and not dtype.bitmask:
        return name
    if dtype.bitmask and value:
        names, rest = [], value
        for bit_value, bit_name in sorted(dtype.names().items()):
            if bit_value and bit_value & rest == bit_value and bin(bit_value).count("1") == 1:
                names.append(bit_name)
                rest &= ~bit_value
        if not rest and names:
            return " | ".join(names)
    if dtype.name in ("mark", "ct_label") or dtype.bitmask:
        return f"0x{value:08x}" if dtype.name == "mark" else f"0x{value:x}"
    return str(value)


def format_interval(dtype: DataType, interval: Interval) -> str:
    lo, hi = interval
    if lo == hi:
        return format_scalar(dtype, lo)
    if dtype.kind in ("ipv4", "ipv6"):
        size = hi - lo + 1
        if size & (size - 1) == 0 and lo % size == 0:
            plen = dtype.bits - (size.bit_length() - 1)
            return f"{format_scalar(dtype, lo)}/{plen}"
    return f"{format_scalar(dtype, lo)}-{format_scalar(dtype, hi)}"


def _t(name: str, bits: int, symbols: dict[str, int] | None = None, **kw: object) -> DataType:
    return DataType(name, bits, symbols or {}, **kw)  # type: ignore[arg-type]


PROTOCOLS = {
    "hopopt": 0, "ip": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6, "egp": 8,
    "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27, "iso-tp4": 29,
    "dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41, "ipv6-route": 43,
    "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "skip": 57,
    "icmpv6": 58, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "rspf": 73, "vmtp": 81,
    "eigrp": 88, "ospf": 89, "ax.25": 93, "ipip": 94, "etherip": 97, "encap": 98, "pim": 103,
    "ipcomp": 108, "comp": 108, "vrrp": 112, "l2tp": 115, "isis": 124, "sctp": 132, "fc": 133,
    "mobility-header": 135, "mh": 135, "udplite": 136, "mpls-in-ip": 137, "manet": 138, "hip": 139,
    "shim6": 140, "wesp": 141, "rohc": 142, "ethernet": 143,
}
SERVICES = {
    "tcpmux": 1, "echo": 7, "discard": 9, "systat": 11, "daytime": 13, "netstat": 15,
    "qotd": 17, "chargen": 19, "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25,
    "time": 37, "whois": 43, "tacacs": 49, "domain": 53, "bootps": 67, "bootpc": 68,
    "tftp": 69, "gopher": 70, "finger": 79, "http": 80, "kerberos": 88, "pop3": 110,
    "sunrpc": 111, "auth": 113, "nntp": 119, "ntp": 123, "epmap": 135, "netbios-ns": 137,
    "netbios-dgm": 138, "netbios-ssn": 139, "imap2": 143, "snmp": 161, "snmp-trap": 162,
    "bgp": 179, "irc": 194, "ldap": 389, "https": 443, "microsoft-ds": 445, "kpasswd": 464,
    "isakmp": 500, "syslog": 514, "printer": 515, "submission": 587, "ldaps": 636,
    "rsync": 873, "imaps": 993, "pop3s": 995, "openvpn": 1194, "l2tp": 1701, "pptp": 1723,
    "radius": 1812, "nfs": 2049, "mysql": 3306, "sip": 5060, "postgresql": 5432,
}
ICMP_TYPES = {
    "echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5,
    "echo-request": 8, "router-advertisement": 9, "router-solicitation": 10,
    "time-exceeded": 11, "parameter-problem": 12, "timestamp-request": 13,
    "timestamp-reply": 14, "info-request": 15, "info-reply": 16, "address-mask-request": 17,
    "address-mask-reply": 18,
}
ICMPV6_TYPES = {
    "destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
    "parameter-problem": 4, "echo-request": 128, "echo-reply": 129, "mld-listener-query": 130,
    "mld-listener-report": 131, "mld-listener-done": 132, "mld-listener-reduction": 132,
    "nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135,
    "nd-neighbor-advert": 136, "nd-redirect": 137, "router-renumbering": 138,
    "ind-neighbor-solicit": 141, "ind-neighbor-advert": 142, "mld2-listener-report": 143,
}
ICMP_CODES = {
    "net-unreachable": 0, "host-unreachable": 1, "prot-unreachable": 2, "port-unreachable": 3,
    "frag-needed": 4, "net-prohibited": 9, "host-prohibited": 10, "admin-prohibited": 13,
}
ICMPV6_CODES = {
    "no-route": 0, "admin-prohibited": 1, "addr-unreachable": 3, "port-unreachable": 4,
    "policy-fail": 5, "reject-route": 6,
}
ICMPX_CODES = {
    "no-route": 0, "port-unreachable": 1, "host-unreachable": 2, "admin-prohibited": 3,
}
CT_STATE_BITS = {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}
CT_STATUS_BITS = {
    "expected": 1, "seen-reply": 2, "assured": 4, "confirmed": 8, "snat": 16, "dnat": 32,
    "dying": 512,
}
TCP_FLAGS = {
    "fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ecn": 64, "cwr": 128,
}
DSCP = {
    "cs0": 0, "cs1": 8, "cs2": 16, "cs3": 24, "cs4": 32, "cs5": 40, "cs6": 48, "cs7": 56,
    "df": 0, "be": 0, "lephb": 1, "af11": 10, "af12": 12, "af13": 14, "af21": 18, "af22": 20,
    "af23": 22, "af31": 26, "af32": 28, "af33": 30, "af41": 34, "af42": 36, "af43": 38,
    "va": 44, "ef": 46,
}

INTEGER = {bits: _t("integer", bits) for bits in (1, 2, 3, 4, 6, 8, 12, 13, 16, 20, 32, 64, 128)}
INET_PROTO = _t("inet_proto", 8, PROTOCOLS)
INET_SERVICE = _t("inet_service", 16, SERVICES)
IPV4_ADDR = _t("ipv4_addr", 32, kind="ipv4")
IPV6_ADDR = _t("ipv6_addr", 128, kind="ipv6")
ETHER_ADDR = _t("ether_addr", 48, kind="ether")
ETHER_TYPE = _t("ether_type", 16, {"ip": 0x0800, "arp": 0x0806, "ip6": 0x86DD, "vlan": 0x8100,
                                  "8021ad": 0x88A8})
IFNAME = _t("ifname", 16 * 8, kind="string")
STRING = _t("string", 32 * 8, kind="string")
MARK = _t("mark", 32)
CT_STATE = _t("ct_state", 32, CT_STATE_BITS, bitmask=True)
CT_STATUS = _t("ct_status", 32, CT_STATUS_BITS, bitmask=True)
CT_DIR = _t("ct_dir", 8, {"original": 0, "reply": 1})
TCP_FLAG = _t("tcp_flag", 8, TCP_FLAGS, bitmask=True)
ICMP_TYPE = _t("icmp_type", 8, ICMP_TYPES)
ICMPV6_TYPE = _t("icmpv6_type", 8, ICMPV6_TYPES)
ICMP_CODE = _t("icmp_code", 8, ICMP_CODES)
ICMPV6_CODE = _t("icmpv6_code", 8, ICMPV6_CODES)
ICMPX_CODE = _t("icmpx_code", 8, ICMPX_CODES)
NFPROTO = _t("nf_proto", 8, {"ipv4": 2, "ipv6": 10})
PKTTYPE = _t("pkt_type", 8, {"host": 0, "unicast": 0, "broadcast": 1, "multicast": 2,
                            "other": 3})
DSCP_TYPE = _t("dscp", 6, DSCP)
ECN = _t("ecn", 2, {"not-ect": 0, "ect1": 1, "ect0": 2, "ce": 3})
IFTYPE = _t("iface_type", 16, {"ether": 1, "ppp": 512, "ipip": 768, "ipip6": 769, "loopback": 772,
                              "sit": 776, "ipgre": 778})
BOOLEAN = _t("boolean", 1, {"exists": 1, "missing": 0, "true": 1, "false": 0})
DEVGROUP = _t("devgroup", 32, {"default": 0})
REALM = _t("realm", 32, {"default": 0})
UID = _t("uid", 32, {"root": 0})
GID = _t("gid", 32, {"root": 0})
CLASSID = _t("classid", 32, {"none": 0, "root": 0xFFFFFFFF})
DAY = _t("day", 8, {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4,
                    "friday": 5, "saturday": 6})
DCCP_PKTTYPE = _t("dccp_pkttype", 4, {"request": 0, "response": 1, "data": 2, "ack": 3,
                                     "dataack": 4, "closereq": 5, "close": 6, "reset": 7,
                                     "sync": 8, "syncack": 9})
MH_TYPE = _t("mh_type", 8, {"binding-refresh-request": 0, "home-test-init": 1,
                           "careof-test-init": 2, "home-test": 3, "careof-test": 4,
                           "binding-update": 5, "binding-acknowledgement": 6,
                           "binding-error": 7, "fast-binding-update": 8,
                           "fast-binding-acknowledgement": 9, "fast-binding-advertisement": 10,
                           "experimental-mobility-header": 11, "home-agent-switch-message": 12})
IGMP_TYPE = _t("igmp_type", 8, {"membership-query": 0x11, "membership-report-v1": 0x12,
                               "membership-report-v2": 0x16, "membership-report-v3": 0x22,
                               "leave-group": 0x17})
VERDICT = _t("verdict", 32, kind="verdict")
OSF_NAME = _t("string", 16 * 8, kind="string")  # NFT_OSF_MAXGENRELEN
OBJECT_REFS = {kind: _t(kind, 32 * 8, kind="string") for kind in ("counter", "quota", "limit")}
"""Map data naming stateful objects (``type ipv4_addr : quota``)."""
FIB_ADDRTYPE = _t("fib_addrtype", 32, {"unspec": 0, "unicast": 1, "local": 2, "broadcast": 3,
                                      "anycast": 4, "multicast": 5, "blackhole": 6,
                                      "unreachable": 7, "prohibit": 8})

BY_NAME: dict[str, DataType] = {
    t.name: t
    for t in (
        INET_PROTO, INET_SERVICE, IPV4_ADDR, IPV6_ADDR, ETHER_ADDR, ETHER_TYPE, IFNAME, MARK,
        CT_STATE, CT_STATUS, CT_DIR, TCP_FLAG, ICMP_TYPE, ICMPV6_TYPE, ICMP_CODE, ICMPV6_CODE,
        ICMPX_CODE, NFPROTO, PKTTYPE, DSCP_TYPE, ECN, IFTYPE, BOOLEAN, DEVGROUP, REALM, UID, GID,
        CLASSID, DAY, DCCP_PKTTYPE, MH_TYPE, IGMP_TYPE, STRING,
    )
}
BY_NAME["integer"] = INTEGER[32]
BY_NAME["iface_index"] = IFNAME  # iif/oif: we match by name (interfaces are switch ports)
BY_NAME["ct_label"] = _t("ct_label", 128)
BY_NAME["time"] = _t("time", 64, kind="time")
BY_NAME["hour"] = _t("hour", 32, kind="hour")
