"""Load-time specialisation (softswitch/codegen.py): the generated path and the closure path are
one semantics; JSON names never reach generated source; what Python cannot nest stays a closure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from softswitch.codegen import MAX_SOURCE_DEPTH, Generated, TooDeep
from softswitch.expressions import ExprCompiler
from softswitch.json_model import build_layout
from softswitch.pipeline import Pipeline
from softswitch.state import PacketState
from softswitch.stf import run_stf
from tests.p4build import REPO, require_current
from tests.softswitch.fuzzing import frames, fuzz_pipeline
from tests.softswitch.p4json import (
    assign,
    extract,
    fld,
    hexstr,
    op,
    pipeline,
    program,
    rd,
    router_program,
    state,
)
from tests.softswitch.test_stf_suite import STF_FILES, program_of


def _run_all(pipe: Pipeline, count: int) -> list:
    return [pipe.process(1 + (i >> 2) % 4, frame, now=i * 1e-3)
            for i, frame in enumerate(frames(count, seed=7))]


def test_specialised_and_generic_paths_emit_identical_frames_on_fuzzed_input() -> None:
    fast, generic = fuzz_pipeline(specialise=True), fuzz_pipeline(specialise=False)
    assert fast.generated is not None and fast.generated.sources
    assert generic.generated is None
    out_fast, out_generic = _run_all(fast, 4000), _run_all(generic, 4000)
    assert out_fast == out_generic
    assert sum(len(o) for o in out_fast) > 0
    assert fast.drops == generic.drops and fast.drops["internal_error"] == 0
    for name, table in fast.tables.items():
        other = generic.tables[name]
        assert [e.packets for e in table.entries()] == [e.packets for e in other.entries()]
    assert any(e.packets for t in fast.tables.values() for e in t.entries())


@pytest.mark.parametrize("stf", STF_FILES, ids=[p.stem for p in STF_FILES])
def test_stf_suite_also_passes_on_the_generic_path(stf: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = require_current(program_of(stf))
    monkeypatch.setenv("SOFTSWITCH_GENERIC", "1")
    result = run_stf(json.loads(compiled.json.read_text()), stf.read_text(),
                     str(stf.relative_to(REPO)))
    assert result.ok, result.report()


@pytest.mark.parametrize("stf", STF_FILES, ids=[p.stem for p in STF_FILES])
def test_every_compiled_test_program_agrees_on_both_paths(stf: Path) -> None:
    """Each STF program's parser, controls and deparser, on fuzzed frames and on every port
    (with the program's const entries; misses and drops count too)."""
    doc = json.loads(require_current(program_of(stf)).json.read_text())
    fast = Pipeline.from_json(doc, specialise=True)
    generic = Pipeline.from_json(doc, specialise=False)
    assert _run_all(fast, 800) == _run_all(generic, 800)
    assert fast.drops == generic.drops and fast.drops["internal_error"] == 0


EVIL = 'ipv4"]); import os; os._exit(3)  # \n'


def test_json_names_never_reach_generated_source() -> None:
    text = json.dumps(router_program())
    doc = json.loads(text.replace('"ipv4"', json.dumps(EVIL))
                     .replace('"ingress.forward"', json.dumps("f\n__import__('os')")))
    pipe = Pipeline.from_json(doc, specialise=True)
    assert pipe.generated is not None
    source = pipe.generated.dump()
    assert "ipv4" not in source and "import" not in source and "os" not in source.split()
    pipe.tables["ingress.fwd"].insert((0x0A000002,), 0, "f\n__import__('os')",
                                      (3, 0x0200000000AA, 0x0200000000BB))
    frame = bytes(Ether() / IP(dst="10.0.0.2", ttl=9) / UDP() / b"x")
    (port, out), = pipe.process(1, frame)
    assert port == 3 and IP(out[14:]).ttl == 8


def _nested_add(depth: int) -> dict:
    node = fld("ipv4", "ttl")
    for _ in range(depth):
        node = op("+", node, hexstr(1, 1))
    return op("&", node, hexstr(0xFF, 1))


@pytest.mark.parametrize("depth", [3, MAX_SOURCE_DEPTH + 20, 300])
def test_expressions_deeper_than_python_nests_still_compute(depth: int) -> None:
    results = []
    for specialise in (True, False):
        doc = router_program()
        forward = next(a for a in doc["actions"] if a["name"] == "ingress.forward")
        forward["primitives"][-1] = assign(fld("ipv4", "ttl"), _nested_add(depth))
        forward["primitives"].append(assign(fld("ipv4", "identification"), rd(0)))
        pipe = Pipeline.from_json(doc, specialise=specialise)
        pipe.tables["ingress.fwd"].insert((0x0A000002,), 0, "ingress.forward", (3, 1, 2))
        (port, out), = pipe.process(1, bytes(Ether() / IP(dst="10.0.0.2", ttl=9) / UDP()))
        results.append((port, out))
    assert results[0] == results[1]
    assert IP(results[0][1][14:]).ttl == (9 + depth) & 0xFF


# ---- expressions: generated source against the closures, on random trees and values ----------
H_FIELDS = [["a", 8, False], ["b", 8, False], ["c", 16, False], ["s", 8, True], ["d", 32, False]]
LAYOUT = build_layout(program(
    header_types=[("h_t", H_FIELDS)], headers=[("h", "h_t", False)],
    states=[state("start", [extract("h")])], ingress=pipeline("ingress", 0, None, []),
    actions=[], deparse=["h"]))
BINARY = ["+", "-", "*", "&", "|", "^", "==", "!=", "<", "<=", ">", ">=", "<<", ">>", "/", "%",
          "and", "or"]
CASTS = ["two_comp_mod", "usat_cast", "sat_cast"]  # p4c gives them a constant width
LEAVES = st.one_of(
    st.sampled_from([n for n, _, _ in H_FIELDS]).map(lambda n: fld("h", n)),
    st.just(fld("h", "$valid$")),
    st.integers(-300, 70_000).map(hexstr),
    st.sampled_from([{"type": "bool", "value": True}, {"type": "bool", "value": False}]),
    st.integers(0, 1).map(rd),
)


def _grow(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.sampled_from(BINARY), children, children).map(lambda t: op(*t)),
        st.tuples(st.sampled_from(["~", "not", "b2d", "d2b", "-"]), children)
        .map(lambda t: op(t[0], None, t[1])),
        st.tuples(children, children, children).map(lambda t: {
            "type": "expression", "value": {"op": "?", "cond": t[0], "left": t[1], "right": t[2]}}),
        st.tuples(children, st.integers(0, 40))
        .map(lambda t: op("&", t[0], hexstr((1 << t[1]) - 1))),
        st.tuples(st.sampled_from(CASTS), children, st.integers(0, 40))
        .map(lambda t: op(t[0], t[1], hexstr(t[2]))),
    )


