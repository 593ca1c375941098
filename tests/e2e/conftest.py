"""End-to-end fixtures: a Mininet lab (softswitch + controller + hosts) per test module.

Skipped cleanly without root or mnexec. Traffic runs in the hosts with ``hostpkt.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
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


class Sniffer:
    """Capture on a host's interface while a block of traffic runs."""

    def __init__(self, lab, host: str, port: int, seconds: float) -> None:
        iface = lab.host(host).defaultIntf().name
        self.proc = start(lab, host, "sniff", iface, str(seconds), str(port))
        assert self.proc.stdout.readline().strip() == "READY"

    def result(self) -> list[dict]:
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return json.loads(out)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.2):
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
