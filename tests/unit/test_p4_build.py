"""Do the compiled P4 outputs in the tree belong to the P4 sources in the tree?

p4c cannot be installed here: sources are compiled elsewhere and imported by
scripts/import-p4build.sh, which records the source's sha256 beside the outputs. Outputs of an
earlier source are *stale*: they still run, and what depends on the new source skips naming both
hashes (tests/p4build.py); outputs that cannot be attributed to a source fail. The p4info
contract the controller codes against is checked on the compiled outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from finsy.proto import p4i
from google.protobuf import text_format

from tests.p4build import (
    REPO,
    Compiled,
    State,
    all_compiled,
    compiled_for,
    outputs_state,
    recorded_sha,
    require_current,
    require_outputs,
    sha256_of,
)

FLOWTABLE = "p4src/flowtable.p4"


@pytest.mark.parametrize("compiled", all_compiled(), ids=lambda c: c.source.name)
def test_outputs_belong_to_source(compiled: Compiled) -> None:
    state, why = outputs_state(compiled)
    if state in (State.ABSENT, State.STALE):
        pytest.skip(why)
    assert state is State.CURRENT, why
    assert "pipelines" in json.loads(compiled.json.read_text())


# --- the state classification itself, on a scratch tree -----------------------------------


def scratch(tmp_path: Path) -> Compiled:
    src = tmp_path / "prog.p4"
    src.write_text("// v1\n")
    return Compiled(src, tmp_path / "build")


def test_state_absent_names_the_hash(tmp_path: Path) -> None:
    c = scratch(tmp_path)
    state, why = outputs_state(c, tmp_path)
    assert state is State.ABSENT
    assert f"awaiting compilation of {sha256_of(c.source)}" in why


def test_state_current_stale_and_broken(tmp_path: Path) -> None:
    c = scratch(tmp_path)
    c.build.mkdir()
    c.json.write_text('{"pipelines": []}')
    c.p4info.write_text("")
    assert outputs_state(c, tmp_path)[0] is State.BROKEN  # outputs without a recorded hash
    old = sha256_of(c.source)
    c.recorded.write_text(f"{old}  prog.p4\n")
    assert outputs_state(c, tmp_path)[0] is State.CURRENT
    c.source.write_text("// v2\n")
    state, why = outputs_state(c, tmp_path)
    assert state is State.STALE
    assert f"awaiting compilation of {sha256_of(c.source)}; running {old}" in why
    c.p4info.unlink()
    assert outputs_state(c, tmp_path)[0] is State.BROKEN


# --- the p4info contract (README.md "P4Runtime names") -------------------------------------

KEY_NAMES = ["ingress_port", "src_addr", "dst_addr", "protocol", "sport", "dport"]
PARAM_NAMES = ["port", "smac", "dmac", "src_addr", "dst_addr", "sport", "dport", "mtu"]
# L2 encapsulation (issue 17): keys and parameters appended, all 16 bits; compiled programs
# before it have none of them (the driver detects which from the p4info).
ENCAP_KEY_NAMES = ["encap0_id", "encap0_proto", "encap1_id", "encap1_proto"]
PUSH_PARAM_NAMES = ["push0_id", "push0_proto", "push1_id", "push1_proto"]
TABLES = {
    # table: (address width, size, hit action, direct counter)
    "FtIngress.flow_v4": (32, 65536, "FtIngress.forward_v4", "FtIngress.flow_v4_counter"),
    "FtIngress.flow_v6": (128, 16384, "FtIngress.forward_v6", "FtIngress.flow_v6_counter"),
}


def check_flowtable_contract(info: p4i.P4Info) -> None:
    prefix = p4i.P4Ids.Prefix
    actions = {a.preamble.name: a for a in info.actions}
    counters = {c.preamble.name: c for c in info.direct_counters}
    tables = {t.preamble.name: t for t in info.tables}
    for name, (width, size, hit, counter_name) in TABLES.items():
        table = tables[name]
        assert table.preamble.id >> 24 == prefix.TABLE
        names = [f.name for f in table.match_fields]
        encap = names[len(KEY_NAMES):] == ENCAP_KEY_NAMES
        assert names == KEY_NAMES + (ENCAP_KEY_NAMES if encap else [])
        widths = [9, width, width, 8, 16, 16] + ([16] * 4 if encap else [])
        assert [f.bitwidth for f in table.match_fields] == widths
        assert {f.match_type for f in table.match_fields} == {p4i.MatchField.EXACT}
        assert table.size == size
        assert table.idle_timeout_behavior == p4i.Table.NOTIFY_CONTROL
        action = actions[hit]
        assert action.preamble.id >> 24 == prefix.ACTION
        assert [p.name for p in action.params] == PARAM_NAMES + (PUSH_PARAM_NAMES if encap else [])
        params = [9, 48, 48, width, width, 16, 16, 16] + ([16] * 4 if encap else [])
        assert [p.bitwidth for p in action.params] == params
        miss = actions["FtIngress.punt_miss"]
        assert {r.id for r in table.action_refs} == {action.preamble.id, miss.preamble.id}
        assert table.const_default_action_id == miss.preamble.id
        counter = counters[counter_name]
        assert counter.preamble.id >> 24 == prefix.DIRECT_COUNTER
        assert counter.spec.unit == p4i.CounterSpec.BOTH
        assert counter.direct_table_id == table.preamble.id
        assert list(table.direct_resource_ids) == [counter.preamble.id]
    headers = {h.preamble.name: h for h in info.controller_packet_metadata}
    assert [(m.id, m.name, m.bitwidth) for m in headers["packet_in"].metadata] == [
        (1, "ingress_port", 16),
        (2, "reason", 8),
    ]
    assert [(m.id, m.name, m.bitwidth) for m in headers["packet_out"].metadata] == [
        (1, "egress_port", 16)
    ]
    for header in headers.values():
        assert header.preamble.id >> 24 == prefix.CONTROLLER_HEADER


def load_p4info(path: Path) -> p4i.P4Info:
    return text_format.Parse(path.read_text(), p4i.P4Info())


def test_compiled_p4info_keeps_the_contract() -> None:
    """The names every compiled flowtable.p4 has had: checked on what runs, stale or not."""
    check_flowtable_contract(load_p4info(require_outputs(FLOWTABLE).p4info))


def test_contract_check_can_fail() -> None:
    info = load_p4info(require_outputs(FLOWTABLE).p4info)
    info.tables[0].match_fields[0].name = "port"
    with pytest.raises(AssertionError):
        check_flowtable_contract(info)


# --- the BMv2 JSON agrees with the p4info it ships with -----------------------------------


def check_json_matches_p4info(doc: dict, info: p4i.P4Info) -> None:
    """Every p4info table, action and direct counter exists in the JSON with the same shape."""
    tables = {t["name"]: t for p in doc["pipelines"] for t in p["tables"]}
    actions = {a["name"]: a for a in doc["actions"]}
    counters = {c["name"]: c for c in doc["counter_arrays"]}
    action_names = {a.preamble.id: a.preamble.name for a in info.actions}
    for t in info.tables:
        table = tables[t.preamble.name]
        assert [k["name"] for k in table["key"]] == [f.name for f in t.match_fields]
        assert table["max_size"] == t.size
        assert table["support_timeout"] == (t.idle_timeout_behavior == p4i.Table.NOTIFY_CONTROL)
        assert sorted(table["actions"]) == sorted(action_names[r.id] for r in t.action_refs)
        assert table["with_counters"] == bool(t.direct_resource_ids)
    for a in info.actions:
        runtime = [(d["name"], d["bitwidth"]) for d in actions[a.preamble.name]["runtime_data"]]
        assert runtime == [(p.name, p.bitwidth) for p in a.params]
    for c in info.direct_counters:
        counter = counters[c.preamble.name]
        assert counter["is_direct"]
        assert counter["binding"] == next(
            t.preamble.name for t in info.tables if t.preamble.id == c.direct_table_id
        )


def test_compiled_json_matches_compiled_p4info() -> None:
    c = require_outputs(FLOWTABLE)
    check_json_matches_p4info(json.loads(c.json.read_text()), load_p4info(c.p4info))


def test_json_check_can_fail() -> None:
    c = require_outputs(FLOWTABLE)
    doc = json.loads(c.json.read_text())
    forward = next(a for a in doc["actions"] if a["name"] == "FtIngress.forward_v4")
    forward["runtime_data"].reverse()
    with pytest.raises(AssertionError):
        check_json_matches_p4info(doc, load_p4info(c.p4info))


# --- scripts/import-p4build.sh on a scratch tree ------------------------------------------


def run_import(tree: Path, p4build: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(tree / "scripts" / "import-p4build.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "P4BUILD": str(p4build)},
        timeout=30,
    )


def publish(p4build: Path, source: Path, rel: str, outputs: dict[str, str]) -> None:
    folder = p4build / rel.replace("/", "__")
    folder.mkdir(parents=True)
    (folder / "SOURCE").write_text(f"{sha256_of(source)}  commit 0123abc\n")
    for name, text in outputs.items():
        (folder / name).write_text(text)


def test_import_copies_matching_outputs_and_reports_the_rest(tmp_path: Path) -> None:
    tree, p4build = tmp_path / "tree", tmp_path / "p4build"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "import-p4build.sh", tree / "scripts")
    (tree / "p4src").mkdir()
    (tree / "tests" / "p4").mkdir(parents=True)
    flowtable = tree / "p4src" / "flowtable.p4"
    flowtable.write_text("// data plane\n")
    good, broken, waiting = (
        tree / "tests" / "p4" / f"{n}.p4" for n in ("good", "broken", "waiting")
    )
    for path in (good, broken, waiting):
        path.write_text(f"// {path.stem}\n")
    publish(
        p4build,
        flowtable,
        "p4src/flowtable.p4",
        {"flowtable.json": "{}", "flowtable.p4info.txtpb": "", "diagnostics.txt": ""},
    )
    publish(p4build, good, "tests/p4/good.p4", {"good.json": "{}", "good.p4info.txtpb": ""})
    publish(
        p4build, broken, "tests/p4/broken.p4", {"diagnostics.txt": "broken.p4(3): syntax error"}
    )
    flowtable.write_text("// data plane, edited after publishing\n")

    result = run_import(tree, p4build)

    assert result.returncode == 1
    assert "STALE    p4src/flowtable.p4" in result.stdout
    assert not (tree / "p4src" / "build" / "flowtable.json").exists()
    assert "IMPORTED tests/p4/good.p4" in result.stdout
    imported = Compiled(good, tree / "tests" / "p4" / "build" / "good")
    assert outputs_state(imported, tree)[0] is State.CURRENT
    assert "FAILED   tests/p4/broken.p4" in result.stdout
    assert "syntax error" in result.stdout
    assert f"awaiting compilation of {sha256_of(waiting)}" in result.stdout


# --- the workflow itself: a changed source on a scratch copy of the tree --------------------


def copy_tracked_tree(dest: Path) -> None:
    """The repository's tracked files as they are in the work tree (a scratch branch)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


