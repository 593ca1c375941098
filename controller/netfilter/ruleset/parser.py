"""Recursive-descent parser for the nft syntax subset (``nft -f`` scripts) into script commands.

Grammar, as nft reads it: ``table [FAMILY] NAME { flowtable ... chain ... }`` blocks and the
``add``/``insert``/``delete``/``flush`` commands; statements end at a newline, ``;`` or ``}``.
A table block expands like nft's ``nft_cmd_expand``: the table, its chains, its flowtables, then
its rules, so rules may name flowtables declared further down the block.
"""

from __future__ import annotations

from controller.netfilter.ruleset import values
from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.lexer import Kind, Token, tokenize
from controller.netfilter.ruleset.model import (
    FIELDS_BY_WORDS,
    BaseSpec,
    ChainType,
    Counter,
    Family,
    Field,
    FlowAdd,
    Hook,
    Item,
    Match,
    Nat,
    NatKind,
    Rule,
    VerdictStatement,
)
from controller.netfilter.ruleset.script import (
    AddChain,
    AddFlowtable,
    AddRule,
    AddTable,
    Command,
    DeleteChain,
    DeleteFlowtable,
    DeleteTable,
    Device,
    FlowtableSpec,
    FlushChain,
    FlushRuleset,
)

_FAMILY_WORDS = frozenset({f.value for f in Family} | set(values.UNSUPPORTED_FAMILIES))
_FIELD_KEYWORDS = frozenset(k for k, _ in FIELDS_BY_WORDS)
_OPERATORS = {"==": False, "eq": False, "!=": True, "ne": True}
_RULE_END = frozenset({"\n", ";", "}", ""})


