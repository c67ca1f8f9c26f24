"""Audio for HTTP and WebSocket viewers, checked by what real decoders got: headless
Chromium plays a G.711 (PCMA) camera through MSE as FLAC and an Opus publisher as Opus,
with audio decoded; a browser without FLAC gets AAC from the stream's later ffmpeg: source;
ffprobe/ffmpeg read stream.mp4's `mp4=flac` audio, and `filename=` makes a download."""
import json
import subprocess
import time
import urllib.request

import pytest

from conftest import CHROMIUM, chromium_page, ffmpeg_publish, wait_for

def audio_of(path):
    """(codecs by kind, audio samples ffmpeg decoded, its stderr) of a file."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name,sample_rate",
         "-of", "json", str(path)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    kinds = {s["codec_type"]: s["codec_name"] for s in json.loads(out.stdout)["streams"]}
    # CRCs checked: a FLAC frame with a bad header or footer CRC is reported as a mismatch.
    # (No `explode`: a late joiner's first picture may lack the first slices of a
    # multi-slice keyframe, which the H.264 decoder conceals.)
    dec = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-err_detect", "crccheck", "-i", str(path),
         "-map", "0:a:0", "-af", "volumedetect", "-f", "null", "-"],
        capture_output=True, text=True, timeout=30)
    assert dec.returncode == 0, dec.stderr[-2000:]
    assert "crc" not in dec.stderr.lower(), dec.stderr[-2000:]
    samples = [int(l.split("n_samples:")[1]) for l in dec.stderr.splitlines() if "n_samples:" in l]
    return kinds, (samples[0] if samples else 0), dec.stderr


PROBE_JS = """JSON.stringify((() => { const v = document.getElementById('video');
    const p = window.corecastPlayer || {};
    return {t: v ? v.currentTime : -1, audio: v ? (v.webkitAudioDecodedByteCount || 0) : -1,
            codecs: p.codecs || null, state: p.state || null,
            err: p.error || (v && v.error ? 'media error ' + v.error.code : null)}; })())"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (tests/run.sh installs it)")
def test_chromium_plays_pcma_as_flac_and_opus(server_factory, gst_server, clip, procs):
    cam = gst_server(tracks="video,pcma")
    srv = server_factory(f"streams:\n  pcma: {cam.url()}\n  op:\n")
    # An Opus publisher (the clip's AAC transcoded).
    procs.append(ffmpeg_publish(srv.url("op"), clip, loop=True,
                                extra=["-c:a", "libopus", "-b:a", "48k"]))
    srv.wait_producer("op")
    with chromium_page(srv.api_port + 3) as cdp:
        for name, codec in [("pcma", "flac"), ("op", "opus")]:
            cdp.call("Page.navigate", url=f"http://127.0.0.1:{srv.api_port}/stream.html?src={name}&mode=mse")
            # Playing, with audio bytes through Chromium's audio decoder.
            state = {}

            def sounding():
                state.update(json.loads(cdp.eval(PROBE_JS) or "{}"))
                return state.get("t", 0) > 1.0 and state.get("audio", 0) > 0
            assert wait_for(sounding, timeout=20, step=0.25), f"{name}: {state}\n{srv.log()}"
            assert state["err"] is None and state["state"] == "playing", state
            assert f",{codec}" in state["codecs"], state


def test_pcma_camera_over_http_flac_aac_fallback_and_filename(server_factory, gst_server, tmp_path):
    cam = gst_server(tracks="video,pcma")
    srv = server_factory(
        f"streams:\n  pcma: {cam.url()}\n"
        f"  fb:\n    - {cam.url()}\n    - ffmpeg:fb#audio=aac\n")
    base = f"http://127.0.0.1:{srv.api_port}/api"

    # go2rtc's `mp4=flac`: G.711 re-encoded as FLAC; `filename=` makes it a download.
    url = f"{base}/stream.mp4?src=pcma&mp4=flac&duration=3&filename=door%20cam.mp4"
    with urllib.request.urlopen(url, timeout=20) as r:
        assert r.headers["Content-Disposition"] == 'attachment; filename="door cam.mp4"'
        assert r.headers["Content-Type"].startswith('video/mp4; codecs="avc1.'), r.headers
        assert r.headers["Content-Type"].endswith(',flac"'), r.headers
        (tmp_path / "flac.mp4").write_bytes(r.read())
    kinds, samples, err = audio_of(tmp_path / "flac.mp4")
    assert kinds == {"video": "h264", "audio": "flac"}, kinds
    assert samples >= 8000, err  # over a second of 8 kHz audio
    # go2rtc's default is H.264/H.265 + AAC only: the PCMA camera gives video alone.
    with urllib.request.urlopen(f"{base}/stream.mp4?src=pcma&duration=1", timeout=20) as r:
        codecs = r.headers["Content-Type"].split('codecs="')[1]
        assert codecs.startswith("avc1.") and "," not in codecs, r.headers
        assert "Content-Disposition" not in r.headers

    # A browser without FLAC or Opus: the stream's later ffmpeg: source is dialled and the
    # browser gets AAC.
    import websocket  # websocket-client
    ws = websocket.create_connection(f"ws://127.0.0.1:{srv.api_port}/api/ws?src=fb", timeout=20)
    try:
        ws.send(json.dumps({"type": "mse", "value": "avc1.640029,avc1.64002A,mp4a.40.2"}))
        msg = json.loads(ws.recv())
        assert msg["type"] == "mse", msg
        assert msg["value"].startswith('video/mp4; codecs="avc1.') and ',mp4a.40.2"' in msg["value"], msg
        data = b""
        deadline = time.time() + 15
        while len(data) < 600_000 and time.time() < deadline:
            frame = ws.recv()
            assert isinstance(frame, bytes), frame
            data += frame
    finally:
        ws.close()
    (tmp_path / "mse.mp4").write_bytes(data)
    kinds, samples, err = audio_of(tmp_path / "mse.mp4")
    assert kinds == {"video": "h264", "audio": "aac"}, kinds
    assert samples > 0, err
