"""``p4ft simulate`` on the example scenarios: report.json and the output pcaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from controller import cli
from controller.edges.pcap import PcapWriter, read_pcap
from tests.unit.router_helpers import assert_checksums, tcp4, tcp4_reply

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
T0 = 1_700_000_000.0


def simulate(
    tmp_path: Path, example: str, *inputs: str, extra: tuple[str, ...] = (), config: str = ""
) -> int:
    """``example``: a directory of examples/ with router.toml, or ``config`` (a path in it)."""
    args = ["simulate", "--config", str(EXAMPLES / example / (config or "router.toml"))]
    for spec in inputs:
        port, name = spec.split("=")
        args += ["--in", f"{port}={EXAMPLES / 'traffic' / name}"]
    return cli.main([*args, "--out", str(tmp_path), *extra])


def at(report: list[dict], offset: float) -> dict:
    (entry,) = [e for e in report if abs(e["time"] - T0 - offset) < 1e-6]
    return entry


def types(entry: dict) -> list[str]:
    return [e["type"] for e in entry["events"] if e["type"] != "UPDATE"]


@pytest.fixture(scope="module")
def router_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("router")
    assert simulate(out, "router", "1=router_h1.pcap", "2=router_h2.pcap") == 0
    return json.loads((out / "report.json").read_text()), out


def test_report_has_one_entry_per_input_packet_in_time_order(router_run) -> None:
    report, _ = router_run
    total = sum(
        len(list(read_pcap(EXAMPLES / "traffic" / n))) for n in ("router_h1.pcap", "router_h2.pcap")
    )
    assert len(report) == total
    assert [e["time"] for e in report] == sorted(e["time"] for e in report)
    for entry in report:
        assert set(entry) == {"in_port", "time", "path", "events"}
        assert entry["path"] in ("classic", "sw_fastpath", "hw", "to_router", "drop")
        assert all("type" in ev for ev in entry["events"])


def test_tcp_conversation_classic_then_offloaded_then_hw(router_run) -> None:
    report, _ = router_run
    assert [at(report, t)["path"] for t in (0.0, 0.05)] == ["to_router", "to_router"]  # ARP
    assert [at(report, t)["path"] for t in (1.0, 1.01, 1.02)] == ["classic"] * 3
    assert types(at(report, 1.0)) == ["NEW"]
    assert types(at(report, 1.02)) == ["OFFLOAD"]  # the handshake-completing ACK
    assert at(report, 1.022)["path"] == "sw_fastpath"  # hardware write still in flight
    assert types(at(report, 1.04)) == ["HW_OFFLOAD"] and at(report, 1.04)["path"] == "hw"
    assert all(at(report, 1.1 + i * 0.1)["path"] == "hw" for i in range(5))
    # FIN is punted by the hardware and forwarded in software (CLOSING mode) ...
    assert at(report, 2.0)["path"] == "sw_fastpath"
    # ... and the next GC removes the hardware rules
    assert "DESTROY" in types(at(report, 3.01))


def test_udp_ipv6_and_idle_expiry(router_run) -> None:
    report, _ = router_run
    assert at(report, 3.0)["path"] == "classic" and "OFFLOAD" in types(at(report, 3.01))
    assert at(report, 3.1)["path"] == "hw"
    assert types(at(report, 5.02)) == ["OFFLOAD"] and at(report, 5.1)["path"] == "hw"  # IPv6
    late = at(report, 45.0)
    assert late["path"] == "classic"  # the UDP flow idled out meanwhile
    expired = [e for e in late["events"] if e["type"] == "TEARDOWN"]
    assert expired and all(e["reason"] == "expired" for e in expired)
    assert types(late).count("DESTROY") >= 2  # the UDP and the IPv6 flow left the hardware
    assert at(report, 46.0)["path"] == "classic"


def test_output_pcaps_carry_routed_frames_with_valid_checksums(router_run) -> None:
    _, out = router_run
    assert sorted(p.name for p in out.glob("*.pcap")) == ["1.pcap", "2.pcap"]
    to_h2 = [assert_checksums(frame) for _, frame in read_pcap(out / "2.pcap")]
    tcp_to_h2 = [p for p in to_h2 if TCP in p and IP in p]
    sent = [f for _, f in read_pcap(EXAMPLES / "traffic" / "router_h1.pcap")]
    h1_tcp = [Ether(f) for f in sent if TCP in Ether(f) and IP in Ether(f)]
    assert len(tcp_to_h2) == len(h1_tcp)
    assert all(p[IP].ttl == 63 and p.dst == "00:00:00:00:02:02" for p in tcp_to_h2)
    assert any(IPv6 in p and TCP in p and p[IPv6].hlim == 63 for p in to_h2)
    times = [t for t, _ in read_pcap(out / "2.pcap")]
    assert times == sorted(times) and times[0] >= T0


@pytest.fixture(scope="module")
def nat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nat")
    assert simulate(out, "nat", "1=nat_inside.pcap", "2=nat_outside.pcap") == 0
    return out


def test_nat_example_rewrites_both_ways(nat_run: Path) -> None:
    report = json.loads((nat_run / "report.json").read_text())
    assert "drop" not in [e["path"] for e in report]
    assert "hw" in [e["path"] for e in report]
    outside = [Ether(f) for _, f in read_pcap(nat_run / "2.pcap")]
    assert outside and all(p[IP].src == "203.0.113.1" for p in outside if IP in p)
    inside = [Ether(f) for _, f in read_pcap(nat_run / "1.pcap")]
    forwarded = [p for p in inside if TCP in p and p[TCP].sport == 50000]
    assert forwarded and all(p[TCP].dport == 80 and p[IP].dst == "10.0.1.1" for p in forwarded)
    masq_replies = [p for p in inside if TCP in p and p[TCP].sport == 443]
    assert masq_replies and all(p[IP].dst == "10.0.1.1" for p in masq_replies)


def test_nat_output_checksums_are_valid(nat_run: Path) -> None:
    for port in (1, 2):
        for _, frame in read_pcap(nat_run / f"{port}.pcap"):
            assert_checksums(frame)


def test_ties_keep_the_order_of_the_inputs(tmp_path: Path) -> None:
    for name, frame in (("a.pcap", tcp4("S")), ("b.pcap", tcp4_reply("S", sport=81))):
        with PcapWriter(tmp_path / name) as w:
            w.write(T0, frame)
    cfg = str(EXAMPLES / "router" / "router.toml")
    for order, want in ((("2=", "1="), [2, 1]), (("1=", "2="), [1, 2])):
        files = {"1=": "a.pcap", "2=": "b.pcap"}
        args = ["simulate", "--config", cfg, "--out", str(tmp_path / "out")]
        for spec in order:
            args += ["--in", spec + str(tmp_path / files[spec])]
        assert cli.main(args) == 0
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        assert [e["in_port"] for e in report] == want


def test_bad_pcap_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a pcap at all, sorry")
    cfg = str(EXAMPLES / "router" / "router.toml")
    code = cli.main(["simulate", "--config", cfg, "--in", f"1={bad}", "--out", str(tmp_path)])
    assert code == 1 and "bad.pcap" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--in", "9=x.pcap"], "No such file"),
        (["--in", "1"], "PORT=FILE"),
        (["--hw-latency", "-1", "--in", f"1={EXAMPLES / 'traffic' / 'router_h1.pcap'}"], "latency"),
    ],
)
def test_bad_arguments_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    cfg = str(EXAMPLES / "router" / "router.toml")
    code = cli.main(["simulate", "--config", cfg, "--out", str(tmp_path), *args])
    assert code == 1 and message in capsys.readouterr().err


def test_unknown_port_and_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = EXAMPLES / "traffic" / "router_h1.pcap"
    cfg = str(EXAMPLES / "router" / "router.toml")
    assert cli.main(["simulate", "--config", cfg, "--in", f"7={pcap}", "--out", str(tmp_path)]) == 1
    assert "port 7" in capsys.readouterr().err
    bad = tmp_path / "router.toml"
    bad.write_text("[[ports]]\nid = 1\n")
    assert (
        cli.main(["simulate", "--config", str(bad), "--in", f"1={pcap}", "--out", str(tmp_path)])
        == 1
    )
    assert "router.toml" in capsys.readouterr().err


def test_full_hardware_keeps_flows_in_software(tmp_path: Path) -> None:
    code = simulate(
        tmp_path, "router", "1=router_h1.pcap", "2=router_h2.pcap", extra=("--hw-capacity", "0")
    )
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    paths = [e["path"] for e in report]
    assert "hw" not in paths and paths.count("sw_fastpath") >= 10
    assert not any("HW_OFFLOAD" in types(e) for e in report)


def test_softswitch_hardware_gives_the_same_journey(router_run, tmp_path: Path) -> None:
    memory_report, _ = router_run
    code = simulate(
        tmp_path, "router", "1=router_h1.pcap", "2=router_h2.pcap", extra=("--hw", "softswitch")
    )
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [e["path"] for e in report] == [e["path"] for e in memory_report]
    assert [types(e) for e in report] == [types(e) for e in memory_report]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tables"]["peak"] == {"ipv4": 2, "ipv6": 2}  # the P4 tables' entries


def test_softswitch_nat_output_is_rewritten_with_valid_checksums(tmp_path: Path) -> None:
    code = simulate(
        tmp_path, "nat", "1=nat_inside.pcap", "2=nat_outside.pcap", extra=("--hw", "softswitch")
    )
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [e["path"] for e in report].count("hw") >= 4
    for port in (1, 2):
        for _, frame in read_pcap(tmp_path / f"{port}.pcap"):
            assert_checksums(frame)
    outside = [Ether(f) for _, f in read_pcap(tmp_path / "2.pcap")]
    assert all(p[IP].src == "203.0.113.1" for p in outside if IP in p)


def test_a_long_gap_between_packets_does_not_tick_every_second(tmp_path: Path) -> None:
    with PcapWriter(tmp_path / "h1.pcap") as w:
        w.write(T0, tcp4("S"))
        w.write(T0 + 10 * 365 * 86400.0, tcp4("S", sport=40001))  # ten years later
    cfg = str(EXAMPLES / "router" / "router.toml")
    args = ["simulate", "--config", cfg, "--in", f"1={tmp_path / 'h1.pcap'}"]
    assert cli.main([*args, "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [e["path"] for e in report] == ["classic", "classic"]
    # the first SYN's ARP query failed long ago: its connection expired in between
    assert "DESTROY" in types(report[1])


# -- kernel behaviours (issue 10), the memory driver as hardware --------------------------------


def kernel_run(tmp_path: Path, example: str, traffic: str, *extra: str, config: str = "") -> list:
    inputs = (f"1={traffic}_h1.pcap", f"2={traffic}_h2.pcap")
    assert simulate(tmp_path, example, *inputs, extra=extra, config=config) == 0
    return json.loads((tmp_path / "report.json").read_text())


def test_simulate_ruleset_replace_frees_the_flowtable_and_new_rules_see_the_flow(
    tmp_path: Path,
) -> None:
    """nf_flow_table_free at a reload (flush ruleset + the same table): the offloaded web flow
    is torn down, its hardware rules destroyed, and h1's FIN meets the new drop rule."""
    reload = str(EXAMPLES / "kernel" / "reload.nft")
    report = kernel_run(tmp_path, "router", "router", "--ruleset-at", f"1.6={reload}")
    assert at(report, 1.5)["path"] == "hw"
    after = at(report, 2.0)
    assert types(after) == ["TEARDOWN", "DESTROY"] and after["events"][0]["reason"] == "flush"
    assert after["path"] == "drop" and at(report, 2.02)["path"] == "drop"
    assert at(report, 2.01)["path"] == "classic"  # h2's side is not port 80: accepted
    assert "OFFLOAD" in types(at(report, 3.01))  # the new flowtable takes new flows


