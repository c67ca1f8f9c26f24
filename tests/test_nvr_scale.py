"""NVR scale (issue #10): a real publisher (ffmpeg `-re -c copy`, H.264 + AAC, packet by
packet) and 300 RTSP/TCP viewers. Every viewer's frame count is checked against the frames
the publisher sent in the same window, and an ffmpeg reader decodes the stream meanwhile.

The viewers are `corecast-perf swarm --publisher ffmpeg` attached to a server this test
starts: the harness runs the ffmpeg publisher, counts RTP marker bits (frames) and sequence
gaps per viewer, and reads the publisher's own frame count from its `-progress` output."""
import json
import subprocess

from conftest import ROOT, decoded_frames, ffmpeg_read, stop, wait_for

PERF = ROOT / "target" / "release" / "corecast-perf"
VIEWERS = 300
WINDOW_S = 5
FPS = 25


def test_real_publisher_300_viewers_every_viewer_gets_its_frames(server_factory, procs, tmp_path):
    srv = server_factory()
    swarm = subprocess.Popen(
        [str(PERF), "swarm", "--server-pid", str(srv.proc.pid),
         "--rtsp", f"127.0.0.1:{srv.rtsp_port}", "--api", f"127.0.0.1:{srv.api_port}",
         "--publisher", "ffmpeg", "--bitrate", "500k", "--fps", str(FPS), "--gop", str(FPS),
         "--clip-size", "320x240", "--clip-secs", "10",
         "--viewers", str(VIEWERS), "--ramp-secs", "1", "--warmup", "1",
         "--duration", str(WINDOW_S), "--per-viewer", "--json-only",
         "--stream-prefix", "nvr", "--log-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    procs.append(swarm)
    # The harness's ffmpeg publisher is up: decode alongside the 300 viewers.
    assert wait_for(lambda: (srv.streams().get("nvr0") or {}).get("online")
                    or swarm.poll() is not None, timeout=60), srv.log()
    assert swarm.poll() is None, swarm.communicate()[1][-3000:]
    reader = ffmpeg_read(srv.url("nvr0"), duration=4)
    procs.append(reader)
    progress, err = reader.communicate(timeout=30)
    out, serr = swarm.communicate(timeout=90)
    assert swarm.returncode == 0, serr[-3000:]
    r = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])

    assert r["publisher_kind"] == "ffmpeg" and r["publisher"]["publishers"] == 1, r["publisher"]
    assert r["connect_failures"] == 0, r["failure_reasons"]
    assert r["viewers_playing"] == VIEWERS
    sent = r["publisher_frames_per_stream"]
    # The publisher really ran at the clip's rate during the window.
    assert sent >= 0.8 * FPS * r["window_s"], (sent, r["window_s"])
    per_viewer = r["per_viewer"]
    assert len(per_viewer) == VIEWERS, len(per_viewer)
    short = [v for v in per_viewer if v["frames"] < 0.9 * sent]
    assert not short, (sent, short[:5], len(short))
    assert all(v["frames"] > 0 for v in per_viewer)
    assert r["viewers_below_90pct_frames"] == 0
    # The reader decoded (not just received) the video at full rate for its 4 s.
    assert reader.returncode == 0, err[-2000:]
    assert decoded_frames(progress) >= 0.9 * 4 * FPS, progress[-500:]
    stop(srv.proc)


CLIP = ["--bitrate", "500k", "--fps", str(FPS), "--gop", str(FPS),
        "--clip-size", "320x240", "--clip-secs", "10"]


def _json(out):
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def test_nvr_pulled_cameras(tmp_path):
    """`corecast-perf nvr`: corecast pulls 10 cameras from the harness's camera farm (the
    floor fed by ffmpeg) on demand, 2 consumers each; every consumer gets the frames."""
    out = subprocess.run(
        [str(PERF), "nvr", "--camera-kind", "pull", "--cameras", "10", "--consumers", "2",
         "--farm-sources", "2", "--peers", "corecast", "--server-bin", str(ROOT / "target" / "release" / "corecast"),
         "--warmup", "1", "--duration", "3", "--json-only", "--log-dir", str(tmp_path)] + CLIP,
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    c = _json(out.stdout)
    assert c["kind"] == "nvr" and c["publisher_kind"] == "ffmpeg" and not c["errors"], c["errors"]
    r = c["runs"][0]
    assert r["viewers_playing"] == 20 and r["connect_failures"] == 0, r["failure_reasons"]
    # The server agrees: 20 consumers of 10 pulled streams.
    assert r["server_api"]["consumers"] == 20
    assert r["publisher_frames_per_stream"] >= 0.8 * FPS * r["window_s"], r["publisher"]
    assert r["viewers_below_90pct_frames"] == 0, (r["per_viewer_frames_min"], r["publisher_frames_per_stream"])
    assert r["per_viewer_lost_max"] == 0
    assert r["rss_per_stream_kib"] > 0


def test_stream_mp4_viewers(tmp_path):
    """`--transport http-mp4`: 20 stream.mp4 viewers of a real publisher each receive at
    least 90 % of the video frames sent (samples of the video track's fragments)."""
    out = subprocess.run(
        [str(PERF), "swarm", "--publisher", "ffmpeg", "--transport", "http-mp4",
         "--viewers", "20", "--server-bin", str(ROOT / "target" / "release" / "corecast"),
         "--warmup", "1", "--duration", "3", "--json-only", "--log-dir", str(tmp_path)] + CLIP,
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = _json(out.stdout)
    assert r["transport"] == "http-mp4"
    assert r["viewers_playing"] == 20 and r["connect_failures"] == 0, r["failure_reasons"]
    assert r["server_api"]["consumers"] == 20
    assert r["per_viewer_frames_min"] >= 0.9 * r["publisher_frames_per_stream"], r
    assert r["delivered_mbps"] > 0.5 * 20 * 0.5, r["delivered_mbps"]
