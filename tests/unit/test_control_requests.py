"""Control-socket requests: shapes and depth checked before a handler runs, long results paged,
a listen backlog a burst of clients fits in."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from controller.edges import control
from controller.edges import control_requests as requests
from controller.edges.daemon import Daemon


class Session:
    """The parts of a SwitchSession the Daemon's handlers use."""

    def __init__(self, name: str, conns: int = 0) -> None:
        self.name = name
        self.conns = [{"id": i, "original": {"dport": i}} for i in range(conns)]
        self.applied: list[tuple[str, str]] = []
        self.router = SimpleNamespace(ruleset=SimpleNamespace(format=lambda: "flush ruleset\n"))

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def snapshot(self) -> dict:
        return {"conns": self.conns, "stats": {"connected": True}}

    def apply_ruleset(self, text: str, filename: str) -> str:
        self.applied.append((text, filename))
        return text

    def subscribe(self, queue, types=None) -> None:
        pass

    def unsubscribe(self, queue) -> None:
        pass


def _raw(path: Path, line: bytes) -> list[dict]:
    """Send one raw line; every line the controller answers before it stops talking."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(line + b"\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
    return [json.loads(part) for part in data.splitlines()]


@pytest.mark.parametrize(("line", "error"), [
    (b'{"op":"monitor","switch":[1]}', "monitor: 'switch' must be a string, not an array"),
    (b'{"op":"snapshot","switch":{"a":1}}', "'switch' must be a string, not an object"),
    (b'{"op":"ruleset","switch":5}', "'switch' must be a string, not a number"),
    (b'{"op":"ruleset_apply","text":"x","filename":5}', "'filename' must be a string"),
    (b'{"op":"ruleset_apply"}', "ruleset_apply: missing 'text'"),
    (b'{"op":"monitor","types":["NEW",3]}',
     "'types' must be an array of strings; item 1 is a number"),
    (b'{"op":"snapshot","swtich":"r1"}', "snapshot: unknown argument 'swtich'"),
    (b'{"op":"ping","x":' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper than 16"),
    (b"[" * 100000, "nested deeper than 16"),
    (b'{"op": [}', "Expecting value"),
    (b'{"op":"\xff"}', "can't decode byte 0xff"),
])
def test_a_malformed_request_gets_an_answer_naming_what_is_wrong(line, error):
    with pytest.raises(requests.BadRequest, match=error):
        requests.check(requests.decode(line))


def test_brackets_inside_strings_do_not_count_as_depth():
    text = '"[[[[[[[[[[[[[[[[[[[[[[[[[[[ \\" {{{{{{{{{{{{{{{{{{{{{{{"'
    line = f'{{"op":"ruleset_apply","text":{text}}}'.encode()
    assert requests.decode(line)["text"].startswith("[[[")
    assert not requests.too_deep(b"[" * 16 + b"]" * 16)
    assert requests.too_deep(b"[" * 17 + b"]" * 17)


def test_an_op_without_a_declared_shape_is_checked_for_switch_only():
    requests.check({"op": "echo", "x": [1, [2]], "switch": "r1"})
    with pytest.raises(requests.BadRequest, match="'switch' must be a string"):
        requests.check({"op": "echo", "switch": ["r1"]})


async def _daemon(tmp_path: Path, sessions) -> tuple[Daemon, asyncio.Task, asyncio.Event]:
    stop = asyncio.Event()
    daemon = Daemon(sessions, tmp_path / "control.sock")
    task = asyncio.create_task(daemon.run(stop))
    while not daemon.ready:
        await asyncio.sleep(0.01)
    return daemon, task, stop


async def test_the_daemon_answers_bad_shapes_without_an_internal_error(tmp_path, caplog):
    sessions = [Session("r1"), Session("r2")]
    daemon, task, stop = await _daemon(tmp_path, sessions)
    path = daemon.control.path
    try:
        for line in (b'{"op":"monitor","switch":[1]}', b'{"op":"snapshot","switch":[1]}',
                     b'{"op":"ruleset","switch":{}}', b'{"op":"ruleset_apply","switch":[],'
                     b'"text":"x"}', b'{"op":"ruleset_apply","switch":"r1","text":"x",'
                     b'"filename":5}', b'{"op":"ping","x":' + b"[" * 3000 + b"]" * 3000 + b"}"):
            answers = await asyncio.to_thread(_raw, path, line)
            assert len(answers) == 1 and not answers[0]["ok"], answers
            assert answers[0]["error"].startswith("bad request: "), answers
        assert not sessions[0].applied
        ok = await asyncio.to_thread(control.request, "ruleset_apply", path, switch="r1",
                                     text="flush ruleset\n", filename="f.nft")
        assert ok == {"r1": "flush ruleset\n"} and sessions[0].applied == [
            ("flush ruleset\n", "f.nft")]
    finally:
        stop.set()
        await task
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_a_large_snapshot_comes_a_page_per_line_and_request_reassembles_it(tmp_path):
    sessions = [Session("r1", conns=2 * control.PAGE + 17), Session("r2", conns=3)]
    daemon, task, stop = await _daemon(tmp_path, sessions)
    try:
        lines = await asyncio.to_thread(_raw, daemon.control.path, b'{"op":"snapshot"}')
        head, pages = lines[0], lines[1:]
        assert head["ok"] and head["pages"] == len(pages) == 4
        assert head["result"]["r1"]["conns"] == [] and head["result"]["r1"]["stats"]
        assert [len(p["items"]) for p in pages] == [control.PAGE, control.PAGE, 17, 3]
        assert [p["path"] for p in pages] == [["r1", "conns"]] * 3 + [["r2", "conns"]]
        snap = await asyncio.to_thread(control.request, "snapshot", daemon.control.path)
        assert [c["id"] for c in snap["r1"]["conns"]] == list(range(2 * control.PAGE + 17))
        assert snap["r2"]["conns"] == sessions[1].conns
        assert sessions[0].snapshot()["conns"]  # the session's own list is left alone
    finally:
        stop.set()
        await task


def test_a_burst_of_clients_beyond_asyncios_default_backlog_is_queued(tmp_path):
    """While the loop is busy nothing is accepted: 500 connects must wait in the backlog
    (asyncio's default of 100 refuses the 101st with EAGAIN)."""
    loop = asyncio.new_event_loop()
    server = control.ControlServer(tmp_path / "c.sock", {}, {})
    loop.run_until_complete(server.start())
    clients = []
    try:
        for _ in range(500):  # the loop does not run: no accept() happens meanwhile
            sock = socket.socket(socket.AF_UNIX)
            sock.setblocking(False)
            clients.append(sock)
            sock.connect(str(server.path))  # BlockingIOError once the backlog is full
    finally:
        for sock in clients:
            sock.close()
        loop.run_until_complete(server.close())
        loop.close()


async def test_a_line_over_the_limit_is_answered_before_the_connection_closes(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(control, "MAX_LINE", 1000)
    server = control.ControlServer(tmp_path / "c.sock", {}, {})
    await server.start()
    try:
        answers = await asyncio.to_thread(_raw, server.path, b'{"op":"' + b"x" * 5000 + b'"}')
        assert answers == [{"ok": False, "error": "bad request: longer than 1000 bytes"}]
    finally:
        await server.close()


async def test_a_monitor_client_that_hangs_up_is_unsubscribed_without_an_event(tmp_path,
                                                                               caplog):
    """A quiet stream notices its client left at once (before, only at the next event's
    write; meanwhile its task was garbage-collected pending, an ERROR in the log)."""
    session = Session("r1")
    queues: set = set()
    session.subscribe = lambda queue, types=None: queues.add(queue)
    session.unsubscribe = queues.discard
    daemon, task, stop = await _daemon(tmp_path, [session])
    try:
        reader, writer = await asyncio.open_unix_connection(str(daemon.control.path))
        writer.write(b'{"op":"monitor"}\n')
        assert json.loads(await reader.readline()) == {"ok": True}
        assert len(queues) == 1
        writer.close()
        for _ in range(500):
            if not queues:
                break
            await asyncio.sleep(0.01)
        assert not queues
    finally:
        stop.set()
        await task
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_a_request_over_the_limit_is_refused_by_the_client_before_sending(tmp_path,
                                                                          monkeypatch, capsys):
    from controller import cli

    monkeypatch.setattr(control, "MAX_LINE", 1000)
    ruleset = tmp_path / "big.nft"
    ruleset.write_text("# " + "x" * 2000 + "\n")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["ruleset", "apply", str(ruleset), "--control", str(tmp_path / "none")])
    assert exit_.value.code == 1
    assert "over the control socket's limit of 1000" in capsys.readouterr().err


async def test_a_controller_that_resets_mid_answer_is_a_control_error(tmp_path):
    async def reset(reader, writer):
        await reader.readline()
        writer.transport.abort()

    path = tmp_path / "c.sock"
    server = await asyncio.start_unix_server(reset, str(path))
    try:
        with pytest.raises(control.ControlError, match=r"without answering|talking to"):
            await asyncio.to_thread(control.request, "snapshot", path)
    finally:
        server.close()
