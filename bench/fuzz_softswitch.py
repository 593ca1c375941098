"""Fuzz the softswitch with 1M random and mutated frames and print how many internal errors
occurred (issue 5 asks for 0). Uses flowtable.p4's JSON when tests/fixtures/flowtable has it.

Run: .venv/bin/python bench/fuzz_softswitch.py [COUNT]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.softswitch.fuzzing import FLOWTABLE_JSON, frames, fuzz_pipeline


def main(count: int = 1_000_000) -> int:
    pipe = fuzz_pipeline()
    program = FLOWTABLE_JSON.name if FLOWTABLE_JSON.is_file() else "router test program"
    emitted = 0
    start = time.perf_counter()
    for i, frame in enumerate(frames(count, seed=7)):
        emitted += len(pipe.process(1 + (i >> 2) % 4, frame))
    elapsed = time.perf_counter() - start
    errors = pipe.drops["internal_error"]
    print(f"{count} frames through {program} in {elapsed:.1f} s: {errors} internal errors "
          f"(exceptions), {emitted} frames emitted, drops {pipe.drops}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
