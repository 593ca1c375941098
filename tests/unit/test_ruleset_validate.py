"""nft's validation rules, each error pointing at the offending token (FILE:LINE:COL)."""

from __future__ import annotations

import pytest

from controller.netfilter.ruleset import RulesetError, loads

BASE = """table inet t {
\tflowtable f {
\t\thook ingress priority 0; devices = { eth0, eth1 };
\t}
\tchain fwd {
\t\ttype filter hook forward priority 0;
\t}
\tchain pre {
\t\ttype nat hook prerouting priority dstnat;
\t}
\tchain post {
\t\ttype nat hook postrouting priority srcnat;
\t}
\tchain in {
\t\ttype filter hook input priority 0;
\t}
}
"""


def error_of(text: str, filename: str = "rules.nft") -> str:
    with pytest.raises(RulesetError) as e:
        loads(text, filename)
    return str(e.value)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "add rule inet t fwd flow add @nope",
            "rules.nft:18:21: Could not process rule: No such file or directory "
            "(flowtable 'nope' does not exist in table inet t)",
        ),
        (
            "add rule inet t in meta l4proto tcp flow add @f",
            "rules.nft:18:37: Could not process rule: Operation not supported "
            "(flow add is only valid in filter chains on the forward hook)",
        ),
        (
            "add rule inet t pre flow offload @f",
            "rules.nft:18:21: Could not process rule: Operation not supported "
            "(flow add is only valid in filter chains on the forward hook)",
        ),
        (
            "add rule inet t fwd masquerade",
            "rules.nft:18:21: Could not process rule: Operation not supported "
            "(masquerade is only valid in nat chains)",
        ),
        (
            "add rule inet t pre snat ip to 10.0.0.1",
            "rules.nft:18:21: Could not process rule: Operation not supported "
            "(snat is only valid on the input or postrouting hooks)",
        ),
        (
            "add rule inet t post tcp dport 80 dnat ip to 10.0.0.1",
            "rules.nft:18:35: Could not process rule: Operation not supported "
            "(dnat is only valid on the output or prerouting hooks)",
        ),
        (
            "add rule inet t fwd accept counter",
            "rules.nft:18:28: Statement after terminal statement has no effect",
        ),
        (
            "add rule inet t fwd ip saddr 10.0.0.1 ip6 daddr ::1 accept",
            "rules.nft:18:39: conflicting protocols specified: ip vs. ip6",
        ),
        (
            "add rule inet t fwd tcp dport 22 udp sport 53 accept",
            "rules.nft:18:34: conflicting protocols specified: tcp vs. udp",
        ),
        (
            "add rule inet t post ip6 saddr ::1 snat ip to 10.0.0.1",
            "rules.nft:18:36: conflicting protocols specified: ip6 vs. ip",
        ),
        (
            "add rule inet t nochain accept",
            "rules.nft:18:1: Could not process rule: No such file or directory "
            "(no chain nochain in table inet t)",
        ),
        (
            "add rule ip t fwd accept",
            "rules.nft:18:1: Could not process rule: No such file or directory (no table ip t)",
        ),
    ],
)
def test_rule_errors_point_at_the_offending_token(script: str, expected: str) -> None:
    assert error_of(BASE + script) == expected


def test_ip_match_in_an_ip6_table() -> None:
    text = (
        "table ip6 t {\n  chain c {\n    type filter hook forward priority 0\n"
        "    tcp dport 22 ip saddr 10.0.0.1 accept\n  }\n}\n"
    )
    assert error_of(text) == (
        "rules.nft:4:18: conflicting protocols specified: ip6 vs. ip"
    )


def test_ip6_address_in_an_ip_table_snat() -> None:
    text = (
        "table ip n {\n chain c {\n  type nat hook postrouting priority 100;\n"
        "  snat to 2001:db8::1\n }\n}"
    )
    assert error_of(text) == (
        "rules.nft:4:3: conflicting protocols specified: ip vs. ip6 address in snat"
    )


def test_nat_chain_on_the_forward_hook_is_refused() -> None:
    text = "table ip n {\n\tchain c {\n\t\ttype nat hook forward priority 0;\n\t}\n}\n"
    assert error_of(text) == (
        "rules.nft:3:3: Could not process rule: Operation not supported "
        "(nat chains cannot attach to the forward hook)"
    )


def test_one_flowtable_per_device_per_table() -> None:
    text = BASE + "add flowtable inet t g { hook ingress priority 10; devices = { eth2, eth1 }; }"
    assert error_of(text) == (
        "rules.nft:18:70: Could not process rule: File exists "
        "(device eth1 already belongs to flowtable f of table inet t)"
    )


def test_the_same_device_in_flowtables_of_different_tables_is_allowed() -> None:
    rs = loads(BASE + "table ip u { flowtable g { hook ingress priority 0; devices = { eth0 }; } }")
    assert [ft.devices for ft in rs.flowtables()] == [("eth0", "eth1"), ("eth0",)]


def test_add_flowtable_updates_devices_and_counter() -> None:
    rs = loads(BASE).apply(
        "add flowtable inet t f { devices = { eth1, eth2 }; }\n"
        "add flowtable inet t f { hook ingress priority 0; counter; }"
    )
    (ft,) = rs.flowtables()
    assert ft.devices == ("eth0", "eth1", "eth2")
    assert ft.counter and not ft.offload


