"""Shared pieces of the P4Runtime server tests: a stand-in pipeline, its p4info, a running server.

The stand-in follows the interpreter's documented API (tables, entries, counters, ``process``) with
dict storage, so the protocol layers are tested on their own. Its ``process`` is a toy program:
frames from the CPU port carry a 2-byte packet_out header naming the egress port; other frames hit
``ingress.flow`` on (ingress port, first 4 bytes) or go to the CPU with a 2-byte packet_in header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from finsy.proto import p4i, p4r, p4r_grpc, rpc_status
from google.protobuf import text_format

from softswitch.externs import CounterArray, MeterArray, RegisterArray
from softswitch.p4rt_device import Device
from softswitch.p4runtime_server import P4RuntimeServer
from softswitch.ports import Port
from softswitch.switch import SoftSwitch
from softswitch.tables import DuplicateEntry, EntryNotFound, TableFull

CPU_PORT = 255
DEVICE_ID = 1
FLOW, ACL, ROUTE = 1, 2, 3  # table ids
FWD, DROP, NO_ACTION = 10, 11, 12  # action ids
FLOW_COUNTER, PORT_COUNTER, REGISTER, POLICER = 100, 200, 400, 500

P4INFO_TEXT = """
tables { preamble { id: 1 name: "ingress.flow" }
  match_fields { id: 1 name: "port" bitwidth: 9 match_type: EXACT }
  match_fields { id: 2 name: "dst" bitwidth: 32 match_type: EXACT }
  action_refs { id: 10 } action_refs { id: 11 } action_refs { id: 12 scope: DEFAULT_ONLY }
  direct_resource_ids: 100 size: 4 idle_timeout_behavior: NOTIFY_CONTROL }
tables { preamble { id: 2 name: "ingress.acl" }
  match_fields { id: 1 name: "proto" bitwidth: 8 match_type: TERNARY }
  match_fields { id: 2 name: "src" bitwidth: 32 match_type: LPM }
  match_fields { id: 3 name: "sport" bitwidth: 16 match_type: RANGE }
  match_fields { id: 4 name: "vlan" bitwidth: 12 match_type: OPTIONAL }
  action_refs { id: 11 } action_refs { id: 12 } size: 16 }
tables { preamble { id: 3 name: "ingress.route" }
  match_fields { id: 1 name: "dst" bitwidth: 32 match_type: LPM }
  action_refs { id: 10 } action_refs { id: 11 }
  const_default_action_id: 11 size: 8 }
actions { preamble { id: 10 name: "ingress.fwd" } params { id: 1 name: "port" bitwidth: 9 } }
actions { preamble { id: 11 name: "ingress.drop" } }
actions { preamble { id: 12 name: "NoAction" } }
counters { preamble { id: 200 name: "ingress.port_counter" } spec { unit: BOTH } size: 4 }
meters { preamble { id: 500 name: "ingress.policer" } spec { unit: PACKETS } size: 4 }
registers { preamble { id: 400 name: "ingress.seen" } size: 4
  type_spec { bitstring { bit { bitwidth: 12 } } } }
direct_counters { preamble { id: 100 name: "ingress.flow_counter" } spec { unit: BOTH }
  direct_table_id: 1 }
controller_packet_metadata { preamble { id: 300 name: "packet_in" }
  metadata { id: 1 name: "ingress_port" bitwidth: 9 }
  metadata { id: 2 name: "reason" bitwidth: 7 } }
controller_packet_metadata { preamble { id: 301 name: "packet_out" }
  metadata { id: 1 name: "egress_port" bitwidth: 9 }
  metadata { id: 2 name: "_pad" bitwidth: 7 } }
