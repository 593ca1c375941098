"""Every STF test of ``tests/p4/`` whose compiled BMv2 JSON exists passes on the softswitch.

Compiled outputs come from ../shared/p4build/ (p4c is not installable here) or their imported
copies under tests/p4/build/; a test without one is skipped and says where it looked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.pipeline_files import DEVICE_CONFIG
from softswitch.stf import run_stf

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "p4build"
STF_FILES = sorted((ROOT / "tests" / "p4").glob("*.stf"))


def candidates(name: str) -> list[Path]:
    if name == "flowtable":
        return [DEVICE_CONFIG]
    return [ROOT / "tests" / "p4" / "build" / name / f"{name}.json",
            ROOT / "tests" / "p4" / "build" / f"{name}.json",
            SHARED / f"tests__p4__{name}.p4" / f"{name}.json"]


@pytest.mark.parametrize("stf", STF_FILES, ids=[p.stem for p in STF_FILES])
def test_stf(stf: Path) -> None:
    found = [p for p in candidates(stf.stem) if p.is_file()]
    if not found:
        pytest.skip(f"no compiled JSON for {stf.name} (looked in "
                    f"{', '.join(str(p) for p in candidates(stf.stem))})")
    doc = json.loads(found[0].read_text())
    result = run_stf(doc, stf.read_text(), str(stf.relative_to(ROOT)))
    assert result.ok, result.report()
