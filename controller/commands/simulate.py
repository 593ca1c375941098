"""``p4ft simulate``: replay captures through the router and its hardware on a virtual clock.

``p4ft simulate --config router.toml --in 1=h1.pcap --in 2=h2.pcapng --out DIR``
``[--hw memory|softswitch] [--hw-capacity N[,N...]] [--ruleset-at TIME=FILE] [--no-packets]``
``[--no-pcaps] [--plot]`` replays pcap or pcapng files (merged by time, read as it goes) and
writes into DIR, as it goes: ``<port>.pcap`` per port that sent something, the per-packet
records as ``packets.jsonl`` and ``report.json`` (DESIGN §4.1's list, streamed as a JSON array);
at the end ``summary.json``, printed as tables, and with ``--plot`` PNG figures beside it.
Several capacities (``--hw-capacity 1000,4000,16000``) run the trace once per capacity, each
into ``DIR/capacity-N/``, and write ``DIR/sweep.json`` (and ``sweep.png`` with ``--plot``).
``--ruleset-at`` runs FILE on the running ruleset TIME seconds after the first packet, as
``p4ft ruleset apply`` would. A progress bar shows on a terminal; Ctrl-C ends the replay with
a valid partial report (a second Ctrl-C aborts). Bad captures, configuration or rulesets print
one clear line on stderr and exit 1 (a capture that breaks mid-way: after a partial report).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _capacities(text: str) -> list[int | None]:
    """``N`` or ``N,N,...``; ``unlimited`` (or ``none``) for no limit."""
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in ("unlimited", "none"):
            out.append(None)
            continue
        try:
            value = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected N or N,N,... (entries per table, or 'unlimited')"
            ) from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r}: a capacity must not be negative")
        out.append(value)
    return out


@contextmanager
def _ctrl_c_stops(sim: Any) -> Iterator[None]:
    """The first Ctrl-C ends the replay cleanly (a partial report), a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, previous)
        sim.stop()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_one(
    args: argparse.Namespace, config: Any, changes: list, capacity: int | None, out: Path, desc: str
) -> tuple[dict, str | None]:
    """One replay into ``out``: its summary and the error that cut it short, if any."""
    from controller.edges.capture import open_captures
    from controller.edges.pcap import PcapError
    from controller.edges.simulate import Simulation, parse_inputs
    from controller.edges.simulate_out import PacketLog, PortPcaps
    from controller.edges.simulate_progress import Progress
    from controller.edges.simulate_summary import Summary

    specs = parse_inputs(args.inputs)
    captures = open_captures(path for _, path in specs)
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(config)
    log = None if args.no_packets else PacketLog(out)
    pcaps = None if args.no_pcaps else PortPcaps(out)
    progress = Progress(captures, desc)
    observers = [o for o in (log, summary, progress) if o is not None]
    error = None
    try:
        sim = Simulation(
            config,
            latency=args.hw_latency,
            capacity=capacity,
            hw=args.hw,
            observers=observers,
            send=pcaps.send if pcaps else None,
        )
        with _ctrl_c_stops(sim):
            try:
                sim.run(
                    [(port, cap) for (port, _), cap in zip(specs, captures, strict=True)], changes
                )
            except PcapError as exc:  # a record broke mid-way: report what came before
                error = str(exc)
    finally:
        for capture in captures:
            capture.close()
        progress.close(sim.now if "sim" in locals() else None)
        if log is not None:
            log.close()
        if pcaps is not None:
            pcaps.close()
    result = sim.result
    run = {
        "inputs": [f"{port}={path}" for port, path in specs],
        "hw": args.hw,
        "latency": args.hw_latency,
        "start": result.start,
        "end": result.end,
        "duration": (result.end - result.start) if result.start is not None else 0.0,
        "interrupted": result.interrupted,
        "error": error,
        "late_frames": result.late_frames,
    }
    data = summary.finish(sim.router, run=run, capacity=capacity)
    (out / "summary.json").write_text(json.dumps(data, indent=1) + "\n")
    if args.plot:
        from controller.edges.simulate_plot import plot_summary

        plot_summary(data, out)
    return data, error


