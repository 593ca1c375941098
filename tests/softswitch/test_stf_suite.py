"""Every STF test of ``tests/p4/`` passes on the softswitch, on its program's compiled JSON.

``NAME.stf`` tests ``tests/p4/NAME.p4`` (``flowtable.stf``: ``p4src/flowtable.p4``). An STF file
states what the *committed* source does, so it runs only on outputs compiled from that source:
while they are stale or absent (p4c runs between sessions, see tests/p4build.py) it skips
naming both hashes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softswitch.stf import run_stf
from tests.p4build import REPO, require_current

STF_FILES = sorted((REPO / "tests" / "p4").glob("*.stf"))


def program_of(stf: Path) -> str:
    if stf.stem == "flowtable":
        return "p4src/flowtable.p4"
    return f"tests/p4/{stf.stem}.p4"


@pytest.mark.parametrize("stf", STF_FILES, ids=[p.stem for p in STF_FILES])
def test_stf(stf: Path) -> None:
    compiled = require_current(program_of(stf))
    doc = json.loads(compiled.json.read_text())
    result = run_stf(doc, stf.read_text(), str(stf.relative_to(REPO)))
    assert result.ok, result.report()
