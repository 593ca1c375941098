"""The router lab (two hosts, two subnets, dual-stack) on the softswitch with the controller."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import Sniffer, conn_to, run, start, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab():
    from controller.lab import Lab

    with Lab("router", "softswitch", grpc_port=9561) as lab:
        yield lab


def _punts(lab) -> int:
    return sum(lab.stats()["punts"].values())


def test_tcp_offloaded_and_rewritten_in_hardware(lab):
    h2 = lab.topology.port_of("h2")
    sniffer = Sniffer(lab, "h2", 5101, 6)
    server = start(lab, "h2", "tcp-server", "5101")
    client = start(lab, "h1", "tcp-client", lab.address("h2"), "5101", "40", "0.05")
    conn = wait_for(lambda: (c := conn_to(lab, 5101)) and c["offload"] == "HW_OFFLOAD" and c)
    assert conn, lab.flows()
    punts_at_offload = _punts(lab)
    client.communicate(timeout=20)
    server.communicate(timeout=20)
    seen = [p for p in sniffer.result() if p["dport"] == 5101 and p["src"] == lab.address("h1")]
    assert len(seen) >= 40
    for packet in seen:
        assert packet["ttl"] == 63  # 64 - 1, in hardware as in software
        assert packet["src_mac"] == h2.mac and packet["dst_mac"] == h2.host_mac
        assert packet["ip_csum_ok"] and packet["l4_csum_ok"], packet
    # after offload only FIN (and what closes the connection) reaches the controller
    assert _punts(lab) - punts_at_offload <= 4
    payload = [p for p in seen if "P" in p.get("flags", "")]
    assert len(payload) == 40


def test_udp_ipv6_offloaded_without_loss(lab):
    echo = start(lab, "h2", "udp-echo", "5102")
    try:
        result = run(lab, "h1", "udp-client", lab.address("h2", 6), "5102", "40", "0.05")
        assert result == {"sent": 40, "received": 40}
        conn = conn_to(lab, 5102)
        assert conn is not None and conn["family"] == "ipv6"
        assert conn["offload"] == "HW_OFFLOAD"
        assert conn["original"]["packets"] + conn["reply"]["packets"] <= 80
    finally:
        echo.kill()


def test_forward_counter_stops_counting_once_offloaded(lab):
    def counter() -> int:
        text = lab.p4ft("ruleset", "list")
        return int(re.search(r"counter packets (\d+)", text).group(1))

    before = counter()
    server = start(lab, "h2", "tcp-server", "5103")
    client = start(lab, "h1", "tcp-client", lab.address("h2"), "5103", "30", "0.05")
    client.communicate(timeout=20)
    server.communicate(timeout=20)
    counted = counter() - before
    # the handshake's packets take the classic path (counted); 30 data segments do not
    assert 0 < counted < 15, counted
