"""go2rtc compatibility of `ffmpeg:` sources and read filters, checked with real readers:
Frigate's `?video=copy&audio=aac`, repeated `#audio=` outputs, MP3 and PCM audio, a later
`ffmpeg:` source reading its own stream, MJPEG, `#hardware` on a machine without an accelerator,
`/api/ffmpeg/hardware`, and a stream written as a mapping.

All streams read the built-in `demo` stream (H.264 + AAC); one server serves every test.
"""
import json
import subprocess
import time
import urllib.request

import pytest

from conftest import start_server, stop

CONFIG = """streams:
  two_audio: ffmpeg:demo#video=copy#audio=copy#audio=opus
  mp3: ffmpeg:demo#audio=mp3
  pcm: ffmpeg:demo#audio=pcm
  mjpeg: ffmpeg:demo#video=mjpeg
  hw: ffmpeg:demo#video=h264#hardware
  selfref: [rtsp://127.0.0.1:{port}/demo, ffmpeg:selfref#audio=opus]
  mapped:
    url: rtsp://127.0.0.1:{port}/demo
"""


@pytest.fixture(scope="module")
def srv():
    s = start_server(CONFIG, format_ports=True)
    yield s
    stop(s.proc)


def probe(url, timeout=20):
    """(codec_type, codec_name) of every stream ffprobe finds at `url`."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries",
         "stream=codec_name,codec_type", "-of", "json", url],
        capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return sorted((s["codec_type"], s["codec_name"]) for s in json.loads(out.stdout)["streams"])


def decode(url, seconds=1, timeout=30):
    """Decodes `seconds` of every stream at `url`; returns ffmpeg's -progress output."""
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-v", "error", "-rtsp_transport", "tcp",
         "-i", url, "-t", str(seconds), "-map", "0", "-f", "null", "-progress", "pipe:1", "-"],
        capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr[-1500:]
    return out.stdout


def test_frigate_copy_filter_keeps_video(srv):
    # Frigate's record/detect input: `copy` means any codec of that kind (go2rtc).
    assert probe(srv.url("demo", "?video=copy&audio=aac")) == [
        ("audio", "aac"), ("video", "h264")]
    assert probe(srv.url("demo", "?video=&audio=copy")) == [("audio", "aac"), ("video", "h264")]


def test_repeated_audio_gives_two_tracks(srv):
    streams = probe(srv.url("two_audio", "?video&audio=all"))
    assert streams == [("audio", "aac"), ("audio", "opus"), ("video", "h264")], srv.log()


def test_later_ffmpeg_source_reads_its_own_stream(srv):
    # go2rtc's idiom (Frigate's docs): the camera, plus opus transcoded from it on demand.
    assert probe(srv.url("selfref", "?video&audio=opus")) == [
        ("audio", "opus"), ("video", "h264")], srv.log()


def test_stream_as_mapping_reads_url(srv):
    assert probe(srv.url("mapped")) == [("audio", "aac"), ("video", "h264")], srv.log()


@pytest.mark.parametrize("name,kind,codec", [
    ("mp3", "audio", "mp3"), ("pcm", "audio", "pcm_s16be"), ("mjpeg", "video", "mjpeg")])
def test_mp3_pcm_and_mjpeg_decode(srv, name, kind, codec):
    assert probe(srv.url(name, f"?{kind}")) == [(kind, codec)], srv.log()
    progress = decode(srv.url(name, f"?{kind}"))
    assert "out_time_us=" in progress and "progress=end" in progress, progress


def test_hardware_without_accelerator_plays_in_software(srv):
    progress = decode(srv.url("hw", "?video"))
    frames = [int(l.split("=")[1]) for l in progress.splitlines() if l.startswith("frame=")]
    assert frames and frames[-1] > 0, progress
    deadline = time.time() + 10
    log = ""
    while time.time() < deadline:
        log = open(srv.log_path).read()
        if "#hardware: no accelerator works for h264" in log:
            break
        time.sleep(0.1)
    lines = [l for l in log.splitlines() if "#hardware: no accelerator works" in l]
    assert lines, log[-3000:]
    assert "stream hw" in lines[0] and "vaapi:" in lines[0] and "using software" in lines[0]


def test_api_ffmpeg_hardware_answers_go2rtc_shape(srv):
    url = f"http://127.0.0.1:{srv.api_port}/api/ffmpeg/hardware"
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        body = json.loads(r.read())
    assert set(body) == {"sources"}, body
    assert body["sources"], body
    for s in body["sources"]:
        assert set(s) == {"name", "url"}, s
        assert s["url"].startswith("ffmpeg:...#video=") and "#hardware=" in s["url"], s
        assert s["name"], s
    urls = [s["url"] for s in body["sources"]]
    assert "ffmpeg:...#video=h264#hardware=vaapi" in urls or \
        "ffmpeg:...#video=h264#hardware=v4l2m2m" in urls, urls
