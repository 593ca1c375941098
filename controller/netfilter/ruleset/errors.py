"""Where a ruleset problem is, and the one exception every ruleset error becomes.

Users fix rulesets in an editor, so every error carries the position of the offending token:
``FILE:LINE:COL: message`` for nft syntax (1-based, as nft and compilers print it), and
``FILE: $.json.path: message`` for ``nft -j`` JSON, where values have no useful line.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Loc:
    """A position in a ruleset source: a line and column, or a JSON path."""

    filename: str
    line: int = 1
    col: int = 1
    path: str | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"{self.filename}: {self.path}"
        return f"{self.filename}:{self.line}:{self.col}"


class RulesetError(ValueError):
    """A ruleset that nft would refuse; ``str(e)`` is ``LOCATION: message``."""

    def __init__(self, message: str, loc: Loc) -> None:
        super().__init__(f"{loc}: {message}")
        self.message = message
        self.loc = loc
