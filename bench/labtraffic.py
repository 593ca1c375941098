"""Traffic the lab benchmarks run inside Mininet hosts, in one place (bench_paths, bench_cps).

Each generator is a small script given to the host's Python (``python -c``): the hosts are
network namespaces of this machine, so the scripts read the same monotonic clock as the
benchmark process and their timestamps compare with the monitor stream's.
"""

from __future__ import annotations

import sys

from controller.lab import Lab

SLOW_PORT = 6002  # the forward chain accepts it before ``flow add``: every packet is punted

RULESET = f"""table inet filter {{
    flowtable ft {{ hook ingress priority 0; devices = {{ eth0, eth1 }}; flags offload; }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        udp dport {SLOW_PORT} accept
        meta l4proto {{ tcp, udp }} flow add @ft
    }}
}}
"""

SINK = """import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("",int(sys.argv[1]))); s.settimeout(2)
s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,1<<22)
n=0; first=last=None
print("READY",flush=True)
while True:
    try: s.recv(2048)
    except TimeoutError: break
    last=time.monotonic(); first=first or last; n+=1
print(n, (last-first) if n>1 else 0, flush=True)
"""

BLAST = """import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
host,port,secs=sys.argv[1],int(sys.argv[2]),float(sys.argv[3])
s.sendto(b"warm",(host,port)); time.sleep(1.5)  # offloaded (or not) before the measurement
end=time.monotonic()+secs; n=0
while time.monotonic()<end:
    s.sendto(b"x"*64,(host,port)); n+=1
    if n%50==0: time.sleep(0.001)
print(n,flush=True)
"""

TCP_SERVER = """import selectors,socket,sys
srv=socket.socket(); srv.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
srv.bind(("",int(sys.argv[1]))); srv.listen(4096); srv.setblocking(False)
sel=selectors.DefaultSelector(); sel.register(srv,selectors.EVENT_READ)
print("READY",flush=True)
while True:
    for key,_ in sel.select():
        if key.fileobj is srv:
            c,_=srv.accept(); c.setblocking(False); sel.register(c,selectors.EVENT_READ)
        else:
            try: d=key.fileobj.recv(4096)
            except OSError: d=b""
            if not d: sel.unregister(key.fileobj); key.fileobj.close()
"""

# N connections, M workers; at --rate R connection i starts at start + i/R. Each connects,
# sends a few bytes and stays open (a FIN before the offload would tear the flow down) until
# a line arrives on stdin. Prints one JSON line: start time, connect latencies, failures.
TCP_CLIENT = """import json,socket,sys,threading,time
host,port,n,m,rate=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4]),float(sys.argv[5])
lock=threading.Lock(); nxt=[0]; lat=[]; socks=[]; failed=[0]
start=time.monotonic()+0.2
def work():
    while True:
        with lock:
            i=nxt[0]; nxt[0]+=1
        if i>=n: return
        if rate: time.sleep(max(0.0,start+i/rate-time.monotonic()))
        s=socket.socket(); s.settimeout(10); t=time.monotonic()
        try:
            s.connect((host,port)); d=time.monotonic()-t; s.sendall(b"hello")
        except OSError:
            with lock: failed[0]+=1
            s.close(); continue
        with lock: lat.append(d); socks.append(s)
ts=[threading.Thread(target=work) for _ in range(m)]
time.sleep(max(0.0,start-time.monotonic()))
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({"start":start,"end":time.monotonic(),"latencies":lat,"failed":failed[0]}),flush=True)
sys.stdin.readline()
"""


def script(lab: Lab, host: str, source: str, *args: object, **popen):
    """Run ``source`` with the host's Python inside ``host``."""
    return lab.host(host).popen([sys.executable, "-c", source, *map(str, args)], text=True,
                                **popen)


def pps(lab: Lab, port: int, seconds: float) -> tuple[float, int, int, float]:
    """h1 blasts UDP at h2's ``port``: (delivered pkt/s, sent, received, offered pkt/s)."""
    sink = script(lab, "h2", SINK, port)
    assert sink.stdout.readline().strip() == "READY"
    blast = script(lab, "h1", BLAST, lab.address("h2"), port, seconds)
    sent = int(blast.communicate()[0])
    received, span = sink.communicate()[0].split()
    received, span = int(received), float(span)
    return (received / span if span else 0.0), sent, received, sent / seconds
