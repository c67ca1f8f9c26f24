#!/usr/bin/env python3
"""Server memory per published stream, no viewers (BENCHMARKS.md, "Rings bounded by time
and bytes"): starts SERVER_BIN (2 shards, or $SHARDS), reads VmRSS, runs COUNT synthetic
RTSP/TCP publishers (`corecast-perf publish`, 25 fps, a keyframe every GOP frames), samples
VmRSS every second for SECONDS and prints the deltas. $EXTRA adds config lines ("\n");
$PUBUDP=1 publishes media over RTSP/UDP.

usage: ring_rss.py SERVER_BIN PERF_BIN COUNT BITRATE GOP SECONDS [PORT]"""
import os, subprocess, sys, time, tempfile, socket

server, perf, count, bitrate, gop, secs = sys.argv[1:7]
count, secs = int(count), int(secs)
port = int(sys.argv[7]) if len(sys.argv) > 7 else 47554

def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1])  # KiB

cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
cfg.write(f"""rtsp:
  listen: "127.0.0.1:{port}"
  rtp_port: {port + 100 if port % 2 == 0 else port + 101}
api:
  listen: "127.0.0.1:{port + 1}"
shards: {os.environ.get("SHARDS", "2")}
log:
  level: warn
""" + os.environ.get("EXTRA", "").replace("\\n", "\n"))
cfg.close()
log = open(f"/tmp/server-{port}.log", "w")
srv = subprocess.Popen([server, "-c", cfg.name], stdout=log, stderr=log)
try:
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(1)
    base = rss(srv.pid)
    pub = subprocess.Popen([perf, "publish", "--url", f"rtsp://127.0.0.1:{port}/cam",
                            "--count", str(count), "--duration", str(secs + 30),
                            "--bitrate", bitrate, "--gop", gop, "--fps", "25"] + (["--udp"] if os.environ.get("PUBUDP") else []),
                           stdout=subprocess.DEVNULL, stderr=open(f"/tmp/pub-{port}.log", "w"))
    samples = []
    t0 = time.time()
    while time.time() - t0 < secs:
        time.sleep(1)
        samples.append(rss(srv.pid))
        if pub.poll() is not None:
            print("publisher exited", pub.returncode, file=sys.stderr)
            break
    pub.terminate(); pub.wait()
    tail = samples[-5:]
    print(f"count={count} bitrate={bitrate} gop={gop} base_kib={base} "
          f"end_kib={samples[-1]} max_kib={max(samples)} "
          f"delta_mib={(samples[-1]-base)/1024:.2f} max_delta_mib={(max(samples)-base)/1024:.2f} "
          f"per_stream_kib={(samples[-1]-base)/count:.0f} samples={samples}")
finally:
    srv.terminate()
    srv.wait()
