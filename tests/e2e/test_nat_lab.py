"""The nat lab: masquerade and a DNAT port-forward, both directions, offloaded."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Sniffer, conn_to, run, serve, start, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(target):
    from controller.lab import Lab

    with Lab("nat", target, grpc_port=9571) as lab:
        yield lab


def test_masquerade_both_directions_in_hardware(lab):
    wan = lab.topology.port_of("h3").gateway(4)
    outside = Sniffer(lab, "h3", 5201)
    inside = Sniffer(lab, "h1", 5201)
    server = serve(lab, "h3", "tcp-server", "5201")
    client = start(lab, "h1", "tcp-client", lab.address("h3"), "5201", "30", "0.05")
    assert wait_for(lambda: (c := conn_to(lab, 5201)) and c["offload"] == "HW_OFFLOAD")
    client.communicate(timeout=20)
    out, _ = server.communicate(timeout=20)
    assert '"received_bytes": 3000' in out
    to_server = [p for p in outside.result() if p["dport"] == 5201]
    assert to_server and all(p["src"] == wan and p["l4_csum_ok"] and p["ip_csum_ok"]
                             for p in to_server)
    back = [p for p in inside.result() if p["sport"] == 5201]
    assert back and all(p["dst"] == lab.address("h1") and p["src"] == lab.address("h3")
                        and p["l4_csum_ok"] for p in back)
    conn = conn_to(lab, 5201)
    assert conn["reply"]["dst"] == wan  # the masqueraded reply tuple


def test_dnat_port_forward_both_directions_in_hardware(lab):
    wan = lab.topology.port_of("h3").gateway(4)
    inside = Sniffer(lab, "h1", 80)
    outside = Sniffer(lab, "h3", 8080)
    server = serve(lab, "h1", "tcp-server", "80")
    client = start(lab, "h3", "tcp-client", wan, "8080", "30", "0.05")
    assert wait_for(lambda: (c := conn_to(lab, 8080)) and c["offload"] == "HW_OFFLOAD")
    client.communicate(timeout=20)
    out, _ = server.communicate(timeout=20)
    assert '"received_bytes": 3000' in out
    forwarded = [p for p in inside.result() if p["dport"] == 80]
    assert len(forwarded) >= 30
    assert all(p["dst"] == lab.address("h1") and p["l4_csum_ok"] for p in forwarded)
    replies = [p for p in outside.result() if p["sport"] == 8080]
    assert replies and all(p["src"] == wan and p["l4_csum_ok"] for p in replies)


def test_udp_masqueraded_echo_without_loss(lab):
    echo = serve(lab, "h3", "udp-echo", "5202")
    try:
        assert run(lab, "h2", "udp-client", lab.address("h3"), "5202", "30", "0.05") == {
            "sent": 30, "received": 30}
        assert wait_for(lambda: (c := conn_to(lab, 5202)) and c["offload"] == "HW_OFFLOAD"), (
            conn_to(lab, 5202))
    finally:
        echo.kill()
