"""P4Runtime PacketReplicationEngineEntry and digests over the real interpreter, with PI's codes:
multicast groups and clone sessions written, read back and replicating; DigestEntry config,
DigestList on the stream, suppression until acked, DigestListAck."""

from __future__ import annotations

import json

import grpc
import pytest
from finsy.proto import p4d, p4i, p4r, rpc_code
from google.protobuf import text_format

from softswitch.p4rt_codec import P4RTError
from softswitch.p4rt_digests import DigestEngine
from softswitch.ports import QueuePort
from tests.softswitch.p4json import (
    action,
    assign,
    extract,
    fld,
    hexstr,
    pipeline,
    prim,
    program,
    state,
    table,
)
from tests.softswitch.p4rt_support import Stream, serving_program, wait_for, write_errors

SM = "standard_metadata"
DIGEST_ID = 385875969
P4INFO = f"""
digests {{ preamble {{ id: {DIGEST_ID} name: "learn_t" }}
  type_spec {{ struct {{ name: "learn_t" }} }} }}
type_info {{ structs {{ key: "learn_t" value {{
  members {{ name: "k" type_spec {{ bitstring {{ bit {{ bitwidth: 16 }} }} }} }}
  members {{ name: "port" type_spec {{ bitstring {{ bit {{ bitwidth: 9 }} }} }} }} }} }} }}
"""


def pre_program() -> dict:
    """h = (k: 16, o: 8, r: 8). Ingress: mcast_grp = h.o, to port 1 otherwise, clone to
    session 5, digest (h.k, ingress_port). Egress: h.r = egress_rid."""
    ingress = [assign(fld(SM, "mcast_grp"), fld("h", "o")),
               assign(fld(SM, "egress_spec"), hexstr(1, 2)),
               prim("clone_ingress_pkt_to_egress", hexstr(5, 4), hexstr(0, 4)),
               prim("generate_digest", hexstr(0, 4), hexstr(1, 4))]
    acts = [action(0, "ingress.i", [], ingress),
            action(1, "egress.e", [], [assign(fld("h", "r"), fld(SM, "egress_rid"))])]
    doc = program(
        header_types=[("h_t", [["k", 16, False], ["o", 8, False], ["r", 8, False]])],
        headers=[("h", "h_t", False)], states=[state("start", [extract("h")])],
        ingress=pipeline("ingress", 0, "tbl_i", [
            table(0, "tbl_i", [], [(0, "ingress.i")], (0, []), const_default=True)]),
        egress=pipeline("egress", 1, "tbl_e", [
            table(1, "tbl_e", [], [(1, "egress.e")], (1, []), const_default=True)]),
        actions=acts, deparse=["h"])
    doc["learn_lists"] = [{"id": 1, "name": "learn_t",
                           "elements": [fld("h", "k"), fld(SM, "ingress_port")]}]
    return doc


@pytest.fixture
async def switch():
    ports = [QueuePort(i) for i in (1, 2, 3, 4)]
    async with serving_program(ports, P4INFO, pre_program()) as (softswitch, stub, clock):
        yield softswitch, stub, {p.port_id: p for p in ports}, clock


def group(mgid: int, *replicas: tuple[int, int]) -> p4r.Entity:
    return p4r.Entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(
        multicast_group_entry=p4r.MulticastGroupEntry(
            multicast_group_id=mgid,
            replicas=[p4r.Replica(egress_port=p, instance=i) for p, i in replicas])))


def session(sid: int, *replicas: tuple[int, int], **fields) -> p4r.Entity:
    return p4r.Entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(
        clone_session_entry=p4r.CloneSessionEntry(
            session_id=sid, replicas=[p4r.Replica(egress_port=p, instance=i)
                                      for p, i in replicas], **fields)))


def digest_entry(digest_id: int = DIGEST_ID, **config) -> p4r.Entity:
    return p4r.Entity(digest_entry=p4r.DigestEntry(
        digest_id=digest_id, config=p4r.DigestEntry.Config(**config)))


async def codes(stub, *updates: tuple[str, p4r.Entity], election: int = 0) -> list[int]:
    """The canonical code of each update of one Write (OK = 0)."""
    request = {"election_id": p4r.Uint128(low=election)} if election else {}
    try:
        await stub.Write(p4r.WriteRequest(device_id=1, **request, updates=[
            p4r.Update(type=getattr(p4r.Update, kind), entity=e) for kind, e in updates]))
    except grpc.aio.AioRpcError as exc:
        return [e.canonical_code for e in write_errors(exc)]
    return [rpc_code.OK] * len(updates)


