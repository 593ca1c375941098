"""``p4ft simulate`` at scale: streaming (nothing per packet is kept), the summary, plots, the
capacity sweep and Ctrl-C."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import cli
from controller.config import load_config
from controller.edges.pcap import PcapWriter
from controller.edges.simulate import Simulation
from controller.edges.simulate_summary import MAX_BINS, Summary
from tests.unit.router_helpers import arp_who_has, tcp4, tcp4_reply

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CONFIG = EXAMPLES / "router" / "router.toml"
T0 = 1_700_000_000.0
PNG = b"\x89PNG\r\n\x1a\n"


def router_args(out: Path, *extra: str) -> list[str]:
    traffic = EXAMPLES / "traffic"
    return [
        "simulate",
        "--config",
        str(CONFIG),
        "--in",
        f"1={traffic / 'router_h1.pcap'}",
        "--in",
        f"2={traffic / 'router_h2.pcap'}",
        "--out",
        str(out),
        *extra,
    ]


class Frame(bytes):
    """An input frame that counts itself while it is alive (bytes take no weak reference)."""

    live = 0

    def __new__(cls, data: bytes) -> Frame:
        Frame.live += 1
        return super().__new__(cls, data)

    def __del__(self) -> None:
        Frame.live -= 1


def conversation(n: int) -> Iterator[tuple[float, bytes]]:
    """h1's side: ARP for the gateway, then ``n`` SYNs of 50 connections that nobody answers
    (every one takes the classic path), one every 10 ms; each frame a new object."""
    yield T0, Frame(arp_who_has("10.0.1.254"))
    syns = [tcp4("S", sport=10000 + i, payload=b"x" * 100) for i in range(50)]
    for i in range(n):
        yield T0 + 0.1 + i * 0.01, Frame(syns[i % 50])


class Watch:
    """An observer that notes the most input frames alive at once while the replay runs."""

    def __init__(self) -> None:
        self.peak = 0
        self.seen = 0

    def packet(self, port, when, frame, path, reason, events) -> None:  # type: ignore[no-untyped-def]
        self.seen += 1
        if self.seen % 500 == 0:
            gc.collect()
            self.peak = max(self.peak, Frame.live)

    def event(self, now, event) -> None:  # type: ignore[no-untyped-def]
        return None

    def tick(self, now, occupancy) -> None:  # type: ignore[no-untyped-def]
        return None


def test_the_replay_keeps_no_input_frame_beyond_the_reorder_window() -> None:
    config = load_config(CONFIG)
    watch = Watch()
    summary = Summary(config)
    sim = Simulation(config, observers=[summary, watch])
    result = sim.run([(1, conversation(3000))])
    assert result.packets == watch.seen == 3001
    assert 1024 <= watch.peak <= 1024 + 50  # the reorder window, and a neighbour queue's few
    gc.collect()
    assert Frame.live <= 50
    assert {f.name for f in dataclasses.fields(result)} == {
        "packets",
        "paths",
        "late_frames",
        "interrupted",
        "start",
        "end",
    }  # counts only: the records went to the observers


def test_summary_state_is_bounded_on_a_long_trace() -> None:
    """Flow directions idle for long are retired into the top N; time bins coarsen."""
    config = load_config(CONFIG)
    summary = Summary(config, top=5)
    hours = 4
    for i in range(hours * 3600 // 10):  # a new flow every 10 s for 4 h
        when = T0 + i * 10.0
        frame = tcp4("S", sport=1024 + i, payload=bytes(i % 7))
        summary.packet(1, when, frame, "classic", "miss", [])
        summary.tick(when, {"ipv4": i % 3})
    assert len(summary.flows) <= 2 * summary.idle / 10 + 1
    assert len(summary.bins) <= MAX_BINS
    config_router = Simulation(config).router
    data = summary.finish(config_router, run={}, capacity=None)
    assert len(data["top_flows"]) == 5
    assert data["series"]["width"] * MAX_BINS >= hours * 3600
    assert sum(data["series"]["packets"]["classic"]) == hours * 360
    assert data["paths"]["classic"]["packets"] == hours * 360


@pytest.fixture(scope="module")
def router_summary(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("summary")
    code = cli.main(router_args(out, "--plot"))
    assert code == 0
    return json.loads((out / "summary.json").read_text()), out, ""


def test_summary_agrees_with_the_per_packet_records(router_summary) -> None:
    summary, out, _ = router_summary
    report = json.loads((out / "report.json").read_text())
    lines = [json.loads(line) for line in (out / "packets.jsonl").read_text().splitlines()]
    assert lines == report  # the same records, JSON Lines and the §4.1 list
    paths: dict[str, int] = {}
    for entry in report:
        paths[entry["path"]] = paths.get(entry["path"], 0) + 1
    assert {p: v["packets"] for p, v in summary["paths"].items()} == paths
    assert summary["run"]["packets"] == len(report)
    assert summary["hw_share"]["packets"] == pytest.approx(paths["hw"] / len(report))
    hw_offloads = sum(e["type"] == "HW_OFFLOAD" for r in report for e in r["events"])
    assert summary["connections"]["hw_offloaded"] == hw_offloads == 3
    # the TCP connection had SYN, SYN-ACK, ACK and one packet in software before the hardware
    assert summary["connections"]["packets_before_hw"]["max"] == 4
    assert summary["connections"]["offload_latency_ms"]["p50"] == pytest.approx(5.0, abs=1e-3)
    assert summary["tables"]["peak"] == {"ipv4": 2, "ipv6": 2}
    assert summary["punts"] == {"miss": len(report) - paths["hw"]}
    assert summary["offload"]["replace_done"] == 3


def test_summary_by_protocol_and_heaviest_flows(router_summary) -> None:
    summary, _, _ = router_summary
    rows = {(r["protocol"], r["in_port"], r["path"]): r["packets"] for r in summary["by_protocol"]}
    assert rows[("tcp", "eth1", "hw")] == 7 and rows[("arp", "eth0", "to_router")] == 1
    top = summary["top_flows"][0]
    assert (top["src"], top["sport"], top["dst"], top["dport"]) == (
        "10.0.2.2",
        80,
        "10.0.1.1",
        40000,
    )
    assert top["in_port"] == "eth1" and top["hw_packets"] == 6 and 0.5 < top["hw_share"] < 1
    assert [f["bytes"] for f in summary["top_flows"]] == sorted(
        (f["bytes"] for f in summary["top_flows"]), reverse=True
    )


def test_summary_is_printed_as_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(router_args(tmp_path, "--no-pcaps")) == 0
    captured = capsys.readouterr()
    assert "By path" in captured.out and "Heaviest flow directions" in captured.out
    assert "10.0.2.2:80" in captured.out and "41.4% of packets" in captured.out
    assert captured.err == ""  # no progress bar when stderr is not a terminal
    assert not list(tmp_path.glob("*.pcap"))


def test_plots_are_png_files(router_summary) -> None:
    _, out, _ = router_summary
    for name in ("hw_share.png", "occupancy.png", "punts.png", "offload.png"):
        assert (out / name).read_bytes()[:8] == PNG


def test_no_packets_writes_only_the_summary(tmp_path: Path) -> None:
    assert cli.main(router_args(tmp_path, "--no-packets")) == 0
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "packets.jsonl").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["run"]["packets"] == 29


def test_capacity_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(router_args(tmp_path, "--hw-capacity", "0,1,unlimited", "--plot")) == 0
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["capacity"] for r in rows] == [0, 1, None]
    shares = [r["hw_share_packets"] for r in rows]
    assert shares[0] == 0.0 and shares[0] < shares[1] < shares[2]
    assert [r["peak_entries"] for r in rows] == [0, 1, 2]
    assert rows[0]["refused_no_space"] > 0
    for name in ("capacity-0", "capacity-1", "capacity-unlimited"):
        assert (tmp_path / name / "summary.json").exists()
    assert (tmp_path / "sweep.png").read_bytes()[:8] == PNG
    assert "unlimited" in capsys.readouterr().out


def test_bad_capacity_list_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(router_args(Path("/nonexistent"), "--hw-capacity", "10,lots"))
    assert "N,N" in capsys.readouterr().err


def test_ctrl_c_ends_with_a_valid_partial_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT to this process after the 10th packet: the replay stops there, every file is
    complete, and a second Ctrl-C would abort (the handler is restored)."""
    seen = []
    original = Summary.packet

    def packet(self, port, when, frame, path, reason, events):  # type: ignore[no-untyped-def]
        original(self, port, when, frame, path, reason, events)
        seen.append(when)
        if len(seen) == 10:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Summary, "packet", packet)
    before = signal.getsignal(signal.SIGINT)
    assert cli.main(router_args(tmp_path)) == 0
    assert signal.getsignal(signal.SIGINT) is before
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["run"]["interrupted"] is True and summary["run"]["packets"] == 10
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report) == 10
    assert len((tmp_path / "packets.jsonl").read_text().splitlines()) == 10


