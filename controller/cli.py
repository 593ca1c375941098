"""``p4ft``: the one command-line entry point.

Each subcommand lives in ``controller.commands.<name>`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Imports stay lazy so that ``p4ft --help``
is fast and a subcommand's dependencies load only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: tuple[str, ...] = (
    "ruleset", "softswitch", "stf", "shell",
    "controller", "flows", "flowtables", "stats", "monitor", "lab",
    "simulate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p4ft",
        description="A P4 switch as the hardware of the Linux netfilter flowtable.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"controller.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
