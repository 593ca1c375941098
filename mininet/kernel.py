"""kernel: two hosts around the P4 switch, routed by a real Linux router (namespace r1) with
its own nft ruleset (a counting forward chain with ct state rules, masquerade on eth1); the
switch carries the connections the kernel's conntrack established."""

from controller.lab import DemoConnection, LabTopology, load_topology

TOPOLOGY = LabTopology(
    description=__doc__,
    netns="r1",
    ports=load_topology("router").ports,  # the router lab's hosts and addresses
    ruleset="""\
table inet filter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        counter
        ct state invalid counter drop
        ct state established,related accept
        iifname "eth0" oifname "eth1" accept
    }
}
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "eth1" masquerade
    }
}
""",
    demo=(DemoConnection("h1 opens a TCP connection to h2 (10.0.2.1) through the P4 switch; "
                         "Linux in r1 routes and masquerades it", "h1", "h2", 5001),),
)
