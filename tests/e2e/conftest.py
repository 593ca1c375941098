"""End-to-end fixtures: a Mininet lab (P4 switch + controller + hosts) per test module.

``P4FT_TARGET=softswitch|bmv2`` (default softswitch) is the switch of every lab. Skipped cleanly
without root, mnexec, or (for bmv2) simple_switch_grpc; a test that needs what only one target
has is marked ``@pytest.mark.target(NAME, reason=...)`` and skips on the other. Traffic runs in
the hosts with ``hostpkt.py``.
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


TARGETS = ("softswitch", "bmv2")


def e2e_target() -> str:
    target = os.environ.get("P4FT_TARGET", "softswitch")
    if target not in TARGETS:
        raise pytest.UsageError(f"P4FT_TARGET={target!r}: the e2e target is one of "
                                f"{', '.join(TARGETS)}")
    return target


def _unavailable(target: str) -> str | None:
    """Why no lab can run here, or None."""
    if os.geteuid() != 0:
        return "end-to-end tests need root (network namespaces)"
    if shutil.which("mnexec") is None:
        return "end-to-end tests need mnexec (Debian package mininet)"
    if target == "bmv2":
        from controller.lab.nodes import bmv2_binary

        if bmv2_binary() is None:
            return "P4FT_TARGET=bmv2: simple_switch_grpc is not on PATH and $BMV2_SWITCH is unset"
    return None


def pytest_collection_modifyitems(items):
    e2e = [item for item in items if "tests/e2e/" in str(item.fspath)]
    if not e2e:
        return
    target = e2e_target()
    reason = _unavailable(target)
    for item in e2e:
        item.add_marker(pytest.mark.e2e)
        only = item.get_closest_marker("target")
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
        elif only is not None and target not in only.args:
            item.add_marker(pytest.mark.skip(
                reason=f"{'/'.join(only.args)} only: {only.kwargs.get('reason', '')}"))


@pytest.fixture(scope="session")
def target() -> str:
    """The P4 target of every lab (P4FT_TARGET)."""
    return e2e_target()


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
