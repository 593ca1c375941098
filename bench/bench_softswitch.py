"""Hit-path packets/s of the softswitch interpreter, specialised (codegen.py) against the generic
closure path in one run: an exact-match forward-and-rewrite program (IPv4 dst exact → set port +
MACs, TTL - 1, IPv4 and UDP-with-payload checksums updated) and flowtable.p4's compiled JSON (TCP
hits on FtIngress.flow_v4: NAT + TTL + checksums). Rounds alternate between the two pipelines and
each keeps its best round, timed in process CPU time, so machine load shifts both alike.

Run: .venv/bin/python bench/bench_softswitch.py [N] [--rounds R] [--dump]
(--dump prints the generated source of flowtable.json's pipeline)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from controller.edges.pipeline_files import DEVICE_CONFIG
from softswitch.pipeline import Pipeline
from tests.softswitch.p4json import router_program

Workload = tuple[Pipeline, list[bytes]]


def router(specialise: bool, l4: str) -> Workload:
    pipe = Pipeline.from_json(router_program(), specialise=specialise)
    table = pipe.tables["ingress.fwd"]
    for i in range(1000):
        params = (1 + i % 8, 0x02 << 40 | i, 0x0200000000FE)
        table.insert((0x0A000000 + i,), 0, "ingress.forward", params)
    layer = {"udp": UDP(sport=1, dport=2), "tcp": TCP(sport=1, dport=2)}[l4]
    frames = [bytes(Ether() / IP(src="10.1.0.1", dst=f"10.0.{i >> 8}.{i & 255}") / layer
                    / (b"x" * 64)) for i in range(0, 1000, 7)]
    return pipe, frames


def router_miss(specialise: bool) -> Workload:
    pipe, _ = router(specialise, "udp")
    return pipe, [bytes(Ether() / IP(dst="192.168.0.1") / UDP() / b"x")]


def flowtable(specialise: bool) -> Workload:
    pipe = Pipeline.from_json(json.loads(DEVICE_CONFIG.read_text()), specialise=specialise)
    table = pipe.tables["FtIngress.flow_v4"]
    frames = []
    for i in range(200):
        src, sport = 0x0A000100 + i, 40000 + i
        table.insert((1, src, 0x0A000202, 6, sport, 80), 0, "FtIngress.forward_v4",
                     (2, 0x2FE, 0x202, 0xC0000201, 0x0A000202, 50000 + i, 80, 1500))
        frames.append(bytes(Ether() / IP(src=f"10.0.1.{i}", dst="10.0.2.2", ttl=64)
                            / TCP(sport=sport, dport=80, flags="A") / (b"x" * 64)))
    return pipe, frames


def timed(work: Workload, n: int) -> float:
    """CPU seconds of this process for ``n`` packets: other work on a shared machine moves
    wall time far more than it moves this."""
    pipe, frames = work
    count = len(frames)
    start = time.process_time()
    for i in range(n):
        pipe.process(1, frames[i % count])
    return time.process_time() - start


def compare(name: str, make: Callable[[bool], Workload], n: int, rounds: int) -> None:
    fast, generic = make(True), make(False)
    assert [fast[0].process(1, f) for f in fast[1]] == [generic[0].process(1, f)
                                                        for f in generic[1]]
    t_fast = t_generic = float("inf")
    for _ in range(rounds):
        t_generic = min(t_generic, timed(generic, n))
        t_fast = min(t_fast, timed(fast, n))
    print(f"{name:<34} specialised {n / t_fast:>9,.0f} pkt/s {t_fast / n * 1e6:6.1f} µs | "
          f"generic {n / t_generic:>9,.0f} pkt/s {t_generic / n * 1e6:6.1f} µs | "
          f"ratio {t_generic / t_fast:4.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=20_000, help="packets per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dump", action="store_true", help="print flowtable.json's generated code")
    args = ap.parse_args()
    if args.dump:
        gen = flowtable(True)[0].generated
        print(gen.dump() if gen else "")
        return
    compare("router udp hit", lambda sp: router(sp, "udp"), args.n, args.rounds)
    compare("router tcp hit", lambda sp: router(sp, "tcp"), args.n, args.rounds)
    compare("router miss", router_miss, args.n, args.rounds)
    compare("flowtable.json v4 TCP hit (NAT)", flowtable, args.n, args.rounds)


if __name__ == "__main__":
    main()
