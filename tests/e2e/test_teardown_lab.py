"""The legacy FIN/RST mode (kernels before 6.14): a FIN tears the flow down."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import conn_to, run, serve, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab():
    from controller.lab import Lab

    with Lab("router", "softswitch", grpc_port=9591, flowtable={"fin_mode": "teardown"}) as lab:
        yield lab


def test_fin_in_teardown_mode_tears_the_flow_down(lab):
    server = serve(lab, "h2", "tcp-server", "5302")
    run(lab, "h1", "tcp-client", lab.address("h2"), "5302", "10", "0.02")
    out, _ = server.communicate(timeout=20)
    assert '"received_bytes": 1000' in out
    # the FIN took the classic path and the flow left the flowtable
    assert wait_for(lambda: (c := conn_to(lab, 5302)) is None or c.get("flowtable") is None)
