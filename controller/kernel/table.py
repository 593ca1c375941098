"""The kernel's conntrack table as kernel mode sees it: :class:`Conn` objects fed by ctnetlink.

This is the flowtable's ``CtView`` in kernel mode. The kernel owns every connection; this
table only mirrors what ctnetlink reported (tuples, status, TCP state, timeout, counters) and
turns what the flowtable asks of conntrack into requests the edge sends back over ctnetlink:

* ``refresh`` (``flow_offload_add`` pushing the timeout a day away, GC's
  ``nf_flow_table_extend_ct_timeout``, teardown's ``flow_offload_fixup_ct``) → a timeout update;
* TCP window tracking off (``nft_flow_offload_eval`` sets ``IP_CT_TCP_FLAG_BE_LIBERAL``): the
  kernel sees none of the offloaded segments, so the FIN that closes the connection must not
  look out of window to it.

OFFLOAD and HW_OFFLOAD are local bits: a kernel without a flowtable has nobody to set them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from controller.kernel.ctnetlink import DESTROY, CtEntry
from controller.netfilter.conntrack import Timeouts, state_timeout
from controller.netfilter.ct import REPLY, Conn, CtTuple, Status, TcpState

LOCAL_STATUS = Status.OFFLOAD | Status.HW_OFFLOAD
DEFAULT_TIMEOUTS = Timeouts()


@dataclass(frozen=True, slots=True)
class CtUpdate:
    """A change kernel mode asks of a kernel entry (``conntrack -U``)."""

    conn: Conn
    timeout: int | None = None
    liberal: bool = False
    clear_maxack: bool = False


class KernelConntrack:
    """Mirror of one namespace's conntrack table, keyed by the kernel's entry id."""

    def __init__(self, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 on_change: Callable[[str, Conn], None] | None = None) -> None:
        self.timeouts = timeouts
        self.on_change = on_change
        self.on_update: Callable[[], None] | None = None  # the edge's "updates are waiting"
        self.updates: list[CtUpdate] = []
        self.counters: Counter[str] = Counter()
        self._conns: dict[int, Conn] = {}
        self._by_tuple: dict[CtTuple, Conn] = {}
        self._kernel_counts: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}

    def __iter__(self) -> Iterator[Conn]:
        return iter(list(self._conns.values()))

    def __len__(self) -> int:
        return len(self._conns)

    def get(self, ct_id: int) -> Conn | None:
        return self._conns.get(ct_id)

    def find(self, tup: CtTuple) -> Conn | None:
        """The connection a packet carrying ``tup`` belongs to (either direction)."""
        return self._by_tuple.get(tup)

    def apply(self, entry: CtEntry, now: float) -> Conn:
        """Take what the kernel reported. A DESTROY marks the connection dying and drops it."""
        conn = self._conns.get(entry.id)
        if conn is None:
            conn = Conn(tuples=entry.tuples, id=entry.id)
            if entry.kind != DESTROY:
                self._conns[entry.id] = conn
                for tup in entry.tuples:
                    self._by_tuple[tup] = conn
        local = conn.status & LOCAL_STATUS
        conn.status = (entry.status & ~LOCAL_STATUS) | local
        if entry.tcp_state is not None:
            conn.tcp_state = entry.tcp_state
        if entry.tcp_close_init:
            conn.tcp[0].close_init = True
        if entry.timeout is not None:
            conn.timeout = now + entry.timeout
        conn.helper = entry.helper
        conn.mark = entry.mark
        conn.zone = entry.zone
        if entry.packets is not None and entry.bytes is not None:
            self._take_counts(conn, entry.packets, entry.bytes)
        if entry.kind == DESTROY:
            conn.status |= Status.DYING
            if self._conns.pop(entry.id, None) is not None:
                for tup in conn.tuples:
                    if self._by_tuple.get(tup) is conn:
                        del self._by_tuple[tup]
            self._kernel_counts.pop(entry.id, None)
        if self.on_change is not None:
            self.on_change(entry.kind, conn)
        return conn

    def _take_counts(self, conn: Conn, packets: tuple[int, int], bytes_: tuple[int, int]) -> None:
        """Kernel counters replace the last kernel counters; hardware deltas added since stay."""
        old_p, old_b = self._kernel_counts.get(conn.id, ((0, 0), (0, 0)))
        for d in (0, REPLY):
            conn.packets[d] += packets[d] - old_p[d]
            conn.bytes[d] += bytes_[d] - old_b[d]
        self._kernel_counts[conn.id] = (packets, bytes_)

    def take_updates(self) -> list[CtUpdate]:
        updates, self.updates = self.updates, []
        return updates

    def request_liberal(self, conn: Conn) -> None:
        self._request(CtUpdate(conn, liberal=True))

    def request_tcp_fixup(self, conn: Conn) -> None:
        """``flow_offload_fixup_tcp``: the kernel's ``td_maxack`` is stale after offload."""
        if not conn.dying:
            self._request(CtUpdate(conn, clear_maxack=True))

    def _request(self, update: CtUpdate) -> None:
        """Queue a change; one following another of the same entry joins it (one message)."""
        last = self.updates[-1] if self.updates else None
        if last is not None and last.conn is update.conn:
            update = CtUpdate(update.conn,
                              update.timeout if update.timeout is not None else last.timeout,
                              last.liberal or update.liberal,
                              last.clear_maxack or update.clear_maxack)
            self.updates[-1] = update
        else:
            self.updates.append(update)
        if self.on_update is not None:
            self.on_update()

    # -- CtView (what the flowtable needs) ------------------------------------------------

    def timeout_for(self, conn: Conn) -> float:
        return state_timeout(self.timeouts, conn)

    def refresh(self, conn: Conn, seconds: float, now: float) -> None:
        """The kernel entry expires ``seconds`` from now (nothing to say to a dying one)."""
        conn.timeout = now + seconds
        if conn.dying:
            return
        self.counters["timeout_updates"] += 1
        self._request(CtUpdate(conn, timeout=int(seconds)))

    def set_status(self, conn: Conn, bits: Status, now: float | None = None) -> None:
        conn.status |= bits & LOCAL_STATUS

    def clear_status(self, conn: Conn, bits: Status, now: float | None = None) -> None:
        conn.status &= ~(bits & LOCAL_STATUS)


def tcp_open(conn: Conn) -> bool:
    """Still an open TCP connection to the kernel (no FIN or RST seen yet)."""
    return conn.tcp_state == TcpState.ESTABLISHED and not conn.tcp[0].close_init
