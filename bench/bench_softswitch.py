"""Hit-path packets/s of the softswitch interpreter on an exact-match forward-and-rewrite program
(IPv4 dst exact → set port + MACs, TTL - 1, IPv4 and UDP-with-payload checksums updated).

Run: .venv/bin/python bench/bench_softswitch.py [N]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from controller.edges.pipeline_files import DEVICE_CONFIG
from softswitch.pipeline import Pipeline
from tests.softswitch.p4json import router_program


def main(n: int = 50_000) -> None:
    pipe = Pipeline.from_json(router_program())
    table = pipe.tables["ingress.fwd"]
    for i in range(1000):
        params = (1 + i % 8, 0x02 << 40 | i, 0x0200000000FE)
        table.insert((0x0A000000 + i,), 0, "ingress.forward", params)
    for name, l4 in (("udp", UDP(sport=1, dport=2)), ("tcp", TCP(sport=1, dport=2))):
        frames = [bytes(Ether() / IP(src="10.1.0.1", dst=f"10.0.{i >> 8}.{i & 255}") / l4
                        / (b"x" * 64)) for i in range(0, 1000, 7)]
        start = time.perf_counter()
        for i in range(n):
            pipe.process(1, frames[i % len(frames)])
        elapsed = time.perf_counter() - start
        print(f"{name} hit path: {n / elapsed:,.0f} packets/s ({n} packets, {elapsed:.2f} s)")
    miss = bytes(Ether() / IP(dst="192.168.0.1") / UDP() / b"x")
    start = time.perf_counter()
    for _ in range(n):
        pipe.process(1, miss)
    print(f"miss path: {n / (time.perf_counter() - start):,.0f} packets/s")


def flowtable(n: int) -> None:
    """The same measure on flowtable.p4's compiled JSON (TCP hits on FtIngress.flow_v4)."""
    pipe = Pipeline.from_json(json.loads(DEVICE_CONFIG.read_text()))
    table = pipe.tables["FtIngress.flow_v4"]
    frames = []
    for i in range(200):
        src, sport = 0x0A000100 + i, 40000 + i
        table.insert((1, src, 0x0A000202, 6, sport, 80), 0, "FtIngress.forward_v4",
                     (2, 0x2FE, 0x202, 0xC0000201, 0x0A000202, 50000 + i, 80, 1500))
        frames.append(bytes(Ether() / IP(src=f"10.0.1.{i}", dst="10.0.2.2", ttl=64)
                            / TCP(sport=sport, dport=80, flags="A") / (b"x" * 64)))
    start = time.perf_counter()
    hits = sum(pipe.process(1, frames[i % len(frames)])[0][0] == 2 for i in range(n))
    elapsed = time.perf_counter() - start
    print(f"flowtable.json v4 TCP hit path (NAT + TTL + checksums): {n / elapsed:,.0f} "
          f"packets/s ({hits}/{n} forwarded to port 2)")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    main(count)
    flowtable(count)
