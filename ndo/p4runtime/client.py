"""A thin grpc.aio P4Runtime client: one device, one stream, upb messages end to end.

Why not finsy's Switch or p4runtime-shell: the driver needs raw WriteRequests (batched, several
in flight), per-update errors from ``grpc-status-details-bin``, reads larger than gRPC's 4 MB
default and a stream it can supervise and reconnect itself. This module knows P4Runtime, not
flows: the driver decides what to write and what the stream's messages mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

import grpc
from finsy.proto import p4r, p4r_grpc, rpc_code, rpc_status
from google.protobuf.message import DecodeError

from ndo.p4runtime.schema import Pipeline
from ndo.timing import Stage

log = logging.getLogger(__name__)

MAX_MESSAGE = 256 * 1024 * 1024  # BMv2's own limit; a full-table read exceeds 4 MB
MAX_METADATA = 4 * 1024 * 1024  # one p4.v1.Error per update of a failing 1000-update batch
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_metadata_size", MAX_METADATA),
    ("grpc.absolute_max_metadata_size", MAX_METADATA),
)
STATUS_DETAILS_KEY = "grpc-status-details-bin"
WRITE_METHOD = "/p4.v1.P4Runtime/Write"
STREAM_METHOD = "/p4.v1.P4Runtime/StreamChannel"
OUTBOX = 4096  # stream messages the stream has not taken yet; beyond it send() refuses

StreamHandler = Callable[[p4r.StreamMessageResponse], None]


class P4RuntimeError(Exception):
    """An RPC failed as a whole (no per-update detail): ``code`` is a google.rpc.Code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{rpc_code.Code.Name(code) if code in _CODES else code}: {message}")
        self.code = code
        self.message = message


