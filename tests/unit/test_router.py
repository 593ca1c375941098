"""One connection's journey (DESIGN §2) through a Router and the memory driver, on a fake clock."""

from __future__ import annotations

import json

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from controller.netfilter.ct import Status
from controller.netfilter.ruleset import RulesetError, loads
from controller.router import Router
from ndo.api import PuntReason
from ndo.memory import MemoryDriver
from tests.unit.router_helpers import (
    FORWARD_OFFLOAD,
    H1,
    H1_MAC,
    H2,
    H2_MAC,
    INTERNET,
    NAT,
    R1,
    R2,
    arp_who_has,
    assert_checksums,
    router_config,
    tcp4,
    tcp4_reply,
    tcp6,
    udp4,
)


class Bench:
    """A Router with the memory driver as its hardware, driven like ``p4ft simulate``."""

    def __init__(
        self, ruleset: str = FORWARD_OFFLOAD, flowtable: str = "", static_neighbors: bool = True
    ) -> None:
        self.now = 1000.0
        self.events: list[dict] = []
        config = router_config(ruleset, flowtable=flowtable, static_neighbors=static_neighbors)
        self.router = Router(config, on_event=self.events.append)
        self.driver = MemoryDriver(clock=lambda: self.now)

    def send(self, frame: bytes, port: int) -> tuple[str, list[tuple[int, bytes]]]:
        hit = self.driver.process(frame, port)
        if hit is not None:
            return "hw", [(hit[0], bytes(hit[1]))]
        outcome = self.router.receive(frame, port, self.now)
        return outcome.path, outcome.sends

    def drain(self) -> None:
        offload = self.router.offload
        while len(offload):
            offload.complete(self.driver.execute_now(offload.take_batch(1000)))

    def advance(self, seconds: int) -> None:
        """Whole seconds of ticks, draining the offload queue after each."""
        for _ in range(seconds):
            self.now += 1.0
            self.router.tick(self.now)
            self.drain()

    def types(self) -> list[str]:
        out = [e["type"] for e in self.events]
        self.events.clear()
        return out

    def handshake(self) -> list[str]:
        paths = [
            self.send(tcp4("S"), 1)[0],
            self.send(tcp4_reply("SA"), 2)[0],
            self.send(tcp4("A"), 1)[0],
        ]
        return paths


def test_tcp_journey_classic_then_sw_fastpath_then_hw() -> None:
    b = Bench()
    assert b.handshake() == ["classic", "classic", "classic"]
    assert "OFFLOAD" in b.types()  # admitted at the handshake-completing ACK, the 3rd packet
    (conn,) = list(b.router.conntrack)
    assert conn.status & Status.OFFLOAD and not conn.status & Status.HW_OFFLOAD
    path, ((port, out),) = b.send(tcp4("PA", payload=b"early"), 1)
    assert (path, port) == ("sw_fastpath", 2)  # the REPLACE is still on its way
    assert assert_checksums(out)[IP].ttl == 63
    b.drain()
    assert b.types().count("HW_OFFLOAD") == 1 and conn.status & Status.HW_OFFLOAD
    assert len(b.driver.rules) == 2  # both directions
    for frame, port, want in ((tcp4("PA", payload=b"x"), 1, 2), (tcp4_reply("PA"), 2, 1)):
        path, ((out_port, out),) = b.send(frame, port)
        assert (path, out_port) == ("hw", want)
        pkt = assert_checksums(out)
        assert pkt[IP].ttl == 63


def test_fin_in_closing_mode_stays_in_software_and_gc_destroys_hw_rules() -> None:
    b = Bench()
    b.handshake()
    b.drain()
    b.types()
    path, _ = b.send(tcp4("FA"), 1)
    assert path == "sw_fastpath"  # the hardware punts FIN; software forwards it, CLOSING
    b.advance(1)
    assert "DESTROY" in b.types() and not b.driver.rules
    assert b.send(tcp4_reply("FA"), 2)[0] == "sw_fastpath"


def test_fin_in_teardown_mode_takes_the_classic_path() -> None:
    b = Bench(flowtable='fin_mode = "teardown"')
    b.handshake()
    b.drain()
    b.types()
    path, _ = b.send(tcp4("FA"), 1)
    assert path == "classic"
    assert "TEARDOWN" in b.types()
    b.advance(2)
    assert "DESTROY" in b.types() and not b.driver.rules
    assert all(len(ft) == 0 for ft in b.router.flowtables.values())


