"""The driver's test target: the softswitch's real P4Runtime server on an ephemeral port.

Until the interpreter and flowtable.p4's compiled fixture are in the tree, the server runs a
stand-in pipeline with flowtable.p4's tables and actions (built from the softswitch tests'
stand-in Table), described by a P4Info written after the P4 program's names. ``Bmv2Device``
answers a full table the way BMv2 does (UNKNOWN "Error when adding match entry to target").
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from finsy.proto import p4i, rpc_code
from google.protobuf import text_format

from ndo.api import FlowActions, FlowMatch, FlowRule
from ndo.p4runtime.driver import P4RuntimeDriver
from ndo.p4runtime.schema import FlowSchema, Pipeline
from softswitch.p4rt_codec import P4RTError
from softswitch.p4rt_device import Device
from softswitch.p4runtime_server import P4RuntimeServer
from tests.softswitch.p4rt_support import ActionInfo, FakeClock, MatchKey, Table

DEVICE_ID = 3
V4, V6, FWD4, FWD6, MISS = 0x02000001, 0x02000002, 0x01000001, 0x01000002, 0x01000003


def _table(tid: int, name: str, addr_bits: int, action: int, counter: int, size: int) -> str:
    fields = [("ingress_port", 9), ("src_addr", addr_bits), ("dst_addr", addr_bits),
              ("protocol", 8), ("sport", 16), ("dport", 16)]
    matches = " ".join(f'match_fields {{ id: {i} name: "{n}" bitwidth: {b} match_type: EXACT }}'
                       for i, (n, b) in enumerate(fields, 1))
    return (f'tables {{ preamble {{ id: {tid} name: "{name}" alias: "{name.split(".")[1]}" }} '
            f"{matches} action_refs {{ id: {action} }} action_refs {{ id: {MISS} }} "
            f"const_default_action_id: {MISS} direct_resource_ids: {counter} size: {size} "
            "idle_timeout_behavior: NOTIFY_CONTROL }\n")


def _action(aid: int, name: str, addr_bits: int) -> str:
    params = [("port", 9), ("smac", 48), ("dmac", 48), ("src_addr", addr_bits),
              ("dst_addr", addr_bits), ("sport", 16), ("dport", 16), ("mtu", 16)]
    body = " ".join(f'params {{ id: {i} name: "{n}" bitwidth: {b} }}'
                    for i, (n, b) in enumerate(params, 1))
    return f'actions {{ preamble {{ id: {aid} name: "{name}" }} {body} }}\n'


def p4info_text(size: int = 64) -> str:
    return (
        _table(V4, "FtIngress.flow_v4", 32, FWD4, 0x05000001, size)
        + _table(V6, "FtIngress.flow_v6", 128, FWD6, 0x05000002, size)
        + _action(FWD4, "FtIngress.forward_v4", 32)
        + _action(FWD6, "FtIngress.forward_v6", 128)
        + f'actions {{ preamble {{ id: {MISS} name: "FtIngress.punt_miss" }} }}\n'
        + 'direct_counters { preamble { id: 0x05000001 name: "FtIngress.flow_v4_counter" } '
        f"spec {{ unit: BOTH }} direct_table_id: {V4} }}\n"
        + 'direct_counters { preamble { id: 0x05000002 name: "FtIngress.flow_v6_counter" } '
        f"spec {{ unit: BOTH }} direct_table_id: {V6} }}\n"
        + 'controller_packet_metadata { preamble { id: 0x04000001 name: "packet_in" } '
        'metadata { id: 1 name: "ingress_port" bitwidth: 16 } '
        'metadata { id: 2 name: "reason" bitwidth: 8 } }\n'
        + 'controller_packet_metadata { preamble { id: 0x04000002 name: "packet_out" } '
        'metadata { id: 1 name: "egress_port" bitwidth: 16 } }\n'
    )


def p4info(size: int = 64) -> p4i.P4Info:
    return text_format.Parse(p4info_text(size), p4i.P4Info())


def pipeline(size: int = 64) -> Pipeline:
    return Pipeline(p4info(size), json.dumps({"program": "flowtable stand-in"}).encode())


class StandInPipeline:
    """flowtable.p4's tables and actions with dict storage; packets never run through it here."""

    def __init__(self, size: int) -> None:
        def table(family: int, bits: int) -> Table:
            name = f"FtIngress.flow_v{family}"
            keys = [MatchKey(n, "exact", b) for n, b in (
                ("ingress_port", 9), ("src_addr", bits), ("dst_addr", bits), ("protocol", 8),
                ("sport", 16), ("dport", 16))]
            return Table(name, keys, size, ("FtIngress.punt_miss", ()), support_timeout=True,
                         direct_counter=f"{name}_counter", const_default=True)

        def action(name: str, bits: int) -> ActionInfo:
            return ActionInfo(name, [("port", 9), ("smac", 48), ("dmac", 48), ("src_addr", bits),
                                     ("dst_addr", bits), ("sport", 16), ("dport", 16),
                                     ("mtu", 16)])

        self.tables = {t.name: t for t in (table(4, 32), table(6, 128))}
        self.actions = {a.name: a for a in (action("FtIngress.forward_v4", 32),
                                            action("FtIngress.forward_v6", 128),
                                            ActionInfo("FtIngress.punt_miss", []))}
        self.counters: dict = {}
        self.registers: dict = {}