_CODES = set(rpc_code.Code.values())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: ``initial`` doubling up to ``maximum``."""

    initial: float = 0.1
    maximum: float = 5.0

    def delays(self) -> Iterable[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * 2, self.maximum)


def uint128(value: int) -> p4r.Uint128:
    return p4r.Uint128(high=value >> 64, low=value & 0xFFFFFFFFFFFFFFFF)


class P4RuntimeClient:
    """One session with one device: open() connects and arbitrates, close() ends it.

    Stream messages other than arbitration go to ``on_message`` as they arrive; it must not
    block. ``on_primary_change`` hears when another client's arrival or departure makes this
    one backup or primary again. ``closed`` is set when the stream ends for any reason, so a
    supervisor can reconnect.

    Stream messages go out already encoded (``send`` takes wire bytes): packet-outs are built
    as bytes, never as messages. ``outbox_wait`` times each from ``send`` until gRPC takes it,
    which is how long the stream's own flow control held it back.
    """

    def __init__(
        self,
        address: str,
        device_id: int = 0,
        election_id: int = 1,
        role: str = "",
        on_message: StreamHandler | None = None,
        on_primary_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.address = address
        self.device_id = device_id
        self.election_id = election_id
        self.role = role
        self.on_message = on_message
        self.on_primary_change = on_primary_change
        self.is_primary = False
        self.closed = asyncio.Event()
        self.closed.set()
        self._channel: grpc.aio.Channel | None = None
        self._stub: p4r_grpc.P4RuntimeStub | None = None
        self._write_raw: grpc.aio.UnaryUnaryMultiCallable | None = None
        header = p4r.WriteRequest(device_id=device_id, role=role)
        header.election_id.CopyFrom(uint128(election_id))
        self._write_header = header.SerializeToString()
        self.outbox_wait = Stage()
        self._outbox: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue(OUTBOX)
        self._reader: asyncio.Task[None] | None = None
        self._arbitrated: asyncio.Future[bool] | None = None

    @property
    def is_open(self) -> bool:
        return not self.closed.is_set()

    async def open(self, timeout: float = 5.0) -> bool:
        """Connect and arbitrate; True if this client is primary. Raises ConnectionError."""
        await self.close()
        loop = asyncio.get_running_loop()
        self._channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self._stub = p4r_grpc.P4RuntimeStub(self._channel)
        self._write_raw = self._channel.unary_unary(  # bytes in: no serializer
            WRITE_METHOD, response_deserializer=p4r.WriteResponse.FromString)
        self._outbox = asyncio.Queue(OUTBOX)
        self._arbitrated = loop.create_future()
        self.closed.clear()
        stream = self._channel.stream_stream(  # bytes out: no serializer
            STREAM_METHOD, response_deserializer=p4r.StreamMessageResponse.FromString)
        call = stream(self._requests())
        self._reader = asyncio.create_task(self._read_stream(call))
        self.send(p4r.StreamMessageRequest(arbitration=self._arbitration()).SerializeToString())
        try:
            async with asyncio.timeout(timeout):
                return await self._arbitrated
        except (TimeoutError, ConnectionError) as exc:
            await self.close()
            raise ConnectionError(f"P4Runtime {self.address}: no arbitration: {exc}") from exc

    async def close(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(None)
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = self._write_raw = None
        self.is_primary = False
        self.closed.set()

    def send(self, message: bytes) -> bool:
        """Queue an encoded StreamMessageRequest (packet-out); False when no stream is open or
        the outbox is full (the stream is not taking messages as fast as they come).

        Never waits: the outbox holds what the stream has not taken yet, never more than OUTBOX.
        """
        if not self.is_open:
            return False
        try:
            self._outbox.put_nowait((message, time.perf_counter()))
        except asyncio.QueueFull:
            return False
        return True

    def new_write(self) -> p4r.WriteRequest:
        """An empty WriteRequest stamped with this session's device, election id and role."""
        request = p4r.WriteRequest(device_id=self.device_id, role=self.role)
        request.election_id.CopyFrom(uint128(self.election_id))
        return request

    async def write(self, request: p4r.WriteRequest) -> list[p4r.Error]:
        """Send ``request``; [] when every update succeeded, else one Error per update.

        BMv2 only implements CONTINUE_ON_ERROR, so each update stands on its own. Raises
        P4RuntimeError when the RPC failed without per-update details.
        """
        return await self.write_encoded(request.SerializeToString(), len(request.updates))

    async def write_encoded(self, updates: bytes, count: int) -> list[p4r.Error]:
        """``write`` for ``count`` updates already in wire format (WriteRequest.updates fields).

        Protobuf messages concatenate: the session's header bytes plus the update fields are
        one WriteRequest, sent without building it as a message.
        """
        if self._write_raw is None or not self.is_open:
            raise P4RuntimeError(rpc_code.UNAVAILABLE, f"not connected to {self.address}")
        try:
            await self._write_raw(self._write_header + updates)
        except grpc.aio.AioRpcError as exc:
            errors = _update_errors(exc)
            if errors is None or len(errors) != count:
                raise _rpc_error(exc) from None
            return errors
        return []

    async def read(self, entities: Iterable[p4r.Entity]) -> AsyncIterator[p4r.Entity]:
        request = p4r.ReadRequest(device_id=self.device_id, role=self.role, entities=entities)
        try:
            async for response in self._rpc().Read(request):
                for entity in response.entities:
                    yield entity
        except grpc.aio.AioRpcError as exc:
            raise _rpc_error(exc) from None

    async def pipeline_cookie(self) -> int | None:
        """The cookie of the loaded pipeline; None when the device has none."""
        request = p4r.GetForwardingPipelineConfigRequest(
            device_id=self.device_id,
            response_type=p4r.GetForwardingPipelineConfigRequest.COOKIE_ONLY,
        )
        try:
            response = await self._rpc().GetForwardingPipelineConfig(request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:  # PI: no config set
                return None
            raise _rpc_error(exc) from None
        config = response.config
        return config.cookie.cookie if config.HasField("cookie") else None

    async def set_pipeline(self, pipeline: Pipeline) -> None:
        request = p4r.SetForwardingPipelineConfigRequest(
            device_id=self.device_id,
            role=self.role,
            action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
            config=p4r.ForwardingPipelineConfig(
                p4info=pipeline.p4info,
                p4_device_config=pipeline.device_config,
                cookie=p4r.ForwardingPipelineConfig.Cookie(cookie=pipeline.cookie),
            ),
        )
        request.election_id.CopyFrom(uint128(self.election_id))
        try:
            await self._rpc().SetForwardingPipelineConfig(request)
        except grpc.aio.AioRpcError as exc:
            raise _rpc_error(exc) from None

    def _rpc(self) -> p4r_grpc.P4RuntimeStub:
        if self._stub is None or not self.is_open:
            raise P4RuntimeError(rpc_code.UNAVAILABLE, f"not connected to {self.address}")
        return self._stub

    def _arbitration(self) -> p4r.MasterArbitrationUpdate:
        update = p4r.MasterArbitrationUpdate(device_id=self.device_id)
        update.election_id.CopyFrom(uint128(self.election_id))
        if self.role:
            update.role.name = self.role
        return update

    async def _requests(self) -> AsyncIterator[bytes]:
        outbox, wait = self._outbox, self.outbox_wait
        while (item := await outbox.get()) is not None:
            wait.add(time.perf_counter() - item[1])
            yield item[0]

    async def _read_stream(self, call: grpc.aio.StreamStreamCall) -> None:
        reason: Exception = ConnectionError("stream ended")
        try:
            async for message in call:
                if message.HasField("arbitration"):
                    self._on_arbitration(message.arbitration)
                elif self.on_message is not None:
                    try:
                        self.on_message(message)
                    except Exception:  # a handler's bug must not end the session
                        log.exception("P4Runtime stream handler failed")
        except grpc.aio.AioRpcError as exc:
            reason = ConnectionError(f"{exc.code().name}: {exc.details()}")
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            self.is_primary = False
            attempt = self._arbitrated is not None and not self._arbitrated.done()
            if attempt:  # open() raises it; whoever retries says so once, not per attempt
                self._arbitrated.set_exception(reason)
            self.closed.set()
            (log.debug if attempt else log.info)("P4Runtime stream to %s closed: %s",
                                                 self.address, reason)

    def _on_arbitration(self, update: p4r.MasterArbitrationUpdate) -> None:
        was_primary, self.is_primary = self.is_primary, update.status.code == rpc_code.OK
        if self._arbitrated is not None and not self._arbitrated.done():
            self._arbitrated.set_result(self.is_primary)  # the answer to our own request
        elif self.is_primary != was_primary and self.on_primary_change is not None:
            self.on_primary_change(self.is_primary)  # another client came or went


def _update_errors(exc: grpc.aio.AioRpcError) -> list[p4r.Error] | None:
    """The per-update p4.v1.Error list a failed Write carries in its trailing metadata."""
    for key, value in exc.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = rpc_status.Status()
            try:
                status.ParseFromString(value)
            except DecodeError:
                return None
            errors = []
            for detail in status.details:
                error = p4r.Error()
                if not detail.Unpack(error):
                    return None
                errors.append(error)
            return errors
    return None


def _rpc_error(exc: grpc.aio.AioRpcError) -> P4RuntimeError:
    return P4RuntimeError(exc.code().value[0], exc.details() or "")
