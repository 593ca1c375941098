"""encap: a VLAN-tagged LAN (h1, VLAN 10), a QinQ LAN (h2, S-tag 100 + C-tag 10), a PPPoE WAN
(h3, session 4660, masqueraded) and an untagged uplink (h4). The lab kernel has no 8021Q or PPP:
the tagged hosts talk through a userspace shim (controller/lab/shim.py) over TAP devices.
The flowtable lists the real ports, so the switch matches and pushes tags and sessions."""

from controller.lab import DemoConnection, LabPort, LabTopology

TOPOLOGY = LabTopology(
    description=__doc__,
    ports=(
        LabPort(1, "eth0", "h1", ("10.0.10.254/24",), ("10.0.10.1/24",), encap=("vlan:10",)),
        LabPort(2, "eth1", "h2", ("10.0.100.254/24",), ("10.0.100.1/24",),
                encap=("802.1ad:100", "vlan:10")),
        LabPort(3, "wan", "h3", ("203.0.113.5/32",), ("203.0.113.1/32",), encap=("pppoe:4660",)),
        LabPort(4, "up", "h4", ("192.0.2.254/24",), ("192.0.2.1/24",)),
    ),
    ruleset="""\
table inet filter {
    flowtable ft {
        hook ingress priority 0; devices = { eth0, eth1, wan, up };
        flags offload; counter;
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        meta l4proto { tcp, udp } flow add @ft
    }
}
table ip nat {
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        oifname "pppoe-wan" masquerade
    }
}
""",
    demo=(
        DemoConnection("VLAN 10 (h1, 10.0.10.1) to the untagged uplink (h4, 192.0.2.1:5001): "
                       "the LAN direction is keyed on eth0 + tag 10, the reply pushes it",
                       "h1", "h4", 5001),
        DemoConnection("VLAN 10 (h1) over PPPoE to h3 (203.0.113.1:5002), masqueraded to "
                       "203.0.113.5: session 4660 popped and pushed by the switch",
                       "h1", "h3", 5002),
    ),
)
