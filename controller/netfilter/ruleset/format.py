"""Print a ruleset the way ``nft list ruleset`` does (tabs, symbolic priorities, counters)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from controller.netfilter.ruleset import values
from controller.netfilter.ruleset.model import (
    Chain,
    Counter,
    Field,
    FlowAdd,
    FlowtableDef,
    Item,
    Match,
    Nat,
    Rule,
    Table,
    Value,
    VerdictStatement,
)

_BARE_DEVICE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


def format_tables(tables: Iterable[Table]) -> str:
    return "".join(format_table(t) for t in tables)


def format_table(table: Table) -> str:
    blocks = [format_flowtable(ft) for ft in table.flowtables.values()]
    blocks += [format_chain(c) for c in table.chains.values()]
    body = "\n".join(blocks)
    return f"table {table.family.value} {table.name} {{\n{body}}}\n"


def format_flowtable(ft: FlowtableDef) -> str:
    prio = values.format_priority(ft.priority, values.FLOWTABLE_PRIORITIES)
    lines = [f"\tflowtable {ft.name} {{", f"\t\thook {ft.hook} priority {prio}"]
    if ft.devices:
        devices = ", ".join(d if _BARE_DEVICE.match(d) else f'"{d}"' for d in ft.devices)
        lines.append(f"\t\tdevices = {{ {devices} }}")
    if ft.offload:
        lines.append("\t\tflags offload")
    if ft.counter:
        lines.append("\t\tcounter")
    lines.append("\t}")
    return "\n".join(lines) + "\n"


def format_chain(chain: Chain) -> str:
    lines = [f"\tchain {chain.name} {{"]
    base = chain.base
    if base is not None:
        prio = values.format_priority(base.priority, values.chain_priority_names(base.hook))
        policy = "accept" if base.policy_accept else "drop"
        lines.append(
            f"\t\ttype {base.type.value} hook {base.hook.value} priority {prio}; policy {policy};"
        )
    lines += [f"\t\t{format_rule(rule)}" for rule in chain.rules]
    lines.append("\t}")
    return "\n".join(lines) + "\n"


def format_rule(rule: Rule) -> str:
    return " ".join(format_item(item) for item in rule.items)


def format_item(item: Item) -> str:
    if isinstance(item, Match):
        return format_match(item)
    if isinstance(item, Counter):
        return f"counter packets {item.packets} bytes {item.bytes}"
    if isinstance(item, VerdictStatement):
        return "accept" if item.accept else "drop"
    if isinstance(item, FlowAdd):
        return f"flow add @{item.flowtable}"
    assert isinstance(item, Nat)
    family = f" {item.family.value}" if item.family is not None else ""
    target = values.format_nat_target(item.addr, item.port_min, item.port_max)
    if not target:
        return f"{item.kind.value}{family}"
    return f"{item.kind.value}{family} to {target}"


def format_match(match: Match) -> str:
    op = "!= " if match.negate else ""
    texts = [format_value(match.field, v) for v in match.values]
    if match.field is Field.CT_STATE:
        operand = ",".join(texts)
    elif len(texts) == 1:
        operand = texts[0]
    else:
        operand = "{ " + ", ".join(texts) + " }"
    return f"{match.field.nft} {op}{operand}"


def format_value(field: Field, value: Value) -> str:
    if field.is_protocol:
        assert isinstance(value, int)
        return values.PROTOCOL_NAMES.get(value, str(value))
    if isinstance(value, tuple):
        lo, hi = value
        return str(lo) if lo == hi else f"{lo}-{hi}"
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        full = value.max_prefixlen == value.prefixlen
        return str(value.network_address) if full else str(value)
    if field.is_ifname:
        return f'"{value}"'
    return str(value)
