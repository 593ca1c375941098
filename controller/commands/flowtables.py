"""``p4ft flowtables [--json]``: the flowtables of the running controller and their flows."""

from __future__ import annotations

import argparse
import json

from controller.edges.control import add_client_arguments, cli_request


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("flowtables", help="list flowtables", description=__doc__)
    add_client_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    snapshots = cli_request(args, "snapshot")
    tables = [{"switch": name, **ft} for name, snap in snapshots.items()
              for ft in snap.get("flowtables", [])]
    if args.json:
        print(json.dumps(tables, indent=2))
        return 0
    for ft in tables:
        prefix = f"{ft['switch']}: " if len(snapshots) > 1 else ""
        flags = f" flags {', '.join(ft['flags'])};" if ft.get("flags") else ""
        print(f"{prefix}table {ft['family']} {ft['table']} flowtable {ft['name']} "
              f"devices = {{ {', '.join(ft['devices'])} }};{flags} flows {ft['flows']}")
        for key, value in sorted(ft.get("counters", {}).items()):
            print(f"    {key} {value}")
    return 0
