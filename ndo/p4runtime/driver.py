"""P4RuntimeDriver: ndo commands as P4Runtime writes to flowtable.p4's flow tables.

REPLACE inserts the direction's entry (MODIFY when the cookie is installed), DESTROY deletes
it, STATS reads the direct counters. Commands of one ``execute`` go out as WriteRequests of up
to ``batch_size`` updates with ``max_in_flight`` requests outstanding. Updates that touch the
same key twice in one batch go in separate rounds, because a server may reorder a batch.

Per-update outcomes follow what BMv2 really answers (p4-ecosystem.md §2): ALREADY_EXISTS on
INSERT is retried as MODIFY (the entry may hold stale actions), NOT_FOUND on MODIFY as INSERT,
NOT_FOUND on DELETE is success, RESOURCE_EXHAUSTED and BMv2's UNKNOWN "Error when adding match
entry to target" are NO_SPACE (and occupancy is tracked against the P4Info size so a full table
is refused before it is asked), anything else is ERROR with the server's message.

The driver keeps what it installed (cookie → rule, counter baselines). After a reconnect it
reconciles the switch against that record; ``reconcile(intent)`` does the same for the
controller's view at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from finsy.proto import p4r, rpc_code

from ndo.api import (
    Command,
    Cookie,
    FlowCommand,
    FlowDriver,
    FlowMatch,
    FlowResult,
    FlowRule,
    FlowStats,
    IdleCallback,
    PacketIn,
    Refusal,
)
from ndo.p4runtime.client import Backoff, P4RuntimeClient, P4RuntimeError
from ndo.p4runtime.codec import DELETE, INSERT, MODIFY, CodecError, FlowCodec
from ndo.p4runtime.copp import PuntPolicing, Rates
from ndo.p4runtime.packet_io import PacketCodec
from ndo.p4runtime.punt_queue import PuntQueue, Queued
from ndo.p4runtime.schema import FlowSchema, Pipeline
from ndo.p4runtime.writer import OK, Outcome, TableOp, WriteStream
from ndo.timing import Stage

log = logging.getLogger(__name__)

BMV2_TABLE_FULL = "Error when adding match entry to target"
DEFAULT_BACKOFF = Backoff()
WILDCARD_STATS_SHARE = 0.25  # read the whole table when asked for more than this share of it


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What reconcile did: cookies adopted as found, orphan keys deleted, cookies (re)written."""

    adopted: tuple[Cookie, ...] = ()
    deleted: tuple[FlowMatch, ...] = ()
    installed: tuple[Cookie, ...] = ()
    failed: tuple[FlowResult, ...] = ()


_Counts = tuple[int, int, int | None]  # packets, bytes, ns since the last hit (if known)


@dataclass(slots=True)
class _Installed:
    rule: FlowRule
    packets: int = 0  # direct-counter values at the last STATS (deltas are taken from here)
    bytes: int = 0
    lastused: float | None = None
    idle: bool = False  # idle reported; cleared by the next sign of activity


@dataclass(slots=True)
class _Plan:
    """The updates one execute() needs, and each cookie's rule as the batch leaves it."""

    ops: list[TableOp] = field(default_factory=list)
    rules: dict[Cookie, FlowRule | None] = field(default_factory=dict)
    new_entries: dict[int, int] = field(default_factory=lambda: {4: 0, 6: 0})