def _outcome(fn, s: PacketState, params: tuple) -> tuple:
    try:
        v = fn(s, params)
    except Exception as exc:  # both paths must fail alike (the pipeline counts it)
        return ("raised", type(exc))
    return (type(v), v)


@settings(max_examples=300, deadline=None)
@given(tree=st.recursive(LEAVES, _grow, max_leaves=10),
       values=st.tuples(*[st.integers(0, (1 << w) - 1) for _, w, _ in H_FIELDS]),
       is_valid=st.booleans(), params=st.tuples(st.integers(0, 1 << 20), st.integers(-5, 5)))
def test_generated_expressions_compute_what_the_closures_compute(tree, values, is_valid,
                                                                 params) -> None:
    fast = ExprCompiler(LAYOUT, gen=Generated()).compile(tree, "$")
    generic = ExprCompiler(LAYOUT).compile(tree, "$")
    h = LAYOUT.header("h", "$")
    f = [0] * LAYOUT.n_slots
    for fi, v in zip(h.fields, values, strict=True):
        f[fi.slot] = v - (1 << fi.width) if fi.signed and v >> (fi.width - 1) else v
    valid = [False] * len(LAYOUT.headers)
    valid[h.index] = is_valid
    s = PacketState(f, valid, 0)
    assert _outcome(fast, s, params) == _outcome(generic, s, params)


def test_a_program_python_cannot_compile_as_source_runs_on_the_closures(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = Generated.function

    def refuse_actions(self: Generated, kind: str, params: str, body: list[str]):
        if kind == "action":
            raise TooDeep(kind)
        return real(self, kind, params, body)

    monkeypatch.setattr(Generated, "function", refuse_actions)
    pipe = Pipeline.from_json(router_program())
    assert pipe.generated is None
    pipe.tables["ingress.fwd"].insert((0x0A000002,), 0, "ingress.forward", (3, 1, 2))
    (port, out), = pipe.process(1, bytes(Ether() / IP(dst="10.0.0.2", ttl=9) / UDP()))
    assert port == 3 and IP(out[14:]).ttl == 8
