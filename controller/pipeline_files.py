"""Which compiled flowtable.p4 the lab, the daemon and the benchmark load: one choice, one place.

p4c's output in ``p4src/build/`` when it is there, else the hand translation in
``tests/fixtures/flowtable/`` (it stands in until compiled output for the committed source
arrives), with a warning so nobody mistakes one for the other.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ndo.p4runtime.schema import BUILD_DIRS, Pipeline, default_pipeline_files

log = logging.getLogger(__name__)
COMPILED_DIR = BUILD_DIRS[0]


class NoPipeline(FileNotFoundError):
    """Neither p4c's output nor the hand translation is in this tree."""


def pipeline_files(warn: bool = True) -> tuple[Path, Path]:
    """(P4Info, BMv2 JSON) of flowtable.p4; warns when the hand translation stands in."""
    found = default_pipeline_files()
    if found is None:
        places = " or ".join(map(str, BUILD_DIRS))
        raise NoPipeline(f"no flowtable.json + flowtable.p4info.txtpb in {places}")
    if warn and found[0].parent != COMPILED_DIR:
        log.warning("p4src/build/ has no compiled flowtable.p4: using the hand translation in %s",
                    found[0].parent)
    return found


def load_pipeline(warn: bool = True) -> Pipeline:
    p4info, device_config = pipeline_files(warn)
    return Pipeline.load(p4info, device_config)
