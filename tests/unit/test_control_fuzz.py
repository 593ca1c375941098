"""Fuzzing the control socket: whatever line a client sends, the daemon answers with one JSON
object (an error is one line, never an "internal error"), logs nothing at ERROR, and keeps
serving."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.edges import control
from controller.edges.daemon import Daemon
from tests.unit.test_control_requests import Session

OPS = ["ping", "snapshot", "ruleset", "ruleset_apply", "monitor", "nope", "__init__", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)
requests_ = st.fixed_dictionaries(
    {"op": st.sampled_from(OPS) | st.text(max_size=6) | json_values},
    optional={"switch": st.sampled_from(["r1", "r2", "r3"]) | json_values,
              "text": st.sampled_from(["flush ruleset\n", "table inet t { }\n"]) | json_values,
              "filename": st.text(max_size=8) | json_values,
              "types": st.lists(st.sampled_from(["NEW", "DESTROY"])) | json_values,
              "extra": json_values})
deep = st.builds(lambda n, open_, close: b'{"op":"ping","x":' + open_ * n + close * n + b"}",
                 st.integers(1, 3000), st.sampled_from([b"[", b'{"a":']),
                 st.sampled_from([b"]", b"}"]))
lines = (requests_.map(lambda r: json.dumps(r).encode()) | deep
         | st.binary(max_size=64).map(lambda b: b.replace(b"\n", b" ")))


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Session2(Session):
    def apply_ruleset(self, text: str, filename: str) -> str:
        if "flush" not in text:
            raise control.ControlError(f"{filename}:1:1: syntax error")
        return super().apply_ruleset(text, filename)


@pytest.fixture(scope="module")
def daemon_path(tmp_path_factory):
    """A Daemon with two sessions on an event loop of its own thread."""
    path = tmp_path_factory.mktemp("ctl") / "control.sock"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stop = asyncio.Event()
    daemon = Daemon([Session2("r1", conns=3), Session2("r2")], path)
    errors = Errors()
    logging.getLogger().addHandler(errors)
    running = asyncio.run_coroutine_threadsafe(daemon.run(stop), loop)
    try:
        while not daemon.ready:
            threading.Event().wait(0.01)
        yield path, errors
    finally:
        loop.call_soon_threadsafe(stop.set)
        running.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        logging.getLogger().removeHandler(errors)


def _answer(path: Path, line: bytes) -> dict:
    """The first line the daemon answers to ``line``."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(line + b"\n")
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"no answer to {line[:200]!r}"
            data += chunk
    return json.loads(data.split(b"\n", 1)[0])


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=lines)
def test_any_line_gets_a_one_line_answer_and_no_traceback(daemon_path, line):
    path, errors = daemon_path
    errors.records.clear()
    answer = _answer(path, line)
    assert isinstance(answer.get("ok"), bool), answer
    if not answer["ok"]:
        assert isinstance(answer["error"], str) and "\n" not in answer["error"]
        assert "internal error" not in answer["error"], (line[:300], answer)
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert control.request("ping", path)["ready"]  # still serving
