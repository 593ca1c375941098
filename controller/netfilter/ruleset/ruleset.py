"""The :class:`Ruleset` value: load, apply scripts atomically, list flowtables, format.

A Ruleset is replaced, not edited: :meth:`Ruleset.apply` runs a script on a deep copy and returns
the copy, so a failing ``p4ft ruleset apply`` leaves the running ruleset as it was (nft batches are
all-or-nothing too). Rule counters travel with the copy.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Collection, Iterator, Sequence

from controller.netfilter.ruleset import format as fmt
from controller.netfilter.ruleset import nftjson, nftjson_dump, parser
from controller.netfilter.ruleset.model import Chain, Family, FlowtableDef, Table
from controller.netfilter.ruleset.script import Command
from controller.netfilter.ruleset.transaction import Tables, execute


def parse_script(text: str, filename: str = "<string>") -> list[Command]:
    """nft syntax or ``nft -j`` JSON (recognised by its leading ``{``) into commands."""
    if text.lstrip().startswith("{"):
        return nftjson.parse(text, filename)
    return parser.parse(text, filename)


class Ruleset:
    """Tables keyed by (family, name), in the order they were created."""

    def __init__(self, tables: Tables | None = None) -> None:
        self.tables: Tables = tables if tables is not None else {}

    def apply(
        self,
        script: str | Sequence[Command],
        filename: str = "<string>",
        devices: Collection[str] | None = None,
    ) -> Ruleset:
        """A new Ruleset with ``script`` applied; raises RulesetError and changes nothing.

        ``devices``: the switch's port names; a flowtable listing another is an error.
        """
        commands = parse_script(script, filename) if isinstance(script, str) else script
        tables = copy.deepcopy(self.tables)
        execute(tables, commands, devices)
        return Ruleset(tables)

    def table(self, family: Family | str, name: str) -> Table | None:
        return self.tables.get((Family(family), name))

    def flowtables(self) -> list[FlowtableDef]:
        return [ft for t in self.tables.values() for ft in t.flowtables.values()]

    def chains(self) -> Iterator[tuple[Table, Chain]]:
        for table in self.tables.values():
            for chain in table.chains.values():
                yield table, chain

    def format(self) -> str:
        return fmt.format_tables(self.tables.values())

    def to_json(self) -> dict:
        """The ``nft -j list ruleset`` document for this ruleset."""
        return nftjson_dump.dump(self.tables.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ruleset) and self.tables == other.tables

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Ruleset({len(self.tables)} tables, {len(self.flowtables())} flowtables)"


def loads(
    text: str, filename: str = "<string>", devices: Collection[str] | None = None
) -> Ruleset:
    """Parse a whole ruleset (nft syntax or nft JSON), validated as ``nft -c -f`` would (with
    ``devices``, also that every flowtable device exists, as the kernel checks)."""
    return Ruleset().apply(text, filename, devices)


def load_file(
    path: str | os.PathLike[str], devices: Collection[str] | None = None
) -> Ruleset:
    """Read and parse a ruleset file; OSError if it cannot be read."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return loads(text, os.fspath(path), devices)
