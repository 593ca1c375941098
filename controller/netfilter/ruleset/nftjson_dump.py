"""The model back to ``nft -j list ruleset`` JSON (libnftables-json(5)): tables with their
sets, maps, objects, flowtables, chains and rules; a statement JSON has no form for is written
as nft's ``xt`` fallback with its nft text."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controller.netfilter.ruleset import datatypes as dt
from controller.netfilter.ruleset.fields import FIELDS
from controller.netfilter.ruleset.format import format_item
from controller.netfilter.ruleset.model import (
    Concat,
    Counter,
    FlowAdd,
    FlowtableDef,
    Item,
    Limit,
    Log,
    Masked,
    Match,
    Nat,
    Notrack,
    ObjectDef,
    Other,
    Reject,
    SetDef,
    SetRef,
    SetStatement,
    Table,
    Value,
    VerdictStatement,
    Vmap,
    expr_fields,
    expr_types,
)


def dump(tables: Iterable[Table]) -> dict[str, Any]:
    """The ``nft -j list ruleset`` document (without handles) for these tables."""
    items: list[dict[str, Any]] = [{"metainfo": {"json_schema_version": 1}}]
    for table in tables:
        fam = table.family.value
        items.append({"table": {"family": fam, "name": table.name}})
        items += [_dump_set(fam, table.name, s) for s in table.sets.values()]
        items += [_dump_object(fam, table.name, o) for o in table.objects.values()]
        items += [{"flowtable": _dump_flowtable(ft)} for ft in table.flowtables.values()]
        for chain in table.chains.values():
            obj: dict[str, Any] = {"family": fam, "table": table.name, "name": chain.name}
            if chain.base is not None:
                obj.update(
                    type=chain.base.type.value,
                    hook=chain.base.hook.value,
                    prio=chain.base.priority,
                    policy="accept" if chain.base.policy_accept else "drop",
                )
            items.append({"chain": obj})
        for chain in table.chains.values():
            items += [
                {
                    "rule": {
                        "family": fam,
                        "table": table.name,
                        "chain": chain.name,
                        "expr": [_dump_item(i) for i in rule.items],
                        **({"comment": rule.comment} if rule.comment is not None else {}),
                    }
                }
                for rule in chain.rules
            ]
    return {"nftables": items}


def _dump_set(family: str, table: str, sdef: SetDef) -> dict[str, Any]:
    obj: dict[str, Any] = {"family": family, "name": sdef.name, "table": table}
    names = [t.name for t in sdef.key]
    obj["type"] = names[0] if len(names) == 1 else names
    if sdef.is_map:
        obj["map"] = sdef.data.name  # type: ignore[union-attr]
    if sdef.flags:
        obj["flags"] = list(sdef.flags)
    if sdef.timeout is not None:
        obj["timeout"] = dt.parse_duration(sdef.timeout, sdef.loc)
    if sdef.elements:
        if sdef.is_map:
            obj["elem"] = [
                [_dump_value(sdef.key, k),
                 _dump_item(d) if isinstance(d, VerdictStatement)
                 else _dump_value((sdef.data,), d)]
                for k, d in sdef.elements
            ]
        else:
            obj["elem"] = [_dump_value(sdef.key, e) for e in sdef.elements]
    return {"map" if sdef.is_map else "set": obj}


def _dump_object(family: str, table: str, obj: ObjectDef) -> dict[str, Any]:
    body: dict[str, Any] = {"family": family, "name": obj.name, "table": table}
    if obj.kind == "counter":
        body.update(packets=obj.packets, bytes=obj.bytes)
        return {"counter": body}
    if obj.kind == "ct helper":
        helper, _, proto = dict(obj.options)["type"].partition(" protocol ")
        body.update(type=helper.strip('"'), protocol=proto)
        if "l3proto" in dict(obj.options):
            body["l3proto"] = dict(obj.options)["l3proto"]
        return {"ct helper": body}
    body["nft"] = [[k, v] for k, v in obj.options]  # quota, limit...: their nft options
    return {obj.kind: body}


def _dump_flowtable(ft: FlowtableDef) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "family": ft.family.value,
        "name": ft.name,
        "table": ft.table,
        "hook": ft.hook,
        "prio": ft.priority,
    }
    if ft.devices:
        obj["dev"] = ft.devices[0] if len(ft.devices) == 1 else list(ft.devices)
    flags = [f for f, on in (("offload", ft.offload), ("counter", ft.counter)) if on]
    if flags:
        obj["flags"] = flags
    return obj


def _dump_item(item: Item) -> dict[str, Any]:
    if isinstance(item, Match) and all(
        FIELDS.get(f.value) == f for f in expr_fields(item.left)
    ):
        return {"match": _dump_match(item)}
    if isinstance(item, Counter):
        if item.name is not None:
            return {"counter": item.name}
        return {"counter": {"packets": item.packets, "bytes": item.bytes}}
    if isinstance(item, VerdictStatement):
        if item.chain is not None and item.kind in ("jump", "goto"):
            return {item.kind: {"target": item.chain}}
        return {item.kind: None}
    if isinstance(item, FlowAdd):
        return {"flow": {"op": "add", "flowtable": f"@{item.flowtable}"}}
    if isinstance(item, Nat) and item.map is None:
        body: dict[str, Any] = {}
        if item.family is not None:
            body["family"] = item.family.value
        if item.addr is not None:
            if item.addr_len is not None:
                body["addr"] = {"prefix": {"addr": str(item.addr), "len": item.addr_len}}
            elif item.addr_max is not None:
                body["addr"] = {"range": [str(item.addr), str(item.addr_max)]}
            else:
                body["addr"] = str(item.addr)
        if item.port_min is not None:
            body["port"] = _dump_port((item.port_min, item.port_max or item.port_min))
        if item.flags:
            body["flags"] = list(item.flags)
        return {item.kind.value: body or None}
    if isinstance(item, Reject):
        if item.kind is None:
            return {"reject": None}
        rej: dict[str, Any] = {"type": item.kind}
        if item.code is not None:
            codes = {"icmp": dt.ICMP_CODE, "icmpv6": dt.ICMPV6_CODE, "icmpx": dt.ICMPX_CODE}
            rej["expr"] = dt.format_scalar(codes[item.kind], item.code)
        return {"reject": rej}
    if isinstance(item, Log):
        return {"log": {k: v.strip('"') if k == "prefix" else _num(v) for k, v in item.options}
                or None}
    if isinstance(item, Limit) and item.unit != "name" and item.byte_unit is None:
        return {"limit": {"rate": item.rate, "per": item.unit, "burst": item.burst,
                          **({"inv": True} if item.over else {})}}
    if isinstance(item, Notrack):
        return {"notrack": None}
    if isinstance(item, Vmap) and all(FIELDS.get(f.value) == f for f in expr_fields(item.key)):
        if isinstance(item.mapping, SetRef):
            data: Any = f"@{item.mapping.name}"
        else:
            types = expr_types(item.key)
            data = {"set": [[_dump_value(types, k), _dump_item(v)] for k, v in item.mapping]}
        return {"vmap": {"key": _dump_left(item.key), "data": data}}
    if isinstance(item, SetStatement) and isinstance(item.value, str):
        return {"ct helper": item.value}
    if isinstance(item, SetStatement) and isinstance(item.value, tuple):
        return {"mangle": {"key": _dump_left(item.target), "value": item.value[0]}}
    if isinstance(item, Other) and item.text.startswith("tcp option maxseg size set "):
        value = item.text.rsplit(" set ", 1)[1]
        return {"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}},
                           "value": {"rt": {"key": "mtu"}} if value == "rt mtu" else int(value)}}
    return {"xt": {"type": "nft", "name": format_item(item)}}  # read back by nftjson


def _num(text: str) -> Any:
    return int(text) if text.isdigit() else text


def _dump_left(expr: Any) -> dict[str, Any]:
    if isinstance(expr, Concat):
        return {"concat": [_dump_left(p) for p in expr.parts]}
    if isinstance(expr, Masked):
        ops = {"&": "&", "|": "|", "^": "^", "<<": "<<", ">>": ">>"}
        return {ops[expr.op]: [_dump_left(expr.expr), expr.operand]}
    if expr.ns in ("meta", "ct", "rt"):
        return {expr.ns: {"key": expr.key}}
    return {"payload": {"protocol": expr.ns, "field": expr.key}}


def _dump_match(match: Match) -> dict[str, Any]:
    left = _dump_left(match.left)
    if isinstance(match.values, SetRef):
        return {"op": "==" if match.op != "!=" else "!=", "left": left,
                "right": f"@{match.values.name}"}
    types = expr_types(match.left)
    vals = [_dump_value(types, v) for v in match.values]  # type: ignore[union-attr]
    right: Any = {"set": vals} if match.is_set else vals[0]
    op = {"implicit": "in" if types[0].bitmask else "=="}.get(match.op, match.op)
    if op == "==" and types[0].bitmask and match.op == "implicit":
        op = "in"
    return {"op": op, "left": left, "right": right}


def _dump_value(types: tuple, value: Value) -> Any:
    if value == "*":
        return "*"
    if len(types) > 1:
        return {"concat": [_dump_value((t,), v) for t, v in zip(types, value, strict=True)]}  # type: ignore
    dtype = types[0]
    if dtype.is_string:
        return value
    lo, hi = value  # type: ignore[misc]
    if dtype.kind in ("ipv4", "ipv6") and lo != hi:
        text = dt.format_interval(dtype, (lo, hi))
        if "/" in text:
            addr, _, plen = text.partition("/")
            return {"prefix": {"addr": addr, "len": int(plen)}}
        return {"range": [dt.format_scalar(dtype, lo), dt.format_scalar(dtype, hi)]}
    if lo != hi:
        return {"range": [_json_scalar(dtype, lo), _json_scalar(dtype, hi)]}
    return _json_scalar(dtype, lo)


def _json_scalar(dtype: dt.DataType, value: int) -> Any:
    text = dt.format_scalar(dtype, value)
    if dtype.bitmask and " | " in text:
        return text.split(" | ")
    return int(text) if text.isdigit() else text


def _dump_port(ports: tuple[int, int]) -> Any:
    lo, hi = ports
    return lo if lo == hi else {"range": [lo, hi]}
