"""``p4ft simulate`` on examples/encap with the encap pcaps (examples/traffic/make_pcaps.py):
VLAN, QinQ and PPPoE through the classic path, the software fast path and the hardware, and on
the softswitch running whichever flowtable.p4 is compiled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Dot1AD, Dot1Q
from scapy.layers.ppp import PPPoE
from scapy.utils import rdpcap

from controller.edges.pipeline_files import P4INFO
from ndo.p4runtime.schema import FlowSchema, load_p4info
from tests.p4build import require_current
from tests.unit.test_simulate import at, simulate, types

INPUTS = ("1=encap_lan.pcap", "2=encap_wan.pcap", "3=encap_up.pcap")


@pytest.fixture(scope="module")
def encap_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("encap")
    assert simulate(out, "encap", *INPUTS) == 0
    return json.loads((out / "report.json").read_text()), out


def test_vlan_to_pppoe_tcp_goes_classic_software_then_hardware(encap_run) -> None:
    report, out = encap_run
    assert [at(report, t)["path"] for t in (0.0, 0.05)] == ["to_router", "to_router"]  # ARP
    assert [at(report, t)["path"] for t in (1.0, 1.01, 1.02)] == ["classic"] * 3
    assert types(at(report, 1.02)) == ["OFFLOAD"] and at(report, 1.022)["path"] == "sw_fastpath"
    assert types(at(report, 1.04)) == ["HW_OFFLOAD"] and at(report, 1.04)["path"] == "hw"
    wan = [p for p in rdpcap(str(out / "2.pcap")) if p[TCP].sport == 40000]
    assert all(p[PPPoE].sessionid == 0x1234 and p[PPPoE].len == p[IP].len + 2 for p in wan)
    assert {p[IP].src for p in wan} == {"203.0.113.5"} and len(wan) == 4
    lan = [p for p in rdpcap(str(out / "1.pcap")) if TCP in p and p[TCP].dport == 40000]
    assert [p[Dot1Q].vlan for p in lan] == [10, 10] and all(PPPoE not in p for p in lan)


def test_qinq_to_the_untagged_uplink_and_back_with_both_tags(encap_run) -> None:
    report, out = encap_run
    assert at(report, 2.1)["path"] == "hw"
    (back,) = [p for p in rdpcap(str(out / "1.pcap")) if UDP in p]
    assert back[Dot1AD].vlan == 100 and back[Dot1Q].vlan == 10 and back[IP].ttl == 63
    assert all(Dot1Q not in p for p in rdpcap(str(out / "3.pcap")))


def test_unknown_vlan_and_pppoe_discovery_are_dropped_and_oversize_gets_frag_needed(
    encap_run,
) -> None:
    report, out = encap_run
    assert [at(report, t)["path"] for t in (3.0, 3.1, 3.3)] == ["drop"] * 3
    (icmp,) = [p for p in rdpcap(str(out / "1.pcap")) if ICMP in p]
    assert icmp[Dot1Q].vlan == 10 and icmp[ICMP].nexthopmtu == 1492


def _compiled_has_encap() -> bool:
    return FlowSchema.from_p4info(load_p4info(P4INFO)).tables[4].encap


def test_softswitch_without_encap_keys_keeps_encapsulated_flows_in_software(
    encap_run, tmp_path: Path
) -> None:
    """The program compiled before issue 17 cannot match tags: every encapsulated flow is
    refused by the driver and stays [OFFLOAD], forwarded by the software fast path."""
    if _compiled_has_encap():
        pytest.skip("the compiled flowtable.p4 has encapsulation keys")
    assert simulate(tmp_path, "encap", *INPUTS, extra=("--hw", "softswitch")) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [at(report, t)["path"] for t in (1.04, 1.05, 2.1)] == ["sw_fastpath"] * 3
    assert not any("HW_OFFLOAD" in types(e) for e in report)


def test_softswitch_with_encap_keys_gives_the_memory_journey(encap_run, tmp_path: Path) -> None:
    require_current("p4src/flowtable.p4")
    memory_report, _ = encap_run
    assert simulate(tmp_path, "encap", *INPUTS, extra=("--hw", "softswitch")) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [e["path"] for e in report] == [e["path"] for e in memory_report]
    assert [types(e) for e in report] == [types(e) for e in memory_report]