def parse(text: str, filename: str = "<string>") -> list[Command]:
    return _Parser(text, filename).script()


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.tokens = list(tokenize(text, filename))
        self.pos = 0

    # -- token helpers -----------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        self.pos += 1
        return tok

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok.kind in (Kind.WORD, Kind.PUNCT) and tok.text in texts

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

    def skip_newlines(self) -> None:
        while self.peek().kind is Kind.NEWLINE:
            self.pos += 1

    def skip_separators(self) -> None:
        while self.peek().kind is Kind.NEWLINE or self.at(";"):
            self.pos += 1

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

    def command(self) -> list[Command]:
        tok = self.word("a command")
        verb = tok.text
        if verb == "table":
            return self.table_block(tok.loc)
        if verb == "add" and self.accept("table"):
            return self.table_block(tok.loc, block_optional=True)
        if verb == "add" and self.accept("chain"):
            return self.chain_command(tok.loc)
        if verb in ("add", "insert") and self.accept("rule"):
            family, table = self.table_spec()
            chain = self.identifier("chain name").text
            rule = self.rule()
            return [AddRule(family, table, chain, rule, verb == "insert", tok.loc)]
        if verb == "add" and self.accept("flowtable"):
            family, table = self.table_spec()
            name = self.identifier("flowtable name").text
            self.expect("{")
            return [AddFlowtable(family, table, name, self.flowtable_body(), tok.loc)]
        if verb == "delete" and self.accept("table"):
            family, name = self.table_spec()
            return [DeleteTable(family, name, tok.loc)]
        if verb == "delete" and self.accept("flowtable"):
            family, table = self.table_spec()
            name = self.identifier("flowtable name").text
            devices = None
            if self.accept("{"):
                devices = self.flowtable_body().devices
            return [DeleteFlowtable(family, table, name, devices, tok.loc)]
        if verb == "delete" and self.accept("chain"):
            family, table = self.table_spec()
            return [DeleteChain(family, table, self.identifier("chain name").text, tok.loc)]
        if verb == "flush" and self.accept("table"):
            family, table = self.table_spec()
            return [FlushChain(family, table, None, tok.loc)]
        if verb == "flush" and self.accept("chain"):
            family, table = self.table_spec()
            return [FlushChain(family, table, self.identifier("chain name").text, tok.loc)]
        if verb == "flush" and self.accept("ruleset"):
            family = None
            if self.peek().kind is Kind.WORD:
                fam = self.next()
                family = values.parse_family(fam.text, fam.loc)
            return [FlushRuleset(family, tok.loc)]
        if verb in ("add", "insert", "delete", "flush"):
            raise self.unexpected(self.peek(), "an object this tool supports")
        raise RulesetError(f"syntax error, unexpected {tok.describe()}", tok.loc)

    def table_spec(self) -> tuple[Family, str]:
        """``[FAMILY] NAME``; the family defaults to ip, as in nft."""
        first = self.peek()
        if (
            first.kind is Kind.WORD
            and first.text in _FAMILY_WORDS
            and (self.peek(1).kind in (Kind.WORD, Kind.STRING))
        ):
            self.next()
            family = values.parse_family(first.text, first.loc)
        else:
            family = Family.IP
        return family, self.identifier("table name").text

    # -- tables --------------------------------------------------------------------------------

    def table_block(self, loc: Loc, block_optional: bool = False) -> list[Command]:
        family, name = self.table_spec()
        head: list[Command] = [AddTable(family, name, loc)]
        if block_optional and not self.at("{"):
            return head
        self.expect("{")
        chains: list[Command] = []
        flowtables: list[Command] = []
        rules: list[Command] = []
        while True:
            self.skip_separators()
            tok = self.peek()
            if self.accept("}"):
                return head + chains + flowtables + rules
            if self.accept("flowtable"):
                ft_name = self.identifier("flowtable name").text
                self.expect("{")
                flowtables.append(
                    AddFlowtable(family, name, ft_name, self.flowtable_body(), tok.loc)
                )
            elif self.accept("chain"):
                chain_name = self.identifier("chain name")
                self.expect("{")
                chain, chain_rules = self.chain_body(family, name, chain_name)
                chains.append(chain)
                rules.extend(chain_rules)
            else:
                raise self.unexpected(tok, "'chain', 'flowtable' or '}'")

    def chain_command(self, loc: Loc) -> list[Command]:
        family, table = self.table_spec()
        name = self.identifier("chain name")
        if not self.accept("{"):
            return [AddChain(family, table, name.text, None, loc)]
        chain, rules = self.chain_body(family, table, name)
        chain.loc = loc
        return [chain, *rules]

    # -- flowtables ----------------------------------------------------------------------------

    def flowtable_body(self) -> FlowtableSpec:
        """Everything up to and including the closing ``}``; items need no separators."""
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
            elif self.accept("devices"):
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

    def devices(self) -> list[Device]:
        if not self.accept("{"):
            tok = self.value_token("a device name")
            return [Device(values.parse_ifname(tok.text, tok.loc), tok.loc)]
        devices = []
        while True:
            self.skip_newlines()
            tok = self.value_token("a device name")
            devices.append(Device(values.parse_ifname(tok.text, tok.loc), tok.loc))
            self.skip_newlines()
            if self.accept("}"):
                return devices
            self.expect(",")

    def priority(self, names: dict[str, int]) -> int:
        """A signed integer, or a standard name with an optional ``+ N``/``- N`` offset."""
        tok = self.peek()
        if self.accept("-"):
            num = self.word("a number")
            return -values.parse_int(num.text, num.loc, "priority", 0, 2**31)
        word = self.word("a priority")
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
            if self.accept("type"):
                chain.base, chain.base_loc = self.base_spec(chain.base), tok.loc
            elif self.accept("policy"):
                policy = self.expect("accept", "drop")
                if chain.base is None:
                    raise RulesetError("policy is only valid in base chains", tok.loc)
                chain.base.policy_accept = policy.text == "accept"
            else:
                rules.append(AddRule(family, table, name.text, self.rule(), loc=tok.loc))

    def base_spec(self, old: BaseSpec | None) -> BaseSpec:
        type_tok = self.word("'filter' or 'nat'")
        try:
            chain_type = ChainType(type_tok.text)
        except ValueError:
            raise RulesetError(
                f"unsupported chain type '{type_tok.text}' (filter or nat)", type_tok.loc
            ) from None
        self.expect("hook")
        hook_tok = self.word("a hook")
        try:
            hook = Hook(hook_tok.text)
        except ValueError:
            raise RulesetError(f"unknown chain hook '{hook_tok.text}'", hook_tok.loc) from None
        self.expect("priority")
        prio = self.priority(values.chain_priority_names(hook))
        return BaseSpec(chain_type, hook, prio, True if old is None else old.policy_accept)

    # -- rules ---------------------------------------------------------------------------------

    def rule(self) -> Rule:
        start = self.peek()
        items: list[Item] = []
        while not (self.peek().text in _RULE_END and self.peek().kind is not Kind.STRING):
            items.append(self.item())
        if not items:
            raise self.unexpected(start, "a rule")
        return Rule(items, start.loc)

    def item(self) -> Item:
        tok = self.word("a match or statement")
        kw = tok.text
        if kw in ("iifname", "oifname"):
            return self.match(FIELDS_BY_WORDS[("meta", kw)], tok)
        if kw in _FIELD_KEYWORDS:
            key = self.word(f"a {kw} field")
            field = FIELDS_BY_WORDS.get((kw, key.text))
            if field is None:
                raise RulesetError(f"unsupported expression '{kw} {key.text}'", key.loc)
            return self.match(field, tok)
        if kw == "counter":
            counter = Counter(loc=tok.loc)
            if self.accept("packets"):
                num = self.word("a number")
                counter.packets = values.parse_int(num.text, num.loc, "packets", 0, 2**64 - 1)
                self.expect("bytes")
                num = self.word("a number")
                counter.bytes = values.parse_int(num.text, num.loc, "bytes", 0, 2**64 - 1)
            return counter
        if kw in ("accept", "drop"):
            return VerdictStatement(kw == "accept", tok.loc)
        if kw == "flow":
            self.expect("add", "offload")
            self.expect("@")
            return FlowAdd(self.identifier("flowtable name").text, tok.loc)
        if kw == "masquerade":
            nat = Nat(NatKind.MASQUERADE, loc=tok.loc)
            if self.accept("to"):
                target = self.word("':PORT'")
                addr, nat.port_min, nat.port_max = values.parse_nat_target(target.text, target.loc)
                if addr is not None:
                    raise RulesetError("masquerade takes ports only (to :PORT)", target.loc)
            return nat
        if kw in ("snat", "dnat"):
            nat = Nat(NatKind(kw), loc=tok.loc)
            fam = self.accept("ip", "ip6")
            if fam is not None:
                nat.family = Family(fam.text)
            self.expect("to")
            target = self.word("an address")
            nat.addr, nat.port_min, nat.port_max = values.parse_nat_target(target.text, target.loc)
            if nat.addr is None:
                raise RulesetError(f"{kw} needs an address", target.loc)
            return nat
        raise RulesetError(f"syntax error, unexpected {tok.describe()}", tok.loc)

    def match(self, field: Field, start: Token) -> Match:
        op = self.accept(*_OPERATORS)
        negate = _OPERATORS[op.text] if op else False
        if self.accept("{"):
            vals = []
            while True:
                self.skip_newlines()
                tok = self.value_token("a value")
                vals.append(values.parse_value(field, tok.text, tok.loc))
                self.skip_newlines()
                if self.accept("}"):
                    break
                self.expect(",")
        else:
            tok = self.value_token("a value")
            vals = [values.parse_value(field, tok.text, tok.loc)]
            while field is Field.CT_STATE and self.accept(","):  # bitmask: a,b,c
                tok = self.value_token("a ct state")
                vals.append(values.parse_value(field, tok.text, tok.loc))
        return Match(field, tuple(dict.fromkeys(vals)), negate, start.loc)
