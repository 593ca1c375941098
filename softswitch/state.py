"""Per-packet state: flat field slots, validity flags, stack cursors and the v1model flags.

Every compiled closure takes ``(state, params)``; keeping the state a slotted object of plain lists
makes field access one index operation.
"""

from __future__ import annotations


class ParserError(Exception):
    """Raised inside the parser only; carries the P4 error code (never escapes the pipeline)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class PacketState:
    __slots__ = (
        "clone_field_list",
        "clone_session",
        "data",
        "exit",
        "f",
        "learn",
        "max_len",
        "now",
        "payload",
        "pos",
        "recirculate",
        "resubmit",
        "stack_next",
        "truncate",
        "us",
        "valid",
        "vlen",
    )

    def __init__(self, f: list[int], valid: list[bool], n_stacks: int) -> None:
        self.f = f
        self.valid = valid
        self.stack_next = [0] * n_stacks
        self.vlen: dict[int, int] = {}  # header index -> current varbit width in bits
        self.data = b""
        self.pos = 0
        self.payload = b""
        self.exit = False
        # -1: not requested; else the field list (v1model @field_list index) to preserve.
        self.clone_session = -1
        self.clone_field_list = -1
        self.resubmit = -1
        self.recirculate = -1
        self.truncate = 0
        self.max_len = 0  # a clone session's packet_length_bytes (0: no limit)
        self.learn = 0  # learn list of the last generate_digest (bm_sim lf_field_list)
        self.now = 0.0
        self.us = 0  # now in microseconds: bm_sim's get_ts() for the timestamps

    def copy(self) -> PacketState:
        """An independent copy for replication and cloning."""
        other = PacketState(list(self.f), list(self.valid), 0)
        other.stack_next = list(self.stack_next)
        other.vlen = dict(self.vlen)
        other.data = self.data
        other.pos = self.pos
        other.payload = self.payload
        other.now = self.now
        other.us = self.us
        return other