WORKFLOW_TESTS = ["tests/unit/test_p4_build.py", "tests/softswitch/test_stf_suite.py",
                  "tests/softswitch/test_p4rt_flowtable.py"]


def test_changed_source_turns_dependent_tests_into_skips_naming_both_hashes(
        tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    copy_tracked_tree(tree)
    source = tree / FLOWTABLE
    old = recorded_sha(compiled_for(source, tree).recorded)  # what runs, stale or not
    with source.open("a") as f:
        f.write(" ")
    new = sha256_of(source)
    report = tmp_path / "report.xml"
    this = "tests/unit/test_p4_build.py::" + (
        "test_changed_source_turns_dependent_tests_into_skips_naming_both_hashes")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         "--deselect", this, *WORKFLOW_TESTS],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outcome: dict[str, tuple[str, str]] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        skipped = case.find("skipped")
        outcome[case.get("name")] = (("skipped", skipped.get("message", "")) if skipped is not None
                                     else ("passed", ""))
    both = f"awaiting compilation of {new}; running {old}"
    for name in ("test_outputs_belong_to_source[flowtable.p4]", "test_stf[flowtable]"):
        state, message = outcome[name]
        assert state == "skipped" and both in message, (name, state, message)
    # the rest still runs: other programs, and flowtable.p4 on its last compiled outputs
    assert outcome["test_stf[arith]"][0] == "passed"
    assert outcome["test_compiled_p4info_keeps_the_contract"][0] == "passed"
    on_old_outputs = [n for n in outcome if n.startswith("test_") and n not in (
        "test_outputs_belong_to_source[flowtable.p4]", "test_stf[flowtable]")]
    assert sum(outcome[n][0] == "passed" for n in on_old_outputs) >= 20