class P4RuntimeDriver(FlowDriver):
    """A FlowDriver on one P4Runtime device running flowtable.p4."""

    def __init__(
        self,
        address: str,
        schema: FlowSchema,
        *,
        device_id: int = 0,
        election_id: int = 1,
        role: str = "",
        pipeline: Pipeline | None = None,
        force_push: bool = False,
        idle_timeout: float = 30.0,
        batch_size: int = 1000,
        max_in_flight: int = 4,
        packet_queue: int = 4096,
        punt_rates: Rates | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.schema = schema
        self.capacity = schema.capacity
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.counters: Counter[str] = Counter()
        self._force_push = force_push
        self._backoff = backoff
        self._clock = clock
        self._codec = FlowCodec(schema, int(idle_timeout * 1e9))
        self._packets = PacketCodec(schema, self.counters)
        self._client = P4RuntimeClient(address, device_id, election_id, role, self._on_stream,
                                       self._on_primary_change)
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._lock = asyncio.Lock()
        self._installed: dict[Cookie, _Installed] = {}
        self._by_match: dict[FlowMatch, Cookie] = {}
        self._occupancy: Counter[int] = Counter()
        self._idle_callback: IdleCallback | None = None
        self.punts = PuntQueue(packet_queue)
        self.policing = PuntPolicing(self._client, schema, punt_rates, self.counters)
        self._supervisor: asyncio.Task[None] | None = None
        self._regain_task: asyncio.Task[None] | None = None
        self._closing = False

    # -- life cycle ------------------------------------------------------------------------

    @property
    def packet_out_wait(self) -> Stage:
        """Packet-outs from ``send_packet`` until the stream took them."""
        return self._client.outbox_wait

    @property
    def connected(self) -> bool:
        return self._client.is_open

    @property
    def is_primary(self) -> bool:
        return self._client.is_primary

    async def start(self, intent: Mapping[Cookie, FlowRule] | None = None) -> ReconcileReport:
        """Connect, arbitrate, push the pipeline if needed, reconcile, then stay connected.

        ``intent`` is what the controller wants offloaded (default: nothing, so entries a
        previous run left behind are deleted). Raises ConnectionError if the first attempt fails.
        """
        try:
            await self._connect(force_push=self._force_push)
            report = await self.reconcile(intent or {})
        except BaseException:
            await self._client.close()
            raise
        self._supervisor = asyncio.create_task(self._supervise())
        return report

    async def close(self) -> None:
        self._closing = True
        for task in (self._supervisor, self._regain_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._client.close()
        self.punts.close()

    async def _connect(self, force_push: bool = False) -> None:
        primary = await self._client.open()
        if not primary:
            log.warning("%s: not primary for device %d (election id %d); writes will be refused",
                        self._client.address, self._client.device_id, self._client.election_id)
        if primary:
            await self._push_pipeline(force_push)
            await self.policing.configure()

    async def _push_pipeline(self, force: bool) -> None:
        """Push our pipeline unless the switch's cookie says it runs it already."""
        if self.pipeline is None:
            return
        if force or await self._client.pipeline_cookie() != self.pipeline.cookie:
            await self._client.set_pipeline(self.pipeline)
            self.counters["pipeline_pushes"] += 1

    def _on_primary_change(self, primary: bool) -> None:
        """Another client took over (writes are refused meanwhile) or left us primary again:
        it may have changed the tables, so reconcile them with our record."""
        if not primary:
            self.counters["demotions"] += 1
            log.warning("%s: another controller is primary now", self._client.address)
        elif self._supervisor is not None and not self._closing:
            self.counters["promotions"] += 1
            self._regain_task = asyncio.create_task(self._regain())

    async def _regain(self) -> None:
        try:
            await self._push_pipeline(force=False)
            await self.policing.configure()
            await self.reconcile({c: i.rule for c, i in self._installed.items()})
        except (ConnectionError, P4RuntimeError) as exc:
            log.warning("reconcile after becoming primary again failed: %s", exc)

    async def _supervise(self) -> None:
        """Reconnect with backoff whenever the stream drops, then reconcile our record: a
        switch that restarted gets the pipeline pushed (its cookie is gone) and every entry
        we had installed written again. Retrying is the design (the switch comes back on its
        own), so the loss is one WARNING saying so; each failed attempt is DEBUG."""
        while not self._closing:
            await self._client.closed.wait()
            self.counters["disconnects"] += 1
            log.warning("%s: lost the P4Runtime session (%d entries installed); reconnecting, "
                        "retrying every %g-%g s until the switch answers", self._client.address,
                        len(self._installed), self._backoff.initial, self._backoff.maximum)
            for delay in self._backoff.delays():
                await asyncio.sleep(delay)
                try:
                    await self._connect()
                    break
                except (ConnectionError, P4RuntimeError) as exc:
                    log.debug("reconnect to %s failed: %s", self._client.address, exc)
            self.counters["reconnects"] += 1
            try:
                report = await self.reconcile({c: i.rule for c, i in self._installed.items()})
            except (ConnectionError, P4RuntimeError) as exc:
                log.warning("reconcile after reconnect failed: %s", exc)
                continue
            self.counters["reinstalled"] += len(report.installed)
            # entries an offload written after the pipeline push put back before the reconcile
            self.counters["reinstall_found"] += len(report.adopted)
            self.counters["reinstall_failed"] += len(report.failed)
            log.info("%s: reconnected; %d entries found in place, %d written again, %d failed, "
                     "%d orphans deleted", self._client.address, len(report.adopted),
                     len(report.installed), len(report.failed), len(report.deleted))

    # -- commands --------------------------------------------------------------------------

    def set_idle_callback(self, callback: IdleCallback | None) -> None:
        self._idle_callback = callback

    def rule_of(self, cookie: Cookie) -> FlowRule | None:
        installed = self._installed.get(cookie)
        return installed.rule if installed else None

    def occupancy(self, family: int) -> int:
        return self._occupancy[family]

    async def execute(self, batch: Sequence[FlowCommand]) -> list[FlowResult]:
        async with self._lock:
            results: list[FlowResult | None] = [None] * len(batch)
            plan = _Plan()
            stream = self._stream()
            stats: list[int] = []
            for slot, cmd in enumerate(batch):
                if cmd.command is Command.STATS:
                    stats.append(slot)
                    continue
                results[slot] = self._plan(slot, cmd, plan)
                for op in plan.ops:
                    await stream.add(op)
                plan.ops.clear()
            for slot, outcome in (await stream.finish()).items():
                results[slot] = self._result(batch[slot], outcome)
            if stats:
                await self._stats(stats, batch, results)
            return [r if r is not None else FlowResult(c.cookie, c.command)
                    for r, c in zip(results, batch, strict=True)]

    def _stream(self) -> WriteStream:
        return WriteStream(self._client, self._codec, self._settle, batch_size=self.batch_size,
                           in_flight=self._in_flight, counters=self.counters)

    def _plan(self, slot: int, cmd: FlowCommand, plan: _Plan) -> FlowResult | None:
        """Add the updates ``cmd`` needs to ``plan``; a result now if it needs none."""
        if cmd.cookie in plan.rules:  # an earlier command of this batch decides
            current = plan.rules[cmd.cookie]
        else:
            installed = self._installed.get(cmd.cookie)
            current = installed.rule if installed else None
        ops, new_entries = plan.ops, plan.new_entries
        if cmd.command is Command.DESTROY:
            match = current.match if current else cmd.rule.match if cmd.rule else None
            if match is None:
                return _refuse(cmd, Refusal.UNKNOWN_COOKIE, "no such flow")
            if not self.connected:  # reconcile deletes it as an orphan when we are back
                self._forget(cmd.cookie)
                return FlowResult(cmd.cookie, cmd.command)
            ops.append(TableOp(DELETE, match, cmd.cookie, slot=slot))
            plan.rules[cmd.cookie] = None
            if current is not None:
                new_entries[match.family] -= 1
            return None
        rule = cmd.rule
        if rule is None:
            return _refuse(cmd, Refusal.ERROR, "REPLACE without a rule")
        try:
            self._codec.check(rule)
        except CodecError as exc:
            return _refuse(cmd, Refusal.UNSUPPORTED, str(exc))
        if not self.connected:
            return _refuse(cmd, Refusal.UNAVAILABLE, f"not connected to {self._client.address}")
        if current is not None and current.match == rule.match:
            ops.append(TableOp(MODIFY, rule.match, cmd.cookie, rule, slot))
            plan.rules[cmd.cookie] = rule
            return None
        if current is not None:  # the key changed: the old entry goes first
            ops.append(TableOp(DELETE, current.match, cmd.cookie))
            new_entries[current.match.family] -= 1
        family = rule.match.family
        if self._occupancy[family] + new_entries[family] >= self.schema.tables[family].size:
            self.counters["refused_full"] += 1
            return _refuse(cmd, Refusal.NO_SPACE, f"IPv{family} flow table full")
        new_entries[family] += 1
        ops.append(TableOp(INSERT, rule.match, cmd.cookie, rule, slot))
        plan.rules[cmd.cookie] = rule
        return None

    def _settle(self, op: TableOp, outcome: Outcome) -> TableOp | None:
        """Record an update's outcome, or return the retry a BMv2 answer calls for: MODIFY
        after an INSERT over an existing key (it may hold stale actions), INSERT after a MODIFY
        of a lost one."""
        if not op.retried:
            if op.kind == INSERT and outcome.code == rpc_code.ALREADY_EXISTS:
                op.kind, op.retried = MODIFY, True
                return op
            if op.kind == MODIFY and outcome.code == rpc_code.NOT_FOUND:
                op.kind, op.retried = INSERT, True
                return op
        self._record(op, outcome)
        return None

    def _record(self, op: TableOp, outcome: Outcome) -> None:
        """Bring our record of the switch up to date with one update's final outcome."""
        gone = op.kind == DELETE and outcome.code in (rpc_code.OK, rpc_code.NOT_FOUND)
        if gone:
            cookie = self._by_match.get(op.match)
            if cookie is not None:
                self._forget(cookie)
        elif outcome.code == rpc_code.OK and op.rule is not None and op.cookie is not None:
            self._remember(op.cookie, op.rule)

    def _remember(self, cookie: Cookie, rule: FlowRule) -> None:
        owner = self._by_match.get(rule.match)
        if owner is not None and owner != cookie:
            self._forget(owner)
        current = self._installed.get(cookie)
        if current is not None and current.rule.match == rule.match:
            current.rule, current.idle = rule, False
            return
        if current is not None:
            self._forget(cookie)
        self._installed[cookie] = _Installed(rule)
        self._by_match[rule.match] = cookie
        self._occupancy[rule.match.family] += 1

    def _forget(self, cookie: Cookie) -> None:
        current = self._installed.pop(cookie, None)
        if current is not None:
            del self._by_match[current.rule.match]
            self._occupancy[current.rule.match.family] -= 1

    def _result(self, cmd: FlowCommand, outcome: Outcome) -> FlowResult:
        if outcome is OK:
            return FlowResult(cmd.cookie, cmd.command)
        code = outcome.code
        if code == rpc_code.OK or (cmd.command is Command.DESTROY and code == rpc_code.NOT_FOUND):
            return FlowResult(cmd.cookie, cmd.command)
        if code == rpc_code.RESOURCE_EXHAUSTED or (
            code == rpc_code.UNKNOWN and BMV2_TABLE_FULL in outcome.message
        ):
            self.counters["refused_full"] += 1
            return _refuse(cmd, Refusal.NO_SPACE, outcome.message)
        if code in (rpc_code.UNAVAILABLE, rpc_code.PERMISSION_DENIED):
            return _refuse(cmd, Refusal.UNAVAILABLE, outcome.message)
        self.counters["refused_error"] += 1
        name = rpc_code.Code.Name(code) if code in rpc_code.Code.values() else str(code)
        return _refuse(cmd, Refusal.ERROR, f"{name}: {outcome.message}")

    # -- statistics ------------------------------------------------------------------------

    async def _stats(self, slots: list[int], batch: Sequence[FlowCommand],
                     results: list[FlowResult | None]) -> None:
        wanted = {batch[s].cookie for s in slots if batch[s].cookie in self._installed}
        try:
            counters = await self._read_counters(wanted)
        except (P4RuntimeError, ConnectionError) as exc:
            for s in slots:
                results[s] = _refuse(batch[s], Refusal.UNAVAILABLE, str(exc))
            return
        now = self._clock()
        for s in slots:
            cmd = batch[s]
            current = self._installed.get(cmd.cookie)
            if current is None:
                results[s] = _refuse(cmd, Refusal.UNKNOWN_COOKIE, "no such flow")
            elif cmd.cookie not in counters:
                self._forget(cmd.cookie)
                results[s] = _refuse(cmd, Refusal.UNKNOWN_COOKIE, "entry gone from the target")
            else:
                packets, nbytes, idle_ns = counters[cmd.cookie]
                stats = self._delta(current, packets, nbytes, idle_ns, now)
                results[s] = FlowResult(cmd.cookie, cmd.command, stats=stats)

    @staticmethod
    def _delta(current: _Installed, packets: int, nbytes: int, idle_ns: int | None,
               now: float) -> FlowStats:
        if packets < current.packets:  # the counter was reset (entry re-created)
            current.packets = current.bytes = 0
        delta_packets, delta_bytes = packets - current.packets, nbytes - current.bytes
        current.packets, current.bytes = packets, nbytes
        if delta_packets:
            current.lastused = now - idle_ns / 1e9 if idle_ns is not None else now
            current.idle = False
        return FlowStats(delta_packets, delta_bytes, current.lastused)

    async def _read_counters(self, cookies: set[Cookie]) -> dict[Cookie, _Counts]:
        """(packets, bytes, ns since last hit) per cookie found on the switch."""
        by_family: dict[int, list[FlowMatch]] = {}
        for cookie in cookies:
            match = self._installed[cookie].rule.match
            by_family.setdefault(match.family, []).append(match)
        entities = []
        for family, matches in by_family.items():
            if len(matches) > WILDCARD_STATS_SHARE * self._occupancy[family]:
                entities.append(self._stats_query(family, None))
            else:
                entities.extend(self._stats_query(family, m) for m in matches)
        found: dict[Cookie, _Counts] = {}
        try:
            entries = [e.table_entry async for e in self._client.read(entities)]
        except P4RuntimeError as exc:  # a missing key fails a keyed read: read the tables
            if exc.code != rpc_code.NOT_FOUND:
                raise
            entities = [self._stats_query(family, None) for family in by_family]
            entries = [e.table_entry async for e in self._client.read(entities)]
        for entry in entries:
            cookie = self._by_match.get(self._codec.match_of(entry))
            if cookie in cookies:
                idle = entry.time_since_last_hit.elapsed_ns if entry.HasField(
                    "time_since_last_hit") else None
                found[cookie] = (entry.counter_data.packet_count, entry.counter_data.byte_count,
                                 idle)
        return found

    def _stats_query(self, family: int, match: FlowMatch | None) -> p4r.Entity:
        table = self.schema.tables[family]
        entity = p4r.Entity()
        entry = entity.table_entry
        if match is None:
            entry.table_id = table.table_id
        else:
            self._codec.fill_key(entry, match)
        if table.counter_id is not None:
            entry.counter_data.SetInParent()
        if table.supports_timeout:
            entry.time_since_last_hit.SetInParent()
        return entity

    # -- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, intent: Mapping[Cookie, FlowRule]) -> ReconcileReport:
        """Make the switch hold exactly ``intent``: adopt, delete orphans, (re)install."""
        async with self._lock:
            found: dict[FlowMatch, p4r.TableEntry] = {}
            for family in self.schema.tables:  # one table per read: BMv2 answers in one message
                query = self._stats_query(family, None)
                query.table_entry.ClearField("time_since_last_hit")
                async for entity in self._client.read([query]):
                    match = self._codec.match_of(entity.table_entry)
                    if match is not None:
                        found[match] = entity.table_entry
            wanted = {rule.match: cookie for cookie, rule in intent.items()}
            previous = self._installed
            self._installed, self._by_match = {}, {}
            self._occupancy.clear()
            adopted, ops = [], []
            for cookie, rule in intent.items():
                entry = found.get(rule.match)
                if entry is not None and self._codec.has_actions_of(entry, rule):
                    self._remember(cookie, rule)
                    known = previous.get(cookie)
                    installed = self._installed[cookie]
                    if known is not None and known.rule.match == rule.match:
                        installed.packets, installed.bytes = known.packets, known.bytes
                        installed.lastused = known.lastused
                    else:
                        installed.packets = entry.counter_data.packet_count
                        installed.bytes = entry.counter_data.byte_count
                    adopted.append(cookie)
                else:
                    kind = MODIFY if entry is not None else INSERT
                    ops.append(TableOp(kind, rule.match, cookie, rule, slot=len(ops)))
            orphans = [m for m in found if m not in wanted]
            ops += [TableOp(DELETE, m) for m in orphans]
            stream = self._stream()
            for op in ops:
                await stream.add(op)
            outcomes = await stream.finish()
            installed, failed = [], []
            for op in ops:
                if op.slot is not None and op.cookie is not None:
                    command = FlowCommand(Command.REPLACE, op.cookie, op.rule)
                    result = self._result(command, outcomes[op.slot])
                    if result.ok:
                        installed.append(op.cookie)
                    else:
                        failed.append(result)
            self.counters["reconciles"] += 1
            return ReconcileReport(tuple(adopted), tuple(orphans), tuple(installed), tuple(failed))

    async def read_punt_drops(self) -> None:
        """Refresh ``policing.drops`` from the switch; a failed read keeps the last figures."""
        if not self.connected:
            return
        try:
            await self.policing.read_drops()
        except (P4RuntimeError, ConnectionError) as exc:
            self.counters["punt_drops_read_errors"] += 1
            log.debug("reading %s failed: %s", "the punt drop counter", exc)

    # -- stream: idle timeouts and packets ------------------------------------------------

    def _on_stream(self, message: p4r.StreamMessageResponse) -> None:
        kind = message.WhichOneof("update")
        if kind == "packet":
            packet = self._packets.decode(message.packet)
            if packet is not None and not self.punts.put(packet):
                self.counters["packet_in_overflow"] += 1
        elif kind == "idle_timeout_notification":
            self._on_idle(message.idle_timeout_notification)
        elif kind == "error":
            self.counters["stream_errors"] += 1
            log.warning("P4Runtime stream error: %s", message.error)
        else:
            self.counters["stream_ignored"] += 1

    def _on_idle(self, notification: p4r.IdleTimeoutNotification) -> None:
        """BMv2 repeats notifications every 2 s without a cookie: report each idle period once."""
        self.counters["idle_notifications"] += 1
        idle = []
        for entry in notification.table_entry:
            cookie = self._by_match.get(self._codec.match_of(entry))
            if cookie is None:
                self.counters["idle_unknown"] += 1
                continue
            installed = self._installed[cookie]
            if not installed.idle:
                installed.idle = True
                idle.append(cookie)
        if idle and self._idle_callback is not None:
            self.counters["idle_reported"] += len(idle)
            self._idle_callback(idle)

    async def packets(self) -> AsyncIterator[PacketIn]:
        """Frames the switch punts, in arrival order, until the driver closes."""
        async for batch in self.packet_batches(1):
            yield batch[0][0]

    async def packet_batches(self, limit: int) -> AsyncIterator[list[Queued]]:
        """What the switch punted since the last batch (at most ``limit``, each with the time it
        arrived), so a consumer serves several frames per event-loop turn."""
        while batch := await self.punts.batch(limit):
            yield batch

    def send_packet(self, frame: bytes, egress_port: int) -> bool:
        """Packet-out ``frame`` on ``egress_port``; False (counted) if it cannot be sent.

        Never waits for the switch: the stream's flow control paces what is queued."""
        message = self._packets.encode(frame, egress_port)
        if message is None:
            return False
        if not self._client.send(message):
            self.counters["packet_out_overflow" if self._client.is_open
                          else "packet_out_unavailable"] += 1
            return False
        self.counters["packet_out"] += 1
        return True


def _refuse(cmd: FlowCommand, refusal: Refusal, message: str) -> FlowResult:
    return FlowResult(cmd.cookie, cmd.command, refusal, message)
