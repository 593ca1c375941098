"""The P4Runtime device: pipeline config, Write, Read, packet I/O and idle notifications.

Sans-IO: every method takes protobuf messages (and ``now``) and returns protobuf messages or
raises :class:`P4RTError`; the gRPC servicer around it owns sockets, streams and timers. The
behaviour follows PI's DeviceMgr (what BMv2's simple_switch_grpc runs). Where we differ, we follow
the P4Runtime spec or do more, never less:

- a full table is RESOURCE_EXHAUSTED (BMv2: UNKNOWN "Error when adding match entry to target");
- register entries can be read and written (BMv2: UNIMPLEMENTED);
- a counter or meter entry without an index writes every cell (PI: UNIMPLEMENTED);
- a meter config with CIR above PIR is INVALID_ARGUMENT (BMv2: UNKNOWN);
- ``time_since_last_hit`` is the real elapsed time, also for entries without a TTL (BMv2: 0);
- a read of all tables asking for ``time_since_last_hit`` fills it where a table supports idle
  timeout instead of failing the whole read;
- ``idle_timeout_ns`` on a default entry is INVALID_ARGUMENT, as the spec says (BMv2 accepts it);
- a refused PacketOut (not primary, bad metadata) is answered with a StreamError (PI drops it);
- where the spec names a code and PI another, the spec's: COMMIT with no saved config is
  NOT_FOUND, a write to a `const entries` table PERMISSION_DENIED, an array index past the end
  OUT_OF_RANGE, an empty or too wide byte string OUT_OF_RANGE (softswitch/INTERPRETER.md lists
  them with PI's answers).

Where the spec says nothing, PI's answer: an Update without an entity is UNKNOWN ("Incorrect
entity type"), direct resources a table does not have INVALID_ARGUMENT. An empty Entity in a
Read is the spec's INVALID_ARGUMENT (PI: UNKNOWN).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from finsy.proto import p4d, p4r, rpc_code

from softswitch.p4rt_codec import (
    ActionSchema,
    ArraySchema,
    P4RTError,
    TableSchema,
    decode_action,
    decode_match,
    decode_meter_config,
    decode_value,
    encode_action,
    encode_match,
    encode_meter_config,
    encode_value,
    invalid,
    out_of_range,
    pack_header,
    unpack_header,
)
from softswitch.p4rt_config import (
    LoadedPipeline,
    PipelineFactory,
    default_factory,
    load_pipeline,
    reconcile,
)
from softswitch.p4rt_digests import DigestEngine
from softswitch.p4rt_idle import IdleSchedule
from softswitch.p4rt_pre import read_pre, write_pre
from softswitch.tables import DuplicateEntry, EntryNotFound, InvalidEntry, TableFull

# The interpreter's table errors and their canonical codes. TableFull is the one place we follow
# the spec rather than BMv2 (which reports UNKNOWN "Error when adding match entry to target").
_TABLE_ERRORS: tuple[tuple[type[Exception], int], ...] = (
    (TableFull, rpc_code.RESOURCE_EXHAUSTED),
    (DuplicateEntry, rpc_code.ALREADY_EXISTS),
    (EntryNotFound, rpc_code.NOT_FOUND),
    (InvalidEntry, rpc_code.INVALID_ARGUMENT),
)


def _table_error(exc: Exception) -> P4RTError:
    """The canonical error for an exception the interpreter raised during a write."""
    for cls, code in _TABLE_ERRORS:
        if isinstance(exc, cls):
            return P4RTError(code, str(exc) or cls.__name__)
    return P4RTError(rpc_code.INTERNAL, repr(exc))


@dataclass
class DeviceCounters:
    """What the device did with packets it could not hand on; never a silent loss."""

    packet_out: int = 0
    packet_out_errors: int = 0  # refused PacketOuts (answered with a StreamError)
    packet_in_errors: int = 0  # frames to the CPU port too short for the packet_in header


IDLE_CHUNK = 8192  # entries per IdleTimeoutNotification: ~0.7 MB with 128-bit keys


class Device:
    """One P4Runtime device (one ``device_id``) around the softswitch interpreter."""

    def __init__(self, device_id: int = 0, *, pipeline_factory: PipelineFactory | None = None,
                 table_size: int | None = None) -> None:
        self.device_id = device_id
        self.table_size = table_size
        self._factory = pipeline_factory or default_factory
        self.loaded: LoadedPipeline | None = None
        self._saved: LoadedPipeline | None = None
        self.idle = IdleSchedule()
        self.counters = DeviceCounters()
        # delivers a DigestList to the primary stream; False when nobody takes it
        self.on_digest: Callable[[p4r.DigestList], bool] | None = None

    @property
    def pipeline(self) -> Any:
        """The running interpreter pipeline, or None before the first commit."""
        return self.loaded.pipeline if self.loaded else None

    def check_device_id(self, device_id: int) -> None:
        if device_id != self.device_id:
            raise P4RTError(rpc_code.NOT_FOUND, f"Invalid device id {device_id}")

    def _running(self) -> LoadedPipeline:
        if self.loaded is None:
            raise P4RTError(rpc_code.FAILED_PRECONDITION, "No forwarding pipeline config set")
        return self.loaded

    # --- pipeline config -------------------------------------------------------------------------

    def set_pipeline(self, action: int, config: p4r.ForwardingPipelineConfig) -> None:
        req = p4r.SetForwardingPipelineConfigRequest
        if action == req.COMMIT:
            if self._saved is None:  # the spec (SetForwardingPipelineConfig RPC): NOT_FOUND
                raise P4RTError(rpc_code.NOT_FOUND, "No saved config to commit")
            if config.ByteSize():
                raise invalid("COMMIT takes no config")
            self._commit(self._saved)
            return
        if action not in (req.VERIFY, req.VERIFY_AND_SAVE, req.VERIFY_AND_COMMIT,
                          req.RECONCILE_AND_COMMIT):
            raise invalid(f"unsupported SetForwardingPipelineConfig action {action}")
        loaded = load_pipeline(config, self._factory, self.table_size)
        self._attach_digests(loaded)
        if action == req.VERIFY_AND_SAVE:
            self._saved = loaded
        elif action == req.VERIFY_AND_COMMIT:
            self._commit(loaded)
        elif action == req.RECONCILE_AND_COMMIT:
            if self.loaded is not None:
                reconcile(self.loaded, loaded)
                _carry_pre(self.loaded, loaded)
            self.loaded = loaded  # forwarding state carried over: the idle schedule stays too

    def _commit(self, loaded: LoadedPipeline) -> None:
        self.loaded, self._saved = loaded, None
        self.idle.clear()

    def get_pipeline(self, response_type: int) -> p4r.ForwardingPipelineConfig:
        config = self._running().config
        req = p4r.GetForwardingPipelineConfigRequest
        if response_type not in (req.ALL, req.COOKIE_ONLY, req.P4INFO_AND_COOKIE,
                                 req.DEVICE_CONFIG_AND_COOKIE):  # PI's pipeline_config_get
            raise invalid(f"Invalid response_type {response_type} in "
                          "GetForwardingPipelineConfigRequest")
        out = p4r.ForwardingPipelineConfig(cookie=config.cookie)
        if response_type in (req.ALL, req.P4INFO_AND_COOKIE):
            out.p4info.CopyFrom(config.p4info)
        if response_type in (req.ALL, req.DEVICE_CONFIG_AND_COOKIE):
            out.p4_device_config = config.p4_device_config
        return out

    # --- write -----------------------------------------------------------------------------------

    def write(self, updates: list[p4r.Update], now: float) -> list[P4RTError | None]:
        """Apply each update in order (CONTINUE_ON_ERROR); one error or None per update."""
        loaded = self._running()
        results: list[P4RTError | None] = []
        for update in updates:
            try:
                self._write_one(loaded, update, now)
                results.append(None)
            except P4RTError as exc:
                results.append(exc)
            except Exception as exc:
                results.append(_table_error(exc))
        return results

    def _write_one(self, loaded: LoadedPipeline, update: p4r.Update, now: float) -> None:
        kind = update.entity.WhichOneof("entity")
        if kind is None:  # PI's write_: UNKNOWN, before the update type is looked at
            raise P4RTError(rpc_code.UNKNOWN, "Incorrect entity type")
        if update.type == p4r.Update.UNSPECIFIED:
            raise invalid("update type UNSPECIFIED")
        if kind == "table_entry":
            self._write_table_entry(loaded, update.type, update.entity.table_entry, now)
        elif kind == "direct_counter_entry":
            if not update.entity.direct_counter_entry.HasField("table_entry"):
                raise invalid("Missing table_entry field in DirectCounterEntry")
            if update.type != p4r.Update.MODIFY:
                raise invalid("direct counter entries can only be modified")
            entry = self._find_entry(loaded, update.entity.direct_counter_entry.table_entry)
            _set_counter(entry, update.entity.direct_counter_entry.data)
        elif kind == "counter_entry":
            if update.type != p4r.Update.MODIFY:
                raise invalid("counter entries can only be modified")
            self._write_counter(loaded, update.entity.counter_entry)
        elif kind == "register_entry":
            if update.type != p4r.Update.MODIFY:
                raise invalid("register entries can only be modified")
            self._write_register(loaded, update.entity.register_entry)
        elif kind == "meter_entry":
            if update.type != p4r.Update.MODIFY:
                raise invalid("meter entries can only be modified")
            self._write_meter(loaded, update.entity.meter_entry)
        elif kind == "packet_replication_engine_entry":
            write_pre(_pre(loaded), update.type, update.entity.packet_replication_engine_entry)
        elif kind == "digest_entry":
            loaded.digests.write(update.type, update.entity.digest_entry)
        else:
            raise P4RTError(rpc_code.UNIMPLEMENTED, f"writing {kind} is not supported")

    def _write_table_entry(self, loaded: LoadedPipeline, op: int, te: p4r.TableEntry,
                           now: float) -> None:
        schema = loaded.schema.table(te.table_id)
        table = loaded.pipeline.tables[schema.name]
        if te.HasField("time_since_last_hit"):
            raise invalid("has_time_since_last_hit must not be set in WriteRequest")
        _check_direct_resources(schema, te)
        if te.is_default_action:
            self._write_default(loaded, schema, table, op, te)
            return
        key, priority = self._key(schema, te)
        if schema.is_const or table.const_entries:
            self._write_const(loaded, schema, op, te, key, priority)
            return
        if op == p4r.Update.DELETE:
            loaded.cookies.pop(table.delete(key, priority), None)
            return
        ttl = te.idle_timeout_ns
        if ttl < 0:
            raise invalid("idle_timeout_ns must not be negative")
        if ttl and not schema.supports_timeout:
            raise invalid("idle_timeout_ns must be set to 0 for tables which do not support "
                          "idle timeout")
        action, params = self._action(loaded, schema, te, default=False)
        if op == p4r.Update.INSERT:
            entry = table.insert(key, priority, action, params, ttl_ns=ttl, now=now)
        else:
            entry = table.modify(key, priority, action, params, ttl_ns=ttl, now=now)
            if schema.supports_timeout:
                entry.last_hit = now  # a MODIFY restarts the ageing timer (bmv2 test ModifyTTL)
        if te.HasField("counter_data"):
            _set_counter(entry, te.counter_data)
        if te.controller_metadata or te.metadata:
            loaded.cookies[entry] = (te.controller_metadata, te.metadata)
        else:
            loaded.cookies.pop(entry, None)

    @staticmethod
    def _write_const(loaded: LoadedPipeline, schema: TableSchema, op: int, te: p4r.TableEntry,
                     key: tuple, priority: int) -> None:
        """A `const entries` table: only a MODIFY of an entry's direct resources, without an
        action (the spec, Constant Tables, §9.1.4); anything else is PERMISSION_DENIED. PI
        leaves it to the target (BMv2: UNKNOWN for an INSERT, NOT_FOUND for an entry it did not
        write itself)."""
        if op != p4r.Update.MODIFY or te.HasField("action"):
            raise P4RTError(rpc_code.PERMISSION_DENIED,
                            f"table {schema.name} has const entries")
        entry = loaded.pipeline.tables[schema.name].get(key, priority)
        if entry is None:
            raise P4RTError(rpc_code.NOT_FOUND, f"no such entry in table {schema.name}")
        if te.HasField("counter_data"):
            _set_counter(entry, te.counter_data)

    def _write_default(self, loaded: LoadedPipeline, schema: TableSchema, table: Any, op: int,
                       te: p4r.TableEntry) -> None:
        if op != p4r.Update.MODIFY:
            raise invalid("the default entry can only be modified")
        if te.match or te.priority or te.idle_timeout_ns:
            raise invalid("the default entry takes no match, priority or idle_timeout_ns")
        if schema.const_default_action_id or table.const_default:
            raise P4RTError(rpc_code.PERMISSION_DENIED,
                            f"table {schema.name} has a const default action")
        if te.HasField("action"):
            table.set_default(*self._action(loaded, schema, te, default=True))
        else:  # an empty MODIFY restores the program's default action
            table.set_default(*loaded.initial_defaults[schema.name])

    @staticmethod
    def _key(schema: TableSchema, te: p4r.TableEntry) -> tuple[tuple, int]:
        key = decode_match(schema, te.match)
        if schema.needs_priority and te.priority <= 0:
            raise invalid(f"table {schema.name}: entries need a priority > 0")
        if not schema.needs_priority and te.priority:
            raise invalid(f"table {schema.name}: exact/lpm entries take no priority")
        return key, te.priority

    @staticmethod
    def _action(loaded: LoadedPipeline, schema: TableSchema, te: p4r.TableEntry, *,
                default: bool) -> tuple[str, tuple[int, ...]]:
        table_action = te.action
        kind = table_action.WhichOneof("type")
        if kind != "action":
            if kind is None:
                raise invalid(f"table {schema.name}: entry without an action")
            raise P4RTError(rpc_code.UNIMPLEMENTED, f"{kind} is not supported")
        return decode_action(schema, loaded.schema.actions, table_action.action, default=default)

    def _find_entry(self, loaded: LoadedPipeline, te: p4r.TableEntry) -> Any:
        schema = loaded.schema.table(te.table_id)
        if schema.direct_counter_id is None:
            raise invalid(f"table {schema.name} has no direct counter")
        entry = loaded.pipeline.tables[schema.name].get(*self._key(schema, te))
        if entry is None:
            raise P4RTError(rpc_code.NOT_FOUND, f"no such entry in table {schema.name}")
        return entry

    @staticmethod
    def _write_counter(loaded: LoadedPipeline, ce: p4r.CounterEntry) -> None:
        for schema, indices in _cells(loaded.schema.counters, ce.counter_id, ce, "counter",
                                      wildcard=False):
            array = loaded.pipeline.counters[schema.name]
            for i in indices:
                array.write(i, ce.data.packet_count, ce.data.byte_count)

    @staticmethod
    def _write_meter(loaded: LoadedPipeline, me: p4r.MeterEntry) -> None:
        """MODIFY with a config sets the cells' rates; without one (or PI's all -1 default
        config) it resets them to unconfigured, every packet GREEN (PI ``meter_write``)."""
        cells = _cells(loaded.schema.meters, me.meter_id, me, "meter", wildcard=False)
        config = decode_meter_config(me.config, "meter") if me.HasField("config") else None
        for schema, indices in cells:
            array = loaded.pipeline.meters[schema.name]
            for i in indices:
                if config is None:
                    array.reset(i)
                else:
                    array.configure(i, config)

    @staticmethod
    def _write_register(loaded: LoadedPipeline, re: p4r.RegisterEntry) -> None:
        for schema, indices in _cells(loaded.schema.registers, re.register_id, re, "register",
                                      wildcard=False):
            array = loaded.pipeline.registers[schema.name]
            if re.data.WhichOneof("data") != "bitstring":
                raise invalid(f"register {schema.name}: data must be a bitstring")
            value = decode_value(re.data.bitstring, array.bitwidth, schema.name)
            for i in indices:
                array.write(i, value)

    # --- read ------------------------------------------------------------------------------------

    def read(self, entities: list[p4r.Entity], now: float) -> Iterator[p4r.Entity]:
        """Every entity the request names; wildcards as PI has them (whole table, all tables).

        Each request entity is checked before anything is yielded, so an error never arrives
        after part of its answer.
        """
        loaded = self._running()
        readers = [self._reader(loaded, e, now) for e in entities]
        for reader in readers:
            yield from reader

    def _reader(self, loaded: LoadedPipeline, entity: p4r.Entity, now: float) -> Iterator[
            p4r.Entity]:
        kind = entity.WhichOneof("entity")
        if kind == "table_entry":
            return self._read_table_entries(loaded, entity.table_entry, now)
        if kind == "direct_counter_entry":
            if not entity.direct_counter_entry.HasField("table_entry"):  # as PI
                raise invalid("Missing table_entry field in DirectCounterEntry")
            return self._read_direct_counters(loaded, entity.direct_counter_entry.table_entry)
        if kind == "counter_entry":
            return self._read_counters(loaded, entity.counter_entry)
        if kind == "register_entry":
            return self._read_registers(loaded, entity.register_entry)
        if kind == "meter_entry":
            return self._read_meters(loaded, entity.meter_entry)
        if kind is None:  # the spec (Read RPC, "Wildcard Reads"); PI: UNKNOWN
            raise invalid("the entity oneof of a read Entity must be set")
        if kind == "packet_replication_engine_entry":
            return iter(read_pre(_pre(loaded), entity.packet_replication_engine_entry))
        if kind == "digest_entry":
            return iter(loaded.digests.read(entity.digest_entry))
        raise P4RTError(rpc_code.UNIMPLEMENTED, f"reading {kind} is not supported")

    def _selected(self, loaded: LoadedPipeline, te: p4r.TableEntry) -> list[
            tuple[TableSchema, list[Any]]]:
        """(table, entries) pairs a table-entry pattern selects: all, a whole table, or one key."""
        if te.table_id == 0:
            if te.match or te.is_default_action:
                raise invalid("a read of all tables takes no match")
            return [(s, list(loaded.pipeline.tables[s.name].entries()))
                    for s in loaded.schema.tables.values()]
        schema = loaded.schema.table(te.table_id)
        table = loaded.pipeline.tables[schema.name]
        if not te.match and not te.priority:
            return [(schema, list(table.entries()))]
        entry = table.get(*self._key(schema, te))
        return [(schema, [entry] if entry is not None else [])]

    def _read_table_entries(self, loaded: LoadedPipeline, te: p4r.TableEntry,
                            now: float) -> Iterator[p4r.Entity]:
        want_counters = te.HasField("counter_data")
        want_hit = te.HasField("time_since_last_hit")
        if te.table_id and want_hit and not loaded.schema.table(te.table_id).supports_timeout:
            raise invalid("time_since_last_hit requested on a table without idle timeout support")
        if te.is_default_action:
            schema = loaded.schema.table(te.table_id)
            return iter([self._default_entity(loaded, schema)])
        selected = self._selected(loaded, te)
        return self._table_entities(loaded, selected, want_counters, want_hit, now)

    def _table_entities(self, loaded: LoadedPipeline, selected: list, want_counters: bool,
                        want_hit: bool, now: float) -> Iterator[p4r.Entity]:
        for schema, entries in selected:
            counters = want_counters and schema.direct_counter_id is not None
            hit = want_hit and schema.supports_timeout
            for entry in entries:
                out = self._table_entry(loaded, schema, entry)
                if counters:
                    out.counter_data.packet_count = entry.packets
                    out.counter_data.byte_count = entry.bytes
                if hit:
                    out.time_since_last_hit.elapsed_ns = max(0, int((now - entry.last_hit) * 1e9))
                yield p4r.Entity(table_entry=out)

    @staticmethod
    def _table_entry(loaded: LoadedPipeline, schema: TableSchema, entry: Any) -> p4r.TableEntry:
        out = encode_match(schema, entry.key, p4r.TableEntry(
            table_id=schema.id, priority=entry.priority, idle_timeout_ns=entry.ttl_ns))
        if entry in loaded.cookies:
            out.controller_metadata, out.metadata = loaded.cookies[entry]
        out.action.action.CopyFrom(encode_action(_action_by_name(loaded, entry.action),
                                                 entry.params))
        return out

    @staticmethod
    def _default_entity(loaded: LoadedPipeline, schema: TableSchema) -> p4r.Entity:
        name, params = loaded.pipeline.tables[schema.name].default_action
        out = p4r.TableEntry(table_id=schema.id, is_default_action=True)
        out.action.action.CopyFrom(encode_action(_action_by_name(loaded, name), params))
        return p4r.Entity(table_entry=out)

    def _read_direct_counters(self, loaded: LoadedPipeline, te: p4r.TableEntry) -> Iterator[
            p4r.Entity]:
        if te.table_id and loaded.schema.table(te.table_id).direct_counter_id is None:
            raise invalid(f"table {loaded.schema.table(te.table_id).name} has no direct counter")
        selected = [(s, es) for s, es in self._selected(loaded, te)
                    if s.direct_counter_id is not None]
        return (p4r.Entity(direct_counter_entry=p4r.DirectCounterEntry(
                    table_entry=encode_match(s, e.key, p4r.TableEntry(table_id=s.id,
                                                                      priority=e.priority)),
                    data=p4r.CounterData(packet_count=e.packets, byte_count=e.bytes)))
                for s, es in selected for e in es)

    @staticmethod
    def _read_counters(loaded: LoadedPipeline, ce: p4r.CounterEntry) -> Iterator[p4r.Entity]:
        cells = _cells(loaded.schema.counters, ce.counter_id, ce, "counter", wildcard=True)
        return (p4r.Entity(counter_entry=p4r.CounterEntry(
                    counter_id=schema.id, index=p4r.Index(index=i),
                    data=p4r.CounterData(packet_count=packets, byte_count=nbytes)))
                for schema, indices in cells
                for i in indices
                for packets, nbytes in (loaded.pipeline.counters[schema.name].read(i),))

    @staticmethod
    def _read_meters(loaded: LoadedPipeline, me: p4r.MeterEntry) -> Iterator[p4r.Entity]:
        """One entity per cell; a cell never configured has no config (PI reads its default
        spec as an unset config)."""
        cells = _cells(loaded.schema.meters, me.meter_id, me, "meter", wildcard=True)

        def entities() -> Iterator[p4r.Entity]:
            for schema, indices in cells:
                array = loaded.pipeline.meters[schema.name]
                for i in indices:
                    out = p4r.MeterEntry(meter_id=schema.id, index=p4r.Index(index=i))
                    config = array.config(i)
                    if config is not None:
                        encode_meter_config(config, out.config)
                    yield p4r.Entity(meter_entry=out)

        return entities()

    @staticmethod
    def _read_registers(loaded: LoadedPipeline, re: p4r.RegisterEntry) -> Iterator[p4r.Entity]:
        cells = _cells(loaded.schema.registers, re.register_id, re, "register", wildcard=True)
        return (p4r.Entity(register_entry=p4r.RegisterEntry(
                    register_id=schema.id, index=p4r.Index(index=i),
                    data=p4d.P4Data(bitstring=encode_value(
                        loaded.pipeline.registers[schema.name].read(i)))))
                for schema, indices in cells
                for i in indices)

    # --- packet I/O ------------------------------------------------------------------------------

    def packet_out_frame(self, packet: p4r.PacketOut) -> bytes:
        """The frame a PacketOut injects at the CPU port: packet_out header bytes + payload."""
        loaded = self._running()
        return pack_header(loaded.schema.packet_out, packet.metadata) + packet.payload

    def packet_in(self, frame: bytes) -> p4r.PacketIn:
        """A frame the pipeline sent to the CPU port, its packet_in header turned to metadata."""
        packet = p4r.PacketIn()
        self.fill_packet_in(frame, packet)
        return packet

    def fill_packet_in(self, frame: bytes, packet: p4r.PacketIn) -> None:
        """:meth:`packet_in` into a message in place (the server's, saving a copy per punt)."""
        fields = self._running().schema.packet_in
        packet.payload = frame[unpack_header(fields, frame, packet.metadata):]

    # --- digests ---------------------------------------------------------------------------------

    def _attach_digests(self, loaded: LoadedPipeline) -> None:
        """The pipeline's digests go to a DigestEngine of its P4Info (PI DigestMgr::p4_change:
        a P4Info whose digests cannot be packed fails the config)."""
        loaded.digests = DigestEngine(loaded.config.p4info, self._send_digest)
        if hasattr(loaded.pipeline, "learn_sink"):
            loaded.pipeline.learn_sink = loaded.digests.learn

    def _send_digest(self, message: p4r.DigestList) -> bool:
        return self.on_digest(message) if self.on_digest is not None else False

    def digest_ack(self, ack: p4r.DigestListAck) -> None:
        """A DigestListAck from the stream (P4RTError: answer with a StreamError)."""
        self._running().digests.ack(ack)

    def digest_sweep(self, now: float) -> None:
        """Send digest lists whose max_timeout_ns is up; expire unacked ones."""
        if self.loaded is not None:
            self.loaded.digests.sweep(now)

    # --- idle timeout ----------------------------------------------------------------------------

    def idle_notifications(self, now: float,
                           timestamp_ns: int) -> list[p4r.IdleTimeoutNotification]:
        """The entries due a notification at this sweep, coalesced into as few messages as fit
        a client's default 4 MB receive limit (none when nothing is due)."""
        if self.loaded is None:
            return []
        loaded = self.loaded
        idle = {}
        for schema in loaded.schema.tables.values():
            if schema.supports_timeout:
                for entry in loaded.pipeline.tables[schema.name].idle_entries(now):
                    idle[entry] = schema
        due = self.idle.due(((e, e.last_hit) for e in idle), now)
        notifications = []
        for start in range(0, len(due), IDLE_CHUNK):
            note = p4r.IdleTimeoutNotification(timestamp=timestamp_ns)
            for entry in due[start:start + IDLE_CHUNK]:
                schema = idle[entry]
                encode_match(schema, entry.key, note.table_entry.add(
                    table_id=schema.id, priority=entry.priority, idle_timeout_ns=entry.ttl_ns))
            notifications.append(note)
        return notifications


def _pre(loaded: LoadedPipeline) -> Any:
    pre = getattr(loaded.pipeline, "pre", None)
    if pre is None:
        raise P4RTError(rpc_code.UNIMPLEMENTED, "this pipeline has no packet replication engine")
    return pre


def _carry_pre(old: LoadedPipeline, new: LoadedPipeline) -> None:
    """RECONCILE_AND_COMMIT keeps the multicast groups and clone sessions."""
    if getattr(old.pipeline, "pre", None) is not None and hasattr(new.pipeline, "pre"):
        new.pipeline.pre = old.pipeline.pre


def _action_by_name(loaded: LoadedPipeline, name: str) -> ActionSchema:
    try:
        return loaded.schema.action_names[name]
    except KeyError:
        raise P4RTError(rpc_code.INTERNAL, f"action {name} of the pipeline is not in the p4info")\
            from None


def _cells(arrays: dict[int, ArraySchema], ident: int,
           entry: p4r.CounterEntry | p4r.MeterEntry | p4r.RegisterEntry, kind: str, *,
           wildcard: bool) -> list[tuple[ArraySchema, Sequence[int]]]:
    """The (array, indices) an indexed-extern entity names: id 0 is every array of the kind
    (reads only), no index every cell. Checked before anything is read or written."""
    if ident == 0 and wildcard:
        schemas = list(arrays.values())
    elif ident in arrays:
        schemas = [arrays[ident]]
    else:
        raise invalid(f"unknown {kind} id {ident}")
    if not entry.HasField("index"):
        return [(s, range(s.size)) for s in schemas]
    i = entry.index.index
    if i < 0:  # the spec (CounterEntry §9.3.2, MeterEntry, RegisterEntry): negative is invalid,
        raise invalid(f"{kind}: negative index {i}")
    for s in schemas:  # past the end OUT_OF_RANGE (PI: UNKNOWN from the target)
        if i >= s.size:
            raise out_of_range(f"{kind} {s.name}: index {i} out of range 0..{s.size - 1}")
    return [(s, [i]) for s in schemas]


def _check_direct_resources(schema: TableSchema, te: p4r.TableEntry) -> None:
    """Direct resources in a TableEntry must exist on its table (PI's
    construct_direct_resources: INVALID_ARGUMENT). Direct meters are not run by the
    interpreter (INTERPRETER.md): a config for one is accepted and not kept."""
    if te.HasField("meter_config") and schema.direct_meter_id is None:
        raise invalid(f"table {schema.name}: Table has no direct meters")
    if te.HasField("counter_data") and schema.direct_counter_id is None:
        raise invalid(f"table {schema.name}: Table has no direct counters")


def _set_counter(entry: Any, data: p4r.CounterData) -> None:
    entry.packets, entry.bytes = data.packet_count, data.byte_count
