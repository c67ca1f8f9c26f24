"""Live media over HTTP, checked by what real decoders get: ffprobe/ffmpeg on stream.mp4,
stream.ts and stream.aac, decodable frame.mp4 / frame.jpeg, 200 concurrent MP4 viewers
served by one muxer, and headless Chromium playing stream.html through MSE."""
import json
import os
import re
import selectors
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import CHROMIUM, ARTIFACTS, chromium_page, decoded_frames, ffmpeg_publish, wait_live


def probe(url):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,codec_type,width,height",
         "-of", "json", url], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["streams"]


def decode(url, seconds):
    """ffmpeg decodes `seconds` of the stream; returns (video frames, stderr)."""
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-i", url,
         "-t", str(seconds), "-map", "0", "-f", "null", "-progress", "pipe:1", "-"],
        capture_output=True, text=True, timeout=60)
    return decoded_frames(out.stdout), out.stderr


@pytest.mark.parametrize("ext", ["mp4", "ts"])
def test_stream_probes_and_decodes(server_factory, ext):
    srv = server_factory()
    wait_live(srv)
    url = f"http://127.0.0.1:{srv.api_port}/api/stream.{ext}?src=demo"
    kinds = {(s["codec_type"], s["codec_name"]) for s in probe(url)}
    assert ("video", "h264") in kinds and ("audio", "aac") in kinds, kinds
    frames, err = decode(url, 5)
    # The demo is 25 fps: 5 s is 125 frames; at least 95 % must decode.
    assert frames >= 119, (frames, err, srv.log())


def test_stream_aac(server_factory):
    srv = server_factory()
    wait_live(srv)
    url = f"http://127.0.0.1:{srv.api_port}/api/stream.aac?src=demo"
    kinds = [(s["codec_type"], s["codec_name"]) for s in probe(url)]
    assert kinds == [("audio", "aac")], kinds
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-i", url, "-t", "3",
         "-f", "null", "-progress", "pipe:1", "-"], capture_output=True, text=True, timeout=30)
    # Audio-only progress has no frame count; the decoded duration says enough.
    m = re.findall(r"^out_time_us=(\d+)", out.stdout, re.M)
    assert m and int(m[-1]) >= 2_800_000, out.stdout[-500:] + out.stderr


def test_frames_of_a_video_only_stream(server_factory, clip, procs, tmp_path):
    srv = server_factory()
    # A publisher with H.264 only (no audio).
    pub = ffmpeg_publish(srv.url("cam"), clip, loop=True, extra=["-an"])
    procs.append(pub)
    wait_live(srv, "cam")
    base = f"http://127.0.0.1:{srv.api_port}/api"
    with urllib.request.urlopen(f"{base}/frame.mp4?src=cam", timeout=20) as r:
        assert r.headers["Content-Type"] == "video/mp4"
        mp4 = r.read()
    f = tmp_path / "frame.mp4"
    f.write_bytes(mp4)
    streams = probe(str(f))
    assert [(s["codec_name"], s["width"], s["height"]) for s in streams] == [("h264", 320, 240)]
    frames, err = decode(str(f), 10)
    assert frames == 1, err

    with urllib.request.urlopen(f"{base}/frame.jpeg?src=cam", timeout=20) as r:
        assert r.headers["Content-Type"] == "image/jpeg"
        jpeg = r.read()
    assert jpeg[:2] == b"\xff\xd8"
    j = tmp_path / "frame.jpeg"
    j.write_bytes(jpeg)
    s = probe(str(j))
    assert s[0]["codec_name"] == "mjpeg" and (s[0]["width"], s[0]["height"]) == (320, 240)
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(j), "-f", "null", "-"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and not out.stderr, out.stderr

    # Unknown stream: 404 with a reason.
    try:
        urllib.request.urlopen(f"{base}/frame.jpeg?src=nope", timeout=10)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404