async def read(stub, entity: p4r.Entity) -> list[p4r.Entity]:
    out = []
    async for response in stub.Read(p4r.ReadRequest(device_id=1, entities=[entity])):
        out.extend(response.entities)
    return out


async def read_code(stub, entity: p4r.Entity) -> int:
    try:
        await read(stub, entity)
    except grpc.aio.AioRpcError as exc:
        return exc.code().value[0]
    return rpc_code.OK


def replicas(entity: p4r.Entity) -> set[tuple[int, int]]:
    pre = entity.packet_replication_engine_entry
    entry = pre.multicast_group_entry if pre.HasField("multicast_group_entry") \
        else pre.clone_session_entry
    return {(r.egress_port, r.instance) for r in entry.replicas}


def outputs(ports: dict) -> dict[int, list[bytes]]:
    return {pid: out for pid, p in ports.items() if (out := p.drain())}


async def test_multicast_group_entries_replicate_and_read_back(switch) -> None:
    _, stub, ports, _ = switch
    g = group(7, (2, 1), (3, 1), (2, 4))
    assert await codes(stub, ("INSERT", g)) == [rpc_code.OK]
    ports[1].inject(b"\x00\x01\x07\x00")
    assert outputs(ports) == {2: [b"\x00\x01\x07\x01", b"\x00\x01\x07\x04"],
                              3: [b"\x00\x01\x07\x01"]}
    [by_id] = await read(stub, group(7))
    [every] = await read(stub, group(0))
    assert replicas(by_id) == replicas(every) == {(2, 1), (3, 1), (2, 4)}
    by_bytes = group(7)
    by_bytes.packet_replication_engine_entry.multicast_group_entry.replicas.add(
        port=b"\x00\x00\x00\x04", instance=9)
    assert await codes(stub, ("MODIFY", by_bytes)) == [rpc_code.OK]
    ports[1].inject(b"\x00\x01\x07\x00")
    assert outputs(ports) == {4: [b"\x00\x01\x07\x09"]}
    assert await codes(
        stub,
        ("INSERT", group(7, (1, 0))),           # exists
        ("INSERT", group(0, (1, 0))),           # 0 is not a group id
        ("INSERT", group(1 << 15, (1, 0))),     # reserved for clone sessions
        ("MODIFY", group(8, (1, 0))),           # missing
        ("INSERT", group(9, (1, 2), (1, 2))),   # duplicate replica
        ("DELETE", group(7)),
        ("DELETE", group(7)),
    ) == [rpc_code.ALREADY_EXISTS, rpc_code.INVALID_ARGUMENT, rpc_code.OUT_OF_RANGE,
          rpc_code.NOT_FOUND, rpc_code.INVALID_ARGUMENT, rpc_code.OK, rpc_code.NOT_FOUND]
    ports[1].inject(b"\x00\x01\x07\x00")
    assert outputs(ports) == {}
    assert await read_code(stub, group(7)) == rpc_code.NOT_FOUND
    assert await read_code(stub, group(1 << 15)) == rpc_code.OUT_OF_RANGE


async def test_clone_session_entries_clone_truncate_and_read_back(switch) -> None:
    _, stub, ports, _ = switch
    s = session(5, (3, 0), (4, 2), packet_length_bytes=3)
    assert await codes(stub, ("INSERT", s)) == [rpc_code.OK]
    ports[2].inject(b"\x00\x01\x00\x00")
    # the original to port 1; the clones cut to 3 bytes, the second with rid 2
    assert outputs(ports) == {1: [b"\x00\x01\x00\x00"], 3: [b"\x00\x01\x00"],
                              4: [b"\x00\x01\x00"]}
    [back] = await read(stub, session(0))
    assert back.packet_replication_engine_entry.clone_session_entry.packet_length_bytes == 3
    assert replicas(back) == {(3, 0), (4, 2)}
    # a clone session's group is not a multicast group of the client's
    assert await read(stub, group(0)) == []
    assert await codes(
        stub,
        ("INSERT", session(5, (3, 0))),
        ("INSERT", session(0, (3, 0))),
        ("INSERT", session(1 << 15, (3, 0))),
        ("INSERT", session(6, (3, 0), class_of_service=1)),
        ("MODIFY", session(6, (3, 0))),
        ("MODIFY", session(5, (2, 0))),
    ) == [rpc_code.ALREADY_EXISTS, rpc_code.INVALID_ARGUMENT, rpc_code.INVALID_ARGUMENT,
          rpc_code.UNIMPLEMENTED, rpc_code.NOT_FOUND, rpc_code.OK]
    ports[1].inject(b"\x00\x01\x00\x00")
    assert outputs(ports) == {1: [b"\x00\x01\x00\x00"], 2: [b"\x00\x01\x00\x00"]}
    assert await codes(stub, ("DELETE", session(5)), ("DELETE", session(5))) == [
        rpc_code.OK, rpc_code.NOT_FOUND]
    assert await read_code(stub, session(5)) == rpc_code.NOT_FOUND


