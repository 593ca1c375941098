"""The scripted demo of ``p4ft lab``: the topology's own demo connections (``TOPOLOGY.demo`` in
mininet/<topo>.py), each followed from the classic path to [HW_OFFLOAD], with the flow list
before and after (both tuples: the reply shows any translation), the event stream and who
carried the packets."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from controller.commands.monitor import format_event
from controller.edges import control
from controller.lab.topology import DemoConnection, LabTopology

SERVER = ("import socket,sys\n"
          "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
          "s.bind(('0.0.0.0',int(sys.argv[1]))); s.listen(1); print('READY',flush=True)\n"
          "c,_=s.accept()\n"
          "while c.recv(65536): pass\n")
CLIENT = ("import socket,sys,time\n"
          "c=socket.create_connection((sys.argv[1],int(sys.argv[2]))); time.sleep(1)\n"
          "for i in range(40): c.sendall(b'x'*100); time.sleep(0.1)\n"
          "c.close()\n")
OFFLOAD_TIMEOUT = 30.0


def connections(topology: LabTopology) -> tuple[DemoConnection, ...]:
    """The topology's demo; without one, the first host connects to the second."""
    if topology.demo:
        return topology.demo
    first, second = (port.host for port in topology.ports[:2])
    return (DemoConnection(f"{first} opens a TCP connection to {second} "
                           f"({topology.address(second)}) through the P4 switch",
                           first, second, 5001),)


def offloaded(conns: Iterable[Mapping[str, Any]], topology: LabTopology,
              connection: DemoConnection) -> bool:
    """Whether the controller lists ``connection`` as [HW_OFFLOAD] (matched on its original
    tuple: the client's address and the port it dialled)."""
    src, (_, dport) = topology.address(connection.client), topology.dial(connection)
    return any(c["original"].get("src") == src and c["original"].get("dport") == dport
               and c["offload"] == "HW_OFFLOAD" for c in conns)


def run_demo(lab) -> None:
    topology = lab.topology
    demo = connections(topology)
    print(f"== {topology.description.strip()}")
    for connection in demo:
        print(f"== {connection.title}")
    print("\n== before (p4ft flows):")
    print(lab.p4ft("flows"), end="")
    events: list[str] = []
    monitor = control.stream("monitor", lab.control_path)  # subscribed once it returns
    threading.Thread(target=lambda: events.extend(map(format_event, monitor)),
                     daemon=True).start()
    running = [_start(lab, connection) for connection in demo]
    if not _wait(lambda: all(offloaded(lab.flows(), topology, c) for c in demo)):
        print(f"\n== (not every connection reached [HW_OFFLOAD] in {OFFLOAD_TIMEOUT:.0f} s)")
    print("\n== after the handshake and some data (p4ft flows):")
    print(lab.p4ft("flows"), end="")
    for server, client in running:
        client.wait(30)
        server.wait(10)
    print("\n== what happened (p4ft monitor):")
    print("".join(f"{line}\n" for line in list(events)), end="")
    stats = lab.stats()
    print("\n== who carried the packets:")
    if topology.netns is not None:  # kernel mode: the kernel's own forward chain counts
        print(f"   punted to the kernel in {topology.netns}: {sum(stats['punts'].values())}")
        print(lab.router_cmd("nft", "list", "chain", "inet", "filter", "forward"), end="")
    else:
        print(f"   punted to the controller: {sum(stats['punts'].values())} "
              f"(classic path {stats['paths']['classic']}, software fast path "
              f"{stats['paths']['sw_fastpath']})")
    print(f"   offload work: {stats['offload']}")
    print(f"   P4Runtime writes: driver {stats['driver']}")


def _start(lab, connection: DemoConnection) -> tuple[subprocess.Popen, subprocess.Popen]:
    """The server, listening, then its client."""
    server = lab.host(connection.server).popen([sys.executable, "-c", SERVER,
                                                str(connection.port)], text=True)
    if server.stdout.readline().strip() != "READY":
        raise RuntimeError(f"demo server on {connection.server} did not start: "
                           f"{server.stderr.read()}")
    address, port = lab.topology.dial(connection)
    client = lab.host(connection.client).popen([sys.executable, "-c", CLIENT, address,
                                                str(port)])
    return server, client


def _wait(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + OFFLOAD_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
