"""Live media over HTTP, checked by what real decoders get: ffprobe/ffmpeg on stream.mp4,
stream.ts and stream.aac, decodable frame.mp4 / frame.jpeg, 200 concurrent MP4 viewers
served by one muxer, and headless Chromium playing stream.html through MSE."""
import json
import os
import re
import selectors
import socket
import subprocess
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
