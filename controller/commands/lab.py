"""``p4ft lab --topo NAME --target softswitch|bmv2 [--cli]``: a Mininet lab with the controller.

Without ``--cli`` it runs a short scripted demo: a TCP conversation from the first host to the
second, the flow list printed right after the handshake and again once the flow is offloaded
to the switch ([HW_OFFLOAD]), then the counters that show which path carried the packets.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    from controller.lab.topology import topology_names

    parser = sub.add_parser("lab", help="run a Mininet lab (switch + controller + hosts)",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topo", default="router", metavar="NAME",
                        help=f"topology: {', '.join(topology_names())} or a file (router)")
    parser.add_argument("--target", choices=["softswitch", "bmv2"],
                        help="P4 target (default bmv2 if simple_switch_grpc is on PATH)")
    parser.add_argument("--cli", action="store_true", help="open the Mininet CLI")
    parser.add_argument("--table-size", type=int, metavar="N",
                        help="softswitch flow table size (to see a full table)")
    parser.add_argument("--workdir", metavar="DIR", help="keep config and logs in DIR")
    parser.set_defaults(func=run)


SERVER = ("import socket,sys\n"
          "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
          "s.bind(('0.0.0.0',5001)); s.listen(1); c,_=s.accept()\n"
          "while c.recv(65536): pass\n")
CLIENT = ("import socket,sys,time\n"
          "c=socket.create_connection((sys.argv[1],5001)); time.sleep(1)\n"
          "for i in range(40): c.sendall(b'x'*100); time.sleep(0.1)\n"
          "c.close()\n")


def _demo(lab) -> None:
    first, second = (p.host for p in lab.topology.ports[:2])
    target = lab.address(second)
    print(f"== {lab.topology.description.strip()}")
    print(f"== {first} opens a TCP connection to {second} ({target}) through the P4 switch")
    print("\n== before (p4ft flows):")
    print(lab.p4ft("flows"), end="")
    monitor = subprocess.Popen([sys.executable, "-m", "controller.cli", "monitor", "--control",
                                str(lab.control_path)], stdout=subprocess.PIPE, text=True)
    server = lab.host(second).popen([sys.executable, "-c", SERVER])
    time.sleep(0.5)
    client = lab.host(first).popen([sys.executable, "-c", CLIENT, target])
    time.sleep(4.5)
    print("\n== after the handshake and some data (p4ft flows):")
    print(lab.p4ft("flows"), end="")
    client.wait(15)
    server.wait(5)
    monitor.terminate()
    print("\n== what happened (p4ft monitor):")
    print(monitor.communicate()[0], end="")
    stats = lab.stats()
    print("\n== who carried the packets:")
    print(f"   punted to the controller: {sum(stats['punts'].values())} "
          f"(classic path {stats['paths']['classic']}, software fast path "
          f"{stats['paths']['sw_fastpath']})")
    print(f"   offload work: {stats['offload']}")
    print(f"   P4Runtime writes: driver {stats['driver']}")


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("p4ft lab: Mininet needs root", file=sys.stderr)
        return 1
    from controller.lab.lab import Lab
    from controller.pipeline_files import NoPipeline, pipeline_files

    try:
        pipeline_files()
        lab = Lab(args.topo, args.target, workdir=args.workdir, table_size=args.table_size)
    except (ValueError, RuntimeError, NoPipeline) as exc:
        print(f"p4ft lab: {exc}", file=sys.stderr)
        return 1
    print(f"p4ft lab: topology {args.topo} on {lab.target}; workdir {lab.workdir}",
          file=sys.stderr)
    try:
        with lab:
            if args.cli:
                from mininet.cli import CLI

                print(f"controller: p4ft flows --control {lab.control_path}")
                CLI(lab.net)
            else:
                _demo(lab)
    except RuntimeError as exc:
        print(f"p4ft lab: {exc}", file=sys.stderr)
        return 1
    return 0
