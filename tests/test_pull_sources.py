"""Pull sources end to end: corecast pulls from a real RTSP server of another project
(gst-rtsp-server, tests/gst_rtsp_server.py) and from programs it runs (`exec:`, `ffmpeg:`),
and real readers (ffmpeg, ffprobe) decode what it serves. Also codec filters on read URLs
and the RTSP server's own auth.

Everything is on loopback; every subprocess has a timeout.
"""
import re
import subprocess
import time
from pathlib import Path

from conftest import (decoded_frames, ffmpeg_read, ffprobe_streams, tcp_connections)

FPS = 25  # gst_rtsp_server.py's video track


def decode_errors(stderr):
    return [l for l in stderr.splitlines() if l.strip()]


def out_time_secs(progress_text):
    """Last `out_time_us=` in ffmpeg -progress output, in seconds (media time written)."""
    vals = re.findall(r"^out_time_us=(\d+)", progress_text, re.M)
    return int(vals[-1]) / 1e6 if vals else 0.0


def codecs(streams):
    return sorted((s["codec_type"], s["codec_name"]) for s in streams)


def full_log(srv):
    try:
        return Path(srv.log_path).read_text()
    except OSError:
        return ""


def stream_error(srv, name):
    return (srv.streams().get(name) or {}).get("error")


def poll(fn, timeout, step=0.1):
    """fn() until it returns something truthy or the time is up; returns the last value."""
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() >= deadline:
            return v
        time.sleep(step)


def ffprobe_raw(url, transport="tcp", timeout=20):
    return subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", transport, "-show_entries",
         "stream=codec_name,codec_type", "-of", "json", url],
        capture_output=True, text=True, timeout=timeout,
    )


def assert_realtime_decode(reader, srv, gst=None, duration=6, timeout=40):
    """The reader decoded >= 95% of the video frames for the media time it wrote (it joins at
    a keyframe; gst's key-int-max=25 loses at most 1 s of the start), without errors."""
    out, err = reader.communicate(timeout=timeout)
    frames = decoded_frames(out)
    secs = out_time_secs(out)
    ctx = (f"decoded {frames} frames over {secs:.2f}s; ffmpeg stderr: {err[-1500:]}\n"
           f"server log:\n{srv.log()}" + (f"\ngst log:\n{gst.log()}" if gst else ""))
    print(f"decoded {frames} frames over {secs:.2f}s of media")
    assert secs >= duration - 1, ctx
    assert frames >= 0.95 * FPS * (duration - 1), ctx
    assert frames >= 0.95 * FPS * secs, ctx
    assert decode_errors(err) == [], ctx


def test_pull_tcp_with_digest_auth(server_factory, gst_server, procs):
    gst = gst_server(tracks="video", user="user", password="pass", protocols="tcp")
    srv = server_factory(f"streams:\n  cam: {gst.url('user', 'pass')}\n")
    reader = ffmpeg_read(srv.url("cam"), duration=6)
    procs.append(reader)
    assert_realtime_decode(reader, srv, gst)
    s = srv.streams()["cam"]
    assert s.get("online") and s["producers"][0]["medias"], s
    assert "error" not in s, s


def test_pull_udp_with_digest_auth(server_factory, gst_server, procs):
    # The upstream offers UDP only, so a TCP fallback would get 461 and fail.
    gst = gst_server(tracks="video", user="user", password="pass", protocols="udp")
    srv = server_factory(f"streams:\n  cam: {gst.url('user', 'pass')}#transport=udp\n")
    reader = ffmpeg_read(srv.url("cam"), duration=6)
    procs.append(reader)
    assert_realtime_decode(reader, srv, gst)


