"""OpenWrt firewall4 rulesets: the example loads, and a router running it behaves as fw4 says.

The router is the two-port test router (eth0 = lan with h1 10.0.1.1, eth1 = wan with h2 and
the "internet" behind it); the example's port-forward target is h1.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether

from controller.netfilter.ruleset import RulesetError, load_file, loads
from controller.router import Router
from tests.unit.router_helpers import (
    H1,
    INTERNET,
    R2,
    assert_checksums,
    router_config,
    tcp4,
    tcp4_reply,
    udp4,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fw4" / "ruleset.nft"
NOW = 100.0


def fw4_router() -> Router:
    return Router(router_config(EXAMPLE.read_text()))


def test_example_loads_and_round_trips_through_format() -> None:
    rs = load_file(EXAMPLE)
    (ft,) = rs.flowtables()
    assert ft.offload and ft.devices == ("eth0", "eth1")
    table = rs.table("inet", "fw4")
    assert table is not None and len(table.chains) == 29
    assert loads(rs.format()) == rs


def test_fw4_header_is_idempotent() -> None:
    text = EXAMPLE.read_text()
    once = loads(text)
    assert once.apply(text) == once  # flush table + the same block: same ruleset


def test_lan_to_wan_is_masqueraded_and_offloaded() -> None:
    r = fw4_router()
    out = r.receive(tcp4("S", dst=INTERNET), 1, NOW)
    assert out.path == "classic"
    (port, frame), = out.sends
    sent = assert_checksums(frame)
    assert port == 2 and sent[IP].src == R2 and sent[IP].dst == INTERNET
    public = sent[TCP].sport
    back = r.receive(tcp4_reply("SA", src=INTERNET, dst=R2, dport=public), 2, NOW)
    ((port, frame),) = back.sends
    assert port == 1 and Ether(frame)[IP].dst == H1
    r.receive(tcp4("A", dst=INTERNET), 1, NOW)
    (ft,) = r.flowtables.values()
    assert len(ft) == 1  # flow offload @ft admitted the established connection


def test_wan_to_lan_is_rejected_with_a_tcp_reset() -> None:
    r = fw4_router()
    out = r.receive(tcp4_reply("S", src=INTERNET, dst=H1, sport=5555, dport=22), 2, NOW)
    assert out.path == "drop" and out.reason == "ruleset_forward"
    ((port, frame),) = out.sends
    rst = assert_checksums(frame)
    assert port == 2 and rst[IP].src == H1 and rst[IP].dst == INTERNET
    assert rst[TCP].flags == "RA" and rst[TCP].ack == Ether(
        tcp4_reply("S", src=INTERNET, dst=H1, sport=5555, dport=22))[TCP].seq + 1


def test_wan_udp_to_the_router_gets_port_unreachable() -> None:
    r = fw4_router()
    out = r.receive(udp4(src=INTERNET, dst=R2, mac="00:00:00:00:02:fe",
                         src_mac="00:00:00:00:02:02"), 2, NOW)
    assert out.reason == "ruleset_input"
    ((port, frame),) = out.sends
    icmp = assert_checksums(frame)
    assert port == 2 and icmp[ICMP].type == 3 and icmp[ICMP].code == 3


def test_port_forward_reaches_the_inside_host() -> None:
    r = fw4_router()
    out = r.receive(tcp4_reply("S", src=INTERNET, dst=R2, sport=5555, dport=8080), 2, NOW)
    assert out.path == "classic", out
    ((port, frame),) = out.sends
    fwd = assert_checksums(frame)
    assert port == 1 and (fwd[IP].dst, fwd[TCP].dport) == (H1, 80)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("dnat to 1.2.3.4", "ip or ip6 must be specified with address for inet tables."),
        ("snat to 1.2.3.4", "ip or ip6 must be specified with address for inet tables."),
        ("dnat ip to 1.2.3.4:80", "transport protocol mapping is only valid after transport"),
        ("meta l4proto udp tcp dport 22", "conflicting protocols specified: udp vs. tcp"),
        ("ip protocol udp tcp dport 22", "conflicting protocols specified: udp vs. tcp"),
        ('iifname "*"', "All-wildcard strings are not supported"),
    ],
)
def test_no_false_accepts_in_nat_rules(rule: str, message: str) -> None:
    text = f"table inet t {{ chain c {{ type nat hook prerouting priority dstnat;\n{rule}\n}} }}"
    with pytest.raises(RulesetError, match=re.escape(message)):
        loads(text)


def test_masquerade_outside_postrouting_is_refused() -> None:
    with pytest.raises(RulesetError, match="masquerade is only valid on the postrouting hook"):
        loads("table ip t { chain c { type nat hook input priority 100; masquerade; } }")
    with pytest.raises(RulesetError, match="transport protocol"):
        loads("table ip t { chain c { type nat hook postrouting priority 100; "
              "masquerade to :1024; } }")


def test_masquerade_in_a_regular_chain_is_checked_where_it_is_reached() -> None:
    text = """table ip t {
        chain m { masquerade }
        chain c { type nat hook prerouting priority dstnat; jump m }
    }"""
    with pytest.raises(RulesetError, match=r"<string>:2:19: .*postrouting hook"):
        loads(text)


def test_flowtable_item_needs_its_separator() -> None:
    with pytest.raises(RulesetError, match="expecting newline or ';'"):
        loads("add table ip t\nadd flowtable ip t f { hook ingress priority 10; "
              "devices = { lo } }")


def test_errors_name_the_first_unsupported_construct() -> None:
    text = "table inet t {\n chain c {\n  meta foo 1\n  tcp flags & (fin | syn) == syn\n }\n}\n"
    with pytest.raises(RulesetError) as err:
        loads(text, "f.nft")
    assert str(err.value).startswith("f.nft:3:8: ") and "meta foo" in str(err.value)
    with pytest.raises(RulesetError) as err:
        loads("table ip6 t { chain c { ip6 saddr map { ::1 : 2 } } }", "f.nft")
    assert str(err.value).startswith("f.nft:1:35: ") and "map" in str(err.value)
    loads("table ip6 t { chain c { ip6 saddr vmap { ::1 : accept }\n} }")


def test_ct_state_untracked_matches_what_conntrack_leaves_untracked() -> None:
    from controller.netfilter.ct import CtInfo
    from controller.netfilter.ruleset import Evaluator, Hook, RuleContext

    rs = loads("table inet t { chain c { type filter hook input priority 0; policy accept;\n"
               "ct state untracked drop\n} }")
    ctx = RuleContext(6, 58, bytes(16), bytes(16), 0, 0, "eth0", None, CtInfo.UNTRACKED, False,
                      72)
    assert not Evaluator(rs).run(Hook.INPUT, 6, ctx).accept
    ctx.ct_state = CtInfo.NEW
    assert Evaluator(rs).run(Hook.INPUT, 6, ctx).accept


def test_escaped_asterisk_is_a_literal_name() -> None:
    from controller.netfilter.ct import CtInfo
    from controller.netfilter.ruleset import Evaluator, Hook, RuleContext

    rs = loads('table inet t { chain c { type filter hook input priority 0; policy accept;\n'
               'iifname "dummy\\*" drop\niifname "eth*" drop\n} }')
    ev = Evaluator(rs)

    def verdict(name: str) -> bool:
        ctx = RuleContext(4, 6, bytes(4), bytes(4), 1, 2, name, None, CtInfo.NEW, True, 60)
        return ev.run(Hook.INPUT, 4, ctx).accept

    assert verdict("dummy0") and not verdict("dummy*")
    assert not verdict("eth7") and verdict("wan")


def test_example_round_trips_through_nft_json() -> None:
    import json

    rs = load_file(EXAMPLE)
    assert loads(json.dumps(rs.to_json())) == rs


def test_json_input_with_sets_vmaps_masks_and_helpers() -> None:
    import json

    doc = {"nftables": [
        {"table": {"family": "inet", "name": "t"}},
        {"set": {"family": "inet", "table": "t", "name": "s",
                 "type": ["ipv4_addr", "inet_service"], "flags": ["interval"],
                 "elem": [{"concat": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, 22]}]}},
        {"ct helper": {"family": "inet", "table": "t", "name": "ftp", "type": "ftp",
                       "protocol": "tcp"}},
        {"chain": {"family": "inet", "table": "t", "name": "j"}},
        {"chain": {"family": "inet", "table": "t", "name": "f", "type": "filter",
                   "hook": "forward", "prio": 0, "policy": "drop"}},
        {"rule": {"family": "inet", "table": "t", "chain": "f", "expr": [
            {"match": {"op": "==", "left": {"&": [
                {"payload": {"protocol": "tcp", "field": "flags"}}, ["fin", "syn", "rst", "ack"]]},
                "right": "syn"}},
            {"jump": {"target": "j"}}]}},
        {"rule": {"family": "inet", "table": "t", "chain": "f", "expr": [
            {"match": {"op": "==", "left": {"concat": [
                {"payload": {"protocol": "ip", "field": "saddr"}},
                {"payload": {"protocol": "tcp", "field": "dport"}}]}, "right": "@s"}},
            {"ct helper": "ftp"},
            {"vmap": {"key": {"ct": {"key": "state"}}, "data": {"set": [
                ["established", {"accept": None}], ["invalid", {"drop": None}]]}}}],
            "comment": "x"}},
    ]}
    text = """table inet t {
        set s { type ipv4_addr . inet_service; flags interval; elements = { 10.0.0.0/8 . 22 } }
        ct helper ftp { type "ftp" protocol tcp; }
        chain j { }
        chain f { type filter hook forward priority 0; policy drop;
            tcp flags & (fin | syn | rst | ack) == syn jump j
            ip saddr . tcp dport @s ct helper set "ftp" \\
                ct state vmap { established : accept, invalid : drop } comment "x"
        }
    }"""
    assert loads(json.dumps(doc)) == loads(text)


def test_fw4_redirect_spellings() -> None:
    """fw4 prints NAT targets without 'to' and redirect ports without ':'."""
    rs = loads("""table inet fw4
    flush table inet fw4
    table inet fw4 {
        define noaddr_subnets = {  }
        chain dstnat { type nat hook prerouting priority dstnat; policy accept;
            meta nfproto ipv4 tcp dport 22 counter dnat 192.168.26.100:22 comment "!fw4: fwd"
            meta nfproto ipv6 tcp dport 25 counter dnat [2001:db8:1000:1::1234]:25
            meta nfproto ipv4 tcp dport 26 counter redirect to 26
            ip saddr { 10.0.0.0/24 } ip daddr 10.11.12.194 tcp dport 23 dnat 192.168.26.100:23
        }
        chain srcnat { type nat hook postrouting priority srcnat; policy accept;
            ip daddr 192.168.26.100 tcp dport 22 snat 192.168.26.1
        }
    }""")
    text = rs.format()
    assert "dnat to 192.168.26.100:22" in text and "redirect to :26" in text
    assert "dnat to [2001:db8:1000:1::1234]:25" in text and "snat to 192.168.26.1" in text


def test_fw4_rule_template_constructs() -> None:
    """What fw4's rule template can print: time windows, marks with masks, DSCP, MACs,
    helpers, logs, ipsets."""
    text = """table inet fw4 {
        set blocked { type ipv4_addr . inet_service; }
        ct helper ftp { type "ftp" protocol tcp; }
        chain c { type filter hook forward priority filter; policy accept;
            meta time >= "2021-01-01 00:00:00" meta time <= "2031-01-01" meta hour >= "08:00" \\
                meta hour <= "18:00:00" meta day { "Monday", "Tue" } accept comment "!fw4: t"
            meta mark and 0xff == 0x1 meta mark set mark and 0xffff0000 xor 0x10 \\
                ip dscp set 0x10 ether saddr { 00:11:22:33:44:55 } ct helper != "ftp" \\
                log prefix "x: " drop
            meta nfproto ipv4 ip saddr . tcp dport != @blocked counter accept
            meta l4proto tcp tcp dport 21 ct helper set "ftp"
        }
    }"""
    rs = loads(text)
    assert loads(rs.format()) == rs
    formatted = rs.format()
    assert 'meta day { "Monday", "Tuesday" }' in formatted
    assert "meta mark set meta mark & 0xffff0000 ^ 0x00000010" in formatted


@pytest.mark.parametrize(
    "block",
    [
        "set s { type ipv4_addr; flags interval }",
        'ct helper h { type "ftp" protocol tcp }',
        "flowtable f { hook ingress priority 0; devices = { lo } }",
    ],
)
def test_block_items_need_their_separator(block: str) -> None:
    with pytest.raises(RulesetError, match="expecting newline or ';'"):
        loads(f"table ip t {{\n {block}\n}}\n")
    loads("table ip t {\n set s { type ipv4_addr; elements = { 1.2.3.4 } }\n}\n")


def test_p4ft_simulate_with_the_fw4_example(tmp_path: Path) -> None:
    """The NAT example's traffic through the fw4 router: the lan host leaves masqueraded and
    its connection runs in hardware (flow offload @ft); the port forward reaches 10.0.1.1:80."""
    import json

    from controller import cli
    from controller.edges.pcap import read_pcap

    traffic = EXAMPLE.parents[1] / "traffic"
    code = cli.main(["simulate", "--config", str(EXAMPLE.parent / "router.toml"),
                     "--in", f"1={traffic / 'nat_inside.pcap'}",
                     "--in", f"2={traffic / 'nat_outside.pcap'}", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    paths = [e["path"] for e in report]
    assert "drop" not in paths and "hw" in paths
    outside = [Ether(f) for _, f in read_pcap(tmp_path / "2.pcap")]
    assert outside and all(p[IP].src == "203.0.113.1" for p in outside if IP in p)
    inside = [Ether(f) for _, f in read_pcap(tmp_path / "1.pcap")]
    forwarded = [p for p in inside if TCP in p and p[TCP].sport == 50000]
    assert forwarded and all(p[TCP].dport == 80 and p[IP].dst == H1 for p in forwarded)


def test_notrack_in_a_raw_chain_leaves_the_packet_untracked() -> None:
    """fw4's raw_prerouting runs before conntrack (priority raw < NF_IP_PRI_CONNTRACK): a
    notrack'ed packet gets no connection and later chains see ct state untracked."""
    text = """table inet t {
        chain raw_prerouting { type filter hook prerouting priority raw; policy accept;
            tcp dport 8888 notrack
        }
        chain forward { type filter hook forward priority filter; policy drop;
            ct state untracked accept
        }
    }"""
    r = Router(router_config(text))
    out = r.receive(tcp4("S", dport=8888), 1, NOW)
    assert out.path == "classic" and not list(r.conntrack)
    out = r.receive(tcp4("S", dport=80), 1, NOW)
    assert out.path == "drop" and out.reason == "ruleset_forward"


