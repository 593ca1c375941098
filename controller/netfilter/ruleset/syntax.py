"""The token-level half of the nft parser: look-ahead, expectations with nft-style errors
(``syntax error, unexpected 'x', expecting y``), separators, and the raw element groups that
sets, maps and verdict maps are read from before their types are known."""

from __future__ import annotations

from controller.netfilter.ruleset import values
from controller.netfilter.ruleset.errors import RulesetError
from controller.netfilter.ruleset.lexer import Kind, Token
from controller.netfilter.ruleset.stream import TokenStream


class Syntax:
    """Token helpers over a :class:`TokenStream` (tokens made on demand)."""

    def __init__(self, text: str, filename: str) -> None:
        self.stream = TokenStream(text, filename)

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
            self.element_options()
            if self.accept(":"):
                data = self.raw_value()
                self.element_options()
            out.append((key, data))
            self.skip_newlines()
            if self.accept("}"):
                return out
            self.expect(",")

    def element_options(self) -> None:
        """Skip an element's ``timeout``/``expires``/``comment`` and its stateful statements
        (``counter packets N bytes M``, ``quota 500 bytes used 0 bytes``, ``limit rate ...``):
        per-element state the mirror does not keep."""
        while self.at("timeout", "expires", "comment", "counter", "quota", "limit"):
            self.next()
            while not (self.at(",", "}", ":") or self.at_end() or self.peek().kind is Kind.EOF
                       or self.at("timeout", "expires", "comment", "counter", "quota", "limit")):
                self.next()

    def raw_value(self) -> list[Token]:
        """The tokens of one element: parts joined by ``.`` or ``-``, a verdict, a nested
        ``{ }`` from a variable (flattened by the caller)."""
        toks: list[Token] = []
        if self.at("*"):  # the catch-all element of a map
            return [self.next()]
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

    def raw_text(self) -> str:
        return "".join(t.text for t in self.raw_value())
