"""``p4ft shell``: the p4runtime-shell command line it runs, against a real switch."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from controller.commands import shell
from controller.edges.pipeline_files import DEVICE_CONFIG, P4INFO
from tests.ndo.p4rt_support import DEVICE_ID, pipeline, running_target


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    shell.register(parser.add_subparsers())
    return parser.parse_args(["shell", *argv])


@pytest.fixture
def shell_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    monkeypatch.setattr(shell, "SHELL_VENV", tmp_path)
    return tmp_path / "bin" / "python"


async def test_a_switch_without_pipeline_gets_ours_pushed(shell_venv: Path) -> None:
    async with running_target() as target:
        argv = await _command(args("--grpc-addr", target.address, "--device-id", str(DEVICE_ID)))
    assert argv[:3] == [str(shell_venv), "-m", "p4runtime_sh"]
    assert argv[3:] == ["--grpc-addr", target.address, "--device-id", str(DEVICE_ID),
                        "--election-id", "0,2", "--config", f"{P4INFO},{DEVICE_CONFIG}"]


async def test_a_running_pipeline_is_attached_to_not_replaced(shell_venv: Path) -> None:
    async with running_target() as target:
        driver = target.driver()
        await driver.start()
        base = ("--grpc-addr", target.address, "--device-id", str(DEVICE_ID))
        attach = await _command(args(*base, "--election-id", "0,0"))
        forced = await _command(args(*base, "--push"))
        await driver.close()
    assert "--config" not in attach and attach[-1] == "0,0"
    assert forced[-2:] == ["--config", f"{P4INFO},{DEVICE_CONFIG}"]


async def test_the_router_config_names_the_switch(shell_venv: Path, tmp_path: Path) -> None:
    async with running_target() as target:
        config = tmp_path / "router.toml"
        config.write_text(f'[switch]\naddress = "{target.address}"\ndevice_id = {DEVICE_ID}\n'
                          '[[ports]]\nid = 1\nname = "eth0"\nmac = "02:00:00:00:01:fe"\n'
                          'addresses = ["10.0.1.254/24"]\n')
        argv = await _command(args("--config", str(config)))
    assert argv[4:7] == [target.address, "--device-id", str(DEVICE_ID)]


def test_missing_shell_venv_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shell, "SHELL_VENV", tmp_path / "nowhere")
    assert shell.run(args()) == 1
    assert "nowhere is missing: run scripts/setup.sh" in capsys.readouterr().err


async def test_an_unreachable_switch_or_bad_election_id_is_a_clear_error(
        shell_venv: Path) -> None:
    async with running_target() as target:
        address = target.address
        with pytest.raises(shell.ShellError, match="HI,LO"):
            await _command(args("--grpc-addr", address, "--election-id", "2"))
        with pytest.raises(shell.ShellError, match="NOT_FOUND"):
            await _command(args("--grpc-addr", address, "--device-id", "99"))
    with pytest.raises(shell.ShellError, match="cannot reach the switch"):
        await _command(args("--grpc-addr", address, "--device-id", str(DEVICE_ID)))


async def _command(namespace: argparse.Namespace) -> list[str]:
    """shell_command() does blocking gRPC: run it off the loop that serves the switch."""
    return await asyncio.to_thread(shell.shell_command, namespace)


def test_pipeline_files_default_to_the_trees_build() -> None:
    assert pipeline().device_config == DEVICE_CONFIG.read_bytes()
