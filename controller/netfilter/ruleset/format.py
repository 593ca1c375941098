"""Print a ruleset the way ``nft list ruleset`` does (tabs, symbolic priorities, counters)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from controller.netfilter.ruleset import datatypes as dt
from controller.netfilter.ruleset import values
from controller.netfilter.ruleset.model import (
    Chain,
    Concat,
    Counter,
    Expr,
    FlowAdd,
    FlowtableDef,
    Item,
    Limit,
    Log,
    MapLookup,
    Masked,
    Match,
    Nat,
    Notrack,
    ObjectDef,
    Other,
    Reject,
    Rule,
    SetDef,
    SetRef,
    SetStatement,
    SetUpdate,
    Table,
    VerdictStatement,
    Vmap,
    expr_fields,
    expr_types,
)

_BARE_DEVICE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_REJECT_CODES = {"icmp": dt.ICMP_CODE, "icmpv6": dt.ICMPV6_CODE, "icmpx": dt.ICMPX_CODE}


def format_tables(tables: Iterable[Table]) -> str:
    return "".join(format_table(t) for t in tables)


def format_table(table: Table) -> str:
    blocks = [format_set(s) for s in table.sets.values()]
    blocks += [format_object(o) for o in table.objects.values()]
    blocks += [format_flowtable(ft) for ft in table.flowtables.values()]
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


def format_set(sdef: SetDef) -> str:
    kind = "map" if sdef.is_map else "set"
    lines = [f"\t{kind} {sdef.name} {{"]
    if sdef.typeof is not None:
        lines.append(f"\t\ttypeof {sdef.typeof}")
    else:
        key = " . ".join(t.name for t in sdef.key)
        data = f" : {sdef.data.name}" if sdef.data is not None else ""
        lines.append(f"\t\ttype {key}{data}")
    if sdef.flags:
        lines.append(f"\t\tflags {','.join(sdef.flags)}")
    for name, value in sdef.options:
        lines.append(f"\t\t{name} {value}".rstrip())
    if sdef.elements:
        texts = []
        for element in sdef.elements:
            if sdef.is_map:
                key, data = element
                data_text = (data.text if isinstance(data, VerdictStatement)
                             else format_value((sdef.data,), data))  # type: ignore[arg-type]
                texts.append(f"{format_value(sdef.key, key)} : {data_text}")
            else:
                texts.append(format_value(sdef.key, element))
        lines.append(f"\t\telements = {{ {', '.join(texts)} }}")
    lines.append("\t}")
    return "\n".join(lines) + "\n"


def format_object(obj: ObjectDef) -> str:
    lines = [f"\t{obj.kind} {obj.name} {{"]
    if obj.kind == "counter":
        lines.append(f"\t\tpackets {obj.packets} bytes {obj.bytes}")
    for name, value in obj.options:
        lines.append(f"\t\t{name} {value}".rstrip() + ("" if obj.kind == "counter" else ";"))
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
    text = " ".join(format_item(item) for item in rule.items)
    if rule.comment is not None:
        text += f' comment "{rule.comment}"'
    return text


def format_item(item: Item) -> str:
    if isinstance(item, Match):
        return format_match(item)
    if isinstance(item, Counter):
        if item.name is not None:
            return f"counter name {item.name}"
        return f"counter packets {item.packets} bytes {item.bytes}"
    if isinstance(item, VerdictStatement):
        return item.text
    if isinstance(item, FlowAdd):
        return f"flow add @{item.flowtable}"
    if isinstance(item, Nat):
        return format_nat(item)
    if isinstance(item, Reject):
        if item.kind is None:
            return "reject"
        if item.kind == "tcp reset":
            return "reject with tcp reset"
        code = dt.format_scalar(_REJECT_CODES[item.kind], item.code or 0)
        return f"reject with {item.kind} {code}"
    if isinstance(item, Log):
        return " ".join(["log"] + [f"{k} {v}" for k, v in item.options])
    if isinstance(item, Limit):
        return format_limit(item)
    if isinstance(item, SetStatement):
        value = item.value
        if isinstance(value, str):
            text = f'"{value}"'
        elif isinstance(value, MapLookup):
            text = format_map(value)
        elif isinstance(value, tuple):
            text = format_value((item.target.dtype,), value)
        else:
            text = format_expr(value)
        return f"{item.target.nft} set {text}"
    if isinstance(item, Notrack):
        return "notrack"
    if isinstance(item, SetUpdate):
        inner = [format_expr(item.key)]
        if item.timeout:
            inner.append(f"timeout {item.timeout}")
        inner += [format_item(s) for s in item.stateful]
        if item.meter:
            size = f" size {item.size}" if item.size is not None else ""
            return f"meter {item.set}{size} {{ {' '.join(inner)} }}"
        return f"{item.op} @{item.set} {{ {' '.join(inner)} }}"
    if isinstance(item, Vmap):
        if isinstance(item.mapping, SetRef):
            return f"{format_expr(item.key)} vmap @{item.mapping.name}"
        types = expr_types(item.key)
        pairs = ", ".join(f"{format_value(types, k)} : {v.text}" for k, v in item.mapping)
        return f"{format_expr(item.key)} vmap {{ {pairs} }}"
    assert isinstance(item, Other)
    return item.text


def format_map(lookup: MapLookup) -> str:
    if isinstance(lookup.mapping, SetRef):
        return f"{format_expr(lookup.key)} map @{lookup.mapping.name}"
    types = expr_types(lookup.key)
    pairs = ", ".join(f"{format_value(types, k)} : {format_value(lookup.data, v)}"
                      for k, v in lookup.mapping)
    return f"{format_expr(lookup.key)} map {{ {pairs} }}"


def format_nat(item: Nat) -> str:
    family = f" {item.family.value}" if item.family is not None else ""
    if item.map is not None:
        lead = ": " if item.map.data[0].kind == "int" else ""
        flags = " " + ",".join(item.flags) if item.flags else ""
        return f"{item.kind.value}{family} to {lead}{format_map(item.map)}{flags}"
    text = ""
    if item.addr is not None:
        text = str(item.addr)
        if item.addr_len is not None:
            text += f"/{item.addr_len}"
        elif item.addr_max is not None:
            text += f"-{item.addr_max}"
        if item.port_min is not None and item.addr.version == 6:
            text = f"[{text}]"
    if item.port_min is not None:
        ports = str(item.port_min)
        if item.port_max != item.port_min:
            ports += f"-{item.port_max}"
        text += f":{ports}"
    out = item.kind.value + family
    if text:
        out += f" to {text}"
    if item.flags:
        out += " " + ",".join(item.flags)
    return out


def format_limit(item: Limit) -> str:
    if item.unit == "name":
        return f"limit name {item.byte_unit}"
    over = "over " if item.over else ""
    rate = f"{item.rate}/{item.unit}" if item.byte_unit is None else (
        f"{item.rate} {item.byte_unit}/{item.unit}")
    text = f"limit rate {over}{rate}"
    if item.byte_unit is None and item.burst != 5:
        text += f" burst {item.burst} packets"
    elif item.byte_unit is not None and item.burst:
        text += f" burst {item.burst} {item.burst_unit or 'bytes'}"
    return text


def format_expr(expr: Expr) -> str:
    if isinstance(expr, Concat):
        return " . ".join(format_expr(p) for p in expr.parts)
    if isinstance(expr, Masked):
        dtype = expr_fields(expr.expr)[0].dtype
        if expr.op in ("<<", ">>"):
            operand = str(expr.operand)
        elif expr.op == "&":
            operand = dt.format_scalar(dtype, expr.operand)
        else:  # | and ^ take the statement's type (ct mark set ip6 dscp << 2 | 0x10)
            operand = f"0x{expr.operand:08x}"
        if dtype.bitmask and " | " in operand:
            operand = f"({operand})"
        return f"{format_expr(expr.expr)} {expr.op} {operand}"
    return expr.nft


def format_match(match: Match) -> str:
    left = format_expr(match.left)
    types = expr_types(match.left)
    explicit = isinstance(match.left, Masked) or (types[0].bitmask and not match.is_set)
    op = {"implicit": "", "==": "== " if explicit else ""}.get(match.op, f"{match.op} ")
    if isinstance(match.values, SetRef):
        return f"{left} {op}@{match.values.name}"
    texts = [format_value(types, v) for v in match.values]
    if match.is_set:
        operand = "{ " + ", ".join(texts) + " }"
    else:
        operand = texts[0]
        if types[0].bitmask and match.op == "implicit" and len(types) == 1:
            operand = operand.replace(" | ", ",")
    return f"{left} {op}{operand}"


def format_value(types: tuple | list, value: Any) -> str:
    if value == "*":  # a map's catch-all element
        return "*"
    if len(types) > 1:
        return " . ".join(format_value((t,), v) for t, v in zip(types, value, strict=True))
    dtype = types[0]
    if dtype.is_string:
        return f'"{value}"'
    return dt.format_interval(dtype, value)
