"""Which compiled outputs belong to which P4 source, and what a test does when they don't.

p4c cannot be installed on the project's machines: the P4 sources are compiled between sessions
and imported by scripts/import-p4build.sh, which records the source's sha256 beside the outputs
(``SOURCE.sha256``). When a source changes, its committed outputs go *stale*: everything keeps
running on them (the last compiled program), and a test of behaviour that only the new source
has calls ``require_current(source)``, which skips with both hashes until the new outputs are
imported. A stale or missing compilation is never a failure; outputs that cannot belong to any
source (no recorded hash, a file missing) are.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


class State(enum.Enum):
    CURRENT = "current"  # compiled from this very source
    STALE = "stale"  # compiled from an earlier source: still what runs
    ABSENT = "absent"  # never compiled (a new program)
    BROKEN = "broken"  # outputs that cannot be attributed to a source


@dataclass(frozen=True)
class Compiled:
    """One P4 source and the folder its compiled outputs are imported into."""

    source: Path
    build: Path

    @property
    def stem(self) -> str:
        return self.source.stem

    @property
    def json(self) -> Path:
        return self.build / f"{self.stem}.json"

    @property
    def p4info(self) -> Path:
        return self.build / f"{self.stem}.p4info.txtpb"

    @property
    def recorded(self) -> Path:
        return self.build / "SOURCE.sha256"


def compiled_for(source: Path, root: Path = REPO) -> Compiled:
    """The build folder of a source: p4src/build/ for the data plane, tests/p4/build/NAME/."""
    if source == root / "p4src" / "flowtable.p4":
        return Compiled(source, root / "p4src" / "build")
    return Compiled(source, source.parent / "build" / source.stem)


def all_compiled(root: Path = REPO) -> list[Compiled]:
    tests_p4 = root / "tests" / "p4"
    sources = [root / "p4src" / "flowtable.p4", *sorted(tests_p4.glob("*.p4"))]
    return [compiled_for(src, root) for src in sources]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_sha(recorded: Path) -> str | None:
    """The first sha256 in SOURCE.sha256 (sha256sum format, or a bare hash)."""
    found = re.search(r"\b[0-9a-f]{64}\b", recorded.read_text())
    return found.group(0) if found else None


def outputs_state(c: Compiled, root: Path = REPO) -> tuple[State, str]:
    """The state of one source's outputs and a sentence saying it (paths shown from root)."""
    sha = sha256_of(c.source)
    rel = c.source.relative_to(root)
    build = c.build.relative_to(root)
    if not c.json.exists() and not c.p4info.exists():
        return State.ABSENT, f"awaiting compilation of {sha} ({rel}): no outputs yet"
    if not c.recorded.exists():
        return State.BROKEN, f"{build} has outputs but no SOURCE.sha256"
    missing = [p.name for p in (c.json, c.p4info) if not p.exists()]
    if missing:
        return State.BROKEN, f"{build} lacks {', '.join(missing)}"
    compiled = recorded_sha(c.recorded)
    if compiled is None:
        return State.BROKEN, f"{c.recorded.relative_to(root)} names no sha256"
    if compiled != sha:
        return State.STALE, (
            f"awaiting compilation of {sha}; running {compiled} ({rel}: {build} holds the "
            "outputs of the earlier source; scripts/import-p4build.sh brings the new ones)"
        )
    return State.CURRENT, f"{rel} compiled as {sha}"


def require_current(source: str, root: Path = REPO) -> Compiled:
    """Skip the calling test unless ``source`` (repository-relative) runs as compiled from it.

    For tests of behaviour that only the committed source has: while its outputs are stale or
    absent the test skips naming both hashes. Broken outputs fail.
    """
    compiled = compiled_for(root / source, root)
    state, why = outputs_state(compiled, root)
    if state is State.BROKEN:
        pytest.fail(why)
    if state is not State.CURRENT:
        pytest.skip(why)
    return compiled


def require_outputs(source: str, root: Path = REPO) -> Compiled:
    """Skip unless ``source`` has outputs at all (current or stale): the last compiled program."""
    compiled = compiled_for(root / source, root)
    state, why = outputs_state(compiled, root)
    if state is State.BROKEN:
        pytest.fail(why)
    if state is State.ABSENT:
        pytest.skip(why)
    return compiled
