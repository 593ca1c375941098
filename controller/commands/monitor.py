"""``p4ft monitor [--json]``: the event stream, like ``conntrack -E``.

NEW, UPDATE, DESTROY from conntrack, UPDATE only where the kernel's conntrack sends one (the
IPS_OFFLOAD / IPS_HW_OFFLOAD bits flip without an event); OFFLOAD, HW_OFFLOAD, TEARDOWN and
DESTROY (hardware rules removed) from the flowtables. Runs until interrupted or until the
controller stops. ``-e TYPE`` (repeatable, like ``conntrack -E -e``) asks for those types only:
the controller then encodes and sends nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys

from controller.commands.flows import format_entry
from controller.edges.control import ControlError, add_client_arguments, stream

EVENT_TYPES = ("NEW", "UPDATE", "DESTROY", "OFFLOAD", "HW_OFFLOAD", "TEARDOWN")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("monitor", help="stream connection and offload events",
                            description=__doc__)
    add_client_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument("-e", "--event", action="append", choices=EVENT_TYPES, dest="events",
                        help="only events of this type (repeatable)")
    parser.set_defaults(func=run)


def format_event(event: dict) -> str:
    """One event as ``conntrack -E`` prints it: ``[TYPE] entry``."""
    return f"[{event.get('type', '?')}] {format_entry(event)}"


def run(args: argparse.Namespace) -> int:
    kwargs: dict[str, object] = {"switch": args.switch} if args.switch else {}
    if args.events:
        kwargs["types"] = args.events
    try:
        for event in stream("monitor", args.control, **kwargs):
            print(json.dumps(event) if args.json else format_event(event), flush=True)
    except ControlError as exc:
        print(f"p4ft monitor: {exc}", file=sys.stderr)
        return 1
    return 0
