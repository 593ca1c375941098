"""flowtable.stf through the Python model of flowtable.p4 (tests/unit/flowtable_p4_model.py).

The STF suite itself runs on the compiled JSON and skips while the outputs are stale; this
checks now that the committed source's logic, as modelled, produces every expected frame —
the cases that predate the encapsulation work (which the last compiled program passes) as
well as the new ones — so a mistake in either the model or the new cases shows up here.
"""

from __future__ import annotations

import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from inet import encap
from inet.encap import Encap
from ndo.api import Command, FlowActions, FlowCommand, FlowMatch, FlowRule
from ndo.memory import MemoryDriver
from ndo.p4runtime.codec import action_values, encap_ints
from tests.p4build import REPO
from tests.unit import flowtable_p4_model as model

STF = REPO / "tests" / "p4" / "flowtable.stf"


def run_stf_on_model(text: str) -> list[str]:
    tables: model.Tables = {"flow_v4": {}, "flow_v6": {}}
    received: dict[int, list[bytes]] = {}
    expected: dict[int, list[tuple[int, str]]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        cmd, _, rest = line.partition(" ")
        if cmd == "add":
            table, rest = rest.split(" ", 1)
            keys, call = rest.split(" FtIngress.", 1)
            values = dict(kv.split(":") for kv in keys.split())
            key = tuple(int(values.get(k, "0"), 0) for k in model.V4_KEYS)
            params = dict(
                (k.strip(), int(v, 0))
                for k, v in (p.split(":") for p in re.search(r"\((.*)\)", call)[1].split(","))
            )
            missing = [p for p in model.PARAMS if p not in params]
            assert not missing, f"line {lineno}: missing {missing}"
            tables[table.rsplit(".", 1)[1]][key] = params
        elif cmd == "packet":
            port, data = rest.split(" ", 1)
            out = model.process(bytes.fromhex("".join(data.split())), int(port), tables)
            if out is not None:
                received.setdefault(out[0], []).append(out[1])
        elif cmd == "expect":
            port, data = rest.split(" ", 1)
            expected.setdefault(int(port), []).append((lineno, "".join(data.split()).upper()))
        else:
            raise AssertionError(f"line {lineno}: the model does not run {cmd!r}")
    failures = []
    for port in sorted(set(received) | set(expected)):
        got = [f.hex().upper() for f in received.get(port, [])]
        want = expected.get(port, [])
        for i in range(max(len(got), len(want))):
            if i >= len(got) or i >= len(want) or got[i] != want[i][1]:
                line, pattern = want[i] if i < len(want) else ("-", None)
                frame = got[i] if i < len(got) else None
                failures.append(
                    f"port {port} #{i + 1} (line {line}): expected {pattern}\n  got {frame}"
                )
    return failures


def test_flowtable_stf_on_the_model() -> None:
    failures = run_stf_on_model(STF.read_text())
    assert not failures, "\n".join(failures)


def test_the_model_check_can_fail() -> None:
    text = STF.read_text()
    # The first TCP hit's expected TTL 0x3F changed to 0x3E.
    broken = text.replace("000100003F06ADB7", "000100003E06ADB7", 1)
    assert broken != text
    assert run_stf_on_model(broken)


@pytest.mark.parametrize(
    "frame, reason",
    [
        # PADI (discovery), untagged and under a tag.
        ("FFFFFFFFFFFF020000000001886311090000000401010000", model.PPPOE_DISCOVERY),
        ("FFFFFFFFFFFF0200000000018100000788631109000000040101000", model.PPPOE_DISCOVERY),
        # LCP in a session.
        ("0200000000FE020000000001886411000042000AC021010100080000", model.PPP_NOT_IP),
        # Three tags.
        ("0200000000FE02000000000188A800648100000A810000050800", model.ENCAP_UNSUPPORTED),
    ],
)
def test_encapsulation_punts(frame: str, reason: int) -> None:
    data = bytes.fromhex(frame + ("0" if len(frame) % 2 else ""))
    port, out = model.process(data, 1, {"flow_v4": {}, "flow_v6": {}})
    assert port == model.CPU_PORT
    assert out[:3] == bytes([0, 1, reason])
    assert out[3:] == data


# -- the model of flowtable.p4 and the memory driver agree on encapsulated flows -------------

ENCAP_LISTS = [
    (), (Encap(10, 0x8100),), (Encap(100, 0x88A8), Encap(10, 0x8100)),
    (Encap(7, 0x8100), Encap(0x1234, 0x8864)), (Encap(0x42, 0x8864),),
    (Encap(5, 0x8100), Encap(6, 0x8100)),
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ENCAP_LISTS), st.sampled_from(ENCAP_LISTS), st.sampled_from([4, 6]),
       st.sampled_from([6, 17]), st.integers(0, 300), st.booleans())
def test_model_and_memory_driver_forward_alike(encap_in, push, family, proto, size, nat) -> None:
    """Same rule, same frame: the P4 model and the memory driver send the same bytes (or
    both punt), whatever the encapsulations in and out."""
    addr = (lambda n: bytes([10, 0, 0, n])) if family == 4 else (
        lambda n: bytes.fromhex("20010db8" + "00" * 11) + bytes([n]))
    match = FlowMatch(1, family, addr(1), addr(2), proto, 40000, 443, encap_in)
    actions = FlowActions(2, bytes.fromhex("0200000002fe"), bytes.fromhex("020000000201"), 200,
                          nat_src=addr(9) if nat else None, nat_sport=50000 if nat else None,
                          push=push)
    hw = MemoryDriver()
    assert hw.execute_now([FlowCommand(Command.REPLACE, 1, FlowRule(match, actions))])[0].ok
    l3 = (IP(src=socket.inet_ntop(socket.AF_INET, addr(1)),
             dst=socket.inet_ntop(socket.AF_INET, addr(2)), ttl=9) if family == 4 else
          IPv6(src=socket.inet_ntop(socket.AF_INET6, addr(1)),
               dst=socket.inet_ntop(socket.AF_INET6, addr(2)), hlim=9))
    l4 = TCP(sport=40000, dport=443, flags="A") if proto == 6 else UDP(sport=40000, dport=443)
    inner = l3 / l4 / bytes(size)
    frame = bytes.fromhex("0200000001fe020000000101") + encap.header(
        encap_in, 0x0800 if family == 4 else 0x86DD, len(inner)) + bytes(inner)
    key = (1, int.from_bytes(addr(1), "big"), int.from_bytes(addr(2), "big"), proto, 40000, 443,
           *encap_ints(encap_in))
    params = dict(zip(model.PARAMS, (*action_values(FlowRule(match, actions), True),),
                      strict=True))
    tables: model.Tables = {"flow_v4": {}, "flow_v6": {}}
    tables[f"flow_v{family}"][key] = params
    modelled = model.process(frame, 1, tables)
    driven = hw.process(frame, 1)
    if driven is None:
        assert modelled is not None and modelled[0] == model.CPU_PORT  # both punt (MTU)
    else:
        assert modelled == (driven[0], bytes(driven[1]))
