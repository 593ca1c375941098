"""Apply script commands to a set of tables, the way the kernel processes an nft batch.

Objects are looked up as nft does (family + name), updates follow ``nf_tables_api.c``: a second
``add flowtable`` adds devices and may change ``counter`` but never ``offload``; a device belongs
to at most one flowtable per table; a flowtable referenced by a rule cannot be deleted. The caller
works on a copy, so a failing command leaves the original ruleset untouched. A new flowtable
gets a fresh handle (``nf_tables_newflowtable``: ``nf_tables_alloc_handle``), so the owner can
tell a flowtable that was only updated from one deleted and created again, whose predecessor the
kernel frees with its flows at commit (``nf_tables_flowtable_destroy`` → ``nf_flow_table_free``).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable
from dataclasses import replace

from controller.netfilter.ruleset import values
from controller.netfilter.ruleset.errors import Loc, RulesetError
from controller.netfilter.ruleset.model import Chain, Family, FlowtableDef, SetDef, Table
from controller.netfilter.ruleset.script import (
    AddChain,
    AddFlowtable,
    AddObject,
    AddRule,
    AddSet,
    AddTable,
    Command,
    DeleteChain,
    DeleteFlowtable,
    DeleteObject,
    DeleteRule,
    DeleteSet,
    DeleteTable,
    Device,
    FlushChain,
    FlushRuleset,
    SetElements,
)
from controller.netfilter.ruleset.validate import (
    chain_users,
    check_base_chain,
    check_rule,
    check_tables,
)

Tables = dict[tuple[Family, str], Table]

ENOENT = "Could not process rule: No such file or directory"
EEXIST = "Could not process rule: File exists"
EBUSY = "Could not process rule: Device or resource busy"
EOPNOTSUPP = "Could not process rule: Operation not supported"

_handles = itertools.count(1)  # process-wide: handles of a deleted flowtable are never reused


def execute(
    tables: Tables, commands: Iterable[Command], devices: Collection[str] | None = None
) -> None:
    """Run ``commands`` in order; with ``devices`` (the switch's port names), a flowtable device
    that is not one of them is refused, as ``nft_netdev_hook_alloc`` refuses a device
    ``__dev_get_by_name`` does not find (ENOENT)."""
    for cmd in commands:
        if devices is not None and isinstance(cmd, AddFlowtable):
            _check_devices(cmd.spec.devices, devices)
        _HANDLERS[type(cmd)](tables, cmd)
    check_tables(tables.values())  # the commit phase: jumps, loops, hooks of reached chains


def _check_devices(wanted: Iterable[Device], devices: Collection[str]) -> None:
    for dev in wanted:
        if dev.name not in devices:
            raise RulesetError(f"{ENOENT} (no device {dev.name} on this switch)", dev.loc)


def _table(tables: Tables, family: Family, name: str, loc: Loc) -> Table:
    table = tables.get((family, name))
    if table is None:
        raise RulesetError(f"{ENOENT} (no table {family.value} {name})", loc)
    return table


def _add_table(tables: Tables, cmd: AddTable) -> None:
    if cmd.create and (cmd.family, cmd.name) in tables:
        raise RulesetError(f"{EEXIST} (table {cmd.family.value} {cmd.name})", cmd.loc)
    tables.setdefault((cmd.family, cmd.name), Table(cmd.family, cmd.name, loc=cmd.loc))


def _add_chain(tables: Tables, cmd: AddChain) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    if cmd.base is not None:
        check_base_chain(table.family, cmd.base, cmd.base_loc)
    chain = table.chains.get(cmd.name)
    if chain is not None and cmd.create:
        raise RulesetError(f"{EEXIST} (chain {cmd.name})", cmd.loc)
    if chain is None:
        table.chains[cmd.name] = Chain(cmd.name, cmd.base, loc=cmd.loc)
        return
    if cmd.base is None:
        return
    old = chain.base
    if old is None or (old.type, old.hook, old.priority) != (
        cmd.base.type,
        cmd.base.hook,
        cmd.base.priority,
    ):
        raise RulesetError(
            f"{EOPNOTSUPP} (chain {cmd.name} exists with another type, hook or priority)",
            cmd.base_loc,
        )
    old.policy_accept = cmd.base.policy_accept  # the policy is the one updatable part


def _add_flowtable(tables: Tables, cmd: AddFlowtable) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    spec = cmd.spec
    old = table.flowtables.get(cmd.name)
    if old is None:
        if spec.hook is None or spec.priority is None:
            raise RulesetError(
                f"flowtable {cmd.name} needs 'hook ingress priority N' when it is created",
                cmd.loc,
            )
        ft = FlowtableDef(
            cmd.family,
            cmd.table,
            cmd.name,
            spec.priority,
            (),
            spec.offload,
            spec.counter,
            spec.hook,
            cmd.loc,
            next(_handles),
        )
    else:
        if spec.priority is not None and spec.priority != old.priority:
            raise RulesetError(
                f"{EOPNOTSUPP} (flowtable {cmd.name} has priority {old.priority}; "
                "the hook and priority of a flowtable cannot change)",
                spec.hook_loc,
            )
        ft = old
        if spec.has_flags:
            if spec.offload != old.offload:
                raise RulesetError(
                    f"{EOPNOTSUPP} (the offload flag of flowtable {cmd.name} cannot be "
                    f"{'set' if spec.offload else 'cleared'} after creation)",
                    spec.flags_loc,
                )
            ft = replace(ft, counter=spec.counter)
    table.flowtables[cmd.name] = replace(ft, devices=_add_devices(table, ft, spec.devices))


def _add_devices(table: Table, ft: FlowtableDef, devices: list[Device]) -> tuple[str, ...]:
    result = list(ft.devices)
    for dev in devices:
        for other in table.flowtables.values():
            if other.name != ft.name and dev.name in other.devices:
                raise RulesetError(
                    f"{EEXIST} (device {dev.name} already belongs to flowtable {other.name} "
                    f"of table {table.family.value} {table.name})",
                    dev.loc,
                )
        if dev.name not in result:
            result.append(dev.name)
    return tuple(result)


def _chain(table: Table, name: str, loc: Loc) -> Chain:
    chain = table.chains.get(name)
    if chain is None:
        raise RulesetError(
            f"{ENOENT} (no chain {name} in table {table.family.value} {table.name})", loc
        )
    return chain


def _add_rule(tables: Tables, cmd: AddRule) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    chain = _chain(table, cmd.chain, cmd.loc)
    check_rule(table, chain, cmd.rule)
    cmd.rule.handle = next(_handles)
    if cmd.handle is None:
        if cmd.insert:
            chain.rules.insert(0, cmd.rule)
        else:
            chain.rules.append(cmd.rule)
        return
    index = _rule_index(chain, cmd.handle, cmd.loc)
    if cmd.replace:
        chain.rules[index] = cmd.rule
    else:
        chain.rules.insert(index if cmd.insert else index + 1, cmd.rule)


def _rule_index(chain: Chain, handle: int, loc: Loc) -> int:
    for index, rule in enumerate(chain.rules):
        if rule.handle == handle:
            return index
    raise RulesetError(f"{ENOENT} (no rule with handle {handle} in chain {chain.name})", loc)


def _delete_rule(tables: Tables, cmd: DeleteRule) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    chain = _chain(table, cmd.chain, cmd.loc)
    del chain.rules[_rule_index(chain, cmd.handle, cmd.loc)]


def _add_set(tables: Tables, cmd: AddSet) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    old = table.sets.get(cmd.set.name)
    if old is None:
        table.sets[cmd.set.name] = cmd.set
        return
    if cmd.create:
        raise RulesetError(f"{EEXIST} (set {cmd.set.name})", cmd.loc)
    if (old.key, old.data) != (cmd.set.key, cmd.set.data):
        raise RulesetError(f"{EEXIST} (set {cmd.set.name} exists with another type)", cmd.loc)
    old.elements += [e for e in cmd.set.elements if e not in old.elements]


def _set(table: Table, name: str, loc: Loc) -> SetDef:
    sdef = table.sets.get(name)
    if sdef is None:
        raise RulesetError(f"{ENOENT} (no set {name} in table {table.name})", loc)
    return sdef


def _set_elements(tables: Tables, cmd: SetElements) -> None:
    sdef = _set(_table(tables, cmd.family, cmd.table, cmd.loc), cmd.name, cmd.loc)
    elements = values.set_elements(sdef, cmd.elements)
    if cmd.delete:
        for element in elements:
            if element not in sdef.elements:
                raise RulesetError(f"{ENOENT} (element not in set {cmd.name})", cmd.loc)
            sdef.elements.remove(element)
    else:
        sdef.elements += [e for e in elements if e not in sdef.elements]


def _delete_set(tables: Tables, cmd: DeleteSet) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    sdef = _set(table, cmd.name, cmd.loc)
    if cmd.flush:
        sdef.elements.clear()
        return
    del table.sets[cmd.name]


def _add_object(tables: Tables, cmd: AddObject) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    key = (cmd.obj.kind, cmd.obj.name)
    if key in table.objects and cmd.create:
        raise RulesetError(f"{EEXIST} ({cmd.obj.kind} {cmd.obj.name})", cmd.loc)
    table.objects.setdefault(key, cmd.obj)


def _delete_object(tables: Tables, cmd: DeleteObject) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    if table.objects.pop((cmd.kind, cmd.name), None) is None:
        raise RulesetError(f"{ENOENT} (no {cmd.kind} {cmd.name} in table {cmd.table})", cmd.loc)


def _delete_table(tables: Tables, cmd: DeleteTable) -> None:
    if not cmd.must_exist and (cmd.family, cmd.name) not in tables:
        return
    _table(tables, cmd.family, cmd.name, cmd.loc)
    del tables[(cmd.family, cmd.name)]


def _delete_chain(tables: Tables, cmd: DeleteChain) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    _chain(table, cmd.name, cmd.loc)
    users = chain_users(table, cmd.name)
    if users:
        where = ", ".join(str(loc) for loc in users)
        raise RulesetError(f"{EBUSY} (chain {cmd.name} is used by: {where})", cmd.loc)
    del table.chains[cmd.name]


def _flush_chain(tables: Tables, cmd: FlushChain) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    if cmd.chain is None:
        chains = list(table.chains.values())
    else:
        chains = [_chain(table, cmd.chain, cmd.loc)]
    for chain in chains:
        chain.rules.clear()


def _delete_flowtable(tables: Tables, cmd: DeleteFlowtable) -> None:
    table = _table(tables, cmd.family, cmd.table, cmd.loc)
    ft = table.flowtables.get(cmd.name)
    if ft is None:
        raise RulesetError(f"{ENOENT} (no flowtable {cmd.name} in table {cmd.table})", cmd.loc)
    if cmd.devices is not None:
        for dev in cmd.devices:
            if dev.name not in ft.devices:
                raise RulesetError(
                    f"{ENOENT} (flowtable {cmd.name} has no device {dev.name})", dev.loc
                )
        gone = {dev.name for dev in cmd.devices}
        table.flowtables[cmd.name] = replace(
            ft, devices=tuple(d for d in ft.devices if d not in gone)
        )
        return
    users = table.flowtable_users(cmd.name)
    if users:
        where = ", ".join(str(ref.loc) for ref in users)
        raise RulesetError(f"{EBUSY} (flowtable {cmd.name} is used by: {where})", cmd.loc)
    del table.flowtables[cmd.name]


def _flush_ruleset(tables: Tables, cmd: FlushRuleset) -> None:
    for key in [k for k in tables if cmd.family in (None, k[0])]:
        del tables[key]


_HANDLERS: dict = {
    DeleteRule: _delete_rule,
    AddSet: _add_set,
    SetElements: _set_elements,
    DeleteSet: _delete_set,
    AddObject: _add_object,
    DeleteObject: _delete_object,
    AddTable: _add_table,
    AddChain: _add_chain,
    AddFlowtable: _add_flowtable,
    AddRule: _add_rule,
    DeleteTable: _delete_table,
    DeleteChain: _delete_chain,
    DeleteFlowtable: _delete_flowtable,
    FlushChain: _flush_chain,
    FlushRuleset: _flush_ruleset,
}
