"""The summary of a ``p4ft simulate`` run: what the hardware carried, in numbers a person reads.

:class:`Summary` is an observer of the replay (``packet``, ``tick``) and keeps only aggregates
whose size does not depend on the number of packets:

- packets and bytes per (protocol, ingress port, path);
- a time series in at most :data:`MAX_BINS` bins (the bin width doubles when a trace is long):
  packets and bytes per path, punts per reason, hardware entries per table (the peak in the bin);
- connections: started, offloaded (software flowtable), in hardware; for those that reached
  the hardware, a fixed-size sample of how many packets they had before (conntrack's counters
  at HW_OFFLOAD), of the time from OFFLOAD to HW_OFFLOAD and from the first packet to
  HW_OFFLOAD. Live connections are tracked by id until their DESTROY;
- flow directions (ingress port + addresses, protocol, ports as seen on the wire): packets and
  bytes per path. A direction idle for longer than any timeout is retired: added to the
  per-protocol table and offered to the top :data:`TOP_FLOWS` by bytes, so the table holds
  only recent directions.

:meth:`Summary.finish` adds the router's counters (punts, offload work and refusals, drops) and
returns plain JSON data (``summary.json``); :func:`format_summary` prints it as tables.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
import struct
from collections import Counter
from dataclasses import dataclass, field

from controller.config import RouterConfig
from controller.router import Event, Router

MAX_BINS = 600
TOP_FLOWS = 20
SAMPLE = 10_000  # reservoir size of each distribution
_H = struct.Struct("!H")
_NONE = (0, 0)  # packets, bytes of a path absent from a bin
_VLAN = (0x8100, 0x88A8)
_PPP = {0x0021: 0x0800, 0x0057: 0x86DD}  # PPP protocol -> the ethertype it carries
_PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 47: "gre", 50: "esp"}


def classify(frame: bytes) -> tuple[str, bytes | None]:
    """Protocol name and the flow direction's key (L3 addresses, protocol, L4 ports) of a
    frame, from its headers alone (through 802.1Q/802.1ad tags and a PPPoE session header);
    no key for what is not IP."""
    if len(frame) < 14:
        return "short", None
    ethertype = _H.unpack_from(frame, 12)[0]
    l3 = 14
    while ethertype in _VLAN and len(frame) >= l3 + 4:
        ethertype = _H.unpack_from(frame, l3 + 2)[0]
        l3 += 4
    if ethertype == 0x8864 and len(frame) >= l3 + 8:  # PPPoE session: PPP protocol after it
        ethertype = _PPP.get(_H.unpack_from(frame, l3 + 6)[0], 0)
        l3 += 8
    if ethertype == 0x0800 and len(frame) >= l3 + 20:
        proto = frame[l3 + 9]
        if frame[l3] & 0x0F == 5:  # no options: the ports follow the addresses
            return _PROTOS.get(proto, "ipv4"), frame[l3 + 9 : l3 + 10] + frame[l3 + 12 : l3 + 24]
        l4 = l3 + (frame[l3] & 0x0F) * 4
        return _PROTOS.get(proto, "ipv4"), bytes((proto,)) + frame[l3 + 12 : l3 + 20] + frame[
            l4 : l4 + 4
        ]
    if ethertype == 0x86DD and len(frame) >= l3 + 40:
        proto = frame[l3 + 6]
        return _PROTOS.get(proto, "ipv6"), bytes((proto,)) + frame[l3 + 8 : l3 + 44]
    if ethertype == 0x0806:
        return "arp", None
    return f"ethertype_{ethertype:04x}", None


@dataclass(slots=True)
class _Bin:
    """One time bin: [packets, bytes] per path (one lookup a packet), punts per reason, the
    peak entries per table."""

    paths: dict[str, list[int]] = field(default_factory=dict)
    punts: Counter[str] = field(default_factory=Counter)
    occupancy: dict[str, int] = field(default_factory=dict)

    def merge(self, other: _Bin) -> None:
        for path, (pkts, nbytes) in other.paths.items():
            counts = self.paths.setdefault(path, [0, 0])
            counts[0] += pkts
            counts[1] += nbytes
        self.punts.update(other.punts)
        for table, n in other.occupancy.items():
            self.occupancy[table] = max(n, self.occupancy.get(table, 0))


@dataclass(slots=True)
class _Flow:
    """One flow direction: packets and bytes per path (the per-protocol table is summed from
    these when the direction is retired, so a packet costs one lookup)."""

    proto: str
    last: float
    paths: dict[str, list[int]] = field(default_factory=dict)

    def total(self, index: int) -> int:
        return sum(c[index] for c in self.paths.values())


class Reservoir:
    """A uniform sample of at most ``size`` values of a stream (Algorithm R), reproducible."""

    def __init__(self, size: int = SAMPLE, seed: int = 0) -> None:
        self.size = size
        self.count = 0
        self.values: list[float] = []
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            at = self._rng.randrange(self.count)
            if at < self.size:
                self.values[at] = value

    def describe(self) -> dict[str, object]:
        values = sorted(self.values)
        if not values:
            return {"count": 0}

        def pct(p: float) -> float:
            return values[min(len(values) - 1, int(p * len(values)))]

        return {
            "count": self.count,
            "min": values[0],
            "p50": pct(0.5),
            "p90": pct(0.9),
            "p99": pct(0.99),
            "max": values[-1],
            "sample": values,
        }


class Summary:
    """Aggregates of one replay (an :class:`controller.edges.simulate.Observer`)."""

    def __init__(self, config: RouterConfig, *, top: int = TOP_FLOWS) -> None:
        self.ports = {p.id: p.name for p in config.ports}
        ftc = config.flowtable
        self.idle = 2.0 * max(ftc.tcp_timeout, ftc.udp_timeout, 30.0)  # a retired direction
        self.top = top
        self.by_class: dict[tuple[str, int, str], list[int]] = {}
        self.start: float | None = None
        self.width = 1.0
        self.bins: dict[int, _Bin] = {}
        self._bin_index = -1
        self._bin = _Bin()
        self._bin_span = (0.0, -1.0)  # [lo, hi) of the current bin, in seconds after start
        self.flows: dict[tuple[int, bytes], _Flow] = {}  # by (in_port, key)
        self._retired: list[tuple[int, int, tuple[int, bytes], _Flow]] = []  # min-heap by bytes
        self._retired_seq = 0
        self._next_sweep = 0.0
        self.events: Counter[str] = Counter()
        self._started: dict[int, float] = {}  # conn id -> first packet time (live)
        self._offloaded: dict[int, float] = {}  # conn id -> OFFLOAD time (live, not yet in hw)
        self.before_hw = Reservoir(seed=1)
        self.offload_latency = Reservoir(seed=2)
        self.time_to_hw = Reservoir(seed=3)
        self.peak: dict[str, int] = {}
        self.peak_time: dict[str, float] = {}

    # -- the observer ---------------------------------------------------------------------

    def packet(
        self, port: int, when: float, frame: bytes, path: str, reason: str, events: list[Event]
    ) -> None:
        size = len(frame)
        if self.start is None:
            self.start = when
        at = when - self.start
        lo, hi = self._bin_span
        if not lo <= at < hi:  # the width is a power of two: exactly int(at / width) changed
            self._enter_bin(int(at / self.width))
        b = self._bin
        counts = b.paths.get(path)
        if counts is None:
            counts = b.paths[path] = [0, 0]
        counts[0] += 1
        counts[1] += size
        if reason:
            b.punts[reason] += 1
        proto, key = classify(frame)
        if key is None:
            counts = self.by_class.get((proto, port, path))
            if counts is None:
                counts = self.by_class[(proto, port, path)] = [0, 0]
            counts[0] += 1
            counts[1] += size
            return
        fkey = (port, key)
        flow = self.flows.get(fkey)
        if flow is None:
            flow = self.flows[fkey] = _Flow(proto, when)
        flow.last = when
        counts = flow.paths.get(path)
        if counts is None:
            counts = flow.paths[path] = [0, 0]
        counts[0] += 1
        counts[1] += size

    def tick(self, now: float, occupancy: dict[str, int]) -> None:
        if self.start is not None:
            index = int((now - self.start) / self.width)
            if index != self._bin_index:
                self._enter_bin(index)
        occ = self._bin.occupancy
        for table, n in occupancy.items():
            if n > occ.get(table, -1):
                occ[table] = n
            if n > self.peak.get(table, -1):
                self.peak[table] = n
                self.peak_time[table] = now
        if now >= self._next_sweep:
            self._retire(now - self.idle)
            self._next_sweep = now + 10.0

    # -- pieces -----------------------------------------------------------------------------

    def _enter_bin(self, index: int) -> None:
        if self._bin_index >= 0:
            self._store(self._bin_index, self._bin)
        while index >= MAX_BINS:  # a long trace: coarser bins
            self._coarsen()
            index //= 2
        self._bin_index = index
        self._bin = self.bins.pop(index, None) or _Bin()
        self._bin_span = (index * self.width, (index + 1) * self.width)

    def _store(self, index: int, b: _Bin) -> None:
        have = self.bins.get(index)
        if have is None:
            self.bins[index] = b
        else:
            have.merge(b)

    def _coarsen(self) -> None:
        self.width *= 2
        old, self.bins = self.bins, {}
        for index, b in old.items():
            self._store(index // 2, b)
        if self._bin_index >= 0:
            self._bin_index //= 2
            self._bin_span = (self._bin_index * self.width, (self._bin_index + 1) * self.width)

    def event(self, when: float, ev: Event) -> None:
        """Connections' milestones at the virtual time they happened."""
        kind = str(ev["type"])
        self.events[kind] += 1
        if "flowtable" not in ev:  # conntrack
            if kind == "NEW":
                self._started[ev["id"]] = when  # type: ignore[index]
            elif kind == "DESTROY":
                self._started.pop(ev["id"], None)  # type: ignore[call-overload]
                self._offloaded.pop(ev["id"], None)  # type: ignore[call-overload]
        elif kind == "OFFLOAD":
            self._offloaded[ev["conn"]] = when  # type: ignore[index]
        elif kind == "HW_OFFLOAD":
            conn = ev["conn"]
            orig, reply = ev.get("original"), ev.get("reply")
            if isinstance(orig, dict) and isinstance(reply, dict):
                self.before_hw.add(orig["packets"] + reply["packets"])
            since = self._offloaded.pop(conn, None)  # type: ignore[call-overload]
            if since is not None:
                self.offload_latency.add((when - since) * 1e3)
            first = self._started.get(conn)  # type: ignore[call-overload]
            if first is not None:
                self.time_to_hw.add(when - first)

    def _retire(self, before: float) -> None:
        """Move flow directions idle since ``before`` into the top-N heap."""
        old = [k for k, f in self.flows.items() if f.last < before]
        for key in old:
            self._keep(key, self.flows.pop(key))

    def _keep(self, key: tuple[int, bytes], flow: _Flow) -> None:
        port = key[0]
        for path, (pkts, nbytes) in flow.paths.items():
            counts = self.by_class.get((flow.proto, port, path))
            if counts is None:
                counts = self.by_class[(flow.proto, port, path)] = [0, 0]
            counts[0] += pkts
            counts[1] += nbytes
        item = (flow.total(1), self._retired_seq, key, flow)
        self._retired_seq += 1
        if len(self._retired) < self.top:
            heapq.heappush(self._retired, item)
        elif item[0] > self._retired[0][0]:
            heapq.heapreplace(self._retired, item)

    # -- the result -----------------------------------------------------------------------------

    def finish(
        self, router: Router, *, run: dict[str, object], capacity: int | None
    ) -> dict[str, object]:
        """Everything as JSON data; the router's counters as they are at the end."""
        if self._bin_index >= 0:
            self._store(self._bin_index, self._bin)
            self._bin_index = -1
            self._bin = _Bin()
            self._bin_span = (0.0, -1.0)
        for key in list(self.flows):
            self._keep(key, self.flows.pop(key))
        paths: dict[str, dict[str, int]] = {}
        rows = []
        for (proto, port, path), (pkts, nbytes) in sorted(self.by_class.items()):
            p = paths.setdefault(path, {"packets": 0, "bytes": 0})
            p["packets"] += pkts
            p["bytes"] += nbytes
            rows.append(
                {
                    "protocol": proto,
                    "in_port": self.ports.get(port, str(port)),
                    "path": path,
                    "packets": pkts,
                    "bytes": nbytes,
                }
            )
        total_p = sum(p["packets"] for p in paths.values())
        total_b = sum(p["bytes"] for p in paths.values())
        hw = paths.get("hw", {"packets": 0, "bytes": 0})
        return {
            "run": {**run, "packets": total_p, "bytes": total_b, "capacity": capacity},
            "hw_share": {
                "packets": hw["packets"] / total_p if total_p else 0.0,
                "bytes": hw["bytes"] / total_b if total_b else 0.0,
            },
            "paths": paths,
            "by_protocol": rows,
            "connections": {
                "new": self.events["NEW"],
                "offloaded": self.events["OFFLOAD"],
                "hw_offloaded": self.events["HW_OFFLOAD"],
                "packets_before_hw": self.before_hw.describe(),
                "offload_latency_ms": self.offload_latency.describe(),
                "time_to_hw_s": self.time_to_hw.describe(),
            },
            "tables": {
                "capacity": capacity,
                "peak": dict(self.peak),
                "peak_time": dict(self.peak_time),
            },
            "punts": dict(router.punts),
            "offload": dict(router.offload.counters),
            "refusals": dict(router.offload.policy.counters),
            "drops": dict(router.drops),
            "events": dict(self.events),
            "top_flows": self._top_flows(),
            "series": self._series(),
        }

    def _top_flows(self) -> list[dict[str, object]]:
        out = []
        for nbytes, _seq, (port, key), flow in sorted(self._retired, reverse=True):
            proto, pkts = flow.proto, flow.total(0)
            hw_p, hw_b = flow.paths.get("hw", (0, 0))
            src, dst, sport, dport = _endpoints(key)
            out.append(
                {
                    "in_port": self.ports.get(port, str(port)),
                    "protocol": proto,
                    "src": src,
                    "dst": dst,
                    "sport": sport,
                    "dport": dport,
                    "packets": pkts,
                    "bytes": nbytes,
                    "hw_packets": hw_p,
                    "hw_bytes": hw_b,
                    "hw_share": hw_b / nbytes if nbytes else 0.0,
                }
            )
        return out

    def _series(self) -> dict[str, object]:
        if not self.bins:
            return {"width": self.width, "start": self.start, "t": []}
        last = max(self.bins)
        indexes = range(last + 1)
        bins = [self.bins.get(i) or _Bin() for i in indexes]
        paths = sorted({p for b in bins for p in b.paths})
        reasons = sorted({r for b in bins for r in b.punts})
        tables = sorted({t for b in bins for t in b.occupancy})
        occupancy: dict[str, list[int | None]] = {t: [] for t in tables}
        for t in tables:  # bins without a tick carry the last level seen
            level: int | None = None
            for b in bins:
                level = b.occupancy.get(t, level)
                occupancy[t].append(level)
        return {
            "width": self.width,
            "start": self.start,
            "t": [i * self.width for i in indexes],
            "packets": {p: [b.paths.get(p, _NONE)[0] for b in bins] for p in paths},
            "bytes": {p: [b.paths.get(p, _NONE)[1] for b in bins] for p in paths},
            "punts_per_s": {r: [b.punts.get(r, 0) / self.width for b in bins] for r in reasons},
            "occupancy": occupancy,
        }