def test_simulate_ruleset_at_bad_spec_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = simulate(tmp_path, "router", "1=router_h1.pcap", extra=("--ruleset-at", "soon=x.nft"))
    assert code == 1 and "expected TIME=FILE" in capsys.readouterr().err
    bad = tmp_path / "bad.nft"
    bad.write_text("add flowtable inet filter ft { devices = { eth9 }; }\n")
    code = simulate(tmp_path, "router", "1=router_h1.pcap", extra=("--ruleset-at", f"1={bad}"))
    err = capsys.readouterr().err
    assert code == 1 and f"{bad}:1:" in err and "no device eth9" in err


def test_simulate_flowtable_without_devices_takes_no_fast_path_and_no_hardware(
    tmp_path: Path,
) -> None:
    report = kernel_run(tmp_path, "kernel", "router", config="nodevices.toml")
    paths = {e["path"] for e in report}
    assert paths == {"to_router", "classic"}
    assert "OFFLOAD" in types(at(report, 1.02))  # flow add @ft still adds the flow...
    assert not any("HW_OFFLOAD" in types(e) for e in report)  # ...no driver is bound


def test_simulate_software_flowtable_neigh_xmit(tmp_path: Path) -> None:
    """NEIGH xmit without flags offload: h1 never answers ARP, the flow is offloaded anyway;
    h2's new MAC is used by the fast path from the next packet on."""
    report = kernel_run(tmp_path, "kernel", "neigh", config="software.toml")
    assert [at(report, t)["path"] for t in (1.0, 1.2)] == ["classic", "classic"]
    assert types(at(report, 1.2)) == ["OFFLOAD"]
    assert [at(report, t)["path"] for t in (1.4, 1.6, 3.0, 3.2)] == ["sw_fastpath"] * 4
    udp = [(t - T0, Ether(f).dst) for t, f in read_pcap(tmp_path / "2.pcap") if UDP in Ether(f)]
    assert [mac for t, mac in udp if t > 2.5] == ["00:00:00:00:02:99"] * 2
    assert {mac for t, mac in udp if t < 2.5} == {"00:00:00:00:02:02"}


