"""nat: two inside hosts masqueraded behind the router's outside address, one DNAT
port-forward (outside 192.0.2.254:8080 → h1:80), all of it offloaded."""

from controller.lab import DemoConnection, LabPort, LabTopology

TOPOLOGY = LabTopology(
    description=__doc__,
    ports=(
        LabPort(1, "lan0", "h1", ("10.0.1.254/24",), ("10.0.1.1/24",)),
        LabPort(2, "lan1", "h2", ("10.0.2.254/24",), ("10.0.2.1/24",)),
        LabPort(3, "wan", "h3", ("192.0.2.254/24",), ("192.0.2.1/24",)),
    ),
    ruleset="""\
table ip nat {
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        iifname "wan" tcp dport 8080 dnat to 10.0.1.1:80
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        oifname "wan" masquerade
    }
}
table inet filter {
    flowtable ft {
        hook ingress priority 0; devices = { lan0, lan1, wan };
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
        DemoConnection("masquerade: h1 (inside, 10.0.1.1) opens a TCP connection to h3 (outside, "
                       "192.0.2.1:5001); h3 sees it come from the router's wan address "
                       "192.0.2.254, the reply tuple shows it", "h1", "h3", 5001),
        DemoConnection("DNAT port-forward: h3 (outside) connects to 192.0.2.254:8080, forwarded "
                       "to h1 (10.0.1.1:80); the reply tuple comes from 10.0.1.1:80",
                       "h3", "h1", 80, dial="192.0.2.254:8080"),
    ),
)