def test_upstream_restart_reconnects(server_factory, gst_server, procs):
    gst = gst_server(tracks="video")
    srv = server_factory(f"streams:\n  cam: {gst.url()}\n")
    # A reader that stays attached through the outage keeps the source wanted.
    first = ffmpeg_read(srv.url("cam"))
    procs.append(first)
    srv.wait_producer("cam", timeout=10)
    time.sleep(2)
    assert stream_error(srv, "cam") is None, srv.streams()

    gst.stop()
    err = poll(lambda: stream_error(srv, "cam"), timeout=10)
    assert err, f"no error in /api/streams while upstream is down: {srv.streams()}\n{srv.log()}"
    time.sleep(1.5)
    assert srv.alive(), f"server died while upstream was down: {srv.proc.returncode}\n{srv.log()}"

    gst.start()
    # Reconnect (capped backoff: the next attempt is at most a few seconds away).
    t_up = time.time()
    cleared = poll(lambda: stream_error(srv, "cam") is None, timeout=15, step=0.2)
    print(f"error while down: {err!r}; reconnected {time.time() - t_up:.2f}s after restart")
    assert cleared, f"still failing after upstream restart: {srv.streams()}\n{srv.log()}"
    reader = ffmpeg_read(srv.url("cam"), duration=4)
    procs.append(reader)
    out, rerr = reader.communicate(timeout=30)
    frames = decoded_frames(out)
    assert frames >= 60, f"decoded {frames} after restart; {rerr[-1500:]}\n{srv.log()}"
    assert decode_errors(rerr) == [], rerr[-1500:]


def test_on_demand_connects_and_idles_out(server_factory, gst_server, procs):
    gst = gst_server(tracks="video")
    srv = server_factory(f"streams:\n  cam: {gst.url()}\nsources:\n  idle_timeout: 2\n")
    # No consumer: no connection to the upstream, ever.
    deadline = time.time() + 2
    while time.time() < deadline:
        assert tcp_connections(gst.port) == [], "connected to the source with no reader"
        time.sleep(0.2)

    t0 = time.time()
    reader = ffmpeg_read(srv.url("cam"), duration=4)
    procs.append(reader)
    conns = poll(lambda: tcp_connections(gst.port), timeout=5, step=0.05)
    appeared = time.time() - t0
    assert conns, f"no connection to the source after the first reader\n{srv.log()}"
    # ~1 s, plus starting an ffmpeg process on a loaded 2-core machine.
    assert appeared <= 1.5, f"connection appeared {appeared:.2f}s after the reader started"

    out, err = reader.communicate(timeout=30)
    t_exit = time.time()
    assert decoded_frames(out) >= 60, err[-1500:]
    gone = poll(lambda: tcp_connections(gst.port) == [], timeout=2 + 2 + 1, step=0.1)
    closed_after = time.time() - t_exit
    print(f"connection after {appeared:.2f}s; closed {closed_after:.2f}s after the reader left")
    assert gone, f"still connected {closed_after:.1f}s after the last reader left\n{srv.log()}"
    assert closed_after <= 2 + 2, f"closed {closed_after:.1f}s after the last reader (idle_timeout 2)"


def test_codec_filters(server_factory, gst_server):
    gst = gst_server(tracks="video,pcma,aac")
    srv = server_factory(f"streams:\n  cam: {gst.url()}\n")
    try:
        default = codecs(ffprobe_streams(srv.url("cam")))
        video = codecs(ffprobe_streams(srv.url("cam", "?video")))
        audio_all = codecs(ffprobe_streams(srv.url("cam", "?audio=all")))
        mp4 = codecs(ffprobe_streams(srv.url("cam", "?mp4")))
    except AssertionError as e:
        raise AssertionError(f"{e}\n{srv.log()}") from None
    assert default == [("audio", "pcm_alaw"), ("video", "h264")], default
    assert video == [("video", "h264")], video
    assert audio_all == [("audio", "aac"), ("audio", "pcm_alaw")], audio_all
    assert mp4 == [("audio", "aac"), ("video", "h264")], mp4


EXEC_TS = ("exec:ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=25 "
           "-f lavfi -i sine=sample_rate=48000 -c:v libx264 -preset ultrafast -g 25 -bf 0 "
           "-c:a aac -f mpegts -")


def test_exec_mpegts_stdout(server_factory, procs):
    srv = server_factory(f"streams:\n  ts: {EXEC_TS}\n")
    reader = ffmpeg_read(srv.url("ts"), duration=6)
    procs.append(reader)
    out, err = reader.communicate(timeout=40)
    frames = decoded_frames(out)
    assert frames >= 100, f"decoded {frames}; {err[-1500:]}\n{srv.log()}"
    assert decode_errors(err) == [], err[-1500:]