def test_idle_flow_expires_and_destroys_both_directions() -> None:
    b = Bench()
    b.handshake()
    b.drain()
    assert len(b.driver.rules) == 2
    b.types()
    b.advance(29)
    assert "TEARDOWN" not in b.types()
    b.advance(4)
    events = [e for e in b.events if e["type"] in ("TEARDOWN", "DESTROY")]
    assert [e["type"] for e in events] == ["TEARDOWN", "DESTROY"]
    assert events[0]["reason"] == "expired" and events[0]["original"]["dport"] == 80
    assert not b.driver.rules
    (conn,) = list(b.router.conntrack)  # the connection survives, back on the classic path
    assert not conn.status & (Status.OFFLOAD | Status.HW_OFFLOAD)
    assert b.send(tcp4("PA"), 1)[0] == "classic"


def test_hardware_hits_keep_the_flow_alive() -> None:
    b = Bench()
    b.handshake()
    b.drain()
    for _ in range(60):
        assert b.send(tcp4("PA"), 1)[0] == "hw"
        b.advance(1)
    assert len(b.driver.rules) == 2


def test_udp_offloaded_from_the_second_packet() -> None:
    b = Bench()
    assert b.send(udp4(), 1)[0] == "classic"  # unconfirmed: not offloaded yet
    reply = udp4(
        src="10.0.2.2", dst=H1, sport=53, dport=5000, mac="00:00:00:00:02:fe", src_mac=H2_MAC
    )
    assert b.send(reply, 2)[0] == "classic"
    assert "OFFLOAD" in b.types()
    b.drain()
    path, ((port, out),) = b.send(udp4(), 1)
    assert (path, port) == ("hw", 2) and assert_checksums(out)[UDP].dport == 53


def test_ipv6_tcp_reaches_hardware() -> None:
    b = Bench()
    assert b.send(tcp6("S"), 1)[0] == "classic"
    synack = tcp6("SA", src="2001:db8:2::2", dst="2001:db8:1::1", sport=80, dport=40000,
                  mac="00:00:00:00:02:fe", src_mac=H2_MAC)  # fmt: skip
    assert b.send(synack, 2)[0] == "classic"
    assert b.send(tcp6("A"), 1)[0] == "classic"
    b.drain()
    path, ((port, out),) = b.send(tcp6("PA"), 1)
    assert (path, port) == ("hw", 2) and assert_checksums(out)[IPv6].hlim == 63


def test_masqueraded_flow_is_rewritten_by_hardware_both_ways() -> None:
    b = Bench(FORWARD_OFFLOAD + NAT)
    _, ((_, syn),) = b.send(tcp4("S", dst=INTERNET), 1)
    public = assert_checksums(syn)[TCP].sport
    b.send(tcp4_reply("SA", src=INTERNET, dst=R2, dport=public), 2)
    assert b.send(tcp4("A", dst=INTERNET), 1)[0] == "classic"
    b.drain()
    path, ((_, out),) = b.send(tcp4("PA", dst=INTERNET), 1)
    pkt = assert_checksums(out)
    assert path == "hw" and (pkt[IP].src, pkt[TCP].sport) == (R2, public)
    path, ((port, back),) = b.send(tcp4_reply("PA", src=INTERNET, dst=R2, dport=public), 2)
    pkt = assert_checksums(back)
    assert (path, port, pkt[IP].dst, pkt[TCP].dport, pkt.dst) == ("hw", 1, H1, 40000, H1_MAC)


def test_ruleset_without_the_flowtable_tears_down_and_destroys() -> None:
    b = Bench()
    b.handshake()
    b.drain()
    b.types()
    plain = "table inet filter { chain forward { type filter hook forward priority 0; } }"
    b.router.apply_ruleset(loads(plain), b.now)
    assert "TEARDOWN" in b.types()
    b.advance(2)
    assert "DESTROY" in b.types() and not b.driver.rules
    assert not b.router.flowtables
    assert b.send(tcp4("PA"), 1)[0] == "classic"


def test_ruleset_keeping_the_flowtable_keeps_its_flows() -> None:
    """``nft -f`` of the same file again: the flowtable is only updated, its flows stay."""
    b = Bench()
    b.handshake()
    b.drain()
    b.router.apply_ruleset(b.router.ruleset.apply(FORWARD_OFFLOAD), b.now)
    assert b.send(tcp4("PA"), 1)[0] == "hw"
    assert len(next(iter(b.router.flowtables.values()))) == 1


FLOW_ADD = "meta l4proto { tcp, udp } flow add @ft"
DROP_WEB = FORWARD_OFFLOAD.replace(FLOW_ADD, "tcp dport 80 drop\n        " + FLOW_ADD)


def _offloaded_then_replaced(script: str) -> Bench:
    b = Bench()
    b.handshake()
    b.drain()
    assert b.send(tcp4("PA"), 1)[0] == "hw"
    b.types()
    old = next(iter(b.router.flowtables.values()))
    b.router.apply_ruleset(b.router.ruleset.apply(script), b.now)
    assert "TEARDOWN" in b.types() and old not in b.router.flowtables.values()
    b.advance(2)
    assert "DESTROY" in b.types() and not b.driver.rules  # DESTROY through the offload queue
    (new,) = b.router.flowtables.values()
    assert len(new) == 0 and len(old) == 0
    return b


