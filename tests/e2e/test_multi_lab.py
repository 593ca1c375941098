"""The multi lab: four hosts in four subnets; flows between several pairs offloaded at once."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import conn_to, serve, start, wait_for

pytestmark = pytest.mark.e2e

PAIRS = (("h1", "h3", 5401), ("h2", "h4", 5402), ("h4", "h1", 5403))


@pytest.fixture(scope="module")
def lab(target):
    from controller.lab import Lab

    with Lab("multi", target, grpc_port=9611) as lab:
        yield lab


def test_concurrent_flows_between_pairs_all_offloaded(lab):
    echoes = [serve(lab, dst, "udp-echo", str(port)) for _src, dst, port in PAIRS]
    try:
        clients = [start(lab, src, "udp-client", lab.address(dst), str(port), "30", "0.03")
                   for src, dst, port in PAIRS]
        for client in clients:
            out, err = client.communicate(timeout=30)
            assert json.loads(out) == {"sent": 30, "received": 30}, err
        for src, dst, port in PAIRS:
            conn = wait_for(lambda port=port: (c := conn_to(lab, port))
                            and c["offload"] == "HW_OFFLOAD" and c["hw_directions"] == 2 and c)
            assert conn, conn_to(lab, port)
            assert conn["original"]["src"] == lab.address(src)
            assert conn["reply"]["src"] == lab.address(dst)
        assert wait_for(lambda: lab.stats()["hw_entries_recorded"] == 2 * len(PAIRS)), lab.stats()
    finally:
        for echo in echoes:
            echo.kill()
