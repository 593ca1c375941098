"""One P4Runtime request list, the canonical code each request gets, on the softswitch and BMv2.

Every case runs on a freshly committed pipeline (a compiled program of the project), as the
primary of one StreamChannel, and records one code: a Write's per-update ``p4.v1.Error`` code,
a Read's or a pipeline RPC's status, or the ``StreamError`` a stream message draws (OK when none
comes before the answer to the arbitration update sent after it). ``expect`` is the softswitch's
code; where BMv2 (simple_switch_grpc 1.15.5, PI's DeviceMgr) answers otherwise, ``bmv2`` holds
its code and ``why`` the reason: the spec is explicit and PI is not on it, or the softswitch does
more. With ``BMV2_SWITCH`` set (the simple_switch_grpc binary), the same list runs against BMv2,
started on ports of its own with ``--no-p4``, so the two targets stay side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from finsy.proto import p4d, p4i, p4r, p4r_grpc, rpc_code
from google.protobuf import text_format

from softswitch.switch import SoftSwitch
from tests.p4build import require_outputs
from tests.softswitch.p4rt_support import Stream, write_errors

DEVICE_ID = 0  # simple_switch_grpc's default
C = rpc_code
Set = p4r.SetForwardingPipelineConfigRequest
PROGRAMS = {"flowtable": "p4src/flowtable.p4", "tables": "tests/p4/tables.p4",
            "stateful": "tests/p4/stateful.p4"}


class Ids:
    """P4Info ids by name or alias, and the request envelope of the running session."""

    def __init__(self, p4info: p4i.P4Info, election_id: int) -> None:
        self.p4info = p4info
        self.election_id = election_id
        self._ids = {}
        for kind in ("tables", "actions", "counters", "meters", "registers"):
            for obj in getattr(p4info, kind):
                self._ids[obj.preamble.name] = self._ids[obj.preamble.alias] = obj.preamble.id

    def __getitem__(self, name: str) -> int:
        return self._ids[name]

    def write(self, *updates: p4r.Update, device_id: int = DEVICE_ID) -> p4r.WriteRequest:
        return p4r.WriteRequest(device_id=device_id, updates=updates,
                                election_id=p4r.Uint128(low=self.election_id))

    def read(self, *entities: p4r.Entity, device_id: int = DEVICE_ID) -> p4r.ReadRequest:
        return p4r.ReadRequest(device_id=device_id, entities=entities)


Request = (p4r.WriteRequest | p4r.ReadRequest | p4r.SetForwardingPipelineConfigRequest
           | p4r.GetForwardingPipelineConfigRequest | p4r.StreamMessageRequest)


@dataclass(frozen=True)
class Case:
    name: str
    program: str
    request: Callable[[Ids], Request]
    expect: int  # the softswitch's canonical code
    bmv2: int | None = None  # BMv2's, where it differs
    why: str = ""
    setup: Callable[[Ids], list[p4r.Update]] | None = None  # writes that must succeed first


# --- request builders ----------------------------------------------------------------------------


def exact(field_id: int, value: bytes) -> p4r.FieldMatch:
    return p4r.FieldMatch(field_id=field_id, exact=p4r.FieldMatch.Exact(value=value))


def action(action_id: int, *params: bytes) -> p4r.TableAction:
    return p4r.TableAction(action=p4r.Action(action_id=action_id, params=[
        p4r.Action.Param(param_id=i, value=v) for i, v in enumerate(params, 1)]))


def flow(n: Ids, port: bytes = b"\x01", out_port: bytes = b"\x02", **fields) -> p4r.TableEntry:
    """An entry of flowtable.p4's FtIngress.flow_v4 (six exact fields, forward_v4)."""
    values = (port, b"\x0a\0\0\x01", b"\xc0\0\x02\x01", b"\x06", b"\x30\x39", b"\0\x50")
    fields.setdefault("action", action(n["forward_v4"], out_port, b"\x02\xfe", b"\x02\x02",
                                       b"\x0a\0\0\x01", b"\xc0\0\x02\x01", b"\x30\x39", b"\0\x50",
                                       b"\x05\xdc"))
    return p4r.TableEntry(table_id=n["flow_v4"],
                          match=[exact(i, v) for i, v in enumerate(values, 1)], **fields)