class Bmv2Device(Device):
    """BMv2's answer to a full table: UNKNOWN with PI's message, not RESOURCE_EXHAUSTED."""

    def write(self, updates, now):  # type: ignore[no-untyped-def]
        return [P4RTError(rpc_code.UNKNOWN, "Error when adding match entry to target")
                if r is not None and r.code == rpc_code.RESOURCE_EXHAUSTED else r
                for r in super().write(updates, now)]


@dataclass
class Target:
    server: P4RuntimeServer
    device: Device
    clock: FakeClock
    injected: list[bytes]
    address: str

    def table(self, family: int) -> Table:
        return self.device.pipeline.tables[f"FtIngress.flow_v{family}"]

    def driver(self, size: int = 64, **options) -> P4RuntimeDriver:  # type: ignore[no-untyped-def]
        options.setdefault("pipeline", pipeline(size))
        return P4RuntimeDriver(self.address, FlowSchema.from_p4info(p4info(size)),
                               device_id=DEVICE_ID, clock=self.clock, **options)


@contextlib.asynccontextmanager
async def running_target(size: int = 64, *, bmv2: bool = False,
                         port: int = 0) -> AsyncIterator[Target]:
    """A softswitch P4Runtime server whose sweeps and clock the test drives."""
    clock = FakeClock()
    injected: list[bytes] = []
    device = (Bmv2Device if bmv2 else Device)(
        DEVICE_ID, pipeline_factory=lambda doc, override: StandInPipeline(size))
    server = P4RuntimeServer(device, inject=injected.append, clock=clock, sweep_period=0)
    bound = await server.start(f"127.0.0.1:{port}")
    try:
        yield Target(server, device, clock, injected, f"127.0.0.1:{bound}")
    finally:
        await server.stop(0)


def v4_rule(n: int, port: int = 1, **actions) -> FlowRule:  # type: ignore[no-untyped-def]
    """The n-th distinct IPv4 TCP flow from 10.0.0.0/8 to 192.0.2.1:80."""
    match = FlowMatch(port, 4, (0x0A000000 + n).to_bytes(4, "big"), bytes([192, 0, 2, 1]), 6,
                      10000 + n % 50000, 80)
    defaults = {"egress_port": 2, "eth_src": bytes.fromhex("00000000fe02"),
                "eth_dst": bytes.fromhex("000000000202"), "mtu": 1500}
    return FlowRule(match, FlowActions(**{**defaults, **actions}))


def v6_rule(n: int, port: int = 1, **actions) -> FlowRule:  # type: ignore[no-untyped-def]
    match = FlowMatch(port, 6, bytes.fromhex("20010db8000100000000000000000000")[:-2]
                      + n.to_bytes(2, "big"), bytes.fromhex("20010db8000200000000000000000001"),
                      17, 5000 + n, 53)
    defaults = {"egress_port": 3, "eth_src": bytes.fromhex("00000000fe03"),
                "eth_dst": bytes.fromhex("000000000303"), "mtu": 1280}
    return FlowRule(match, FlowActions(**{**defaults, **actions}))