def test_exec_publishes_to_output(server_factory, procs, clip):
    cmd = (f"exec:ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i {clip} "
           "-c copy -f rtsp {output}")
    srv = server_factory(f"streams:\n  pub: {cmd}\n")
    reader = ffmpeg_read(srv.url("pub"), duration=6)
    procs.append(reader)
    out, err = reader.communicate(timeout=40)
    frames = decoded_frames(out)
    assert frames >= 100, f"decoded {frames}; {err[-1500:]}\n{srv.log()}"
    assert decode_errors(err) == [], err[-1500:]


def test_ffmpeg_source_transcodes_file(server_factory, procs, clip):
    srv = server_factory(f"streams:\n  tr: ffmpeg:{clip}#video=h264\n")
    reader = ffmpeg_read(srv.url("tr"), duration=6)
    procs.append(reader)
    out, err = reader.communicate(timeout=40)
    frames = decoded_frames(out)
    assert frames >= 100, f"decoded {frames}; {err[-1500:]}\n{srv.log()}"
    assert decode_errors(err) == [], err[-1500:]
    # No audio asked for: the transcoder runs with -an.
    streams = codecs(ffprobe_streams(srv.url("tr")))
    assert streams == [("video", "h264")], streams


BAD_PASSWORD = "Wr0ngPa55"


