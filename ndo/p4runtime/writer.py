"""Streams table updates into WriteRequests while the caller is still producing them.

Updates go out as WriteRequests of up to ``batch_size`` with at most ``max_in_flight``
outstanding, and the first request leaves as soon as it is full, so the caller's planning and
encoding overlap with the switch's work instead of preceding it. A server may reorder the
updates of a batch, and requests in flight overlap, so two updates of one key never share a
round: a repeated key first waits for everything outstanding (a barrier).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from finsy.proto import rpc_code

from ndo.api import Cookie, FlowMatch, FlowRule
from ndo.p4runtime.client import P4RuntimeClient, P4RuntimeError
from ndo.p4runtime.codec import DELETE, FlowCodec


@dataclass(slots=True)
class TableOp:
    """One table update; ``slot`` is the command result it decides, None for helper updates."""

    kind: int
    match: FlowMatch
    cookie: Cookie | None = None
    rule: FlowRule | None = None
    slot: int | None = None
    retried: bool = False

    @property
    def key(self) -> Hashable:
        """What must not repeat within a round: the flow direction, else the table key."""
        return self.cookie if self.cookie is not None else self.match


@dataclass(slots=True)
class Outcome:
    code: int
    message: str = ""


OK = Outcome(rpc_code.OK)
Settle = Callable[[TableOp, Outcome], "TableOp | None"]
"""Told each update's outcome; returns the update to retry, or None when it is final."""


class WriteStream:
    """One batch of updates on its way to the switch; ``outcomes`` by slot once finished."""

    def __init__(self, client: P4RuntimeClient, codec: FlowCodec, settle: Settle, *,
                 batch_size: int, in_flight: asyncio.Semaphore, counters: Counter[str]) -> None:
        self._client = client
        self._codec = codec
        self._settle = settle
        self._batch_size = batch_size
        self._in_flight = in_flight
        self._counters = counters
        self._chunk: list[TableOp] = []
        self._keys: set[Hashable] = set()
        self._sent: list[tuple[list[TableOp], asyncio.Task[list[Outcome]]]] = []
        self.outcomes: dict[int, Outcome] = {}

    async def add(self, op: TableOp) -> None:
        if op.key in self._keys:
            await self._barrier()
        self._keys.add(op.key)
        self._chunk.append(op)
        if len(self._chunk) >= self._batch_size:
            self._send()
            await asyncio.sleep(0)  # let the request start before planning more

    async def finish(self) -> dict[int, Outcome]:
        await self._barrier()
        return self.outcomes

    def _send(self) -> None:
        chunk, self._chunk = self._chunk, []
        self._sent.append((chunk, asyncio.create_task(self._write(chunk))))

    async def _barrier(self) -> None:
        """Wait for everything outstanding, settle it, and run the retries it asks for."""
        while self._chunk or self._sent:
            if self._chunk:
                self._send()
            sent, self._sent = self._sent, []
            self._keys.clear()
            for chunk, task in sent:
                for op, outcome in zip(chunk, await task, strict=True):
                    retry = self._settle(op, outcome)
                    if retry is not None:
                        self._chunk.append(retry)
                    elif op.slot is not None:
                        self.outcomes[op.slot] = outcome

    async def _write(self, ops: list[TableOp]) -> list[Outcome]:
        async with self._in_flight:
            codec = self._codec
            updates = b"".join([codec.encode_delete(op.match) if op.kind == DELETE
                                else codec.encode_entry(op.kind, op.rule)  # type: ignore[arg-type]
                                for op in ops])
            self._counters["write_requests"] += 1
            self._counters["write_updates"] += len(ops)
            try:
                errors = await self._client.write_encoded(updates, len(ops))
            except P4RuntimeError as exc:
                return [Outcome(exc.code, exc.message)] * len(ops)
        if not errors:
            return [OK] * len(ops)
        return [Outcome(e.canonical_code, e.message) for e in errors]