def test_flowtable_free_on_ruleset_replace_tears_down_flows() -> None:
    """``flush ruleset`` + the same table: the old flowtable is freed (nf_flow_table_free) and
    the offloaded connection meets the new rules on the classic path."""
    b = _offloaded_then_replaced("flush ruleset\n" + DROP_WEB)
    path, _ = b.send(tcp4("PA"), 1)
    assert path == "drop" and b.router.drops["ruleset_forward"] == 1
    (conn,) = b.router.conntrack
    assert not conn.status & (Status.OFFLOAD | Status.HW_OFFLOAD)


def test_flowtable_deleted_and_added_in_one_transaction_is_a_new_flowtable() -> None:
    b = _offloaded_then_replaced(
        "flush chain inet filter forward\n"
        "delete flowtable inet filter ft\n"
        "add flowtable inet filter ft { hook ingress priority 0; devices = { eth0, eth1 }; "
        "flags offload; }\n"
        "add rule inet filter forward meta l4proto { tcp, udp } flow add @ft\n"
    )
    assert b.send(tcp4("PA"), 1)[0] == "classic"  # back on the classic path, offered again
    b.drain()
    assert b.send(tcp4("PA"), 1)[0] == "hw"


def test_port_down_tears_down_flows_entering_there() -> None:
    b = Bench()
    b.handshake()
    b.drain()
    b.types()
    b.router.port_down(2, b.now)
    assert "TEARDOWN" in b.types()
    b.advance(2)
    assert not b.driver.rules


def test_snapshot_is_json_and_counts_paths() -> None:
    b = Bench()
    b.handshake()
    b.send(tcp4("PA"), 1)
    b.drain()
    b.send(b"\x00" * 10, 1)
    snap = json.loads(json.dumps(b.router.snapshot(b.now)))
    (conn,) = snap["conns"]
    assert conn["offload"] == "HW_OFFLOAD" and conn["flowtable"] == "ft"
    assert conn["original"]["src"] == H1 and conn["reply"]["dst"] == H1
    stats = snap["stats"]
    assert stats["classic_packets"] == 3 and stats["sw_fastpath_hits"] == 1
    assert stats["punts"]["miss"] == 5 and stats["hw_entries"] == 2
    assert stats["drops"] == {"malformed_eth_truncated": 1}
    assert stats["offload"]["replace_done"] == 1


def test_punts_counted_per_reason_name_and_unknown_reasons_by_number() -> None:
    b = Bench()
    b.router.receive(tcp4("S"), 1, b.now, PuntReason.TTL)
    b.router.receive(tcp4("S"), 1, b.now, 13)  # a pipeline newer than this controller
    b.router.receive(tcp4("S"), 1, b.now)
    assert b.router.snapshot(b.now)["stats"]["punts"] == {"ttl": 1, "reason_13": 1, "miss": 1}


def test_events_returned_with_the_packet_that_caused_them() -> None:
    b = Bench()
    outcome = b.router.receive(tcp4("S"), 1, b.now)
    assert [e["type"] for e in outcome.events] == ["NEW"]
    assert outcome.events[0]["original"]["sport"] == 40000


def test_only_wanted_event_types_are_built_and_delivered() -> None:
    """A monitor listening for HW_OFFLOAD only (bench_cps's): the rest are never described."""
    b = Bench()
    b.router.wants = lambda kind: kind == "HW_OFFLOAD"
    for frame, port in ((tcp4("S"), 1), (tcp4_reply("SA"), 2), (tcp4("A"), 1)):
        assert b.router.receive(frame, port, b.now).events == []
    b.drain()
    (conn,) = list(b.router.conntrack)
    assert conn.status & Status.HW_OFFLOAD  # the state moved on regardless
    assert b.types() == ["HW_OFFLOAD"]
    assert b.router.snapshot(b.now)["stats"]["conntrack"]["insert"] == 1


def test_two_routers_share_nothing() -> None:
    a, c = Bench(), Bench()
    a.handshake()
    assert len(a.router.conntrack) == 1 and len(c.router.conntrack) == 0


def test_ruleset_removing_a_device_tears_down_flows_entering_there() -> None:
    b = Bench()
    b.handshake()
    b.drain()
    b.types()
    script = "delete flowtable inet filter ft { devices = { eth1 }; }"
    b.router.apply_ruleset(b.router.ruleset.apply(script), b.now)
    events = [e for e in b.events if e["type"] == "TEARDOWN"]
    assert events and events[0]["reason"] == "device_down"
    ft = next(iter(b.router.flowtables.values()))
    assert ft.devices == {1}


