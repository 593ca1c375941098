"""Where flowtable.p4's compiled outputs are: ``p4src/build/``, the one place the daemon, the lab,
the shell, the benchmarks and the tests load the pipeline from.

p4c cannot run in this project; ``scripts/import-p4build.sh`` imports its outputs. A tree without
them is an error that says how to get them, never a silent substitute.
"""

from __future__ import annotations

from pathlib import Path

from ndo.p4runtime.schema import REPO, Pipeline

BUILD_DIR = REPO / "p4src" / "build"
P4INFO = BUILD_DIR / "flowtable.p4info.txtpb"
DEVICE_CONFIG = BUILD_DIR / "flowtable.json"


class NoPipeline(FileNotFoundError):
    """p4src/build/ lacks flowtable.p4's compiled outputs."""


def pipeline_files() -> tuple[Path, Path]:
    """(P4Info, BMv2 JSON) of flowtable.p4 in p4src/build/."""
    missing = [path.name for path in (P4INFO, DEVICE_CONFIG) if not path.is_file()]
    if missing:
        raise NoPipeline(f"{BUILD_DIR} has no {' or '.join(missing)}: import flowtable.p4's "
                         "compiled outputs with scripts/import-p4build.sh")
    return P4INFO, DEVICE_CONFIG


def load_pipeline() -> Pipeline:
    return Pipeline.load(*pipeline_files())
