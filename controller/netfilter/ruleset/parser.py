"""Recursive-descent parser for nft syntax (``nft -f`` scripts) into script commands.

The grammar is nft's (``src/parser_bison.y``): table blocks and script commands (``add``,
``create``, ``insert``, ``replace``, ``delete``, ``destroy``, ``flush``; ``table inet x`` with no
body is ``add table``), ``define``/``$var``, ``include``; statements end at a newline, ``;`` or
``}``. Tokens are read on demand (:mod:`.stream`), so an error is reported at the first construct
that cannot be read, as ``FILE:LINE:COL``. A table block expands like nft's ``nft_cmd_expand``:
the table, its sets, objects, chains, flowtables, then its rules, so rules may name objects
declared further down the block.
"""

from __future__ import annotations

import itertools

from controller.netfilter.ruleset import datatypes as dt
from controller.netfilter.ruleset import values
from controller.netfilter.ruleset.datatypes import DataType
from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.fields import BARE_META, FIELDS, NAMESPACES, Field
from controller.netfilter.ruleset.format import format_expr, format_value
from controller.netfilter.ruleset.lexer import Kind, Token
from controller.netfilter.ruleset.model import (
    BaseSpec,
    ChainType,
    Concat,
    Counter,
    Expr,
    Family,
    FlowAdd,
    Hook,
    Item,
    Limit,
    Log,
    MapLookup,
    Masked,
    Match,
    Nat,
    NatKind,
    Notrack,
    ObjectDef,
    Other,
    Reject,
    Rule,
    SetDef,
    SetRef,
    SetStatement,
    SetUpdate,
    Value,
    VerdictStatement,
    Vmap,
    expr_types,
)
from controller.netfilter.ruleset.script import (
    AddChain,
    AddFlowtable,
    AddObject,
    AddRule,
    AddSet,
    AddTable,
    Command,
    DeleteChain,
    DeleteFlowtable,
    DeleteObject,
    DeleteRule,
    DeleteSet,
    DeleteTable,
    Device,
    FlowtableSpec,
    FlushChain,
    FlushRuleset,
    SetElements,
)
from controller.netfilter.ruleset.stream import TokenStream

_FAMILY_WORDS = frozenset({f.value for f in Family} | set(values.UNSUPPORTED_FAMILIES))
_OPERATORS = {"==": "==", "eq": "==", "!=": "!=", "ne": "!=", "<": "<", "lt": "<", ">": ">",
              "gt": ">", "<=": "<=", "le": "<=", ">=": ">=", "ge": ">="}
_BINOPS = {"&": "&", "and": "&", "|": "|", "or": "|", "^": "^", "xor": "^", "<<": "<<",
           "lshift": "<<", ">>": ">>", "rshift": ">>"}
_VERDICTS = ("accept", "drop", "continue", "return", "jump", "goto", "queue")
_OBJECT_KINDS = ("counter", "quota", "limit", "secmark", "synproxy")
_CT_OBJECTS = ("helper", "timeout", "expectation")
_SET_FLAGS = ("constant", "interval", "timeout", "dynamic", "eval")
_LOG_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit")
_RATE_UNITS = ("second", "minute", "hour", "day", "week")
_BYTE_UNITS = ("bytes", "kbytes", "mbytes")
_NAT_FLAGS = ("random", "fully-random", "persistent", "netmap")
_TUNNELS = ("vxlan", "geneve", "gre", "gretap")
_TUNNEL_L4 = {"vxlan": 17, "geneve": 17, "gre": 47, "gretap": 47}
_TUNNEL_FIELDS: dict[str, dict[str, tuple[int, int]]] = {  # bit offset, bits in the header
    "vxlan": {"flags": (0, 8), "vni": (32, 24)},
    "geneve": {"version": (0, 2), "opt-len": (2, 6), "flags": (8, 8), "type": (16, 16),
               "vni": (32, 24)},
    "gre": {"flags": (0, 5), "version": (13, 3), "protocol": (16, 16)},
    "gretap": {},
}
# tcp options (nft's tcpopt.c): kind, and field -> (bit offset from the option start, bits)
_TCPOPT_BASE = {"kind": (0, 8), "length": (8, 8)}
_TCP_OPTIONS: dict[str, tuple[int, dict[str, tuple[int, int]]]] = {
    "eol": (0, {"kind": (0, 8)}),
    "nop": (1, {"kind": (0, 8)}),
    "noop": (1, {"kind": (0, 8)}),
    "maxseg": (2, {**_TCPOPT_BASE, "size": (16, 16)}),
    "window": (3, {**_TCPOPT_BASE, "count": (16, 8)}),
    "sack-permitted": (4, _TCPOPT_BASE),
    "sack-perm": (4, _TCPOPT_BASE),
    "sack": (5, {**_TCPOPT_BASE, "left": (16, 32), "right": (48, 32)}),
    **{f"sack{n}": (5, {**_TCPOPT_BASE, "left": (16 + 64 * n, 32), "right": (48 + 64 * n, 32)})
       for n in range(4)},
    "timestamp": (8, {**_TCPOPT_BASE, "tsval": (16, 32), "tsecr": (48, 32)}),
    "md5sig": (19, _TCPOPT_BASE),
    "mptcp": (30, {**_TCPOPT_BASE, "subtype": (16, 4)}),
    "fastopen": (34, _TCPOPT_BASE),
}
_SCTP_CHUNKS = frozenset({
    "data", "init", "init-ack", "sack", "heartbeat", "heartbeat-ack", "abort", "shutdown",
    "shutdown-ack", "error", "cookie-echo", "cookie-ack", "ecne", "cwr", "shutdown-complete",
    "asconf-ack", "forward-tsn", "asconf",
})
_SCTP_CHUNK_FIELDS = ("type", "flags", "length", "stream", "tsn", "ssn", "ppid", "initial-tsn",
                      "init-tag", "a-rwnd", "num-outbound-streams", "num-inbound-streams",
                      "cum-tsn-ack", "num-gap-ack-blocks", "num-dup-tsns", "lowest-tsn", "seqno",
                      "new-cum-tsn")


