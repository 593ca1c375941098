"""The P4 switch dies and comes back empty under 1,000 offloaded connections: the controller
reconnects, pushes the pipeline, writes every live flow's entries again from its record, and
the connections carry on in hardware (softswitch here; BMv2 with P4FT_TARGET=bmv2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.conftest import HOSTPKT, serve, wait_for

pytestmark = pytest.mark.e2e

FLOWS = 1000
PORT = 5401


@pytest.fixture(scope="module")
def lab(target):
    from controller.lab import Lab

    # flows outlive the test's pauses (offload, restart) without traffic
    with Lab("router", target, grpc_port=9631, flowtable={"udp_timeout": 300}) as lab:
        yield lab


def _offloaded(lab) -> int:
    return sum(1 for c in lab.flows() if c["original"].get("dport") == PORT
               and c["offload"] == "HW_OFFLOAD" and c["hw_directions"] == 2)


def _punts(lab) -> int:
    return sum(lab.stats()["punts"].values())


def _round(flows) -> dict:
    """One more round of the udp-flows tool: a datagram on every flow until each is echoed."""
    flows.stdin.write("again\n")
    flows.stdin.flush()
    return json.loads(flows.stdout.readline())


def test_switch_restart_reinstalls_every_offloaded_flow_and_the_connections_carry_on(lab):
    echo = serve(lab, "h2", "udp-echo", str(PORT))
    flows = lab.host("h1").popen([sys.executable, HOSTPKT, "udp-flows", lab.address("h2"),
                                  str(PORT), str(FLOWS)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(flows.stdout.readline())
        assert first["echoed"] == FLOWS, first
        assert wait_for(lambda: _offloaded(lab) == FLOWS, timeout=60), _offloaded(lab)
        before = lab.stats()["driver"]

        lab.restart_switch()  # SIGKILL, then a fresh target: no pipeline, no entries
        # straight away, while the controller reconnects: what the switch cannot carry yet
        # is resent until it gets through (dropped without a pipeline, then punted and
        # forwarded by the software fast path until its entries are back)
        during = _round(flows)
        assert during["echoed"] == FLOWS, during

        def reinstalled() -> dict:
            driver = lab.stats()["driver"]
            return driver if driver.get("reconnects", 0) > before.get("reconnects", 0) \
                and driver.get("reinstalled", 0) + driver.get("reinstall_found", 0) >= 2 * FLOWS \
                else {}

        after = wait_for(reinstalled, timeout=60)
        assert after, (lab.stats()["driver"], lab.controller_log())
        assert after["pipeline_pushes"] == before["pipeline_pushes"] + 1
        assert after.get("reinstall_failed", 0) == 0
        assert lab.stats()["connected"]
        punts = _punts(lab)
        last = _round(flows)
        assert last["echoed"] == FLOWS, last
        # the switch carried them: a flow the reinstall missed would be punted (table miss)
        assert _punts(lab) - punts < FLOWS // 20, lab.stats()["punts"]
        assert _offloaded(lab) == FLOWS  # the mirror never let go of a connection
    finally:
        flows.kill()
        echo.kill()