def test_offload_flag_cannot_be_set_after_creation() -> None:
    text = BASE + "add flowtable inet t f {\n\tflags offload;\n}"
    assert error_of(text) == (
        "rules.nft:19:2: Could not process rule: Operation not supported "
        "(the offload flag of flowtable f cannot be set after creation)"
    )


def test_offload_flag_cannot_be_cleared_by_a_counter_only_update() -> None:
    rs = loads("table ip t { flowtable f { hook ingress priority 0; flags offload; } }")
    with pytest.raises(RulesetError) as e:
        rs.apply("add flowtable ip t f { counter; }", "apply.nft")
    assert str(e.value) == (
        "apply.nft:1:24: Could not process rule: Operation not supported "
        "(the offload flag of flowtable f cannot be cleared after creation)"
    )
    (ft,) = rs.apply("add flowtable ip t f { counter; flags offload; }").flowtables()
    assert ft.offload and ft.counter


def test_flowtable_priority_cannot_change() -> None:
    text = BASE + "add flowtable inet t f { hook ingress priority 5; }"
    assert error_of(text).startswith("rules.nft:18:26: Could not process rule: Operation not")


def test_new_flowtable_needs_a_hook() -> None:
    assert error_of("table ip t {\n flowtable f { devices = { eth0 }; }\n}") == (
        "rules.nft:2:2: flowtable f needs 'hook ingress priority N' when it is created"
    )


def test_delete_flowtable_in_use_is_busy() -> None:
    text = BASE + "add rule inet t fwd flow add @f\ndelete flowtable inet t f"
    assert error_of(text) == (
        "rules.nft:19:1: Could not process rule: Device or resource busy "
        "(flowtable f is used by: rules.nft:18:21)"
    )


def test_delete_flowtable_after_its_rules_are_gone() -> None:
    rs = loads(BASE).apply("delete flowtable inet t f")
    assert rs.flowtables() == []


def test_delete_flowtable_devices() -> None:
    rs = loads(BASE).apply("delete flowtable inet t f { devices = { eth0 }; }")
    assert rs.flowtables()[0].devices == ("eth1",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "table ip t { chain c { type filter hook forward priority 0; tcp dport 70000 drop } }",
            "rules.nft:1:71: value 70000 exceeds valid range 0-65535 of inet_service",
        ),
        (
            "table ip t {\n  chain c {\n    ip saddr 10.0.0.300 drop\n  }\n}",
            "rules.nft:3:14: invalid IPv4 address '10.0.0.300'",
        ),
        (
            "table ip t { chain c { meta l4proto tcpp } }",
            "rules.nft:1:37: 'tcpp' is not a valid inet_proto value",
        ),
        (
            "table ip t { chain c { ct state establishd } }",
            "rules.nft:1:33: 'establishd' is not a valid ct_state value (one of invalid, "
            "established, related, new, untracked)",
        ),
        (
            "table ip t { chain c { ip saddr 2001:db8::1 } }",
            "rules.nft:1:33: '2001:db8::1' is not an IPv4 address",
        ),
        (
            "table ip t {\n chain c {\n  frobnicate\n }\n}",
            "rules.nft:3:3: syntax error, unexpected 'frobnicate'",
        ),
        (
            "table ip t { chain c { accept",
            "rules.nft:1:30: syntax error, unexpected end of file, expecting '}'",
        ),
        ("table bridge t { }", "rules.nft:1:7: unsupported family 'bridge' (only ip, ip6, inet)"),
        (
            "table ip t { flowtable f { hook egress priority 0; } }",
            "rules.nft:1:33: flowtables only support the ingress hook, not 'egress'",
        ),
        (
            "table ip t { flowtable f { hook ingress priority 0; flags bogus; } }",
            "rules.nft:1:59: unknown flowtable flag 'bogus'",
        ),
        (
            "table ip t { chain c { type route hook input priority 0; } }",
            "rules.nft:1:24: Could not process rule: Operation not supported (route chains only "
            "attach to the output hook)",
        ),
        (
            'table ip t { chain c { iifname "eth0 } }',
            "rules.nft:1:32: syntax error, unterminated string",
        ),
        (
            "table ip t { chain c { tcp dport 90-80 } }",
            "rules.nft:1:34: Range has zero or negative size: '90-80'",
        ),
    ],
)
def test_syntax_and_value_errors(text: str, expected: str) -> None:
    assert error_of(text) == expected


@pytest.mark.parametrize(
    "release", ["flush chain inet t fwd", "flush table inet t", "delete chain inet t fwd"]
)
def test_delete_flowtable_once_its_rules_are_flushed_or_deleted(release: str) -> None:
    rs = loads(BASE + "add rule inet t fwd flow add @f\nadd rule inet t in accept")
    rs = rs.apply(f"{release}\ndelete flowtable inet t f")
    assert rs.flowtables() == []
    table = rs.table("inet", "t")
    assert ("fwd" in table.chains) is (release != "delete chain inet t fwd")
    assert len(table.chains["in"].rules) == (0 if release == "flush table inet t" else 1)


def test_flush_or_delete_of_a_missing_chain() -> None:
    assert error_of(BASE + "flush chain inet t nope") == (
        "rules.nft:18:1: Could not process rule: No such file or directory "
        "(no chain nope in table inet t)"
    )
