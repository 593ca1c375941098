"""router: two hosts in two subnets, dual-stack, TCP and UDP offloaded to the P4 switch."""

from controller.lab import DemoConnection, LabPort, LabTopology

TOPOLOGY = LabTopology(
    description=__doc__,
    ports=(
        LabPort(1, "eth0", "h1", ("10.0.1.254/24", "2001:db8:1::fe/64"),
                ("10.0.1.1/24", "2001:db8:1::1/64")),
        LabPort(2, "eth1", "h2", ("10.0.2.254/24", "2001:db8:2::fe/64"),
                ("10.0.2.1/24", "2001:db8:2::1/64")),
    ),
    ruleset="""\
table inet filter {
    flowtable ft {
        hook ingress priority 0; devices = { eth0, eth1 };
        flags offload; counter;
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        meta l4proto { tcp, udp } flow add @ft
        counter
    }
}
""",
    demo=(DemoConnection("h1 opens a TCP connection to h2 (10.0.2.1) through the P4 switch",
                         "h1", "h2", 5001),),
)
