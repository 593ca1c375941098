"""The IP stack around netfilter: what the kernel keeps in net/ipv4, net/ipv6 and net/core.

Packet parsing and building (``packet``, ``frames``, ``mangle``), routing (``routing``),
ARP/NDP neighbours (``neighbors``), ICMP errors (``icmp``) and the classic forwarding path
(``classic``, ip_forward's order with the netfilter hooks). Sans-IO.
"""
