"""The edges: where the sans-IO core meets the world.

The asyncio daemon (``daemon``: P4Runtime session, packet-in loop, timers, offload worker), the
control socket (``control``), Prometheus metrics (``metrics``), the pipeline files it pushes
(``pipeline_files``), pcap I/O (``pcap``) and the virtual-clock simulation (``simulate``,
``simulate_hw``).
"""
