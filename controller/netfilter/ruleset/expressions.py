"""Expressions of nft rules: selectors (payload, meta, ct, exthdr, tcp options, tunnels,
numgen/jhash, fib, osf, socket), binary operations, concatenations, relations with values,
sets, ``@set`` references, maps and verdict maps (``src/parser_bison.y`` ``expr`` rules)."""

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
    Concat,
    Expr,
    Item,
    MapLookup,
    Masked,
    Match,
    Other,
    SetRef,
    SetStatement,
    Value,
    Vmap,
    expr_types,
)
from controller.netfilter.ruleset.syntax import Syntax

VERDICTS = ("accept", "drop", "continue", "return", "jump", "goto", "queue")
_OPERATORS = {"==": "==", "eq": "==", "!=": "!=", "ne": "!=", "<": "<", "lt": "<", ">": ">",
              "gt": ">", "<=": "<=", "le": "<=", ">=": ">=", "ge": ">="}

_BINOPS = {"&": "&", "and": "&", "|": "|", "or": "|", "^": "^", "xor": "^", "<<": "<<",
           "lshift": "<<", ">>": ">>", "rshift": ">>"}

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

def _check_overlaps(types: tuple[DataType, ...], pairs: list, loc: Loc) -> None:
    """nft refuses map elements whose intervals overlap (``conflicting intervals
    specified``: one key, two verdicts)."""
    if len(types) != 1 or types[0].is_string:
        return
    ranges = sorted((key, verdict.text) for key, verdict in pairs if key != "*")
    for (low, prev), (high, _) in itertools.pairwise(ranges):
        if high[0] <= low[1] and low != high:
            raise RulesetError(f"conflicting intervals specified ({prev})", loc)

def _fold(value: int, op: str, operand: int) -> int:
    return {"&": value & operand, "|": value | operand, "^": value ^ operand,
            "<<": value << operand, ">>": value >> operand}[op]

def expr_text(expr: Expr) -> str:
    if isinstance(expr, Concat):
        return " . ".join(expr_text(p) for p in expr.parts)
    if isinstance(expr, Masked):
        return expr_text(expr.expr)
    return expr.nft


class ExpressionSyntax(Syntax):
    """Reads what a rule matches on and what statements take as values."""

    def is_selector_start(self) -> bool:
        tok = self.peek()
        if tok.kind is not Kind.WORD:
            return False
        if tok.text in BARE_META or tok.text in (
            "numgen", "jhash", "symhash", "fib", "osf", "socket", *_TUNNELS
        ):
            return True
        return tok.text in NAMESPACES

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
            words.append(expr_text(inner))
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
        if self.is_selector_start() and self.peek().text not in target.dtype.symbols:
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
        if target.dtype.is_string:
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
        if isinstance(lookup.mapping, SetRef):
            ref = lookup.mapping.name
            return Other(f"{kind} name {format_expr(key)} map @{ref}", tok.loc)
        names = tuple((kind, str(v)) for _, v in lookup.mapping)
        pairs = ", ".join(f'{format_value(expr_types(key), k)} : "{v}"' for k, v in lookup.mapping)
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
            if verdict_tok.text not in VERDICTS:
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