def test_a_capture_cut_short_gives_a_partial_report_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pcap = tmp_path / "cut.pcap"
    with PcapWriter(pcap) as w:
        w.write(T0, tcp4("S"))
        w.write(T0 + 1, tcp4_reply("SA"))
    pcap.write_bytes(pcap.read_bytes()[:-5])
    out = tmp_path / "out"
    args = ["simulate", "--config", str(CONFIG), "--in", f"1={pcap}", "--out", str(out)]
    assert cli.main(args) == 1
    assert "truncated record" in capsys.readouterr().err
    assert len(json.loads((out / "report.json").read_text())) == 1
    assert json.loads((out / "summary.json").read_text())["run"]["error"]


def test_inputs_merge_by_time_lazily_from_pcap_and_pcapng(tmp_path: Path) -> None:
    """One input as pcapng, one as pcap: records come out in time order across both."""
    from tests.unit.test_pcapng import epb, idb, shb

    times_1 = [0.0, 0.3, 0.2, 0.6]  # slightly out of order: replayed in order
    times_2 = [0.1, 0.4, 0.5]
    ng = shb("<") + idb("<")
    for i, t in enumerate(times_1):
        ng += epb("<", 0, int((T0 + t) * 1e6), tcp4("S", sport=20000 + i))
    (tmp_path / "a.pcapng").write_bytes(ng)
    with PcapWriter(tmp_path / "b.pcap") as w:
        for i, t in enumerate(times_2):
            w.write(T0 + t, tcp4_reply("S", sport=81 + i))
    out = tmp_path / "out"
    args = [
        "simulate",
        "--config",
        str(CONFIG),
        "--in",
        f"1={tmp_path / 'a.pcapng'}",
        "--in",
        f"2={tmp_path / 'b.pcap'}",
        "--out",
        str(out),
    ]
    assert cli.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert [round(e["time"] - T0, 3) for e in report] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert [e["in_port"] for e in report] == [1, 2, 1, 1, 2, 2, 1]


