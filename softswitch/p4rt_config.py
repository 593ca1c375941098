"""Pipeline configs of the P4Runtime device: verify a pushed config, carry state across one.

A config is a P4Info plus the BMv2 JSON as ``p4_device_config`` (raw bytes, as simple_switch_grpc
takes it). Verifying builds the interpreter pipeline and checks that both describe one program;
RECONCILE_AND_COMMIT copies the forwarding state of the running pipeline into the new one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from finsy.proto import p4r

from softswitch.p4rt_codec import P4Schema, invalid

PipelineFactory = Callable[[dict, int | None], Any]
log = logging.getLogger(__name__)


def default_factory(doc: dict, table_size: int | None) -> Any:
    """The softswitch interpreter's pipeline for a BMv2 JSON document."""
    from softswitch.pipeline import Pipeline  # the interpreter loads only when a pipeline does

    return Pipeline.from_json(doc, table_size_override=table_size)


@dataclass
class LoadedPipeline:
    """A verified pipeline: the config as pushed, its schema and the interpreter's pipeline."""

    config: p4r.ForwardingPipelineConfig
    schema: P4Schema
    pipeline: Any
    initial_defaults: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    # The controller's opaque data per entry, returned on reads as the spec requires; the
    # interpreter's entries have no room for it. Keyed by the entry object itself.
    cookies: dict[Any, tuple[int, bytes]] = field(default_factory=dict)
    digests: Any = None  # the DigestEngine of its P4Info (softswitch/p4rt_digests.py)


def load_pipeline(config: p4r.ForwardingPipelineConfig, factory: PipelineFactory,
                  table_size: int | None) -> LoadedPipeline:
    """Verify a pushed config: p4info present, device config valid BMv2 JSON, both agreeing."""
    if not config.HasField("p4info"):
        raise invalid("p4info is required")
    schema = P4Schema(config.p4info)
    data = config.p4_device_config
    if not data.lstrip().startswith(b"{"):
        data = _unwrap_tmp_device_config(data)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"p4_device_config is not BMv2 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise invalid("p4_device_config is not a BMv2 JSON object")
    try:
        pipeline = factory(doc, table_size)
    except Exception as exc:  # PipelineError or anything the loader trips over
        raise invalid(f"cannot load the BMv2 JSON: {exc}") from None
    _check_schema_matches(schema, pipeline)
    defaults = {t.name: (t.default_action[0], tuple(t.default_action[1]))
                for t in pipeline.tables.values()}
    return LoadedPipeline(config, schema, pipeline, defaults)


def _unwrap_tmp_device_config(data: bytes) -> bytes:
    """``device_data`` of a ``p4.tmp.P4DeviceConfig`` (field 3), which p4lang/tutorials'
    p4runtime_lib still sends and BMv2 still accepts; the raw bytes when it is not one."""
    pos, found = 0, None
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            if tag & 7 == 0:
                _, pos = _varint(data, pos)
            elif tag & 7 == 2:
                size, pos = _varint(data, pos)
                if pos + size > len(data):
                    return data
                if tag >> 3 == 3:
                    found = data[pos:pos + size]
                pos += size
            else:
                return data
    except IndexError:
        return data
    if found is not None:
        log.info("p4_device_config is a p4.tmp.P4DeviceConfig (deprecated): using device_data")
        return found
    return data


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _check_schema_matches(schema: P4Schema, pipeline: Any) -> None:
    """The p4info and the BMv2 JSON must describe the same program."""
    for t in schema.tables.values():
        table = pipeline.tables.get(t.name)
        if table is None:
            raise invalid(f"p4info table {t.name} is not in the BMv2 JSON")
        if len(table.keys) != len(t.match_fields):
            raise invalid(f"table {t.name}: p4info and BMv2 JSON disagree on the key")
    for a in schema.actions.values():
        info = pipeline.actions.get(a.name)
        if info is None or len(info.params) != len(a.params):
            raise invalid(f"p4info action {a.name} is not in the BMv2 JSON as declared")
    for kind, infos, present in (("counter", schema.counters, pipeline.counters),
                                 ("meter", schema.meters, pipeline.meters),
                                 ("register", schema.registers, pipeline.registers)):
        for info in infos.values():
            if info.name not in present:
                raise invalid(f"p4info {kind} {info.name} is not in the BMv2 JSON")


def reconcile(old: LoadedPipeline, new: LoadedPipeline) -> None:
    """Carry the forwarding state of ``old`` into ``new`` (RECONCILE_AND_COMMIT)."""
    for name, table in old.pipeline.tables.items():
        target = new.pipeline.tables.get(name)
        if target is None:
            if len(table):
                raise invalid(f"cannot reconcile: table {name} holds entries and is gone")
            continue
        for e in table.entries():
            try:
                n = target.insert(e.key, e.priority, e.action, e.params, ttl_ns=e.ttl_ns,
                                  now=e.last_hit)
            except Exception as exc:
                raise invalid(f"cannot reconcile an entry of table {name}: {exc}") from None
            n.packets, n.bytes = e.packets, e.bytes
            if e in old.cookies:
                new.cookies[n] = old.cookies[e]
        if not target.const_default:
            target.set_default(*table.default_action)
