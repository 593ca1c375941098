"""Atoms of the nft language (families, protocols, ports, addresses, priorities, NAT targets).

Both readers (nft syntax and JSON) turn their text into model values through these functions, so
a ruleset means the same thing whichever way it was written. Each raises :class:`RulesetError`
at the location it is given.
"""

from __future__ import annotations

import ipaddress
import re

from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.model import Family, Field, Hook, IPAddress, IPNetwork, Value

UNSUPPORTED_FAMILIES = ("arp", "bridge", "netdev")

PROTOCOLS = {
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "icmpv6": 58,
    "ipv6-icmp": 58,  # after icmpv6: the name nft prints (/etc/protocols)
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "sctp": 132,
    "udplite": 136,
}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}

SERVICES = {
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "http": 80,
    "ntp": 123,
    "https": 443,
    "bgp": 179,
}

CT_STATES = ("invalid", "established", "related", "new", "untracked")

# nft's standard priority names (src/rule.c std_prios), with the hooks each is valid for.
_ANY_HOOK = frozenset(Hook)
STD_PRIORITIES: dict[str, tuple[int, frozenset[Hook]]] = {
    "raw": (-300, _ANY_HOOK),
    "mangle": (-150, _ANY_HOOK),
    "dstnat": (-100, frozenset({Hook.PREROUTING, Hook.OUTPUT})),
    "filter": (0, _ANY_HOOK),
    "security": (50, _ANY_HOOK),
    "srcnat": (100, frozenset({Hook.POSTROUTING, Hook.INPUT})),
}
FLOWTABLE_PRIORITIES = {"filter": 0}  # netdev family: only "filter" has a name

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_./\-]*\Z")


def parse_name(text: str, loc: Loc, what: str) -> str:
    """A table, chain or flowtable name as nft's scanner accepts it."""
    if not _IDENTIFIER.match(text):
        raise RulesetError(f"invalid {what} '{text}'", loc)
    return text


def parse_family(word: str, loc: Loc) -> Family:
    try:
        return Family(word)
    except ValueError:
        if word in UNSUPPORTED_FAMILIES:
            raise RulesetError(f"unsupported family '{word}' (only ip, ip6, inet)", loc) from None
        raise RulesetError(f"unknown family '{word}'", loc) from None


def parse_int(text: str | int, loc: Loc, what: str, lo: int, hi: int) -> int:
    if isinstance(text, bool):
        raise RulesetError(f"invalid {what} {text!r}", loc)
    try:
        value = text if isinstance(text, int) else int(text, 0)
    except ValueError:
        raise RulesetError(f"invalid {what} '{text}'", loc) from None
    if not lo <= value <= hi:
        raise RulesetError(f"{what} {value} out of range {lo}-{hi}", loc)
    return value


def parse_protocol(text: str | int, loc: Loc) -> int:
    if isinstance(text, str) and text in PROTOCOLS:
        return PROTOCOLS[text]
    if isinstance(text, str) and not text.isdigit():
        raise RulesetError(f"unknown protocol '{text}'", loc)
    return parse_int(text, loc, "protocol", 0, 255)


def parse_port(text: str | int, loc: Loc) -> int:
    if isinstance(text, str) and text in SERVICES:
        return SERVICES[text]
    return parse_int(text, loc, "port", 0, 65535)


def parse_port_range(text: str | int, loc: Loc) -> tuple[int, int]:
    """``N`` or ``N-M`` (inclusive) as a pair; a single port is ``(N, N)``."""
    if isinstance(text, str) and "-" in text:
        lo_text, _, hi_text = text.partition("-")
        lo, hi = parse_port(lo_text, loc), parse_port(hi_text, loc)
        if lo > hi:
            raise RulesetError(f"range '{text}' has its low end above its high end", loc)
        return lo, hi
    port = parse_port(text, loc)
    return port, port


def parse_network(text: str, version: int | None, loc: Loc) -> IPNetwork:
    """``ADDR`` or ``ADDR/LEN`` of the given IP version (None: either)."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        kind = {4: "IPv4 address", 6: "IPv6 address"}.get(version or 0, "address")
        raise RulesetError(f"invalid {kind} '{text}'", loc) from None
    if version is not None and net.version != version:
        raise RulesetError(f"'{text}' is not an IPv{version} address", loc)
    return net


def parse_address(text: str, loc: Loc) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise RulesetError(f"invalid address '{text}'", loc) from None


def parse_ct_state(text: str, loc: Loc) -> str:
    if text not in CT_STATES:
        raise RulesetError(f"unknown ct state '{text}' (one of {', '.join(CT_STATES)})", loc)
    return text


def parse_ifname(text: str, loc: Loc) -> str:
    if not text or len(text) > 15 or any(c in text for c in '/" \t'):
        raise RulesetError(f"invalid interface name '{text}'", loc)
    return text


def parse_nat_target(text: str, loc: Loc) -> tuple[IPAddress | None, int | None, int | None]:
    """``ADDR``, ``ADDR:PORT[-PORT]``, ``[V6ADDR]:PORT[-PORT]``, ``V6ADDR`` or ``:PORT[-PORT]``."""
    addr_text, port_text = text, None
    if text.startswith("["):
        addr_text, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise RulesetError(f"invalid NAT target '{text}'", loc)
        port_text = rest[1:] or None
    elif text.startswith(":") and not text.startswith("::"):
        addr_text, port_text = "", text[1:]
    elif text.count(":") == 1:
        addr_text, _, port_text = text.partition(":")
    addr = parse_address(addr_text, loc) if addr_text else None
    if port_text is None:
        return addr, None, None
    lo, hi = parse_port_range(port_text, loc)
    return addr, lo, hi


def format_nat_target(addr: IPAddress | None, port_min: int | None, port_max: int | None) -> str:
    text = "" if addr is None else str(addr)
    if port_min is None:
        return text
    if addr is not None and addr.version == 6:
        text = f"[{text}]"
    ports = str(port_min) if port_min == port_max else f"{port_min}-{port_max}"
    return f"{text}:{ports}"


def format_priority(value: int, names: dict[str, int]) -> str:
    """nft's way: a standard name, ``name + N``/``name - N`` within 10 of one, else the number."""
    for name, base in names.items():
        if value == base:
            return name
    for name, base in names.items():
        if 0 < abs(value - base) <= 10:
            return f"{name} {'+' if value > base else '-'} {abs(value - base)}"
    return str(value)


def chain_priority_names(hook: Hook) -> dict[str, int]:
    return {name: prio for name, (prio, hooks) in STD_PRIORITIES.items() if hook in hooks}


def parse_value(field: Field, raw: str | int, loc: Loc) -> Value:
    """Turn the operand of a match on ``field`` into its model value."""
    if field.is_protocol:
        return parse_protocol(raw, loc)
    if field.is_port:
        return parse_port_range(raw, loc)
    if not isinstance(raw, str):
        raise RulesetError(f"{field.nft} needs a string, not {raw!r}", loc)
    if field is Field.CT_STATE:
        return parse_ct_state(raw, loc)
    if field.is_ifname:
        return parse_ifname(raw, loc)
    return parse_network(raw, field.ip_version, loc)
