"""Tokens on demand, with ``include`` files and ``define``d variables spliced in.

nft's scanner works the same way: ``include`` pushes a new input buffer (``scanner_include_file``,
globs expand in sorted order and may match nothing), ``$name`` is replaced by the tokens of its
``define`` (``symbol_lookup``). Tokens are made only when the parser asks for them, so the first
construct the parser cannot read is the one reported.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.lexer import Kind, Token, tokenize

MAX_INCLUDE_DEPTH = 16  # nft: MAX_INCLUDE_DEPTH


class TokenStream:
    def __init__(self, text: str, filename: str) -> None:
        self._stack: list[tuple[Iterator[Token], str | None]] = [
            (tokenize(text, filename), filename)
        ]
        self._buf: list[Token] = []
        self.defines: dict[str, list[Token]] = {}
        self.filename = filename

    def _pull(self) -> Token:
        while True:
            source, _ = self._stack[-1]
            tok = next(source, None)
            if tok is None or (tok.kind is Kind.EOF and len(self._stack) > 1):
                if len(self._stack) == 1:
                    return tok  # type: ignore[return-value]
                self._stack.pop()
                continue
            if tok.kind is Kind.PUNCT and tok.text == "$":
                name_tok = next(source, None)
                if name_tok is None or name_tok.kind is not Kind.WORD:
                    raise RulesetError("syntax error, expecting a variable name after '$'",
                                       tok.loc)
                value = self.defines.get(name_tok.text)
                if value is None:
                    raise RulesetError(f"unknown identifier '{name_tok.text}'", tok.loc)
                self._stack.append((iter(value), None))
                continue
            return tok

    def peek(self, ahead: int = 0) -> Token:
        while len(self._buf) <= ahead:
            tok = self._pull()
            self._buf.append(tok)
            if tok.kind is Kind.EOF:
                break
        return self._buf[min(ahead, len(self._buf) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        if tok.kind is not Kind.EOF:
            self._buf.pop(0)
        return tok

    def define_tokens(self) -> list[Token]:
        """The raw tokens of a ``define`` value, up to the end of its line (variables in it
        are expanded now, as nft evaluates them where they are defined)."""
        out: list[Token] = []
        depth = 0
        while True:
            tok = self.peek()
            if tok.kind is Kind.EOF or (depth == 0 and (tok.kind is Kind.NEWLINE or
                                                        (tok.text in (";", "}") and
                                                        tok.kind is Kind.PUNCT))):
                return out
            if tok.kind is Kind.PUNCT and tok.text == "{":
                depth += 1
            elif tok.kind is Kind.PUNCT and tok.text == "}":
                depth -= 1
            out.append(self.next())

    def include(self, pattern: str, loc: Loc) -> None:
        """Splice the files ``pattern`` names in front of the remaining tokens."""
        if len(self._stack) > MAX_INCLUDE_DEPTH:
            raise RulesetError("Include nested too deeply, max 16 levels", loc)
        base = os.path.dirname(loc.filename) if loc.filename and loc.filename[0] != "<" else "."
        path = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        if glob.has_magic(pattern):
            files = sorted(f for f in glob.glob(path) if os.path.isfile(f))
        elif os.path.isfile(path):
            files = [path]
        else:
            raise RulesetError(f"File not found: {pattern}", loc)
        if self._buf:
            self._stack.append((iter(self._buf), None))
            self._buf = []
        for name in reversed(files):
            try:
                with open(name, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise RulesetError(f"Could not read included file {name}: {e}", loc) from None
            self._stack.append((_no_eof(tokenize(text, name)), name))


def _no_eof(tokens: Iterator[Token]) -> Iterator[Token]:
    """An included file ends with a newline, never an EOF: the including file goes on."""
    for tok in tokens:
        if tok.kind is Kind.EOF:
            yield Token(Kind.NEWLINE, "\n", tok.loc)
            return
        yield tok
