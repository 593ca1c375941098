"""A softswitch whose flow tables hold one entry: what does not fit stays in software."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import conn_to, run, serve

pytestmark = [pytest.mark.e2e, pytest.mark.target(
    "softswitch", reason="--table-size exists only on the softswitch; BMv2's table sizes come "
    "from the compiled program")]


@pytest.fixture(scope="module")
def lab(target):
    from controller.lab import Lab

    with Lab("router", target, grpc_port=9581, table_size=1) as lab:
        yield lab


def test_table_full_keeps_the_flow_in_the_software_fast_path_without_loss(lab):
    echo = serve(lab, "h2", "udp-echo", "5301")
    try:
        before = lab.stats()["paths"]["sw_fastpath"]
        assert run(lab, "h1", "udp-client", lab.address("h2"), "5301", "40", "0.02") == {
            "sent": 40, "received": 40}
        conn = conn_to(lab, 5301)
        # the first direction took the one slot, the second was refused (NO_SPACE): as the
        # kernel, the flow counts as offloaded with one direction in hardware
        assert conn["hw_directions"] == 1
        stats = lab.stats()
        assert stats["capacity"].get("refused_no_space", 0) >= 1
        assert stats["paths"]["sw_fastpath"] - before >= 30  # the refused direction
    finally:
        echo.kill()
