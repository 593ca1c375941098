"""The nft language routers use: scripts, variables, includes, chains, sets, maps, statements,
and how the evaluator runs them (nft_do_chain semantics)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from controller.ip.packet import parse
from controller.netfilter.ct import CtInfo, Status
from controller.netfilter.ruleset import Evaluator, Hook, RuleContext, RulesetError, loads
from controller.netfilter.ruleset.selectors import jhash


def ctx(**kw: object) -> RuleContext:
    base = dict(
        family=4, proto=6, src=ipaddress.ip_address("10.0.0.1").packed,
        dst=ipaddress.ip_address("192.0.2.1").packed, sport=40000, dport=22,
        iifname="eth0", oifname="eth1", ct_state=CtInfo.NEW, ct_new=True, length=60,
    )
    base.update(kw)
    return RuleContext(**base)  # type: ignore[arg-type]


def verdict(text: str, hook: Hook = Hook.FORWARD, **kw: object) -> bool:
    return Evaluator(loads(text)).run(hook, int(kw.get("family", 4)), ctx(**kw)).accept


def fwd(rules: str, policy: str = "accept", chains: str = "") -> str:
    return (f"table inet t {{\n{chains}\nchain f {{ type filter hook forward priority 0; "
            f"policy {policy};\n{rules}\n}}\n}}")


def test_script_form_header_flush_and_handles() -> None:
    rs = loads("table inet x\nflush table inet x\nadd chain inet x c\n"
               "add rule inet x c tcp dport 22 accept\nadd rule inet x c udp dport 53 accept\n")
    first, second = rs.table("inet", "x").chains["c"].rules
    rs = rs.apply(f"insert rule inet x c handle {second.handle} counter\n"
                  f"replace rule inet x c handle {first.handle} tcp dport 23 accept\n")
    texts = [r.items[0].__class__.__name__ for r in rs.table("inet", "x").chains["c"].rules]
    assert texts == ["Match", "Counter", "Match"]
    rs = rs.apply(f"delete rule inet x c handle {second.handle}")
    assert len(rs.table("inet", "x").chains["c"].rules) == 2
    with pytest.raises(RulesetError, match="File exists"):
        rs.apply("create table inet x")
    assert rs.apply("destroy table inet nope") == rs


def test_define_variables_and_nested_sets() -> None:
    text = """define lan = { "eth0", "eth2" }
    define nets = { 10.0.0.0/8, 192.168.0.0/16 }
    define all = { $nets, 172.16.0.0/12 }
    table ip t { chain f { type filter hook forward priority 0; policy drop;
        iifname $lan ip saddr $all accept
    } }"""
    assert verdict(text)
    assert not verdict(text, iifname="eth1")
    with pytest.raises(RulesetError, match=r"<string>:1:32: unknown identifier 'nope'"):
        loads("table ip t { chain c { iifname $nope } }")


def test_include_with_globs_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "10-a.nft").write_text("chain a { tcp dport 22 accept }\n")
    (tmp_path / "d" / "20-b.nft").write_text("chain b { udp dport 53 accept }\n")
    main = tmp_path / "main.nft"
    main.write_text('table inet t {\n include "d/*.nft"\n include "none/*.nft"\n}\n')
    from controller.netfilter.ruleset import load_file

    assert list(load_file(main).table("inet", "t").chains) == ["a", "b"]
    main.write_text('include "missing.nft"\n')
    with pytest.raises(RulesetError, match=r"main\.nft:1:9: File not found"):
        load_file(main)
    (tmp_path / "d" / "30-bad.nft").write_text("chain c {\n  tcp dport 22 bogus\n}\n")
    main.write_text('table inet t {\n include "d/*.nft"\n}\n')
    with pytest.raises(RulesetError, match=r"30-bad.nft:2:16: syntax error, unexpected 'bogus'"):
        load_file(main)


def test_jump_returns_goto_does_not() -> None:
    chains = """chain sub { tcp dport 22 return
        drop }
    chain other { accept }"""
    assert verdict(fwd("jump sub\naccept", "drop", chains), dport=22)
    assert not verdict(fwd("jump sub\naccept", "drop", chains), dport=80)
    # goto: the end of 'sub2' ends the base chain too (its policy applies)
    chains2 = "chain sub2 { tcp dport 80 drop }"
    assert not verdict(fwd("goto sub2\naccept", "drop", chains2), dport=22)
    assert verdict(fwd("jump sub2\naccept", "drop", chains2), dport=22)


def test_jump_loops_and_missing_chains_are_refused() -> None:
    with pytest.raises(RulesetError, match="Too many levels of symbolic links"):
        loads("table ip t { chain a { jump b }\n chain b { jump a }\n"
              "chain f { type filter hook forward priority 0; jump a } }")
    with pytest.raises(RulesetError, match="no chain nope"):
        loads("table ip t { chain f { type filter hook forward priority 0; jump nope } }")


def test_vmap_and_continue() -> None:
    rules = "tcp dport vmap { 22 : accept, 23 : drop, 24 : continue }\ncounter drop"
    assert verdict(fwd(rules), dport=22)
    assert not verdict(fwd(rules), dport=23)
    assert not verdict(fwd(rules), dport=24)  # continue: the next rule drops


def test_named_interval_set_and_concatenation() -> None:
    chains = """set allow { type ipv4_addr . inet_service; flags interval;
        elements = { 10.0.0.0/24 . 22, 10.0.1.0-10.0.1.9 . 80-90 } }"""
    rules = "ip saddr . tcp dport @allow accept"
    assert verdict(fwd(rules, "drop", chains), dport=22)
    assert verdict(fwd(rules, "drop", chains), src=ipaddress.ip_address("10.0.1.5").packed,
                   dport=85)
    assert not verdict(fwd(rules, "drop", chains), dport=80)
    with pytest.raises(RulesetError, match="datatype mismatch"):
        loads(fwd("ip daddr @allow accept", "drop", chains))


def test_tcp_flags_expressions() -> None:
    rules = "tcp flags & (fin | syn | rst | ack) == syn drop"

    def flags(value: int) -> RuleContext:
        frame = Ether() / IP(src="10.0.0.1", dst="192.0.2.1") / TCP(dport=22, flags=value)
        return ctx(pkt=parse(bytes(frame)))

    ev = Evaluator(loads(fwd(rules)))
    assert not ev.run(Hook.FORWARD, 4, flags(0x02)).accept  # SYN
    assert ev.run(Hook.FORWARD, 4, flags(0x12)).accept  # SYN+ACK
    assert not Evaluator(loads(fwd("tcp flags syn drop"))).run(Hook.FORWARD, 4, flags(0x12)).accept
    assert Evaluator(loads(fwd("tcp flags != syn drop"))).run(Hook.FORWARD, 4,
                                                              flags(0x02)).accept


def test_marks_and_ct_state_status() -> None:
    class Conn:
        mark = 0
        status = Status.DST_NAT | Status.CONFIRMED
        zone = 0
        helper = None

    conn = Conn()
    text = fwd("meta mark set 0x10 ct mark set meta mark\nmark 0x10 ct mark 0x10 "
               "ct status dnat ct state established accept", "drop")
    c = ctx(conn=conn, ct_state=CtInfo.ESTABLISHED)
    assert Evaluator(loads(text)).run(Hook.FORWARD, 4, c).accept
    assert c.mark == 0x10 and conn.mark == 0x10


def test_limit_is_a_token_bucket() -> None:
    ev = Evaluator(loads(fwd("limit rate 2/second burst 2 packets accept", "drop")))
    results = [ev.run(Hook.FORWARD, 4, ctx(now=100.0)).accept for _ in range(3)]
    assert results == [True, True, False]
    assert ev.run(Hook.FORWARD, 4, ctx(now=100.5)).accept  # one token back after 0.5 s


def test_named_counter_counts() -> None:
    rs = loads("table ip t { counter hits { }\nchain f { type filter hook forward priority 0;"
               "\ncounter name hits accept } }")
    Evaluator(rs).run(Hook.FORWARD, 4, ctx())
    obj = rs.table("ip", "t").objects[("counter", "hits")]
    assert (obj.packets, obj.bytes) == (1, 60)
    with pytest.raises(RulesetError, match="no counter nope"):
        loads("table ip t { chain f { counter name nope } }")


def test_nat_ranges_flags_and_redirect() -> None:
    text = """table ip n { chain pre { type nat hook prerouting priority dstnat;
        tcp dport 80 dnat to 10.0.0.1-10.0.0.9:8080-8090 persistent,random
        udp dport 53 redirect to :5353
    } }"""
    ev = Evaluator(loads(text))
    v = ev.run(Hook.PREROUTING, 4, ctx(dport=80))
    assert v.nat.addr_max == ipaddress.ip_address("10.0.0.9").packed
    assert (v.nat.port_min, v.nat.port_max, v.nat.flags) == (8080, 8090, ("persistent", "random"))
    v = ev.run(Hook.PREROUTING, 4, ctx(proto=17, dport=53))
    assert v.nat.kind == "redirect" and v.nat.port_min == 5353


def test_reject_defaults_and_families() -> None:
    ev = Evaluator(loads(fwd("reject")))
    assert ev.run(Hook.FORWARD, 4, ctx()).reject.kind == "icmp"
    assert ev.run(Hook.FORWARD, 6, ctx(family=6)).reject.kind == "icmpv6"
    with pytest.raises(RulesetError, match="conflicting protocols"):
        loads("table ip t { chain c { type filter hook input priority 0; reject with icmpv6 "
              "no-route; } }")
    with pytest.raises(RulesetError, match="reject is only valid"):
        loads("table ip t { chain c { type filter hook postrouting priority 0; reject; } }")


def test_jhash_matches_the_kernel_reference_values() -> None:
    # lookup3's own test vectors (hashlittle with initval 0 / 0xdeadbeef)
    assert jhash(b"", 0) == 0xDEADBEEF
    assert jhash(b"", 0xDEADBEEF) == 0xBD5B7DDE
    assert jhash(b"Four score and seven years ago", 0) == 0x17770551
    assert jhash(b"Four score and seven years ago", 1) == 0xCD628161


def test_tunnel_inner_headers() -> None:
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import GRE
    from scapy.layers.vxlan import VXLAN

    def vxlan(inner_src: str) -> RuleContext:
        frame = (Ether() / IP(src="10.0.0.1", dst="192.0.2.1") / UDP(sport=1, dport=4789)
                 / VXLAN(vni=10) / Ether() / IP(src=inner_src, dst="10.8.8.8") / TCP(dport=22))
        return ctx(proto=17, dport=4789, pkt=parse(bytes(frame)))

    def gre(inner_src: str) -> RuleContext:
        frame = (Ether() / IP(src="10.0.0.1", dst="192.0.2.1") / GRE()
                 / IP(src=inner_src, dst="10.8.8.8") / TCP(dport=22))
        return ctx(proto=47, pkt=parse(bytes(frame)))

    ev = Evaluator(loads(fwd("udp dport 4789 vxlan vni 10 vxlan ip saddr 10.9.9.9 "
                             "vxlan tcp dport 22 drop\ngre ip saddr 10.9.9.9 drop")))
    assert not ev.run(Hook.FORWARD, 4, vxlan("10.9.9.9")).accept
    assert ev.run(Hook.FORWARD, 4, vxlan("10.9.9.8")).accept
    assert not ev.run(Hook.FORWARD, 4, gre("10.9.9.9")).accept
    assert ev.run(Hook.FORWARD, 4, gre("10.9.9.8")).accept
    with pytest.raises(RulesetError, match="needs a udp dport"):
        loads(fwd("vxlan vni 10"))
    with pytest.raises(RulesetError, match="cannot be set"):
        loads(fwd("udp dport 4789 vxlan ip saddr set 1.2.3.4"))


@pytest.mark.parametrize(
    ("rule", "check"),
    [
        ("ip dscp set 0x1", lambda p: p[IP].tos >> 2 == 1),
        ("ip ttl set 9", lambda p: p[IP].ttl == 9),
        ("ip daddr set 10.9.9.9", lambda p: p[IP].dst == "10.9.9.9"),
        ("tcp dport set 8080", lambda p: p[TCP].dport == 8080),
        ("tcp window set 1000", lambda p: p[TCP].window == 1000),
    ],
)
def test_payload_set_rewrites_the_packet_and_its_checksums(rule: str, check) -> None:
    from tests.unit.router_helpers import assert_checksums

    frame = Ether() / IP(src="10.0.0.1", dst="192.0.2.1", tos=0x10) / TCP(dport=22) / b"data"
    pkt = parse(bytes(frame))
    c = ctx(pkt=pkt)
    assert Evaluator(loads(fwd(rule))).run(Hook.FORWARD, 4, c).accept
    out = assert_checksums(bytes(pkt.frame))
    assert check(out)


def test_listings_read_back_the_same() -> None:
    """Whatever is accepted reads back the same from its nft-syntax and JSON listings."""
    import json

    rs = loads("""table inet t {
        set s { type ipv4_addr; flags timeout; timeout 1d2h; }
        quota q { 25 mbytes; }
        limit l { rate 400/minute; }
        counter c { packets 1 bytes 2; }
        chain j { }
        chain f { type filter hook forward priority 0;
            sctp chunk data exists counter
            tcp option maxseg size 1460 tcp flags == syn counter
            udp dport 4789 vxlan ip saddr 10.0.0.1 accept
            quota name "q" limit name "l" counter name c meter m { ip saddr limit rate 5/second }
            ct mark set numgen inc mod 2 ip saddr vmap { 10.0.0.0/8 : jump j, 1.2.3.4 : drop }
            fib daddr . iif type vmap { local : accept }
            ip dscp set 0x1 meta mark set meta mark & 0xff00 | 0x0001 add @s { ip saddr }
        }
    }""")
    assert loads(rs.format()) == rs
    assert loads(json.dumps(rs.to_json())) == rs


def test_ct_timeout_and_expectation_objects() -> None:
    text = """table ip t {
        ct timeout aggressive {
            protocol tcp;
            l3proto ip;
            policy = { established: 100, close_wait: 4 }
        }
        ct expectation e { protocol tcp; dport 22; timeout 1m; size 12; l3proto ip; }
        chain c { type filter hook prerouting priority 0;
            ct timeout set "aggressive"
            ct expectation set "e"
        }
    }"""
    rs = loads(text)
    assert loads(rs.format()) == rs
    with pytest.raises(RulesetError, match="no ct timeout nope"):
        loads('table ip t { chain c { type filter hook prerouting priority 0;\n'
              'ct timeout set "nope"\n} }')


def test_object_maps_and_interval_map_data() -> None:
    """Whole-ruleset spellings from nft's own listings: maps to named objects and to address
    ranges (``type ipv4_addr : interval ipv4_addr``)."""
    rs = loads("""table inet x {
        quota user124 { over 2000 bytes }
        map test { type ipv4_addr : quota; elements = { 192.168.2.2 : "user124" } }
        map y { type ipv4_addr : interval ipv4_addr; flags interval;
            elements = { 10.141.10.0/24 : 192.168.2.2-192.168.2.4 } }
        chain c { type filter hook input priority 0; quota name ip saddr map @test drop
        }
        chain n { type nat hook postrouting priority srcnat; snat ip to ip saddr map @y
        }
    }""")
    assert loads(rs.format()) == rs
    ev = Evaluator(rs)
    v = ev.run(Hook.POSTROUTING, 4, ctx(src=ipaddress.ip_address("10.141.10.7").packed))
    assert v.nat.addr == ipaddress.ip_address("192.168.2.2").packed
    assert v.nat.addr_max == ipaddress.ip_address("192.168.2.4").packed


def test_catch_all_map_elements_and_stateful_set_elements() -> None:
    rules = "tcp dport vmap { 22 : accept, * : drop }"
    assert verdict(fwd(rules), dport=22)
    assert not verdict(fwd(rules), dport=80)
    rs = loads("""table ip x {
        map y { type ipv4_addr : mark; elements = { 10.0.0.1 : 0x1, * : 0x2 } }
        set s { type ipv4_addr; flags dynamic; counter quota 500 bytes
            elements = { 1.1.1.1 counter packets 0 bytes 0 quota 500 bytes used 0 bytes } }
        chain f { type filter hook forward priority 0;
            meta mark set ip saddr map @y update @s { ip daddr }
        }
    }""")
    assert loads(rs.format()) == rs
    for src, mark in (("10.0.0.1", 1), ("10.9.9.9", 2)):
        c = ctx(src=ipaddress.ip_address(src).packed)
        Evaluator(rs).run(Hook.FORWARD, 4, c)
        assert c.mark == mark
    with pytest.raises(RulesetError, match="'\\*' is for maps"):
        loads("table ip x { set s { type ipv4_addr; elements = { * } } }")
