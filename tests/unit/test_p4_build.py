"""Do the compiled P4 outputs in the tree belong to the P4 sources in the tree?

p4c cannot be installed here: sources are compiled elsewhere and imported by
scripts/import-p4build.sh, which records the source's sha256 beside the outputs. Outputs of an
older source would make the softswitch and BMv2 run something else than what the repository says,
so a mismatch fails; outputs that have not arrived yet only skip. The p4info contract the
controller codes against is checked on the compiled outputs and on the hand-written fixture.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from finsy.proto import p4i
from google.protobuf import text_format

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "flowtable"


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


def all_compiled() -> list[Compiled]:
    tests_p4 = REPO / "tests" / "p4"
    return [Compiled(REPO / "p4src" / "flowtable.p4", REPO / "p4src" / "build")] + [
        Compiled(src, tests_p4 / "build" / src.stem) for src in sorted(tests_p4.glob("*.p4"))
    ]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_sha(recorded: Path) -> str | None:
    """The first sha256 in SOURCE.sha256 (sha256sum format, or a bare hash)."""
    found = re.search(r"\b[0-9a-f]{64}\b", recorded.read_text())
    return found.group(0) if found else None


def outputs_state(c: Compiled, root: Path = REPO) -> tuple[str, str]:
    """("absent" | "match" | "mismatch", explanation) for one source; paths shown from root."""
    sha = sha256_of(c.source)
    rel = c.source.relative_to(root)
    build = c.build.relative_to(root)
    if not c.json.exists() and not c.p4info.exists():
        return "absent", f"awaiting compilation of {sha} ({rel})"
    if not c.recorded.exists():
        return "mismatch", f"{build} has outputs but no SOURCE.sha256"
    compiled = recorded_sha(c.recorded)
    if compiled != sha:
        return "mismatch", (
            f"{build} holds the outputs of source {compiled}, but {rel} is {sha}: "
            "import its compilation (scripts/import-p4build.sh) or rebuild (make -C p4src p4)"
        )
    missing = [p.name for p in (c.json, c.p4info) if not p.exists()]
    if missing:
        return "mismatch", f"{build} lacks {', '.join(missing)}"
    return "match", f"{rel} compiled as {sha}"


@pytest.mark.parametrize("compiled", all_compiled(), ids=lambda c: c.source.name)
def test_outputs_belong_to_source(compiled: Compiled) -> None:
    state, why = outputs_state(compiled)
    if state == "absent":
        pytest.skip(why)
    assert state == "match", why
    assert "pipelines" in json.loads(compiled.json.read_text())


# --- the state classification itself, on a scratch tree -----------------------------------


def scratch(tmp_path: Path) -> Compiled:
    src = tmp_path / "prog.p4"
    src.write_text("// v1\n")
    return Compiled(src, tmp_path / "build")


def test_state_absent_names_the_hash(tmp_path: Path) -> None:
    c = scratch(tmp_path)
    state, why = outputs_state(c, tmp_path)
    assert state == "absent"
    assert f"awaiting compilation of {sha256_of(c.source)}" in why


def test_state_match_and_mismatch(tmp_path: Path) -> None:
    c = scratch(tmp_path)
    c.build.mkdir()
    c.json.write_text('{"pipelines": []}')
    c.p4info.write_text("")
    assert outputs_state(c, tmp_path)[0] == "mismatch"  # outputs without a recorded hash
    c.recorded.write_text(f"{sha256_of(c.source)}  prog.p4\n")
    assert outputs_state(c, tmp_path)[0] == "match"
    c.source.write_text("// v2\n")
    state, why = outputs_state(c, tmp_path)
    assert state == "mismatch"
    assert sha256_of(c.source) in why


# --- the p4info contract (README.md "P4Runtime names") -------------------------------------

KEY_NAMES = ["ingress_port", "src_addr", "dst_addr", "protocol", "sport", "dport"]
PARAM_NAMES = ["port", "smac", "dmac", "src_addr", "dst_addr", "sport", "dport", "mtu"]
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
        assert [f.name for f in table.match_fields] == KEY_NAMES
        assert [f.bitwidth for f in table.match_fields] == [9, width, width, 8, 16, 16]
        assert {f.match_type for f in table.match_fields} == {p4i.MatchField.EXACT}
        assert table.size == size
        assert table.idle_timeout_behavior == p4i.Table.NOTIFY_CONTROL
        action = actions[hit]
        assert action.preamble.id >> 24 == prefix.ACTION
        assert [p.name for p in action.params] == PARAM_NAMES
        assert [p.bitwidth for p in action.params] == [9, 48, 48, width, width, 16, 16, 16]
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
    c = all_compiled()[0]
    state, why = outputs_state(c)
    if state != "match":
        pytest.skip(why)
    check_flowtable_contract(load_p4info(c.p4info))


def test_fixture_p4info_keeps_the_contract() -> None:
    check_flowtable_contract(load_p4info(FIXTURE / "flowtable.p4info.txtpb"))


def test_contract_check_can_fail() -> None:
    info = load_p4info(FIXTURE / "flowtable.p4info.txtpb")
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


def test_fixture_json_matches_fixture_p4info() -> None:
    doc = json.loads((FIXTURE / "flowtable.json").read_text())
    check_json_matches_p4info(doc, load_p4info(FIXTURE / "flowtable.p4info.txtpb"))


def test_compiled_json_matches_compiled_p4info() -> None:
    c = all_compiled()[0]
    state, why = outputs_state(c)
    if state != "match":
        pytest.skip(why)
    check_json_matches_p4info(json.loads(c.json.read_text()), load_p4info(c.p4info))


def test_json_check_can_fail() -> None:
    doc = json.loads((FIXTURE / "flowtable.json").read_text())
    doc["actions"][1]["runtime_data"].reverse()
    with pytest.raises(AssertionError):
        check_json_matches_p4info(doc, load_p4info(FIXTURE / "flowtable.p4info.txtpb"))


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
    assert outputs_state(imported, tree)[0] == "match"
    assert "FAILED   tests/p4/broken.p4" in result.stdout
    assert "syntax error" in result.stdout
    assert f"awaiting compilation of {sha256_of(waiting)}" in result.stdout