def _run(args: argparse.Namespace) -> int:
    from controller.config import ConfigError, load_config
    from controller.edges.pcap import PcapError
    from controller.edges.simulate import SimulationError, load_changes
    from controller.edges.simulate_hw import HardwareError
    from controller.edges.simulate_summary import format_summary
    from controller.ip.routing import RouteError
    from controller.netfilter.ruleset import RulesetError

    capacities = args.hw_capacity or [None]
    out = Path(args.out)
    sweep = []
    try:
        config = load_config(args.config)
        changes = load_changes(args.ruleset_at)
        for capacity in capacities:
            name = "unlimited" if capacity is None else str(capacity)
            run_dir = out if len(capacities) == 1 else out / f"capacity-{name}"
            data, error = _run_one(args, config, changes, capacity, run_dir, f"capacity {name}")
            if len(capacities) == 1:
                print(format_summary(data), end="")
            sweep.append(
                {
                    "capacity": capacity,
                    "dir": str(run_dir),
                    "hw_share_packets": data["hw_share"]["packets"],
                    "hw_share_bytes": data["hw_share"]["bytes"],
                    "peak_entries": max(data["tables"]["peak"].values(), default=0),
                    "punts": sum(data["punts"].values()),
                    "refused_no_space": data["refusals"].get("refused_no_space", 0),
                    "interrupted": data["run"]["interrupted"],
                }
            )
            if error is not None:
                print(f"p4ft simulate: {error} (partial report in {run_dir})", file=sys.stderr)
                return 1
            if data["run"]["interrupted"]:
                break
    except (
        ConfigError,
        RouteError,
        RulesetError,
        PcapError,
        SimulationError,
        HardwareError,
    ) as exc:
        print(f"p4ft simulate: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"p4ft simulate: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if len(capacities) > 1:
        _report_sweep(sweep, out, args.plot)
    interrupted = " (interrupted: partial report)" if sweep[-1]["interrupted"] else ""
    print(f"wrote {out}{interrupted}")
    return 0


def _report_sweep(rows: list[dict], out: Path, plot: bool) -> None:
    (out / "sweep.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(
        f"{'capacity':>10}  {'hw packets':>10}  {'hw bytes':>9}  {'peak':>7}  "
        f"{'punts':>9}  {'refused':>8}"
    )
    for r in rows:
        cap = "unlimited" if r["capacity"] is None else f"{r['capacity']:,}"
        print(
            f"{cap:>10}  {100 * r['hw_share_packets']:9.1f}%  {100 * r['hw_share_bytes']:8.1f}%"
            f"  {r['peak_entries']:>7,}  {r['punts']:>9,}  {r['refused_no_space']:>8,}"
        )
    limited = [r for r in rows if r["capacity"] is not None]
    if plot and len(limited) > 1:
        from controller.edges.simulate_plot import plot_sweep

        plot_sweep(limited, out / "sweep.png")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "simulate",
        help="replay pcaps through the router and a simulated switch on a virtual clock",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="router TOML")
    parser.add_argument(
        "--in",
        dest="inputs",
        action="append",
        required=True,
        metavar="PORT=PCAP",
        help="frames arriving on PORT, pcap or pcapng (repeat per port; ties in time keep "
        "this order)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "--hw", choices=("memory", "softswitch"), default="memory", help="the simulated hardware"
    )
    parser.add_argument(
        "--hw-latency",
        type=float,
        default=0.005,
        metavar="SECONDS",
        help="virtual time from an offload batch to its completion (default 0.005)",
    )
    parser.add_argument(
        "--hw-capacity",
        type=_capacities,
        default=None,
        metavar="N[,N...]",
        help="flow directions each hardware table (IPv4, IPv6) holds (default: unlimited); "
        "several: one run per capacity and a sweep",
    )
    parser.add_argument(
        "--ruleset-at",
        action="append",
        default=[],
        metavar="TIME=FILE",
        help="run FILE on the running ruleset TIME seconds after the first packet, like "
        "'p4ft ruleset apply' (repeatable)",
    )
    parser.add_argument(
        "--no-packets",
        action="store_true",
        help="no per-packet records (packets.jsonl, report.json): only the summary",
    )
    parser.add_argument("--no-pcaps", action="store_true", help="no output pcaps per port")
    parser.add_argument(
        "--plot", action="store_true", help="PNG figures beside summary.json (matplotlib)"
    )
    parser.set_defaults(func=_run)
