"""HTTP API: go2rtc's endpoints and JSON shapes (what Frigate and Home Assistant's go2rtc
client read), config round trips, auth, CORS, base_path, keep-alive, the WebSocket
protocol, metrics, and malformed input. Every check talks to the real binary over TCP."""
import base64
import http.client
import json
import os
import re
import socket
import struct
import time
import urllib.error
import urllib.request

import pytest

from conftest import start_server, stop, wait_for


def req(srv, method, path, body=None, headers=None, port=None):
    c = http.client.HTTPConnection("127.0.0.1", port or srv.api_port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


# --- minimal WebSocket client (RFC 6455), enough to speak go2rtc's protocol ---

class WS:
    def __init__(self, port, path):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(4096)
            assert chunk, "server closed during the handshake"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.head = head.decode()

    def send(self, opcode, payload, mask=True, fin=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr = bytes([b0, mbit | n])
        elif n < 65536:
            hdr = bytes([b0, mbit | 126]) + struct.pack(">H", n)
        else:
            hdr = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
        if mask:
            m = os.urandom(4)
            payload = bytes(b ^ m[i % 4] for i, b in enumerate(payload))
            hdr += m
        self.s.sendall(hdr + payload)

    def send_json(self, obj):
        self.send(1, json.dumps(obj).encode())

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk

    def recv(self):
        """(opcode, payload) of the next frame."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4)
            n = struct.unpack(">H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack(">Q", self.buf[2:10])[0]
            off = 10
        assert not b1 & 0x80, "server frames must not be masked"
        self._need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, payload

    def recv_text(self):
        while True:
            op, p = self.recv()
            if op == 1:
                return json.loads(p)
            assert op in (2, 9, 10), f"unexpected opcode {op}"

    def close(self):
        self.s.close()


@pytest.fixture
def srv(server_factory):
    return server_factory(api_extra={"origin": "*"})


def test_api_info_schemes_and_streams_shapes(srv):
    status, headers, body = req(srv, "GET", "/api")
    assert status == 200 and headers["content-type"].startswith("application/json")
    info = json.loads(body)
    # Home Assistant's client: 1.9.13 <= version < 2.0.0.
    assert info["version"] == "1.9.14"
    assert re.match(r"^\d+\.\d+\.\d+$", info["corecast_version"])
    assert info["config_path"].endswith("corecast.yaml")
    assert info["host"] == f"127.0.0.1:{srv.api_port}"
    assert info["rtsp"]["listen"] == f":{srv.rtsp_port}"
    assert "default_query" in info["rtsp"]
    assert headers["access-control-allow-origin"] == "*"

    status, _, body = req(srv, "GET", "/api/schemes")
    schemes = json.loads(body)
    assert status == 200 and isinstance(schemes, list) and "rtsp" in schemes and "ffmpeg" in schemes

    streams = wait_for(lambda: (s := srv.streams()).get("demo", {}).get("online") and s)
    demo = streams["demo"]
    prod = demo["producers"][0]
    # What go2rtc clients read from a producer.
    for key in ("url", "remote_addr", "medias", "bytes_recv"):
        assert key in prod, key
    assert any("H264" in m for m in prod["medias"])
    assert {c["codec_name"] for c in prod["codecs"]} >= {"h264"}
    status, _, body = req(srv, "GET", "/api/streams?src=demo")
    assert status == 200 and json.loads(body)["producers"][0]["url"] == prod["url"]
    assert req(srv, "GET", "/api/streams?src=nope")[0] == 404

    # CORS preflight.
    status, headers, _ = req(srv, "OPTIONS", "/api/streams")
    assert status == 204 and "PUT" in headers["access-control-allow-methods"]


def test_streams_crud_and_config_round_trip(srv):
    cfg = srv.workdir / "corecast.yaml"
    st, _, _ = req(srv, "PUT", "/api/streams?name=cam1&src=rtsp://127.0.0.1:9/a")
    assert st == 200
    s = srv.streams()
    assert s["cam1"]["sources"] == ["rtsp://127.0.0.1:9/a"]
    assert "cam1" in cfg.read_text() and "rtsp://127.0.0.1:9/a" in cfg.read_text()
    # Several sources (go2rtc takes repeated src=).
    st, _, _ = req(srv, "PUT", "/api/streams?name=cam2&src=rtsp://127.0.0.1:9/b&src=ffmpeg:cam2%23audio=aac")
    assert st == 200 and srv.streams()["cam2"]["sources"] == ["rtsp://127.0.0.1:9/b", "ffmpeg:cam2#audio=aac"]
    # PATCH replaces the source in memory.
    st, _, _ = req(srv, "PATCH", "/api/streams?name=cam1&src=rtsp://127.0.0.1:9/c")
    assert st == 200 and srv.streams()["cam1"]["sources"] == ["rtsp://127.0.0.1:9/c"]
    # Refused: unsupported scheme, missing parameters, bad name.
    assert req(srv, "PUT", "/api/streams?name=x&src=gopher://h/")[0] == 400
    assert req(srv, "PUT", "/api/streams?name=x")[0] == 400
    assert req(srv, "PUT", "/api/streams?name=a%20b&src=rtsp://h/")[0] == 400
    # DELETE removes it from memory and from the file.
    assert req(srv, "DELETE", "/api/streams?src=cam1")[0] == 200
    assert "cam1" not in srv.streams() and "cam1" not in cfg.read_text()
    assert req(srv, "DELETE", "/api/streams?src=cam1")[0] == 404

    # /api/config: GET returns the file; POST replaces it (validated); PATCH merges.
    st, headers, body = req(srv, "GET", "/api/config")
    assert st == 200 and "yaml" in headers["content-type"] and b"cam2" in body
    original = body.decode()
    new = original + "\nlog:\n  level: debug\n"
    assert req(srv, "POST", "/api/config", body=new.encode())[0] == 200
    assert req(srv, "GET", "/api/config")[2].decode() == new
    # Invalid config: 400 naming the key and the line, file unchanged.
    bad = new + "sources:\n  idle_timeout: soon\n"
    st, _, body = req(srv, "POST", "/api/config", body=bad.encode())
    assert st == 400 and b"idle_timeout" in body and b"line" in body, body
    assert cfg.read_text() == new
    st, _, body = req(srv, "PATCH", "/api/config", body=b"streams:\n  cam9: rtsp://127.0.0.1:9/z\n")
    assert st == 200, body
    text = cfg.read_text()
    assert "cam9" in text and "cam2" in text and "debug" in text
    # The file still starts a server (the same parser validates it).
    assert req(srv, "PATCH", "/api/config", body=b": : :\n")[0] == 400


def test_preload_keeps_a_source_connected(server_factory, gst_server):
    cam = gst_server(tracks="video")
    srv = server_factory(f"streams:\n  cam: {cam.url()}\n")
    # Not connected: go2rtc lists the configured source as a producer with only its URL.
    assert srv.streams()["cam"]["producers"] == [{"url": cam.url()}]
    assert srv.streams()["cam"]["online"] is False
    assert req(srv, "GET", "/api/preload")[2] == b"{}"
    # go2rtc's answers: 500 for an unknown stream, the query re-encoded as url.Values does.
    assert req(srv, "PUT", "/api/preload?src=nope")[0] == 500
    assert req(srv, "PUT", "/api/preload?src=cam&video")[0] == 200
    assert json.loads(req(srv, "GET", "/api/preload")[2])["cam"]["query"] == "video="
    # Connected with no viewer at all.
    assert wait_for(lambda: srv.streams()["cam"]["online"]), srv.log()
    assert srv.streams()["cam"]["producers"][0]["url"] == cam.url()
    assert srv.streams()["cam"]["consumers"] is None
    assert req(srv, "DELETE", "/api/preload?src=cam")[0] == 200
    assert req(srv, "DELETE", "/api/preload?src=cam")[0] == 500
    # Without preload and viewers the source stops after the idle timeout.
    assert wait_for(lambda: not srv.streams()["cam"]["online"], timeout=20), srv.log()


def test_basic_auth_base_path_and_keep_alive(server_factory):
    srv = server_factory(api_extra={"username": "admin", "password": "s3cret",
                                    "local_auth": True, "base_path": "/cc"},
                         wait=False)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            if req(srv, "GET", "/cc/api")[0] == 401:
                break
        except OSError:
            time.sleep(0.1)
    st, headers, _ = req(srv, "GET", "/cc/api")
    assert st == 401 and headers["www-authenticate"].startswith("Basic")
    good = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()}
    assert req(srv, "GET", "/cc/api", headers=bad)[0] == 401
    assert req(srv, "GET", "/cc/api", headers=good)[0] == 200
    assert req(srv, "GET", "/api", headers=good)[0] == 404
    st, headers, body = req(srv, "GET", "/cc/", headers=good)
    assert st == 200 and b"<html" in body.lower()

    # Keep-alive: several requests over one connection.
    c = http.client.HTTPConnection("127.0.0.1", srv.api_port, timeout=5)
    socks = set()
    for _ in range(5):
        c.request("GET", "/cc/api/streams", headers=good)
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["demo"]
        socks.add(id(c.sock))
    assert len(socks) == 1
    c.close()


def test_api_listen_empty_disables_http(server_factory):
    srv = server_factory(api_listen="", wait=False)
    # RTSP answers, HTTP never does.
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", srv.rtsp_port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    assert srv.alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.api_port), timeout=1).close()


def raw(port, data, read_all=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if not read_all:
                break
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return out


def test_malformed_http_gets_errors_not_crashes(srv):
    p = srv.api_port
    assert raw(p, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(p, b"GET /api HTTP/9.9\r\n\r\n")[:12] in (b"HTTP/1.1 505", b"HTTP/1.1 400")
    huge = b"GET /api HTTP/1.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n"
    assert raw(p, huge).startswith(b"HTTP/1.1 431")
    many = b"GET /api HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n"
    assert raw(p, many).startswith(b"HTTP/1.1 431")
    assert raw(p, b"POST /api/config HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n").startswith(b"HTTP/1.1 413")
    assert raw(p, b"POST /api/config HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").startswith(b"HTTP/1.1 501")
    assert raw(p, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414")
    # Random bytes.
    raw(p, os.urandom(5000))

    # WebSocket: an unmasked client frame is a protocol error (close 1002).
    ws = WS(p, "/api/ws?src=demo")
    assert ws.head.startswith("HTTP/1.1 101")
    ws.send(1, b'{"type":"mse"}', mask=False)
    op, payload = ws.recv()
    assert op == 8 and struct.unpack(">H", payload[:2])[0] == 1002
    ws.close()
    # Reserved bits set.
    ws = WS(p, "/api/ws?src=demo")
    ws.s.sendall(bytes([0xC1, 0x80]) + os.urandom(4))
    op, payload = ws.recv()
    assert op == 8 and struct.unpack(">H", payload[:2])[0] == 1002
    ws.close()
    # A frame announcing 2^62 bytes.
    ws = WS(p, "/api/ws?src=demo")
    ws.s.sendall(bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 62) + os.urandom(4))
    op, payload = ws.recv()
    assert op == 8 and struct.unpack(">H", payload[:2])[0] in (1002, 1009)
    ws.close()
    # Still serving.
    assert req(srv, "GET", "/api")[0] == 200 and srv.alive()


def test_websocket_protocol_mse_and_errors(srv):
    wait_for(lambda: srv.streams()["demo"].get("online"))
    ws = WS(srv.api_port, "/api/ws?src=demo")
    # Unknown message types get an error message; the socket stays usable.
    ws.send_json({"type": "webrtc/offer", "value": "v=0"})
    msg = ws.recv_text()
    assert msg["type"] == "error" and msg["value"].startswith("webrtc/offer: "), msg
    # Ping gets a pong with the same payload.
    ws.send(9, b"hi")
    op, payload = ws.recv()
    assert op == 10 and payload == b"hi"
    # A fragmented text message (two frames).
    part = json.dumps({"type": "mse", "value": "avc1.640029,avc1.64002A,mp4a.40.2"}).encode()
    ws.send(1, part[:10], fin=False)
    ws.send(0, part[10:])
    msg = ws.recv_text()
    # go2rtc's answer: the MIME type for addSourceBuffer.
    assert msg["type"] == "mse" and msg["value"].startswith('video/mp4; codecs="avc1.'), msg
    assert "mp4a.40.2" in msg["value"]
    op, init = ws.recv()
    assert op == 2 and init[4:8] == b"ftyp" and b"moov" in init
    got = 0
    boxes = set()
    deadline = time.time() + 10
    while got < 200_000 and time.time() < deadline:
        op, data = ws.recv()
        assert op == 2
        boxes.add(data[4:8])
        got += len(data)
    assert got >= 200_000 and b"moof" in boxes
    ws.send(8, struct.pack(">H", 1000))
    ws.close()


def test_metrics_prometheus_text(srv):
    wait_for(lambda: srv.streams()["demo"].get("online"))
    st, headers, body = req(srv, "GET", "/metrics")
    assert st == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    for family in ("corecast_stream_inbound_bytes_total", "corecast_stream_inbound_packets_total",
                   "corecast_stream_viewers", "corecast_stream_outbound_bytes_total",
                   "corecast_stream_skipped_total", "corecast_connections",
                   "corecast_shard_streams_owned", "corecast_shard_viewers",
                   "corecast_shard_cross_shard_packets_total", "corecast_shard_loop_utilization"):
        assert f"# TYPE {family} " in text, family
    m = re.search(r'^corecast_stream_inbound_packets_total\{stream="demo"\} (\d+)$', text, re.M)
    assert m and int(m.group(1)) > 0
    assert re.search(r'^corecast_connections\{protocol="http"\} [1-9]', text, re.M)
    # Every sample line parses as Prometheus text.
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r'^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$', line), line
