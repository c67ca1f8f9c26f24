"""Allocations in the real server while N stream.mp4 viewers of the `demo` stream play: uprobes
on mimalloc's entry points (the Rust global allocator), counted by `perf stat` over WINDOW s,
and the fragments delivered meanwhile (the API's per-consumer counters). Run it with two N:
what does not grow with N is the stream's own work (producer, assembler, muxer).

Setup (root; the probe names are PREFIX_malloc/zalloc/realloc):
  B=target/release/corecast
  for f in malloc zalloc realloc; do perf probe -x $B -a "cc_${f}_aligned=mi_${f}_aligned"; done
Run: CORECAST_BIN=$B PREFIX=cc python3 benches/http_allocs.py 10 10   (then 200 10)
Clean up: perf probe -d 'probe_corecast:*' """
import os, selectors, socket, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import conftest
from pathlib import Path
tag = os.environ.get("PREFIX", "cc")
conftest.BIN = Path(os.environ.get("CORECAST_BIN", conftest.BIN)).resolve()
N, WIN = int(sys.argv[1]), float(sys.argv[2])
srv = conftest.start_server(shards=1)
def delivered():
    return sum(c.get("packets_send", 0) for c in srv.streams()["demo"].get("consumers", []) if c.get("protocol") == "http")
try:
    conftest.wait_live(srv, timeout=30)
    sel = selectors.DefaultSelector()
    for i in range(N):
        s = socket.create_connection(("127.0.0.1", srv.api_port))
        s.sendall(b"GET /api/stream.mp4?src=demo HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    def pump(t):
        end = time.time() + t
        while time.time() < end:
            for key, _ in sel.select(timeout=0.05):
                try:
                    key.fileobj.recv(1 << 16)
                except BlockingIOError:
                    pass
    pump(5)
    ev = ",".join(f"probe_corecast:{tag}_{f}_aligned" for f in ("malloc", "zalloc", "realloc"))
    d0 = delivered()
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", ev, "-p", str(srv.proc.pid), "--", "sleep", str(WIN)],
                            stderr=subprocess.PIPE, text=True)
    pump(WIN + 0.3)
    d1 = delivered()
    _, err = perf.communicate(timeout=30)
    counts = {l.split(",")[2].split(":")[1]: int(l.split(",")[0]) for l in err.strip().splitlines() if l.split(",")[0].isdigit()}
    allocs = sum(counts.values())
    frags = d1 - d0
    print(f"{tag}: {N} viewers, {WIN:.0f} s: {allocs} allocations ({counts}), {frags} fragments delivered: {allocs/max(frags,1):.3f} per fragment per viewer")
finally:
    conftest.stop(srv.proc)