def parse(text: str, filename: str = "<string>") -> list[Command]:
    return _Parser(text, filename).script()


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.stream = TokenStream(text, filename)

    # -- token helpers -----------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.stream.peek(ahead)

    def next(self) -> Token:
        return self.stream.next()

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok.kind in (Kind.WORD, Kind.PUNCT) and tok.text in texts

    def at_end(self) -> bool:
        tok = self.peek()
        return tok.kind in (Kind.NEWLINE, Kind.EOF) or (
            tok.kind is Kind.PUNCT and tok.text in (";", "}")
        )

    def accept(self, *texts: str) -> Token | None:
        return self.next() if self.at(*texts) else None

    def unexpected(self, tok: Token, expecting: str | None = None) -> RulesetError:
        tail = f", expecting {expecting}" if expecting else ""
        return RulesetError(f"syntax error, unexpected {tok.describe()}{tail}", tok.loc)

    def expect(self, *texts: str) -> Token:
        if not self.at(*texts):
            raise self.unexpected(self.peek(), " or ".join(f"'{t}'" for t in texts))
        return self.next()

    def word(self, what: str) -> Token:
        tok = self.peek()
        if tok.kind is not Kind.WORD:
            raise self.unexpected(tok, what)
        return self.next()

    def value_token(self, what: str) -> Token:
        tok = self.peek()
        if tok.kind not in (Kind.WORD, Kind.STRING):
            raise self.unexpected(tok, what)
        return self.next()

    def identifier(self, what: str) -> Token:
        tok = self.value_token(what)
        values.parse_name(tok.text, tok.loc, what)
        return tok

    def number(self, what: str, hi: int = 2**64 - 1) -> int:
        tok = self.word(what)
        return values.parse_int(tok.text, tok.loc, what, 0, hi)

    def string(self, what: str) -> str:
        return self.value_token(what).text

    def skip_newlines(self) -> None:
        while self.peek().kind is Kind.NEWLINE:
            self.next()

    def skip_separators(self) -> None:
        while self.peek().kind is Kind.NEWLINE or self.at(";"):
            self.next()

    def separator(self) -> None:
        """A block item must end with a newline or ``;`` (nft's ``stmt_separator``)."""
        if not (self.peek().kind is Kind.NEWLINE or self.at(";")):
            raise self.unexpected(self.peek(), "newline or ';'")
        self.next()

    def end_of_command(self) -> None:
        tok = self.peek()
        if not (tok.kind in (Kind.NEWLINE, Kind.EOF) or self.at(";")):
            raise self.unexpected(tok, "end of command")

    # -- script ------------------------------------------------------------------------------

    def script(self) -> list[Command]:
        commands: list[Command] = []
        while True:
            self.skip_separators()
            if self.peek().kind is Kind.EOF:
                return commands
            commands.extend(self.command())
            self.end_of_command()

    def common(self, tok: Token) -> bool:
        """``define``/``redefine``/``undefine``/``include`` (valid anywhere a command is)."""
        if tok.text in ("define", "redefine"):
            self.next()
            name = self.word("a variable name")
            self.expect("=")
            if tok.text == "define" and name.text in self.stream.defines:
                raise RulesetError(f"redefinition of symbol '{name.text}'", name.loc)
            value = self.stream.define_tokens()
            if not value:
                raise self.unexpected(self.peek(), "a value")
            self.stream.defines[name.text] = value
            return True
        if tok.text == "undefine":
            self.next()
            name = self.word("a variable name")
            if self.stream.defines.pop(name.text, None) is None:
                raise RulesetError(f"undefined symbol '{name.text}'", name.loc)
            return True
        if tok.text == "include":
            self.next()
            path = self.peek()
            if path.kind is not Kind.STRING:
                raise self.unexpected(path, "a quoted file name")
            self.next()
            self.stream.include(path.text, path.loc)
            return True
        return False

    def command(self) -> list[Command]:
        tok = self.peek()
        if tok.kind is Kind.WORD and self.common(tok):
            return []
        tok = self.word("a command")
        verb = tok.text
        if verb in ("table", "chain", "set", "map", "flowtable", "counter", "quota", "ct",
                    "limit", "rule", "element"):
            verb, obj = "add", tok
        elif verb in ("add", "create", "insert", "replace", "delete", "destroy", "flush"):
            obj = self.word("an object")
        elif verb in ("list", "reset", "rename", "monitor", "describe", "export", "import"):
            raise RulesetError(f"'{verb}' commands are not supported in a ruleset file", tok.loc)
        else:
            raise RulesetError(f"syntax error, unexpected {tok.describe()}", tok.loc)
        kind = obj.text
        if kind == "ct":
            sub = self.expect(*_CT_OBJECTS)
            kind = f"ct {sub.text}"
        create = verb == "create"
        if verb in ("add", "create"):
            return self.add_command(kind, obj, tok.loc, create)
        if verb in ("insert", "replace"):
            if kind != "rule":
                raise self.unexpected(obj, "'rule'")
            return self.rule_command(tok.loc, insert=verb == "insert", replace=verb == "replace")
        if verb in ("delete", "destroy"):
            return self.delete_command(kind, obj, tok.loc, verb == "destroy")
        return self.flush_command(kind, obj, tok.loc)

    def add_command(self, kind: str, obj: Token, loc: Loc, create: bool) -> list[Command]:
        if kind == "table":
            return self.table_block(loc, block_optional=True, create=create)
        if kind == "chain":
            return self.chain_command(loc, create)
        if kind == "rule":
            return self.rule_command(loc)
        if kind == "flowtable":
            family, table = self.table_spec()
            name = self.identifier("flowtable name").text
            if not self.accept("{"):
                return [AddFlowtable(family, table, name, FlowtableSpec(), loc)]
            return [AddFlowtable(family, table, name, self.flowtable_body(), loc)]
        if kind in ("set", "map"):
            family, table = self.table_spec()
            name = self.identifier(f"{kind} name")
            self.expect("{")
            return [AddSet(family, table, self.set_body(name, kind == "map"), loc, create)]
        if kind == "element":
            family, table = self.table_spec()
            name = self.identifier("set name").text
            return [SetElements(family, table, name, self.raw_elements(), False, loc)]
        if kind in _OBJECT_KINDS or kind.startswith("ct "):
            family, table = self.table_spec()
            name = self.identifier(f"{kind} name")
            return [AddObject(family, table, self.object_body(kind, name), loc, create)]
        raise self.unexpected(obj, "an object this tool supports")

    def delete_command(self, kind: str, obj: Token, loc: Loc, destroy: bool) -> list[Command]:
        if kind == "table":
            family, name = self.table_spec(allow_handle=True)
            return [DeleteTable(family, name, loc, not destroy)]
        if kind == "rule":
            family, table = self.table_spec()
            chain = self.identifier("chain name").text
            self.expect("handle")
            return [DeleteRule(family, table, chain, self.number("handle"), loc)]
        family, table = self.table_spec()
        if kind == "element":
            name = self.identifier("set name").text
            return [SetElements(family, table, name, self.raw_elements(), True, loc)]
        if self.accept("handle"):
            name = f"handle {self.number('handle')}"
        else:
            name = self.identifier(f"{kind} name").text
        if kind == "flowtable":
            devices = None
            if self.accept("{"):
                devices = self.flowtable_body().devices
            return [DeleteFlowtable(family, table, name, devices, loc)]
        if kind == "chain":
            return [DeleteChain(family, table, name, loc)]
        if kind in ("set", "map"):
            return [DeleteSet(family, table, name, False, loc)]
        if kind in _OBJECT_KINDS or kind.startswith("ct "):
            return [DeleteObject(family, table, kind, name, loc)]
        raise self.unexpected(obj, "an object this tool supports")

    def flush_command(self, kind: str, obj: Token, loc: Loc) -> list[Command]:
        if kind == "ruleset":
            family = None
            if self.peek().kind is Kind.WORD:
                fam = self.next()
                family = values.parse_family(fam.text, fam.loc)
            return [FlushRuleset(family, loc)]
        family, table = self.table_spec()
        if kind == "table":
            return [FlushChain(family, table, None, loc)]
        if kind == "chain":
            return [FlushChain(family, table, self.identifier("chain name").text, loc)]
        if kind in ("set", "map"):
            return [DeleteSet(family, table, self.identifier("set name").text, True, loc)]
        raise self.unexpected(obj, "'ruleset', 'table', 'chain', 'set' or 'map'")

    def table_spec(self, allow_handle: bool = False) -> tuple[Family, str]:
        """``[FAMILY] NAME``; the family defaults to ip, as in nft."""
        first = self.peek()
        if (
            first.kind is Kind.WORD
            and first.text in _FAMILY_WORDS
            and self.peek(1).kind in (Kind.WORD, Kind.STRING)
        ):
            self.next()
            family = values.parse_family(first.text, first.loc)
        else:
            family = Family.IP
        if allow_handle and self.accept("handle"):
            return family, f"handle {self.number('handle')}"
        return family, self.identifier("table name").text

    # -- tables --------------------------------------------------------------------------------

    def table_block(self, loc: Loc, block_optional: bool = False,
                    create: bool = False) -> list[Command]:
        family, name = self.table_spec()
        head: list[Command] = [AddTable(family, name, loc, create)]
        if block_optional and not self.at("{"):
            return head
        self.expect("{")
        groups: dict[str, list[Command]] = {k: [] for k in ("set", "obj", "chain", "ft", "rule")}
        while True:
            self.skip_separators()
            tok = self.peek()
            if self.accept("}"):
                return head + [c for cmds in groups.values() for c in cmds]
            if tok.kind is Kind.WORD and self.common(tok):
                continue
            if self.accept("flowtable"):
                ft_name = self.identifier("flowtable name").text
                self.expect("{")
                groups["ft"].append(
                    AddFlowtable(family, name, ft_name, self.flowtable_body(), tok.loc)
                )
            elif self.accept("chain"):
                chain_name = self.identifier("chain name")
                self.expect("{")
                chain, chain_rules = self.chain_body(family, name, chain_name)
                groups["chain"].append(chain)
                groups["rule"].extend(chain_rules)
            elif self.at("set", "map"):
                kind = self.next().text
                set_name = self.identifier(f"{kind} name")
                self.expect("{")
                groups["set"].append(
                    AddSet(family, name, self.set_body(set_name, kind == "map"), tok.loc)
                )
            elif self.at(*_OBJECT_KINDS) or self.at("ct"):
                kind = self.next().text
                if kind == "ct":
                    kind = f"ct {self.expect(*_CT_OBJECTS).text}"
                obj_name = self.identifier(f"{kind} name")
                groups["obj"].append(
                    AddObject(family, name, self.object_body(kind, obj_name, True), tok.loc)
                )
            elif self.accept("comment"):
                self.string("a comment")
            elif self.accept("flags"):
                self.expect("dormant", "owner", "persist")
                while self.accept(","):
                    self.expect("dormant", "owner", "persist")
            else:
                raise self.unexpected(tok, "'chain', 'set', 'map', 'flowtable' or '}'")

    def chain_command(self, loc: Loc, create: bool = False) -> list[Command]:
        family, table = self.table_spec()
        name = self.identifier("chain name")
        if not self.accept("{"):
            return [AddChain(family, table, name.text, None, loc, create=create)]
        chain, rules = self.chain_body(family, table, name)
        chain.loc, chain.create = loc, create
        return [chain, *rules]

    # -- flowtables ----------------------------------------------------------------------------

    def flowtable_body(self) -> FlowtableSpec:
        """Everything up to and including the closing ``}``; items end with a separator."""
        spec = FlowtableSpec()
        while True:
            self.skip_separators()
            tok = self.peek()
            if self.accept("}"):
                return spec
            if self.accept("hook"):
                hook = self.word("'ingress'")
                if hook.text != "ingress":
                    raise RulesetError(
                        f"flowtables only support the ingress hook, not '{hook.text}'", hook.loc
                    )
                self.expect("priority")
                spec.hook, spec.hook_loc = hook.text, tok.loc
                spec.priority = self.priority(values.FLOWTABLE_PRIORITIES)
                continue  # a separator may be left out here (the seed's spelling)
            if self.accept("devices"):
                self.expect("=")
                spec.devices.extend(self.devices())
            elif self.accept("flags"):
                spec.flags_loc = tok.loc
                while True:
                    flag = self.word("'offload'")
                    if flag.text != "offload":
                        raise RulesetError(f"unknown flowtable flag '{flag.text}'", flag.loc)
                    spec.offload = True
                    if not self.accept(","):
                        break
            elif self.accept("counter"):
                if not spec.has_flags:
                    spec.flags_loc = tok.loc
                spec.counter = True
            else:
                raise self.unexpected(tok, "'hook', 'devices', 'flags', 'counter' or '}'")
            self.separator()

    def devices(self) -> list[Device]:
        """``NAME`` or ``{ NAME, ... }``; nested braces (a variable holding a set) flatten."""
        if not self.at("{"):
            tok = self.value_token("a device name")
            return [Device(values.parse_ifname(tok.text, tok.loc), tok.loc)]
        devices = []
        for key, _ in self.raw_elements():
            for tok in key:
                if tok.kind in (Kind.WORD, Kind.STRING):
                    devices.append(Device(values.parse_ifname(tok.text, tok.loc), tok.loc))
        return devices

    def priority(self, names: dict[str, int]) -> int:
        """A signed integer, or a standard name with an optional ``+ N``/``- N`` offset."""
        tok = self.peek()
        if self.accept("-"):
            num = self.word("a number")
            return -values.parse_int(num.text, num.loc, "priority", 0, 2**31)
        word = self.value_token("a priority")
        if word.text.isdigit():
            return values.parse_int(word.text, word.loc, "priority", 0, 2**31 - 1)
        if word.text not in names:
            raise RulesetError(f"'{word.text}' is invalid priority in this context.", tok.loc)
        base = names[word.text]
        sign = self.accept("+", "-")
        if sign is None:
            return base
        num = self.word("a number")
        offset = values.parse_int(num.text, num.loc, "priority offset", 0, 2**31 - 1)
        return base + offset if sign.text == "+" else base - offset

    # -- chains --------------------------------------------------------------------------------

    def chain_body(self, family: Family, table: str, name: Token) -> tuple[AddChain, list[AddRule]]:
        chain = AddChain(family, table, name.text, None, name.loc)
        rules: list[AddRule] = []
        while True:
            self.skip_separators()
            tok = self.peek()
            if self.accept("}"):
                return chain, rules
            if tok.kind is Kind.EOF:
                raise self.unexpected(tok, "'}'")
            if tok.kind is Kind.WORD and self.common(tok):
                continue
            if self.accept("type"):
                chain.base, chain.base_loc = self.base_spec(chain.base), tok.loc
            elif self.accept("policy"):
                policy = self.expect("accept", "drop")
                if chain.base is None:
                    raise RulesetError("policy is only valid in base chains", tok.loc)
                chain.base.policy_accept = policy.text == "accept"
            elif self.at("comment") and self.peek(1).kind is Kind.STRING:
                self.next()
                self.next()
            elif self.accept("devices"):
                self.expect("=")
                self.devices()
            else:
                rules.append(AddRule(family, table, name.text, self.rule(), loc=tok.loc))

    def base_spec(self, old: BaseSpec | None) -> BaseSpec:
        type_tok = self.word("'filter', 'nat' or 'route'")
        try:
            chain_type = ChainType(type_tok.text)
        except ValueError:
            raise RulesetError(
                f"unsupported chain type '{type_tok.text}' (filter, nat or route)", type_tok.loc
            ) from None
        self.expect("hook")
        hook_tok = self.word("a hook")
        try:
            hook = Hook(hook_tok.text)
        except ValueError:
            raise RulesetError(f"unknown chain hook '{hook_tok.text}'", hook_tok.loc) from None
        if self.accept("device"):
            self.value_token("a device name")
        self.expect("priority")
        prio = self.priority(values.chain_priority_names(hook))
        return BaseSpec(chain_type, hook, prio, True if old is None else old.policy_accept)

    # -- sets, maps and objects ------------------------------------------------------------------

    def set_body(self, name: Token, is_map: bool) -> SetDef:
        sdef = SetDef(name.text, (), loc=name.loc)
        options: list[tuple[str, str]] = []
        raw: list | None = None
        while True:
            self.skip_separators()
            tok = self.peek()
            if self.accept("}"):
                break
            if tok.kind is Kind.WORD and self.common(tok):
                continue
            if self.accept("type"):
                sdef.key = self.type_list(tok)
                if self.accept(":"):
                    sdef.data = self.map_data_type()
            elif self.accept("typeof"):
                start = self.peek().loc
                key = self.expression()
                sdef.key = expr_types(key)
                sdef.typeof = _expr_text(key)
                if self.accept(":"):
                    if self.at(*_VERDICTS[:0]) or self.at("verdict"):
                        sdef.data = dt.VERDICT
                        self.next()
                    else:
                        data = self.expression()
                        sdef.data = expr_types(data)[0]
                        sdef.typeof += f" : {_expr_text(data)}"
                del start
            elif self.accept("flags"):
                flags = []
                while True:
                    flag = self.expect(*_SET_FLAGS)
                    flags.append(flag.text)
                    if not self.accept(","):
                        break
                sdef.flags = tuple(dict.fromkeys(sdef.flags + tuple(flags)))
            elif self.accept("timeout", "gc-interval", "size", "policy", "comment"):
                options.append((tok.text, self.value_token(f"a {tok.text}").text))
            elif self.accept("counter", "auto-merge"):
                options.append((tok.text, ""))
            elif self.accept("elements"):
                self.expect("=")
                raw = self.raw_elements()
                continue  # nft takes '... elements = { } }' without a separator
            else:
                raise self.unexpected(tok, "'type', 'typeof', 'flags', 'elements' or '}'")
            self.separator()  # other set_block items end with a newline or ';' (parser_bison.y)
        if not sdef.key:
            raise RulesetError(f"set '{name.text}' needs a 'type' or 'typeof'", name.loc)
        if is_map != sdef.is_map:
            what = "map needs 'type KEY : DATA'" if is_map else "set cannot have a data type"
            raise RulesetError(f"{name.text}: {what}", name.loc)
        sdef.timeout = dict(options).get("timeout")
        sdef.options = tuple(options)
        if raw is not None:
            sdef.elements = values.set_elements(sdef, raw)
        return sdef

    def type_list(self, tok: Token) -> tuple[DataType, ...]:
        types = []
        while True:
            word = self.word("a data type")
            dtype = dt.BY_NAME.get(word.text)
            if dtype is None:
                raise RulesetError(f"unknown datatype {word.text}", word.loc)
            types.append(dtype)
            if not self.accept("."):
                return tuple(types)

    def map_data_type(self) -> DataType:
        word = self.word("a data type")
        if word.text == "verdict":
            return dt.VERDICT
        dtype = dt.BY_NAME.get(word.text)
        if dtype is None:
            raise RulesetError(f"unknown datatype {word.text}", word.loc)
        if self.at("."):
            raise RulesetError("concatenated map data is not supported", self.peek().loc)
        return dtype

    def raw_elements(self) -> list:
        """``{ KEY [: DATA] [timeout T] [comment C], ... }`` as token groups, typed later
        against the set's key type (the set may be declared after the elements are read)."""
        self.expect("{")
        out: list = []
        while True:
            self.skip_newlines()
            if self.accept("}"):
                return out
            key = self.raw_value()
            data = None
            while self.at("timeout", "expires", "comment", "counter"):
                opt = self.next()
                if opt.text != "counter":
                    self.value_token("a value")
            if self.accept(":"):
                data = self.raw_value()
            out.append((key, data))
            self.skip_newlines()
            if self.accept("}"):
                return out
            self.expect(",")

    def raw_value(self) -> list[Token]:
        """The tokens of one element: parts joined by ``.`` or ``-``, a verdict, a nested
        ``{ }`` from a variable (flattened by the caller)."""
        toks: list[Token] = []
        if self.at("jump", "goto"):
            toks.append(self.next())
            toks.append(self.identifier("chain name"))
            return toks
        if self.at("{"):
            depth = 0
            while True:
                tok = self.next()
                toks.append(tok)
                if tok.text == "{" and tok.kind is Kind.PUNCT:
                    depth += 1
                elif tok.text == "}" and tok.kind is Kind.PUNCT:
                    depth -= 1
                    if depth == 0:
                        return toks
                elif tok.kind is Kind.EOF:
                    raise self.unexpected(tok, "'}'")
        toks.append(self.value_token("a value"))
        while self.at(".", "-", "/", "|"):
            toks.append(self.next())
            toks.append(self.value_token("a value"))
        return toks

    def object_body(self, kind: str, name: Token, in_block: bool = False) -> ObjectDef:
        obj = ObjectDef(kind, name.text, loc=name.loc)
        if not self.accept("{"):
            if kind in ("counter", "quota") and not in_block:
                return obj
            if kind == "counter":
                return obj
            raise self.unexpected(self.peek(), "'{'")
        options: list[tuple[str, str]] = []
        while True:
            self.skip_separators()
            if self.accept("}"):
                break
            tok = self.peek()
            if tok.kind is Kind.EOF:
                raise self.unexpected(tok, "'}'")
            if kind == "counter" and self.accept("packets", "bytes"):
                num = self.number(tok.text)
                if tok.text == "packets":
                    obj.packets = num
                else:
                    obj.bytes = num
                if not self.at("}"):
                    self.separator()
                continue
            if kind == "ct helper" and self.accept("type"):
                helper = self.value_token("a helper name")
                self.expect("protocol")
                proto = self.expect("tcp", "udp")
                options.append(("type", f'"{helper.text}" protocol {proto.text}'))
                self.separator()
                continue
            if kind == "ct helper" and self.accept("l3proto"):
                options.append(("l3proto", self.expect("ip", "ip6", "inet").text))
                self.separator()
                continue
            words = []
            while not self.at_end():
                t = self.next()
                words.append(f'"{t.text}"' if t.kind is Kind.STRING else t.text)
            if not words:
                raise self.unexpected(self.peek(), "an option")
            options.append((words[0], " ".join(words[1:])))
        if kind == "ct helper" and "type" not in dict(options):
            raise RulesetError(f"ct helper {name.text} needs 'type \"NAME\" protocol P'",
                               name.loc)
        obj.options = tuple(options)
        return obj

    # -- rules ---------------------------------------------------------------------------------

    def rule_command(self, loc: Loc, insert: bool = False, replace: bool = False) -> list[Command]:
        family, table = self.table_spec()
        chain = self.identifier("chain name").text
        handle = None
        if self.accept("handle", "position", "index"):
            handle = self.number("handle")
        if replace and handle is None:
            raise self.unexpected(self.peek(), "'handle'")
        rule = self.rule()
        return [AddRule(family, table, chain, rule, insert, loc, handle, replace)]

    def rule(self) -> Rule:
        start = self.peek()
        items: list[Item] = []
        comment = None
        while not self.at_end():
            if self.at("comment"):
                self.next()
                comment = self.string("a comment")
                break
            items.append(self.item())
        if not items:
            raise self.unexpected(start, "a rule")
        return Rule(items, start.loc, comment)

    def item(self) -> Item:
        tok = self.peek()
        if tok.kind is not Kind.WORD:
            raise self.unexpected(tok, "a match or statement")
        kw = tok.text
        if self.is_selector_start():
            return self.selector_item()
        self.next()
        if kw == "counter":
            return self.counter(tok)
        if kw in _VERDICTS:
            return self.verdict(tok)
        if kw == "flow":
            self.expect("add", "offload")
            self.expect("@")
            return FlowAdd(self.identifier("flowtable name").text, tok.loc)
        if kw in ("masquerade", "redirect", "snat", "dnat"):
            return self.nat(tok)
        if kw == "reject":
            return self.reject(tok)
        if kw == "log":
            return self.log(tok)
        if kw == "limit":
            return self.limit(tok)
        if kw == "notrack":
            return Notrack(tok.loc)
        if kw == "tproxy":
            return self.tproxy(tok)
        if kw == "quota":
            return self.quota(tok)
        if kw in ("add", "update", "delete") and self.at("@"):
            self.next()
            name = self.identifier("set name").text
            return self.set_update(kw, name, tok, meter=False)
        if kw == "set" and self.at("add", "update"):  # old spelling: set add EXPR @SET
            op = self.next().text
            key = self.expression()
            self.expect("@")
            return SetUpdate(op, self.identifier("set name").text, key, loc=tok.loc)
        if kw == "meter":
            name = self.identifier("meter name").text
            size = None
            if self.accept("size"):
                size = self.number("a size", 2**32 - 1)
            update = self.set_update("update", name, tok, meter=True)
            update.size = size
            return update
        raise RulesetError(f"syntax error, unexpected {tok.describe()}", tok.loc)

    def is_selector_start(self) -> bool:
        tok = self.peek()
        if tok.kind is not Kind.WORD:
            return False
        if tok.text in BARE_META or tok.text in (
            "numgen", "jhash", "symhash", "fib", "osf", "socket", *_TUNNELS
        ):
            return True
        return tok.text in NAMESPACES

    # -- expressions -----------------------------------------------------------------------------

    def selector(self) -> Field:
        """One selector: ``ip saddr``, ``meta mark``, ``mark``, ``ct original saddr``,
        ``tcp option maxseg size``."""
        tok = self.word("an expression")
        ns = tok.text
        if ns in BARE_META:
            return FIELDS[("meta", ns)]
        if ns in ("numgen", "jhash", "symhash"):
            return self.hash_expr(ns)
        if ns == "fib":
            return self.fib_expr(tok)
        if ns in _TUNNELS:
            return self.tunnel_field(tok)
        if ns == "osf":
            ttl = ""
            if self.accept("ttl"):
                ttl = f"ttl {self.expect('loose', 'skip').text} "
            key = self.expect("name", "version")
            return Field("osf", ttl + key.text, dt.OSF_NAME)
        if ns == "socket":
            key = self.expect("transparent", "mark", "wildcard")
            dtype = dt.MARK if key.text == "mark" else dt.BOOLEAN
            return Field("socket", key.text, dtype)
        if ns == "tcp" and self.at("option"):
            self.next()
            return self.tcp_option_field()
        key = self.word(f"a {ns} field")
        words = key.text
        if ns == "sctp" and key.text == "chunk":
            return self.sctp_chunk()
        if ns == "ct" and key.text in ("original", "reply"):
            sub = self.word("a ct field")
            words = f"{key.text} {sub.text}"
            if sub.text in ("ip", "ip6"):
                words += f" {self.word('saddr or daddr').text}"
        if ns == "rt" and key.text in ("ip", "ip6"):
            words = f"{key.text} {self.expect('nexthop').text}"
        field = FIELDS.get((ns, words))
        if field is None:
            raise RulesetError(f"syntax error, unsupported expression '{ns} {words}'", key.loc)
        return field

    def tcp_option_field(self) -> Field:
        """``tcp option NAME [FIELD]``: a field of the option (``nft_exthdr`` with
        ``NFT_EXTHDR_OP_TCPOPT``), or its presence when no field follows."""
        opt = self.word("a tcp option")
        if opt.text.isdigit():
            kind, fields = values.parse_int(opt.text, opt.loc, "tcp option", 0, 255), _TCPOPT_BASE
            name = opt.text
        elif opt.text in _TCP_OPTIONS:
            kind, fields = _TCP_OPTIONS[opt.text]
            name = {"noop": "nop", "sack0": "sack", "sack-perm": "sack-permitted"}.get(
                opt.text, opt.text)
        else:
            raise RulesetError(f"unknown tcp option '{opt.text}'", opt.loc)
        nxt = self.peek()
        if nxt.kind is Kind.WORD and nxt.text in fields:
            self.next()
            off, bits = fields[nxt.text]
            dtype = dt.INTEGER.get(bits, dt.INTEGER[32])
            return Field("tcp", f"option {name} {nxt.text}", dtype, None, 6,
                         ("tcpopt", kind, off, bits))
        if nxt.kind is Kind.WORD and nxt.text not in ("exists", "missing", "set"):
            raise RulesetError(f"tcp option {name} has no field '{nxt.text}'", nxt.loc)
        return Field("tcp", f"option {name}", dt.BOOLEAN, None, 6, ("tcpopt", kind, -1, 0))

    def hash_expr(self, kind: str) -> Field:
        """``numgen inc|random mod N [offset M]`` (``nft_ng_inc_eval``/``nft_ng_random_eval``),
        ``jhash EXPR mod N [seed S] [offset M]`` (``nft_jhash_eval``), ``symhash mod N
        [offset M]``."""
        words, source = [kind], ()
        inner = None
        if kind == "numgen":
            mode = self.expect("inc", "random").text
            words.append(mode)
        elif kind == "jhash":
            inner = self.expression()
            words.append(_expr_text(inner))
        self.expect("mod")
        modulus = self.number("a modulus", 2**32 - 1)
        if modulus == 0:
            raise RulesetError("mod 0 is invalid", self.peek().loc)
        words += ["mod", str(modulus)]
        seed = offset = 0
        if kind == "jhash" and self.accept("seed"):
            seed = self.number("a seed", 2**32 - 1)
            words += ["seed", f"0x{seed:08x}"]
        if self.accept("offset"):
            offset = self.number("an offset", 2**32 - 1)
            words += ["offset", str(offset)]
        if kind == "numgen":
            source = ("numgen", words[1], modulus, offset)
        elif kind == "jhash":
            source = ("jhash", inner, modulus, seed, offset)
        return Field(kind, " ".join(words[1:]), dt.INTEGER[32], None, None, source)

    def fib_expr(self, tok: Token) -> Field:
        """``fib saddr|daddr|mark|iif|oif [. ...] oif|oifname|type``: a route lookup; the
        mirror's rules do not see the routing table, so such a match never matches."""
        keys = [self.expect("saddr", "daddr", "mark", "iif", "oif").text]
        while self.accept("."):
            keys.append(self.expect("saddr", "daddr", "mark", "iif", "oif").text)
        if ("saddr" in keys) == ("daddr" in keys) or ("iif" in keys and "oif" in keys):
            raise RulesetError("fib: use exactly one of saddr/daddr, and iif or oif", tok.loc)
        result = self.expect("oif", "oifname", "type")
        dtype = {"oif": dt.IFNAME, "oifname": dt.IFNAME, "type": dt.FIB_ADDRTYPE}[result.text]
        if result.text == "oif" and self.at("0"):
            dtype = dt.INTEGER[32]
        if result.text == "oif" and self.at("missing", "exists"):
            dtype = dt.BOOLEAN
        if result.text == "type" and "oif" in keys:
            raise RulesetError("fib: 'type' needs iif, not oif", result.loc)
        return Field("fib", f"{' . '.join(keys)} {result.text}", dtype)

    def tunnel_field(self, tok: Token) -> Field:
        """``vxlan|geneve|gre|gretap FIELD`` or ``... INNER-SELECTOR``: the tunnel header, or
        a header inside the tunnel (``nft_inner``); inner selectors read the encapsulated
        packet (Ethernet for vxlan/geneve/gretap, IP for gre)."""
        kind = tok.text
        own = _TUNNEL_FIELDS[kind]
        nxt = self.peek()
        if nxt.kind is Kind.WORD and nxt.text in own:
            self.next()
            off, bits = own[nxt.text]
            return Field(kind, nxt.text, dt.INTEGER.get(bits, dt.INTEGER[32]), None,
                         _TUNNEL_L4[kind], ("tunnel", kind, "hdr", off, bits))
        inner = self.selector()
        base = inner.source[0] if inner.source else ""
        if base not in ("nh", "th", "ll") or (base == "ll" and kind == "gre"):
            raise RulesetError(f"{kind} cannot match '{inner.nft}' inside the tunnel", tok.loc)
        return Field(kind, f"{inner.ns} {inner.key}", inner.dtype, None, _TUNNEL_L4[kind],
                     ("tunnel", kind, *inner.source))

    def sctp_chunk(self) -> Field:
        """``sctp chunk NAME [FIELD]``: a chunk's field, or its presence (``exists``); the
        mirror does not walk SCTP chunks, so such a match never matches (it is refused by no
        one, but documented as unmodelled)."""
        name = self.word("an sctp chunk type")
        if name.text not in _SCTP_CHUNKS:
            raise RulesetError(f"unknown sctp chunk '{name.text}'", name.loc)
        if self.at(*_SCTP_CHUNK_FIELDS):
            fld = self.next().text
            return Field("sctp", f"chunk {name.text} {fld}", dt.INTEGER[32], None, 132)
        return Field("sctp", f"chunk {name.text}", dt.BOOLEAN, None, 132)

    def expression(self) -> Expr:
        """``SEL [& MASK] [. SEL ...]``."""
        parts: list[Expr] = []
        while True:
            sel = self.selector()
            expr: Expr = sel
            while self.at(*_BINOPS):
                op = _BINOPS[self.next().text]
                expr = Masked(expr, op, self.constant_int(sel.dtype, op))
            parts.append(expr)
            if not (self.at(".") and self.peek(1).kind is Kind.WORD and self._selector_word(1)):
                break
            self.next()
        return parts[0] if len(parts) == 1 else Concat(tuple(parts))

    def _selector_word(self, ahead: int) -> bool:
        text = self.peek(ahead).text
        return text in BARE_META or text in NAMESPACES or text in _TUNNELS

    def constant_int(self, dtype: DataType, op: str) -> int:
        """The operand of ``&``/``|``: a number or symbols of ``dtype``, maybe ``(a | b)``."""
        if op in ("<<", ">>"):
            return self.number("a shift", dtype.bits)
        if self.accept("("):
            value = self.constant_int(dtype, op)
            while self.accept("|", ","):
                value |= self.constant_int(dtype, op)
            self.expect(")")
            return value
        tok = self.value_token("a value")
        value = dt.parse_scalar(dtype, tok.text, tok.loc)
        while dtype.bitmask and self.accept("|"):
            more = self.value_token("a flag")
            value |= dt.parse_scalar(dtype, more.text, more.loc)
        return value

    def selector_item(self) -> Item:
        start = self.peek()
        first = self.selector()
        if first.source and first.source[0] == "tcpopt" and self.accept("set"):
            if self.accept("rt"):
                self.expect("mtu")
                return Other(f"{first.nft} set rt mtu", start.loc)
            value = self.number("a value", first.dtype.max)
            return Other(f"{first.nft} set {value}", start.loc)
        if self.at("set") and first.source and first.source[0] == "tunnel":
            raise RulesetError("headers inside a tunnel cannot be set", self.peek().loc)
        if self.accept("set"):
            return SetStatement(first, self.set_value(first), start.loc)
        expr: Expr = first
        while self.at(*_BINOPS):
            op = _BINOPS[self.next().text]
            expr = Masked(expr, op, self.constant_int(first.dtype, op))
        if self.at(".") and self._selector_word(1):
            self.next()
            rest = self.expression()
            parts = rest.parts if isinstance(rest, Concat) else (rest,)
            expr = Concat((expr, *parts))
        if self.accept("vmap"):
            return Vmap(expr, self.vmap_body(expr), start.loc)
        if self.at("map"):
            raise RulesetError("map lookups outside a statement are not supported",
                               self.peek().loc)
        return self.relation(expr, start)

    def relation(self, expr: Expr, start: Token) -> Match:
        op_tok = self.accept(*_OPERATORS)
        op = _OPERATORS[op_tok.text] if op_tok else "implicit"
        if self.at_end():
            raise self.unexpected(self.peek(), "a value")
        types = expr_types(expr)
        if self.accept("@"):
            if op not in ("implicit", "==", "!="):
                raise RulesetError(f"'{op}' cannot compare with a set", op_tok.loc)
            ref = SetRef(self.identifier("set name").text)
            return Match(expr, ref, "!=" if op == "!=" else "==", True, start.loc)
        if self.at("{"):
            if op not in ("implicit", "==", "!="):
                raise RulesetError(f"'{op}' cannot compare with a set", op_tok.loc)
            raw = self.raw_elements()
            vals = [v for key, _ in raw for v in values.typed_values(types, key)]
            if not vals:
                raise RulesetError("empty set", start.loc)
            vals = list(dict.fromkeys(vals))
            if op == "implicit":
                op = "=="
            return Match(expr, tuple(vals), op, len(vals) > 1, start.loc)  # nft: { x } is x
        if self.at("(") and len(types) == 1:  # tcp flags & (syn|fin) == (syn|fin)
            flags = self.constant_int(types[0], "|")
            return Match(expr, ((flags, flags),), "==" if op == "implicit" else op, False,
                         start.loc)
        raw_tokens = self.raw_value()
        value = values.typed_value(types, raw_tokens)
        if types[0].bitmask and len(types) == 1:
            while self.accept(","):  # ct state established,related: one bitmask
                more = values.typed_value(types, self.raw_value())
                value = (value[0] | more[0], value[1] | more[1])
        if self.accept("/") and len(types) == 1:  # tcp flags syn / syn,ack: value and mask
            mask = values.typed_value(types, self.raw_value())
            while self.accept(","):
                more = values.typed_value(types, self.raw_value())
                mask = (mask[0] | more[0], mask[1] | more[1])
            return Match(Masked(expr, "&", mask[0]), ((value[0], value[0]),),
                         "==" if op == "implicit" else op, False, start.loc)
        if op in ("<", ">", "<=", ">=") and (
            not isinstance(value, tuple) or isinstance(value[0], tuple) or value[0] != value[1]
        ):
            raise RulesetError(f"'{op}' needs a single value", raw_tokens[0].loc)
        if op == "implicit" and not (types[0].bitmask and len(types) == 1):
            op = "=="
        for vt in raw_tokens:
            if vt.kind is Kind.STRING and types[0] is dt.IFNAME and vt.text == "*":
                raise RulesetError("All-wildcard strings are not supported", vt.loc)
        return Match(expr, (value,), op, False, start.loc)

    def set_value(self, target: Field) -> Value | Expr | MapLookup:
        """The right of ``set``: a constant, an expression (with ``& | ^`` operands), or a
        map lookup (``meta mark set ip saddr map { ... }``)."""
        if self.is_selector_start():
            source = self.selector()
            expr: Expr = source
            while self.at(*_BINOPS):  # operands take the target's type (ct mark set x | 0x10)
                op = _BINOPS[self.next().text]
                operand_type = source.dtype if op == "&" else target.dtype
                if operand_type.kind not in ("int", "ipv4", "ipv6"):
                    operand_type = dt.INTEGER[32]
                expr = Masked(expr, op, self.constant_int(operand_type, op))
            if self.at(".") and self._selector_word(1):
                self.next()
                rest = self.expression()
                expr = Concat((expr, *(rest.parts if isinstance(rest, Concat) else (rest,))))
            if self.accept("map"):
                return self.map_lookup(expr, (target.dtype,))
            return expr
        if (target.ns == "ct" and target.key == "helper") or target.dtype.is_string:
            return self.string("a name")
        tok = self.value_token("a value")
        value = dt.parse_scalar(target.dtype, tok.text, tok.loc)
        while self.at(*_BINOPS):  # meta mark set 0x10 | 0x1 (folded)
            op = _BINOPS[self.next().text]
            operand = self.constant_int(target.dtype, op)
            value = _fold(value, op, operand)
        return (value, value)

    def map_lookup(self, key: Expr, data: tuple[DataType, ...]) -> MapLookup:
        """After ``map``: ``@name`` or ``{ KEY : DATA, ... }`` typed by the key and ``data``."""
        if self.accept("@"):
            return MapLookup(key, SetRef(self.identifier("map name").text), data)
        types = expr_types(key)
        out: list[tuple[Value, Value]] = []
        for key_toks, data_toks in self.raw_elements():
            if data_toks is None:
                raise RulesetError("map elements need 'KEY : DATA'", key_toks[0].loc)
            value = values.typed_value(data, data_toks)
            out += [(k, value) for k in values.typed_values(types, key_toks)]
        if not out:
            raise RulesetError("empty map", self.peek().loc)
        return MapLookup(key, tuple(out), data)

    def object_map(self, kind: str, tok: Token) -> Other:
        """``counter|quota|limit name EXPR map { KEY : "NAME", ... }``: kept as text, the
        named objects checked."""
        key = self.expression()
        self.expect("map")
        lookup = self.map_lookup(key, (dt.STRING,))
        names = tuple((kind, str(v)) for _, v in lookup.mapping)  # type: ignore[union-attr]
        pairs = ", ".join(f'{format_value(expr_types(key), k)} : "{v}"'
                          for k, v in lookup.mapping)  # type: ignore[union-attr]
        return Other(f"{kind} name {format_expr(key)} map {{ {pairs} }}", tok.loc, names)

    def vmap_body(self, key: Expr) -> tuple | SetRef:
        start = self.peek()
        if self.accept("@"):
            return SetRef(self.identifier("map name").text)
        types = expr_types(key)
        self.expect("{")
        out = []
        while True:
            self.skip_newlines()
            if self.accept("}"):
                break
            raw = self.raw_value()
            last = raw[-1]
            if last.kind is Kind.WORD and ":" in last.text and not self.at(":"):
                key, _, verdict_text = last.text.rpartition(":")  # 25:accept is one word
                raw[-1] = Token(Kind.WORD, key, last.loc)
                verdict_tok = (Token(Kind.WORD, verdict_text, last.loc) if verdict_text
                               else self.word("a verdict"))
            else:
                self.expect(":")
                verdict_tok = self.word("a verdict")
            if verdict_tok.text not in _VERDICTS:
                raise self.unexpected(verdict_tok, "a verdict")
            verdict = self.verdict(verdict_tok)
            for value in values.typed_values(types, raw):
                out.append((value, verdict))
            self.skip_newlines()
            if self.accept("}"):
                break
            self.expect(",")
        if not out:
            raise RulesetError("empty verdict map", self.peek().loc)
        _check_overlaps(types, out, start.loc)
        return tuple(out)

    # -- statements --------------------------------------------------------------------------------

    def set_update(self, op: str, name: str, tok: Token, meter: bool) -> SetUpdate:
        """``{ KEY [timeout T] [counter] [limit rate ...] }`` of a set update or meter."""
        self.expect("{")
        key = self.expression()
        update = SetUpdate(op, name, key, meter=meter, loc=tok.loc)
        stateful: list[Limit | Counter] = []
        while not self.accept("}"):
            word = self.word("'timeout', 'counter', 'limit' or '}'")
            if word.text == "timeout":
                update.timeout = self.value_token("a timeout").text
            elif word.text == "counter":
                stateful.append(self.counter(word))
            elif word.text == "limit":
                stateful.append(self.limit(word))
            else:
                raise self.unexpected(word, "'timeout', 'counter', 'limit' or '}'")
        update.stateful = tuple(stateful)
        return update

    def tproxy(self, tok: Token) -> Other:
        """``tproxy [ip|ip6] to ADDR[:PORT] | :PORT`` (``nft_tproxy``): the packet goes to a
        local socket; the mirror has none, so the statement is kept but changes nothing."""
        fam = self.accept("ip", "ip6")
        self.expect("to")
        nat = Nat(NatKind.DNAT, family=Family(fam.text) if fam else None, loc=tok.loc)
        target = self.nat_target_text()
        values.parse_nat_into(nat, target, tok.loc)
        if nat.addr_max is not None:
            raise RulesetError("tproxy takes one address", tok.loc)
        return Other(f"tproxy{' ' + fam.text if fam else ''} to {target}", tok.loc,
                     tproxy=nat)

    def quota(self, tok: Token) -> Other:
        """``quota [over|until] N UNIT [used N UNIT]`` or ``quota name X``: kept as text (the
        mirror does not count bytes against quotas)."""
        if self.accept("name"):
            if self.is_selector_start():
                return self.object_map("quota", tok)
            name = self.identifier("quota name").text
            return Other(f'quota name "{name}"', tok.loc, (("quota", name),))
        words = ["quota"]
        if self.at("over", "until"):
            words.append(self.next().text)
        words.append(str(self.number("a quota")))
        words.append(self.expect(*_BYTE_UNITS).text)
        if self.accept("used"):
            words += ["used", str(self.number("a quota")), self.expect(*_BYTE_UNITS).text]
        return Other(" ".join(words), tok.loc)

    def counter(self, tok: Token) -> Counter:
        counter = Counter(loc=tok.loc)
        if self.accept("name"):
            if self.is_selector_start():
                return self.object_map("counter", tok)  # type: ignore[return-value]
            counter.name = self.identifier("counter name").text
            return counter
        if self.peek().kind is Kind.STRING:
            counter.name = self.next().text
            return counter
        seen = set()
        while self.at("packets", "bytes") and self.peek().text not in seen:
            which = self.next().text
            seen.add(which)
            num = self.number(which)
            if which == "packets":
                counter.packets = num
            else:
                counter.bytes = num
        return counter

    def verdict(self, tok: Token) -> VerdictStatement:
        kw = tok.text
        if kw in ("jump", "goto"):
            return VerdictStatement(None, tok.loc, kw, self.identifier("chain name").text)
        if kw == "queue":
            words = []
            while self.at("num", "flags", "bypass", "fanout", "to"):
                words.append(self.next().text)
                if words[-1] in ("num", "to"):
                    words.append(self.raw_text())
                elif words[-1] == "flags":
                    words.append(self.word("a flag").text)
                    while self.accept(","):
                        words[-1] += "," + self.word("a flag").text
            return VerdictStatement(None, tok.loc, "queue", " ".join(words) or None)
        return VerdictStatement(None, tok.loc, kw)

    def raw_text(self) -> str:
        return "".join(t.text for t in self.raw_value())

    def nat(self, tok: Token) -> Nat:
        kind = NatKind(tok.text)
        nat = Nat(kind, loc=tok.loc)
        if kind in (NatKind.SNAT, NatKind.DNAT):
            fam = self.accept("ip", "ip6")
            if fam is not None:
                nat.family = Family(fam.text)
            if self.accept("prefix"):
                raise RulesetError(f"{kind.value} prefix mapping is not supported",
                                   self.peek().loc)
            self.accept("to")  # optional: fw4 prints 'dnat 192.168.1.10:80'
            if self.is_selector_start():
                nat.map = self.nat_map(nat.family)
                return self.nat_flags(nat)
            target = self.nat_target_text()
            values.parse_nat_into(nat, target, self.peek().loc if not target else tok.loc)
            if nat.addr is None:
                raise RulesetError(f"{kind.value} needs an address", tok.loc)
        elif self.accept("to"):
            if self.at(":") and self.peek(1).kind is Kind.WORD and self._selector_word(1):
                self.next()  # redirect to : tcp dport map { 22 : 8000 }
                key = self.expression()
                self.expect("map")
                nat.map = self.map_lookup(key, (dt.INET_SERVICE,))
                return self.nat_flags(nat)
            target = self.nat_target_text()
            if target[0].isdigit() and ":" not in target:
                target = f":{target}"  # 'redirect to 26' is 'redirect to :26'
            values.parse_nat_into(nat, target, tok.loc)
            if nat.addr is not None:
                raise RulesetError(f"{kind.value} takes ports only (to :PORT)", tok.loc)
        return self.nat_flags(nat)

    def nat_map(self, family: Family | None) -> MapLookup:
        """``to EXPR map { KEY : ADDR[-ADDR|/LEN][ . PORT[-PORT]] }``; the address type is the
        statement's family (``ip`` when it is not given)."""
        key = self.expression()
        self.expect("map")
        addr = dt.IPV6_ADDR if family is Family.IP6 else dt.IPV4_ADDR
        if self.at("@"):
            return self.map_lookup(key, (addr,))
        # the data has a port when an element's data holds a '.'
        depth, ahead, with_port = 0, 0, False
        while True:
            tok = self.peek(ahead)
            if tok.kind is Kind.EOF:
                break
            if tok.kind is Kind.PUNCT and tok.text in "{}":
                depth += 1 if tok.text == "{" else -1
                if depth == 0:
                    break
            if tok.kind is Kind.PUNCT and tok.text == ":":
                nxt, follow = self.peek(ahead + 1), self.peek(ahead + 2)
                with_port = follow.kind is Kind.PUNCT and follow.text == "." and bool(nxt.text)
                break
            ahead += 1
        return self.map_lookup(key, (addr, dt.INET_SERVICE) if with_port else (addr,))

    def nat_flags(self, nat: Nat) -> Nat:
        flags = []
        while self.at(*_NAT_FLAGS):
            flags.append(self.next().text)
            while self.accept(","):
                flags.append(self.expect(*_NAT_FLAGS).text)
        nat.flags = tuple(flags)
        return nat

    def nat_target_text(self) -> str:
        """``ADDR[-ADDR][:PORT[-PORT]]`` possibly split by the scanner at ``-`` and ``:``."""
        text = ""
        while True:
            tok = self.peek()
            if tok.kind is Kind.WORD or (tok.kind is Kind.PUNCT and tok.text in ("-", ":")):
                if text and tok.kind is Kind.WORD and not text.endswith(("-", ":")):
                    break
                text += self.next().text
                continue
            break
        if not text:
            raise self.unexpected(self.peek(), "an address")
        return text

    def reject(self, tok: Token) -> Reject:
        rej = Reject(loc=tok.loc)
        if not self.accept("with"):
            return rej
        how = self.expect("icmp", "icmpv6", "icmpx", "tcp", "icmp6")
        if how.text == "tcp":
            self.expect("reset")
            rej.kind = "tcp reset"
            return rej
        rej.kind = "icmpv6" if how.text == "icmp6" else how.text
        self.accept("type")
        code = self.value_token("a reject code")
        dtype = {"icmp": dt.ICMP_CODE, "icmpv6": dt.ICMPV6_CODE, "icmpx": dt.ICMPX_CODE}[rej.kind]
        rej.code = dt.parse_scalar(dtype, code.text, code.loc)
        return rej

    def log(self, tok: Token) -> Log:
        options: list[tuple[str, str]] = []
        while self.at("prefix", "level", "group", "snaplen", "queue-threshold", "flags"):
            opt = self.next().text
            if opt == "prefix":
                options.append((opt, f'"{self.string("a prefix")}"'))
            elif opt == "level":
                level = self.word("a log level")
                if level.text not in _LOG_LEVELS:
                    raise RulesetError(f"invalid log level '{level.text}'", level.loc)
                options.append((opt, level.text))
            elif opt == "flags":
                flags = [self.expect("tcp", "ip", "skuid", "ether", "all").text]
                if flags[0] == "tcp":
                    flags.append(self.expect("sequence", "options").text)
                    while self.accept(","):
                        flags[-1] += "," + self.expect("sequence", "options").text
                elif flags[0] == "ip":
                    flags.append(self.expect("options").text)
                options.append((opt, " ".join(flags)))
            else:
                options.append((opt, str(self.number(opt, 65535))))
        return Log(tuple(options), tok.loc)

    def limit(self, tok: Token) -> Limit:
        if self.accept("name"):
            if self.is_selector_start():
                return self.object_map("limit", tok)  # type: ignore[return-value]
            name = self.identifier("limit name").text
            return Limit(0, "name", 0, loc=tok.loc, byte_unit=name)
        self.expect("rate")
        over = False
        if self.accept("over"):
            over = True
        elif self.accept("until"):
            pass
        rate_tok = self.word("a rate")
        rate_text, _, unit = rate_tok.text.partition("/")
        byte_unit = None
        if not unit:
            if self.at(*_BYTE_UNITS):
                byte_unit = self.next().text
                self.expect("/")
            else:
                self.expect("/")
            unit = self.word("a time unit").text
        elif not rate_text.isdigit():
            raise RulesetError(f"invalid rate '{rate_tok.text}'", rate_tok.loc)
        if unit not in _RATE_UNITS:
            raise RulesetError(f"wrong rate format: unknown unit '{unit}'", rate_tok.loc)
        rate = values.parse_int(rate_text, rate_tok.loc, "rate", 1, 2**64 - 1)
        limit = Limit(rate, unit, 5 if byte_unit is None else 0, over, byte_unit, loc=tok.loc)
        if self.accept("burst"):
            limit.burst = self.number("burst", 2**32 - 1)
            if self.at("packets", *_BYTE_UNITS):
                unit_tok = self.next()
                if (unit_tok.text == "packets") != (byte_unit is None):
                    raise RulesetError("burst unit does not match the rate", unit_tok.loc)
                limit.burst_unit = None if unit_tok.text == "packets" else unit_tok.text
            if limit.burst == 0 and byte_unit is None:
                raise RulesetError("packet limit burst must be > 0", tok.loc)
        return limit


def _check_overlaps(types: tuple[DataType, ...], pairs: list, loc: Loc) -> None:
    """nft refuses map elements whose intervals overlap (``conflicting intervals
    specified``: one key, two verdicts)."""
    if len(types) != 1 or types[0].is_string:
        return
    ranges = sorted((key, verdict.text) for key, verdict in pairs)
    for (low, prev), (high, _) in itertools.pairwise(ranges):
        if high[0] <= low[1] and low != high:
            raise RulesetError(f"conflicting intervals specified ({prev})", loc)


def _fold(value: int, op: str, operand: int) -> int:
    return {"&": value & operand, "|": value | operand, "^": value ^ operand,
            "<<": value << operand, ">>": value >> operand}[op]


def _expr_text(expr: Expr) -> str:
    if isinstance(expr, Concat):
        return " . ".join(_expr_text(p) for p in expr.parts)
    if isinstance(expr, Masked):
        return _expr_text(expr.expr)
    return expr.nft
