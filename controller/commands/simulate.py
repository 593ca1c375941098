"""``p4ft simulate``: replay pcaps through the router and its hardware on a virtual clock.

``p4ft simulate --config router.toml --in 1=h1.pcap --in 2=h2.pcap --out DIR``
``[--hw memory|softswitch] [--ruleset-at TIME=FILE]`` writes ``DIR/<port>.pcap`` per port that
sent something and ``DIR/report.json``; ``--ruleset-at`` runs FILE on the running ruleset TIME
seconds after the first packet, as ``p4ft ruleset apply`` would. Bad pcaps, configuration or
rulesets print one clear line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from controller.config import ConfigError, load_config
    from controller.edges.pcap import PcapError
    from controller.edges.simulate import (
        Simulation,
        SimulationError,
        load_changes,
        load_inputs,
        parse_inputs,
    )
    from controller.edges.simulate_hw import HardwareError
    from controller.ip.routing import RouteError
    from controller.netfilter.ruleset import RulesetError

    try:
        config = load_config(args.config)
        inputs = load_inputs(parse_inputs(args.inputs))
        changes = load_changes(args.ruleset_at)
        sim = Simulation(config, latency=args.hw_latency, capacity=args.hw_capacity, hw=args.hw)
        result = sim.run(inputs, changes)
        result.write(Path(args.out))
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
    paths: dict[str, int] = {}
    for entry in result.report:
        paths[str(entry["path"])] = paths.get(str(entry["path"]), 0) + 1
    summary = ", ".join(f"{n} {p}" for p, n in sorted(paths.items()))
    print(f"{len(result.report)} packets ({summary or 'none'}); wrote {args.out}")
    return 0


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
        help="frames arriving on PORT (repeat per port; ties in time keep this order)",
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
        type=int,
        default=None,
        metavar="N",
        help="flow directions each hardware table (IPv4, IPv6) holds (default: unlimited)",
    )
    parser.add_argument(
        "--ruleset-at",
        action="append",
        default=[],
        metavar="TIME=FILE",
        help="run FILE on the running ruleset TIME seconds after the first packet, like "
        "'p4ft ruleset apply' (repeatable)",
    )
    parser.set_defaults(func=_run)
