"""Builders for hand-made BMv2 JSON programs in exactly the shapes p4c-bm2-ss emits.

p4c is not installed here, so interpreter tests describe small v1model programs with these
helpers; every node below mirrors what p4c writes (type/value objects, ``expression`` wrappers,
``runtime_data`` params, ``next_tables``, ``default_entry`` ...).
"""

from __future__ import annotations

from typing import Any

STANDARD_METADATA = [
    ["ingress_port", 9, False], ["egress_spec", 9, False], ["egress_port", 9, False],
    ["instance_type", 32, False], ["packet_length", 32, False], ["enq_timestamp", 32, False],
    ["enq_qdepth", 19, False], ["deq_timedelta", 32, False], ["deq_qdepth", 19, False],
    ["ingress_global_timestamp", 48, False], ["egress_global_timestamp", 48, False],
    ["mcast_grp", 16, False], ["egress_rid", 16, False], ["checksum_error", 1, False],
    ["parser_error", 32, False], ["priority", 3, False], ["_padding", 3, False],
]
ETHERNET = [["dstAddr", 48, False], ["srcAddr", 48, False], ["etherType", 16, False]]
IPV4 = [
    ["version", 4, False], ["ihl", 4, False], ["diffserv", 8, False], ["totalLen", 16, False],
    ["identification", 16, False], ["flags", 3, False], ["fragOffset", 13, False],
    ["ttl", 8, False], ["protocol", 8, False], ["hdrChecksum", 16, False],
    ["srcAddr", 32, False], ["dstAddr", 32, False],
]
UDP = [["srcPort", 16, False], ["dstPort", 16, False], ["length_", 16, False],
       ["checksum", 16, False]]
TCP = [
    ["srcPort", 16, False], ["dstPort", 16, False], ["seqNo", 32, False], ["ackNo", 32, False],
    ["dataOffset", 4, False], ["res", 4, False], ["flags", 8, False], ["window", 16, False],
    ["checksum", 16, False], ["urgentPtr", 16, False],
]


def fld(h: str, f: str) -> dict:
    return {"type": "field", "value": [h, f]}


def hexstr(v: int, width_bytes: int = 0) -> dict:
    return {"type": "hexstr", "value": hx(v, width_bytes)}


def hx(v: int, width_bytes: int = 0) -> str:
    if v < 0:
        return "-" + hx(-v, width_bytes)
    return "0x" + format(v, f"0{max(width_bytes, 1) * 2}x")


def rd(i: int) -> dict:
    return {"type": "runtime_data", "value": i}


def local(i: int) -> dict:
    return {"type": "local", "value": i}


def op(o: str, left: Any, right: Any, **extra: Any) -> dict:
    """An expression node wrapped as p4c does: {"type": "expression", "value": {op,left,right}}."""
    return {"type": "expression", "value": {"op": o, "left": left, "right": right, **extra}}


def bare(o: str, left: Any, right: Any, **extra: Any) -> dict:
    return {"op": o, "left": left, "right": right, **extra}


def valid(h: str) -> dict:
    return op("d2b", None, fld(h, "$valid$"))


def prim(name: str, *params: dict) -> dict:
    return {"op": name, "parameters": list(params), "source_info": {"filename": "t.p4"}}


def assign(dst: dict, src: dict) -> dict:
    return prim("assign", dst, src)


def action(aid: int, name: str, params: list[tuple[str, int]], prims: list[dict]) -> dict:
    return {
        "name": name, "id": aid,
        "runtime_data": [{"name": n, "bitwidth": w} for n, w in params],
        "primitives": prims,
    }


def key(mt: str, h: str, f: str, name: str | None = None, mask: str | None = None) -> dict:
    return {"match_type": mt, "name": name or f"hdr.{h}.{f}", "target": [h, f], "mask": mask}


def table(tid: int, name: str, keys: list[dict], actions: list[tuple[int, str]],
          default: tuple[int, list[str]] | None = None, *, const_default: bool = False,
          match_type: str = "exact", size: int = 1024, next_tables: dict | None = None,
          base_default_next: str | None = None, with_counters: bool = False,
          support_timeout: bool = False, entries: list | None = None) -> dict:
    t = {
        "name": name, "id": tid, "source_info": {}, "key": keys, "match_type": match_type,
        "type": "simple", "max_size": size, "with_counters": with_counters,
        "support_timeout": support_timeout, "direct_meters": None,
        "action_ids": [a for a, _ in actions], "actions": [n for _, n in actions],
        "base_default_next": base_default_next,
        "next_tables": next_tables if next_tables is not None
        else {n: base_default_next for _, n in actions},
    }
    if default is not None:
        t["default_entry"] = {"action_id": default[0], "action_const": const_default,
                              "action_data": default[1], "action_entry_const": const_default}
    if entries:
        t["entries"] = entries
    return t


