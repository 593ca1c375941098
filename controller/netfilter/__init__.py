"""The netfilter mirror: what the kernel keeps in net/netfilter/.

Connection tracking (``conntrack``, ``ct``), NAT (``nat``), the nf_tables ruleset (``ruleset``),
and the flowtable with its software fast path, admission, hardware offload queue and capacity
policy (``flowtable``, ``fastpath``, ``admission``, ``offload``, ``capacity``). Sans-IO: plain
objects driven by packets and a clock.
"""
