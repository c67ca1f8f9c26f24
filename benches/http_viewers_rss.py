"""Memory per stream.mp4 viewer: N HTTP viewers of the demo stream, each reading
everything (an epoll loop), RSS of the server before and after they join. A first viewer
joins PREFILL s earlier (starts the muxer and fills its rings) and is watched for early EOF.
Usage: CORECAST_BIN=target/release/corecast python3 benches/http_viewers_rss.py N PREFILL HOLD
(e.g. 1000 65 10). Needs `ulimit -n` above N + 100."""
import os, selectors, socket, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import conftest
from pathlib import Path

# conftest runs target/release/corecast; CORECAST_BIN picks another build.
if os.environ.get("CORECAST_BIN"):
    conftest.BIN = Path(os.environ["CORECAST_BIN"]).resolve()

N, PREFILL, HOLD = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

srv = conftest.start_server(shards=2)
try:
    conftest.wait_live(srv)
    sel = selectors.DefaultSelector()
    got = {}
    eof = {}
    t0 = time.time()
    def join(i):
        s = socket.create_connection(("127.0.0.1", srv.api_port))
        s.sendall(b"GET /api/stream.mp4?src=demo HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        got[i] = 0
    def pump(until):
        while time.time() < until:
            for key, _ in sel.select(timeout=0.1):
                try:
                    b = key.fileobj.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not b:
                    eof[key.data] = time.time() - t0
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                else:
                    got[key.data] += len(b)
    join(0)
    pump(t0 + PREFILL)
    base = rss_kib(srv.proc.pid)
    for i in range(1, N + 1):
        join(i)
        if i % 50 == 0:
            pump(time.time() + 0.05)
    pump(time.time() + HOLD)
    after = rss_kib(srv.proc.pid)
    live = sum(1 for i in range(1, N + 1) if i not in eof and got[i] > 0)
    print(f"first viewer: {got[0]} bytes, EOF at {eof.get(0)} s after joining (run {time.time()-t0:.0f} s)")
    print(f"{N} viewers, {live} receiving; RSS {base} KiB -> {after} KiB: {(after-base)/max(live,1):.2f} KiB/viewer")
    print(f"bytes per viewer: min {min(got[i] for i in range(1,N+1))} max {max(got[i] for i in range(1,N+1))}")
finally:
    conftest.stop(srv.proc)