def conditional(cid: int, name: str, expr: dict, true_next: str | None,
                false_next: str | None) -> dict:
    return {"name": name, "id": cid, "source_info": {}, "expression": expr,
            "true_next": true_next, "false_next": false_next}


def state(name: str, ops: list[dict], key: list[dict] | None = None,
          transitions: list[dict] | None = None) -> dict:
    return {"name": name, "id": 0, "parser_ops": ops, "transition_key": key or [],
            "transitions": transitions or [{"type": "default", "value": None, "mask": None,
                                            "next_state": None}]}


def extract(h: str) -> dict:
    return {"op": "extract", "parameters": [{"type": "regular", "value": h}]}


def trans(value: str | None, nxt: str | None, mask: str | None = None,
          kind: str = "hexstr") -> dict:
    return {"type": "default" if value is None else kind, "value": value, "mask": mask,
            "next_state": nxt}


def program(*, header_types: list[tuple[str, list]], headers: list[tuple[str, str, bool]],
            states: list[dict], ingress: dict, egress: dict | None = None,
            actions: list[dict], deparse: list[str], header_stacks: list | None = None,
            calculations: list | None = None, checksums: list | None = None,
            counter_arrays: list | None = None, register_arrays: list | None = None,
            parse_vsets: list | None = None, errors: list | None = None,
            meter_arrays: list | None = None, header_union_types: list | None = None,
            header_unions: list | None = None,
            header_union_stacks: list | None = None) -> dict:
    types = [{"name": "scalars_0", "id": 0, "fields": []},
             {"name": "standard_metadata", "id": 1, "fields": STANDARD_METADATA}]
    types += [{"name": n, "id": i + 2, "fields": f} for i, (n, f) in enumerate(header_types)]
    hdrs = [{"name": "scalars", "id": 0, "header_type": "scalars_0", "metadata": True,
             "pi_omit": True},
            {"name": "standard_metadata", "id": 1, "header_type": "standard_metadata",
             "metadata": True, "pi_omit": True}]
    hdrs += [{"name": n, "id": i + 2, "header_type": t, "metadata": m, "pi_omit": True}
             for i, (n, t, m) in enumerate(headers)]
    for i, st in enumerate(states):
        st["id"] = i
    return {
        "header_types": types, "headers": hdrs, "header_stacks": header_stacks or [],
        "header_union_types": header_union_types or [], "header_unions": header_unions or [],
        "header_union_stacks": header_union_stacks or [],
        "field_lists": [],
        "errors": errors or [["NoError", 0], ["PacketTooShort", 1], ["NoMatch", 2],
                             ["StackOutOfBounds", 3], ["HeaderTooShort", 4],
                             ["ParserTimeout", 5], ["ParserInvalidArgument", 6]],
        "enums": [],
        "parsers": [{"name": "parser", "id": 0, "init_state": states[0]["name"],
                     "parse_states": states}],
        "parse_vsets": parse_vsets or [],
        "deparsers": [{"name": "deparser", "id": 0, "source_info": {}, "order": deparse,
                       "primitives": []}],
        "meter_arrays": meter_arrays or [], "counter_arrays": counter_arrays or [],
        "register_arrays": register_arrays or [], "calculations": calculations or [],
        "learn_lists": [], "actions": actions,
        "pipelines": [ingress, egress or {"name": "egress", "id": 1, "source_info": {},
                                          "init_table": None, "action_profiles": [],
                                          "tables": [], "action_calls": [],
                                          "conditionals": []}],
        "checksums": checksums or [], "force_arith": [], "extern_instances": [],
        "field_aliases": [],
        "program": "t.p4", "__meta__": {"version": [2, 23], "compiler": "hand-made"},
    }


def pipeline(name: str, pid: int, init: str | None, tables: list[dict],
             conditionals: list[dict] | None = None) -> dict:
    return {"name": name, "id": pid, "source_info": {}, "init_table": init,
            "action_profiles": [], "tables": tables, "action_calls": [],
            "conditionals": conditionals or []}


IPV4_CSUM_FIELDS = ["version", "ihl", "diffserv", "totalLen", "identification", "flags",
                    "fragOffset", "ttl", "protocol", "srcAddr", "dstAddr"]


def ipv4_checksum_calc(cid: int = 0, name: str = "calc") -> dict:
    return {"name": name, "id": cid, "algo": "csum16",
            "input": [fld("ipv4", f) for f in IPV4_CSUM_FIELDS]}


