"""``p4ft ruleset``: work with nft rulesets.

``p4ft ruleset check FILE`` behaves like ``nft -c -f FILE``: it prints the normalized ruleset and
exits 0, or prints ``FILE:LINE:COL: message`` on stderr and exits 1. Each action is one
``ruleset <action>`` subparser registered in ``_ACTIONS``; actions that talk to a running
controller (list, apply) join there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def _check(args: argparse.Namespace) -> int:
    from controller.ruleset import RulesetError, load_file

    try:
        ruleset = load_file(args.file)
    except RulesetError as e:
        print(e, file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as e:
        print(f"{args.file}: cannot read: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(ruleset.to_json(), indent=2))
    else:
        sys.stdout.write(ruleset.format())
    return 0


def _register_check(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "check", help="validate a ruleset file like 'nft -c -f' and print it normalized"
    )
    parser.add_argument("file", metavar="FILE", help="nft syntax or 'nft -j' JSON")
    parser.add_argument("--json", action="store_true", help="print as 'nft -j' JSON")
    parser.set_defaults(func=_check)


_ACTIONS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_register_check,)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ruleset", help="check or show an nft ruleset")
    actions = parser.add_subparsers(dest="ruleset_action", required=True)
    for add_action in _ACTIONS:
        add_action(actions)
