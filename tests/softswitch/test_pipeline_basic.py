"""The softswitch runs a small router program like BMv2 would: forward, rewrite, checksums."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from softswitch.pipeline import Pipeline, PipelineError
from softswitch.tables import DuplicateEntry, InvalidEntry, TableFull
from tests.softswitch.p4json import router_program

DST = 0x0A000202  # 10.0.2.2


@pytest.fixture
def pipe() -> Pipeline:
    p = Pipeline.from_json(router_program())
    params = (2, 0x020000000202, 0x0200000002FE)
    p.tables["ingress.fwd"].insert((DST,), 0, "ingress.forward", params)
    return p


def frame(proto=UDP, dst="10.0.2.2", ttl=64, payload=b"hello") -> bytes:
    l4 = proto(sport=1234, dport=80)
    return bytes(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:fe")
                 / IP(src="10.0.1.1", dst=dst, ttl=ttl) / l4 / payload)


def test_hit_forwards_rewrites_and_fixes_checksums(pipe: Pipeline) -> None:
    out = pipe.process(1, frame(UDP))
    assert len(out) == 1
    port, data = out[0]
    assert port == 2
    pkt = Ether(data)
    assert pkt.dst == "02:00:00:00:02:02" and pkt.src == "02:00:00:00:02:fe"
    assert pkt[IP].ttl == 63
    expected = Ether(data)
    del expected[IP].chksum
    del expected[UDP].chksum
    expected = Ether(bytes(expected))
    assert pkt[IP].chksum == expected[IP].chksum
    assert pkt[UDP].chksum == expected[UDP].chksum
    assert bytes(pkt[UDP].payload) == b"hello"


def test_tcp_passes_with_ipv4_checksum_fixed(pipe: Pipeline) -> None:
    [(port, data)] = pipe.process(1, frame(TCP))
    assert port == 2
    pkt = Ether(data)
    ref = pkt.copy()
    del ref[IP].chksum
    assert pkt[IP].chksum == Ether(bytes(ref))[IP].chksum
    assert pkt[TCP].dport == 80


def test_miss_runs_default_drop(pipe: Pipeline) -> None:
    assert pipe.process(1, frame(dst="10.9.9.9")) == []
    assert pipe.drops["egress_spec"] == 1


def test_direct_counter_and_idle_tracking(pipe: Pipeline) -> None:
    t = pipe.tables["ingress.fwd"]
    e = t.get((DST,), 0)
    e.ttl_ns = 1_000_000_000
    data = frame()
    pipe.process(1, data, now=5.0)
    pipe.process(1, data, now=6.0)
    assert (e.packets, e.bytes, e.last_hit) == (2, 2 * len(data), 6.0)
    assert t.idle_entries(6.5) == []
    assert t.idle_entries(7.0) == [e]


def test_untouched_egress_spec_sends_to_port_0_like_bmv2(pipe: Pipeline) -> None:
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01", type=0x0806)) + bytes(28)
    assert pipe.process(1, arp) == [(0, arp)]


def test_truncated_ipv4_continues_with_parser_error(pipe: Pipeline) -> None:
    data = frame()[:20]  # ethernet + 6 bytes of IPv4: PacketTooShort, ipv4 stays invalid
    assert pipe.process(1, data) == [(0, data)]


def test_table_errors(pipe: Pipeline) -> None:
    t = pipe.tables["ingress.fwd"]
    with pytest.raises(DuplicateEntry):
        t.insert((DST,), 0, "ingress.forward", (2, 1, 1))
    with pytest.raises(InvalidEntry):
        t.insert((1 << 32,), 0, "ingress.forward", (2, 1, 1))
    with pytest.raises(InvalidEntry):
        t.insert((5,), 0, "ingress.forward", (1 << 9, 1, 1))
    with pytest.raises(InvalidEntry):
        t.insert((5,), 0, "nope", ())
    small = Pipeline.from_json(router_program(), table_size_override=1).tables["ingress.fwd"]
    small.insert((1,), 0, "ingress.drop", ())
    with pytest.raises(TableFull):
        small.insert((2,), 0, "ingress.drop", ())


def test_bad_json_names_the_path() -> None:
    doc = router_program()
    doc["pipelines"][0]["tables"][0]["key"][0]["target"] = ["ipv4", "nope"]
    with pytest.raises(PipelineError, match=r"pipelines\[0\]\.tables\[0\]\.key\[0\]"):
        Pipeline.from_json(doc)


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda d: d["headers"][2].update(header_type="nope_t"), r"\$\.headers\[2\]\.header_type"),
    (lambda d: d["actions"][1]["primitives"][0].update(op="frobnicate"),
     r"\$\.actions\[1\]\.primitives\[0\]\.op: unsupported primitive 'frobnicate'"),
    (lambda d: d["pipelines"][0]["tables"][0].update(type="indirect"),
     r"action profiles are not supported"),
    (lambda d: d["parsers"][0]["parse_states"][0]["transitions"][0].update(next_state="x"),
     r"unknown next state 'x'"),
    (lambda d: d["calculations"][0].update(algo="md5"), r"\$\.calculations\[0\]\.algo"),
    (lambda d: d.pop("actions"), r"\$: missing attribute 'actions'"),
])
def test_invalid_programs_fail_to_load_with_the_json_path(mutate, where) -> None:
    doc = router_program()
    mutate(doc)
    with pytest.raises(PipelineError, match=where):
        Pipeline.from_json(doc)


def test_not_a_json_object() -> None:
    with pytest.raises(PipelineError, match="must be an object"):
        Pipeline.from_json([])  # type: ignore[arg-type]
