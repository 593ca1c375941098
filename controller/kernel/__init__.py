"""Kernel mode: a real, unmodified Linux router (a network namespace) is the slow path.

The P4 switch holds the established flows, offloaded from the kernel's conntrack, with the
same flowtable object, offload queue and ndo driver as the mirror mode (DESIGN §6.1). The core
(:mod:`.table`, :mod:`.policy`, :mod:`.paths`, :mod:`.router`) is sans-IO; :mod:`.ctnetlink`
and :mod:`.rtnetlink` translate netlink messages; :mod:`.netns`, :mod:`.netlink`, :mod:`.tap`
and :mod:`.session` are the I/O edges.
"""
