"""End-to-end fixtures: a Mininet lab (softswitch + controller + hosts) per test module.

Skipped cleanly without root or mnexec. Traffic runs in the hosts with ``hostpkt.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HOSTPKT = str(Path(__file__).with_name("hostpkt.py"))

pytestmark = pytest.mark.e2e


def pytest_collection_modifyitems(items):
    reason = None
    if os.geteuid() != 0:
        reason = "end-to-end tests need root (network namespaces)"
    elif shutil.which("mnexec") is None:
        reason = "end-to-end tests need mnexec (Debian package mininet)"
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def start(lab, host: str, *args: str):
    """hostpkt.py MODE ARGS in ``host``, running in the background."""
    return lab.host(host).popen([sys.executable, HOSTPKT, *args], text=True)


def serve(lab, host: str, *args: str):
    """A server mode of hostpkt.py, returned once it listens."""
    proc = start(lab, host, *args)
    assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
    return proc


def run(lab, host: str, *args: str, timeout: float = 30) -> dict | list:
    proc = start(lab, host, *args)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


TIMEOUT = 30.0
"""How long a test waits for a condition before it fails: a bound for failures only (a passing
test goes on as soon as the condition holds), so generous enough for a loaded machine."""


class Sniffer:
    """Capture on a host's interface from construction (capture is on when it returns) until
    ``result()``; ``wait(predicate)`` waits for frames that arrive on their own time (through the
    controller, an ICMP error), since a loaded machine sets no fixed window."""

    def __init__(self, lab, host: str, port: int) -> None:
        iface = lab.host(host).defaultIntf().name
        self.proc = lab.host(host).popen([sys.executable, HOSTPKT, "sniff", iface, str(port)],
                                         stdin=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "READY", self.proc.stderr.read()
        self.frames: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.frames.append(json.loads(line))

    def wait(self, predicate, timeout: float = TIMEOUT) -> bool:
        return bool(wait_for(lambda: predicate(list(self.frames)), timeout, interval=0.05))

    def result(self) -> list[dict]:
        """Every frame that crossed the interface before this call."""
        self.proc.stdin.close()
        self._reader.join(60)
        assert self.proc.wait(10) == 0, self.proc.stderr.read()
        return list(self.frames)


def wait_for(predicate, timeout: float = TIMEOUT, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def conn_to(lab, dport: int) -> dict | None:
    for conn in lab.flows():
        if conn["original"].get("dport") == dport:
            return conn
    return None