def test_ruleset_changing_the_offload_flag_replaces_the_flowtable() -> None:
    b = Bench()
    b.handshake()
    b.drain()
    b.types()
    b.router.apply_ruleset(loads(FORWARD_OFFLOAD.replace("flags offload;", "")), b.now)
    assert "TEARDOWN" in b.types()
    b.advance(2)
    assert not b.driver.rules
    (ft,) = b.router.flowtables.values()
    assert not ft.offload and len(ft) == 0


def test_flowtable_without_devices_has_no_ingress_hook_and_no_driver_binding() -> None:
    """No devices: no nf_flow_offload_*_hook registered and no FLOW_BLOCK_BIND, so the flow the
    forward chain adds is never forwarded by the fast path and never reaches hardware."""
    b = Bench(FORWARD_OFFLOAD.replace(" devices = { eth0, eth1 };", ""))
    b.handshake()
    b.drain()
    (conn,) = b.router.conntrack
    assert conn.status & Status.OFFLOAD and not conn.status & Status.HW_OFFLOAD
    b.advance(2)
    assert b.send(tcp4("PA"), 1)[0] == "classic"
    b.drain()
    assert not b.driver.rules and "HW_OFFLOAD" not in b.types()


def test_flowtable_device_the_switch_lacks_is_an_error_with_its_location() -> None:
    with pytest.raises(RulesetError, match=r"ruleset.text:2:\d+: .*no device eth9"):
        Router(router_config(FORWARD_OFFLOAD.replace("eth0, eth1", "eth0, eth9")))


SOFTWARE_ONLY = FORWARD_OFFLOAD.replace(" flags offload;", "")
H2_NEW_MAC = "00:00:00:00:02:99"


def _one_way_udp_after_h2_answers(ruleset: str) -> tuple[Bench, list[tuple[int, bytes]]]:
    """h1 streams UDP to h2; h2 answers the router's ARP, h1 is never resolved."""
    b = Bench(ruleset, static_neighbors=False)
    path, sends = b.send(udp4(), 1)
    assert path == "classic" and Ether(sends[0][1]).haslayer(ARP)  # queued, h2 solicited
    _, flushed = b.send(arp_who_has(R2, src=H2, src_mac=H2_MAC), 2)
    assert any(Ether(f).dst == H2_MAC and Ether(f).haslayer(UDP) for _, f in flushed)
    assert b.send(udp4(), 1)[0] == "classic"  # confirmed: flow add @ft
    return b, sends


def test_software_flowtable_uses_neigh_xmit_and_admits_an_unresolved_neighbour() -> None:
    """Without ``flags offload`` the flow's xmit is NEIGH (nft_default_forward_path): the
    unresolved h1 (REPLY's next hop) does not stop the offload; each packet is resolved."""
    b, _ = _one_way_udp_after_h2_answers(SOFTWARE_ONLY)
    (ft,) = b.router.flowtables.values()
    assert len(ft) == 1
    path, sends = b.send(udp4(), 1)
    assert path == "sw_fastpath" and Ether(sends[0][1]).dst == H2_MAC


def test_neighbour_mac_change_reaches_the_software_fast_path() -> None:
    b, _ = _one_way_udp_after_h2_answers(SOFTWARE_ONLY)
    b.now += 1
    b.send(arp_who_has(R2, src=H2, src_mac=H2_NEW_MAC), 2)  # h2 moved to a new NIC
    path, sends = b.send(udp4(), 1)
    assert path == "sw_fastpath" and [Ether(f).dst for _, f in sends] == [H2_NEW_MAC]


def test_offload_flowtable_unresolved_neighbour_stays_in_software_until_resolved() -> None:
    """``flags offload``: DIRECT only where the neighbour is valid, NEIGH elsewhere; the hardware
    rule needs the neighbour (flow_offload_eth_dst -ENOENT), REPLACE is retried on refresh."""
    b, _ = _one_way_udp_after_h2_answers(FORWARD_OFFLOAD)
    b.drain()
    (conn,) = b.router.conntrack
    assert conn.status & Status.OFFLOAD and not conn.status & Status.HW_OFFLOAD
    assert b.router.offload.counters["build_failed"] == 1
    assert b.send(udp4(), 1)[0] == "sw_fastpath"
    b.send(arp_who_has(R1, src=H1, src_mac=H1_MAC), 1)  # h1 shows up
    b.now += 2
    assert b.send(udp4(), 1)[0] == "sw_fastpath"  # the refresh queues REPLACE again
    b.drain()
    assert conn.status & Status.HW_OFFLOAD
    path, sends = b.send(udp4(), 1)
    assert path == "hw" and Ether(sends[0][1]).dst == H2_MAC
