"""``p4ft lab --topo NAME --target softswitch|bmv2 [--cli]``: a Mininet lab with the controller.

Without ``--cli`` it runs the topology's scripted demo (``TOPOLOGY.demo`` in mininet/<topo>.py:
the connections that show what the topology is for): the flow list before, and again once every
connection is offloaded to the switch ([HW_OFFLOAD]), the event stream, then the counters that
show which path carried the packets.
"""

from __future__ import annotations

import argparse
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from controller.lab.topology import topology_names

    parser = sub.add_parser("lab", help="run a Mininet lab (switch + controller + hosts)",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topo", default="router", metavar="NAME",
                        help=f"topology: {', '.join(topology_names())} or a file (router)")
    parser.add_argument("--target", choices=["softswitch", "bmv2"],
                        help="P4 target (default bmv2 if simple_switch_grpc is on PATH)")
    parser.add_argument("--channel", choices=["netdev", "p4runtime"], default="netdev",
                        help="punt channel: the CPU port as a veth the controller reads "
                             "(netdev, the default) or the P4Runtime stream")
    parser.add_argument("--cli", action="store_true", help="open the Mininet CLI")
    parser.add_argument("--table-size", type=int, metavar="N",
                        help="softswitch flow table size (to see a full table)")
    parser.add_argument("--workdir", metavar="DIR", help="keep config and logs in DIR")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("p4ft lab: Mininet needs root", file=sys.stderr)
        return 1
    from controller.edges.pipeline_files import NoPipeline, pipeline_files
    from controller.lab.demo import run_demo
    from controller.lab.lab import Lab

    try:
        pipeline_files()  # the controller pushes it: refuse before Mininet starts
        lab = Lab(args.topo, args.target, workdir=args.workdir, table_size=args.table_size,
                  channel=args.channel)
    except (ValueError, RuntimeError, NoPipeline) as exc:
        print(f"p4ft lab: {exc}", file=sys.stderr)
        return 1
    print(f"p4ft lab: topology {args.topo} on {lab.target}, {lab.channel} punt channel; "
          f"workdir {lab.workdir}",
          file=sys.stderr)
    try:
        with lab:
            if args.cli:
                from mininet.cli import CLI

                print(f"controller: p4ft flows --control {lab.control_path}")
                CLI(lab.net)
            else:
                run_demo(lab)
    except RuntimeError as exc:
        print(f"p4ft lab: {exc}", file=sys.stderr)
        return 1
    return 0
