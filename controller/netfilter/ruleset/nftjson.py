"""``nft -j`` JSON (libnftables-json(5)) to script commands (the way back: ``nftjson_dump``).

Reads what ``nft -j list ruleset`` prints (bare ``table``/``set``/``map``/``counter``/
``ct helper``/``flowtable``/``chain``/``rule`` objects after a ``metainfo``) and the command
form (``{"add": {...}}``, ``{"delete": ...}``, ``{"flush": {"ruleset": null}}``). Errors name
the JSON path of the offending value, e.g.
``rules.json: $.nftables[4].rule.expr[0].match.right: 'x' is not a valid inet_service value``.
"""

from __future__ import annotations

import json
from typing import Any

from controller.netfilter.ruleset import datatypes as dt
from controller.netfilter.ruleset import rules, values
from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.model import (
    FIELDS_BY_WORDS,
    BaseSpec,
    ChainType,
    Concat,
    Counter,
    Expr,
    Family,
    Field,
    FlowAdd,
    Hook,
    Item,
    Limit,
    Log,
    Masked,
    Match,
    Nat,
    NatKind,
    Notrack,
    ObjectDef,
    Other,
    Reject,
    Rule,
    SetDef,
    SetRef,
    SetStatement,
    Value,
    VerdictStatement,
    Vmap,
    expr_types,
)
from controller.netfilter.ruleset.script import (
    AddChain,
    AddFlowtable,
    AddObject,
    AddRule,
    AddSet,
    AddTable,
    Command,
    DeleteChain,
    DeleteFlowtable,
    DeleteTable,
    Device,
    FlowtableSpec,
    FlushChain,
    FlushRuleset,
)

_OBJECTS = ("counter", "ct helper", "quota", "limit", "ct timeout", "ct expectation",
            "secmark", "synproxy")
_LIST_ORDER = {"table": 0, "set": 1, "map": 1, **dict.fromkeys(_OBJECTS, 1), "chain": 2,
               "flowtable": 3, "rule": 4}
_VERBS = ("add", "insert", "delete", "flush")


def parse(text: str, filename: str = "<string>") -> list[Command]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise RulesetError(f"invalid JSON: {e.msg}", Loc(filename, e.lineno, e.colno)) from None
    except RecursionError:
        raise RulesetError("invalid JSON: nested too deeply", Loc(filename)) from None
    return _Reader(filename).document(doc)