def test_tokens_are_read_on_demand() -> None:
    """An unsupported construct is reported where it is, not at a later character the
    scanner cannot read."""
    text = "table ip t {\n chain c {\n  synproxy mss 1460\n  ip saddr ~ 1\n }\n}\n"
    with pytest.raises(RulesetError) as err:
        loads(text, "f.nft")
    assert str(err.value).startswith("f.nft:3:3: ") and "'synproxy'" in str(err.value)


def test_fw4_wildcard_and_never_devices() -> None:
    """fw4 spells an impossible device "/never/" and 'name+' devices as "name*" (never in
    sets); names are strings to nft, only device lists are real interface names."""
    from controller.netfilter.ct import CtInfo
    from controller.netfilter.ruleset import Evaluator, Hook, RuleContext

    rs = loads("""table inet fw4 { chain input { type filter hook input priority filter;
        policy accept;
        iifname "/never/" counter drop
        iifname "foo*" iifname != { "test3", "test4" } iifname != "baz*" drop
    } }""")
    ev = Evaluator(rs)

    def accepted(name: str) -> bool:
        ctx = RuleContext(4, 6, bytes(4), bytes(4), 1, 2, name, None, CtInfo.NEW, True, 60)
        return ev.run(Hook.INPUT, 4, ctx).accept

    assert not accepted("foo1") and accepted("test3") and accepted("baz0")
    with pytest.raises(RulesetError, match="invalid interface name"):
        loads('table ip t { flowtable f { hook ingress priority 0; devices = { "/x" }; } }')


def test_mld_is_untracked_for_ct_state_untracked() -> None:
    """conntrack leaves MLD untracked (``nf_conntrack_icmpv6``'s noct_valid_new): a rule
    on ``ct state untracked`` sees it."""
    from scapy.layers.inet6 import ICMPv6MLReport, IPv6

    from tests.unit.router_helpers import H1_MAC, R1_MAC

    text = """table inet t { chain pre { type filter hook prerouting priority 0; policy accept;
        ct state untracked counter drop
    } }"""
    r = Router(router_config(text))
    frame = (Ether(src=H1_MAC, dst=R1_MAC) / IPv6(src="fe80::1", dst="2001:db8:1::fe", hlim=1)
             / ICMPv6MLReport())
    out = r.receive(bytes(frame), 1, NOW)
    assert out.path == "drop" and out.reason == "ruleset_prerouting"
    rule = r.ruleset.table("inet", "t").chains["pre"].rules[0]
    assert rule.items[1].packets == 1