def metric(text, name, labels):
    m = re.search(rf'^{name}\{{{re.escape(labels)}\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def test_200_mp4_viewers_share_one_muxer(server_factory):
    srv = server_factory()
    wait_live(srv)
    n = 200
    sel = selectors.DefaultSelector()
    got = {}
    req = f"GET /api/stream.mp4?src=demo HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", srv.api_port), timeout=10)
            s.sendall(req)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
            socks.append(s)
            got[i] = b""
        # Each viewer must get the init segment and media fragments.
        deadline = time.time() + 30
        while time.time() < deadline and min(len(v) for v in got.values()) < 300_000:
            for key, _ in sel.select(timeout=1):
                try:
                    data = key.fileobj.recv(1 << 16)
                except BlockingIOError:
                    continue
                if data:
                    # Keep only the beginning (headers + init) and a byte count.
                    prev = got[key.data]
                    got[key.data] = prev + data if len(prev) < 4096 else prev[:4096] + b"x" * (len(prev) - 4096 + len(data))
        text = urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}/metrics", timeout=10).read().decode()
        viewers = metric(text, "corecast_stream_viewers", 'stream="demo"')
        muxers = metric(text, "corecast_stream_muxers", 'stream="demo",format="mp4"')
        shard_muxers = sum(float(v) for v in re.findall(r'^corecast_shard_muxers\{[^}]*\} (\S+)$', text, re.M))
    finally:
        for s in socks:
            s.close()
    short = [i for i, v in got.items() if len(v) < 300_000]
    assert not short, f"{len(short)} viewers got < 300 kB: {[len(got[i]) for i in short[:5]]}"
    for v in got.values():
        head, _, body = v.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"video/mp4" in head
        assert b"ftyp" in body[:64]
    assert viewers >= n, text
    assert muxers == 1 and shard_muxers == 1, text
    # All 200 left: the muxer stops by itself (about 3 s after the last viewer).
    def muxers_now():
        t = urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}/metrics", timeout=10).read().decode()
        return sum(float(v) for v in re.findall(r'^corecast_shard_muxers\{[^}]*\} (\S+)$', t, re.M))
    deadline = time.time() + 15
    while muxers_now() > 0 and time.time() < deadline:
        time.sleep(0.2)
    assert muxers_now() == 0, "the muxer kept running without viewers"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (tests/run.sh installs it)")
def test_chromium_plays_stream_html_with_mse(server_factory, tmp_path):
    srv = server_factory()
    wait_live(srv)
    url = f"http://127.0.0.1:{srv.api_port}/stream.html?src=demo&mode=mse"
    with chromium_page(srv.api_port + 3) as cdp:
        cdp.call("Page.navigate", url=url)
        probe_js = """JSON.stringify((() => { const v = document.getElementById('video');
            const q = v && v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
            const p = window.corecastPlayer || {};
            return {t: v ? v.currentTime : -1, frames: q ? q.totalVideoFrames : -1,
                    err: p.error || (v && v.error ? 'media error ' + v.error.code : null),
                    state: p.state || null, bytes: p.bytes || 0}; })())"""
        # Wait for playback to start, then measure over 5 s.
        start = None
        deadline = time.time() + 20
        while time.time() < deadline:
            s = json.loads(cdp.eval(probe_js) or "{}")
            if s.get("t", 0) > 0.2:
                start = s
                break
            time.sleep(0.25)
        assert start, f"never started playing: {s}\n{srv.log()}"
        time.sleep(5)
        end = json.loads(cdp.eval(probe_js))
        shot = cdp.call("Page.captureScreenshot", format="png")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        import base64
        (ARTIFACTS / "stream_html_chromium.png").write_bytes(base64.b64decode(shot["data"]))
        assert end["err"] is None, end
        assert end["t"] - start["t"] >= 3.0, (start, end)
        assert end["frames"] > start["frames"] >= 0, (start, end)
        assert end["state"] == "playing", end