def test_wrong_upstream_password(server_factory, gst_server, procs):
    gst = gst_server(tracks="video", user="user", password="pass")
    # idle_timeout keeps the failing source retrying through the observation window after
    # the reader that started it has given up.
    srv = server_factory(f"streams:\n  bad: {gst.url('user', BAD_PASSWORD)}\n"
                         "sources:\n  idle_timeout: 30\n")
    probe = subprocess.Popen(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", srv.url("bad")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(probe)
    err = poll(lambda: stream_error(srv, "bad"), timeout=5)
    assert err, f"no error in /api/streams: {srv.streams()}\n{srv.log()}"
    assert "401" in err or "credential" in err.lower(), err
    assert BAD_PASSWORD not in err, f"the password leaks into the API: {err}"
    probe.communicate(timeout=25)
    assert probe.returncode != 0, "a reader got a stream from a source that cannot log in"

    log = full_log(srv)
    failed = [l for l in log.splitlines() if "source failed" in l]
    assert failed and any("401" in l or "credential" in l.lower() for l in failed), log[-3000:]
    assert BAD_PASSWORD not in log, "the password leaks into the log"

    # Bounded retry rate: backoff, not a tight loop.
    before = len(failed)
    time.sleep(10)
    after = len([l for l in full_log(srv).splitlines() if "source failed" in l])
    assert after - before <= 10, f"{after - before} failed attempts in 10 s\n{srv.log()}"
    assert srv.alive(), srv.log()
    assert "bad" in srv.api("/api/streams")
    assert stream_error(srv, "bad"), "the error must stay visible while the source fails"


def test_rtsp_server_auth(server_factory):
    srv = server_factory(rtsp_extra={"username": "admin", "password": "secret",
                                     "local_auth": True})
    anon = ffprobe_raw(srv.url("demo"))
    assert anon.returncode != 0 and "401" in anon.stderr, (anon.returncode, anon.stderr)
    wrong = ffprobe_raw(f"rtsp://admin:nope@127.0.0.1:{srv.rtsp_port}/demo")
    assert wrong.returncode != 0 and "401" in wrong.stderr, (wrong.returncode, wrong.stderr)
    ok = codecs(ffprobe_streams(f"rtsp://admin:secret@127.0.0.1:{srv.rtsp_port}/demo"))
    assert ok == [("audio", "aac"), ("video", "h264")], ok

    # Default: loopback is exempt (go2rtc), no credentials needed from 127.0.0.1.
    srv2 = server_factory(rtsp_extra={"username": "admin", "password": "secret"})
    exempt = codecs(ffprobe_streams(srv2.url("demo")))
    assert exempt == [("audio", "aac"), ("video", "h264")], exempt


def test_several_sources_offer_their_tracks_together(server_factory, procs):
    """go2rtc's list of sources: later ones are dialled only when a reader wants what the
    first lacks, and their tracks are offered with the first one's."""
    srv = server_factory(
        "streams:\n"
        "  mix:\n"
        "    - rtsp://127.0.0.1:{port}/demo?video\n"
        "    - rtsp://127.0.0.1:{port}/demo?audio\n"
        "  tx:\n"
        "    - rtsp://127.0.0.1:{port}/demo?video\n"
        "    - ffmpeg:demo#audio=opus\n",
        format_ports=True,
    )
    # Only video wanted: the second source is not dialled.
    kinds = sorted(s["codec_name"] for s in ffprobe_streams(srv.url("mix", "?video")))
    assert kinds == ["h264"]
    producers = srv.streams()["mix"]["producers"]
    # One connected; the second source is listed by URL only (go2rtc's shape).
    assert [p for p in producers if "medias" in p][0]["url"].endswith("/demo?video"), producers
    idle = [p for p in producers if "medias" not in p]
    assert idle and all(set(p) == {"url"} and p["url"] in srv.streams()["mix"]["sources"] for p in idle), producers
    # Default (video + audio): the audio comes from the second source.
    kinds = sorted(s["codec_name"] for s in ffprobe_streams(srv.url("mix")))
    assert kinds == ["aac", "h264"], kinds
    # An ffmpeg: transcoding source adds opus on demand.
    url = srv.url("tx", "?video&audio=opus")
    kinds = sorted(s["codec_name"] for s in ffprobe_streams(url))
    assert kinds == ["h264", "opus"], kinds
    reader = ffmpeg_read(url, duration=4)
    procs.append(reader)
    # The ffmpeg: source publishes to a helper stream of the engine's (`tx~1`, readable
    # over RTSP while it runs): never listed.
    helper_up = poll(lambda: ffprobe_raw(srv.url("tx~1")).returncode == 0, timeout=10)
    assert helper_up, srv.log()
    assert sorted(srv.streams()) == ["demo", "mix", "tx"], sorted(srv.streams())
    out, err = reader.communicate(timeout=30)
    assert decoded_frames(out) >= 80, err


def test_rtsp_over_tls(server_factory, gst_server, procs, tmp_path):
    """rtspx:// (TLS, certificate not checked: go2rtc's scheme for self-signed cameras)
    plays; rtsps:// refuses the self-signed certificate and says so in the API."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=60)
    pem = tmp_path / "tls.pem"
    pem.write_text(cert.read_text() + key.read_text())
    g = gst_server(tls_pem=pem)
    port = g.port
    srv = server_factory(f"streams:\n  sx: rtspx://127.0.0.1:{port}/test\n"
                         f"  ss: rtsps://127.0.0.1:{port}/test\n")
    reader = ffmpeg_read(srv.url("sx"), duration=4)
    procs.append(reader)
    out, err = reader.communicate(timeout=30)
    assert decoded_frames(out) >= 0.9 * 100, err
    subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", srv.url("ss")],
                   capture_output=True, timeout=30)
    deadline = time.time() + 10
    error = None
    while time.time() < deadline and not error:
        error = srv.streams()["ss"].get("error")
        time.sleep(0.2)
    assert error and "certificate" in error, error


def test_eight_udp_cameras_at_once(server_factory, gst_server, procs):
    """Eight cameras pulled over UDP at the same time: each pair of RTP/RTCP ports is the
    server's alone (bound without SO_REUSEPORT), so no camera's datagrams land on another's
    socket, and every reader decodes its camera at full rate for 20 s."""
    n, duration = 8, 20
    gsts = [gst_server(tracks="video", protocols="udp") for _ in range(n)]
    streams = "".join(f"  cam{i}: {g.url()}#transport=udp\n" for i, g in enumerate(gsts))
    srv = server_factory(f"streams:\n{streams}")
    readers = []
    for i in range(n):
        r = ffmpeg_read(srv.url(f"cam{i}"), duration=duration)
        procs.append(r)
        readers.append(r)
    for i, r in enumerate(readers):
        assert_realtime_decode(r, srv, gsts[i], duration=duration, timeout=90)
    # Every pull has its own local port pair.
    ports = set()
    for i in range(n):
        s = srv.streams()[f"cam{i}"]
        assert s.get("online"), s
    out = subprocess.run(["ss", "-Huanp"], capture_output=True, text=True, timeout=5).stdout
    # The WebRTC port is bound by every shard (SO_REUSEPORT by design): not a pull's.
    mine = [l for l in out.splitlines() if f"pid={srv.proc.pid}," in l
            and not l.split()[3].endswith(f":{srv.webrtc_port}")]
    for l in mine:
        ports.add(l.split()[3])
    assert len(mine) == len(ports), mine