def lpm(n: Ids, **fields) -> p4r.TableEntry:
    """An entry of tables.p4's I.t_lpm (10.0.0.0/8 -> set_lpm)."""
    match = p4r.FieldMatch(field_id=1, lpm=p4r.FieldMatch.LPM(value=b"\x0a\0\0\0", prefix_len=8))
    fields.setdefault("action", action(n["set_lpm"], b"\x01"))
    return p4r.TableEntry(table_id=n["t_lpm"], match=[match], **fields)


def tern(n: Ids, **fields) -> p4r.TableEntry:
    """An entry of tables.p4's I.t_tern."""
    match = p4r.FieldMatch(field_id=1, ternary=p4r.FieldMatch.Ternary(value=b"\x01",
                                                                       mask=b"\xff"))
    return p4r.TableEntry(table_id=n["t_tern"], match=[match],
                          action=action(n["set_tern"], b"\x01"), **fields)


def update(kind: str, **entity) -> p4r.Update:
    return p4r.Update(type=getattr(p4r.Update, kind), entity=p4r.Entity(**entity))


def insert(entry: p4r.TableEntry) -> p4r.Update:
    return update("INSERT", table_entry=entry)


def index(i: int) -> p4r.Index:
    return p4r.Index(index=i)


def default_only_entry(n: Ids) -> p4r.TableEntry:
    return flow(n, action=action(n["punt_miss"]))


# --- the list ------------------------------------------------------------------------------------

PI_UNKNOWN = "PI reports what the target refuses as UNKNOWN; the spec names the code"

