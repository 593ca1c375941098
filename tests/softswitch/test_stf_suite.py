"""Every STF test of ``tests/p4/`` whose compiled BMv2 JSON exists passes on the softswitch.

Compiled outputs come from ../shared/p4build/ (p4c is not installable here) or their imported
copies under tests/p4/build/; a test without one is skipped and says where it looked. A program
whose imported outputs belong to another version of its source (or are missing) is skipped as
"awaiting compilation of <sha>": its STF file tests the new source.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from softswitch.stf import run_stf

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "p4build"
STF_FILES = sorted((ROOT / "tests" / "p4").glob("*.stf"))


def candidates(name: str) -> list[Path]:
    if name == "flowtable":
        return [ROOT / "p4src" / "build" / "flowtable.json",
                ROOT / "tests" / "fixtures" / "flowtable" / "flowtable.json",
                SHARED / "p4src__flowtable.p4" / "flowtable.json"]
    return [ROOT / "tests" / "p4" / "build" / name / f"{name}.json",
            ROOT / "tests" / "p4" / "build" / f"{name}.json",
            SHARED / f"tests__p4__{name}.p4" / f"{name}.json"]


def awaiting_compilation(name: str) -> str | None:
    """Why tests/p4/NAME.p4 has no current outputs in tests/p4/build/NAME/, or None."""
    source = ROOT / "tests" / "p4" / f"{name}.p4"
    if not source.is_file():
        return None
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    recorded = ROOT / "tests" / "p4" / "build" / name / "SOURCE.sha256"
    found = re.search(r"\b[0-9a-f]{64}\b", recorded.read_text()) if recorded.is_file() else None
    if found is None:
        return f"awaiting compilation of {sha}"
    if found.group(0) != sha:
        return f"awaiting compilation of {sha}; running {found.group(0)}"
    return None


@pytest.mark.parametrize("stf", STF_FILES, ids=[p.stem for p in STF_FILES])
def test_stf(stf: Path) -> None:
    waiting = awaiting_compilation(stf.stem)
    if waiting is not None:
        pytest.skip(waiting)
    found = [p for p in candidates(stf.stem) if p.is_file()]
    if not found:
        pytest.skip(f"no compiled JSON for {stf.name} (looked in "
                    f"{', '.join(str(p) for p in candidates(stf.stem))})")
    doc = json.loads(found[0].read_text())
    result = run_stf(doc, stf.read_text(), str(stf.relative_to(ROOT)))
    assert result.ok, result.report()
