"""``p4ft simulate`` at scale (not a test): packets/s and peak memory on a generated capture.

    .venv/bin/python bench/bench_simulate.py [--connections 20000] [--dir /tmp/p4ft-bench-sim]

Writes two reproducible traces with bench/simtrace.py (examples/router): a small one of a tenth
of the connections (~100k frames) and the large one (~1M frames / 20k connections), with the
same number of connections open at once. Each is replayed in a fresh process (memory driver,
the summary as the only observer: no per-packet records, no output pcaps), which reports its
rate and its peak RSS. Rates are packets per second of CPU time (``time.process_time``) on both
sides, so that other load on a shared machine does not tilt the ratio. Ratios, all from this
run:

- simulate rate / the in-process core's established-packet rate (bench_conntrack's hot loop);
- peak memory of the large replay / peak memory of the small one (flat in the packet count).

``--child DIR`` is the replay of one trace (used by the parent).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

import bench_conntrack  # noqa: E402
import simtrace  # noqa: E402

CONFIG = ROOT / "examples" / "router" / "router.toml"


def child(trace: Path) -> None:
    from controller.config import load_config
    from controller.edges.capture import open_captures
    from controller.edges.simulate import Simulation
    from controller.edges.simulate_summary import Summary

    config = load_config(CONFIG)
    rss_before = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()
    captures = open_captures([trace / "h1.pcap", trace / "h2.pcap"])
    summary = Summary(config)
    sim = Simulation(config, observers=[summary])
    start = time.process_time()
    result = sim.run([(1, captures[0]), (2, captures[1])])
    seconds = time.process_time() - start
    data = summary.finish(sim.router, run={}, capacity=None)
    print(
        json.dumps(
            {
                "packets": result.packets,
                "seconds": seconds,
                "rate": result.packets / seconds,
                "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "rss_before_kb": rss_before // 1024,
                "hw_share": data["hw_share"]["packets"],
                "peak_entries": data["tables"]["peak"],
            }
        )
    )


def replay(trace: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(trace)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/p4ft-bench-sim"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    small_n, large_n = args.connections // 10, args.connections
    small = simtrace.write_trace(args.dir / f"c{small_n}", small_n)
    large = simtrace.write_trace(args.dir / f"c{large_n}", large_n)
    ct, flows, replies, _ = bench_conntrack.setup(20000)

    def core_rate() -> float:
        return bench_conntrack.established_rate(ct, flows, replies, clock=time.process_time)

    core = core_rate()
    runs = {}
    for name, (h1, _h2, frames) in (("small", small), ("large", large)):
        runs[name] = replay(h1.parent)
        core = max(core, core_rate())  # interleaved with the replays: the best of three
        r = runs[name]
        print(
            f"{name:5} {frames:>9,} frames  {r['seconds']:7.1f} s CPU  {r['rate']:9,.0f} pkts/s  "
            f"peak RSS {r['peak_rss_kb'] / 1024:6.1f} MiB "
            f"(+{(r['peak_rss_kb'] - r['rss_before_kb']) / 1024:.1f} in the replay)  "
            f"hw share {100 * r['hw_share']:.1f}%  "
            f"peak entries {r['peak_entries']}"
        )
    print(f"core (conntrack established)   {core:9,.0f} pkts/s of CPU")
    rate_ratio = runs["large"]["rate"] / core
    mem_ratio = runs["large"]["peak_rss_kb"] / runs["small"]["peak_rss_kb"]
    print(f"simulate / core rate           {rate_ratio:9.2f}x  (target >= 0.5)")
    growth = [runs[n]["peak_rss_kb"] - runs[n]["rss_before_kb"] for n in ("small", "large")]
    print(f"peak memory large / small      {mem_ratio:9.2f}x  (target <= 1.2)")
    print(f"  the replay's own part        {growth[1] / max(1, growth[0]):9.2f}x")


if __name__ == "__main__":
    main()
