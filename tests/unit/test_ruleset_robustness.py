"""Bad input is a RulesetError with a position, never another exception."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.netfilter.ruleset import Ruleset, RulesetError, load_file, loads

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rulesets" / "router.nft"
TEXT = EXAMPLE.read_text()
JSON_TEXT = json.dumps(load_file(EXAMPLE).to_json())

WORDS = [
    "table", "inet", "ip", "ip6", "t", "chain", "c", "flowtable", "f", "{", "}", ";", "\n",
    "hook", "ingress", "forward", "prerouting", "postrouting", "priority", "-", "+", "0", "filter",
    "type", "nat", "policy", "accept", "drop", "devices", "=", ",", "eth0", "flags", "offload",
    "counter", "packets", "bytes", "flow", "add", "@", "meta", "l4proto", "tcp", "udp", "dport",
    "saddr", "10.0.0.0/8", "::1", "1-2", "ct", "state", "established", "masquerade", "snat",
    "dnat", "to", "1.2.3.4:80", ":5", "[::1]:7", "!=", '"eth1"', "delete", "flush", "ruleset",
    "insert", "rule", "#", "\\\n", "99999",
]  # fmt: skip


def parses_or_errors(text: str) -> None:
    try:
        rs = loads(text, "fuzz")
    except RulesetError as e:
        assert str(e).startswith("fuzz")
    else:
        assert isinstance(rs, Ruleset)
        assert loads(rs.format()) == rs


def test_every_truncation_of_a_valid_ruleset() -> None:
    for end in range(len(TEXT)):
        parses_or_errors(TEXT[:end])


def test_every_truncation_of_valid_json() -> None:
    for end in range(0, len(JSON_TEXT), 7):
        parses_or_errors(JSON_TEXT[:end])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=40))
def test_token_soup(words: list[str]) -> None:
    parses_or_errors(" ".join(words))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text(text: str) -> None:
    parses_or_errors(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 70000) | st.sampled_from(WORDS),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "table",
                    "chain",
                    "rule",
                    "flowtable",
                    "family",
                    "name",
                    "expr",
                    "match",
                    "left",
                    "right",
                    "op",
                    "set",
                    "dev",
                    "prio",
                    "hook",
                    "add",
                    "payload",
                    "protocol",
                    "field",
                    "meta",
                    "key",
                    "snat",
                    "port",
                    "addr",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(json_values, max_size=5))
def test_json_soup(items: list[object]) -> None:
    parses_or_errors(json.dumps({"nftables": items}))


def test_mutated_json_rule_values() -> None:
    doc = json.loads(JSON_TEXT)
    for index, item in enumerate(doc["nftables"]):
        for key in list(item.get("rule", {})):
            for bad in (None, 7, "x", [], {}):
                mutated = json.loads(JSON_TEXT)
                mutated["nftables"][index]["rule"][key] = bad
                parses_or_errors(json.dumps(mutated))