def sample(entity: p4d.P4Data) -> tuple[bytes, ...]:
    return tuple(m.bitstring for m in entity.struct.members)


async def test_digests_config_lists_suppression_and_acks(switch) -> None:
    softswitch, stub, ports, clock = switch
    stream = Stream(stub)
    await stream.primary(1)
    # no config yet: the sample is dropped
    ports[3].inject(b"\x12\x34\x00\x00")
    assert softswitch.device.loaded.digests.counters.dropped == 1
    assert await codes(stub, ("INSERT", digest_entry(max_list_size=1)), election=1) == [
        rpc_code.OK]
    ports[3].inject(b"\x12\x34\x00\x00")
    message = await stream.recv()
    assert message.digest.digest_id == DIGEST_ID and message.digest.list_id == 1
    assert [sample(d) for d in message.digest.data] == [(b"\x12\x34", b"\x03")]
    [config] = await read(stub, p4r.Entity(digest_entry=p4r.DigestEntry(digest_id=DIGEST_ID)))
    assert config.digest_entry.config.max_list_size == 1
    assert await codes(
        stub,
        ("INSERT", digest_entry()),
        ("MODIFY", digest_entry(digest_id=7)),
        ("MODIFY", digest_entry(max_timeout_ns=10**9, max_list_size=2, ack_timeout_ns=10**9)),
        election=1,
    ) == [rpc_code.ALREADY_EXISTS, rpc_code.NOT_FOUND, rpc_code.OK]
    assert await read_code(stub, p4r.Entity(digest_entry=p4r.DigestEntry())) == \
        rpc_code.UNIMPLEMENTED
    # two new samples fill a list
    for frame in (b"\x00\x01\x00\x00", b"\x00\x02\x00\x00"):
        ports[1].inject(frame)
    message = await stream.recv()
    assert message.digest.list_id == 2
    assert [sample(d) for d in message.digest.data] == [(b"\x01", b"\x01"), (b"\x02", b"\x01")]
    # until list 2 is acked its samples are suppressed
    for frame in (b"\x00\x01\x00\x00", b"\x00\x02\x00\x00"):
        ports[1].inject(frame)
    engine = softswitch.device.loaded.digests
    assert engine.counters.suppressed == 2
    stream.send(digest_ack=p4r.DigestListAck(digest_id=DIGEST_ID, list_id=2))
    stream.send(digest_ack=p4r.DigestListAck(digest_id=99, list_id=2))
    error = await stream.recv()  # the unknown digest; the good ack is answered by nothing
    assert error.error.canonical_code == rpc_code.INVALID_ARGUMENT
    assert error.error.digest_list_ack.digest_list_ack.digest_id == 99
    # acked: the sample goes out again, with a new one
    for frame in (b"\x00\x01\x00\x00", b"\x00\x03\x00\x00"):
        ports[1].inject(frame)
    message = await stream.recv()
    assert (message.digest.list_id, [sample(d) for d in message.digest.data]) == (
        3, [(b"\x01", b"\x01"), (b"\x03", b"\x01")])
    # timeouts, driven by the server's digest sweeper: bm_sim's buffer (1 s after its first
    # sample), then PI's list (max_timeout_ns after it got the sample)
    assert await codes(stub, ("MODIFY", digest_entry(max_timeout_ns=10**9, max_list_size=5)),
                       election=1) == [rpc_code.OK]
    ports[1].inject(b"\x00\x07\x00\x00")
    clock.now += 1.0
    [digest] = engine._digests.values()
    await wait_for(lambda: digest.current.samples, timeout=5.0)
    clock.now += 1.0
    message = await stream.recv()
    assert [sample(d) for d in message.digest.data] == [(b"\x07", b"\x01")]
    assert await codes(stub, ("DELETE", digest_entry()), ("DELETE", digest_entry()),
                       election=1) == [rpc_code.OK, rpc_code.NOT_FOUND]


# ---- the digest engine on its own (sans-IO) --------------------------------------------------

def engine(sent: list) -> DigestEngine:
    out = DigestEngine(text_format.Parse(P4INFO, p4i.P4Info()), send=lambda m: sent.append(m)
                       or True)
    out.write(p4r.Update.INSERT, digest_entry().digest_entry)
    return out


