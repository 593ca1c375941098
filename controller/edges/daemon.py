"""``p4ft controller``: the asyncio edge around one Router per switch.

Per switch (a :class:`SwitchSession`, sharing nothing with the others): a P4Runtime session
through the ndo driver, a punt channel (:mod:`controller.edges.punt`: the P4Runtime stream or
the CPU port as a network device), packet-in → ``Router.receive`` → packet-out, a 1 s
``tick``, and an offload worker that drains the Router's queue into the driver in batches.
One process may drive several switches (several ``--config``), each with its own router,
conntrack and ruleset.

Restart. A clean shutdown leaves offloaded flows in hardware (they keep forwarding while no
controller runs) and writes the installed rules to a state file. The next start hands them to
``driver.start`` as intent, so reconcile *adopts* them instead of deleting them: no offloaded
packet is lost. Conntrack starts empty, so an adopted entry has no connection behind it; it is
kept while the hardware sees traffic and deleted when the switch reports it idle (or when the
Router offloads the same match again and takes it over). Entries found without a state file
(a crash) are orphans and are deleted; their packets reach the controller, where conntrack picks
TCP up mid-stream (nf_conntrack_tcp_loose) and UDP as new, and the flow is offloaded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from controller.config import RouterConfig
from controller.edges import control, eventloop
from controller.edges.punt import open_channel
from ndo.api import (
    Command,
    Cookie,
    Encap,
    FlowActions,
    FlowCommand,
    FlowDriver,
    FlowMatch,
    FlowResult,
    FlowRule,
)
from ndo.p4runtime.client import P4RuntimeError
from ndo.p4runtime.driver import P4RuntimeDriver, ReconcileReport
from ndo.p4runtime.schema import FlowSchema, Pipeline
from ndo.timing import Stage

log = logging.getLogger("p4ft.controller")

TICK = 1.0
CONNECT_TIMEOUT = 30.0
OFFLOAD_BATCH = 1000
PACKET_BATCH = 64  # punts served per event-loop turn: the tick and offloads run in between
PACKET_QUEUE = 4096  # punts waiting for the router; beyond it the oldest are dropped (counted)
ADOPTED_BASE = 1 << 62  # cookies of adopted entries never meet the Router's (flow id * 2 + dir)
EVENT_QUEUE = 10000  # per monitor client; a slow client loses events (counted), never the router


# -- the installed-rule record (what the state file holds) -------------------------------------


class RecordingDriver(FlowDriver):
    """Passes commands to ``inner`` and keeps cookie → rule of what the hardware holds."""

    def __init__(self, inner: FlowDriver) -> None:
        self.inner = inner
        self.capacity = inner.capacity
        self.rules: dict[Cookie, FlowRule] = {}
        self._adopted: dict[FlowMatch, Cookie] = {}  # match → adopted cookie, for _take_over

    def adopt(self, rules: dict[Cookie, FlowRule]) -> None:
        """Record entries found in hardware at start (cookies from ADOPTED_BASE on)."""
        self.rules.update(rules)
        self._adopted.update({rule.match: cookie for cookie, rule in rules.items()})

    async def execute(self, batch: Sequence[FlowCommand]) -> list[FlowResult]:
        results = await self.inner.execute(batch)
        for cmd, result in zip(batch, results, strict=False):
            if not result.ok:
                continue
            if cmd.command is Command.REPLACE and cmd.rule is not None:
                self._take_over(cmd.rule.match)
                self.rules[cmd.cookie] = cmd.rule
            elif cmd.command is Command.DESTROY:
                rule = self.rules.pop(cmd.cookie, None)
                if rule is not None and self._adopted.get(rule.match) == cmd.cookie:
                    del self._adopted[rule.match]
        return results

    def _take_over(self, match: FlowMatch) -> None:
        """An adopted entry whose match the Router installs again now belongs to the Router."""
        cookie = self._adopted.pop(match, None)
        if cookie is not None:
            self.rules.pop(cookie, None)

    def set_idle_callback(self, callback) -> None:
        self.inner.set_idle_callback(callback)

    async def close(self) -> None:
        await self.inner.close()


def rules_to_json(rules: dict[Cookie, FlowRule]) -> list[dict[str, Any]]:
    return [{"match": _hexed(asdict(r.match)), "actions": _hexed(asdict(r.actions))}
            for r in rules.values()]


def rules_from_json(items: list[dict[str, Any]]) -> dict[Cookie, FlowRule]:
    """Adopted cookies from a state file; raises ValueError/TypeError/KeyError on a bad one."""
    return {ADOPTED_BASE + i: FlowRule(FlowMatch(**_unhexed(item["match"])),
                                       FlowActions(**_unhexed(item["actions"])))
            for i, item in enumerate(items)}


def _hexed(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in fields.items()}


_BYTES_FIELDS = {"src", "dst", "eth_src", "eth_dst", "nat_src", "nat_dst"}


_ENCAP_FIELDS = {"encap", "push"}  # lists of [id, proto] in JSON


def _unhexed(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: bytes.fromhex(v) if k in _BYTES_FIELDS and v is not None
            else tuple(Encap(*e) for e in v) if k in _ENCAP_FIELDS else v
            for k, v in fields.items()}


def punt_rates(config: RouterConfig) -> dict[int, tuple[int, int]] | None:
    """The punt meter's cells from ``[punt]``: reason → (packets/s, burst)."""
    if config.punt is None:
        return None
    return {int(r): (p.rate_pps, p.burst) for r, p in config.punt.policers().items()}


