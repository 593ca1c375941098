"""``p4ft simulate --plot``: PNG files beside ``summary.json`` (matplotlib, Agg backend).

One figure per question an operator asks of a capture: how much did the hardware carry over
time (``hw_share.png``), how full were its tables against the capacity (``occupancy.png``),
what still reached the CPU and why (``punts.png``), how long a connection waited for the
hardware (``offload.png``); and for a capacity sweep, the share against the capacity
(``sweep.png``). Everything is drawn from the summary's data, so a plot can be redone from
``summary.json`` alone.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hours_or_seconds(t: list[float]) -> tuple[list[float], str]:
    if t and t[-1] > 2 * 3600:
        return [x / 3600 for x in t], "time into the capture (h)"
    if t and t[-1] > 600:
        return [x / 60 for x in t], "time into the capture (min)"
    return t, "time into the capture (s)"


def plot_summary(summary: dict, out_dir: Path) -> list[Path]:
    """Write the four figures of one run; the paths written."""
    plt = _pyplot()
    series = summary["series"]
    t, xlabel = _hours_or_seconds(series.get("t", []))
    cap = summary["run"].get("capacity")
    cap_text = "unlimited" if cap is None else f"{cap:,} entries per table"
    written = []

    fig, ax = plt.subplots(figsize=(8, 4))
    for key, label in (("packets", "packets"), ("bytes", "bytes")):
        per_path = series.get(key, {})
        totals = [sum(v[i] for v in per_path.values()) for i in range(len(t))]
        hw = per_path.get("hw", [0] * len(t))
        share = [100.0 * h / n if n else None for h, n in zip(hw, totals, strict=True)]
        ax.plot(
            t,
            share,
            label=f"{label} in hardware",
            drawstyle="steps-post",
            marker="." if len(t) < 100 else None,
        )
    ax.set_ylim(0, 105)
    ax.set_ylabel("share (%)")
    ax.set_xlabel(xlabel)
    ax.set_title(
        f"Hardware share over time — capacity {cap_text}; overall "
        f"{100 * summary['hw_share']['packets']:.1f}% of packets, "
        f"{100 * summary['hw_share']['bytes']:.1f}% of bytes",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    written.append(_save(fig, out_dir / "hw_share.png", plt))

    fig, ax = plt.subplots(figsize=(8, 4))
    for table, levels in sorted(series.get("occupancy", {}).items()):
        ax.plot(t, levels, label=f"{table} table", drawstyle="steps-post")
    if cap is not None:
        ax.axhline(cap, color="red", linestyle="--", label=f"--hw-capacity {cap:,}")
    ax.set_ylabel("hardware entries (flow directions)")
    ax.set_xlabel(xlabel)
    peaks = ", ".join(f"{k} {v:,}" for k, v in sorted(summary["tables"]["peak"].items()))
    ax.set_title(f"Table occupancy — peak {peaks or 'none'}", fontsize=10)
    ax.set_ylim(
        0,
        max([cap or 0, *(v or 0 for lv in series.get("occupancy", {}).values() for v in lv)]) * 1.25
        + 1,
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", ncol=3)
    written.append(_save(fig, out_dir / "occupancy.png", plt))

    fig, ax = plt.subplots(figsize=(8, 4))
    punts = series.get("punts_per_s", {})
    for reason, rate in sorted(punts.items(), key=lambda kv: -sum(kv[1])):
        ax.plot(t, rate, label=reason, drawstyle="steps-post")
    ax.set_ylabel(f"punts per second (mean over {series.get('width', 1):g} s)")
    ax.set_xlabel(xlabel)
    ax.set_title(
        f"Packets reaching the CPU, by reason — {sum(summary['punts'].values()):,} in all",
        fontsize=10,
    )
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if punts:
        ax.legend(loc="upper right")
    written.append(_save(fig, out_dir / "punts.png", plt))

    conns = summary["connections"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    latency = conns["offload_latency_ms"].get("sample", [])
    left.hist(latency or [0], bins=40, color="tab:blue")
    left.set_xlabel("OFFLOAD → HW_OFFLOAD (ms, virtual)")
    left.set_ylabel("connections")
    left.set_title(_dist_title("hardware write latency", conns["offload_latency_ms"]), fontsize=9)
    before = Counter(int(v) for v in conns["packets_before_hw"].get("sample", []))
    if before:
        right.bar(list(before), list(before.values()), width=0.8, color="tab:green")
        right.xaxis.get_major_locator().set_params(integer=True)
    right.set_xlabel("packets of the connection before it reached the hardware")
    right.set_ylabel("connections")
    right.set_title(_dist_title("packets before offload", conns["packets_before_hw"]), fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "offload.png", plt))
    return written


def _dist_title(name: str, d: dict) -> str:
    if not d.get("count"):
        return f"{name}: none reached the hardware"
    return f"{name}: {d['count']:,} conns, p50 {_fmt(d['p50'])}, p99 {_fmt(d['p99'])}"


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def plot_sweep(rows: list[dict], path: Path) -> Path:
    """Hardware share (packets, bytes) and peak occupancy against ``--hw-capacity``."""
    plt = _pyplot()
    caps = [r["capacity"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(caps, [100 * r["hw_share_packets"] for r in rows], "o-", label="packets in hardware")
    ax.plot(caps, [100 * r["hw_share_bytes"] for r in rows], "s-", label="bytes in hardware")
    ax.set_xscale("log")
    ax.set_xticks(caps, [f"{c:,}" for c in caps])
    ax.minorticks_off()
    ax.set_ylim(0, 105)
    ax.set_xlabel("--hw-capacity (entries per table)")
    ax.set_ylabel("share (%)")
    peak = max((r["peak_entries"] for r in rows), default=0)
    ax.set_title(
        f"What a table of N entries would have carried (largest peak: {peak:,})", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path, plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
