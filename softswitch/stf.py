"""p4c's STF packet tests, run on the softswitch instead of simple_switch.

The grammar and the conventions are those of p4c's ``backends/bmv2/bmv2stf.py``:

* ``add TABLE [PRIO] KEY:VALUE ... ACTION(ARG:VALUE, ...) [= ID]``. The runner passes
  ``10000 - PRIO`` to BMv2, where a lower number wins, so in STF **the larger PRIO wins** —
  exactly P4Runtime's convention, so PRIO is used as the P4Runtime priority unchanged.
* Key values: ``0x..``/``0b..``/decimal; ``*`` hex digits are don't-care bits of a ternary key
  (the mask covers only the digits written, as in ``makeMask``); ``V&&&M``; ``V/LEN`` for lpm
  (or ``*`` digits, as in ``makeLpm``); ``LO->HI`` (or ``LO..HI``) for range.
  ``hdr$0.f`` means ``hdr[0].f``.
  Table, key and action names may be suffixes of the JSON names.
* ``setdefault TABLE ACTION(ARGS)``, ``packet PORT HEX``, ``expect PORT [HEX[$]]`` (``*`` digits
  match anything; the received frame may be longer unless the line ends in ``$``; no data means
  any packets on that port), ``check_counter NAME(INDEX|ID) [packets|bytes OP VALUE]``,
  ``register_write``/``register_reset``, ``mirroring_add SESSION PORT``,
  ``mirroring_add_mc SESSION GROUP``, ``mirroring_delete``, ``mc_mgrp_create``/``_destroy``,
  ``mc_node_create RID PORT...`` (handles from 0, as bm_sim hands them out), ``mc_node_update``,
  ``mc_node_destroy``, ``mc_node_associate GROUP NODE``, ``mc_node_dissociate``, ``remove all``,
  ``wait``.

Packets are processed as they are read; expectations are compared per port, in order, at the end.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from softswitch.pipeline import Pipeline
from softswitch.pre import MirrorSession, PreError
from softswitch.tables import Entry, InvalidEntry, Table, TableFull

_PRE_COMMANDS = frozenset({
    "mirroring_add", "mirroring_add_mc", "mirroring_delete", "mc_mgrp_create", "mc_mgrp_destroy",
    "mc_node_create", "mc_node_update", "mc_node_destroy", "mc_node_associate",
    "mc_node_dissociate",
})
_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}


class StfError(Exception):
    """A malformed or unresolvable STF line; the message starts with ``FILE:LINE:``."""


@dataclass
class StfResult:
    ok: bool
    failures: list[str] = field(default_factory=list)
    packets_in: int = 0
    packets_out: int = 0

    def report(self) -> str:
        if self.ok:
            return f"PASS: {self.packets_in} packets in, {self.packets_out} out"
        return "FAIL:\n" + "\n".join(self.failures)


@dataclass
class _Expect:
    line: int
    pattern: str  # upper-case hex digits and '*'
    exact_length: bool


def parse_number(text: str) -> int:
    text = text.strip()
    try:
        return int(text, 0) if not text.isdigit() else int(text)
    except ValueError as exc:
        raise ValueError(f"bad number {text!r}") from exc


class StfRunner:
    def __init__(self, pipeline: Pipeline, name: str = "<stf>") -> None:
        self.pipe = pipeline
        self.name = name
        self.received: dict[int, list[bytes]] = {}
        self.expected: dict[int, list[_Expect]] = {}
        self.any_ports: set[int] = set()
        self.failures: list[str] = []
        self.entries: dict[str, tuple[Table, Entry]] = {}
        self.packets_in = 0
        self.now = 0.0

    # ---- driver --------------------------------------------------------------------------
    def run(self, lines: Iterable[str]) -> StfResult:
        for lineno, raw in enumerate(lines, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                self._command(line, lineno)
            except StfError:
                raise
            except (ValueError, KeyError, IndexError, InvalidEntry, TableFull, PreError) as exc:
                raise StfError(f"{self.name}:{lineno}: {exc}") from exc
        self._compare()
        out = sum(len(v) for v in self.received.values())
        return StfResult(not self.failures, self.failures, self.packets_in, out)

    def _command(self, line: str, lineno: int) -> None:
        cmd, _, rest = line.partition(" ")
        cmd = cmd.lower()
        rest = rest.strip()
        if cmd == "packet":
            port, _, data = rest.partition(" ")
            frame = bytes.fromhex("".join(data.split()))
            self.packets_in += 1
            self.now += 0.001
            for eport, out in self.pipe.process(int(port), frame, self.now):
                self.received.setdefault(eport, []).append(out)
        elif cmd == "expect":
            port, _, data = rest.partition(" ")
            data = "".join(data.split()).upper()
            if not data:
                self.any_ports.add(int(port))
                return
            exact = data.endswith("$")
            self.expected.setdefault(int(port), []).append(
                _Expect(lineno, data.rstrip("$"), exact))
        elif cmd == "add":
            self._add(rest)
        elif cmd == "setdefault":
            table_name, _, call = rest.partition(" ")
            table = self._table(table_name)
            action, params = self._action(table, call.strip())
            table.set_default(action, params)
        elif cmd == "check_counter":
            self._check_counter(rest, lineno)
        elif cmd == "register_write":
            name, index, value = rest.split()
            self._by_suffix(self.pipe.registers, name, "register").write(
                parse_number(index), parse_number(value))
        elif cmd == "register_reset":
            self._by_suffix(self.pipe.registers, rest.split()[0], "register").reset()
        elif cmd in _PRE_COMMANDS:
            # "PORTS... | LAGS...": this PRE has no LAGs, so a lag list is refused
            ports, _, lags = rest.partition("|")
            if lags.strip():
                raise ValueError(f"{cmd}: LAGs are not supported")
            self._pre(cmd, [parse_number(w) for w in ports.split()])
        elif cmd == "remove" and rest.lower() == "all":
            for t in self.pipe.tables.values():
                if not t.const_entries:
                    t.clear()
        elif cmd in ("wait", "no_packet", "register_read"):
            pass
        else:
            raise StfError(f"{self.name}:{lineno}: unsupported STF command {cmd!r}")

    def _pre(self, cmd: str, args: list[int]) -> None:
        """simple_switch_CLI's PRE and mirroring commands, as bmv2stf.py passes them on."""
        pre = self.pipe.pre
        if cmd == "mirroring_add":
            pre.mirroring_add(args[0], MirrorSession(egress_port=args[1]))
        elif cmd == "mirroring_add_mc":
            pre.mirroring_add(args[0], MirrorSession(mgid=args[1]))
        elif cmd == "mirroring_delete":
            pre.mirroring_delete(args[0])
        elif cmd == "mc_mgrp_create":
            pre.mgrp_create(args[0])
        elif cmd == "mc_mgrp_destroy":
            pre.mgrp_destroy(args[0])
        elif cmd == "mc_node_create":
            pre.node_create(args[0], args[1:])
        elif cmd == "mc_node_update":
            pre.node_update(args[0], args[1:])
        elif cmd == "mc_node_destroy":
            pre.node_destroy(args[0])
        elif cmd == "mc_node_associate":
            pre.node_associate(args[0], args[1])
        elif cmd == "mc_node_dissociate":
            pre.node_dissociate(args[0], args[1])

    # ---- tables --------------------------------------------------------------------------
    def _add(self, rest: str) -> None:
        handle = None
        if "=" in rest.rsplit(")", 1)[-1]:
            rest, _, handle = rest.rpartition("=")
            handle = handle.strip()
        table_name, _, rest = rest.strip().partition(" ")
        table = self._table(table_name)
        words = rest.split()
        priority = 0
        if words and re.fullmatch(r"\d+", words[0]):
            priority = int(words.pop(0))
        rest = " ".join(words)
        paren = rest.find("(")
        if paren < 0:
            raise ValueError("add: missing ACTION(...)")
        *key_words, action_name = rest[:paren].split()
        call = action_name + rest[paren:]
        key = self._key(table, key_words)
        action, params = self._action(table, call)
        entry = table.insert(key, priority, action, params, now=self.now)
        if handle:
            self.entries[handle] = (table, entry)

    def _table(self, name: str) -> Table:
        return self._by_suffix(self.pipe.tables, name, "table")

    @staticmethod
    def _by_suffix(items: dict, name: str, what: str):
        if name in items:
            return items[name]
        found = [v for k, v in items.items() if k.endswith("." + name)]
        if not found:  # bmv2stf also accepts any plain suffix
            found = [v for k, v in items.items() if k.endswith(name)]
        if len(found) != 1:
            raise ValueError(f"{'ambiguous' if found else 'unknown'} {what} {name!r}")
        return found[0]

    def _key(self, table: Table, words: list[str]) -> tuple:
        values: dict[int, object] = {}
        for word in words:
            name, _, text = word.partition(":")
            name = re.sub(r"\$(\d+)", r"[\1]", name)
            i = self._key_index(table, name)
            values[i] = _key_value(table.keys[i].match_type, table.keys[i].bitwidth, text)
        out = []
        for i, k in enumerate(table.keys):
            if i in values:
                out.append(values[i])
            else:  # bmv2stf's defaults for unspecified fields
                out.append({"exact": 0, "valid": False, "lpm": (0, 0), "ternary": (0, 0),
                            "range": (0, (1 << k.bitwidth) - 1),
                            "optional": (0, True)}[k.match_type])
        return tuple(out)

    @staticmethod
    def _key_index(table: Table, name: str) -> int:
        names = [k.name for k in table.keys]
        for cand in (name, name + ".$valid$", name.removesuffix(".valid") + ".$valid$"):
            if cand in names:
                return names.index(cand)
        found = [i for i, n in enumerate(names) if n.endswith("." + name)]
        if len(found) != 1:
            raise ValueError(f"table {table.name}: unknown key field {name!r}")
        return found[0]

    def _action(self, table: Table, call: str) -> tuple[str, tuple[int, ...]]:
        name, _, args = call.partition("(")
        name = name.strip()
        if table.action_info(name) is None:
            found = [a for a in table.action_names if a.endswith(name)]
            if len(found) != 1:
                raise ValueError(f"table {table.name}: unknown or ambiguous action {name!r}")
            name = found[0]
        info = table.action_info(name)
        assert info is not None
        given = {}
        for arg in args.rstrip().rstrip(")").split(","):
            if arg.strip():
                k, _, v = arg.partition(":")
                given[k.strip()] = parse_number(v)
        missing = [p for p, _ in info.params if p not in given]
        if missing:
            raise ValueError(f"action {name}: missing argument(s) {missing}")
        return name, tuple(given[p] for p, _ in info.params)

    def _check_counter(self, rest: str, lineno: int) -> None:
        m = re.fullmatch(r"(\S+?)\((\S+)\)\s*(?:(packets|bytes)\s*(==|!=|<=|>=|<|>)\s*(\S+))?",
                         rest)
        if not m:
            raise ValueError(f"bad check_counter {rest!r}")
        name, index, kind, op, value = m.groups()
        if index in self.entries:
            _, entry = self.entries[index]
            packets, nbytes = entry.packets, entry.bytes
        else:
            counter = self._by_suffix(self.pipe.counters, name, "counter")
            packets, nbytes = counter.read(parse_number(index))
        actual = nbytes if kind == "bytes" else packets
        want = parse_number(value) if value is not None else 0
        if not _OPS[op or "!="](actual, want):
            self.failures.append(
                f"{self.name}:{lineno}: counter {name}({index}) {kind or 'packets'} is {actual},"
                f" expected {op or '!='} {want}")

    # ---- comparison ----------------------------------------------------------------------
    def _compare(self) -> None:
        for port in sorted(set(self.expected) | set(self.received)):
            if port in self.any_ports:
                continue
            want = self.expected.get(port, [])
            got = self.received.get(port, [])
            for i in range(max(len(want), len(got))):
                if i >= len(got):
                    self.failures.append(
                        f"{self.name}:{want[i].line}: port {port}: expected packet #{i + 1} "
                        f"not received\n  expected {want[i].pattern}")
                elif i >= len(want):
                    self.failures.append(
                        f"{self.name}: port {port}: unexpected packet #{i + 1}\n"
                        f"  received {got[i].hex().upper()}")
                else:
                    problem = _mismatch(want[i], got[i])
                    if problem:
                        self.failures.append(
                            f"{self.name}:{want[i].line}: port {port} packet #{i + 1}: {problem}"
                            f"\n  expected {want[i].pattern}{'$' if want[i].exact_length else ''}"
                            f"\n  received {got[i].hex().upper()}")


