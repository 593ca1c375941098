"""``p4ft ruleset``: inspect and check nft rulesets (placeholder until the ruleset lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ruleset", help="check or show an nft ruleset")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
