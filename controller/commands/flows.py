"""``p4ft flows [--json]``: the running controller's connections, like ``conntrack -L``.

One line per connection: protocol, seconds to expiry, TCP state, the original tuple with its
packets/bytes (software + hardware: the kernel's accounting adds hardware STATS), UNREPLIED,
the reply tuple, then ``[HW_OFFLOAD]`` / ``[OFFLOAD]`` / ``[ASSURED]``, and for offloaded
connections the flowtable, the software fast path's share (``sw=PACKETS/BYTES``), how many
directions the hardware holds and, where a direction arrives encapsulated, its tags / PPPoE
session as the flow key holds them (``encap=vlan:10,pppoe:0x1234``: original, reply).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from controller.edges.control import add_client_arguments, cli_request

_TUPLE_KEYS = ("src", "dst", "sport", "dport", "type", "code", "id", "packets", "bytes")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("flows", help="list connections like conntrack -L",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_client_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the entries as JSON")
    parser.set_defaults(func=run)


def format_entry(info: Mapping[str, Any]) -> str:
    """A conntrack -L style line from a snapshot entry or a monitor event."""
    words = [f"{info.get('proto', '?'):<8} {info.get('protonum', '')}".rstrip()]
    expires = info.get("expires_in", info.get("timeout"))
    if expires is not None:
        words.append(str(int(expires)))
    if info.get("state"):
        words.append(str(info["state"]))
    words += _tuple_words(info.get("original", {}))
    status = info.get("status", [])
    if "SEEN_REPLY" not in status and "status" in info:
        words.append("[UNREPLIED]")
    words += _tuple_words(info.get("reply", {}))
    offload = info.get("offload")
    if offload:
        words.append(f"[{offload}]")
    elif "ASSURED" in status:
        words.append("[ASSURED]")
    if info.get("flowtable"):
        words.append(f"flowtable={info['flowtable']}")
        words.append(f"sw={info.get('sw_packets', 0)}/{info.get('sw_bytes', 0)}")
        words.append(f"hw_dirs={info.get('hw_directions', 0)}")
        encap = info.get("encap") or []
        if any(encap):
            words.append("encap=" + ",".join(e or "-" for e in encap))
    if "mark" in info:
        words.append(f"mark={info['mark']}")
    return " ".join(words)


def _tuple_words(fields: Mapping[str, Any]) -> list[str]:
    return [f"{k}={fields[k]}" for k in _TUPLE_KEYS if k in fields]


def run(args: argparse.Namespace) -> int:
    snapshots = cli_request(args, "snapshot")
    if args.json:
        entries = [{"switch": name, **conn} for name, snap in snapshots.items()
                   for conn in snap.get("conns", [])]
        print(json.dumps(entries, indent=2))
        return 0
    total = 0
    for name, snap in snapshots.items():
        conns = snap.get("conns", [])
        if len(snapshots) > 1:
            print(f"# switch {name}")
        for conn in conns:
            print(format_entry(conn))
        total += len(conns)
    print(f"p4ft flows: {total} flow entries have been shown.")
    return 0
