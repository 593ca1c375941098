"""Connection setup rate through the punt path (not a test; needs root: a Mininet lab).

    .venv/bin/python bench/bench_cps.py [--target softswitch|bmv2] [--mode mirror|kernel ...]
        [--channel netdev|p4runtime ...] [--anchor linux] [-n 2000] [-m 50] [--profile DIR]

* setup rate: N TCP connections from h1 to a server in h2, M at a time, each sending a few
  bytes and staying open; connections/s until both directions of every one are in hardware
  (its HW_OFFLOAD event on the monitor stream), handshake latency p50/p99 (connect() in h1),
  punts per connection, and the share of the controller's punt-path time per stage from the
  daemon's own counters (``p4ft stats`` → controller.punt_path); how busy the controller
  and the switch process were over the run (CPU time: the one near a full core is the limit).
* latency at a modest rate: connections offered at ``--rate`` per second (default 100),
  handshake p99.
* slow path: UDP blasted at a port the forward chain accepts before ``flow add``, so every
  packet is punted: delivered packets/s at saturation against the offered rate, and the
  packet-in queue's high-water mark.

``--anchor linux`` first runs the same client and server through a plain Linux router
namespace (veths, ``ip_forward``, an nft forward chain with ``ct state`` rules) and the summary
gives each lab's connections/s as a ratio of it; ``--channel`` (repeatable, default both) is the
punt channel: the CPU port as a netdev or the P4Runtime stream; the summary also compares them.

``--mode`` (repeatable) says how the lab runs: ``mirror`` (the controller mirrors a
flowtable of its own ruleset) or ``kernel`` (a Linux router namespace is the slow path,
``p4ft lab --topo kernel``: TCP offloaded from its conntrack, UDP left to the kernel).
``--profile DIR`` samples the controller and the switch with py-spy during the setup run and
prints each profile's top frames.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.labtraffic import RULESET, SLOW_PORT, TCP_CLIENT, TCP_SERVER, pps, script
from controller.edges import control
from controller.lab import Lab, load_topology
from controller.lab.lab import CHANNELS

CPS_PORT, RATE_PORT = 7001, 7002
HW_TIMEOUT = 120.0  # the setup run gives up waiting for HW_OFFLOAD after this long
PY_SPY = Path(sys.executable).with_name("py-spy")


@dataclass(frozen=True)
class Mode:
    """How the lab is built for a run; the figures are measured the same way in every mode."""

    name: str
    lab: Callable[[str | None, str], Lab]


MODES = {
    "mirror": Mode("mirror", lambda target, channel: Lab(
        load_topology("router"), target, grpc_port=9602, ruleset=RULESET, channel=channel)),
    # the kernel lab's own nft ruleset; UDP is never offloaded, so the slow-path blast is all
    # punted to the kernel
    "kernel": Mode("kernel", lambda target, channel: Lab(
        dataclasses.replace(load_topology("kernel"), kernel={"offload": ["tcp"]}), target,
        grpc_port=9602, channel=channel)),
}


# -- measurement ------------------------------------------------------------------------------


class HwWatch:
    """HW_OFFLOAD events per destination port from one monitor stream, with arrival times."""

    def __init__(self, lab: Lab) -> None:
        self.seen: dict[int, dict[int, float]] = collections.defaultdict(dict)
        self._lock = threading.Condition()
        self._stream = control.stream("monitor", lab.control_path, types=["HW_OFFLOAD"])
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        for event in self._stream:
            if event.get("type") != "HW_OFFLOAD":
                continue
            original = event.get("original") or {}
            with self._lock:
                self.seen[original.get("dport")].setdefault(original.get("sport"),
                                                            time.monotonic())
                self._lock.notify_all()

    def wait(self, port: int, count: int, timeout: float) -> dict[int, float]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.seen[port]) < count and time.monotonic() < deadline:
                self._lock.wait(0.5)
            return dict(self.seen[port])


def quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


def connections(lab: Any, watch: HwWatch | None, port: int, n: int, m: int, rate: float
                ) -> dict[str, Any]:
    """Open ``n`` connections (``m`` at a time, ``rate``/s or as fast as they go); with a
    ``watch``, until both directions of each are in hardware."""
    server = script(lab, "h2", TCP_SERVER, port)
    assert server.stdout.readline().strip() == "READY"
    client = script(lab, "h1", TCP_CLIENT, lab.address("h2"), port, n, m, rate,
                    stdin=subprocess.PIPE)
    result = json.loads(client.stdout.readline())
    hw = watch.wait(port, n - result["failed"], HW_TIMEOUT) if watch is not None else {}
    client.communicate("close\n")
    server.kill()
    server.wait()
    last = max(hw.values(), default=result["end"])
    return {**result, "in_hw": len(hw), "span": last - result["start"]}


def settle(lab: Lab, quiet: float = 1.0, timeout: float = 60.0) -> None:
    """Wait until no punt arrived for ``quiet`` seconds (the closed connections' FINs are
    handled), so one run's teardown does not weigh on the next run's handshakes."""
    deadline = time.monotonic() + timeout
    last = stats(lab)["punts"]
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = stats(lab)["punts"]
        if now == last:
            return
        last = now


def stage_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[int, float]]:
    """Per stage of the punt path: (count, seconds) between two ``stats`` snapshots."""
    stages_after = after.get("controller_punt_path", {})
    stages_before = before.get("controller_punt_path", {})
    out = {}
    for stage, figures in stages_after.items():
        old = stages_before.get(stage, {"count": 0, "seconds": 0.0})
        out[stage] = (figures["count"] - old["count"], figures["seconds"] - old["seconds"])
    return out


def stats(lab: Lab) -> dict[str, Any]:
    raw = lab.stats()
    return {"punts": sum(raw.get("punts", {}).values()),
            "packet_outs": raw.get("punt_channel", {}).get("counters",
                                                           raw.get("driver", {})).get(
                                                               "packet_out", 0),
            "write_requests": raw.get("driver", {}).get("write_requests", 0),
            "write_updates": raw.get("driver", {}).get("write_updates", 0),
            "controller_punt_path": raw.get("punt_path", {}),
            "packet_in_queue": raw.get("packet_in_queue", {}),
            "switch_drops": raw.get("punt_policing", {})}


# -- profiling --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Profiler:
    """py-spy record of the controller and the switch in raw (collapsed-stack) format."""

    def __init__(self, directory: Path | None, pids: dict[str, int]) -> None:
        self.files = {name: directory / f"{name}.txt" for name in pids} if directory else {}
        self._procs = [subprocess.Popen([str(PY_SPY), "record", "--format", "raw", "--rate",
                                         "200", "-o", str(self.files[name]), "--pid", str(pid)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                       for name, pid in pids.items() if directory]

    def stop(self) -> None:
        for proc in self._procs:
            proc.send_signal(signal.SIGINT)
        for proc in self._procs:
            proc.wait(60)

    def report(self, top: int = 12) -> None:
        for name, path in self.files.items():
            if not path.exists():
                print(f"profile {name}: no output")
                continue
            own: collections.Counter[str] = collections.Counter()
            inclusive: collections.Counter[str] = collections.Counter()
            total = 0
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                frames = stack.split(";")
                total += int(count)
                own[frames[-1]] += int(count)
                for frame in set(frames):
                    inclusive[frame] += int(count)
            print(f"profile {name} ({total} samples, {path}): top self")
            for frame, count in own.most_common(top):
                print(f"  {100 * count / total:5.1f}%  {frame}")
            print(f"profile {name}: top inclusive")
            for frame, count in inclusive.most_common(top + 8)[8:]:
                print(f"  {100 * count / total:5.1f}%  {frame}")


# -- the Linux anchor ---------------------------------------------------------------------------


class LinuxRouter:
    """The anchor: h1 and h2 with the router lab's addresses, through a plain Linux router
    namespace (veths, ``ip_forward``, an nft forward chain with ``ct state`` rules) instead of
    the P4 switch and the controller. Same hosts' scripts, same machine, same run."""

    NS = {"h1": "p4ft-anchor-h1", "r": "p4ft-anchor-r", "h2": "p4ft-anchor-h2"}
    RULESET = """table inet filter {
    chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        ct state new accept
    }
}
"""

    def __init__(self) -> None:
        self.topology = load_topology("router")

    def __enter__(self) -> LinuxRouter:
        self.__exit__()  # one a crashed run left behind
        try:
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self) -> None:
        for ns in self.NS.values():
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        r = self.NS["r"]
        _sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for port in self.topology.ports:
            host, router_end = f"anc-{port.host}", f"anc-r{port.id}"
            _sh("ip", "link", "add", host, "netns", self.NS[port.host], "type", "veth", "peer",
                "name", router_end, "netns", r)
            _sh("ip", "-n", r, "addr", "add", port.router[0], "dev", router_end)
            _sh("ip", "-n", r, "link", "set", router_end, "up")
            ns = self.NS[port.host]
            _sh("ip", "-n", ns, "addr", "add", port.addresses[0], "dev", host)
            _sh("ip", "-n", ns, "link", "set", host, "up")
            _sh("ip", "-n", ns, "route", "add", "default", "via", port.gateway(4))
        subprocess.run(["ip", "netns", "exec", r, "nft", "-f", "-"], input=self.RULESET,
                       text=True, check=True, capture_output=True)

    def __exit__(self, *exc: object) -> None:
        for ns in self.NS.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def host(self, name: str) -> _NsHost:
        return _NsHost(self.NS[name])

    def address(self, host: str, family: int = 4) -> str:
        return self.topology.address(host, family)