class _Reader:
    def __init__(self, filename: str) -> None:
        self.filename = filename

    def error(self, message: str, path: str) -> RulesetError:
        return RulesetError(message, Loc(self.filename, path=path))

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"expected an object, got {json.dumps(value)}", path)
        return value

    def single(self, value: Any, path: str) -> tuple[str, Any]:
        """The one key of ``{"kind": body}`` objects."""
        obj = self.obj(value, path)
        if len(obj) != 1:
            raise self.error(f"expected an object with one key, got {sorted(obj)}", path)
        return next(iter(obj.items()))

    def get(self, obj: dict[str, Any], key: str, path: str, kind: type | tuple = str) -> Any:
        if key not in obj:
            raise self.error(f"missing '{key}'", path)
        value = obj[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise self.error(f"'{key}' has the wrong type: {json.dumps(value)}", f"{path}.{key}")
        return value

    def name(self, obj: dict[str, Any], key: str, path: str) -> str:
        """A table/chain/flowtable name under ``key``, checked as nft syntax would check it."""
        text = self.get(obj, key, path)
        what = "name" if key == "name" else f"{key} name"
        return values.parse_name(text, Loc(self.filename, path=f"{path}.{key}"), what)

    def family(self, obj: dict[str, Any], path: str) -> Family:
        word = self.get(obj, "family", path)
        return values.parse_family(word, Loc(self.filename, path=f"{path}.family"))

    # -- document --------------------------------------------------------------------------------

    def document(self, doc: Any) -> list[Command]:
        root = self.obj(doc, "$")
        items = root.get("nftables")
        if not isinstance(items, list):
            raise self.error('expected {"nftables": [...]}', "$")
        listed: list[tuple[int, int, list[Command]]] = []
        commands: list[Command] = []
        for index, item in enumerate(items):
            path = f"$.nftables[{index}]"
            kind, body = self.single(item, path)
            if kind == "metainfo":
                continue
            if kind in _VERBS:
                commands.extend(self.verb(kind, body, f"{path}.{kind}"))
            else:
                listed.append((_LIST_ORDER.get(kind, 9), index, self.add(kind, body, path)))
        if listed and commands:
            raise self.error("mixes listed objects with commands; use one form", "$.nftables")
        # Listed objects load like a table block: tables, chains, flowtables, then rules.
        return commands or [c for _, _, cmds in sorted(listed) for c in cmds]

    def verb(self, verb: str, body: Any, path: str) -> list[Command]:
        kind, obj = self.single(body, path)
        path = f"{path}.{kind}"
        if verb == "flush" and kind == "ruleset":
            family = None
            if isinstance(obj, dict) and "family" in obj:
                family = self.family(obj, path)
            return [FlushRuleset(family, Loc(self.filename, path=path))]
        if verb in ("delete", "flush") and kind in ("chain", "table"):
            obj = self.obj(obj, path)
            family, loc = self.family(obj, path), Loc(self.filename, path=path)
            if kind == "table":
                table, chain = self.name(obj, "name", path), None
            else:
                table, chain = self.name(obj, "table", path), self.name(obj, "name", path)
            if verb == "flush":
                return [FlushChain(family, table, chain, loc)]
            if chain is None:
                return [DeleteTable(family, table, loc)]
            return [DeleteChain(family, table, chain, loc)]
        if verb == "delete" and kind == "flowtable":
            obj = self.obj(obj, path)
            devices = self.devices(obj, path) if "dev" in obj else None
            return [
                DeleteFlowtable(
                    self.family(obj, path),
                    self.name(obj, "table", path),
                    self.name(obj, "name", path),
                    devices,
                    Loc(self.filename, path=path),
                )
            ]
        if verb in ("add", "insert") and kind in _LIST_ORDER:
            if verb == "insert" and kind != "rule":
                raise self.error(f"'{verb}' of a {kind} is not supported", path)
            return self.add(kind, obj, path, insert=verb == "insert")
        raise self.error(f"unsupported command '{verb} {kind}'", path)

    def add(self, kind: str, body: Any, path: str, insert: bool = False) -> list[Command]:
        path = path if path.endswith(f".{kind}") else f"{path}.{kind}"
        obj = self.obj(body, path)
        loc = Loc(self.filename, path=path)
        family = self.family(obj, path)
        if kind == "table":
            return [AddTable(family, self.name(obj, "name", path), loc)]
        table = self.name(obj, "table", path)
        if kind == "chain":
            return [self.chain(obj, family, table, path, loc)]
        if kind == "flowtable":
            return [
                AddFlowtable(
                    family, table, self.name(obj, "name", path), self.flowtable(obj, path), loc
                )
            ]
        if kind in ("set", "map"):
            return [AddSet(family, table, self.set_def(obj, kind == "map", path, loc), loc)]
        if kind in _OBJECTS:
            return [AddObject(family, table, self.object_def(kind, obj, path, loc), loc)]
        if kind == "rule":
            exprs = self.get(obj, "expr", path, list)
            items = [self.item(e, f"{path}.expr[{i}]") for i, e in enumerate(exprs)]
            if not items:
                raise self.error("a rule needs at least one expression", f"{path}.expr")
            chain = self.name(obj, "chain", path)
            comment = obj.get("comment")
            if comment is not None and not isinstance(comment, str):
                raise self.error("'comment' must be a string", f"{path}.comment")
            return [AddRule(family, table, chain, Rule(items, loc, comment), insert, loc)]
        raise self.error(f"unsupported object '{kind}'", path)

    def set_def(self, obj: dict, is_map: bool, path: str, loc: Loc) -> SetDef:
        name = self.name(obj, "name", path)
        types = self.types(obj.get("type"), f"{path}.type")
        sdef = SetDef(name, types, loc=loc)
        if is_map:
            data = self.get(obj, "map", path)
            if data == "verdict":
                sdef.data = dt.VERDICT
            elif isinstance(data, str) and data in dt.OBJECT_REFS:
                sdef.data = dt.OBJECT_REFS[data]
            else:
                sdef.data = self.types(data, f"{path}.map")[0]
        flags = obj.get("flags", [])
        flags = [flags] if isinstance(flags, str) else flags
        if not isinstance(flags, list) or not all(f in ("constant", "interval", "timeout",
                                                       "dynamic") for f in flags):
            raise self.error(f"invalid set flags {json.dumps(flags)}", f"{path}.flags")
        sdef.flags = tuple(flags)
        if "timeout" in obj:
            sdef.timeout = dt.format_duration(self.get(obj, "timeout", path, int))
            sdef.options = (("timeout", sdef.timeout),)
        elems = obj.get("elem", [])
        if not isinstance(elems, list):
            raise self.error("'elem' must be a list", f"{path}.elem")
        for i, raw in enumerate(elems):
            epath = f"{path}.elem[{i}]"
            if is_map:
                if not (isinstance(raw, list) and len(raw) == 2):
                    raise self.error("a map element is [KEY, DATA]", epath)
                key = self.typed(types, raw[0], f"{epath}[0]")
                if sdef.data is dt.VERDICT:
                    data: Any = self.verdict(raw[1], f"{epath}[1]")
                else:
                    data = self.typed((sdef.data,), raw[1], f"{epath}[1]")  # type: ignore[arg-type]
                sdef.elements.append((key, data))
            else:
                sdef.elements.append(self.typed(types, raw, epath))
        return sdef

    def types(self, raw: Any, path: str) -> tuple[dt.DataType, ...]:
        names = raw if isinstance(raw, list) else [raw]
        out = []
        for name in names:
            dtype = dt.BY_NAME.get(name) if isinstance(name, str) else None
            if dtype is None:
                raise self.error(f"unknown datatype {json.dumps(name)}", path)
            out.append(dtype)
        return tuple(out)

    def object_def(self, kind: str, obj: dict, path: str, loc: Loc) -> ObjectDef:
        name = self.name(obj, "name", path)
        if kind == "counter":
            return ObjectDef("counter", name, (), obj.get("packets", 0), obj.get("bytes", 0),
                             loc)
        if kind != "ct helper":
            options = obj.get("nft", [])
            if not (isinstance(options, list) and all(
                isinstance(o, list) and len(o) == 2 and all(isinstance(w, str) for w in o)
                for o in options
            )):
                raise self.error(f"unsupported {kind} object", path)
            return ObjectDef(kind, name, tuple((k, v) for k, v in options), loc=loc)
        helper = self.get(obj, "type", path)
        proto = self.get(obj, "protocol", path)
        if proto not in ("tcp", "udp"):
            raise self.error(f"invalid protocol {json.dumps(proto)}", f"{path}.protocol")
        options = [("type", f'"{helper}" protocol {proto}')]
        if "l3proto" in obj:
            options.append(("l3proto", str(obj["l3proto"])))
        return ObjectDef("ct helper", name, tuple(options), loc=loc)

    def verdict(self, raw: Any, path: str) -> VerdictStatement:
        kind, body = self.single(raw, path)
        loc = Loc(self.filename, path=path)
        if kind in ("accept", "drop", "continue", "return"):
            return VerdictStatement(None, loc, kind)
        if kind in ("jump", "goto"):
            return VerdictStatement(None, loc, kind, self.name(self.obj(body, path), "target",
                                                               path))
        raise self.error(f"invalid verdict {json.dumps(raw)}", path)

    def chain(self, obj: dict, family: Family, table: str, path: str, loc: Loc) -> AddChain:
        name = self.name(obj, "name", path)
        if "type" not in obj:
            return AddChain(family, table, name, None, loc)
        type_word = self.get(obj, "type", path)
        hook_word = self.get(obj, "hook", path)
        try:
            chain_type = ChainType(type_word)
        except ValueError:
            raise self.error(f"unsupported chain type '{type_word}'", f"{path}.type") from None
        try:
            hook = Hook(hook_word)
        except ValueError:
            raise self.error(f"unknown chain hook '{hook_word}'", f"{path}.hook") from None
        prio = self.priority(obj, path, values.chain_priority_names(hook))
        policy = obj.get("policy", "accept")
        if policy not in ("accept", "drop"):
            raise self.error(f"invalid policy {json.dumps(policy)}", f"{path}.policy")
        base = BaseSpec(chain_type, hook, prio, policy == "accept")
        return AddChain(family, table, name, base, loc, Loc(self.filename, path=f"{path}.type"))

    def priority(self, obj: dict, path: str, names: dict[str, int]) -> int:
        prio = self.get(obj, "prio", path, (int, str))
        if isinstance(prio, str):
            if prio not in names:
                raise self.error(f"'{prio}' is invalid priority in this context.", f"{path}.prio")
            return names[prio]
        return prio

    def flowtable(self, obj: dict, path: str) -> FlowtableSpec:
        spec = FlowtableSpec()
        if "hook" in obj or "prio" in obj:
            spec.hook = self.get(obj, "hook", path)
            spec.hook_loc = Loc(self.filename, path=f"{path}.hook")
            if spec.hook != "ingress":
                raise self.error(
                    f"flowtables only support the ingress hook, not '{spec.hook}'", f"{path}.hook"
                )
            spec.priority = self.priority(obj, path, values.FLOWTABLE_PRIORITIES)
        if "dev" in obj:
            spec.devices = self.devices(obj, path)
        flags = obj.get("flags", [])
        flags = [flags] if isinstance(flags, str) else flags
        spec.flags_loc = Loc(self.filename, path=f"{path}.flags")
        for i, flag in enumerate(flags if isinstance(flags, list) else [flags]):
            if flag not in ("offload", "counter"):
                raise self.error(f"unknown flowtable flag {json.dumps(flag)}", f"{path}.flags[{i}]")
            spec.offload |= flag == "offload"
            spec.counter |= flag == "counter"
        return spec

    def devices(self, obj: dict, path: str) -> list[Device]:
        devs = obj["dev"]
        names = [devs] if isinstance(devs, str) else devs
        if not isinstance(names, list):
            raise self.error(f"invalid flowtable dev {json.dumps(devs)}", f"{path}.dev")
        result = []
        for i, name in enumerate(names):
            loc = Loc(self.filename, path=f"{path}.dev[{i}]")
            if not isinstance(name, str):
                raise RulesetError(f"invalid flowtable dev {json.dumps(name)}", loc)
            result.append(Device(values.parse_ifname(name, loc), loc))
        return result

    # -- rule expressions ------------------------------------------------------------------------

    def item(self, expr: Any, path: str) -> Item:
        kind, body = self.single(expr, path)
        path = f"{path}.{kind}"
        loc = Loc(self.filename, path=path)
        if kind == "match":
            return self.match(self.obj(body, path), path, loc)
        if kind == "counter":
            counter = Counter(loc=loc)
            if isinstance(body, str):
                counter.name = values.parse_name(body, loc, "counter name")
            elif body is not None:
                body = self.obj(body, path)
                counter.packets = self.get(body, "packets", path, int)
                counter.bytes = self.get(body, "bytes", path, int)
            return counter
        if kind in ("accept", "drop", "continue", "return"):
            return VerdictStatement(None, loc, kind)
        if kind in ("jump", "goto"):
            target = self.name(self.obj(body, path), "target", path)
            return VerdictStatement(None, loc, kind, target)
        if kind == "flow":
            body = self.obj(body, path)
            if body.get("op", "add") != "add":
                raise self.error(f"unsupported flow op {json.dumps(body['op'])}", f"{path}.op")
            ref = self.get(body, "flowtable", path)
            name_loc = Loc(self.filename, path=f"{path}.flowtable")
            return FlowAdd(values.parse_name(ref.removeprefix("@"), name_loc, "flowtable"), loc)
        if kind in ("snat", "dnat", "masquerade", "redirect"):
            return self.nat(NatKind(kind), body, path, loc)
        if kind == "reject":
            rej = Reject(loc=loc)
            if body is not None:
                body = self.obj(body, path)
                rej.kind = {"tcp reset": "tcp reset", "icmp": "icmp", "icmpv6": "icmpv6",
                            "icmpx": "icmpx"}.get(body.get("type", ""))
                if rej.kind is None:
                    raise self.error(f"unsupported reject type {json.dumps(body.get('type'))}",
                                     f"{path}.type")
                if "expr" in body and rej.kind != "tcp reset":
                    code_type = {"icmp": dt.ICMP_CODE, "icmpv6": dt.ICMPV6_CODE,
                                 "icmpx": dt.ICMPX_CODE}[rej.kind]
                    rej.code = dt.parse_scalar(code_type, str(body["expr"]), loc)
            return rej
        if kind == "log":
            opts = self.obj(body, path) if body is not None else {}
            return Log(tuple((k, f'"{v}"' if k == "prefix" else str(v))
                             for k, v in opts.items()), loc)
        if kind == "limit":
            body = self.obj(body, path)
            rate = self.get(body, "rate", path, int)
            per = self.get(body, "per", path)
            return Limit(rate, per, body.get("burst", 5), bool(body.get("inv", False)),
                         loc=loc)
        if kind == "notrack":
            return Notrack(loc)
        if kind == "xt" and isinstance(body, dict) and body.get("type") == "nft":
            # what nftjson_dump writes for a statement JSON has no form for: its nft text
            text = body.get("name")
            if not isinstance(text, str):
                raise self.error("'xt' of type nft needs its text in 'name'", path)
            items = rules.parse_items(text, f"{self.filename}: {path}.name")
            if len(items) != 1:
                raise self.error("'xt' of type nft holds one statement", path)
            return items[0]
        if kind == "vmap":
            body = self.obj(body, path)
            key = self.expr(body.get("key"), f"{path}.key")
            data = body.get("data")
            if isinstance(data, str) and data.startswith("@"):
                return Vmap(key, SetRef(data[1:]), loc)
            if not (isinstance(data, dict) and isinstance(data.get("set"), list)):
                raise self.error('vmap data must be {"set": [[KEY, VERDICT], ...]}',
                                 f"{path}.data")
            types = expr_types(key)
            pairs = []
            for i, pair in enumerate(data["set"]):
                ppath = f"{path}.data.set[{i}]"
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise self.error("a vmap element is [KEY, VERDICT]", ppath)
                pairs.append((self.typed(types, pair[0], f"{ppath}[0]"),
                              self.verdict(pair[1], f"{ppath}[1]")))
            return Vmap(key, tuple(pairs), loc)
        if kind == "ct helper":
            if not isinstance(body, str):
                raise self.error("ct helper needs a name", path)
            return SetStatement(FIELDS_BY_WORDS[("ct", "helper")], body, loc)
        if kind == "mangle":
            body = self.obj(body, path)
            key = body.get("key")
            if isinstance(key, dict) and isinstance(key.get("tcp option"), dict):
                opt = key["tcp option"]
                value = body.get("value")
                text = (f"tcp option {opt.get('name')} {opt.get('field')} set "
                        + ("rt mtu" if value == {"rt": {"key": "mtu"}} else str(value)))
                if opt.get("name") != "maxseg" or opt.get("field") != "size" or not (
                    value == {"rt": {"key": "mtu"}} or isinstance(value, int)
                ):
                    raise self.error("only tcp option maxseg size can be set", path)
                return Other(text, loc)
            target = self.left(body.get("key"), f"{path}.key")
            value = body.get("value")
            if not isinstance(value, int | str) or isinstance(value, bool):
                raise self.error("unsupported mangle value", f"{path}.value")
            parsed = dt.parse_interval(target.dtype, str(value), loc)
            return SetStatement(target, parsed, loc)
        raise self.error(f"unsupported expression '{kind}'", path)

    def match(self, body: dict, path: str, loc: Loc) -> Match:
        op = self.get(body, "op", path)
        ops = {"==": "==", "!=": "!=", "in": "implicit", "<": "<", ">": ">", "<=": "<=",
               ">=": ">="}
        if op not in ops:
            raise self.error(f"unsupported operator '{op}'", f"{path}.op")
        left = self.expr(body.get("left"), f"{path}.left")
        types = expr_types(left)
        right = body.get("right")
        rpath = f"{path}.right"
        if isinstance(right, str) and right.startswith("@"):
            name = values.parse_name(right[1:], Loc(self.filename, path=rpath), "set name")
            return Match(left, SetRef(name), "!=" if op == "!=" else "==", True, loc)
        is_set = False
        if isinstance(right, dict) and "set" in right:
            raws, rpath, is_set = right["set"], f"{rpath}.set", True
            if not isinstance(raws, list):
                raise self.error("a set needs a list of elements", rpath)
        elif isinstance(right, list) and len(types) == 1:
            if types[0].bitmask:
                value = 0
                for i, raw in enumerate(right):
                    value |= self.typed(types, raw, f"{rpath}[{i}]")[0]  # type: ignore[index]
                return Match(left, ((value, value),), ops[op], False, loc)
            raws, is_set = right, True
        else:
            raws = [right]
        vals = list(dict.fromkeys(
            self.typed(types, raw, f"{rpath}[{i}]") for i, raw in enumerate(raws)))
        if not vals:
            raise self.error("empty set", rpath)
        mode = ops[op]
        if mode == "implicit" and (is_set or not types[0].bitmask or len(types) > 1):
            mode = "=="
        return Match(left, tuple(vals), mode, is_set and len(vals) > 1, loc)

    def expr(self, raw: Any, path: str) -> Expr:
        """A selector, ``{"concat": [...]}`` or ``{"&": [EXPR, MASK]}`` (also | ^ << >>)."""
        kind, body = self.single(raw, path)
        if kind == "concat":
            if not isinstance(body, list) or len(body) < 2:
                raise self.error("concat needs a list of expressions", f"{path}.concat")
            parts = [self.expr(p, f"{path}.concat[{i}]") for i, p in enumerate(body)]
            return Concat(tuple(parts))
        if kind in ("&", "|", "^", "<<", ">>"):
            if not (isinstance(body, list) and len(body) == 2):
                raise self.error(f"'{kind}' needs [EXPR, VALUE]", f"{path}.{kind}")
            inner = self.expr(body[0], f"{path}.{kind}[0]")
            dtype = expr_types(inner)[0] if kind == "&" else dt.INTEGER[32]
            operand = body[1]
            opath = f"{path}.{kind}[1]"
            if isinstance(operand, list):
                mask = 0
                for i, flag in enumerate(operand):
                    mask |= self.typed((dtype,), flag, f"{opath}[{i}]")[0]  # type: ignore[index]
            else:
                mask = self.typed((dtype,), operand, opath)[0]  # type: ignore[index]
            return Masked(inner, kind, mask)
        return self.left(raw, path)

    def typed(self, types: tuple[dt.DataType, ...], raw: Any, path: str) -> Value:
        if raw == "*":
            return "*"  # a map's catch-all element
        if len(types) > 1:
            parts = raw.get("concat") if isinstance(raw, dict) else None
            if not isinstance(parts, list) or len(parts) != len(types):
                raise self.error(f"expected a concatenation of {len(types)} values", path)
            return tuple(self.typed((t,), p, f"{path}.concat[{i}]")
                         for i, (t, p) in enumerate(zip(types, parts, strict=True)))
        return self.value(types[0], raw, path)

    def left(self, left: Any, path: str) -> Field:
        kind, body = self.single(left, path)
        body = self.obj(body, f"{path}.{kind}")
        if kind == "payload":
            words = (body.get("protocol"), body.get("field"))
        else:  # {"meta": {"key": "l4proto"}}, {"ct": {"key": "state"}}
            words = (kind, body.get("key"))
        field = FIELDS_BY_WORDS.get(words)  # type: ignore[arg-type]
        if field is None or (kind == "payload") == (field.ns in ("meta", "ct", "rt")):
            raise self.error(f"unsupported match on {json.dumps(left)}", path)
        return field

    def value(self, dtype: dt.DataType, raw: Any, path: str) -> Value:
        loc = Loc(self.filename, path=path)
        if isinstance(raw, dict) and "prefix" in raw:
            prefix = self.obj(raw["prefix"], f"{path}.prefix")
            raw = f"{prefix.get('addr')}/{prefix.get('len')}"
        elif isinstance(raw, dict) and "range" in raw:
            bounds = raw["range"]
            if not (isinstance(bounds, list) and len(bounds) == 2):
                raise self.error("a range needs two bounds", f"{path}.range")
            raw = f"{bounds[0]}-{bounds[1]}"
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            raise RulesetError(f"unsupported value {json.dumps(raw)}", loc)
        if dtype.is_string:
            if not isinstance(raw, str):
                raise RulesetError(f"{dtype.name} needs a string, not {raw!r}", loc)
            if not raw or len(raw.replace("\\*", "*")) >= dtype.bits // 8:
                raise RulesetError(f"invalid {dtype.name} {json.dumps(raw)}", loc)
            return raw
        return dt.parse_interval(dtype, str(raw), loc)

    def nat(self, kind: NatKind, body: Any, path: str, loc: Loc) -> Nat:
        nat = Nat(kind, loc=loc)
        if body is None:
            if kind in (NatKind.SNAT, NatKind.DNAT):
                raise self.error(f"{kind.value} needs an address", path)
            return nat
        body = self.obj(body, path)
        if "family" in body:
            nat.family = self.family(body, path)
        if "addr" in body:
            addr_loc = Loc(self.filename, path=f"{path}.addr")
            addr = body["addr"]
            if isinstance(addr, dict) and isinstance(addr.get("range"), list):
                addr = "-".join(str(a) for a in addr["range"])
            elif isinstance(addr, dict) and isinstance(addr.get("prefix"), dict):
                addr = f"{addr['prefix'].get('addr')}/{addr['prefix'].get('len')}"
            if not isinstance(addr, str):
                raise RulesetError(f"invalid address {json.dumps(addr)}", addr_loc)
            values.parse_nat_into(nat, addr if ":" not in addr else f"[{addr}]"
                                  if "/" not in addr and "-" not in addr else addr, addr_loc)
        elif kind in (NatKind.SNAT, NatKind.DNAT):
            raise self.error(f"{kind.value} needs an address", path)
        if "port" in body:
            port = body["port"]
            port_loc = Loc(self.filename, path=f"{path}.port")
            if isinstance(port, dict) and isinstance(port.get("range"), list):
                port = "-".join(str(p) for p in port["range"])
            if not isinstance(port, str | int) or isinstance(port, bool):
                raise RulesetError(f"invalid port {json.dumps(port)}", port_loc)
            nat.port_min, nat.port_max = values.parse_port_range(port, port_loc)
        flags = body.get("flags", [])
        flags = [flags] if isinstance(flags, str) else flags
        if not isinstance(flags, list) or not all(
            f in ("random", "fully-random", "persistent", "netmap") for f in flags
        ):
            raise self.error(f"invalid NAT flags {json.dumps(flags)}", f"{path}.flags")
        nat.flags = tuple(flags)
        return nat
