"""The softswitch's P4Runtime gRPC server (grpc.aio): the I/O edge around :class:`Device`.

It owns what the sans-IO device cannot: the gRPC server, one outgoing queue per StreamChannel, the
idle-timeout sweeper task, and the hand-off of packet-out frames to the switch. Errors are
reported as PI reports them: a failed Write is UNKNOWN with one ``p4.v1.Error`` per update in the
``grpc-status-details-bin`` trailer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from finsy.proto import p4r, p4r_grpc, rpc_code, rpc_status
from google.protobuf import any_pb2

from softswitch.p4rt_arbitration import Arbitration
from softswitch.p4rt_codec import P4RTError
from softswitch.p4rt_device import Device

log = logging.getLogger(__name__)

API_VERSION = "1.3.0"  # what PI's server reports
MAX_MESSAGE = 256 * 1024 * 1024  # PI's SetMaxReceiveMessageSize
READ_CHUNK = 3 * 1024 * 1024  # below every client's 4 MB default receive limit
STREAM_QUEUE_LIMIT = 1024  # packet-ins queued per connection before they are dropped (counted)
# Packet-ins queued at the primary from which the stream counts as congested (the switch pauses
# punting ports), and down to which it must drain before they resume.
CONGESTED, DRAINED = 32, 8
DIGEST_PERIOD = 0.1  # digest timeouts are checked this often (PI: every max_timeout, >= 100 ms)
_GRPC_CODE = {c.value[0]: c for c in grpc.StatusCode}

Inject = Callable[[bytes], None]


@dataclass(eq=False)
class StreamConnection:
    """One StreamChannel: its outgoing messages and where it stands in the election."""

    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    device_id: int | None = None

    def send(self, item: p4r.StreamMessageResponse | P4RTError | None) -> None:
        """Queue a message; a P4RTError ends the stream with that status, None ends it OK."""
        self.queue.put_nowait(item)


@dataclass
class ServerCounters:
    packet_in_sent: int = 0
    packet_in_dropped: int = 0  # no primary, or its queue was full
    idle_notifications_sent: int = 0
    idle_notifications_dropped: int = 0  # no primary connected (BMv2 loses them too)
    digest_lists_sent: int = 0
    digest_lists_dropped: int = 0  # no primary, or its queue was full


def _election_id(u: p4r.Uint128) -> int:
    return (u.high << 64) | u.low


class P4RuntimeServer(p4r_grpc.P4RuntimeServicer):
    """A P4Runtime server for one device.

    ``inject`` receives each packet-out frame (packet_out header + payload) for the switch to push
    into the pipeline at the CPU port. ``clock`` is the ``now`` given to the device (the same clock
    the switch uses for packets) and ``sweep_period`` the idle sweeper's period: both injectable
    so tests drive time.
    """

    def __init__(self, device: Device, *, inject: Inject | None = None,
                 clock: Callable[[], float] = time.monotonic, sweep_period: float = 1.0,
                 digest_period: float = DIGEST_PERIOD) -> None:
        self.device = device
        device.on_digest = self.send_digest
        self.inject = inject
        self.clock = clock
        self.sweep_period = sweep_period
        self.digest_period = digest_period
        self.arbitration = Arbitration()
        self.counters = ServerCounters()
        self.on_drained: Callable[[], None] = _nothing
        self._server: grpc.aio.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self._digest_sweeper: asyncio.Task | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, address: str) -> int:
        """Listen on ``address`` (``host:port``, port 0 for any); returns the bound port."""
        self._server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ])
        p4r_grpc.add_P4RuntimeServicer_to_server(self, self._server)
        port = self._server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        await self._server.start()
        if self.sweep_period > 0:
            self._sweeper = asyncio.create_task(_every(self.sweep_period, self.sweep, "idle"))
        if self.digest_period > 0:
            self._digest_sweeper = asyncio.create_task(_every(
                self.digest_period, lambda: self.device.digest_sweep(self.clock()), "digest"))
        return port

    async def stop(self, grace: float | None = 0.5) -> None:
        for task in (self._sweeper, self._digest_sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sweeper = self._digest_sweeper = None
        for conn in self.arbitration.connections():
            conn.send(None)
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    # --- to the primary --------------------------------------------------------------------------

    def send_packet_in(self, frame: bytes) -> None:
        """Deliver a frame the pipeline sent to the CPU port to the primary, as a PacketIn."""
        primary = self.arbitration.primary
        if primary is None or primary.queue.qsize() >= STREAM_QUEUE_LIMIT:
            self.counters.packet_in_dropped += 1
            return
        message = p4r.StreamMessageResponse()
        try:
            self.device.fill_packet_in(frame, message.packet)
        except P4RTError as exc:
            self.device.counters.packet_in_errors += 1
            log.debug("packet-in dropped: %s", exc)
            return
        primary.send(message)
        self.counters.packet_in_sent += 1

    def packet_in_congested(self) -> bool:
        """The primary's stream lags CONGESTED packet-ins or more behind the CPU port."""
        primary = self.arbitration.primary
        return primary is not None and primary.queue.qsize() >= CONGESTED

    def sweep(self) -> None:
        """One idle-timeout sweep: notify the primary of the entries due."""
        notifications = self.device.idle_notifications(self.clock(), time.time_ns())
        primary = self.arbitration.primary
        if primary is None:
            self.counters.idle_notifications_dropped += len(notifications)
            return
        for notification in notifications:
            primary.send(p4r.StreamMessageResponse(idle_timeout_notification=notification))
        self.counters.idle_notifications_sent += len(notifications)

    def send_digest(self, message: p4r.DigestList) -> bool:
        """Deliver a DigestList to the primary; False (counted) when there is none to take it."""
        primary = self.arbitration.primary
        if primary is None or primary.queue.qsize() >= STREAM_QUEUE_LIMIT:
            self.counters.digest_lists_dropped += 1
            return False
        primary.send(p4r.StreamMessageResponse(digest=message))
        self.counters.digest_lists_sent += 1
        return True

    # --- unary RPCs ------------------------------------------------------------------------------

    async def Capabilities(self, request: p4r.CapabilitiesRequest,
                           context: grpc.aio.ServicerContext) -> p4r.CapabilitiesResponse:
        return p4r.CapabilitiesResponse(p4runtime_api_version=API_VERSION)

    async def SetForwardingPipelineConfig(
            self, request: p4r.SetForwardingPipelineConfigRequest,
            context: grpc.aio.ServicerContext) -> p4r.SetForwardingPipelineConfigResponse:
        try:
            self.device.check_device_id(request.device_id)
            self._check_primary(request)
            self.device.set_pipeline(request.action, request.config)
        except P4RTError as exc:
            await _abort(context, exc)
        log.info("pipeline %s (cookie %d)",
                 p4r.SetForwardingPipelineConfigRequest.Action.Name(request.action),
                 request.config.cookie.cookie)
        return p4r.SetForwardingPipelineConfigResponse()

    async def GetForwardingPipelineConfig(
            self, request: p4r.GetForwardingPipelineConfigRequest,
            context: grpc.aio.ServicerContext) -> p4r.GetForwardingPipelineConfigResponse:
        try:
            self.device.check_device_id(request.device_id)
            config = self.device.get_pipeline(request.response_type)
        except P4RTError as exc:
            await _abort(context, exc)
        return p4r.GetForwardingPipelineConfigResponse(config=config)

    async def Write(self, request: p4r.WriteRequest,
                    context: grpc.aio.ServicerContext) -> p4r.WriteResponse:
        try:
            self.device.check_device_id(request.device_id)
            self._check_primary(request)
            if request.atomicity != p4r.WriteRequest.CONTINUE_ON_ERROR:
                raise P4RTError(rpc_code.UNIMPLEMENTED,
                                "Support for atomic write modes has not been implemented yet")
            results = self.device.write(list(request.updates), self.clock())
        except P4RTError as exc:
            await _abort(context, exc)
        failed = sum(r is not None for r in results)
        if failed:
            status = rpc_status.Status(
                code=rpc_code.UNKNOWN,
                message=f"{failed} of {len(results)} updates failed",
                details=[_packed_error(r) for r in results],
            )
            await context.abort(grpc.StatusCode.UNKNOWN, status.message, trailing_metadata=(
                ("grpc-status-details-bin", status.SerializeToString()),))
        return p4r.WriteResponse()

    async def Read(self, request: p4r.ReadRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[p4r.ReadResponse]:
        response, size = p4r.ReadResponse(), 0
        try:
            self.device.check_device_id(request.device_id)
            entities = self.device.read(list(request.entities), self.clock())
            for entity in entities:
                n = entity.ByteSize() + 8  # field tag and length prefix, generously
                if size + n > READ_CHUNK and size:
                    yield response
                    response, size = p4r.ReadResponse(), 0
                response.entities.append(entity)
                size += n
        except P4RTError as exc:
            await _abort(context, exc)
        yield response

    def _check_primary(self, request: p4r.WriteRequest | p4r.SetForwardingPipelineConfigRequest
                       ) -> None:
        """PI's rule: with no stream, only requests without an election id; else the primary's."""
        if not len(self.arbitration):
            allowed = not request.HasField("election_id")
        else:
            allowed = self.arbitration.is_primary_id(_election_id(request.election_id))
        if not allowed:
            raise P4RTError(rpc_code.PERMISSION_DENIED, "Not primary")

    # --- StreamChannel ---------------------------------------------------------------------------

    async def StreamChannel(self, request_iterator: AsyncIterator[p4r.StreamMessageRequest],
                            context: grpc.aio.ServicerContext
                            ) -> AsyncIterator[p4r.StreamMessageResponse]:
        conn = StreamConnection()
        reader = asyncio.create_task(self._read_stream(conn, request_iterator))
        try:
            while True:
                item = await conn.queue.get()
                if conn.queue.qsize() <= DRAINED:
                    self.on_drained()
                if item is None:
                    return
                if isinstance(item, P4RTError):
                    await _abort(context, item)
                yield item
        finally:
            reader.cancel()
            self._notify(self.arbitration.remove(conn))
            self.on_drained()

    async def _read_stream(self, conn: StreamConnection,
                           requests: AsyncIterator[p4r.StreamMessageRequest]) -> None:
        try:
            async for request in requests:
                kind = request.WhichOneof("update")
                if kind == "arbitration":
                    self._arbitrate(conn, request.arbitration)
                elif kind == "packet":
                    self._packet_out(conn, request.packet)
                elif kind == "digest_ack":
                    self._digest_ack(conn, request.digest_ack)
                else:
                    conn.send(_stream_error(P4RTError(rpc_code.UNIMPLEMENTED,
                                                      f"stream message {kind} not supported")))
        except P4RTError as exc:
            conn.send(exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client went away mid-read
            log.debug("stream read ended: %r", exc)
        conn.send(None)

    def _arbitrate(self, conn: StreamConnection, update: p4r.MasterArbitrationUpdate) -> None:
        if conn.device_id is None:
            self.device.check_device_id(update.device_id)
            conn.device_id = update.device_id
        elif update.device_id != conn.device_id:
            raise P4RTError(rpc_code.FAILED_PRECONDITION, "Invalid device id")
        self._notify(self.arbitration.arbitrate(conn, _election_id(update.election_id)))

    def _notify(self, conns: list) -> None:
        """Tell each connection who the primary is (OK for the primary itself)."""
        primary = self.arbitration.primary
        if primary is None:
            return
        eid = self.arbitration.primary_election_id
        for conn in conns:
            status = (rpc_status.Status(code=rpc_code.OK, message="Is primary") if conn is primary
                      else rpc_status.Status(code=rpc_code.ALREADY_EXISTS, message="Is backup"))
            conn.send(p4r.StreamMessageResponse(arbitration=p4r.MasterArbitrationUpdate(
                device_id=self.device.device_id,
                election_id=p4r.Uint128(high=eid >> 64, low=eid & (2**64 - 1)),
                status=status)))

    def _packet_out(self, conn: StreamConnection, packet: p4r.PacketOut) -> None:
        try:
            if conn is not self.arbitration.primary:
                raise P4RTError(rpc_code.PERMISSION_DENIED, "Not primary")
            frame = self.device.packet_out_frame(packet)
            if self.inject is None:
                raise P4RTError(rpc_code.UNAVAILABLE, "no CPU port to inject packets at")
            self.inject(frame)
            self.device.counters.packet_out += 1
        except P4RTError as exc:
            self.device.counters.packet_out_errors += 1
            error = _stream_error(exc)
            error.error.packet_out.packet_out.CopyFrom(packet)
            conn.send(error)

    def _digest_ack(self, conn: StreamConnection, ack: p4r.DigestListAck) -> None:
        try:
            if conn is not self.arbitration.primary:
                raise P4RTError(rpc_code.PERMISSION_DENIED, "Not primary")
            self.device.digest_ack(ack)
        except P4RTError as exc:
            error = _stream_error(exc)
            error.error.digest_list_ack.digest_list_ack.CopyFrom(ack)
            conn.send(error)


async def _every(period: float, sweep: Callable[[], None], what: str) -> None:
    """Run ``sweep`` every ``period`` seconds, for the idle-timeout and digest sweepers."""
    while True:
        await asyncio.sleep(period)
        try:
            sweep()
        except Exception:  # a sweep must never kill the sweeper
            log.exception("%s sweep failed", what)


def _nothing() -> None:
    pass


def _stream_error(exc: P4RTError) -> p4r.StreamMessageResponse:
    return p4r.StreamMessageResponse(error=p4r.StreamError(canonical_code=exc.code,
                                                           message=exc.message))


def _packed_error(result: P4RTError | None) -> any_pb2.Any:
    error = (p4r.Error(canonical_code=rpc_code.OK) if result is None
             else p4r.Error(canonical_code=result.code, message=result.message))
    packed = any_pb2.Any()
    packed.Pack(error)
    return packed


async def _abort(context: grpc.aio.ServicerContext, exc: P4RTError) -> None:
    await context.abort(_GRPC_CODE.get(exc.code, grpc.StatusCode.UNKNOWN), exc.message)
