"""``p4ft softswitch``: simple_switch_grpc's flags, a start-up line, clean shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from finsy.proto import p4r, p4r_grpc

from controller import cli
from controller.edges.pipeline_files import DEVICE_CONFIG, P4INFO

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str):
    from controller.commands.softswitch import _split_rest

    args = cli.build_parser().parse_args(["softswitch", *argv])
    return args, _split_rest(args)


def test_target_options_after_double_dash_like_simple_switch_grpc() -> None:
    args, (program, extra) = parse("-i", "1@veth1", "-i", "2@veth2", "--device-id", "3",
                                   "prog.json", "--", "--grpc-server-addr", "127.0.0.1:9560",
                                   "--cpu-port", "64")
    assert args.interface == ["1@veth1", "2@veth2"] and args.device_id == 3
    assert program == Path("prog.json")
    assert (extra.grpc_addr, extra.cpu_port) == ("127.0.0.1:9560", 64)


def test_target_options_before_double_dash_and_defaults() -> None:
    args, (program, extra) = parse("--no-p4", "--grpc-addr", "127.0.0.1:1")
    assert program is None and args.no_p4
    assert (args.grpc_addr, args.cpu_port, args.device_id) == ("127.0.0.1:1", None, 0)
    assert extra.grpc_addr is None


@pytest.mark.parametrize(("argv", "message"), [
    (["-i", "veth1", "--no-p4"], "PORT@IFNAME"),
    (["--no-p4", "--cpu-port", "511"], "drop port"),
    (["--no-p4", "prog.json"], "not both"),
    (["a.json", "b.json"], "one JSON program"),
    (["--no-p4", "--", "--bogus", "9090"], "unknown target option"),
    (["--no-p4", "-i", "1@a", "-i", "1@b"], "share a port number"),
])
def test_bad_command_lines_exit_2_with_a_message(argv, message, capsys) -> None:
    assert cli.main(["softswitch", *argv]) == 2
    assert message in capsys.readouterr().err


@contextlib.asynccontextmanager
async def softswitch_process(*argv: str) -> AsyncIterator[p4r_grpc.P4RuntimeStub]:
    """``p4ft softswitch ARGV`` on an ephemeral port: a stub to it, then SIGTERM must exit 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.cli", "softswitch", *argv, "--",
        "--grpc-server-addr", "127.0.0.1:0", cwd=ROOT, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(10):
            while (match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line := (
                    await proc.stderr.readline()).decode())) is None:
                assert line, "exited before listening"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{match.group(1)}") as channel:
            yield p4r_grpc.P4RuntimeStub(channel)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serves_p4runtime_until_sigterm() -> None:
    async with softswitch_process("--no-p4", "--device-id", "4") as stub:
        assert (await stub.Capabilities(p4r.CapabilitiesRequest())).p4runtime_api_version
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.GetForwardingPipelineConfig(
                p4r.GetForwardingPipelineConfigRequest(device_id=4))
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_program_and_p4info_from_the_command_line_are_running() -> None:
    async with softswitch_process("--device-id", "1", "--p4info",
                                  str(P4INFO), str(DEVICE_CONFIG)) as stub:
        response = await stub.GetForwardingPipelineConfig(p4r.GetForwardingPipelineConfigRequest(
            device_id=1, response_type=p4r.GetForwardingPipelineConfigRequest.P4INFO_AND_COOKIE))
        assert "FtIngress.flow_v4" in [t.preamble.name for t in response.config.p4info.tables]


async def test_bmv2_only_options_are_accepted_with_a_warning(tmp_path) -> None:
    log_file = tmp_path / "softswitch.log"
    async with softswitch_process("--no-p4", "--thrift-port", "9090", "--log-console",
                                  "--log-file", str(log_file)) as stub:
        assert (await stub.Capabilities(p4r.CapabilitiesRequest())).p4runtime_api_version
    assert "--thrift-port is a simple_switch_grpc option the softswitch ignores" in (
        log_file.read_text())


def test_a_p4info_that_is_neither_text_nor_binary_exits_2(tmp_path, capsys) -> None:
    program, p4info = tmp_path / "p.json", tmp_path / "p.p4info"
    program.write_text("{}")
    p4info.write_bytes(b"\xff\xff\xff")
    assert cli.main(["softswitch", "--p4info", str(p4info), str(program)]) == 2
    assert "not a P4Info" in capsys.readouterr().err


def test_a_program_that_does_not_load_exits_1(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert cli.main(["softswitch", str(bad), "--", "--grpc-server-addr", "127.0.0.1:0"]) == 1
    assert "cannot load the program" in capsys.readouterr().err
