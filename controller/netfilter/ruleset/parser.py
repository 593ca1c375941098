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

from controller.netfilter.ruleset import datatypes as dt
from controller.netfilter.ruleset import values
from controller.netfilter.ruleset.datatypes import DataType
from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.expressions import VERDICTS, expr_text
from controller.netfilter.ruleset.lexer import Kind, Token
from controller.netfilter.ruleset.model import (
    BaseSpec,
    ChainType,
    Family,
    Hook,
    ObjectDef,
    SetDef,
    expr_types,
)
from controller.netfilter.ruleset.rules import RuleSyntax
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

_FAMILY_WORDS = frozenset({f.value for f in Family} | set(values.UNSUPPORTED_FAMILIES))
_OBJECT_KINDS = ("counter", "quota", "limit", "secmark", "synproxy")
_CT_OBJECTS = ("helper", "timeout", "expectation")
_SET_FLAGS = ("constant", "interval", "timeout", "dynamic", "eval")


def parse(text: str, filename: str = "<string>") -> list[Command]:
    return _Parser(text, filename).script()


class _Parser(RuleSyntax):
    """Script commands and blocks; rules come from :class:`RuleSyntax`."""

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
                sdef.typeof = expr_text(key)
                if self.accept(":"):
                    if self.at(*VERDICTS[:0]) or self.at("verdict"):
                        sdef.data = dt.VERDICT
                        self.next()
                    else:
                        data = self.expression()
                        sdef.data = expr_types(data)[0]
                        sdef.typeof += f" : {expr_text(data)}"
                del start
            elif self.accept("flags"):
                flags = []
                while True:
                    flag = self.expect(*_SET_FLAGS)
                    flags.append(flag.text)
                    if not self.accept(","):
                        break
                sdef.flags = tuple(dict.fromkeys(sdef.flags + tuple(flags)))
            elif self.accept("timeout", "gc-interval"):
                value = self.value_token("a duration")
                duration = dt.parse_duration(value.text, value.loc)
                options.append((tok.text, dt.format_duration(duration)))
            elif self.accept("size", "policy", "comment"):
                options.append((tok.text, self.value_token(f"a {tok.text}").text))
            elif self.accept("auto-merge"):
                options.append((tok.text, ""))
            elif self.at("counter", "quota", "limit"):  # stateful statements per element
                words = []
                while not self.at_end():
                    words.append(self.next().text)
                options.append((words[0], " ".join(words[1:])))
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
        """``verdict``, a data type (``interval T``: data that are ranges), or an object kind
        (``counter``, ``quota``, ``limit``: maps to named objects)."""
        word = self.word("a data type")
        if word.text == "verdict":
            return dt.VERDICT
        if word.text == "interval":
            word = self.word("a data type")
        dtype = dt.BY_NAME.get(word.text) or dt.OBJECT_REFS.get(word.text)
        if dtype is None:
            raise RulesetError(f"unknown datatype {word.text}", word.loc)
        if self.at("."):
            raise RulesetError("concatenated map data is not supported", self.peek().loc)
        return dtype


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
                num = self.number(tok.text)  # 'packets N bytes M' is one item
                if tok.text == "packets":
                    obj.packets = num
                else:
                    obj.bytes = num
                if self.at("packets", "bytes"):
                    continue
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
            depth = 0  # 'policy = { established: 100, close: 4 }' keeps its braces
            while depth or not self.at_end():
                t = self.next()
                if t.kind is Kind.EOF:
                    raise self.unexpected(t, "'}'")
                if t.kind is Kind.PUNCT and t.text in "{}":
                    depth += 1 if t.text == "{" else -1
                words.append(f'"{t.text}"' if t.kind is Kind.STRING else t.text)
            if not words:
                raise self.unexpected(self.peek(), "an option")
            options.append((words[0], " ".join(words[1:]).replace(" ,", ",")))
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
