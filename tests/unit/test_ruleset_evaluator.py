"""The evaluator: hook and priority order, accept/drop/policy, counters, NAT on new, flow add."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from controller.netfilter.ct import IPPROTO_TCP, IPPROTO_UDP, CtInfo
from controller.netfilter.ruleset import Evaluator, FlowtableDef, Hook, NatAction, Verdict, loads


@dataclass
class Pkt:
    family: int = 4
    proto: int = IPPROTO_TCP
    src: bytes = ipaddress.ip_address("10.0.1.1").packed
    dst: bytes = ipaddress.ip_address("10.0.2.1").packed
    sport: int = 40000
    dport: int = 80
    iifname: str = "eth0"
    oifname: str | None = "eth1"
    ct_state: CtInfo = CtInfo.NEW
    ct_new: bool = True
    length: int = 100


def v6(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


def run(text: str, pkt: Pkt, hook: Hook = Hook.FORWARD) -> Verdict:
    return Evaluator(loads(text)).run(hook, pkt.family, pkt)


def fwd(rules: str, policy: str = "accept", family: str = "inet") -> str:
    return (
        f"table {family} t {{ chain c {{ type filter hook forward priority 0; policy {policy};\n"
        f"{rules}\n}} }}"
    )


def test_no_chains_accepts() -> None:
    assert run("", Pkt()) == Verdict(True)


def test_policy_applies_at_chain_end() -> None:
    assert run(fwd("tcp dport 22 accept", "drop"), Pkt(dport=22)).accept
    assert not run(fwd("tcp dport 22 accept", "drop"), Pkt(dport=80)).accept


def test_accept_continues_to_the_next_chain_and_drop_stops() -> None:
    text = """
    table ip a { chain late { type filter hook forward priority 10; policy accept;
        counter drop } }
    table ip b { chain early { type filter hook forward priority -10; policy accept;
        tcp dport 22 counter accept } }
    """
    ev_rs = loads(text)
    ev = Evaluator(ev_rs)
    assert not ev.run(Hook.FORWARD, 4, Pkt(dport=22)).accept
    early = ev_rs.table("ip", "b").chains["early"].rules[0].items[-2]
    late = ev_rs.table("ip", "a").chains["late"].rules[0].items[0]
    assert (early.packets, late.packets) == (1, 1)


def test_drop_in_an_early_chain_skips_later_chains() -> None:
    text = """
    table ip a { chain late { type filter hook forward priority 10; counter } }
    table ip b { chain early { type filter hook forward priority -10; drop } }
    """
    rs = loads(text)
    assert not Evaluator(rs).run(Hook.FORWARD, 4, Pkt()).accept
    assert rs.table("ip", "a").chains["late"].rules[0].items[0].packets == 0


def test_only_chains_of_the_hook_run() -> None:
    text = "table ip t { chain i { type filter hook input priority 0; policy drop; } }"
    assert run(text, Pkt()).accept
    assert not run(text, Pkt(), Hook.INPUT).accept


def test_family_selection() -> None:
    ip_only = "table ip t { chain c { type filter hook forward priority 0; policy drop; } }"
    pkt6 = Pkt(family=6, src=v6("2001:db8::1"), dst=v6("2001:db8::2"))
    assert run(ip_only, pkt6).accept
    assert not run(ip_only, Pkt()).accept
    assert not run(ip_only.replace("table ip", "table inet"), pkt6).accept


def test_counters_count_packets_and_bytes_of_matching_packets() -> None:
    rs = loads(fwd("tcp dport 80 counter\ncounter packets 10 bytes 1000"))
    ev = Evaluator(rs)
    for length in (100, 200):
        ev.run(Hook.FORWARD, 4, Pkt(length=length))
    ev.run(Hook.FORWARD, 4, Pkt(dport=81))
    first, second = (r.items[-1] for r in rs.table("inet", "t").chains["c"].rules)
    assert (first.packets, first.bytes) == (2, 300)
    assert (second.packets, second.bytes) == (13, 1400)
    assert "counter packets 13 bytes 1400" in rs.format()


@pytest.mark.parametrize(
    ("rule", "pkt", "matches"),
    [
        ("meta l4proto { tcp, udp }", Pkt(proto=IPPROTO_UDP), True),
        ("meta l4proto udp", Pkt(), False),
        ("ip protocol tcp", Pkt(), True),
        ("ip protocol tcp", Pkt(family=6, src=v6("::1"), dst=v6("::2")), False),
        ("ip6 nexthdr tcp", Pkt(family=6, src=v6("::1"), dst=v6("::2")), True),
        ("tcp dport 80", Pkt(proto=IPPROTO_UDP), False),
        ("udp dport 80", Pkt(proto=IPPROTO_UDP), True),
        ("tcp dport != 22", Pkt(proto=IPPROTO_UDP), False),
        ("tcp dport != 22", Pkt(), True),
        ("tcp dport { 22, 79-81 }", Pkt(), True),
        ("tcp dport { 22, 81-90 }", Pkt(), False),
        ("tcp sport 40000", Pkt(), True),
        ("ip saddr 10.0.0.0/16", Pkt(), True),
        ("ip saddr 10.1.0.0/16", Pkt(), False),
        ("ip saddr != 10.1.0.0/16", Pkt(), True),
        ("ip daddr { 10.0.2.1, 10.9.9.9 }", Pkt(), True),
        ("ip daddr 10.0.2.2", Pkt(), False),
        ("ip6 saddr 2001:db8::/32", Pkt(family=6, src=v6("2001:db8::9"), dst=v6("::2")), True),
        ("ip6 saddr 2001:db8::/32", Pkt(family=6, src=v6("2001:db9::9"), dst=v6("::2")), False),
        ("ip6 saddr 2001:db8::/32", Pkt(), False),
        ('iifname "eth0"', Pkt(), True),
        ('iifname "eth*"', Pkt(iifname="eth7"), True),
        ('iifname != { "eth0", "wan*" }', Pkt(iifname="wan1"), False),
        ('oifname "eth1"', Pkt(oifname=None), False),
        ('oifname != "eth1"', Pkt(oifname=None), True),
        ("ct state established,related", Pkt(ct_state=CtInfo.ESTABLISHED_REPLY), True),
        ("ct state established,related", Pkt(ct_state=CtInfo.RELATED), True),
        ("ct state established", Pkt(ct_state=CtInfo.NEW), False),
        ("ct state new", Pkt(ct_state=CtInfo.NEW), True),
        ("ct state invalid", Pkt(ct_state=CtInfo.INVALID), True),
        ("ct state != invalid", Pkt(ct_state=CtInfo.NEW), True),
    ],
)
def test_matches(rule: str, pkt: Pkt, matches: bool) -> None:
    assert run(fwd(f"{rule} accept", "drop"), pkt).accept is matches


def test_flow_add_calls_back_and_the_rule_continues() -> None:
    text = """
    table inet t {
        flowtable f { hook ingress priority 0; devices = { eth0, eth1 }; flags offload; }
        chain c { type filter hook forward priority 0; policy drop;
            meta l4proto tcp flow add @f counter accept
        }
    }
    """
    rs = loads(text)
    calls: list[tuple[FlowtableDef, Pkt]] = []
    ev = Evaluator(rs, flow_add=lambda ft, ctx: calls.append((ft, ctx)))
    pkt = Pkt(ct_state=CtInfo.ESTABLISHED)
    assert ev.run(Hook.FORWARD, 4, pkt).accept
    assert calls == [(rs.flowtables()[0], pkt)]
    assert calls[0][0].offload and calls[0][0].name == "f"
    assert not ev.run(Hook.FORWARD, 4, Pkt(proto=IPPROTO_UDP)).accept
    assert len(calls) == 1
    assert Evaluator(rs).run(Hook.FORWARD, 4, pkt).accept  # no callback: still continues


NAT = """
table ip nat {
    chain pre { type nat hook prerouting priority dstnat; policy accept;
        iifname "eth1" tcp dport 8080 dnat to 10.0.1.1:80
    }
    chain post { type nat hook postrouting priority srcnat; policy accept;
        oifname "eth1" counter masquerade
    }
    chain post2 { type nat hook postrouting priority srcnat + 5; policy accept;
        meta l4proto tcp snat to 192.0.2.1:1000-2000
    }
}
"""


def test_dnat_on_the_first_packet_only() -> None:
    ev = Evaluator(loads(NAT))
    pkt = Pkt(iifname="eth1", dport=8080)
    assert ev.run(Hook.PREROUTING, 4, pkt) == Verdict(
        True, NatAction("dnat", v6("10.0.1.1"), 80, 80)
    )
    pkt.ct_new = False
    assert ev.run(Hook.PREROUTING, 4, pkt) == Verdict(True)


def test_first_nat_binding_wins_and_later_nat_chains_are_skipped() -> None:
    rs = loads(NAT)
    ev = Evaluator(rs)
    assert ev.run(Hook.POSTROUTING, 4, Pkt()) == Verdict(True, NatAction("masquerade"))
    assert ev.run(Hook.POSTROUTING, 4, Pkt(oifname="eth2")) == Verdict(
        True, NatAction("snat", v6("192.0.2.1"), 1000, 2000)
    )
    assert ev.run(Hook.POSTROUTING, 4, Pkt(ct_new=False)) == Verdict(True)
    assert rs.table("ip", "nat").chains["post"].rules[0].items[1].packets == 1


def test_nat_with_an_address_acts_only_on_its_family_in_inet_tables() -> None:
    text = """
    table inet nat { chain post { type nat hook postrouting priority srcnat;
        snat ip to 192.0.2.1
        snat ip6 to 2001:db8::1
    } }
    """
    ev = Evaluator(loads(text))
    pkt6 = Pkt(family=6, src=v6("2001:db8:1::1"), dst=v6("2001:db8:2::1"))
    assert ev.run(Hook.POSTROUTING, 4, Pkt()).nat == NatAction("snat", v6("192.0.2.1"))
    assert ev.run(Hook.POSTROUTING, 6, pkt6).nat == NatAction("snat", v6("2001:db8::1"))


def test_filter_drop_after_nat_keeps_the_drop() -> None:
    text = (
        NAT
        + """
    table ip f { chain post { type filter hook postrouting priority 200; drop } }
    """
    )
    verdict = Evaluator(loads(text)).run(Hook.POSTROUTING, 4, Pkt())
    assert verdict == Verdict(False, NatAction("masquerade"))


def test_regular_chains_are_never_entered() -> None:
    text = "table ip t { chain helper { drop } }"
    assert run(text, Pkt()).accept
