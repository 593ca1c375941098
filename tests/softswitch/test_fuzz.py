"""Fuzz (issue 5): random and mutated frames never make the interpreter fail."""

from __future__ import annotations

from tests.softswitch.fuzzing import frames, fuzz_pipeline


def test_20k_random_and_mutated_frames_cause_no_internal_error() -> None:
    pipe = fuzz_pipeline()
    emitted = 0
    for i, frame in enumerate(frames(20_000)):
        for port, out in pipe.process(1 + (i >> 2) % 4, frame):
            assert isinstance(port, int) and isinstance(out, bytes)
            emitted += 1
    assert pipe.drops["internal_error"] == 0
    assert emitted > 0  # the pipeline really ran
    hits = sum(e.packets for t in pipe.tables.values() if t.keys for e in t.entries())
    assert hits > 0  # and mutated frames reached the hit path


def test_fuzz_harness_detects_internal_errors() -> None:
    pipe = fuzz_pipeline()
    pipe._deparse = None  # a broken pipeline: every frame raises inside
    assert pipe.process(1, next(frames(1))) == []
    assert pipe.drops["internal_error"] == 1
