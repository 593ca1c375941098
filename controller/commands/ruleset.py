"""``p4ft ruleset``: work with nft rulesets.

``p4ft ruleset check FILE`` behaves like ``nft -c -f FILE``: it prints the normalized ruleset and
exits 0, or prints ``FILE:LINE:COL: message`` on stderr and exits 1; with ``--config ROUTER.toml``
a flowtable device that is not a port of that switch is an error too, as nft refuses a missing
device. Each action is one
``ruleset <action>`` subparser registered in ``_ACTIONS``. ``ruleset list`` prints the running
controller's ruleset; ``ruleset apply FILE`` runs FILE on it as one transaction like ``nft -f``
(all or nothing; deleting a flowtable that a rule uses is refused).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def _check(args: argparse.Namespace) -> int:
    from controller.config import ConfigError, load_config
    from controller.netfilter.ruleset import RulesetError, load_file

    devices = None
    if args.config is not None:
        try:
            devices = {p.name for p in load_config(args.config).devices}
        except ConfigError as e:
            print(e, file=sys.stderr)
            return 1
    try:
        ruleset = load_file(args.file, devices)
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
    parser.add_argument(
        "--config",
        metavar="ROUTER.toml",
        help="also check that every flowtable device is a port of this switch",
    )
    parser.set_defaults(func=_check)


def _list(args: argparse.Namespace) -> int:
    from controller.edges.control import cli_request

    rulesets = cli_request(args, "ruleset")
    for name, text in rulesets.items():
        if len(rulesets) > 1:
            print(f"# switch {name}")
        sys.stdout.write(text)
    return 0


def _register_list(actions: argparse._SubParsersAction) -> None:
    from controller.edges.control import add_client_arguments

    parser = actions.add_parser("list", help="print the running controller's ruleset")
    add_client_arguments(parser)
    parser.set_defaults(func=_list)


def _apply(args: argparse.Namespace) -> int:
    """Like ``nft -f FILE``: the file runs as one transaction on the running ruleset."""
    from controller.edges.control import cli_request

    try:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print(f"{args.file}: cannot read: {e}", file=sys.stderr)
        return 1
    rulesets = cli_request(args, "ruleset_apply", text=text, filename=args.file)
    if args.verbose:
        for text in rulesets.values():
            sys.stdout.write(text)
    return 0


def _register_apply(actions: argparse._SubParsersAction) -> None:
    from controller.edges.control import add_client_arguments

    parser = actions.add_parser(
        "apply", help="run FILE on the running controller's ruleset atomically, like 'nft -f'"
    )
    parser.add_argument("file", metavar="FILE", help="nft syntax or 'nft -j' JSON")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the resulting ruleset")
    add_client_arguments(parser)
    parser.set_defaults(func=_apply)


_ACTIONS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _register_check,
    _register_list,
    _register_apply,
)


def register(sub: argparse._SubParsersAction) -> None:
    from controller.edges.control import add_client_arguments

    parser = sub.add_parser(
        "ruleset", help="list (the default), check or apply an nft ruleset"
    )
    # Bare ``p4ft ruleset`` lists the running ruleset, as ``nft list ruleset`` does.
    add_client_arguments(parser)
    parser.set_defaults(func=_list)
    actions = parser.add_subparsers(dest="ruleset_action", metavar="ACTION")
    for add_action in _ACTIONS:
        add_action(actions)
