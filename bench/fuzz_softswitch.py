"""Fuzz the softswitch with 1M random and mutated frames and print how many internal errors
occurred (must be 0), on flowtable.p4's compiled JSON from p4src/build/.

Run: .venv/bin/python bench/fuzz_softswitch.py [COUNT]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.edges.pipeline_files import DEVICE_CONFIG
from tests.softswitch.fuzzing import frames, fuzz_pipeline


def main(count: int = 1_000_000) -> int:
    pipe = fuzz_pipeline()
    emitted = 0
    start = time.perf_counter()
    for i, frame in enumerate(frames(count, seed=7)):
        emitted += len(pipe.process(1 + (i >> 2) % 4, frame))
    elapsed = time.perf_counter() - start
    errors = pipe.drops["internal_error"]
    print(f"{count} frames through {DEVICE_CONFIG.name} in {elapsed:.1f} s: {errors} internal "
          f"errors (exceptions), {emitted} frames emitted, drops {pipe.drops}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