# --- scripts/compile-p4.sh: exactly p4build's COMMAND, the import's layout --------------------

FAKE_P4C = """#!/bin/sh
# --arch v1model --std p4-16 --p4runtime-files P4INFO -o JSON SOURCE
echo "warning: fake compiler" >&2
echo '{"pipelines": []}' > "$8"; : > "$6"; test -f "$9"
"""


def test_compile_script_refuses_without_p4c(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(REPO / "scripts" / "compile-p4.sh")],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "P4C": str(tmp_path / "no-such-p4c")})
    assert result.returncode == 2
    assert "is not installed" in result.stderr and "import-p4build.sh" in result.stderr


def test_compile_script_writes_the_import_layout(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    (tree / "tests" / "p4").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "compile-p4.sh", tree / "scripts")
    source = tree / "tests" / "p4" / "prog.p4"
    source.write_text("// prog\n")
    p4c = tmp_path / "p4c-bm2-ss"
    p4c.write_text(FAKE_P4C)
    p4c.chmod(0o755)
    result = subprocess.run(["bash", str(tree / "scripts" / "compile-p4.sh"), "tests/p4/prog.p4"],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "P4C": str(p4c)})
    assert result.returncode == 0, result.stdout + result.stderr
    compiled = Compiled(source, tree / "tests" / "p4" / "build" / "prog")
    assert outputs_state(compiled, tree)[0] is State.CURRENT
    assert (compiled.build / "COMMAND").read_text().split()[1:] == [
        "--arch", "v1model", "--std", "p4-16", "--p4runtime-files", "prog.p4info.txtpb",
        "-o", "prog.json", "tests/p4/prog.p4"]
    assert "fake compiler" in (compiled.build / "diagnostics.txt").read_text()
    assert not (tree / "prog.json").exists()


