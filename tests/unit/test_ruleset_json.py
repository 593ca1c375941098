"""``nft -j list ruleset`` JSON: same model as nft syntax, commands, errors naming the JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.netfilter.ruleset import Ruleset, RulesetError, load_file, loads

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rulesets"

NFT_TEXT = """
table inet filter {
	flowtable ft {
		hook ingress priority filter
		devices = { eth0, eth1 }
		flags offload
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		meta l4proto { tcp, udp } flow add @ft
		ct state established,related counter packets 5 bytes 300 accept
		ip saddr 10.0.1.0/24 ip daddr { 10.0.2.1, 10.0.3.0/24 } tcp dport 1000-2000 accept
		ip6 saddr != 2001:db8::/32 udp dport { 53, 123 } iifname "eth0" drop
	}

	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth1" masquerade
		ip daddr 192.0.2.1 meta l4proto tcp snat ip to 198.51.100.1:1024-2048
	}

	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 8080 dnat ip to 10.0.1.1:80
	}
}
"""

# What nft 1.0 prints for NFT_TEXT with `nft -j list ruleset` (handles kept, as nft prints them).
NFT_JSON = {
    "nftables": [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5",
                      "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "filter", "handle": 1}},
        {"flowtable": {"family": "inet", "name": "ft", "table": "filter", "handle": 2,
                       "hook": "ingress", "prio": 0, "dev": ["eth0", "eth1"],
                       "flags": ["offload"]}},
        {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 3,
                   "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
        {"chain": {"family": "inet", "table": "filter", "name": "post", "handle": 8,
                   "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
        {"chain": {"family": "inet", "table": "filter", "name": "pre", "handle": 11,
                   "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 4, "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                       "right": {"set": ["tcp", "udp"]}}},
            {"flow": {"op": "add", "flowtable": "@ft"}}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 5, "expr": [
            {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                       "right": ["established", "related"]}},
            {"counter": {"packets": 5, "bytes": 300}},
            {"accept": None}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 6, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                       "right": {"prefix": {"addr": "10.0.1.0", "len": 24}}}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": {"set": ["10.0.2.1",
                                         {"prefix": {"addr": "10.0.3.0", "len": 24}}]}}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                       "right": {"range": [1000, 2000]}}},
            {"accept": None}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 7, "expr": [
            {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "saddr"}},
                       "right": {"prefix": {"addr": "2001:db8::", "len": 32}}}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                       "right": {"set": [53, 123]}}},
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}},
            {"drop": None}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "post", "handle": 9, "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth1"}},
            {"masquerade": None}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "post", "handle": 10, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": "192.0.2.1"}},
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
            {"snat": {"family": "ip", "addr": "198.51.100.1",
                      "port": {"range": [1024, 2048]}}}]}},
        {"rule": {"family": "inet", "table": "filter", "chain": "pre", "handle": 12, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                       "right": 8080}},
            {"dnat": {"family": "ip", "addr": "10.0.1.1", "port": 80}}]}},
    ]
}  # fmt: skip


def test_nft_syntax_and_nft_json_give_the_same_model() -> None:
    assert loads(json.dumps(NFT_JSON)) == loads(NFT_TEXT)


def test_to_json_round_trips() -> None:
    rs = loads(NFT_TEXT)
    assert loads(json.dumps(rs.to_json())) == rs
    router = load_file(EXAMPLES / "router.nft")
    assert loads(json.dumps(router.to_json())) == router


def test_example_json_is_the_example_ruleset() -> None:
    assert load_file(EXAMPLES / "router.json") == load_file(EXAMPLES / "router.nft")


def test_json_is_auto_detected_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(NFT_JSON, indent=2))
    (ft,) = load_file(path).flowtables()
    assert ft.offload and ft.devices == ("eth0", "eth1")


def test_single_device_and_string_flags() -> None:
    doc = {"nftables": [
        {"table": {"family": "ip", "name": "t"}},
        {"flowtable": {"family": "ip", "table": "t", "name": "f", "hook": "ingress",
                       "prio": "filter", "dev": "eth0", "flags": "offload"}},
    ]}  # fmt: skip
    (ft,) = loads(json.dumps(doc)).flowtables()
    assert ft.devices == ("eth0",) and ft.offload and ft.priority == 0


def test_command_form() -> None:
    doc = {"nftables": [
        {"flush": {"ruleset": None}},
        {"add": {"table": {"family": "inet", "name": "filter"}}},
        {"add": {"flowtable": {"family": "inet", "table": "filter", "name": "ft",
                               "hook": "ingress", "prio": 0, "dev": ["eth0", "eth1"]}}},
        {"add": {"chain": {"family": "inet", "table": "filter", "name": "forward",
                           "type": "filter", "hook": "forward", "prio": 0}}},
        {"add": {"rule": {"family": "inet", "table": "filter", "chain": "forward",
                          "expr": [{"flow": {"op": "add", "flowtable": "@ft"}}]}}},
        {"insert": {"rule": {"family": "inet", "table": "filter", "chain": "forward",
                             "expr": [{"counter": None}]}}},
    ]}  # fmt: skip
    rs = loads(json.dumps(doc))
    assert rs == loads(
        "table inet filter { flowtable ft { hook ingress priority 0; devices = { eth0, eth1 }; }"
        " chain forward { type filter hook forward priority 0; counter; flow add @ft } }"
    )
    deleted = rs.apply(json.dumps({"nftables": [
        {"delete": {"table": {"family": "inet", "name": "filter"}}}]}))  # fmt: skip
    assert deleted == Ruleset()


def test_flush_chain_then_delete_flowtable_in_json() -> None:
    doc = {"nftables": [
        {"flush": {"chain": {"family": "inet", "table": "filter", "name": "forward"}}},
        {"delete": {"flowtable": {"family": "inet", "table": "filter", "name": "ft"}}},
        {"delete": {"chain": {"family": "inet", "table": "filter", "name": "pre"}}},
        {"flush": {"table": {"family": "inet", "name": "filter"}}},
    ]}  # fmt: skip
    rs = loads(NFT_TEXT).apply(json.dumps(doc))
    table = rs.table("inet", "filter")
    assert rs.flowtables() == [] and list(table.chains) == ["forward", "post"]
    assert all(not chain.rules for chain in table.chains.values())


def test_delete_flowtable_in_use_is_busy_in_json_too() -> None:
    rs = loads(NFT_TEXT)
    doc = {
        "nftables": [{"delete": {"flowtable": {"family": "inet", "table": "filter", "name": "ft"}}}]
    }
    with pytest.raises(RulesetError) as e:
        rs.apply(json.dumps(doc), "del.json")
    assert str(e.value).startswith(
        "del.json: $.nftables[0].delete.flowtable: Could not process rule: Device or resource busy"
    )


def rule_doc(*expr: object) -> str:
    return json.dumps({"nftables": [
        {"table": {"family": "ip", "name": "t"}},
        {"chain": {"family": "ip", "table": "t", "name": "c", "type": "filter",
                   "hook": "forward", "prio": 0, "policy": "accept"}},
        {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": list(expr)}},
    ]})  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            rule_doc(
                {
                    "match": {
                        "op": "==",
                        "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                        "right": "httpx",
                    }
                }
            ),
            "r.json: $.nftables[2].rule.expr[0].match.right[0]: 'httpx' is not a valid "
            "inet_service value",
        ),
        (
            rule_doc(
                {
                    "match": {
                        "op": "==",
                        "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                        "right": {"set": [22, 99999]},
                    }
                }
            ),
            "r.json: $.nftables[2].rule.expr[0].match.right.set[1]: value 99999 exceeds valid "
            "range 0-65535 of inet_service",
        ),
        (
            rule_doc({"match": {"op": "==", "left": {"meta": {"key": "bogus"}}, "right": 1}}),
            "r.json: $.nftables[2].rule.expr[0].match.left: unsupported match on "
            '{"meta": {"key": "bogus"}}',
        ),
        (
            rule_doc({"flow": {"op": "add", "flowtable": "@nope"}}),
            "r.json: $.nftables[2].rule.expr[0].flow: Could not process rule: No such file or "
            "directory (flowtable 'nope' does not exist in table ip t)",
        ),
        (
            rule_doc({"accept": None}, {"counter": None}),
            "r.json: $.nftables[2].rule.expr[1].counter: Statement after terminal statement has "
            "no effect",
        ),
        (
            rule_doc({"synproxy": None}),
            "r.json: $.nftables[2].rule.expr[0].synproxy: unsupported expression 'synproxy'",
        ),
        (
            '{"nftables": [{"table": {"family": "bridge", "name": "t"}}]}',
            "r.json: $.nftables[0].table.family: unsupported family 'bridge' (only ip, ip6, inet)",
        ),
        (
            '{"nftables": [{"table": {"family": "ip"}}]}',
            "r.json: $.nftables[0].table: missing 'name'",
        ),
        ('{"nftables": {}}', 'r.json: $: expected {"nftables": [...]}'),
        ('{"nftables": [\n  {"table": }\n]}', "r.json:2:13: invalid JSON: Expecting value"),
        (
            '{"nftables": [{"table": {"family": "ip", "name": "a b"}}]}',
            "r.json: $.nftables[0].table.name: invalid name 'a b'",
        ),
        (
            '{"nftables": ' + "[" * 100000 + "]" * 100000 + "}",
            "r.json:1:1: invalid JSON: nested too deeply",
        ),
    ],
)
def test_json_errors_name_the_json_path(text: str, expected: str) -> None:
    with pytest.raises(RulesetError) as e:
        loads(text, "r.json")
    assert str(e.value) == expected