# -- one switch ----------------------------------------------------------------------------------


class SwitchSession:
    """Router + driver + the three loops of one switch."""

    def __init__(self, name: str, config: RouterConfig, pipeline: Pipeline, *, push: bool = True,
                 state_dir: Path | None = None, clock: Callable[[], float] = time.monotonic,
                 packet_queue: int = PACKET_QUEUE) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self.stages = {"packet_in": Stage(), "receive": Stage()}  # + the driver's packet_out
        # monitor streams and the event types each wants (None: all)
        self._subscribers: dict[asyncio.Queue[dict[str, Any]], frozenset[str] | None] = {}
        self.router = self.make_router(config)
        sw = config.switch
        schema = FlowSchema.from_p4info(pipeline.p4info)
        self.p4rt = P4RuntimeDriver(
            sw.address, schema, device_id=sw.device_id,
            election_id=sw.election_id, pipeline=pipeline if push else None,
            idle_timeout=float(max(config.flowtable.tcp_timeout, config.flowtable.udp_timeout)),
            packet_queue=packet_queue, punt_rates=punt_rates(config))
        self.driver = RecordingDriver(self.p4rt)
        self.channel = open_channel(config, self.p4rt, schema, packet_queue)
        self.state_file = (state_dir / f"{name}.json") if state_dir is not None else None
        self._work = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._drops_read: asyncio.Task[None] | None = None
        self._started = False

    def make_router(self, config: RouterConfig) -> Any:
        """The slow path: the mirror (a kernel-mode session brings the kernel's)."""
        from controller.router import Router

        return Router(config, on_event=self._publish, wants=self.wanted)

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.channel.start()  # a netdev channel queues punts while P4Runtime connects
        adopted = self._load_state()
        report = await self._connect(adopted)
        if self.state_file is not None:  # used once: a later crash must not resurrect entries
            self.state_file.unlink(missing_ok=True)
        self.driver.adopt({c: adopted[c] for c in report.adopted + report.installed
                           if c in adopted})
        self.counters["adopted"] += len(report.adopted) + len(report.installed)
        self.counters["orphans_deleted"] += len(report.deleted)
        log.info("%s: connected to %s; adopted %d offloaded entries, deleted %d orphans",
                 self.name, self.config.switch.address, len(report.adopted) + len(report.installed),
                 len(report.deleted))
        self._started = True
        self.driver.set_idle_callback(self._on_idle)
        for loop in (self._packet_loop, self._tick_loop, self._offload_loop):
            self._tasks.append(asyncio.create_task(loop(), name=f"{self.name}:{loop.__name__}"))

    async def _connect(self, intent: dict[Cookie, FlowRule]) -> ReconcileReport:
        """The switch may still be starting (a lab launches both at once): retry a while,
        saying so once. A host name that does not resolve is a configuration error, not a
        switch still starting: start-up fails at once."""
        sw = self.config.switch
        if sw.address_defaulted:
            log.info("%s: no [switch] address in %s: using the default %s", self.name,
                     self.config.path or "the config", sw.address)
        await resolve_switch(self.name, sw.address)
        deadline = self.clock() + CONNECT_TIMEOUT
        warned = False
        while True:
            try:
                return await self.p4rt.start(intent)
            except (ConnectionError, P4RuntimeError) as exc:
                if self.clock() > deadline:
                    raise ConnectionError(f"{self.name}: cannot reach the switch at "
                                          f"{sw.address}: {exc}") from None
                if not warned:
                    log.warning("%s: the switch at %s does not answer yet (%s); retrying for "
                                "up to %.0f s", self.name, sw.address, exc, CONNECT_TIMEOUT)
                    warned = True
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        """Stop the loops and leave hardware as it is; remember what it holds."""
        tasks = [*self._tasks, *([self._drops_read] if self._drops_read else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._save_state()
        await self.channel.close()
        await self.driver.close()
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait({})  # wakes monitor streams so they end

    def _load_state(self) -> dict[Cookie, FlowRule]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        try:
            rules = rules_from_json(json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("%s: ignoring state file %s: %s", self.name, self.state_file, exc)
            return {}
        return rules

    def _save_state(self) -> None:
        if self.state_file is None or not self._started:
            return  # never connected: what the switch holds is unknown, keep any old record
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(rules_to_json(self.driver.rules)))
        log.info("%s: %d offloaded entries left in hardware, recorded in %s", self.name,
                 len(self.driver.rules), self.state_file)

    # -- loops -----------------------------------------------------------------------------

    async def _packet_loop(self) -> None:
        """Serve punts a batch per loop turn; packet-outs are queued, never awaited."""
        waited, took = self.stages["packet_in"].add, self.stages["receive"].add
        receive, clock = self.router.receive, self.clock
        async for batch in self.channel.packet_batches(PACKET_BATCH):
            for packet, arrived in batch:
                start = time.perf_counter()
                waited(start - arrived)
                try:
                    outcome = receive(packet.frame, packet.ingress_port, clock(), packet.reason)
                except Exception:  # a bug must cost one packet, counted, not the switch
                    self.counters["receive_errors"] += 1
                    log.exception("%s: router failed on a packet from port %d", self.name,
                                  packet.ingress_port)
                    continue
                took(time.perf_counter() - start)
                self._send(outcome.sends)
            self._kick()
            await asyncio.sleep(0)  # the tick, offloads and the stream get their turn

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                sends = self.router.tick(self.clock())
            except Exception:
                self.counters["tick_errors"] += 1
                log.exception("%s: tick failed", self.name)
                continue
            self.counters["ticks"] += 1
            self._send(sends)
            self._kick()
            if self._drops_read is None or self._drops_read.done():  # never delays the tick
                self._drops_read = asyncio.create_task(self.p4rt.read_punt_drops())

    async def _offload_loop(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            await self.router.offload.pump(self.driver, OFFLOAD_BATCH)

    def _send(self, sends: Sequence[tuple[int, bytes]]) -> None:
        send = self.channel.send_packet
        for port, frame in sends:
            if not send(frame, port):
                self.counters["packet_out_failed"] += 1

    def _kick(self) -> None:
        if len(self.router.offload):
            self._work.set()

    def _on_idle(self, cookies: Sequence[Cookie]) -> None:
        adopted = [c for c in cookies if c >= ADOPTED_BASE]
        if adopted:
            asyncio.get_running_loop().create_task(self._expire_adopted(adopted))
        self.router.offload.on_idle([c for c in cookies if c < ADOPTED_BASE])
        self._kick()

    async def _expire_adopted(self, cookies: list[Cookie]) -> None:
        """An adopted entry idle in hardware: no connection stands behind it, delete it."""
        results = await self.driver.execute([FlowCommand(Command.DESTROY, c) for c in cookies])
        self.counters["adopted_expired"] += sum(r.ok for r in results)

    # -- control ---------------------------------------------------------------------------

    def _publish(self, event: dict[str, Any]) -> None:
        event = {**event, "switch": self.name}
        for queue, types in self._subscribers.items():
            if types is not None and event.get("type") not in types:
                continue
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.counters["monitor_events_lost"] += 1

    def wanted(self, kind: str) -> bool:
        """Whether any monitor listens for events of type ``kind`` (else none is built)."""
        return any(types is None or kind in types for types in self._subscribers.values())

    def subscribe(self, queue: asyncio.Queue[dict[str, Any]],
                  types: frozenset[str] | None = None) -> None:
        """Every event from now on (only ``types`` if given) goes to ``queue``, then ``{}``
        when the session stops."""
        self._subscribers[queue] = types

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.pop(queue, None)

    def snapshot(self) -> dict[str, Any]:
        snap = self.router.snapshot(self.clock())
        stats = snap.setdefault("stats", {})
        stats["controller"] = dict(self.counters)
        stats["driver"] = dict(self.p4rt.counters)
        stats["hw_entries_adopted"] = sum(c >= ADOPTED_BASE for c in self.driver.rules)
        stats["hw_entries_recorded"] = len(self.driver.rules)
        stats["table_capacity"] = self.p4rt.capacity
        stats["connected"] = self.p4rt.connected
        stats["punt_path"] = self.punt_path()
        stats["packet_in_queue"] = self.channel.punts.stats()
        stats["punt_channel"] = self.channel.stats()
        stats["punt_policing"] = self.p4rt.policing.stats()
        return snap

    def punt_path(self) -> dict[str, dict[str, float]]:
        """Time per stage of a punted packet in this process: waiting after it arrived from the
        channel (decode and queue), Router.receive, and its packet-out waiting for the channel
        (the stream's flow control, or the device's send)."""
        stages = {**self.stages, "packet_out": self.channel.packet_out_wait}
        return {name: stage.as_dict() for name, stage in stages.items()}

    def apply_ruleset(self, text: str, filename: str) -> str:
        """``nft -f``: the script applies atomically to the running ruleset, or nothing changes."""
        from controller.netfilter.ruleset import RulesetError

        try:
            new = self.router.ruleset.apply(text, filename, self.router.devices)
        except RulesetError as exc:
            raise control.ControlError(str(exc)) from None
        self.router.apply_ruleset(new, self.clock())
        self._kick()
        return new.format()


# -- the process ----------------------------------------------------------------------------------


class Subscription:
    """The events of some sessions from its creation (subscribed before the control server
    answers "ok": a client that has the answer misses nothing) until every session stops or
    ``aclose()``."""

    def __init__(self, sessions: list[SwitchSession],
                 types: frozenset[str] | None = None) -> None:
        self.sessions = sessions
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(EVENT_QUEUE)
        for session in sessions:
            session.subscribe(self.queue, types)

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        ended = 0
        while ended < len(self.sessions):
            event = await self.queue.get()
            if not event:
                ended += 1  # that session stopped
                continue
            yield event

    async def aclose(self) -> None:
        for session in self.sessions:
            session.unsubscribe(self.queue)


class Daemon:
    """All sessions of one process, the control socket and the metrics endpoint."""

    def __init__(self, sessions: list[SwitchSession], control_path: Path,
                 metrics: tuple[str, int] | None = None) -> None:
        self.sessions = {s.name: s for s in sessions}
        self.control = control.ControlServer(control_path, {
            "ping": self._ping,
            "snapshot": self._snapshot,
            "ruleset": self._ruleset,
            "ruleset_apply": self._ruleset_apply,
        }, {"monitor": self._monitor})
        self.metrics = metrics
        self._metrics_server: asyncio.AbstractServer | None = None
        self.ready = False

    async def run(self, stop: asyncio.Event) -> None:
        """The control socket answers from the start (``ping`` says whether the daemon is ready);
        ready means every switch connected and reconciled and the metrics endpoint listening."""
        await self.control.start()
        try:
            if not await _unless_stopped(self._start_sessions(), stop):
                return  # SIGINT/SIGTERM while a switch was still being waited for
            if self.metrics is not None:
                self._metrics_server = await asyncio.start_server(self._serve_metrics,
                                                                  *self.metrics)
            self.ready = True
            log.info("controller ready: %s; control socket %s", ", ".join(self.sessions),
                     self.control.path)
            await stop.wait()
        finally:
            log.info("shutting down; offloaded flows stay in hardware")
            if self._metrics_server is not None:
                self._metrics_server.close()
            for session in self.sessions.values():
                await session.stop()
            await self.control.close()

    async def _start_sessions(self) -> None:
        for session in self.sessions.values():
            await session.start()

    def _pick(self, request: control.Request) -> list[SwitchSession]:
        name = request.get("switch")
        if name is None:
            return list(self.sessions.values())
        if name not in self.sessions:
            raise control.ControlError(f"no switch named {name!r} (have: "
                                       f"{', '.join(self.sessions)})")
        return [self.sessions[name]]

    async def _ping(self, request: control.Request) -> dict[str, Any]:
        return {"switches": list(self.sessions), "ready": self.ready}

    async def _snapshot(self, request: control.Request) -> control.Paged:
        """Per switch; the connections go out a page per line (a full table is ~15 MB)."""
        sessions = self._pick(request)
        return control.Paged({s.name: s.snapshot() for s in sessions},
                             [(s.name, "conns") for s in sessions])

    async def _ruleset(self, request: control.Request) -> dict[str, str]:
        return {s.name: s.router.ruleset.format() for s in self._pick(request)}

    async def _ruleset_apply(self, request: control.Request) -> dict[str, str]:
        sessions = self._pick(request)
        if len(sessions) != 1:
            raise control.ControlError("this controller drives several switches: name one "
                                       "with --switch")
        text, filename = request["text"], request.get("filename", "<control>")
        return {sessions[0].name: sessions[0].apply_ruleset(text, filename)}

    def _monitor(self, request: control.Request) -> Subscription:
        types = request.get("types")  # (control_requests.SHAPES: a list of strings)
        return Subscription(self._pick(request), frozenset(types) if types is not None else None)

    async def _serve_metrics(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        from controller.edges.metrics import render

        try:
            await reader.readuntil(b"\r\n\r\n")
            body = render({name: s.snapshot()["stats"] for name, s in self.sessions.items()})
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def _unless_stopped(work: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` is set first (then cancel it): False if stopped. Start-up
    may wait 30 s for a switch; a Ctrl-C meanwhile must not wait with it."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()
    return True


async def resolve_switch(name: str, address: str) -> None:
    """ConnectionError naming the switch when the host of ``address`` (HOST:PORT, the config
    checked its shape) does not resolve: gRPC would retry it forever without a word."""
    host, _, port = address.rpartition(":")
    try:
        await asyncio.get_running_loop().getaddrinfo(host.strip("[]"), int(port),
                                                     type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ConnectionError(f"{name}: switch address {address}: cannot resolve "
                              f"{host!r}: {reason}") from None


def session_names(configs: Sequence[RouterConfig]) -> list[str]:
    """Names the CLI and the state files use: the config file's stem, made unique."""
    names: list[str] = []
    for i, config in enumerate(configs):
        base = config.path.stem if config.path is not None else f"switch{i}"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}{n}"
        names.append(name)
    return names


SessionClass = Callable[[RouterConfig], type[SwitchSession]]


def run(configs: Sequence[RouterConfig], pipeline: Pipeline, *, session_class: SessionClass,
        push: bool, control_path: Path, state_dir: Path | None,
        metrics: tuple[str, int] | None) -> int:
    """Serve ``configs`` until SIGINT/SIGTERM; ``session_class`` picks each one's session (the
    caller knows every kind: kernel mode builds on this module, never the other way round)."""

    async def main() -> None:
        sessions = [session_class(config)(name, config, pipeline, push=push, state_dir=state_dir)
                    for name, config in zip(session_names(configs), configs, strict=True)]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Daemon(sessions, control_path, metrics).run(stop)

    eventloop.run(main())
    return 0
