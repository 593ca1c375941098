"""multi: four hosts in four subnets behind one switch, every pair routed and offloaded."""

from controller.lab import DemoConnection, LabPort, LabTopology

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
    demo=(
        DemoConnection("h1 (10.0.1.1) opens a TCP connection to h3 (10.0.3.1)", "h1", "h3", 5001),
        DemoConnection("at the same time h4 (10.0.4.1) opens one to h2 (10.0.2.1)",
                       "h4", "h2", 5002),
    ),
)
