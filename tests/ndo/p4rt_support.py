"""The driver's test target: the softswitch (real P4Runtime server, real interpreter) running
flowtable.p4's compiled JSON, on in-process ports, with a clock the test drives.

The JSON and P4Info are the compiler's, from ``p4src/build/``. ``bmv2=True`` makes the server
answer a full table the way BMv2 does (UNKNOWN "Error when adding match entry to target",
p4-ecosystem.md §2.2) instead of the spec's RESOURCE_EXHAUSTED that the softswitch gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from finsy.proto import p4i, rpc_code
from google.protobuf import text_format

from controller.edges.pipeline_files import DEVICE_CONFIG, P4INFO
from ndo.api import FlowActions, FlowMatch, FlowRule
from ndo.p4runtime.driver import P4RuntimeDriver
from ndo.p4runtime.schema import FlowSchema, Pipeline
from softswitch.p4rt_codec import P4RTError
from softswitch.ports import QueuePort
from softswitch.switch import SoftSwitch
from softswitch.tables import Table
from tests.softswitch.p4rt_support import FakeClock

ROOT = Path(__file__).resolve().parents[2]
DEVICE_ID = 3
PORTS = (1, 2, 3)
BMV2_FULL = "Error when adding match entry to target"


def p4info_text() -> str:
    return P4INFO.read_text()


def p4info(size: int | None = None) -> p4i.P4Info:
    """flowtable.p4's P4Info; ``size`` overrides both flow tables' sizes."""
    info = text_format.Parse(p4info_text(), p4i.P4Info())
    if size is not None:
        for table in info.tables:
            table.size = size
    return info


def pipeline(size: int | None = None) -> Pipeline:
    return Pipeline(p4info(size), DEVICE_CONFIG.read_bytes())


def ids(name: str) -> int:
    """The P4Info id of a table or action, by name."""
    info = p4info()
    return next(o.preamble.id for o in (*info.tables, *info.actions) if o.preamble.name == name)


@dataclass
class Target:
    softswitch: SoftSwitch
    ports: dict[int, QueuePort]
    clock: FakeClock
    address: str
    size: int | None

    @property
    def server(self):  # type: ignore[no-untyped-def]
        return self.softswitch.server

    def table(self, family: int) -> Table:
        return self.softswitch.device.pipeline.tables[f"FtIngress.flow_v{family}"]

    def driver(self, **options) -> P4RuntimeDriver:  # type: ignore[no-untyped-def]
        options.setdefault("pipeline", pipeline(self.size))
        return P4RuntimeDriver(self.address, FlowSchema.from_p4info(p4info(self.size)),
                               device_id=DEVICE_ID, clock=self.clock, **options)


@contextlib.asynccontextmanager
async def running_target(size: int | None = 64, *, bmv2: bool = False, port: int = 0,
                         clock: FakeClock | None = None) -> AsyncIterator[Target]:
    """A softswitch with ports 1-3 whose idle sweeps and clock the test drives."""
    clock = clock or FakeClock()
    ports = {p: QueuePort(p) for p in PORTS}
    softswitch = SoftSwitch(ports.values(), device_id=DEVICE_ID, table_size=size, clock=clock,
                            sweep_period=0)
    if bmv2:
        _answer_full_like_bmv2(softswitch)
    bound = await softswitch.start(f"127.0.0.1:{port}")
    try:
        yield Target(softswitch, ports, clock, f"127.0.0.1:{bound}", size)
    finally:
        await softswitch.stop()


def _answer_full_like_bmv2(softswitch: SoftSwitch) -> None:
    device = softswitch.device
    write = device.write

    def bmv2_write(updates, now):  # type: ignore[no-untyped-def]
        return [P4RTError(rpc_code.UNKNOWN, BMV2_FULL)
                if r is not None and r.code == rpc_code.RESOURCE_EXHAUSTED else r
                for r in write(updates, now)]

    device.write = bmv2_write  # type: ignore[method-assign]


def v4_rule(n: int, port: int = 1, **actions) -> FlowRule:  # type: ignore[no-untyped-def]
    """The n-th distinct IPv4 TCP flow from 10.0.0.0/8 to 192.0.2.1:80, out of port 2."""
    match = FlowMatch(port, 4, (0x0A000000 + n).to_bytes(4, "big"), bytes([192, 0, 2, 1]), 6,
                      10000 + n % 50000, 80)
    defaults = {"egress_port": 2, "eth_src": bytes.fromhex("0200000002fe"),
                "eth_dst": bytes.fromhex("020000000202"), "mtu": 1500}
    return FlowRule(match, FlowActions(**{**defaults, **actions}))


def v6_rule(n: int, port: int = 1, **actions) -> FlowRule:  # type: ignore[no-untyped-def]
    """The n-th distinct IPv6 UDP flow from 2001:db8:1::/64 to [2001:db8:2::1]:53, out of 3."""
    match = FlowMatch(port, 6, bytes.fromhex("20010db8000100000000000000000000")[:-2]
                      + n.to_bytes(2, "big"), bytes.fromhex("20010db8000200000000000000000001"),
                      17, 5000 + n, 53)
    defaults = {"egress_port": 3, "eth_src": bytes.fromhex("0200000003fe"),
                "eth_dst": bytes.fromhex("020000000303"), "mtu": 1280}
    return FlowRule(match, FlowActions(**{**defaults, **actions}))
