"""Hit path vs slow path on the same target, and offload latency (needs root: a Mininet lab).

    sudo .venv/bin/python bench/bench_paths.py [--target softswitch|bmv2] [--seconds 3]

* hit path: a UDP flow offloaded to the switch; h1 sends as fast as it can for N seconds and h2
  counts what arrives (packets/s delivered).
* slow path: the same on a port the forward chain accepts before ``flow add``, so every packet
  is punted and forwarded by the controller's classic path.
* offload latency: for fresh UDP flows, the time from the OFFLOAD event (the eligible packet
  handled) to HW_OFFLOAD (both entries installed), both seen on one ``p4ft monitor`` stream.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.labtraffic import RULESET, SLOW_PORT, pps
from controller.edges import control
from controller.lab import Lab, load_topology

HIT_PORT, LATENCY_PORT = 6001, 6003

ECHO = """import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("",int(sys.argv[1])))
while True:
    d,a=s.recvfrom(2048); s.sendto(d,a)
"""

PING = """import socket,sys,time
for i in range(int(sys.argv[3])):  # a fresh flow each: request, reply, a third packet
    c=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); c.settimeout(1)
    for _ in range(2):
        c.sendto(b"p",(sys.argv[1],int(sys.argv[2]))); c.recv(64)
    time.sleep(0.2); c.close()
"""


def offload_latencies(lab: Lab, flows: int) -> list[float]:
    seen: dict[tuple, dict[str, float]] = {}

    events = control.stream("monitor", lab.control_path)  # subscribed once it returns

    def watch() -> None:
        for event in events:
            kind = event.get("type")
            if kind in ("OFFLOAD", "HW_OFFLOAD") and event["original"].get("dport") == LATENCY_PORT:
                key = (event["original"]["sport"],)
                seen.setdefault(key, {})[kind] = time.monotonic()

    threading.Thread(target=watch, daemon=True).start()
    echo = lab.host("h2").popen([sys.executable, "-c", ECHO, str(LATENCY_PORT)])
    time.sleep(0.5)
    lab.host("h1").popen([sys.executable, "-c", PING, lab.address("h2"), str(LATENCY_PORT),
                          str(flows)]).wait()
    time.sleep(1.0)
    echo.kill()
    return [t["HW_OFFLOAD"] - t["OFFLOAD"] for t in seen.values()
            if "OFFLOAD" in t and "HW_OFFLOAD" in t]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=["softswitch", "bmv2"], default=None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--flows", type=int, default=30)
    args = parser.parse_args()
    with Lab(load_topology("router"), args.target, grpc_port=9601, ruleset=RULESET) as lab:
        hit, hit_sent, hit_recv, _ = pps(lab, HIT_PORT, args.seconds)
        slow, slow_sent, slow_recv, _ = pps(lab, SLOW_PORT, args.seconds)
        latencies = offload_latencies(lab, args.flows)
    print(f"target: {lab.target}")
    print(f"hit path:  {hit:10.0f} pkt/s delivered ({hit_recv}/{hit_sent} packets arrived)")
    print(f"slow path: {slow:10.0f} pkt/s delivered ({slow_recv}/{slow_sent} packets arrived)")
    print(f"hit/slow ratio: {hit / slow:.2f}" if slow else "hit/slow ratio: n/a")
    if len(latencies) >= 2:
        q = statistics.quantiles(latencies, n=100)
        print(f"offload latency over {len(latencies)} flows: p50 {q[49] * 1e3:.1f} ms, "
              f"p99 {q[98] * 1e3:.1f} ms")
    else:
        print(f"offload latency: only {len(latencies)} flows measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
