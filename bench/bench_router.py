"""Per-punt controller CPU in process (not a test): TCP connections through Router.receive.

    .venv/bin/python bench/bench_router.py [N] [--profile]

Each connection is what the lab's bench_cps punts: SYN, SYN-ACK and the ACK that admits the
flow (classic path), then a first data segment the software flowtable forwards while the
hardware entries are on their way; the offload queue is drained into the memory driver after
each connection, as the daemon's offload task does; one monitor listens for HW_OFFLOAD, as
bench_cps's does. Prints µs of CPU per connection and per
punt (a lower bound of the controller's share of bench_cps, without the channel).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.labtraffic import RULESET
from controller.router import Router
from ndo.memory import MemoryDriver
from tests.unit.router_helpers import router_config, tcp4, tcp4_reply


def connections(n: int) -> list[list[tuple[bytes, int]]]:
    """The punts of ``n`` connections, each from its own source port."""
    out = []
    for i in range(n):
        sport = 10000 + i
        out.append([
            (tcp4("S", sport=sport), 1),
            (tcp4_reply("SA", dport=sport), 2),
            (tcp4("A", sport=sport), 1),
            (tcp4("PA", sport=sport, payload=b"hello"), 1),
        ])
    return out


def run(conns: list[list[tuple[bytes, int]]]) -> tuple[float, dict[str, int]]:
    """CPU seconds for all connections, and how many punts took each path."""
    # as the daemon under bench_cps: one monitor, listening for HW_OFFLOAD only
    router = Router(router_config(RULESET), on_event=lambda event: None,
                    wants=lambda kind: kind == "HW_OFFLOAD")
    driver = MemoryDriver(clock=lambda: 1000.0)
    offload = router.offload
    paths: dict[str, int] = {}
    start = time.process_time()
    for conn in conns:
        for frame, port in conn:
            path = router.receive(frame, port, 1000.0).path
            paths[path] = paths.get(path, 0) + 1
        while len(offload):
            offload.complete(driver.execute_now(offload.take_batch(1000)))
    return time.process_time() - start, paths


def main() -> None:
    n = next((int(a) for a in sys.argv[1:] if a.isdigit()), 5000)
    conns = connections(n)
    if "--profile" in sys.argv:
        prof = cProfile.Profile()
        prof.runcall(run, conns)
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return
    cpu, paths = run(conns)
    punts = sum(paths.values())
    print(f"connections      {n}")
    print(f"punts            {punts}  {paths}")
    print(f"CPU/connection   {cpu / n * 1e6:8.1f} µs  ({n / cpu:,.0f} conns/s of one core)")
    print(f"CPU/punt         {cpu / punts * 1e6:8.1f} µs")


if __name__ == "__main__":
    main()