def test_simulate_closing_flow_expiry_leaves_the_connection_in_close(tmp_path: Path) -> None:
    """flow_offload_fixup_ct: the CLOSING flow that idles out hands its connection back in
    CLOSE with 10 s, not 0 s: the FIN retransmitted at 38 s still finds it."""
    report = kernel_run(tmp_path, "router", "closing")
    assert at(report, 2.0)["path"] == "sw_fastpath"  # the FIN: CLOSING
    late = at(report, 38.0)
    assert late["path"] == "classic" and "TEARDOWN" in types(late)
    assert [e for e in late["events"] if e["type"] == "DESTROY" and "flowtable" not in e] == []
    gone = at(report, 60.0)["events"]
    assert [e["type"] for e in gone if "flowtable" not in e] == ["DESTROY", "NEW"]


def test_simulate_capacity_per_family_table_and_retry_on_refresh(tmp_path: Path) -> None:
    """Each install on its own: the full IPv6 table leaves IPv4 room; a refused IPv4 flow is
    installed by a later refresh once a slot is free."""
    report = kernel_run(tmp_path, "router", "tables", "--hw-capacity", "2")
    assert at(report, 1.05)["path"] == "hw"  # IPv6
    assert at(report, 2.05)["path"] == "hw"  # IPv4: its own table, the IPv6 one is full
    assert [at(report, t)["path"] for t in (3.05, 4.1, 5.5)] == ["sw_fastpath"] * 3
    assert "DESTROY" in types(at(report, 5.5))  # the first IPv4 flow left the hardware
    assert at(report, 5.6)["path"] == "hw" and types(at(report, 5.6)) == ["HW_OFFLOAD"]
