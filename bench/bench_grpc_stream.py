"""What one P4Runtime stream message costs in grpc.aio, apart from everything else (not a test).

Every punt crosses the StreamChannel twice (a PacketIn down, a PacketOut up) and the protocol
has one StreamMessage per packet, so this is the floor of a punt's cost in the controller and
in the softswitch. A server process streams N messages of a punted frame's size to a client and
reads N from it, as the softswitch and the controller do; each side's CPU time per message is
printed (both processes are timed, all their threads: gRPC's poller thread does the transport).

    .venv/bin/python bench/bench_grpc_stream.py [-n 20000] [--size 100] [--loop asyncio]

Both processes run on the loop the controller and the softswitch use (``--loop uvloop``, the
default) or on asyncio's own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.edges import eventloop

METHOD = "/bench.Stream/Channel"
LOOPS = {"uvloop": eventloop.run, "asyncio": asyncio.run}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def serve(port: int, count: int, size: int) -> None:
    """The switch's side: on b"down" stream ``count`` messages, on b"up" read that many."""
    message = b"x" * size

    async def channel(requests: AsyncIterator[bytes], _context) -> AsyncIterator[bytes]:
        async for request in requests:
            if request == b"down":
                for _ in range(count):
                    yield message
            elif request == b"up":
                for _ in range(count):
                    await anext(requests)
                yield b"done"

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Stream", {"Channel": grpc.stream_stream_rpc_method_handler(channel)})
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("READY", flush=True)
    await server.wait_for_termination()


async def measure(port: int, server_pid: int, count: int, size: int) -> None:
    """The controller's side, one direction after the other."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(METHOD)()
        for direction in ("down", "up"):
            own, theirs, start = (cpu_seconds(os.getpid()), cpu_seconds(server_pid),
                                  time.perf_counter())
            await call.write(direction.encode())
            if direction == "down":
                for _ in range(count):
                    await call.read()
            else:
                message = b"x" * size
                for _ in range(count):
                    await call.write(message)
                await call.read()
            elapsed = time.perf_counter() - start
            own = (cpu_seconds(os.getpid()) - own) / count
            theirs = (cpu_seconds(server_pid) - theirs) / count
            print(f"{direction:>4} ({'PacketIn' if direction == 'down' else 'PacketOut'}): "
                  f"{count / elapsed:7,.0f} msg/s; CPU per message: reader "
                  f"{1e6 * (own if direction == 'down' else theirs):5.1f} µs, writer "
                  f"{1e6 * (theirs if direction == 'down' else own):5.1f} µs")
        await call.done_writing()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=100, help="bytes per message")
    parser.add_argument("--loop", choices=sorted(LOOPS), default="uvloop")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    run = LOOPS[args.loop]
    if args.serve is not None:
        run(serve(args.serve, args.count, args.size))
        return 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "-n",
                               str(args.count), "--size", str(args.size), "--loop", args.loop],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "READY"
        run(measure(port, server.pid, args.count, args.size))
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
