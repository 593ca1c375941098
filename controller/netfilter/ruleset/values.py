"""Atoms of the nft language (families, protocols, ports, addresses, priorities, NAT targets).

Both readers (nft syntax and JSON) turn their text into model values through these functions, so
a ruleset means the same thing whichever way it was written. Each raises :class:`RulesetError`
at the location it is given.
"""

from __future__ import annotations

import ipaddress
import re

from controller.netfilter.ruleset import datatypes
from controller.netfilter.ruleset.datatypes import DataType
from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.lexer import Kind, Token
from controller.netfilter.ruleset.model import (
    Family,
    Hook,
    IPAddress,
    Nat,
    SetDef,
    Value,
    VerdictStatement,
)

UNSUPPORTED_FAMILIES = ("arp", "bridge", "netdev")

SERVICES = datatypes.SERVICES

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
    value = text if isinstance(text, int) else datatypes.parse_number(text)
    if value is None:
        raise RulesetError(f"invalid {what} '{text}'", loc)
    if not lo <= value <= hi:
        raise RulesetError(f"{what} {value} out of range {lo}-{hi}", loc)
    return value


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


def parse_address(text: str, loc: Loc) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise RulesetError(f"invalid address '{text}'", loc) from None


def parse_ifname(text: str, loc: Loc) -> str:
    if not text or len(text) > 15 or any(c in text for c in '/" \t'):
        raise RulesetError(f"invalid interface name '{text}'", loc)
    return text


def parse_nat_into(nat: Nat, text: str, loc: Loc) -> None:
    """Fill ``nat`` from ``ADDR[-ADDR|/LEN][:PORT[-PORT]]`` (IPv6 in brackets when a port
    follows) or ``:PORT[-PORT]``."""
    addr_text, port_text = text, None
    if text.startswith("["):  # [A], [A]-[B], [A]/LEN, each maybe followed by :PORTS
        bracketed = re.fullmatch(r"\[([^\]]+)\](?:-\[([^\]]+)\]|(/\d+))?(?::(.*))?", text)
        if bracketed is None:
            raise RulesetError(f"invalid NAT target '{text}'", loc)
        low, high, plen, port_text = bracketed.groups()
        addr_text = f"{low}-{high}" if high else low + (plen or "")
        if port_text == "":
            raise RulesetError(f"invalid NAT target '{text}'", loc)
    elif text.startswith(":") and not text.startswith("::"):
        addr_text, port_text = "", text[1:]
    elif text.count(":") == 1:
        addr_text, _, port_text = text.partition(":")
    if addr_text:
        if "/" in addr_text:
            try:
                net = ipaddress.ip_network(addr_text, strict=False)
            except ValueError:
                raise RulesetError(f"invalid address '{addr_text}'", loc) from None
            nat.addr, nat.addr_max = net.network_address, net.broadcast_address
            nat.addr_len = net.prefixlen
        elif "-" in addr_text:
            lo, _, hi = addr_text.partition("-")
            nat.addr, nat.addr_max = parse_address(lo, loc), parse_address(hi, loc)
            if nat.addr.version != nat.addr_max.version or nat.addr > nat.addr_max:
                raise RulesetError(f"invalid address range '{addr_text}'", loc)
        else:
            nat.addr = parse_address(addr_text, loc)
    if port_text is not None:
        nat.port_min, nat.port_max = parse_port_range(port_text, loc)


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


def typed_values(types: tuple[DataType, ...], toks: list[Token]) -> list[Value]:
    """The values of one element: several when it is a nested ``{ }`` (a variable holding a
    set inside another set; nft flattens it)."""
    if toks and toks[0].kind is Kind.PUNCT and toks[0].text == "{":
        out: list[Value] = []
        group: list[Token] = []
        depth = 0
        for tok in toks[1:-1]:
            if tok.kind is Kind.PUNCT and tok.text in ("{", "}"):
                depth += 1 if tok.text == "{" else -1
            if depth == 0 and tok.kind is Kind.PUNCT and tok.text == ",":
                out += typed_values(types, group) if group else []
                group = []
            elif tok.kind is not Kind.NEWLINE:
                group.append(tok)
        if group:
            out += typed_values(types, group)
        return out
    return [typed_value(types, toks)]


