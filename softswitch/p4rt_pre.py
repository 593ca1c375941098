"""P4Runtime ``PacketReplicationEngineEntry`` writes and reads on the softswitch's PRE.

Follows PI's ``PreMcMgr`` / ``PreCloneMgr`` (proto/frontend/src/pre_mc_mgr.cpp,
pre_clone_mgr.cpp, device_mgr.cpp ``pre_mc_write``/``pre_clone_write``/``pre_*_read``), which
is what simple_switch_grpc answers with:

- a multicast group is one L1 node per replica ``instance`` (the rid) holding its ports; a
  repeated (port, instance) is INVALID_ARGUMENT; group id 0 is INVALID_ARGUMENT, ids from
  32768 on are reserved (OUT_OF_RANGE, also on reads);
- a clone session is a mirroring session whose replicas live in the reserved group
  ``32768 + session_id``; session 0 is INVALID_ARGUMENT, ids outside [1, 32768) too;
  ``class_of_service`` other than 0 is UNIMPLEMENTED (checked before anything changes, where
  PI has already rewritten the replicas of a MODIFY); ``packet_length_bytes`` truncates clones
  (PI hands it to the target as a ``uint16_t``);
- INSERT of an existing id is ALREADY_EXISTS, MODIFY/DELETE/read of a missing one NOT_FOUND;
  a read of id 0 is every group (below the reserved range) or every session.
- ``Replica.port`` (P4Runtime 1.4's bytes form) is read as a big-endian port number (reads
  answer with ``egress_port``, as for a 1.3 server); ``backup_replicas`` are UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import Iterable

from finsy.proto import p4r, rpc_code

from softswitch.p4rt_codec import P4RTError, invalid
from softswitch.pre import MirrorSession, Pre

FIRST_RESERVED_GROUP = 1 << 15  # PreMcMgr::first_reserved_group_id()
MIN_SESSION, MAX_SESSION = 1, 1 << 15  # PreCloneMgr kMinCloneSessionId, kMaxCloneSessionId


def write_pre(pre: Pre, op: int, entry: p4r.PacketReplicationEngineEntry) -> None:
    kind = entry.WhichOneof("type")
    if kind == "multicast_group_entry":
        _write_group(pre, op, entry.multicast_group_entry)
    elif kind == "clone_session_entry":
        _write_session(pre, op, entry.clone_session_entry)
    else:
        raise invalid("Invalid PRE operation")


def read_pre(pre: Pre, entry: p4r.PacketReplicationEngineEntry) -> list[p4r.Entity]:
    """The entities a read asks for (checked whole before anything is answered)."""
    kind = entry.WhichOneof("type")
    if kind == "multicast_group_entry":
        return _read_groups(pre, entry.multicast_group_entry.multicast_group_id)
    if kind == "clone_session_entry":
        return _read_sessions(pre, entry.clone_session_entry.session_id)
    raise invalid("Invalid PRE operation")


# ---- multicast groups ------------------------------------------------------------------------

def _write_group(pre: Pre, op: int, entry: p4r.MulticastGroupEntry) -> None:
    mgid = entry.multicast_group_id
    if mgid == 0:
        raise invalid("0 is not a valid group id")
    if mgid >= FIRST_RESERVED_GROUP:
        raise P4RTError(rpc_code.OUT_OF_RANGE, "Group id value is too high")
    _check_op(op)
    if op == p4r.Update.INSERT:
        if mgid in pre.groups:
            raise P4RTError(rpc_code.ALREADY_EXISTS, "Multicast group already exists")
        _set_group(pre, mgid, _nodes(entry.replicas), create=True)
    elif op == p4r.Update.MODIFY:
        _existing_group(pre, mgid)
        _set_group(pre, mgid, _nodes(entry.replicas), create=False)
    else:
        _existing_group(pre, mgid)
        _delete_group(pre, mgid)


def _read_groups(pre: Pre, mgid: int) -> list[p4r.Entity]:
    if mgid >= FIRST_RESERVED_GROUP:
        raise P4RTError(rpc_code.OUT_OF_RANGE, "Group id value is too high")
    if mgid == 0:
        ids = sorted(g for g in pre.groups if g < FIRST_RESERVED_GROUP)
    else:
        _existing_group(pre, mgid)
        ids = [mgid]
    return [p4r.Entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(
                multicast_group_entry=p4r.MulticastGroupEntry(
                    multicast_group_id=g, replicas=_replicas(pre, g))))
            for g in ids]


def _existing_group(pre: Pre, mgid: int) -> None:
    if mgid not in pre.groups:
        raise P4RTError(rpc_code.NOT_FOUND, "Multicast group does not exist")


def _check_op(op: int) -> None:
    if op not in (p4r.Update.INSERT, p4r.Update.MODIFY, p4r.Update.DELETE):
        raise invalid("Update type is not set" if op == p4r.Update.UNSPECIFIED
                      else "Invalid update type")


def _nodes(replicas: Iterable[p4r.Replica]) -> dict[int, list[int]]:
    """PreMcMgr::make_new_group: the ports of each rid, in the order they were given."""
    nodes: dict[int, list[int]] = {}
    for replica in replicas:
        if replica.backup_replicas:
            raise P4RTError(rpc_code.UNIMPLEMENTED, "backup replicas are not supported")
        port = replica.egress_port
        if replica.WhichOneof("port_kind") == "port":  # P4Runtime 1.4: the port as bytes
            if not replica.port or len(replica.port) > 4:
                raise invalid("Replica.port must be 1 to 4 bytes (a port number)")
            port = int.from_bytes(replica.port, "big")
        ports = nodes.setdefault(replica.instance, [])
        if port in ports:
            raise invalid("Duplicate replica in multicast group")
        ports.append(port)
    return nodes


def _set_group(pre: Pre, mgid: int, nodes: dict[int, list[int]], *, create: bool) -> None:
    if create:
        pre.mgrp_create(mgid)
    else:
        _destroy_nodes(pre, mgid)
    for rid, ports in nodes.items():
        pre.node_associate(mgid, pre.node_create(rid, ports))


def _delete_group(pre: Pre, mgid: int) -> None:
    _destroy_nodes(pre, mgid)
    pre.mgrp_destroy(mgid)


def _destroy_nodes(pre: Pre, mgid: int) -> None:
    """The group's L1 nodes go (PI makes a group's nodes anew on every write)."""
    for handle in list(pre.groups[mgid]):
        pre.node_destroy(handle)


def _replicas(pre: Pre, mgid: int) -> list[p4r.Replica]:
    return [p4r.Replica(egress_port=port, instance=rid) for port, rid in pre.replicate(mgid)]


# ---- clone sessions --------------------------------------------------------------------------

def _write_session(pre: Pre, op: int, entry: p4r.CloneSessionEntry) -> None:
    sid = entry.session_id
    if sid == 0:
        raise invalid("0 is not a valid session id")
    _check_op(op)
    if not MIN_SESSION <= sid < MAX_SESSION:
        raise invalid("Clone session id out-of-range")
    mgid = FIRST_RESERVED_GROUP + sid
    exists = sid in pre.sessions
    if op == p4r.Update.DELETE:
        if not exists:
            raise P4RTError(rpc_code.NOT_FOUND, "Clone session id does not exist")
        pre.mirroring_delete(sid)
        if mgid in pre.groups:
            _delete_group(pre, mgid)
        return
    if op == p4r.Update.INSERT and exists:
        raise P4RTError(rpc_code.ALREADY_EXISTS, "Clone session id already exists")
    if op == p4r.Update.MODIFY and not exists:
        raise P4RTError(rpc_code.NOT_FOUND, "Clone session id does not exist")
    nodes = _nodes(entry.replicas)
    if entry.class_of_service:
        raise P4RTError(rpc_code.UNIMPLEMENTED, "COS for clone sessions not supported yet")
    _set_group(pre, mgid, nodes, create=mgid not in pre.groups)
    pre.mirroring_add(sid, MirrorSession(mgid=mgid, truncate=entry.packet_length_bytes & 0xFFFF,
                                         class_of_service=entry.class_of_service))


def _read_sessions(pre: Pre, sid: int) -> list[p4r.Entity]:
    if sid == 0:
        ids = sorted(pre.sessions)
    elif sid not in pre.sessions:
        raise P4RTError(rpc_code.NOT_FOUND, "Clone session id does not exist")
    else:
        ids = [sid]
    out = []
    for i in ids:
        session = pre.sessions[i]
        targets = pre.clone_targets(session)
        out.append(p4r.Entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(
            clone_session_entry=p4r.CloneSessionEntry(
                session_id=i, class_of_service=session.class_of_service,
                packet_length_bytes=session.truncate,
                replicas=[p4r.Replica(egress_port=port, instance=rid or 0)
                          for port, rid in targets]))))
    return out
