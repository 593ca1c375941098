"""``p4ft ruleset check FILE``: normalized output and exit 0, or FILE:LINE:COL on stderr and 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller import cli
from controller.netfilter.ruleset import loads


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["ruleset", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_ruleset_prints_normalized_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ok.nft"
    path.write_text(
        "table inet x { flowtable f { hook ingress priority 0; devices = { eth0, eth1 }; } "
        "chain y { type filter hook forward priority 0; policy accept; "
        "ip protocol tcp flow offload @f; counter packets 0 bytes 0 } }"
    )
    code, out, err = check(capsys, str(path))
    assert (code, err) == (0, "")
    assert "\t\tip protocol tcp flow add @f\n" in out
    assert loads(out) == loads(path.read_text())


def test_invalid_ruleset_prints_file_line_col_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.nft"
    path.write_text("table ip t {\n\tchain c {\n\t\ttype filter hook input priority 0;\n"
                    "\t\tflow add @f\n\t}\n}\n")  # fmt: skip
    code, out, err = check(capsys, str(path))
    assert (code, out) == (1, "")
    assert err == (
        f"{path}:4:3: Could not process rule: No such file or directory "
        "(flowtable 'f' does not exist in table ip t)\n"
    )


def test_json_output_and_json_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "r.nft"
    src.write_text("table ip t { chain c { type filter hook forward priority 0; accept } }")
    code, out, _ = check(capsys, "--json", str(src))
    assert code == 0
    as_json = tmp_path / "r.json"
    as_json.write_text(out)
    assert json.loads(out)["nftables"][0] == {"metainfo": {"json_schema_version": 1}}
    code, out2, _ = check(capsys, str(as_json))
    assert code == 0 and loads(out2) == loads(src.read_text())


def test_unreadable_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.nft"
    code, out, err = check(capsys, str(missing))
    assert (code, out) == (1, "")
    assert err.startswith(f"{missing}: cannot read:")


def test_ruleset_without_action_lists_the_running_ruleset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like ``nft list ruleset``; with no controller running that is a clear error."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["ruleset", "--control", str(tmp_path / "none.sock")])
    assert exc.value.code == 1
    assert "controller" in capsys.readouterr().err


def test_check_with_config_refuses_a_device_the_switch_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config ROUTER.toml``: a flowtable device that is no port of the switch is an error at
    FILE:LINE:COL, as nft refuses a missing device."""
    config = tmp_path / "router.toml"
    config.write_text(
        '[[ports]]\nid = 1\nname = "eth0"\nmac = "00:00:00:00:01:fe"\n'
        'addresses = ["10.0.1.254/24"]\n'
    )
    path = tmp_path / "r.nft"
    path.write_text(
        "table inet filter {\n"
        "    flowtable ft { hook ingress priority 0; devices = { eth0, eth9 }; }\n"
        "}\n"
    )
    code, _, err = check(capsys, "--config", str(config), str(path))
    assert code == 1 and err.startswith(f"{path}:2:") and "no device eth9" in err
    code, out, _ = check(capsys, str(path))  # without the switch: nft -c syntax only
    assert code == 0 and "eth9" in out