def _endpoints(key: bytes) -> tuple[str, str, int | None, int | None]:
    size = 4 if len(key) == 13 else 16
    src = str(ipaddress.ip_address(key[1 : 1 + size]))
    dst = str(ipaddress.ip_address(key[1 + size : 1 + 2 * size]))
    ports = key[1 + 2 * size :]
    if len(ports) < 4 or key[0] not in (6, 17, 132):
        return src, dst, None, None
    sport, dport = struct.unpack("!HH", ports)
    return src, dst, sport, dport


# -- the printed table ---------------------------------------------------------------------------


def _num(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}" if float(n).is_integer() or abs(n) >= 100 else f"{n:.3g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [title, line(header), line(["-" * w for w in widths]), *map(line, rows), ""]


def format_summary(s: dict) -> str:
    """The summary as text tables for the terminal."""
    run, paths = s["run"], s["paths"]
    total_p, total_b = run["packets"] or 1, run["bytes"] or 1
    duration = run.get("duration") or 0.0
    cap = run["capacity"]
    lines = [
        f"{_num(run['packets'])} packets, {_num(run['bytes'])}B over {duration:.1f} s of "
        f"capture; hardware ({'unlimited' if cap is None else f'{cap} entries per table'}) "
        f"carried {_pct(s['hw_share']['packets'])} of packets, "
        f"{_pct(s['hw_share']['bytes'])} of bytes"
        + (" — INTERRUPTED, partial run" if run.get("interrupted") else ""),
        "",
    ]
    order = ["hw", "sw_fastpath", "classic", "to_router", "drop"]
    names = sorted(paths, key=lambda p: (order.index(p) if p in order else 99, p))
    lines += _table(
        "By path",
        ["path", "packets", "share", "bytes", "share"],
        [
            [
                p,
                _num(paths[p]["packets"]),
                _pct(paths[p]["packets"] / total_p),
                _num(paths[p]["bytes"]),
                _pct(paths[p]["bytes"] / total_b),
            ]
            for p in names
        ],
    )
    per: dict[tuple[str, str], dict[str, int]] = {}
    for row in s["by_protocol"]:
        per.setdefault((row["protocol"], row["in_port"]), Counter())[row["path"]] += row["packets"]
    lines += _table(
        "Packets by protocol and ingress port",
        ["protocol", "in", *names, "hw share"],
        [
            [
                proto,
                port,
                *[_num(c.get(p, 0)) for p in names],
                _pct(c.get("hw", 0) / max(1, sum(c.values()))),
            ]
            for (proto, port), c in sorted(per.items(), key=lambda kv: -sum(kv[1].values()))
        ],
    )
    conns = s["connections"]
    dist_rows = []
    for label, key in (
        ("packets before hardware", "packets_before_hw"),
        ("OFFLOAD -> HW_OFFLOAD (ms)", "offload_latency_ms"),
        ("first packet -> hardware (s)", "time_to_hw_s"),
    ):
        d = conns[key]
        if d["count"]:
            dist_rows.append(
                [label, _num(d["count"]), *(_num(d[k]) for k in ("p50", "p90", "p99", "max"))]
            )
    lines.append(
        f"Connections: {_num(conns['new'])} new, {_num(conns['offloaded'])} offloaded, "
        f"{_num(conns['hw_offloaded'])} reached the hardware"
    )
    lines.append("")
    if dist_rows:
        lines += _table(
            "When they reached it", ["", "count", "p50", "p90", "p99", "max"], dist_rows
        )
    tables = s["tables"]
    if tables["peak"]:
        lines += _table(
            "Hardware tables",
            ["table", "peak entries", "at (s)", "capacity"],
            [
                [
                    t,
                    _num(n),
                    f"{tables['peak_time'][t] - (s['series'].get('start') or 0):.1f}",
                    "unlimited" if cap is None else str(cap),
                ]
                for t, n in sorted(tables["peak"].items())
            ],
        )
    series = s["series"]
    if series.get("punts_per_s"):
        lines += _table(
            "Punts by reason",
            ["reason", "total", "peak/s", "mean/s"],
            [
                [r, _num(s["punts"].get(r, 0)), _num(max(v)), _num(sum(v) / max(1, len(v)))]
                for r, v in sorted(series["punts_per_s"].items())
            ],
        )
    work = {k: v for k, v in {**s["offload"], **s["refusals"]}.items() if v}
    if work:
        lines += _table(
            "Offload work and refusals",
            ["counter", "count"],
            [[k, _num(v)] for k, v in sorted(work.items())],
        )
    if s["top_flows"]:
        lines += _table(
            f"Heaviest flow directions (top {len(s['top_flows'])} by bytes)",
            ["in", "proto", "source", "destination", "packets", "bytes", "in hw"],
            [
                [
                    f["in_port"],
                    f["protocol"],
                    _addr(f["src"], f["sport"]),
                    _addr(f["dst"], f["dport"]),
                    _num(f["packets"]),
                    _num(f["bytes"]),
                    _pct(f["hw_share"]),
                ]
                for f in s["top_flows"]
            ],
        )
    if run.get("late_frames"):
        lines.append(
            f"{run['late_frames']} frames were out of time order beyond the reorder "
            "window and were replayed where they were"
        )
    return "\n".join(lines).rstrip() + "\n"


def _addr(ip: str, port: int | None) -> str:
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