CASES = [
    # TableEntry writes
    Case("counter_data on a table without a direct counter", "tables",
         lambda n: n.write(insert(lpm(n, counter_data=p4r.CounterData(packet_count=1)))),
         C.INVALID_ARGUMENT),
    Case("meter_config on a table without a direct meter", "flowtable",
         lambda n: n.write(insert(flow(n, meter_config=p4r.MeterConfig(cir=1, cburst=1, pir=1,
                                                                          pburst=1)))),
         C.INVALID_ARGUMENT),
    Case("@defaultonly action in an entry", "flowtable",
         lambda n: n.write(insert(default_only_entry(n))), C.PERMISSION_DENIED),
    Case("MODIFY of a const default action", "flowtable",
         lambda n: n.write(update("MODIFY", table_entry=p4r.TableEntry(
             table_id=n["flow_v4"], is_default_action=True, action=action(n["punt_miss"])))),
         C.PERMISSION_DENIED),
    Case("INSERT of the default entry", "tables",
         lambda n: n.write(insert(p4r.TableEntry(table_id=n["t_lpm"], is_default_action=True,
                                                 action=action(n["nop"])))),
         C.INVALID_ARGUMENT),
    Case("update without an entity", "flowtable",
         lambda n: n.write(p4r.Update(type=p4r.Update.INSERT)), C.UNKNOWN),
    Case("update of type UNSPECIFIED", "flowtable",
         lambda n: n.write(p4r.Update(entity=p4r.Entity(table_entry=flow(n)))),
         C.INVALID_ARGUMENT),
    Case("INSERT into a table with const entries", "tables",
         lambda n: n.write(insert(p4r.TableEntry(table_id=n["t_exact"], match=[exact(1, b"\x07")],
                                                 action=action(n["set_exact"], b"\x01")))),
         C.PERMISSION_DENIED, C.UNKNOWN, "the spec's Constant Tables (§9.1.4); " + PI_UNKNOWN),
    Case("MODIFY with an action of a const entry", "tables",
         lambda n: n.write(update("MODIFY", table_entry=p4r.TableEntry(
             table_id=n["t_exact"], match=[exact(1, b"\x12\x34")],
             action=action(n["set_exact"], b"\x03")))),
         C.PERMISSION_DENIED, C.NOT_FOUND,
         "the spec's Constant Tables (§9.1.4); PI knows only the entries it wrote"),
    Case("MODIFY without an action of a const entry (its direct resources only)", "tables",
         lambda n: n.write(update("MODIFY", table_entry=p4r.TableEntry(
             table_id=n["t_exact"], match=[exact(1, b"\x12\x34")]))),
         C.OK, C.INVALID_ARGUMENT,
         "the spec's Constant Tables (§9.1.4) allow it; PI wants an action in a MODIFY"),
    Case("DELETE of a const entry", "tables",
         lambda n: n.write(update("DELETE", table_entry=p4r.TableEntry(
             table_id=n["t_exact"], match=[exact(1, b"\x12\x34")]))),
         C.PERMISSION_DENIED, C.NOT_FOUND,
         "the spec's Constant Tables (§9.1.4); PI knows only the entries it wrote"),
    Case("duplicate INSERT", "flowtable", lambda n: n.write(insert(flow(n))), C.ALREADY_EXISTS,
         setup=lambda n: [insert(flow(n))]),
    Case("MODIFY of a missing entry", "flowtable",
         lambda n: n.write(update("MODIFY", table_entry=flow(n))), C.NOT_FOUND),
    Case("DELETE of a missing entry", "flowtable",
         lambda n: n.write(update("DELETE", table_entry=flow(n))), C.NOT_FOUND),
    Case("unknown table id", "flowtable",
         lambda n: n.write(insert(p4r.TableEntry(table_id=12345, action=action(1)))),
         C.INVALID_ARGUMENT),
    Case("priority on an exact table", "flowtable",
         lambda n: n.write(insert(flow(n, priority=3))), C.INVALID_ARGUMENT),
    Case("ternary entry without priority", "tables", lambda n: n.write(insert(tern(n))),
         C.INVALID_ARGUMENT),
    Case("idle_timeout_ns on a table without idle timeout", "tables",
         lambda n: n.write(insert(lpm(n, idle_timeout_ns=10**9))), C.INVALID_ARGUMENT),
    Case("time_since_last_hit in a write", "flowtable",
         lambda n: n.write(insert(flow(n, time_since_last_hit=p4r.TableEntry.IdleTimeout()))),
         C.INVALID_ARGUMENT),
    Case("DirectCounterEntry INSERT", "flowtable",
         lambda n: n.write(update("INSERT", direct_counter_entry=p4r.DirectCounterEntry(
             table_entry=flow(n)))),
         C.INVALID_ARGUMENT, setup=lambda n: [insert(flow(n))]),
    Case("Write to an unknown device_id", "flowtable",
         lambda n: n.write(insert(flow(n)), device_id=7),
         C.NOT_FOUND, C.PERMISSION_DENIED,
         "the spec's Write RPC; PI checks the election id against a device with no streams"),
    Case("Write with an election id that is not the primary's", "flowtable",
         lambda n: p4r.WriteRequest(device_id=DEVICE_ID, updates=[insert(flow(n))],
                                    election_id=p4r.Uint128(low=n.election_id + 100)),
         C.PERMISSION_DENIED),
    Case("Write with ROLLBACK_ON_ERROR", "flowtable",
         lambda n: p4r.WriteRequest(device_id=DEVICE_ID, updates=[insert(flow(n))],
                                    election_id=p4r.Uint128(low=n.election_id),
                                    atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR),
         C.UNIMPLEMENTED),
    Case("meter config with CIR above PIR", "flowtable",
         lambda n: n.write(update("MODIFY", meter_entry=p4r.MeterEntry(
             meter_id=n["punt_meter"], index=index(0),
             config=p4r.MeterConfig(cir=9, cburst=1, pir=8, pburst=1)))),
         C.INVALID_ARGUMENT, C.UNKNOWN, "bm_sim's Meter::set_rate refuses it; PI says UNKNOWN"),
    Case("counter write without an index (every cell)", "stateful",
         lambda n: n.write(update("MODIFY", counter_entry=p4r.CounterEntry(
             counter_id=n["port_counter"], data=p4r.CounterData()))),
         C.OK, C.UNIMPLEMENTED, "the spec writes every cell; PI has no wildcard counter write"),
    # byte strings (the spec's Bytestrings, §8.3: OUT_OF_RANGE)
    Case("empty byte string in a match", "flowtable",
         lambda n: n.write(insert(flow(n, port=b""))),
         C.OUT_OF_RANGE, C.OK, "the spec's Bytestrings (§8.3); PI pads b'' to 0"),
    Case("match value wider than its field", "flowtable",
         lambda n: n.write(insert(flow(n, port=b"\x02\x00"))),
         C.OUT_OF_RANGE, C.INVALID_ARGUMENT, "the spec's Bytestrings (§8.3)"),
    Case("action parameter wider than its field", "flowtable",
         lambda n: n.write(insert(flow(n, out_port=b"\x02\x00"))),
         C.OUT_OF_RANGE, C.INVALID_ARGUMENT, "the spec's Bytestrings (§8.3)"),
    # indexed externs (the spec's CounterEntry, §9.3.2, and MeterEntry)
    Case("counter index past the end", "stateful",
         lambda n: n.write(update("MODIFY", counter_entry=p4r.CounterEntry(
             counter_id=n["port_counter"], index=index(8), data=p4r.CounterData()))),
         C.OUT_OF_RANGE, C.UNKNOWN, "the spec's CounterEntry (§9.3.2); " + PI_UNKNOWN),
    Case("negative counter index", "stateful",
         lambda n: n.write(update("MODIFY", counter_entry=p4r.CounterEntry(
             counter_id=n["port_counter"], index=index(-1), data=p4r.CounterData()))),
         C.INVALID_ARGUMENT),
    Case("meter index past the end", "flowtable",
         lambda n: n.write(update("MODIFY", meter_entry=p4r.MeterEntry(
             meter_id=n["punt_meter"], index=index(16)))),
         C.OUT_OF_RANGE, C.UNKNOWN, "the spec's MeterEntry; " + PI_UNKNOWN),
    Case("register index past the end", "stateful",
         lambda n: n.write(update("MODIFY", register_entry=p4r.RegisterEntry(
             register_id=n["per_port"], index=index(8), data=p4d.P4Data(bitstring=b"\x01")))),
         C.OUT_OF_RANGE, C.UNIMPLEMENTED, "PI has no RegisterEntry; the softswitch writes them"),
    # reads
    Case("read of an empty Entity", "flowtable", lambda n: n.read(p4r.Entity()),
         C.INVALID_ARGUMENT, C.UNKNOWN, "the spec's Read RPC (Wildcard Reads)"),
    Case("DirectCounterEntry read without table_entry", "flowtable",
         lambda n: n.read(p4r.Entity(direct_counter_entry=p4r.DirectCounterEntry())),
         C.INVALID_ARGUMENT),
    Case("counter read past the end", "stateful",
         lambda n: n.read(p4r.Entity(counter_entry=p4r.CounterEntry(
             counter_id=n["port_counter"], index=index(8)))),
         C.OUT_OF_RANGE, C.UNKNOWN, "the spec's CounterEntry (§9.3.2); " + PI_UNKNOWN),
    Case("register read", "stateful",
         lambda n: n.read(p4r.Entity(register_entry=p4r.RegisterEntry(register_id=n["per_port"]))),
         C.OK, C.UNIMPLEMENTED, "PI has no RegisterEntry; the softswitch reads them"),
    Case("DirectCounterEntry read of all tables", "flowtable",
         lambda n: n.read(p4r.Entity(direct_counter_entry=p4r.DirectCounterEntry(
             table_entry=p4r.TableEntry()))),
         C.OK, C.UNIMPLEMENTED, "PI reads direct counters one table at a time; the softswitch all"),
    Case("read of an unknown table id", "flowtable",
         lambda n: n.read(p4r.Entity(table_entry=p4r.TableEntry(table_id=12345))),
         C.INVALID_ARGUMENT),
    Case("time_since_last_hit read on a table without idle timeout", "tables",
         lambda n: n.read(p4r.Entity(table_entry=p4r.TableEntry(
             table_id=n["t_lpm"], time_since_last_hit=p4r.TableEntry.IdleTimeout()))),
         C.INVALID_ARGUMENT),
    Case("read of an unknown device_id", "flowtable",
         lambda n: n.read(p4r.Entity(table_entry=p4r.TableEntry()), device_id=7),
         C.NOT_FOUND, C.FAILED_PRECONDITION,
         "the spec's Read RPC; PI makes a device for any id, without a pipeline"),
    # pipeline configs
    Case("GetForwardingPipelineConfig with an unknown response_type", "flowtable",
         lambda n: p4r.GetForwardingPipelineConfigRequest(device_id=DEVICE_ID, response_type=9),
         C.INVALID_ARGUMENT),
    Case("COMMIT with nothing saved", "flowtable",
         lambda n: Set(device_id=DEVICE_ID, election_id=p4r.Uint128(low=n.election_id),
                       action=Set.COMMIT),
         C.NOT_FOUND, C.UNKNOWN, "the spec's SetForwardingPipelineConfig RPC; " + PI_UNKNOWN),
    Case("SetForwardingPipelineConfig without an action", "flowtable",
         lambda n: Set(device_id=DEVICE_ID, election_id=p4r.Uint128(low=n.election_id),
                       config=p4r.ForwardingPipelineConfig(p4info=n.p4info)),
         C.INVALID_ARGUMENT),
    Case("VERIFY_AND_COMMIT of a device config that is not BMv2 JSON", "flowtable",
         lambda n: Set(device_id=DEVICE_ID, election_id=p4r.Uint128(low=n.election_id),
                       action=Set.VERIFY_AND_COMMIT,
                       config=p4r.ForwardingPipelineConfig(p4info=n.p4info,
                                                           p4_device_config=b"not json")),
         C.INVALID_ARGUMENT, C.UNKNOWN,
         "the spec's SetForwardingPipelineConfig RPC (and the softswitch keeps the old "
         "pipeline); " + PI_UNKNOWN),
    # stream
    Case("DigestListAck for an unknown digest", "flowtable",
         lambda n: p4r.StreamMessageRequest(digest_ack=p4r.DigestListAck(digest_id=4242,
                                                                          list_id=1)),
         C.INVALID_ARGUMENT, C.OK,
         "the spec's Stream Error Reporting; PI's DigestMgr drops the ack silently"),
    Case("PacketOut with an unknown metadata id", "flowtable",
         lambda n: p4r.StreamMessageRequest(packet=p4r.PacketOut(payload=b"\0" * 14, metadata=[
             p4r.PacketMetadata(metadata_id=9, value=b"\x01")])),
         C.INVALID_ARGUMENT, C.OK, "the spec's Packet I/O allows a StreamError; PI drops it"),
]


