"""p4-flowtable controller: a userspace mirror of the netfilter flowtable and its forwarding path.

Core modules are sans-IO (driven by frame bytes, port and a supplied clock); the daemon and CLI
are the edges.
"""
