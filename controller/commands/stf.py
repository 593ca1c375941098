"""``p4ft stf --json PROG.json --stf PROG.stf``: run one p4c STF packet test on the softswitch.

Exit 0 when every expectation holds, 1 with a readable diff otherwise, 2 when the program or the
STF file cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("stf", help="run a p4c STF packet test on the softswitch")
    parser.add_argument("--json", required=True, metavar="PROG.json", help="p4c-bm2-ss output")
    parser.add_argument("--stf", required=True, metavar="PROG.stf", help="STF test script")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from softswitch.pipeline import Pipeline, PipelineError
    from softswitch.stf import StfError, StfRunner

    try:
        with open(args.json, encoding="utf-8") as f:
            doc = json.load(f)
        with open(args.stf, encoding="utf-8") as f:
            lines = f.read().splitlines()
        result = StfRunner(Pipeline.from_json(doc), args.stf).run(lines)
    except (OSError, json.JSONDecodeError, PipelineError, StfError) as exc:
        print(f"p4ft stf: {exc}", file=sys.stderr)
        return 2
    print(result.report())
    return 0 if result.ok else 1