# --- names only the committed source has (skip while its outputs are stale) --------------------


def test_compiled_p4info_has_the_punt_meter_and_its_drop_counter() -> None:
    """Control-plane policing (p4src/README.md): a packets meter and a packets-and-bytes
    counter, one cell per punt reason, that the controller configures and reads by name."""
    info = load_p4info(require_current(FLOWTABLE).p4info)
    meters = {m.preamble.name: m for m in info.meters}
    counters = {c.preamble.name: c for c in info.counters}
    meter, drops = meters["FtIngress.punt_meter"], counters["FtIngress.punt_drops"]
    assert meter.spec.unit == p4i.MeterSpec.PACKETS
    assert drops.spec.unit == p4i.CounterSpec.BOTH
    assert meter.size == drops.size == 16


def test_compiled_p4info_carries_the_l2_encapsulation() -> None:
    """Issue 17: the flow key ends with the ingress encapsulation, the hit actions with the
    one to push (p4src/README.md)."""
    info = load_p4info(require_current(FLOWTABLE).p4info)
    for table in info.tables:
        assert [f.name for f in table.match_fields][len(KEY_NAMES):] == ENCAP_KEY_NAMES
    for action in info.actions:
        if action.preamble.name.startswith("FtIngress.forward_"):
            assert [p.name for p in action.params][len(PARAM_NAMES):] == PUSH_PARAM_NAMES
