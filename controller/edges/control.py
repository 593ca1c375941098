"""The control socket between a running controller and the CLI: newline-delimited JSON.

A request is one line ``{"op": NAME, ...arguments}`` (checked by ``control_requests``: its depth,
and the arguments its op takes); the answer is one line ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``. A result with long lists (a snapshot's connections) comes
as a :class:`Paged` answer: its first line holds everything but those lists and says how many
``{"path": [...], "items": [...]}`` lines of at most PAGE items follow, so no line grows with
the table and the event loop gets its turn between pages; ``request()`` puts it back together.
A streaming op (``monitor``) answers ``{"ok": true}`` and then one event per line until the
client hangs up. The socket is a unix socket with mode 0600: whoever may talk to it may change
the ruleset.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from controller.edges import control_requests as requests

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(os.environ.get("P4FT_CONTROL", "/run/p4ft/control.sock"))
MAX_LINE = 16 * 1024 * 1024  # the longest request line (a ruleset to apply)
PAGE = 1000  # list items per line of a Paged answer (a page of connections is ~350 KB)
BACKLOG = socket.SOMAXCONN
"""Connections waiting to be accepted: asyncio's default of 100 refuses (EAGAIN) a burst of CLI
calls past it, while the loop is busy; SOMAXCONN asks for the most, and the kernel caps it at
net.core.somaxconn (4096 by default), so the administrator's setting decides."""

Request = dict[str, Any]
Handler = Callable[[Request], Awaitable[Any]]