CATCH_ALL = "*"
"""The ``*`` element of a map: what a key no other element holds maps to."""


def typed_value(types: tuple[DataType, ...], toks: list[Token]) -> Value:
    """One constant of ``types`` (several for a concatenation ``a . b``) from its tokens."""
    if len(toks) == 1 and toks[0].kind is Kind.PUNCT and toks[0].text == "*":
        return CATCH_ALL
    parts: list[list[Token]] = [[]]
    for tok in toks:
        if tok.kind is Kind.PUNCT and tok.text == ".":
            parts.append([])
        else:
            parts[-1].append(tok)
    if len(parts) != len(types):
        loc = toks[0].loc
        raise RulesetError(
            f"datatype mismatch: expected {' . '.join(t.name for t in types)}, "
            f"got {len(parts)} part(s)", loc)
    vals = [_component(t, p) for t, p in zip(types, parts, strict=True)]
    return vals[0] if len(vals) == 1 else tuple(vals)


def _component(dtype: DataType, toks: list[Token]) -> Value:
    if not toks:
        raise RulesetError(f"missing {dtype.name} value", Loc("<model>"))
    loc = toks[0].loc
    if dtype.kind == "verdict":
        raise RulesetError("verdicts are not values here", loc)
    text = "".join(t.text for t in toks)
    if dtype.is_string:
        if len(toks) != 1:
            raise RulesetError(f"invalid {dtype.name} '{text}'", loc)
        if len(text.replace("\\*", "*")) >= dtype.bits // 8:
            raise RulesetError(f"'{text}' is longer than {dtype.bits // 8 - 1} characters", loc)
        if not text:
            raise RulesetError(f"empty {dtype.name}", loc)
        return text
    if toks[0].kind is Kind.STRING and len(toks) == 1 and dtype.kind not in ("ipv4", "ipv6"):
        pass  # nft reads quoted symbols the same as bare ones
    if dtype.bitmask and "|" in text:
        value = 0
        for part in text.split("|"):
            value |= datatypes.parse_scalar(dtype, part, loc)
        return value, value
    if text.startswith("-") or not text:
        raise RulesetError(f"syntax error, unexpected '{text}'", loc)
    return datatypes.parse_interval(dtype, text, loc)


def set_elements(sdef: SetDef, raw: list) -> list:
    """Typed elements of a set (keys) or map (``(key, data)``; a vmap's data a verdict)."""
    out: list = []
    for key_toks, data_toks in raw:
        keys = typed_values(sdef.key, key_toks)
        if sdef.data is None:
            if CATCH_ALL in keys:
                raise RulesetError(f"set {sdef.name}: '*' is for maps", key_toks[0].loc)
            if data_toks is not None:
                raise RulesetError(f"set {sdef.name} is not a map", key_toks[0].loc)
            out += keys
            continue
        if data_toks is None:
            raise RulesetError(f"map {sdef.name} needs 'KEY : DATA' elements", key_toks[0].loc)
        if sdef.data.kind == "verdict":
            data = _verdict(data_toks)
        else:
            data = typed_value((sdef.data,), data_toks)
        out += [(k, data) for k in keys]
    return out


def _verdict(toks: list[Token]) -> VerdictStatement:
    word = toks[0].text
    if word in ("jump", "goto") and len(toks) == 2:
        return VerdictStatement(None, toks[0].loc, word, toks[1].text)
    if word in ("accept", "drop", "continue", "return") and len(toks) == 1:
        return VerdictStatement(None, toks[0].loc, word)
    raise RulesetError(f"invalid verdict '{' '.join(t.text for t in toks)}'", toks[0].loc)
