"""P4Runtime digests: ``DigestEntry`` config, ``DigestList`` messages, ``DigestListAck``.

Follows what simple_switch_grpc runs: bm_sim's ``LearnList`` (src/bm_sim/learning.cpp) buffers
samples, configured by PI's bmv2 ``_pi_learn_config_set`` (PI/src/pi_learn_imp.cpp: up to
``max_list_size`` samples, 1024 when 0, or ``max_timeout_ns`` in whole milliseconds after the first,
no timeout when that is 0), then hands them to PI's ``DigestMgr``
(proto/frontend/src/digest_mgr.cpp). So with ``max_list_size`` 0 and ``max_timeout_ns`` under
1 ms a sample waits for 1023 more, as on BMv2: configure ``max_list_size`` 1 for one list per
sample. bm_sim's own duplicate filter (cleared by target acks) is not modelled; PI's cache is.
In PI's ``DigestMgr``:

- a digest is known when the P4Info declares it (else NOT_FOUND "is not a valid digest id");
  INSERT of a configured digest is ALREADY_EXISTS, MODIFY/DELETE of an unconfigured one
  NOT_FOUND; a read needs a digest_id (0 is UNIMPLEMENTED) and a configured digest (NOT_FOUND);
- samples of an unconfigured digest, or while no stream takes them, are dropped (counted);
- with ``ack_timeout_ns`` > 0 a sample equal to one already sent and not yet acked (nor expired)
  is suppressed; an ack (or ``ack_timeout_ns`` without one) releases the list's samples;
- a list is sent when ``max_timeout_ns`` is 0 (every sample at once), when it holds
  ``max_list_size`` new cached samples (PI counts the cache entries, so without
  ``ack_timeout_ns`` only the timeout sends), or ``max_timeout_ns`` after its first sample
  (PI sweeps every ``max_timeout_ns``, at least 100 ms, and sends on the second visit: this
  sends when the time is up, at the next :meth:`DigestEngine.sweep`);
- list ids start at 1 and keep counting through a DELETE;
- the packed type is a struct or tuple of bit<W>/int<W> members, or one bitstring; each member
  goes out as its canonical byte string.

An ack for a digest the P4Info does not declare is a StreamError INVALID_ARGUMENT (the P4Runtime
spec answers an invalid stream message with a StreamError; PI ignores it silently); an unknown
list_id is ignored, as PI does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from finsy.proto import p4d, p4i, p4r, rpc_code

from softswitch.p4rt_codec import P4RTError, encode_value, invalid

Sample = tuple[int, ...]
Send = Callable[[p4r.DigestList], bool]  # False: nobody took it (no primary stream)


@dataclass
class _List:
    samples: list[Sample] = field(default_factory=list)
    cached: list[Sample] = field(default_factory=list)  # PI's cache_pointers
    started: float = 0.0


@dataclass
class _Digest:
    digest_id: int
    name: str
    shape: str  # "struct", "tuple" or "bitstring"
    widths: list[int]  # of the members
    config: p4r.DigestEntry | None = None
    cache: set[Sample] = field(default_factory=set)
    current: _List = field(default_factory=_List)
    unacked: dict[int, tuple[_List, float]] = field(default_factory=dict)  # list_id -> sent at
    next_list_id: int = 1
    # bm_sim's LearnList in front of PI: samples wait for max_samples or the timeout
    bm_buffer: list[Sample] = field(default_factory=list)
    bm_started: float = 0.0
    bm_max_samples: int = 1  # LearnEngine::list_create's defaults until a config arrives
    bm_timeout: float = 1.0  # seconds; 0: no timeout


@dataclass
class DigestCounters:
    samples: int = 0
    dropped: int = 0  # unconfigured digest, unknown learn list or no stream
    suppressed: int = 0  # equal to an unacked sample
    lists_sent: int = 0


class DigestEngine:
    """The digests of one P4Info; ``send`` delivers a DigestList to the primary stream."""

    def __init__(self, p4info: p4i.P4Info, send: Send | None = None) -> None:
        self.send = send
        self.counters = DigestCounters()
        self._digests: dict[int, _Digest] = {}
        self._by_name: dict[str, _Digest] = {}
        self._learn_lists: dict[str, _Digest | None] = {}  # learn list name -> its digest
        for d in p4info.digests:
            digest = _Digest(d.preamble.id, d.preamble.name, *_shape(d, p4info.type_info))
            self._digests[digest.digest_id] = digest
            self._by_name[d.preamble.name] = digest

    # ---- config ----------------------------------------------------------------------------
    def write(self, op: int, entry: p4r.DigestEntry) -> None:
        digest = self._known(entry.digest_id)
        if op == p4r.Update.INSERT:
            if digest.config is not None:
                raise P4RTError(rpc_code.ALREADY_EXISTS,
                                f"Digest {entry.digest_id} already configured")
            digest.config = p4r.DigestEntry()
            digest.config.CopyFrom(entry)
            self._bm_config(digest, entry.config)
        elif op in (p4r.Update.MODIFY, p4r.Update.DELETE):
            if digest.config is None:
                raise P4RTError(rpc_code.NOT_FOUND, f"Digest {entry.digest_id} not configured")
            if op == p4r.Update.MODIFY:
                digest.config.CopyFrom(entry)
                self._bm_config(digest, entry.config)
            else:
                _reset(digest)  # the target's learn list keeps its settings, as with PI
        else:
            raise invalid("Invalid update type for DigestEntry")

    def _bm_config(self, digest: _Digest, config: p4r.DigestEntry.Config) -> None:
        """PI's bmv2 ``_pi_learn_config_set``: max_samples = max_list_size (0: 1024),
        timeout = max_timeout_ns in whole milliseconds (0: none); a buffer already at the new
        size goes out (LearnList::set_max_samples)."""
        digest.bm_max_samples = config.max_list_size or 1024
        digest.bm_timeout = int(config.max_timeout_ns / 1e6) / 1e3
        if digest.bm_buffer and len(digest.bm_buffer) >= digest.bm_max_samples:
            self._bm_flush(digest, digest.bm_started)

    def read(self, entry: p4r.DigestEntry) -> list[p4r.Entity]:
        if entry.digest_id == 0:
            raise P4RTError(rpc_code.UNIMPLEMENTED,
                            "digest_id must be set when reading DigestEntry")
        digest = self._known(entry.digest_id)
        if digest.config is None:
            raise P4RTError(rpc_code.NOT_FOUND, f"Digest {entry.digest_id} not configured")
        return [p4r.Entity(digest_entry=digest.config)]

    def _known(self, digest_id: int) -> _Digest:
        digest = self._digests.get(digest_id)
        if digest is None:
            raise P4RTError(rpc_code.NOT_FOUND, f"{digest_id} is not a valid digest id")
        return digest

    # ---- data plane ------------------------------------------------------------------------
    def learn(self, name: str, values: Sample, now: float) -> None:
        """One sample of the learn list ``name``: into bm_sim's buffer
        (LearnList::add_sample), which hands it on when full."""
        self.counters.samples += 1
        try:
            digest = self._learn_lists[name]
        except KeyError:  # the first sample of this learn list: matched to a digest once
            digest = self._learn_lists[name] = self._by_name.get(name) or self._by_suffix(name)
        if digest is None:
            self.counters.dropped += 1
            return
        digest.bm_buffer.append(values)
        if len(digest.bm_buffer) == 1:
            digest.bm_started = now
        if len(digest.bm_buffer) >= digest.bm_max_samples:
            self._bm_flush(digest, now)

    def _bm_flush(self, digest: _Digest, now: float) -> None:
        samples, digest.bm_buffer = digest.bm_buffer, []
        self._pi_learn(digest, samples, now)

    def _pi_learn(self, digest: _Digest, samples: list[Sample], now: float) -> None:
        """One message of samples from the target (DigestData::learn)."""
        if digest.config is None or self.send is None:
            self.counters.dropped += len(samples)
            return
        config = digest.config.config
        current = digest.current
        added = False
        for values in samples:
            if config.ack_timeout_ns > 0:  # no cache without an ack timeout
                if values in digest.cache:
                    self.counters.suppressed += 1
                    continue
                digest.cache.add(values)
                current.cached.append(values)
            if not current.samples:
                current.started = now
            current.samples.append(values)
            added = True
        if added and ((config.max_list_size and len(current.cached) >= config.max_list_size)
                      or config.max_timeout_ns == 0):
            self._send(digest, now)

    def _by_suffix(self, name: str) -> _Digest | None:
        found = [d for n, d in self._by_name.items() if n.split(".")[-1] == name.split(".")[-1]]
        return found[0] if len(found) == 1 else None

    def ack(self, ack: p4r.DigestListAck) -> None:
        digest = self._digests.get(ack.digest_id)
        if digest is None:
            raise invalid(f"DigestListAck for unknown digest id {ack.digest_id}")
        sent = digest.unacked.pop(ack.list_id, None)
        if sent is not None:
            digest.cache.difference_update(sent[0].cached)

    def sweep(self, now: float) -> None:
        """Send lists whose ``max_timeout_ns`` is up; forget samples unacked for
        ``ack_timeout_ns``."""
        for digest in self._digests.values():
            if (digest.bm_buffer and digest.bm_timeout
                    and now - digest.bm_started >= digest.bm_timeout):
                self._bm_flush(digest, now)
            if digest.config is None:
                continue
            config = digest.config.config
            if (digest.current.samples and config.max_timeout_ns
                    and (now - digest.current.started) * 1e9 >= config.max_timeout_ns):
                self._send(digest, now)
            if config.ack_timeout_ns:
                for list_id, (sent, at) in list(digest.unacked.items()):
                    if (now - at) * 1e9 >= config.ack_timeout_ns:
                        del digest.unacked[list_id]
                        digest.cache.difference_update(sent.cached)

    def _send(self, digest: _Digest, now: float) -> None:
        current, digest.current = digest.current, _List()
        message = p4r.DigestList(digest_id=digest.digest_id, list_id=digest.next_list_id,
                                 timestamp=time.time_ns(),
                                 data=[_p4data(digest, s) for s in current.samples])
        digest.next_list_id += 1
        if current.cached:
            digest.unacked[message.list_id] = (current, now)
        if self.send is not None and self.send(message):
            self.counters.lists_sent += 1
        else:
            self.counters.dropped += len(current.samples)


def _reset(digest: _Digest) -> None:
    """DigestData::reset: config, cache, pending and unacked lists go; list ids keep counting."""
    digest.config = None
    digest.cache.clear()
    digest.unacked.clear()
    digest.current = _List()


def _shape(digest: p4i.Digest, type_info: p4i.P4TypeInfo) -> tuple[str, list[int]]:
    """TypeSpecConverterIface::make: only bitstring members (fixed width) can be packed."""
    spec = digest.type_spec
    kind = spec.WhichOneof("type_spec")
    if kind == "struct":
        struct = type_info.structs.get(spec.struct.name)
        if struct is None:
            raise invalid(f"Struct name '{spec.struct.name}' name not found in P4TypeInfo")
        members = [m.type_spec for m in struct.members]
    elif kind == "tuple":
        members = list(spec.tuple.members)
    elif kind == "bitstring":
        members = [spec]
    else:
        raise P4RTError(rpc_code.UNIMPLEMENTED,
                        "Packed type for digest can only be bitstring, struct or tuple")
    widths = []
    for m in members:
        bits = m.bitstring if m.WhichOneof("type_spec") == "bitstring" else None
        kind_of = bits.WhichOneof("type_spec") if bits is not None else None
        if kind_of not in ("bit", "int"):
            raise P4RTError(rpc_code.UNIMPLEMENTED,
                            f"digest {digest.preamble.name}: only bit<W>/int<W> members")
        widths.append(getattr(bits, kind_of).bitwidth)
    return kind, widths


def _p4data(digest: _Digest, sample: Sample) -> p4d.P4Data:
    """Each member as its canonical byte string, cut to its width (two's complement)."""
    values = [encode_value(v & ((1 << w) - 1)) for v, w in zip(sample, digest.widths, strict=False)]
    if digest.shape == "bitstring":
        return p4d.P4Data(bitstring=values[0] if values else b"\x00")
    members = [p4d.P4Data(bitstring=v) for v in values]
    if digest.shape == "tuple":
        return p4d.P4Data(tuple=p4d.P4StructLike(members=members))
    return p4d.P4Data(struct=p4d.P4StructLike(members=members))