def test_unacked_samples_expire_after_ack_timeout() -> None:
    sent: list = []
    e = engine(sent)
    e.write(p4r.Update.MODIFY, digest_entry(max_list_size=1, ack_timeout_ns=10**9,
                                            max_timeout_ns=10**9).digest_entry)
    e.learn("learn_t", (1, 2), 0.0)
    e.learn("learn_t", (1, 2), 0.5)  # unacked: suppressed
    assert [m.list_id for m in sent] == [1] and e.counters.suppressed == 1
    e.sweep(1.0)  # ack_timeout_ns passed without an ack: the sample may go out again
    e.learn("learn_t", (1, 2), 1.1)
    assert [m.list_id for m in sent] == [1, 2]


def test_without_ack_timeout_only_the_timeout_sends_a_list() -> None:
    """PI counts max_list_size in cache entries, and there is no cache without an ack
    timeout."""
    sent: list = []
    e = engine(sent)
    e.write(p4r.Update.MODIFY, digest_entry(max_list_size=1, max_timeout_ns=10**8).digest_entry)
    e.learn("learn_t", (1, 2), 0.0)
    e.learn("learn_t", (1, 2), 0.01)
    e.sweep(0.05)
    assert sent == []
    e.sweep(0.1)
    assert [len(m.data) for m in sent] == [2]


def test_bmv2_buffers_up_to_1024_samples_without_list_size_or_timeout() -> None:
    """PI's bmv2 target sets the learn list to 1024 samples when max_list_size is 0 and to no
    timeout when max_timeout_ns is under 1 ms: the sample waits."""
    sent: list = []
    e = engine(sent)  # max_list_size 0, max_timeout_ns 0
    e.learn("learn_t", (1, 2), 0.0)
    e.sweep(100.0)
    assert sent == []
    e.write(p4r.Update.MODIFY, digest_entry(max_list_size=1).digest_entry)
    assert [(m.list_id, len(m.data)) for m in sent] == [(1, 1)]


def test_a_digest_that_cannot_be_packed_fails_the_config() -> None:
    bad = text_format.Parse("""
digests { preamble { id: 1 name: "d" } type_spec { header { name: "h" } } }
""", p4i.P4Info())
    with pytest.raises(P4RTError) as info:
        DigestEngine(bad)
    assert info.value.code == rpc_code.UNIMPLEMENTED


async def test_reconcile_keeps_groups_and_sessions(switch) -> None:
    _, stub, ports, _ = switch
    assert await codes(stub, ("INSERT", group(3, (2, 0))), ("INSERT", session(5, (4, 0)))) == [
        rpc_code.OK, rpc_code.OK]
    await stub.SetForwardingPipelineConfig(p4r.SetForwardingPipelineConfigRequest(
        device_id=1, action=p4r.SetForwardingPipelineConfigRequest.RECONCILE_AND_COMMIT,
        config=p4r.ForwardingPipelineConfig(
            p4info=text_format.Parse(P4INFO, p4i.P4Info()),
            p4_device_config=json.dumps(pre_program()).encode())))
    ports[1].inject(b"\x00\x01\x03\x00")
    assert sorted(outputs(ports)) == [2, 4]
    assert len(await read(stub, group(0))) == 1


def test_simple_switch_grpc_digest_tests() -> None:
    """behavioral-model targets/simple_switch_grpc/tests/test_digest.cpp: OneSample, Ack,
    DeleteDigest."""
    sent: list = []
    e = DigestEngine(text_format.Parse(P4INFO, p4i.P4Info()), send=lambda m: sent.append(m)
                     or True)
    smac = (0x112233445566, 1)
    e.write(p4r.Update.INSERT, digest_entry(max_list_size=1).digest_entry)  # OneSample
    e.learn("learn_t", smac, 0.0)
    assert len(sent) == 1
    e.write(p4r.Update.MODIFY, digest_entry(max_list_size=1, ack_timeout_ns=10**9).digest_entry)
    e.learn("learn_t", smac, 0.1)  # Ack
    e.learn("learn_t", smac, 0.2)
    assert len(sent) == 2
    e.ack(p4r.DigestListAck(digest_id=DIGEST_ID, list_id=sent[-1].list_id))
    e.learn("learn_t", smac, 0.3)
    assert len(sent) == 3
    e.write(p4r.Update.DELETE, digest_entry().digest_entry)  # DeleteDigest
    e.learn("learn_t", smac, 0.4)
    assert len(sent) == 3