def test_mjpeg_stream_and_snapshot_from_a_jpeg_track(server_factory, tmp_path):
    # An exec source writing MJPEG to stdout becomes an RTP/JPEG track.
    srv = server_factory(
        "streams:\n  mj: exec:ffmpeg -hide_banner -loglevel error -re -f lavfi"
        " -i testsrc=size=320x240:rate=10"
        " -pix_fmt yuvj420p -c:v mjpeg -huffman default -q:v 5 -f mjpeg -\n")
    base = f"http://127.0.0.1:{srv.api_port}/api"
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-f", "mpjpeg",
         "-i", f"{base}/stream.mjpeg?src=mj", "-t", "3", "-f", "null", "-progress", "pipe:1", "-"],
        capture_output=True, text=True, timeout=60)
    frames = decoded_frames(out.stdout)
    # 10 fps for 3 s.
    assert frames >= 28, (frames, out.stderr, srv.log())
    with urllib.request.urlopen(f"{base}/frame.jpeg?src=mj", timeout=20) as r:
        jpeg = r.read()
    j = tmp_path / "mj.jpeg"
    j.write_bytes(jpeg)
    s = probe(str(j))
    assert s[0]["codec_name"] == "mjpeg" and (s[0]["width"], s[0]["height"]) == (320, 240)
    # No H.264/AAC here: stream.mp4 says why.
    try:
        urllib.request.urlopen(f"{base}/stream.mp4?src=mj", timeout=20)
        raise AssertionError("expected 415")
    except urllib.error.HTTPError as e:
        assert e.code == 415 and b"H.264" in e.read()


def _dechunk(body):
    """The data of an HTTP/1.1 chunked body (a trailing partial chunk is dropped); raises
    on a malformed chunk line, which is what a reordered or lost byte would make."""
    out, i = bytearray(), 0
    while True:
        j = body.find(b"\r\n", i)
        if j < 0:
            return bytes(out)
        size = int(body[i:j], 16)
        if size == 0 or j + 2 + size + 2 > len(body):
            return bytes(out)
        assert body[j + 2 + size:j + 4 + size] == b"\r\n", f"chunk at {i} not followed by CRLF"
        out += body[j + 2:j + 2 + size]
        i = j + 4 + size


def _read_until(sock, done, deadline_s, data=b"", arrivals=None):
    """Reads until `done(data)` holds or the deadline passes (the caller asserts);
    appends the monotonic time of each read that returned data to `arrivals`."""
    data = bytearray(data)
    sock.settimeout(0.5)
    end = time.monotonic() + deadline_s
    while not done(data) and time.monotonic() < end:
        try:
            b = sock.recv(1 << 16)
        except socket.timeout:
            continue
        if not b:
            break
        if arrivals is not None:
            arrivals.append(time.monotonic())
        data += b
    return bytes(data)


def _read_ws_until(ws, nbytes, deadline_s, arrivals=None):
    """Binary WebSocket frames until `nbytes` or the deadline; appends the monotonic time
    of each frame to `arrivals`."""
    import websocket
    data = bytearray()
    ws.settimeout(0.5)
    end = time.monotonic() + deadline_s
    while len(data) < nbytes and time.monotonic() < end:
        try:
            op, frame = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        if op == websocket.ABNF.OPCODE_BINARY:
            if arrivals is not None:
                arrivals.append(time.monotonic())
            data += frame
    return bytes(data)


def _bursts(arrivals):
    """Start times of bursts: reads less than 25 ms apart belong to one write (or its
    pieces); written per 25 fps frame, bursts are 40 ms apart."""
    return [t for i, t in enumerate(arrivals) if i == 0 or t - arrivals[i - 1] > 0.025]


def _decode_file(path):
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-i", str(path),
         "-map", "0", "-f", "null", "-progress", "pipe:1", "-"],
        capture_output=True, text=True, timeout=60)
    return decoded_frames(out.stdout), out.stderr


