"""nft syntax: the seed spellings, the kernel documentation example, every statement, scripts."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from controller.netfilter.ruleset import Family, Hook, Ruleset, RulesetError, load_file, loads
from controller.netfilter.ruleset.format import format_rule
from controller.netfilter.ruleset.model import (
    ChainType,
    Counter,
    FlowAdd,
    Match,
    Nat,
    NatKind,
    Rule,
    VerdictStatement,
)

KERNEL_DOC_EXAMPLE = (
    "table inet x { flowtable f { hook ingress priority 0; devices = { eth0, eth1 }; } "
    "chain y { type filter hook forward priority 0; policy accept; "
    "ip protocol tcp flow offload @f; counter packets 0 bytes 0 } }"
)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rulesets"


def only_rule_items(text: str, family: str = "inet") -> list:
    """Items of the single rule of chain c in a fresh table with a forward chain."""
    rs = loads(
        f"table {family} t {{ flowtable f {{ hook ingress priority 0; }}\n"
        f"chain c {{ type filter hook forward priority 0;\n{text}\n}} }}"
    )
    (rule,) = rs.table(family, "t").chains["c"].rules
    return rule.items


def test_kernel_doc_example_loads_verbatim() -> None:
    rs = loads(KERNEL_DOC_EXAMPLE)
    (ft,) = rs.flowtables()
    assert (ft.family, ft.table, ft.name, ft.hook, ft.priority) == (
        Family.INET,
        "x",
        "f",
        "ingress",
        0,
    )
    assert ft.devices == ("eth0", "eth1")
    assert not ft.offload and not ft.counter
    chain = rs.table("inet", "x").chains["y"]
    assert chain.base.hook is Hook.FORWARD and chain.base.type is ChainType.FILTER
    assert [type(i) for i in chain.rules[0].items] == [Match, FlowAdd]
    assert chain.rules[1].items == [Counter(0, 0)]


@pytest.mark.parametrize(
    "body",
    [
        "hook ingress priority -100 devices = { eth0, eth1 };",
        "hook ingress priority -100; devices = { eth0, eth1 };",
    ],
)
def test_seed_spelling_negative_priority_without_separator(body: str) -> None:
    (ft,) = loads(f"table ip t {{ flowtable f {{ {body} }} }}").flowtables()
    assert ft.priority == -100 and ft.devices == ("eth0", "eth1")


def test_seed_spelling_with_separator_flags_and_counter() -> None:
    text = """
    table inet t {
        flowtable f {
            hook ingress priority 0; devices = { eth0, eth1 };
            flags offload;
            counter;
        }
    }
    """
    (ft,) = loads(text).flowtables()
    assert ft.priority == 0 and ft.offload and ft.counter


@pytest.mark.parametrize(
    ("prio", "value"),
    [("filter", 0), ("filter + 10", 10), ("filter - 5", -5), ("-300", -300), ("20", 20)],
)
def test_flowtable_priorities(prio: str, value: int) -> None:
    (ft,) = loads(f"table ip t {{ flowtable f {{ hook ingress priority {prio}; }} }}").flowtables()
    assert ft.priority == value


@pytest.mark.parametrize(
    ("hook", "prio", "value"),
    [
        ("prerouting", "dstnat", -100),
        ("postrouting", "srcnat", 100),
        ("forward", "raw", -300),
        ("forward", "mangle", -150),
        ("input", "security", 50),
        ("output", "dstnat + 1", -99),
    ],
)
def test_chain_priorities(hook: str, prio: str, value: int) -> None:
    rs = loads(f"table ip t {{ chain c {{ type filter hook {hook} priority {prio}; }} }}")
    assert rs.table("ip", "t").chains["c"].base.priority == value


def test_dstnat_is_not_a_priority_on_the_forward_hook() -> None:
    with pytest.raises(RulesetError) as e:
        loads("table ip t {\n chain c { type filter hook forward priority dstnat; }\n}")
    assert str(e.value) == "<string>:2:46: 'dstnat' is invalid priority in this context."


def test_table_family_defaults_to_ip_and_policy_drop() -> None:
    rs = loads("table t { chain c { type filter hook input priority 0; policy drop; } }")
    chain = rs.table("ip", "t").chains["c"]
    assert chain.base.policy_accept is False


def rule_text(rule: str) -> str:
    return format_rule(Rule(only_rule_items(rule)))


def test_matches() -> None:
    items = only_rule_items(
        "meta l4proto { tcp, udp } ip protocol tcp ct state { established, related } "
        "ip saddr 10.0.0.0/8 ip daddr { 192.0.2.1, 198.51.100.0/24 } tcp sport 1024-65535 "
        'tcp dport { 22, 80 } iifname "eth0" oifname { "eth1", eth2 } accept'
    )
    fields = [(m.field.nft, m.values) for m in items if isinstance(m, Match)]
    ip = lambda a: int(ipaddress.ip_address(a))  # noqa: E731
    assert fields == [
        ("meta l4proto", ((6, 6), (17, 17))),
        ("ip protocol", ((6, 6),)),
        ("ct state", ((2, 2), (4, 4))),
        ("ip saddr", ((ip("10.0.0.0"), ip("10.255.255.255")),)),
        ("ip daddr", ((ip("192.0.2.1"), ip("192.0.2.1")),
                      (ip("198.51.100.0"), ip("198.51.100.255")))),
        ("tcp sport", ((1024, 65535),)),
        ("tcp dport", ((22, 22), (80, 80))),
        ("iifname", ("eth0",)),
        ("oifname", ("eth1", "eth2")),
    ]
    assert items[-1] == VerdictStatement(True)


def test_ip6_and_udp_matches_and_negation() -> None:
    text = (
        "ip6 saddr 2001:db8::/32 ip6 daddr != ::1 udp dport != { 53, 123 } "
        "ct state != invalid udp sport 53 drop"
    )
    assert rule_text(text) == (
        "ip6 saddr 2001:db8::/32 ip6 daddr != ::1 udp dport != { 53, 123 } "
        "ct state != invalid udp sport 53 drop"
    )
    assert only_rule_items(text)[1].negate


def test_ct_state_bitmask_spelling_and_set_spelling() -> None:
    assert rule_text("ct state established,related accept") == (
        "ct state established,related accept"
    )
    assert rule_text("ct state { established, related } accept") == (
        "ct state { established, related } accept"
    )


def test_counter_with_and_without_values() -> None:
    assert only_rule_items("counter") == [Counter(0, 0)]
    assert only_rule_items("counter packets 12 bytes 3400") == [Counter(12, 3400)]


@pytest.mark.parametrize("spelling", ["flow add @f", "flow offload @f"])
def test_flow_add_spellings(spelling: str) -> None:
    assert only_rule_items(f"meta l4proto tcp {spelling}")[-1] == FlowAdd("f")


def nat_items(chain_hook: str, statement: str, family: str = "ip") -> Nat:
    rs = loads(
        f"table {family} n {{ chain c {{ type nat hook {chain_hook} priority 0;\n{statement}\n}} }}"
    )
    return rs.table(family, "n").chains["c"].rules[0].items[-1]


@pytest.mark.parametrize(
    ("hook", "statement", "expected"),
    [
        ("postrouting", "masquerade", Nat(NatKind.MASQUERADE)),
        (
            "postrouting",
            "meta l4proto tcp masquerade to :1024-2048",
            Nat(NatKind.MASQUERADE, None, 1024, 2048),
        ),
        ("postrouting", "snat to 192.0.2.1", Nat(NatKind.SNAT, ipaddress.ip_address("192.0.2.1"))),
        (
            "postrouting",
            "meta l4proto tcp snat to 192.0.2.1:1000-2000",
            Nat(NatKind.SNAT, ipaddress.ip_address("192.0.2.1"), 1000, 2000),
        ),
        (
            "postrouting",
            "meta l4proto udp snat ip to 192.0.2.1:5000",
            Nat(NatKind.SNAT, ipaddress.ip_address("192.0.2.1"), 5000, 5000, Family.IP),
        ),
        (
            "prerouting",
            "tcp dport 8080 dnat to 10.0.1.1:80",
            Nat(NatKind.DNAT, ipaddress.ip_address("10.0.1.1"), 80, 80),
        ),
        (
            "output",
            "dnat ip to 10.0.1.1",
            Nat(NatKind.DNAT, ipaddress.ip_address("10.0.1.1"), family=Family.IP),
        ),
    ],
)
def test_nat_statements(hook: str, statement: str, expected: Nat) -> None:
    assert nat_items(hook, statement) == expected


def test_ip6_dnat_with_bracketed_address_and_port() -> None:
    nat = nat_items("prerouting", "tcp dport 80 dnat ip6 to [2001:db8::5]:80", family="inet")
    assert nat == Nat(NatKind.DNAT, ipaddress.ip_address("2001:db8::5"), 80, 80, Family.IP6)


def test_comments_newlines_and_semicolons() -> None:
    text = """# leading comment
    table ip t { # trailing comment
        chain c {
            type filter hook forward priority 0; policy accept  # no semicolon
            tcp dport 22 accept; udp dport 53 accept
            counter \\
                accept
        }
    }
    """
    chain = loads(text).table("ip", "t").chains["c"]
    assert len(chain.rules) == 3
    assert chain.rules[2].items == [Counter(), VerdictStatement(True)]


def test_add_commands_build_the_same_ruleset_as_a_block() -> None:
    script = """
    add table inet x
    add flowtable inet x f { hook ingress priority 0; devices = { eth0, eth1 }; }
    add chain inet x y { type filter hook forward priority 0; policy accept; }
    add rule inet x y ip protocol tcp flow offload @f
    add rule inet x y counter packets 0 bytes 0
    """
    assert loads(script) == loads(KERNEL_DOC_EXAMPLE)


def test_insert_rule_prepends() -> None:
    rs = loads(KERNEL_DOC_EXAMPLE).apply("insert rule inet x y drop")
    assert rs.table("inet", "x").chains["y"].rules[0].items == [VerdictStatement(False)]


def test_rules_may_reference_a_flowtable_declared_later_in_the_block() -> None:
    rs = loads(
        "table ip t { chain c { type filter hook forward priority 0; flow add @f }\n"
        "flowtable f { hook ingress priority 0; } }"
    )
    assert [ft.name for ft in rs.flowtables()] == ["f"]


def test_flush_ruleset_and_delete_table() -> None:
    rs = loads(KERNEL_DOC_EXAMPLE + "\ntable ip other { }")
    assert loads("flush ruleset").tables == {}
    assert list(rs.apply("flush ruleset").tables) == []
    assert list(rs.apply("flush ruleset ip").tables) == [(Family.INET, "x")]
    assert list(rs.apply("delete table inet x").tables) == [(Family.IP, "other")]


def test_apply_leaves_the_original_untouched_on_error() -> None:
    rs = loads(KERNEL_DOC_EXAMPLE)
    before = rs.format()
    with pytest.raises(RulesetError):
        rs.apply("add rule inet x y accept\nadd rule inet x nochain accept")
    assert rs.format() == before


def test_format_is_nft_list_style_and_reparses_to_the_same_model() -> None:
    rs = loads(KERNEL_DOC_EXAMPLE)
    assert rs.format() == (
        "table inet x {\n"
        "\tflowtable f {\n"
        "\t\thook ingress priority filter\n"
        "\t\tdevices = { eth0, eth1 }\n"
        "\t}\n"
        "\n"
        "\tchain y {\n"
        "\t\ttype filter hook forward priority filter; policy accept;\n"
        "\t\tip protocol tcp flow add @f\n"
        "\t\tcounter packets 0 bytes 0\n"
        "\t}\n"
        "}\n"
    )
    assert loads(rs.format()) == rs


def test_example_ruleset_round_trips_through_format() -> None:
    rs = load_file(EXAMPLES / "router.nft")
    assert loads(rs.format()) == rs
    (ft,) = rs.flowtables()
    assert ft.offload and ft.counter and ft.devices == ("eth0", "eth1")


def test_ruleset_equality_ignores_source_positions() -> None:
    assert loads(KERNEL_DOC_EXAMPLE) == loads(KERNEL_DOC_EXAMPLE.replace(" ", "  "))
    assert loads(KERNEL_DOC_EXAMPLE) != Ruleset()