@dataclass(frozen=True)
class _NsHost:
    ns: str

    def popen(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen:
        """As Mininet's ``Host.popen``: stdout piped."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd], **kwargs)


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def anchor(args: argparse.Namespace) -> float:
    """Connections/s through the Linux router, measured as the lab's setup run is."""
    with LinuxRouter() as router:
        result = connections(router, None, CPS_PORT, args.connections, args.parallel, 0.0)
    done = len(result["latencies"])
    rate = done / (result["end"] - result["start"])
    print(f"linux router: {done}/{args.connections} connections, {result['failed']} failed, "
          f"{args.parallel} in parallel: {rate:.0f} connections/s; handshake p50 "
          f"{quantile(result['latencies'], 50) * 1e3:.1f} ms, "
          f"p99 {quantile(result['latencies'], 99) * 1e3:.1f} ms")
    return rate


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=["softswitch", "bmv2"], default=None)
    parser.add_argument("--mode", choices=sorted(MODES), action="append",
                        help="mirror (the default) or kernel; repeat for both")
    parser.add_argument("--channel", choices=CHANNELS, action="append",
                        help="punt channel, repeatable (default: netdev and p4runtime)")
    parser.add_argument("--anchor", choices=["linux"], default=None,
                        help="also run the client and server through a plain Linux router and "
                             "print every lab's connections/s as a ratio of it")
    parser.add_argument("-n", "--connections", type=int, default=2000)
    parser.add_argument("-m", "--parallel", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0,
                        help="offered connections/s of the latency run")
    parser.add_argument("--rate-connections", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0, help="slow-path blast")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    modes, channels = args.mode or ["mirror"], args.channel or list(CHANNELS)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    linux = anchor(args) if args.anchor else None
    rates: dict[tuple[str, str], tuple[float, float]] = {}
    for mode in modes:
        for channel in channels:
            print()
            rates[mode, channel] = run_lab(args, mode, channel)
    print()
    print("summary (one run): setup connections/s, slow path delivered pkt/s"
          + (f"; ratio to the Linux router's {linux:.0f} connections/s" if linux else ""))
    for (mode, channel), (cps, slow) in rates.items():
        stream = rates.get((mode, "p4runtime"))
        extra = f"  {cps / linux:.3f}x linux" if linux else ""
        if stream and channel != "p4runtime":
            extra += (f"  {cps / stream[0]:.2f}x the stream's connections/s, "
                      f"{slow / max(stream[1], 1):.2f}x its slow path")
        print(f"  {mode:>6} {channel:>9}: {cps:7.0f} conns/s  {slow:7.0f} pkt/s{extra}")
    if len(modes) > 1:
        for channel in channels:
            if ("kernel", channel) in rates and ("mirror", channel) in rates:
                ratio = rates["kernel", channel][0] / rates["mirror", channel][0]
                print(f"  kernel / mirror on {channel}: {ratio:.2f}x")
    return 0