def test_stalled_mp4_and_mse_viewers_get_a_valid_stream(server_factory, procs, tmp_path):
    """Viewers with a 4 KiB receive buffer that stop reading for 2 s of a ~35 Mbit/s
    stream: the server's writes to them fill the socket (its send buffer grows to at most
    4 MiB; inline writes spill what did not fit, the viewer's task sends it), and what they
    read afterwards is still an intact fMP4 stream that ffmpeg decodes without an error,
    while a normal viewer of the same stream plays on."""
    import websocket
    hi = tmp_path / "hi.mp4"
    # Noise does not compress: ~35 Mbit/s, a keyframe a second, no B-frames.
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc2=size=640x360:rate=25", "-vf", "noise=alls=40:allf=t", "-t", "4",
         "-c:v", "libx264", "-preset", "ultrafast", "-crf", "16", "-g", "25", "-bf", "0",
         "-pix_fmt", "yuv420p", str(hi)], check=True, timeout=60)
    srv = server_factory()
    procs.append(ffmpeg_publish(srv.url("hi"), hi, loop=True))
    wait_live(srv, "hi")
    small = ((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
    mp4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    mp4.setsockopt(*small[0])
    mp4.connect(("127.0.0.1", srv.api_port))
    mp4.sendall(b"GET /api/stream.mp4?src=hi HTTP/1.1\r\nHost: x\r\n\r\n")
    ws = websocket.create_connection(f"ws://127.0.0.1:{srv.api_port}/api/ws?src=hi",
                                     timeout=10, sockopt=small)
    ws.send(json.dumps({"type": "mse", "value": "avc1.42C01E,avc1.640029,mp4a.40.2"}))
    assert json.loads(ws.recv())["type"] == "mse"
    # A viewer that reads all along, to compare with.
    normal = socket.create_connection(("127.0.0.1", srv.api_port), timeout=10)
    normal.sendall(b"GET /api/stream.mp4?src=hi HTTP/1.1\r\nHost: x\r\n\r\n")
    head = _read_until(mp4, lambda d: b"\r\n\r\n" in d, 10)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    # The stall (the scenario itself, not a wait): for 2 s nothing is read from `mp4` and
    # `ws` while `normal` reads.
    normal_data = _read_until(normal, lambda d: False, 2.0)
    # Then all three read on, each until it has ~2.5 s of the stream (~11 MB at 35 Mbit/s;
    # a frame is ~175 KB) or a deadline, in parallel so that `normal` never stalls.
    MB = 1 << 20
    out = {}

    def read(name, fn):
        try:
            out[name] = fn()
        except Exception as e:  # a broken stream shows up here (e.g. a bad WebSocket frame)
            out[name] = e

    readers = [
        threading.Thread(target=read, args=("mp4", lambda: _read_until(
            mp4, lambda d: len(d) > 12 * MB, 20, head))),
        threading.Thread(target=read, args=("ws", lambda: _read_ws_until(ws, 6 * MB, 20))),
        threading.Thread(target=read, args=("normal", lambda: _read_until(
            normal, lambda d: len(d) > 20 * MB, 20, normal_data))),
    ]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    failed = {k: v for k, v in out.items() if isinstance(v, Exception)}
    assert not failed, failed
    body, frames_ws, normal_data = out["mp4"], out["ws"], out["normal"]
    for s in (mp4, normal):
        s.close()
    ws.close()
    results = {}
    for label, raw in (("mp4", body), ("normal", normal_data)):
        f = tmp_path / f"{label}.mp4"
        f.write_bytes(_dechunk(raw.partition(b"\r\n\r\n")[2]))
        results[label] = _decode_file(f)
    f = tmp_path / "mse.mp4"
    f.write_bytes(bytes(frames_ws))
    results["mse"] = _decode_file(f)
    for label, (frames, err) in results.items():
        assert not err.strip(), (label, err[-2000:])
    # ~175 KB a frame: 20 MB is ~115 frames, 12 MB ~70, 6 MB ~35.
    assert results["normal"][0] >= 90, results
    assert results["mp4"][0] >= 40, results
    assert results["mse"][0] >= 20, results


def test_mux_interval_writes_mp4_viewers_once_per_interval(server_factory, tmp_path):
    """`fanout: mux_interval_ms: 200`: a stream.mp4 viewer of the 25 fps demo gets its
    data in bursts about 200 ms apart (not one per 40 ms frame), and what it got decodes
    to every frame of the time it read."""
    srv = server_factory("fanout:\n  mux_interval_ms: 200\n")
    wait_live(srv)
    s = socket.create_connection(("127.0.0.1", srv.api_port), timeout=10)
    s.sendall(b"GET /api/stream.mp4?src=demo HTTP/1.1\r\nHost: x\r\n\r\n")
    head = _read_until(s, lambda d: b"\r\n\r\n" in d, 10)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    arrivals = []
    # Four seconds of the stream (nothing ends the read earlier but the server closing).
    body = _read_until(s, lambda d: False, 4, head.split(b"\r\n\r\n", 1)[1], arrivals)
    s.close()
    starts = _bursts(arrivals)
    gaps = sorted(b - a for a, b in zip(starts, starts[1:]))
    assert len(starts) >= 10, (len(starts), srv.log())
    # 4 s at 25 fps would be ~100 bursts written per frame; per 200 ms it is ~20.
    assert len(starts) <= 26 and gaps[len(gaps) // 2] >= 0.15, (len(starts), gaps)
    f = tmp_path / "interval.mp4"
    f.write_bytes(_dechunk(body))
    frames, err = _decode_file(f)
    # ~4 s of 25 fps after the first (keyframe) burst: at least 90 frames decode cleanly.
    assert frames >= 90 and not err, (frames, err)


def test_progressive_mp4_is_paced_while_mse_goes_per_frame(server_factory, tmp_path):
    """Defaults: a stream.mp4 viewer of the 25 fps demo is written about every 80 ms
    (`fanout: progressive_interval_ms`), an MSE viewer of the same stream at the same time
    once per frame (its own muxer, so two run); both decode every frame they got."""
    import websocket
    srv = server_factory()
    wait_live(srv)
    mp4 = socket.create_connection(("127.0.0.1", srv.api_port), timeout=10)
    mp4.sendall(b"GET /api/stream.mp4?src=demo HTTP/1.1\r\nHost: x\r\n\r\n")
    ws = websocket.create_connection(f"ws://127.0.0.1:{srv.api_port}/api/ws?src=demo",
                                     timeout=10)
    ws.send(json.dumps({"type": "mse", "value": "avc1.640029,avc1.42E01E,mp4a.40.2"}))
    assert json.loads(ws.recv())["type"] == "mse"
    head = _read_until(mp4, lambda d: b"\r\n\r\n" in d, 10)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    out = {}

    def read_mp4():
        arrivals = []
        body = _read_until(mp4, lambda d: False, 3, head.split(b"\r\n\r\n", 1)[1], arrivals)
        out["mp4"] = (body, arrivals)

    def read_ws():
        arrivals = []
        # Three seconds of the stream (no byte count ends it earlier).
        out["mse"] = (_read_ws_until(ws, float("inf"), 3, arrivals), arrivals)

    readers = [threading.Thread(target=read_mp4), threading.Thread(target=read_ws)]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    text = urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}/metrics", timeout=10).read().decode()
    mp4.close()
    ws.close()
    assert metric(text, "corecast_stream_muxers", 'stream="demo",format="mp4"') == 2, text
    gaps = {}
    for label, (_, arrivals) in out.items():
        starts = _bursts(arrivals)
        g = sorted(b - a for a, b in zip(starts, starts[1:]))
        assert len(g) >= 10, (label, len(starts), srv.log())
        gaps[label] = g[len(g) // 2]
    # Per frame: 40 ms; per 80 ms interval: 80 ms (two frames a write).
    assert gaps["mse"] < 0.055 and gaps["mp4"] >= 0.065, gaps
    body, _ = out["mp4"]
    f = tmp_path / "paced.mp4"
    f.write_bytes(_dechunk(body))
    frames, err = _decode_file(f)
    # ~3 s of 25 fps after the first (keyframe) burst.
    assert frames >= 65 and not err.strip(), (frames, err)
    f = tmp_path / "mse.mp4"
    f.write_bytes(out["mse"][0])
    frames, err = _decode_file(f)
    assert frames >= 65 and not err.strip(), (frames, err)