def test_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from controller.edges.capture import Capture
    from controller.edges.simulate_progress import EVERY, Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    capture = Capture(EXAMPLES / "traffic" / "router_h1.pcap")
    progress = Progress([capture], "test")
    for i, (when, frame) in enumerate(capture):
        for _ in range(EVERY if i == 0 else 1):
            progress.packet(1, when, frame, "hw", "", [])
    progress.close(T0 + 12.5)
    shown = term.getvalue()
    assert "test" in shown and "pkts" in shown and "virtual 12.5 s" in shown
    assert "100%" in shown  # the whole file was read


def test_an_empty_capture_gives_an_empty_report(tmp_path: Path) -> None:
    PcapWriter(tmp_path / "empty.pcap").close()
    out = tmp_path / "out"
    args = ["simulate", "--config", str(CONFIG), "--in", f"1={tmp_path / 'empty.pcap'}"]
    assert cli.main([*args, "--out", str(out), "--plot"]) == 0
    assert json.loads((out / "report.json").read_text()) == []
    assert json.loads((out / "summary.json").read_text())["run"]["packets"] == 0
    assert (out / "hw_share.png").read_bytes()[:8] == PNG


def test_classify_sees_through_vlan_tags_and_pppoe() -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
    from scapy.layers.ppp import PPP, PPPoE

    from controller.edges.simulate_summary import _endpoints, classify

    eth = Ether(dst="00:00:00:00:00:01", src="00:00:00:00:00:02")
    ip = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=53, dport=5353)
    for frame in (
        eth / ip,
        eth / Dot1Q(vlan=5) / ip,
        eth / Dot1AD(vlan=7) / Dot1Q(vlan=5) / ip,
        eth / PPPoE(sessionid=3) / PPP(proto=0x0021) / ip,
    ):
        proto, key = classify(bytes(frame))
        assert proto == "udp" and key is not None
        assert _endpoints(key) == ("10.0.0.1", "10.0.0.2", 53, 5353)
    v6 = eth / PPPoE(sessionid=3) / PPP(proto=0x0057) / IPv6(src="2001:db8::1", dst="2001:db8::2")
    proto, key = classify(bytes(v6 / UDP(sport=1, dport=2)))
    assert proto == "udp" and key is not None and _endpoints(key)[2:] == (1, 2)
    assert classify(bytes(eth / ARP())) == ("arp", None)
    assert classify(b"\x00" * 10) == ("short", None)
