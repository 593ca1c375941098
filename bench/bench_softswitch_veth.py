"""Softswitch forwarding over real interfaces: frames/s through AF_PACKET ports on veth pairs,
against a bare AF_PACKET send loop on the same veths, measured in one run (needs root).

The program is the exact-match forward-and-rewrite router of the interpreter's benchmark; every
frame is a table hit. A sender process blasts frames into h1 (switch port 1@s1), a receiver
process counts what leaves h2 (port 2@s2): frames/s is what arrived over the time from the first
send to the last arrival, all three on the same cores, as in the BMv2 measurement. The ratio
compares with BMv2's (~13-15k frames/s forwarded against ~155k/s for the bare loop,
shared/reference/measurements.md).

Run: .venv/bin/python bench/bench_softswitch_veth.py [FRAMES]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IN_NAMESPACE = r"""
import asyncio, json, multiprocessing as mp, socket, sys, time
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from softswitch.pipeline import Pipeline
from softswitch.ports import PacketSocketPort
from softswitch.switch import Switch
from tests.softswitch.p4json import router_program

N = int(sys.argv[1])
FRAME = bytes(Ether(dst="02:00:00:00:01:fe") / IP(src="10.0.1.1", dst="10.0.2.2") /
              UDP(sport=1, dport=2) / (b"x" * 64))

def raw(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((name, 0))
    return s

def send(name, n):
    s = raw(name)
    for _ in range(n):
        try:
            s.send(FRAME)
        except BlockingIOError:
            pass

def count(name, ready, out):
    s = raw(name)
    s.settimeout(1.0)
    ready.set()
    got, last = 0, None
    while True:
        try:
            frame = s.recv(2048)
        except socket.timeout:
            break
        if frame[-64:] == FRAME[-64:]:
            got += 1
            last = time.perf_counter()
    out.put((got, last))

def measure(tx, rx, n):
    ready, out = mp.Event(), mp.Queue()
    counter = mp.Process(target=count, args=(rx, ready, out))
    counter.start()
    ready.wait()
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    sender = mp.Process(target=send, args=(tx, n))
    sender.start()
    sender.join()
    got, last = out.get()
    counter.join()
    return got, (last - start) if got else 0.0

class Device:
    pipeline = None

async def forward(n):
    device = Device()
    device.pipeline = Pipeline.from_json(router_program())
    device.pipeline.tables["ingress.fwd"].insert(
        (0x0A000202,), 0, "ingress.forward", (2, 0x020000000202, 0x0200000002FE))
    switch = Switch(device, [PacketSocketPort(1, "s1"), PacketSocketPort(2, "s2")])
    switch.open_ports()
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, measure, "h1", "h2", n)
    switch.close_ports()
    return result

bare = measure("h1", "s1", N)
through = asyncio.run(forward(N))
print(json.dumps({"bare": bare, "switch": through}))
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def main(frames: int = 50_000) -> None:
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespace, veth pairs, AF_PACKET)")
    ns = f"p4ft-bench-{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", ns)
    try:
        run = ("ip", "netns", "exec", ns)
        sh(*run, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1")
        for n in "12":
            sh(*run, "ip", "link", "add", f"h{n}", "type", "veth", "peer", "name", f"s{n}")
            for dev in (f"h{n}", f"s{n}"):
                sh(*run, "ip", "link", "set", dev, "up")
        done = subprocess.run((*run, sys.executable, "-c", IN_NAMESPACE, str(frames)), cwd=ROOT,
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(done.stderr)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(("ip", "netns", "del", ns), check=False, capture_output=True)
    rates = {}
    for name, (got, seconds) in result.items():
        rates[name] = got / seconds if seconds else 0.0
        print(f"{name:6}: {got:7} of {frames} frames arrived, {rates[name]:10,.0f} frames/s")
    if rates["bare"]:
        print(f"softswitch forwarding / bare AF_PACKET loop = {rates['switch'] / rates['bare']:.3f}"
              "  (BMv2 on the reference machine: ~0.09)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
