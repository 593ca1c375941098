"""The control socket: newline-delimited JSON between the CLI and a running controller."""

from __future__ import annotations

import asyncio
import stat

import pytest

from controller import cli
from controller.edges import control


async def _server(tmp_path, handlers=None, streams=None) -> control.ControlServer:
    server = control.ControlServer(tmp_path / "run" / "c.sock", handlers or {}, streams or {})
    await server.start()
    return server


async def test_request_gets_the_handlers_result_on_a_0600_socket(tmp_path):
    async def echo(request):
        return {"got": request["x"]}

    server = await _server(tmp_path, {"echo": echo})
    try:
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        result = await asyncio.to_thread(control.request, "echo", server.path, x=[1, 2])
        assert result == {"got": [1, 2]}
    finally:
        await server.close()
    assert not server.path.exists()


async def test_errors_come_back_as_control_errors(tmp_path):
    async def refuse(request):
        raise control.ControlError("flowtable ft is in use")

    async def crash(request):
        raise RuntimeError("bug")

    server = await _server(tmp_path, {"refuse": refuse, "crash": crash})
    try:
        with pytest.raises(control.ControlError, match="in use"):
            await asyncio.to_thread(control.request, "refuse", server.path)
        with pytest.raises(control.ControlError, match="internal error: bug"):
            await asyncio.to_thread(control.request, "crash", server.path)
        with pytest.raises(control.ControlError, match="unknown op"):
            await asyncio.to_thread(control.request, "nope", server.path)
    finally:
        await server.close()


async def test_a_bad_line_is_answered_and_the_connection_stays_usable(tmp_path):
    async def ping(request):
        return "pong"

    server = await _server(tmp_path, {"ping": ping})
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(b"not json\n[1]\n{\"op\": \"ping\"}\n")
        answers = [await reader.readline() for _ in range(3)]
        assert b"bad request" in answers[0] and b"bad request" in answers[1]
        assert answers[2] == b'{"ok":true,"result":"pong"}\n'
        writer.close()
    finally:
        await server.close()


async def test_stream_yields_events_until_the_server_ends_it(tmp_path):
    async def events(request):
        for i in range(3):
            yield {"type": "NEW", "n": i}

    server = await _server(tmp_path, streams={"monitor": events})
    try:
        got = await asyncio.to_thread(lambda: list(control.stream("monitor", server.path)))
        assert [e["n"] for e in got] == [0, 1, 2]
    finally:
        await server.close()


async def test_a_second_controller_on_the_same_socket_is_refused(tmp_path):
    server = await _server(tmp_path)
    try:
        with pytest.raises(OSError, match="already listening"):
            await _server(tmp_path)
    finally:
        await server.close()


def test_a_stale_socket_file_is_replaced(tmp_path):
    import socket

    path = tmp_path / "run" / "c.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # bound, never listening: what a killed controller leaves

    async def main():
        server = await _server(tmp_path)
        await server.close()

    asyncio.run(main())


@pytest.mark.parametrize("command", [["flows"], ["flowtables"], ["stats"], ["monitor"],
                                     ["ruleset", "list"]])
def test_cli_without_a_controller_says_so_and_exits_1(tmp_path, capsys, command):
    try:
        code = cli.main([*command, "--control", str(tmp_path / "none.sock")])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 1
    assert "no controller is running" in capsys.readouterr().err
