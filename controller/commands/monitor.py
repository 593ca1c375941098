"""``p4ft monitor [--json]``: the event stream, like ``conntrack -E``.

NEW, UPDATE, DESTROY from conntrack; OFFLOAD, HW_OFFLOAD, TEARDOWN from the flowtables. Runs
until interrupted or until the controller stops.
"""

from __future__ import annotations

import argparse
import json
import sys

from controller.commands.flows import format_entry
from controller.control import ControlError, add_client_arguments, stream


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("monitor", help="stream connection and offload events",
                            description=__doc__)
    add_client_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.set_defaults(func=run)


def format_event(event: dict) -> str:
    """One event as ``conntrack -E`` prints it: ``[TYPE] entry``."""
    return f"[{event.get('type', '?')}] {format_entry(event)}"


def run(args: argparse.Namespace) -> int:
    kwargs = {"switch": args.switch} if args.switch else {}
    try:
        for event in stream("monitor", args.control, **kwargs):
            print(json.dumps(event) if args.json else format_event(event), flush=True)
    except ControlError as exc:
        print(f"p4ft monitor: {exc}", file=sys.stderr)
        return 1
    return 0
