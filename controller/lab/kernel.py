"""The Linux router namespace of a kernel-mode lab (``LabTopology.netns``).

The lab makes the namespace a router (forwarding on, conntrack accounting on so that
``conntrack -L`` shows counters) and loads the topology's ruleset into it with ``nft -f``;
the controller then creates the representors in it and gives them the TOML's addresses.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SYSCTLS = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
           "net.ipv6.conf.default.accept_dad=0", "net.netfilter.nf_conntrack_acct=1")


def _run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")


def kernel_router_up(netns: str, ruleset: Path) -> None:
    kernel_router_down(netns)  # one a crashed lab left behind
    _run("ip", "netns", "add", netns)
    _run("ip", "-n", netns, "link", "set", "lo", "up")
    _run("ip", "netns", "exec", netns, "nft", "-f", str(ruleset))  # conntrack loads with it
    _run("ip", "netns", "exec", netns, "sysctl", "-qw", *SYSCTLS)


def kernel_router_down(netns: str) -> None:
    subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
