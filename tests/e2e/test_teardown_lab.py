"""The legacy FIN/RST mode (kernels before 6.14): a FIN tears the flow down."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import conn_to, run, serve, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(target):
    from controller.lab import Lab

    with Lab("router", target, grpc_port=9591, flowtable={"fin_mode": "teardown"}) as lab:
        yield lab


@pytest.mark.parametrize(("port", "end"), [(5302, "fin"), (5303, "rst")])
def test_fin_or_rst_in_teardown_mode_tears_the_flow_down(lab, port, end):
    server = serve(lab, "h2", "tcp-server", str(port))
    run(lab, "h1", "tcp-client", lab.address("h2"), str(port), "10", "0.02", end)
    out, _ = server.communicate(timeout=20)
    assert '"received_bytes": 1000' in out
    # the FIN/RST took the classic path and the flow left the flowtable (and the hardware)
    assert wait_for(lambda: (c := conn_to(lab, port)) is None or c.get("flowtable") is None)
    assert wait_for(lambda: lab.stats()["hw_flows"] == 0), lab.stats()