def run_lab(args: argparse.Namespace, mode: str, channel: str) -> tuple[float, float]:
    """One lab's figures, printed; returns (setup connections/s, slow path pkt/s)."""
    profile = args.profile / f"{mode}-{channel}" if args.profile else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    with MODES[mode].lab(args.target, channel) as lab:
        watch = HwWatch(lab)
        pids = {"controller": lab.controller.pid, "switch": lab.host("s1").process.pid}
        before = stats(lab)
        profiler = Profiler(profile, pids)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        setup = connections(lab, watch, CPS_PORT, args.connections, args.parallel, 0.0)
        cpu_after = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        profiler.stop()
        after = stats(lab)
        settle(lab)
        paced = connections(lab, watch, RATE_PORT, args.rate_connections, args.parallel,
                            args.rate)
        settle(lab)
        blast = stats(lab)
        slow, slow_sent, slow_recv, offered = pps(lab, SLOW_PORT, args.seconds)
        final = stats(lab)
        target = lab.target
    print(f"target: {target}; mode: {mode}; punt channel: {channel}")
    n = len(setup["latencies"])
    print(f"setup: {setup['in_hw']}/{args.connections} connections in hardware (both "
          f"directions), {setup['failed']} failed, {args.parallel} in parallel: "
          f"{setup['in_hw'] / setup['span']:.0f} connections/s")
    print(f"  handshake p50 {quantile(setup['latencies'], 50) * 1e3:.1f} ms, "
          f"p99 {quantile(setup['latencies'], 99) * 1e3:.1f} ms over {n}")
    print(f"  punts per connection: {(after['punts'] - before['punts']) / max(n, 1):.2f}")
    requests = after["write_requests"] - before["write_requests"]
    updates = after["write_updates"] - before["write_updates"]
    print(f"  P4Runtime writes: {updates} updates in {requests} requests "
          f"({updates / max(requests, 1):.1f} per request)")
    for name, used in cpu_after.items():
        print(f"  {name} CPU: {used:.2f} s over {setup['span']:.2f} s "
              f"({100 * used / setup['span']:.0f}% of a core)")
    stages = stage_deltas(before, after)
    total = sum(seconds for _, seconds in stages.values())
    if total:
        for stage, (count, seconds) in stages.items():
            print(f"  punt path {stage:>10}: {100 * seconds / total:5.1f}% of a punt's time in "
                  f"the controller, {1e6 * seconds / max(count, 1):7.1f} µs/packet over {count}")
    else:
        print("  punt path stages: not reported by this controller")
    print(f"paced: {args.rate:.0f} connections/s offered, {paced['in_hw']}/"
          f"{args.rate_connections} in hardware; handshake p50 "
          f"{quantile(paced['latencies'], 50) * 1e3:.1f} ms, "
          f"p99 {quantile(paced['latencies'], 99) * 1e3:.1f} ms")
    print(f"slow path: {slow:.0f} pkt/s delivered of {offered:.0f} pkt/s offered "
          f"({slow_recv}/{slow_sent} packets arrived)")
    punted = final["punts"] - blast["punts"]
    print(f"  the switch punted {punted} of them ({punted / max(slow_sent, 1):.1%}), the "
          f"controller sent {final['packet_outs'] - blast['packet_outs']} packet-outs")
    setup_queue = after["packet_in_queue"]
    if setup_queue:
        print(f"  packet-in queue during setup: max {setup_queue.get('max_depth')} (a controller "
              "that keeps up never holds more than a few)")
    queue = final["packet_in_queue"]
    if queue:
        print(f"  packet-in queue: max {queue.get('max_depth')} of {queue.get('limit')}, "
              f"dropped (oldest first) {queue.get('drops', {})}")
    copp = final["switch_drops"]
    if copp:
        print(f"  CoPP: {copp['status']}; punts dropped in the switch: {copp['drops'] or 'none'}")
    profiler.report()
    return setup["in_hw"] / setup["span"], slow


if __name__ == "__main__":
    sys.exit(main())
