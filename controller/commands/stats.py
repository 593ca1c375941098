"""``p4ft stats [--json]``: counters of the running controller.

Punts by reason, classic-path packets, software fast-path hits, offload work queued / done /
failed, hardware entries, table capacity, drops by reason, the driver's counters.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from controller.edges.control import add_client_arguments, cli_request


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("stats", help="show controller counters", description=__doc__)
    add_client_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.set_defaults(func=run)


def _lines(node: Mapping[str, Any], indent: str = "") -> list[str]:
    out = []
    for key, value in node.items():
        if isinstance(value, Mapping):
            if value:
                out.append(f"{indent}{key}:")
                out += _lines(value, indent + "  ")
        else:
            out.append(f"{indent}{key}: {value}")
    return out


def run(args: argparse.Namespace) -> int:
    snapshots = cli_request(args, "snapshot")
    stats = {name: snap.get("stats", {}) for name, snap in snapshots.items()}
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    for name, switch_stats in stats.items():
        print(f"switch {name}")
        print("\n".join(_lines(switch_stats, "  ")))
    return 0