class EventStream(Protocol):
    """What a streaming op returns: subscribed when created (before the "ok" answer), iterated
    for the events, ``aclose()``d when the client is done (an async generator is one)."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


Streamer = Callable[[Request], EventStream]


class ControlError(Exception):
    """The controller answered with an error (the message is its text)."""


@dataclass(frozen=True, slots=True)
class Paged:
    """A handler's result whose lists at ``paths`` (keys from the top) go out PAGE items per
    line after the rest; the client sees the whole ``result``."""

    result: dict[str, Any]
    paths: Sequence[tuple[str, ...]]


class NoController(ControlError):
    """Nobody listens on the control socket."""


# -- server (the daemon's edge) ---------------------------------------------------------------


class ControlServer:
    """Serves ``handlers`` (one answer) and ``streams`` (many lines) on a unix socket."""

    def __init__(self, path: Path, handlers: dict[str, Handler],
                 streams: dict[str, Streamer]) -> None:
        self.path = path
        self.handlers = handlers
        self.streams = streams
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if _listening(self.path):
                raise OSError(f"{self.path}: a controller is already listening there")
            self.path.unlink()
        old_mask = os.umask(0o177)  # created 0600 from the start, no window with a wider mode
        try:
            self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE,
                                                           backlog=BACKLOG)
        finally:
            os.umask(old_mask)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # asyncio's LimitOverrunError, as readline raises it
                    await _write(writer, {"ok": False, "error": "bad request: longer than "
                                          f"{MAX_LINE} bytes"})
                    break
                if not line or not await self._answer(line, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            writer.close()

    async def _answer(self, line: bytes, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is done (after a stream)."""
        try:
            request = requests.decode(line)
            op = request["op"]
            if op in self.streams or op in self.handlers:
                requests.check(request)
        except requests.BadRequest as exc:
            await _write(writer, {"ok": False, "error": f"bad request: {exc}"})
            return True
        if op in self.streams:
            try:
                events = self.streams[op](request)  # subscribed from here on
            except ControlError as exc:
                await _write(writer, {"ok": False, "error": str(exc)})
                return True
            await self._stream(events, reader, writer)
            return False
        handler = self.handlers.get(op)
        if handler is None:
            await _write(writer, {"ok": False, "error": f"unknown op {op!r}"})
            return True
        try:
            result = await handler(request)
        except ControlError as exc:
            await _write(writer, {"ok": False, "error": str(exc)})
            return True
        except Exception as exc:  # a bug in one request must not take the controller down
            log.exception("control op %s failed", op)
            await _write(writer, {"ok": False, "error": f"{op}: internal error: {exc}"})
            return True
        if isinstance(result, Paged):
            await _write_paged(writer, result)
        else:
            await _write(writer, {"ok": True, "result": result})
        return True

    @staticmethod
    async def _stream(events: EventStream, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        """"ok", then the events until they end or the client hangs up. A client sends nothing
        after its request, so anything on its side (EOF, above all) ends the stream at once;
        without watching, a quiet stream would notice only at its next event's write."""
        task = asyncio.current_task()
        assert task is not None
        streaming = True

        def hung_up(_: asyncio.Future[bytes]) -> None:
            if streaming:
                task.cancel()

        watch = asyncio.ensure_future(reader.read(1))
        watch.add_done_callback(hung_up)
        try:
            await _write(writer, {"ok": True})
            async for event in events:
                await _write(writer, event)
        except asyncio.CancelledError:
            if not (watch.done() and not watch.cancelled()) or task.uncancel() > 0:
                raise  # not (only) the hang-up: the server is stopping
        finally:
            streaming = False
            watch.cancel()
            await events.aclose()


async def _write(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


async def _write_paged(writer: asyncio.StreamWriter, paged: Paged) -> None:
    """The result without its long lists, then each list PAGE items per line."""
    head = paged.result
    pages: list[tuple[tuple[str, ...], list[Any]]] = []
    for path in paged.paths:
        head, items = _detached(head, path)
        pages += [(path, items[i:i + PAGE]) for i in range(0, len(items), PAGE)]
    await _write(writer, {"ok": True, "result": head, "pages": len(pages)})
    for path, items in pages:
        await _write(writer, {"path": list(path), "items": items})


def _detached(tree: dict[str, Any], path: tuple[str, ...]) -> tuple[dict[str, Any], list[Any]]:
    """``tree`` with the list at ``path`` emptied (the dicts on the way copied: the handler's
    own objects stay as they are), and that list; no list there: ``tree`` and []."""
    top = node = dict(tree)
    for name in path[:-1]:
        child = node.get(name)
        if not isinstance(child, dict):
            return tree, []
        node[name] = node = dict(child)
    items = node.get(path[-1])
    if not isinstance(items, list):
        return tree, []
    node[path[-1]] = []
    return top, items


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


# -- client (the CLI's side; blocking, no asyncio needed) -------------------------------------


def _connect(path: Path, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NoController(f"no controller is running (nothing listens on {path}); "
                           "start one with: p4ft controller --config FILE") from None
    except OSError as exc:
        sock.close()
        raise NoController(f"cannot reach the controller at {path}: {exc}") from None
    return sock


def request(op: str, path: Path = DEFAULT_PATH, timeout: float = 30.0, **args: Any) -> Any:
    """Send one request and return its result; ControlError with the controller's message."""
    line = _request_line(op, args)
    with _connect(path, timeout) as sock:
        try:
            sock.sendall(line)
            lines = _lines(sock)
            answer = json.loads(next(lines))
            if not answer.get("ok"):
                raise ControlError(answer.get("error", "unknown error"))
            result = answer.get("result")
            for _ in range(answer.get("pages", 0)):
                page = json.loads(next(lines))
                holder = result
                for name in page["path"][:-1]:
                    holder = holder[name]
                holder[page["path"][-1]].extend(page["items"])
        except StopIteration:
            raise ControlError("the controller closed the connection without answering "
                               "in full") from None
        except OSError as exc:  # reset, timed out
            raise ControlError(f"talking to the controller at {path}: {exc}") from None
    return result


def _request_line(op: str, args: dict[str, Any]) -> bytes:
    """The request as one line; ControlError (before anything is sent) when the controller
    would refuse it as too long."""
    line = json.dumps({"op": op, **args}).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ControlError(f"{op}: the request is {len(line)} bytes, over the control "
                           f"socket's limit of {MAX_LINE}")
    return line


def wait_ready(path: Path, timeout: float, alive: Callable[[], bool]) -> None:
    """Block until the controller on ``path`` reports itself ready in ``ping`` (every switch
    connected, the metrics endpoint listening). ``alive`` says whether its process still runs;
    ControlError when it exits first or is not ready within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ControlError):
            if request("ping", path, timeout=timeout).get("ready"):
                return
        if not alive():
            raise ControlError("the controller exited before it was ready")
        if time.monotonic() > deadline:
            raise ControlError(f"the controller was not ready within {timeout:.0f} s")
        time.sleep(0.05)


def stream(op: str, path: Path = DEFAULT_PATH, **args: Any) -> Iterator[dict[str, Any]]:
    """Send a streaming request; returns once the controller accepted it (``monitor``:
    subscribed, so no later event is missed), then yields its messages until it hangs up."""
    line = _request_line(op, args)
    sock = _connect(path, 10.0)
    try:
        sock.sendall(line)
        lines = _lines(sock)
        first = json.loads(next(lines, b'{"ok": false, "error": "no answer"}'))
        if not first.get("ok"):
            raise ControlError(first.get("error", "unknown error"))
    except OSError as exc:
        sock.close()
        raise ControlError(f"talking to the controller at {path}: {exc}") from None
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return _messages(sock, lines)


def _messages(sock: socket.socket, lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    with sock:
        try:
            for line in lines:
                yield json.loads(line)
        except OSError as exc:  # the controller's end was reset
            raise ControlError(f"the controller closed the stream: {exc}") from None


def _lines(sock: socket.socket) -> Iterator[bytes]:
    buffer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line


# -- CLI helpers (the subcommands that talk to a controller share these) ----------------------


def add_client_arguments(parser: Any, switch: bool = True) -> None:
    parser.add_argument("--control", type=Path, default=DEFAULT_PATH, metavar="PATH",
                        help=f"the controller's control socket (default {DEFAULT_PATH}, "
                             "or $P4FT_CONTROL)")
    if switch:
        parser.add_argument("--switch", metavar="NAME",
                            help="only this switch of a controller that drives several")


def cli_request(args: Any, op: str, **kwargs: Any) -> Any:
    """``request`` for a subcommand: raises SystemExit(1) with the message on stderr."""
    if getattr(args, "switch", None) is not None:
        kwargs["switch"] = args.switch
    try:
        return request(op, args.control, **kwargs)
    except ControlError as exc:
        import sys

        print(f"p4ft {getattr(args, 'command', op)}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
