"""The packet replication engine: multicast groups and mirroring (clone) sessions.

Mirrors bm_sim's ``McSimplePre`` (groups of L1 nodes, a node being one ``rid`` and a set of
ports; ``replicate(mgid)`` yields one ``(port, rid)`` per port of every node, nodes in the order
they were associated, ports ascending) and simple_switch's ``MirroringSessions`` (a session sends
to an egress port and/or a multicast group; ids 0..32767, ``MAX_MIRROR_SESSION_ID``). Both CLI
shapes (``mc_mgrp_create``, ``mc_node_create``, ``mc_node_associate``, ``mirroring_add[_mc]``)
and P4Runtime (``softswitch/p4rt_pre.py``) drive this one object.

``truncate`` is P4Runtime's ``CloneSessionEntry.packet_length_bytes``: a clone leaves the switch
cut to that many bytes (0: whole). ``class_of_service`` is kept for reads only (PI refuses a
non-zero one, so it never reaches the data plane).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

MAX_MIRROR_SESSION_ID = (1 << 15) - 1  # simple_switch RegisterAccess::MAX_MIRROR_SESSION_ID


class PreError(ValueError):
    """A PRE operation on something that does not exist (or already does)."""


@dataclass
class McNode:
    rid: int
    ports: set[int] = field(default_factory=set)
    group: int | None = None  # the group it is associated to (bm_sim: at most one)


@dataclass
class MirrorSession:
    egress_port: int | None = None
    mgid: int | None = None
    truncate: int = 0  # bytes kept of each clone (0: all)
    class_of_service: int = 0


class Pre:
    def __init__(self) -> None:
        self.groups: dict[int, list[int]] = {}  # mgid -> node handles, association order
        self.nodes: dict[int, McNode] = {}
        self.sessions: dict[int, MirrorSession] = {}
        self._free: list[int] = []  # destroyed handles, reused lowest first

    # ---- bm_sim McSimplePre ------------------------------------------------------------
    def mgrp_create(self, mgid: int) -> None:
        if mgid in self.groups:
            raise PreError(f"multicast group {mgid} already exists")
        self.groups[mgid] = []

    def mgrp_destroy(self, mgid: int) -> None:
        for handle in self._group(mgid):
            self.nodes[handle].group = None
        del self.groups[mgid]

    def node_create(self, rid: int, ports: list[int]) -> int:
        """A new L1 node; its handle is the lowest free one (bm_sim's handle manager)."""
        handle = heapq.heappop(self._free) if self._free else len(self.nodes)
        self.nodes[handle] = McNode(rid, set(ports))
        return handle

    def node_update(self, handle: int, ports: list[int]) -> None:
        self._node(handle).ports = set(ports)

    def node_destroy(self, handle: int) -> None:
        node = self._node(handle)
        if node.group is not None:
            self.groups[node.group].remove(handle)
        del self.nodes[handle]
        heapq.heappush(self._free, handle)

    def node_associate(self, mgid: int, handle: int) -> None:
        members, node = self._group(mgid), self._node(handle)
        if node.group is not None:
            raise PreError(f"node {handle} is already associated to group {node.group}")
        members.append(handle)
        node.group = mgid

    def node_dissociate(self, mgid: int, handle: int) -> None:
        members, node = self._group(mgid), self._node(handle)
        if handle not in members:
            raise PreError(f"node {handle} is not associated to group {mgid}")
        members.remove(handle)
        node.group = None

    def replicate(self, mgid: int) -> list[tuple[int, int]]:
        """``(egress_port, rid)`` per copy (McSimplePre::replicate); unknown group: none."""
        out = []
        for handle in self.groups.get(mgid, ()):
            node = self.nodes[handle]
            out += [(port, node.rid) for port in sorted(node.ports)]
        return out

    # ---- simple_switch mirroring ---------------------------------------------------------
    def mirroring_add(self, session_id: int, session: MirrorSession) -> None:
        if not 0 <= session_id <= MAX_MIRROR_SESSION_ID:
            raise PreError(f"mirror_id {session_id} out of range")
        self.sessions[session_id] = session

    def mirroring_delete(self, session_id: int) -> None:
        if self.sessions.pop(session_id, None) is None:
            raise PreError(f"mirroring session {session_id} does not exist")

    def session(self, session_id: int) -> MirrorSession | None:
        """The session a clone to ``session_id`` uses (its low 15 bits), None if none."""
        return self.sessions.get(session_id & MAX_MIRROR_SESSION_ID)

    def clone_targets(self, session: MirrorSession) -> list[tuple[int, int | None]]:
        """Where a clone to ``session`` goes, as ``(port, rid)``: the session's multicast
        group first, then its port with egress_rid untouched (simple_switch's order)."""
        out: list[tuple[int, int | None]] = []
        if session.mgid is not None:
            out += self.replicate(session.mgid)
        if session.egress_port is not None:
            out.append((session.egress_port, None))
        return out

    def _group(self, mgid: int) -> list[int]:
        if mgid not in self.groups:
            raise PreError(f"multicast group {mgid} does not exist")
        return self.groups[mgid]

    def _node(self, handle: int) -> McNode:
        if handle not in self.nodes:
            raise PreError(f"multicast node {handle} does not exist")
        return self.nodes[handle]