# --- targets -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def softswitch_target() -> AsyncIterator[str]:
    switch = SoftSwitch([], device_id=DEVICE_ID, sweep_period=0)
    port = await switch.start("127.0.0.1:0")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await switch.stop()


@contextlib.asynccontextmanager
async def bmv2_target(binary: str) -> AsyncIterator[str]:
    """simple_switch_grpc on ports of its own, no program until the session pushes one."""
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [binary, "--no-p4", "--device-id", str(DEVICE_ID), "--thrift-port", str(free_port()),
         "-L", "off", "--", "--grpc-server-addr", address, "--cpu-port", "255"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 20)
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


TARGETS = {"softswitch": softswitch_target, "bmv2": bmv2_target}


# --- the session that runs the list --------------------------------------------------------------


class Session:
    """The primary's stream and stub on one target; pushes each case's program afresh."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(
            address, options=[("grpc.max_receive_message_length", 64 << 20)])
        self.stub = p4r_grpc.P4RuntimeStub(self.channel)
        self.stream = Stream(self.stub)
        self.election_id = 1

    async def arbitrate(self) -> p4r.StreamMessageResponse:
        self.stream.arbitrate(self.election_id, device_id=DEVICE_ID)
        while True:
            reply = await self.stream.recv(10)
            if reply.WhichOneof("update") == "arbitration":
                return reply

    async def push(self, program: str) -> Ids:
        compiled = require_outputs(PROGRAMS[program])
        p4info = text_format.Parse(Path(compiled.p4info).read_text(), p4i.P4Info())
        await self.stub.SetForwardingPipelineConfig(Set(
            device_id=DEVICE_ID, election_id=p4r.Uint128(low=self.election_id),
            action=Set.VERIFY_AND_COMMIT,
            config=p4r.ForwardingPipelineConfig(p4info=p4info,
                                                p4_device_config=compiled.json.read_bytes())))
        return Ids(p4info, self.election_id)

    async def code(self, request: Request) -> int:
        """The canonical code the target answers ``request`` with."""
        try:
            if isinstance(request, p4r.WriteRequest):
                await self.stub.Write(request)
            elif isinstance(request, p4r.ReadRequest):
                async for _ in self.stub.Read(request):
                    pass
            elif isinstance(request, Set):
                await self.stub.SetForwardingPipelineConfig(request)
            elif isinstance(request, p4r.GetForwardingPipelineConfigRequest):
                await self.stub.GetForwardingPipelineConfig(request)
            else:
                return await self._stream_code(request)
        except grpc.aio.AioRpcError as exc:
            if isinstance(request, p4r.WriteRequest) and exc.code() == grpc.StatusCode.UNKNOWN:
                with contextlib.suppress(KeyError):
                    (error,) = write_errors(exc)
                    return error.canonical_code
            return exc.code().value[0]
        return C.OK

    async def _stream_code(self, request: p4r.StreamMessageRequest) -> int:
        """The StreamError ``request`` draws, if any before the answer to a new arbitration
        update (both targets handle a stream's messages in order)."""
        self.stream.send(**{request.WhichOneof("update"): getattr(request,
                                                                  request.WhichOneof("update"))})
        self.election_id += 1
        self.stream.arbitrate(self.election_id, device_id=DEVICE_ID)
        code = C.OK
        while (reply := await self.stream.recv(10)).WhichOneof("update") != "arbitration":
            if reply.WhichOneof("update") == "error":
                code = reply.error.canonical_code
        return code

    async def close(self) -> None:
        self.stream.close()
        await self.channel.close()


async def run_cases(address: str, cases: list[Case]) -> dict[str, int]:
    session = Session(address)
    try:
        assert (await session.arbitrate()).arbitration.status.code == C.OK
        codes = {}
        for case in cases:
            ids = await session.push(case.program)
            if case.setup is not None:
                await session.stub.Write(ids.write(*case.setup(ids)))
            codes[case.name] = await session.code(case.request(ids))
        return codes
    finally:
        await session.close()


def expected(case: Case, target: str) -> int:
    return case.bmv2 if target == "bmv2" and case.bmv2 is not None else case.expect


def name(code: int) -> str:
    return C.Code.Name(code)


@pytest.mark.parametrize("target", sorted(TARGETS))
async def test_request_list_codes(target: str) -> None:
    if target == "bmv2":
        binary = os.environ.get("BMV2_SWITCH")
        if not binary:
            pytest.skip("BMV2_SWITCH (the simple_switch_grpc binary) is not set")
        opened = bmv2_target(binary)
    else:
        opened = softswitch_target()
    async with opened as address:
        codes = await run_cases(address, CASES)
    wrong = [f"{c.name}: {name(codes[c.name])}, expected {name(expected(c, target))}"
             + (f" ({c.why})" if c.why and target == "bmv2" else "")
             for c in CASES if codes[c.name] != expected(c, target)]
    assert not wrong, "\n".join(wrong)


def test_every_difference_says_why() -> None:
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)
    assert all(c.why for c in CASES if c.bmv2 is not None)
