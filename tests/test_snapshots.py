"""frame.jpeg as go2rtc answers it (Home Assistant's snapshots): width/height/w/h scaling,
rotate, cache=, and many concurrent requests, checked by what ffprobe decodes."""
import json
import re
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from conftest import wait_live

MJPEG_SOURCE = ("streams:\n  mj: exec:ffmpeg -hide_banner -loglevel error -re -f lavfi"
                " -i testsrc=size=320x240:rate=10"
                " -pix_fmt yuvj420p -c:v mjpeg -huffman default -q:v 5 -f mjpeg -\n")


def get(srv, query, timeout=20):
    url = f"http://127.0.0.1:{srv.api_port}/api/frame.jpeg?{query}"
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
        return r.read()


def size(jpeg, tmp_path, name="f.jpeg"):
    """(width, height) as ffprobe decodes the picture; it must decode cleanly."""
    f = tmp_path / name
    f.write_bytes(jpeg)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(f)],
                         capture_output=True, text=True, timeout=20)
    s = json.loads(out.stdout)["streams"][0]
    assert s["codec_name"] == "mjpeg", s
    dec = subprocess.run(["ffmpeg", "-v", "error", "-i", str(f), "-f", "null", "-"],
                         capture_output=True, text=True, timeout=20)
    assert dec.returncode == 0 and not dec.stderr, dec.stderr
    return s["width"], s["height"]


def metric(srv, name):
    url = f"http://127.0.0.1:{srv.api_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return int(re.search(rf"^{name} (\d+)$", text, re.M).group(1))


def test_scale_and_rotate(server_factory, tmp_path):
    srv = server_factory(MJPEG_SOURCE)
    wait_live(srv)
    # The demo is 640x360.
    assert size(get(srv, "src=demo"), tmp_path) == (640, 360)
    assert size(get(srv, "src=demo&width=320"), tmp_path) == (320, 180)
    w, h = size(get(srv, "src=demo&h=120"), tmp_path)
    assert h == 120 and abs(w - 213) <= 1, (w, h)
    assert size(get(srv, "src=demo&w=200&height=100"), tmp_path) == (200, 100)
    assert size(get(srv, "src=demo&rotate=90"), tmp_path) == (360, 640)
    assert size(get(srv, "src=demo&rotate=-90&width=320&hw=vaapi"), tmp_path) == (180, 320)
    assert size(get(srv, "src=demo&rotate=180"), tmp_path) == (640, 360)
    # A JPEG track's picture (320x240) is transcoded only when it must change.
    assert size(get(srv, "src=mj"), tmp_path) == (320, 240)
    assert size(get(srv, "src=mj&width=160"), tmp_path) == (160, 120)
    assert size(get(srv, "src=mj&rotate=270"), tmp_path) == (240, 320)
    # A bad value is named.
    try:
        get(srv, "src=demo&rotate=45")
        raise AssertionError("expected 400")
    except urllib.error.HTTPError as e:
        assert e.code == 400 and b"rotate=45" in e.read()


def test_20_concurrent_snapshots_all_succeed(server_factory, tmp_path):
    srv = server_factory()
    wait_live(srv)
    n = 20
    with ThreadPoolExecutor(n) as pool:
        jpegs = list(pool.map(lambda i: get(srv, f"src=demo&width={320 + 2 * i}", 30), range(n)))
    for i, j in enumerate(jpegs):
        w, h = size(j, tmp_path, f"c{i}.jpeg")
        assert w == 320 + 2 * i and abs(h - w * 9 / 16) <= 1, (i, w, h)


def test_cache_answers_without_a_new_transcode(server_factory, tmp_path):
    srv = server_factory()
    wait_live(srv)
    before = metric(srv, "corecast_snapshot_transcodes_total")
    first = get(srv, "src=demo&cache=5s&width=320")
    assert size(first, tmp_path) == (320, 180)
    assert metric(srv, "corecast_snapshot_transcodes_total") == before + 1
    # Within 5 s: the same picture, from the cache (the demo moves on meanwhile).
    for _ in range(3):
        assert get(srv, "src=demo&cache=5s&width=320") == first
    assert metric(srv, "corecast_snapshot_transcodes_total") == before + 1
    assert metric(srv, "corecast_snapshot_cache_hits_total") == 3
    # Other options are another picture; without cache= it is transcoded again.
    assert size(get(srv, "src=demo&cache=5s&width=160"), tmp_path) == (160, 90)
    get(srv, "src=demo&width=320")
    assert metric(srv, "corecast_snapshot_transcodes_total") == before + 3
    # Older than the cache asks for: a new transcode.
    get(srv, "src=demo&cache=1ns&width=320")
    assert metric(srv, "corecast_snapshot_transcodes_total") == before + 4