"""


def p4info() -> p4i.P4Info:
    return text_format.Parse(P4INFO_TEXT, p4i.P4Info())


DEVICE_CONFIG = json.dumps({"program": "stand-in"}).encode()


# --- the stand-in interpreter --------------------------------------------------------------------


@dataclass
class MatchKey:
    name: str
    match_type: str
    bitwidth: int


@dataclass(eq=False)
class Entry:
    key: tuple
    priority: int
    action: str
    params: tuple[int, ...]
    ttl_ns: int = 0
    packets: int = 0
    bytes: int = 0
    last_hit: float = 0.0


@dataclass
class Table:
    name: str
    keys: list[MatchKey]
    size: int
    default_action: tuple[str, tuple[int, ...]]
    support_timeout: bool = False
    direct_counter: str | None = None
    const_default: bool = False
    const_entries: bool = False
    _entries: dict = field(default_factory=dict)

    def insert(self, key, priority, action, params, ttl_ns=0, now=0.0) -> Entry:
        if (key, priority) in self._entries:
            raise DuplicateEntry("Match entry exists, use MODIFY if you wish to change action")
        if len(self._entries) >= self.size:
            raise TableFull(f"table {self.name} is full")
        entry = self._entries[(key, priority)] = Entry(key, priority, action, tuple(params),
                                                       ttl_ns, last_hit=now)
        return entry

    def modify(self, key, priority, action, params, ttl_ns=None, now=0.0) -> Entry:
        entry = self.get(key, priority)
        if entry is None:
            raise EntryNotFound("no such entry")
        entry.action, entry.params = action, tuple(params)
        if ttl_ns is not None:
            entry.ttl_ns, entry.last_hit = ttl_ns, now
        return entry

    def delete(self, key, priority) -> Entry:
        if (key, priority) not in self._entries:
            raise EntryNotFound("no such entry")
        return self._entries.pop((key, priority))

    def get(self, key, priority):
        return self._entries.get((key, priority))

    def entries(self):
        return list(self._entries.values())

    def set_default(self, action, params) -> None:
        self.default_action = (action, tuple(params))

    def idle_entries(self, now):
        return [e for e in self._entries.values()
                if e.ttl_ns and (now - e.last_hit) * 1e9 >= e.ttl_ns]

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class ActionInfo:
    name: str
    params: list[tuple[str, int]]


class Pipeline:
    """The stand-in: three tables, a counter, a meter and a register, as the p4info above
    declares."""

    def __init__(self, table_size: int | None = None) -> None:
        def table(name, keys, size, default, **kw):
            return Table(name, [MatchKey(*k) for k in keys], table_size or size, default, **kw)

        self.tables = {t.name: t for t in (
            table("ingress.flow", [("port", "exact", 9), ("dst", "exact", 32)], 4,
                  ("NoAction", ()), support_timeout=True, direct_counter="ingress.flow_counter"),
            table("ingress.acl", [("proto", "ternary", 8), ("src", "lpm", 32),
                                  ("sport", "range", 16), ("vlan", "optional", 12)], 16,
                  ("NoAction", ())),
            table("ingress.route", [("dst", "lpm", 32)], 8, ("ingress.drop", ()),
                  const_default=True),
        )}
        self.actions = {a.name: a for a in (ActionInfo("ingress.fwd", [("port", 9)]),
                                            ActionInfo("ingress.drop", []),
                                            ActionInfo("NoAction", []))}
        self.counters = {"ingress.port_counter": CounterArray("ingress.port_counter", 4)}
        self.registers = {"ingress.seen": RegisterArray("ingress.seen", 4, 12)}
        self.meters = {"ingress.policer": MeterArray("ingress.policer", 4, "packets")}

    def process(self, ingress_port: int, frame: bytes, now: float) -> list[tuple[int, bytes]]:
        if ingress_port == CPU_PORT:
            return [(int.from_bytes(frame[:2], "big") >> 7, frame[2:])]
        dst = int.from_bytes(frame[:4].ljust(4, b"\0"), "big")
        entry = self.tables["ingress.flow"].get((ingress_port, dst), 0)
        if entry is None or entry.action != "ingress.fwd":
            header = ((ingress_port << 7) | 1).to_bytes(2, "big")
            return [(CPU_PORT, header + frame)]
        entry.packets += 1
        entry.bytes += len(frame)
        entry.last_hit = now
        return [(entry.params[0], frame)]


def make_pipeline(doc: dict, table_size: int | None) -> Pipeline:
    if "broken" in doc:
        raise ValueError("broken program")
    return Pipeline(table_size)


# --- a running server ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    device: Device
    server: P4RuntimeServer
    stub: p4r_grpc.P4RuntimeStub
    channel: grpc.aio.Channel
    clock: FakeClock
    injected: list[bytes]

    async def push_pipeline(self, cookie: int = 7,
                            action: int = p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
                            **request) -> None:
        await self.stub.SetForwardingPipelineConfig(p4r.SetForwardingPipelineConfigRequest(
            device_id=DEVICE_ID,
            action=action,
            config=p4r.ForwardingPipelineConfig(
                p4info=p4info(), p4_device_config=DEVICE_CONFIG,
                cookie=p4r.ForwardingPipelineConfig.Cookie(cookie=cookie)),
            **request))

    async def write(self, *updates: p4r.Update, **request) -> None:
        await self.stub.Write(p4r.WriteRequest(device_id=DEVICE_ID, updates=updates, **request))

    async def read(self, *entities: p4r.Entity) -> list[p4r.Entity]:
        out = []
        async for response in self.stub.Read(p4r.ReadRequest(device_id=DEVICE_ID,
                                                             entities=entities)):
            out.extend(response.entities)
        return out


@contextlib.asynccontextmanager
async def running_server(*, table_size: int | None = None,
                         sweep_period: float = 0.0) -> AsyncIterator[Harness]:
    clock = FakeClock()
    injected: list[bytes] = []
    device = Device(DEVICE_ID, pipeline_factory=make_pipeline, table_size=table_size)
    server = P4RuntimeServer(device, inject=injected.append, clock=clock,
                             sweep_period=sweep_period)
    port = await server.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}",
        options=[("grpc.max_metadata_size", 1 << 20)])
    try:
        yield Harness(device, server, p4r_grpc.P4RuntimeStub(channel), channel, clock, injected)
    finally:
        await channel.close()
        await server.stop(0)


@contextlib.asynccontextmanager
async def serving_program(
        ports: list[Port], p4info_text: str, program: dict,
) -> AsyncIterator[tuple[SoftSwitch, p4r_grpc.P4RuntimeStub, FakeClock]]:
    """A SoftSwitch on ``ports`` at device 1 (no sweeps, a FakeClock) running the BMv2 JSON
    ``program`` with its P4Info, committed through the stub it yields."""
    clock = FakeClock()
    softswitch = SoftSwitch(ports, device_id=1, clock=clock, sweep_period=0)
    port = await softswitch.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = p4r_grpc.P4RuntimeStub(channel)
    await stub.SetForwardingPipelineConfig(p4r.SetForwardingPipelineConfigRequest(
        device_id=1, action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
        config=p4r.ForwardingPipelineConfig(
            p4info=text_format.Parse(p4info_text, p4i.P4Info()),
            p4_device_config=json.dumps(program).encode())))
    try:
        yield softswitch, stub, clock
    finally:
        await channel.close()
        await softswitch.stop()


# --- message builders ----------------------------------------------------------------------------


def exact(field_id: int, value: bytes) -> p4r.FieldMatch:
    return p4r.FieldMatch(field_id=field_id, exact=p4r.FieldMatch.Exact(value=value))


def flow_entry(port: int = 1, dst: int = 0x0A000001, out_port: int | None = 2,
               **fields) -> p4r.TableEntry:
    entry = p4r.TableEntry(table_id=FLOW, match=[exact(1, port.to_bytes(2, "big")),
                                                 exact(2, dst.to_bytes(4, "big"))], **fields)
    if out_port is not None:
        entry.action.action.action_id = FWD
        entry.action.action.params.add(param_id=1, value=out_port.to_bytes(2, "big"))
    return entry


def update(kind: str, entity: object) -> p4r.Update:
    name = {p4r.TableEntry: "table_entry", p4r.CounterEntry: "counter_entry",
            p4r.DirectCounterEntry: "direct_counter_entry",
            p4r.RegisterEntry: "register_entry", p4r.MeterEntry: "meter_entry"}[type(entity)]
    return p4r.Update(type=getattr(p4r.Update, kind), entity=p4r.Entity(**{name: entity}))


def write_errors(exc: grpc.aio.AioRpcError) -> list[p4r.Error]:
    """The per-update p4.v1.Error list a failed Write carries in grpc-status-details-bin."""
    details = dict(exc.trailing_metadata() or ())["grpc-status-details-bin"]
    status = rpc_status.Status.FromString(details)
    errors = []
    for any_msg in status.details:
        error = p4r.Error()
        assert any_msg.Unpack(error)
        errors.append(error)
    return errors


class Stream:
    """A client StreamChannel: send requests, read responses with a timeout."""

    def __init__(self, stub: p4r_grpc.P4RuntimeStub) -> None:
        self._requests: asyncio.Queue = asyncio.Queue()
        self._responses: asyncio.Queue = asyncio.Queue()
        self.call = stub.StreamChannel(self._outgoing())
        # Reads run in their own task: cancelling a timed-out read would cancel the whole call.
        self._pump = asyncio.ensure_future(self._incoming())

    async def _incoming(self) -> None:
        try:
            async for response in self.call:
                self._responses.put_nowait(response)
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            self._responses.put_nowait(exc)

    async def _outgoing(self) -> AsyncIterator[p4r.StreamMessageRequest]:
        while (item := await self._requests.get()) is not None:
            yield item

    def send(self, **message) -> None:
        self._requests.put_nowait(p4r.StreamMessageRequest(**message))

    def arbitrate(self, election_id: int, device_id: int = DEVICE_ID) -> None:
        self.send(arbitration=p4r.MasterArbitrationUpdate(
            device_id=device_id, election_id=p4r.Uint128(low=election_id)))

    async def recv(self, timeout: float = 2.0) -> p4r.StreamMessageResponse:
        item = await asyncio.wait_for(self._responses.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def primary(self, election_id: int) -> p4r.StreamMessageResponse:
        """Arbitrate and wait for the answer."""
        self.arbitrate(election_id)
        return await self.recv()

    def close(self) -> None:
        self._requests.put_nowait(None)


def packet_out(payload: bytes, **metadata: int) -> p4r.PacketOut:
    ids = {"egress_port": 1, "_pad": 2}
    return p4r.PacketOut(payload=payload, metadata=[
        p4r.PacketMetadata(metadata_id=ids[k], value=v.to_bytes(2, "big"))
        for k, v in metadata.items()])


async def wait_for(predicate, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
