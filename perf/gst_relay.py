#!/usr/bin/python3
"""gst-rtsp-server relay for corecast-perf's `compare`.

Serves each stream NAME at rtsp://127.0.0.1:PORT/NAME as a *shared* media whose source is
plain RTP on UDP (udpsrc on UDP_BASE + 2*i, the i-th name). The RTP packets are served
as they arrive (the udpsrc itself is the `pay0` element: no depayload/repayload), so the
viewers receive the same bytes as from corecast, including the synthetic send timestamps.

Run with the system python (python3-gi, gir1.2-gst-rtsp-server-1.0):
    /usr/bin/python3 perf/gst_relay.py --port 8555 --udp-base 30000 --streams perf0,perf1
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--udp-base", type=int, required=True)
    ap.add_argument("--streams", required=True, help="comma-separated stream names")
    ap.add_argument("--encoding", default="H264")
    ap.add_argument("--buffer-size", type=int, default=4 * 1024 * 1024)
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.set_backlog(1024)
    mounts = server.get_mount_points()
    names = [n for n in args.streams.split(",") if n]
    for i, name in enumerate(names):
        port = args.udp_base + 2 * i
        caps = (
            "application/x-rtp,media=video,clock-rate=90000,"
            f"encoding-name={args.encoding},payload=96"
        )
        launch = (
            f'( udpsrc name=pay0 address=127.0.0.1 port={port} '
            f'buffer-size={args.buffer_size} caps="{caps}" )'
        )
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        # Keep the shared media running between viewers (no re-prepare per client).
        factory.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)
        factory.set_latency(0)
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print("gst_relay: cannot bind", args.port, file=sys.stderr)
        sys.exit(1)
    loop = GLib.MainLoop()

    def stop(*_):
        loop.quit()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Periodically let Python see signals.
    GLib.timeout_add(200, lambda: True)
    print(f"gst_relay: {len(names)} streams on rtsp://127.0.0.1:{args.port}/", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
