"""Split nft syntax into tokens that remember their line and column.

nft's scanner keeps addresses, prefixes, ranges and ``addr:port`` together as one word
(``10.0.0.0/8``, ``2001:db8::/32``, ``1000-2000``, ``[2001:db8::1]:80``); the parser gives such
words their meaning from context. Newlines are tokens because they end rules. Tokens are made
on demand, so the parser reports the first construct it cannot read, wherever the file goes
wrong later.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from controller.netfilter.ruleset.errors import Loc, RulesetError


class Kind(Enum):
    WORD = "word"
    STRING = "string"
    PUNCT = "punct"
    NEWLINE = "newline"
    EOF = "end of file"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    loc: Loc

    def describe(self) -> str:
        """How error messages name this token (nft style: ``unexpected 'foo'``)."""
        if self.kind in (Kind.NEWLINE, Kind.EOF):
            return self.kind.value
        if self.kind is Kind.STRING:
            return f'"{self.text}"'
        return f"'{self.text}'"


_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r]+|\\\n|\#[^\n]*)
  | (?P<newline>\n)
  | (?P<string>"[^"\n]*")
  | (?P<badstring>"[^"\n]*)
  | (?P<punct>==|!=|<=|>=|<<|>>|[{}();,=@+\-!&|^<>$*/])
  | (?P<word>(?:[A-Za-z0-9_.\[]|::?)
      [A-Za-z0-9_.:/\-\[\]%]*)
    """,
    re.VERBOSE,
)


def tokenize(text: str, filename: str = "<string>") -> Iterator[Token]:
    """Yield the tokens of ``text``, ending with one EOF token."""
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        loc = Loc(filename, line, pos - line_start + 1)
        if m is None:
            raise RulesetError(f"syntax error, unexpected character {text[pos]!r}", loc)
        kind, value = m.lastgroup, m.group()
        if kind == "newline":
            yield Token(Kind.NEWLINE, "\n", loc)
        elif kind == "string":
            yield Token(Kind.STRING, value[1:-1], loc)
        elif kind == "badstring":
            raise RulesetError("syntax error, unterminated string", loc)
        elif kind == "punct":
            yield Token(Kind.PUNCT, value, loc)
        elif kind == "word":
            yield Token(Kind.PUNCT if value in (".", ":") else Kind.WORD, value, loc)
        pos = m.end()
        if "\n" in value:
            line += value.count("\n")
            line_start = pos
    yield Token(Kind.EOF, "", Loc(filename, line, pos - line_start + 1))
