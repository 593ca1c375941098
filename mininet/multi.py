"""multi: four hosts in four subnets behind one switch, every pair routed and offloaded."""

from controller.lab import LabPort, LabTopology

TOPOLOGY = LabTopology(
    description=__doc__,
    ports=tuple(
        LabPort(i, f"eth{i - 1}", f"h{i}", (f"10.0.{i}.254/24", f"2001:db8:{i}::fe/64"),
                (f"10.0.{i}.1/24", f"2001:db8:{i}::1/64"))
        for i in range(1, 5)
    ),
    ruleset="""\
table inet filter {
    flowtable ft {
        hook ingress priority 0; devices = { eth0, eth1, eth2, eth3 };
        flags offload; counter;
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        meta l4proto { tcp, udp } flow add @ft
        counter
    }
}
""",
)
