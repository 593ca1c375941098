"""Mininet labs: hosts around one P4 switch (softswitch or BMv2) with the controller running."""

from controller.lab.topology import (
    DemoConnection,
    LabPort,
    LabTopology,
    load_topology,
    topology_names,
)

__all__ = ["Bmv2Switch", "DemoConnection", "Lab", "LabPort", "LabTopology", "SoftSwitch",
           "load_topology", "topology_names"]


def __getattr__(name: str):
    """Lab and the switch classes need the mininet library; topology files do not."""
    if name == "Lab":
        from controller.lab.lab import Lab

        return Lab
    if name in ("SoftSwitch", "Bmv2Switch"):
        from controller.lab import nodes

        return getattr(nodes, name)
    raise AttributeError(name)
