"""Rules: a sequence of matches and statements (counter, verdicts, NAT, reject, log, limit,
quota, set updates, tproxy, ...) ending at a newline, ``;`` or ``}``, with an optional
trailing ``comment``."""

from __future__ import annotations

from controller.netfilter.ruleset import datatypes as dt
from controller.netfilter.ruleset import values
from controller.netfilter.ruleset.errors import RulesetError
from controller.netfilter.ruleset.expressions import VERDICTS, ExpressionSyntax
from controller.netfilter.ruleset.lexer import Kind, Token
from controller.netfilter.ruleset.model import (
    Counter,
    Family,
    FlowAdd,
    Item,
    Limit,
    Log,
    MapLookup,
    Nat,
    NatKind,
    Notrack,
    Other,
    Reject,
    Rule,
    SetUpdate,
    VerdictStatement,
)

_LOG_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit")

_RATE_UNITS = ("second", "minute", "hour", "day", "week")

_BYTE_UNITS = ("bytes", "kbytes", "mbytes")

_NAT_FLAGS = ("random", "fully-random", "persistent", "netmap")


class RuleSyntax(ExpressionSyntax):
    """Reads one rule into a :class:`Rule`."""

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
        if kw in VERDICTS:
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


def parse_items(text: str, filename: str) -> list[Item]:
    """The matches and statements of one rule written in nft syntax."""
    return RuleSyntax(text, filename).rule().items
