"""Acceptance against nftables' own rule-level tests (``tests/py/{ip,ip6,inet}/*.t``).

Usage: ``python bench/nft_suite.py DIR [-v]`` where DIR holds a fetched copy of those files
(``DIR/ip/*.t``, ``DIR/ip6/*.t``, ``DIR/inet/*.t``; nftables' sources are not part of this
repository). Each rule line runs as ``add rule`` on a ruleset with the file's tables, chains
and sets, like nft-test.py does; a line counts as accepted when every table of the file takes
it. Prints accepted/ok lines, false accepts (lines marked ``;fail`` we take), crashes, and
whether each accepted ruleset reads back the same from its nft-syntax and JSON listings.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.netfilter.ruleset import Ruleset, RulesetError, loads

FAMILIES = ("ip", "ip6", "inet")


def run_file(path: Path, verbose: bool) -> collections.Counter:
    stats: collections.Counter = collections.Counter()
    chains: dict[str, str] = {}
    tables: list[tuple[str, str, list[str]]] = []
    base = Ruleset()
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "-")):
            continue
        if line.startswith(":"):
            name, _, spec = line[1:].partition(";")
            chains[name] = spec
            continue
        if line.startswith("*"):
            family, table, names = [*line[1:].split(";"), "", ""][:3]
            if family in FAMILIES:
                tables.append((family, table, [n for n in names.split(",") if n]))
                script = [f"add table {family} {table}"]
                for chain in tables[-1][2]:
                    script.append(f"add chain {family} {table} {chain} {{ {chains[chain]}; }}")
                try:
                    base = base.apply("\n".join(script))
                except RulesetError as e:
                    print(f"{path}: cannot set up {family} {table}: {e}", file=sys.stderr)
            continue
        marker = re.search(r";(ok|fail)(;|$)", line)
        if marker is None:
            continue
        text, expect = line[: marker.start()].replace("\\", ""), marker.group(1)
        if not tables:
            continue
        if line.startswith(("!", "?", "%")):
            kind, rest = line[0], text[1:]
            name, _, body = rest.partition(" ")
            for family, table, _ in tables:
                if kind == "%":  # %name type counter | quota Q | limit L | ct helper { .. }
                    obj = body.removeprefix("type ").strip()
                    words = obj.split(" ", 2 if obj.startswith("ct ") else 1)
                    what = " ".join(words[:2]) if obj.startswith("ct ") else words[0]
                    args = words[-1] if len(words) > (2 if obj.startswith("ct ") else 1) else ""
                    args = args.strip()
                    args = args if args.startswith("{") or not args else f"{{ {args} }}"
                    cmd = f"add {what} {family} {table} {name} {args}"
                elif kind == "!":  # "type T flags F timeout T": one item per separator
                    body = re.sub(r" (flags|timeout|size|policy) ", r"; \1 ", body)
                    cmd = f"add set {family} {table} {name} {{ {body}; }}"
                else:
                    cmd = f"add element {family} {table} {name} {{ {body} }}"
                try:
                    base = base.apply(cmd)
                except RulesetError:
                    pass
                except Exception as e:  # a crash is what we count
                    stats["crash"] += 1
                    print(f"CRASH {path}: {cmd}: {e!r}", file=sys.stderr)
            continue
        accepted, error = True, ""
        for family, table, names in tables:
            for chain in names:
                try:
                    rs = base.apply(f"add rule {family} {table} {chain} {text}")
                    round_trip(rs, stats, f"{path.parent.name}/{path.name}: {text}")
                except RulesetError as e:
                    accepted, error = False, str(e)
                except Exception as e:
                    accepted, error = False, f"CRASH {e!r}"
                    stats["crash"] += 1
        stats[f"{expect}_total"] += 1
        stats[f"{expect}_accepted"] += accepted
        if verbose and expect == "ok" and not accepted:
            print(f"refused {path.parent.name}/{path.name}: {text}  -- {error}")
        if expect == "fail" and accepted:
            print(f"FALSE ACCEPT {path.parent.name}/{path.name}: {text}")
    return stats


def round_trip(rs: Ruleset, stats: collections.Counter, where: str) -> None:
    """The ruleset must read back the same from its nft-syntax and JSON listings."""
    stats["round_trips"] += 1
    try:
        same = loads(rs.format()) == rs and loads(json.dumps(rs.to_json())) == rs
    except RulesetError as e:
        same, where = False, f"{where} ({e})"
    if not same:
        stats["round_trip_mismatch"] += 1
        print(f"ROUND TRIP {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    total: collections.Counter = collections.Counter()
    for family in FAMILIES:
        for path in sorted((args.dir / family).glob("*.t")):
            total.update(run_file(path, args.verbose))
    ok, acc = total["ok_total"], total["ok_accepted"]
    print(f"accepted {acc} of {ok} ok lines ({100 * acc / max(ok, 1):.1f} %); "
          f"false accepts {total['fail_accepted']} of {total['fail_total']} fail lines; "
          f"crashes {total['crash']}; {total['round_trip_mismatch']} of {total['round_trips']} "
          "accepted rulesets differ after 'nft list'/'nft -j' output is read back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
