"""The router lab (two hosts, two subnets, dual-stack) on the softswitch with the controller,
once per punt channel (the CPU port as a netdev, the P4Runtime stream)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import Sniffer, conn_to, run, serve, start, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["netdev", "p4runtime"])
def lab(target, request):
    from controller.lab import Lab

    with Lab("router", target, grpc_port=9561, flowtable={"udp_timeout": 5},
             channel=request.param) as lab:
        yield lab


def _punts(lab) -> int:
    return sum(lab.stats()["punts"].values())


@pytest.mark.parametrize(("family", "port"), [(4, 5101), (6, 5121)])
def test_tcp_offloaded_and_rewritten_in_hardware(lab, family, port):
    h2 = lab.topology.port_of("h2")
    sniffer = Sniffer(lab, "h2", port)
    server = serve(lab, "h2", "tcp-server", str(port))
    classic = lab.stats()["paths"]["classic"]
    client = start(lab, "h1", "tcp-client", lab.address("h2", family), str(port), "40", "0.05")
    conn = wait_for(lambda: (c := conn_to(lab, port)) and c["offload"] == "HW_OFFLOAD" and c)
    assert conn, lab.flows()
    assert conn["family"] == f"ipv{family}"
    # the kernel's moment: SYN, SYN-ACK and the ACK that makes it ESTABLISHED took the classic
    # path, the ACK's `flow add` offloaded it; nothing after that was classic
    assert lab.stats()["paths"]["classic"] - classic == 3
    punts_at_offload = _punts(lab)
    client.communicate(timeout=20)
    server.communicate(timeout=20)
    seen = [p for p in sniffer.result()
            if p["dport"] == port and p["src"] == lab.address("h1", family)]
    assert len(seen) >= 40
    for packet in seen:
        assert packet["ttl"] == 63  # 64 - 1 (hop limit for IPv6), in hardware as in software
        assert packet["src_mac"] == h2.mac and packet["dst_mac"] == h2.host_mac
        assert packet.get("ip_csum_ok", True) and packet["l4_csum_ok"], packet
    # after offload only FIN (and what closes the connection) reaches the controller
    assert _punts(lab) - punts_at_offload <= 4
    payload = [p for p in seen if "P" in p.get("flags", "")]
    assert len(payload) == 40


def test_udp_ipv6_offloaded_without_loss(lab):
    echo = serve(lab, "h2", "udp-echo", "5102")
    try:
        result = run(lab, "h1", "udp-client", lab.address("h2", 6), "5102", "40", "0.05")
        assert result == {"sent": 40, "received": 40}
        conn = wait_for(lambda: (c := conn_to(lab, 5102)) and c["offload"] == "HW_OFFLOAD" and c)
        assert conn and conn["family"] == "ipv6", conn_to(lab, 5102)
        assert conn["original"]["packets"] + conn["reply"]["packets"] <= 80
    finally:
        echo.kill()



def test_hardware_counters_rise_while_punts_stay_flat(lab):
    echo = serve(lab, "h2", "udp-echo", "5112")
    try:
        punts = _punts(lab)
        assert run(lab, "h1", "udp-client", lab.address("h2"), "5112", "60", "0.03") == {
            "sent": 60, "received": 60}
        # conntrack's accounting gets the hardware's direct counters through STATS
        assert wait_for(lambda: conn_to(lab, 5112)["original"]["packets"] == 60), (
            conn_to(lab, 5112))
        assert conn_to(lab, 5112)["reply"]["packets"] == 60
        assert _punts(lab) - punts <= 6  # the first packets only (and neighbour traffic)
    finally:
        echo.kill()

def test_forward_counter_stops_counting_once_offloaded(lab):
    def counter() -> int:
        text = lab.p4ft("ruleset", "list")
        return int(re.search(r"counter packets (\d+)", text).group(1))

    before = counter()
    server = serve(lab, "h2", "tcp-server", "5103")
    client = start(lab, "h1", "tcp-client", lab.address("h2"), "5103", "30", "0.05")
    client.communicate(timeout=20)
    server.communicate(timeout=20)
    counted = counter() - before
    # the handshake's packets take the classic path (counted); 30 data segments do not
    assert 0 < counted < 15, counted


def test_tcp_fin_closes_and_rst_tears_down_the_offloaded_flow(lab):
    for port, end in (("5105", "fin"), ("5106", "rst")):
        server = serve(lab, "h2", "tcp-server", port)
        run(lab, "h1", "tcp-client", lab.address("h2"), port, "20", "0.05", end)
        server.communicate(timeout=20)
        # closing mode: FIN/RST are punted, the software path forwards them and GC removes
        # both hardware entries (the flow stays in software until it times out)
        gone = wait_for(lambda port=port: (c := conn_to(lab, int(port))) is None
                        or (c["offload"] != "HW_OFFLOAD" and c["hw_directions"] == 0))
        assert gone, conn_to(lab, int(port))
    assert lab.stats()["punts"].get("tcp_fin_rst", 0) >= 2


@pytest.mark.parametrize("kind", ["frags", "options"])
def test_fragments_and_ipv4_options_take_the_classic_path(lab, kind):
    h1 = lab.topology.port_of("h1")
    before = dict(lab.stats()["punts"])
    sniffer = Sniffer(lab, "h2", 5107)
    sent = run(lab, "h1", "send", lab.host("h1").defaultIntf().name, kind, h1.mac,
               lab.address("h1"), lab.address("h2"), "5107")["sent"]

    def arrived(frames: list[dict]) -> list[dict]:
        return [p for p in frames if p["dst"] == lab.address("h2")]

    assert sniffer.wait(lambda frames: len(arrived(frames)) >= sent)  # via the controller
    arrived = arrived(sniffer.result())
    assert len(arrived) == sent
    assert all(p["ttl"] == 63 and p["ip_csum_ok"] for p in arrived)
    if kind == "options":
        assert arrived[0]["options"] >= 1  # record route (+ padding) forwarded intact
    punts = lab.stats()["punts"]
    key = "ipv4_frag_or_options"
    # (h2's ICMP port unreachable echoes the options, so it is punted too)
    assert punts.get(key, 0) - before.get(key, 0) >= sent


def test_oversize_with_df_gets_icmp_fragmentation_needed(lab):
    # the switch's ports are hardware with a jumbo MTU from the start (the lab sets it before
    # the switch opens them: BMv2's libpcap sizes its capture from it); only the host's side
    # is raised, so that it can send a frame larger than the router port's mtu of 1500
    from controller.lab.nodes import SWITCH_PORT_MTU

    h1 = lab.topology.port_of("h1")
    intf = lab.host("h1").defaultIntf()
    assert int(Path(f"/sys/class/net/{intf.link.intf2.name}/mtu").read_text()) == \
        SWITCH_PORT_MTU
    lab.host("h1").cmd(f"ip link set {intf.name} mtu 9000")
    try:
        sniffer = Sniffer(lab, "h1", 5108)
        run(lab, "h1", "send", intf.name, "big", h1.mac, lab.address("h1"), lab.address("h2"),
            "5108")
        assert sniffer.wait(lambda frames: any("icmp" in p for p in frames))
        icmp = [p for p in sniffer.result() if "icmp" in p]
        assert [p["icmp"] for p in icmp] == [[3, 4]]
        assert icmp[0]["src"] == h1.gateway(4) and icmp[0]["ip_csum_ok"]
    finally:
        lab.host("h1").cmd(f"ip link set {intf.name} mtu {h1.mtu}")


def test_controller_restart_loses_no_offloaded_packet_and_adopts_entries(lab):
    echo = serve(lab, "h2", "udp-echo", "5109")
    try:
        client = start(lab, "h1", "udp-client", lab.address("h2"), "5109", "80", "0.05")
        assert wait_for(lambda: (c := conn_to(lab, 5109)) and c["offload"] == "HW_OFFLOAD")
        lab.stop_controller()
        lab.start_controller()
        out, err = client.communicate(timeout=30)
        assert json.loads(out) == {"sent": 80, "received": 80}, err
        stats = lab.stats()
        assert stats["controller"].get("adopted", 0) >= 2  # both directions of this flow
        assert stats["controller"].get("orphans_deleted", 0) == 0
    finally:
        echo.kill()


def test_punt_device_down_and_up_loses_no_offloaded_packet_and_punts_again(lab):
    if lab.channel != "netdev":
        pytest.skip("the netdev channel's device")
    echo = serve(lab, "h2", "udp-echo", "5113")
    server = serve(lab, "h2", "tcp-server", "5114")
    try:
        client = start(lab, "h1", "udp-client", lab.address("h2"), "5113", "80", "0.05")
        assert wait_for(lambda: (c := conn_to(lab, 5113)) and c["offload"] == "HW_OFFLOAD")
        lab.host("s1").cmd("ip link set s1-punt down")
        assert wait_for(lambda: not lab.stats()["punt_channel"]["up"]
                        or lab.stats()["punt_channel"]["counters"].get("rx_error_ENETDOWN"))
        lab.host("s1").cmd("ip link set s1-punt up")
        out, err = client.communicate(timeout=30)
        assert json.loads(out) == {"sent": 80, "received": 80}, err
        # the slow path is back without a restart of the switch: a new connection is offloaded
        tcp = start(lab, "h1", "tcp-client", lab.address("h2"), "5114", "40", "0.05")
        assert wait_for(lambda: (c := conn_to(lab, 5114)) and c["offload"] == "HW_OFFLOAD")
        tcp.communicate(timeout=20)
    finally:
        echo.kill()
        server.kill()


def test_idle_flow_expires_and_both_hardware_entries_go(lab):
    echo = serve(lab, "h2", "udp-echo", "5110")
    try:
        # over a second: after the restart above h1 is not yet a known neighbour, so the first
        # REPLACE fails (as the kernel's flow_offload_eth_dst) and the next refresh retries it
        run(lab, "h1", "udp-client", lab.address("h2"), "5110", "5", "0.4")
        assert wait_for(lambda: (c := conn_to(lab, 5110)) and c["offload"] == "HW_OFFLOAD")
        recorded = lab.stats()["hw_entries_recorded"]
        # udp_timeout 5 s: no traffic, the flow expires and DESTROYs both directions
        assert wait_for(lambda: (c := conn_to(lab, 5110)) is None or c.get("flowtable") is None
                        ), conn_to(lab, 5110)
        assert wait_for(lambda: lab.stats()["hw_entries_recorded"] <= recorded - 2)
    finally:
        echo.kill()


def test_ruleset_apply_removing_the_flowtable_removes_its_hardware_entries(lab):
    # runs last in this module: it replaces the lab's ruleset
    echo = serve(lab, "h2", "udp-echo", "5111")
    try:
        run(lab, "h1", "udp-client", lab.address("h2"), "5111", "5", "0.05")
        assert wait_for(lambda: (c := conn_to(lab, 5111)) and c["offload"] == "HW_OFFLOAD")
        recorded = lab.stats()["hw_entries_recorded"]  # (adopted ones of the restart too)
        script = lab.workdir / "no-flowtable.nft"
        script.write_text("flush ruleset\ntable inet filter {\n chain forward {\n"
                          "  type filter hook forward priority 0; policy accept;\n }\n}\n")
        assert lab.p4ft("ruleset", "apply", str(script)) == ""
        assert lab.snapshot()["flowtables"] == []
        assert wait_for(lambda: lab.stats()["hw_entries_recorded"] <= recorded - 2), lab.stats()
        assert lab.stats()["hw_flows"] == 0
        # traffic still flows, now on the classic path
        assert run(lab, "h1", "udp-client", lab.address("h2"), "5111", "5", "0.05") == {
            "sent": 5, "received": 5}
    finally:
        echo.kill()


def test_ruleset_apply_deleting_a_used_flowtable_is_refused(lab):
    script = lab.workdir / "delete-ft.nft"
    script.write_text("table inet t2 {\n flowtable f2 { hook ingress priority 0; devices = "
                      "{ eth0 }; }\n chain c { type filter hook forward priority 0; "
                      "flow add @f2; }\n}\n")
    assert lab.p4ft("ruleset", "apply", str(script)) == ""
    script.write_text("delete flowtable inet t2 f2\n")
    out = lab.p4ft("ruleset", "apply", str(script))
    assert out.startswith("p4ft ruleset: ") and "f2" in out
    assert "flowtable f2" in lab.p4ft("ruleset", "list")