def _mismatch(want: _Expect, got: bytes) -> str | None:
    hexed = got.hex().upper()
    if len(hexed) < len(want.pattern):
        return f"received {len(got)} bytes, shorter than expected"
    if want.exact_length and len(hexed) != len(want.pattern):
        return f"received {len(got)} bytes, expected exactly {len(want.pattern) // 2}"
    for i, (w, g) in enumerate(zip(want.pattern, hexed, strict=False)):
        if w != "*" and w != g:
            return f"differs at nibble {i} (byte {i // 2}): expected {w}, received {g}"
    return None


def _key_value(match_type: str, width: int, text: str) -> object:
    full = (1 << width) - 1
    if match_type == "valid":
        return bool(parse_number(text))
    if match_type == "range":
        lo, _, hi = text.partition("->") if "->" in text else text.partition("..")
        return (parse_number(lo), parse_number(hi))
    if match_type == "optional":
        return (0, True) if text == "*" else (parse_number(text), False)
    if "&&&" in text:
        v, _, m = text.partition("&&&")
        value, mask = parse_number(v), parse_number(m)
        if match_type == "lpm":
            return (value & mask, bin(mask & full).count("1"))
        return (value, mask)
    if "/" in text:
        v, _, plen = text.partition("/")
        value = _wild(v)[0]
        if match_type == "lpm":
            return (value, int(plen))
        return (value, _prefix_mask(width, int(plen)))
    value, mask = _wild(text)
    if match_type == "lpm":
        if "*" in text:
            return (value, bin(mask).count("1"))
        return (value, width)
    if match_type == "ternary":
        return (value, mask & full if text.lower().startswith(("0x", "0b", "0o")) else full)
    return value


def _wild(text: str) -> tuple[int, int]:
    """A number whose ``*`` digits are wildcards: (value, mask over the written digits)."""
    t = text.lower()
    for prefix, bits in (("0x", 4), ("0b", 1), ("0o", 3)):
        if t.startswith(prefix):
            digits = t[2:]
            value = int(digits.replace("*", "0") or "0", 1 << bits)
            mask = 0
            for d in digits:
                mask = (mask << bits) | (0 if d == "*" else (1 << bits) - 1)
            return value, mask
    return parse_number(text), -1


def _prefix_mask(width: int, plen: int) -> int:
    return ((1 << width) - 1) ^ ((1 << (width - plen)) - 1)


def run_stf(doc: dict, stf_text: str, name: str = "<stf>") -> StfResult:
    """Compile ``doc`` and run the STF script ``stf_text`` against it."""
    return StfRunner(Pipeline.from_json(doc), name).run(stf_text.splitlines())
