"""Listeners in go2rtc's address forms: ":PORT" serves IPv6 and IPv4 (RTSP over TCP and
UDP, the HTTP API), "0.0.0.0:PORT" IPv4 only, "[::1]:PORT" IPv6 only; checked by what
ffmpeg decodes from rtsp://[::1]:PORT and what the API answers on http://[::1]:PORT."""
import json
import socket
import subprocess
import urllib.request

import pytest

from conftest import decoded_frames, ffmpeg_publish, ffmpeg_read, wait_live


def has_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this host")


def read_frames(url, transport):
    r = ffmpeg_read(url, transport=transport, duration=2)
    out, err = r.communicate(timeout=30)
    return decoded_frames(out), err


def refused(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def test_any_host_listens_on_ipv6_and_ipv4(server_factory):
    srv = server_factory(rtsp_host="", api_host="")
    wait_live(srv)
    for transport in ("tcp", "udp"):
        frames, err = read_frames(f"rtsp://[::1]:{srv.rtsp_port}/demo", transport)
        # The demo runs at 25 fps: 2 s decoded.
        assert frames >= 40, (transport, frames, err, srv.log())
    frames, err = read_frames(f"rtsp://127.0.0.1:{srv.rtsp_port}/demo", "udp")
    assert frames >= 40, (frames, err, srv.log())
    with urllib.request.urlopen(f"http://[::1]:{srv.api_port}/api/streams", timeout=10) as r:
        assert "demo" in json.load(r)
    # A snapshot over IPv6 too (a full request path, not only the accept).
    with urllib.request.urlopen(f"http://[::1]:{srv.api_port}/api/frame.jpeg?src=demo",
                                timeout=20) as r:
        assert r.read()[:2] == b"\xff\xd8"


def test_udp_publish_over_ipv4_to_any_host_read_over_ipv6(server_factory, clip):
    # IPv4 peers of the dual-stack sockets are ::ffff:a.b.c.d on both the RTSP connection
    # and the RTP port: the publisher's datagrams must still find its session.
    srv = server_factory(rtsp_host="", api_host="")
    pub = ffmpeg_publish(f"rtsp://127.0.0.1:{srv.rtsp_port}/cam", clip, transport="udp",
                         loop=True)
    try:
        wait_live(srv, "cam")
        frames, err = read_frames(f"rtsp://[::1]:{srv.rtsp_port}/cam", "udp")
        assert frames >= 20, (frames, err, srv.log())
        # Shown as go2rtc shows it, not as ::ffff:127.0.0.1.
        producer = srv.streams()["cam"]["producers"][0]
        assert producer["remote_addr"].startswith("127.0.0.1:"), producer
    finally:
        pub.kill()
        pub.wait()


def test_ipv4_only_and_ipv6_only_forms(server_factory):
    v4 = server_factory(rtsp_host="0.0.0.0")
    assert refused("::1", v4.rtsp_port)
    assert ffmpeg_ok(f"rtsp://127.0.0.1:{v4.rtsp_port}/demo")

    v6 = server_factory(rtsp_host="[::1]")
    assert refused("127.0.0.1", v6.rtsp_port)
    wait_live(v6)
    frames, err = read_frames(f"rtsp://[::1]:{v6.rtsp_port}/demo", "udp")
    assert frames >= 40, (frames, err, v6.log())


def ffmpeg_ok(url):
    out = subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries",
                          "stream=codec_name", "-of", "json", url],
                         capture_output=True, text=True, timeout=20)
    return out.returncode == 0 and json.loads(out.stdout)["streams"]