def udp_checksum_calc(cid: int = 1, name: str = "calc_0") -> dict:
    return {"name": name, "id": cid, "algo": "csum16", "input": [
        fld("ipv4", "srcAddr"), fld("ipv4", "dstAddr"),
        {"type": "hexstr", "value": "0x00", "bitwidth": 8}, fld("ipv4", "protocol"),
        fld("udp", "length_"), fld("udp", "srcPort"), fld("udp", "dstPort"),
        fld("udp", "length_"), {"type": "payload", "value": None}]}


def checksum(cid: int, name: str, target: tuple[str, str], calc: str, cond: dict | None,
             *, verify: bool = True, update: bool = True) -> dict:
    return {"name": name, "id": cid, "source_info": {}, "target": list(target),
            "type": "generic", "calculation": calc, "verify": verify, "update": update,
            "if_cond": cond}


def router_program() -> dict:
    """Ethernet/IPv4/TCP/UDP; exact forward on ipv4.dstAddr rewriting MACs and TTL; IPv4 and
    UDP (with payload) checksums updated; the exact-match forward-and-rewrite bench program."""
    actions = [
        action(0, "NoAction", [], []),
        action(1, "ingress.forward", [("port", 9), ("dmac", 48), ("smac", 48)], [
            assign(fld("standard_metadata", "egress_spec"), rd(0)),
            assign(fld("ethernet", "dstAddr"), rd(1)),
            assign(fld("ethernet", "srcAddr"), rd(2)),
            assign(fld("ipv4", "ttl"), op("&", op("+", fld("ipv4", "ttl"), hexstr(0xFF, 1)),
                                            hexstr(0xFF, 1))),
        ]),
        action(2, "ingress.drop", [], [prim("mark_to_drop", {"type": "header",
                                                              "value": "standard_metadata"})]),
    ]
    fwd = table(0, "ingress.fwd", [key("exact", "ipv4", "dstAddr")],
                [(1, "ingress.forward"), (2, "ingress.drop"), (0, "NoAction")],
                (2, []), with_counters=True, support_timeout=True)
    ingress = pipeline("ingress", 0, "node_2", [fwd], [
        conditional(0, "node_2", valid("ipv4"), "ingress.fwd", None)])
    states = [
        state("start", [extract("ethernet")], [fld("ethernet", "etherType")],
              [trans("0x0800", "parse_ipv4"), trans(None, None)]),
        state("parse_ipv4", [extract("ipv4")], [fld("ipv4", "protocol")],
              [trans("0x06", "parse_tcp"), trans("0x11", "parse_udp"), trans(None, None)]),
        state("parse_tcp", [extract("tcp")]),
        state("parse_udp", [extract("udp")]),
    ]
    return program(
        header_types=[("ethernet_t", ETHERNET), ("ipv4_t", IPV4), ("tcp_t", TCP),
                      ("udp_t", UDP)],
        headers=[("ethernet", "ethernet_t", False), ("ipv4", "ipv4_t", False),
                 ("tcp", "tcp_t", False), ("udp", "udp_t", False)],
        states=states, ingress=ingress, actions=actions,
        deparse=["ethernet", "ipv4", "tcp", "udp"],
        calculations=[ipv4_checksum_calc(), udp_checksum_calc()],
        checksums=[
            checksum(0, "cksum", ("ipv4", "hdrChecksum"), "calc", valid("ipv4")),
            checksum(1, "cksum_0", ("udp", "checksum"), "calc_0",
                     op("and", valid("udp"),
                        op("!=", fld("udp", "checksum"), hexstr(0, 2))), verify=False),
        ],
    )


def union_type(name: str, members: list[tuple[str, str]], uid: int = 0) -> dict:
    """A ``header_union_types`` entry: member name and header type, in declaration order."""
    return {"name": name, "id": uid, "headers": [[m, t] for m, t in members]}


def header_union(name: str, union_type_name: str, header_ids: list[int], uid: int = 0) -> dict:
    """A ``header_unions`` entry; p4c names the member instances ``<union>.<member>``."""
    return {"name": name, "id": uid, "union_type": union_type_name, "header_ids": header_ids,
            "pi_omit": True}


def union_stack(name: str, union_type_name: str, union_ids: list[int], sid: int = 0) -> dict:
    """A ``header_union_stacks`` entry; p4c names its unions ``<stack>[i]``."""
    return {"name": name, "id": sid, "union_type": union_type_name, "size": len(union_ids),
            "header_union_ids": union_ids}
