"""flowtable.p4's pipeline comes from p4src/build/ only; without it, a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import cli
from controller.edges import pipeline_files
from controller.edges.pipeline_files import NoPipeline, load_pipeline

REPO = Path(__file__).resolve().parents[2]


def test_the_pipeline_is_p4cs_output_in_p4src_build() -> None:
    pipeline = load_pipeline()
    assert pipeline.device_config == (REPO / "p4src/build/flowtable.json").read_bytes()
    assert "FtIngress.flow_v4" in [t.preamble.name for t in pipeline.p4info.tables]


@pytest.fixture
def empty_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(pipeline_files, "BUILD_DIR", tmp_path)
    monkeypatch.setattr(pipeline_files, "P4INFO", tmp_path / "flowtable.p4info.txtpb")
    monkeypatch.setattr(pipeline_files, "DEVICE_CONFIG", tmp_path / "flowtable.json")
    return tmp_path


def test_a_missing_build_names_the_import_script(empty_build: Path) -> None:
    with pytest.raises(NoPipeline, match=r"flowtable\.p4info\.txtpb or flowtable\.json.*"
                                         r"scripts/import-p4build\.sh"):
        load_pipeline()
    (empty_build / "flowtable.p4info.txtpb").write_text("")
    with pytest.raises(NoPipeline, match=r"has no flowtable\.json:"):
        load_pipeline()


def test_the_controller_refuses_to_start_without_it(
        empty_build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = REPO / "examples" / "router" / "router.toml"
    assert cli.main(["controller", "--config", str(config), "--no-push"]) == 1
    assert "scripts/import-p4build.sh" in capsys.readouterr().err
