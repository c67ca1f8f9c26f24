"""Viewers survive a new producer: a publisher that is killed and replaced, and an `exec:`
source whose program restarts, keep their RTSP, stream.mp4 and MSE (WebSocket) viewers
attached; each keeps decoding (its frame count grows, no decode error) from the new
producer's first keyframe. Without a new producer the viewers end (test_rtsp_relay's
test_publisher_killed_then_replaced, after `fanout: resume_ms`)."""
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import websocket

from conftest import decoded_frames, ffmpeg_publish


class Progress:
    """An ffmpeg decoding `url` to null; its `-progress` frame count read as it goes."""

    def __init__(self, url, extra_in=None):
        cmd = ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error"] + (extra_in or []) + [
            "-i", url, "-map", "0:v", "-f", "null", "-progress", "pipe:1", "-"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.frames = 0
        self.err = ""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            m = re.match(r"frame=(\d+)", line)
            if m:
                self.frames = int(m.group(1))

    def _read_err(self):
        for line in self.proc.stderr:
            self.err += line

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class MseViewer:
    """go2rtc's WebSocket protocol: `mse` request, then binary fMP4 kept in memory."""

    def __init__(self, srv, name):
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{srv.api_port}/api/ws?src={name}", timeout=10)
        self.ws.send(json.dumps({"type": "mse", "value": "avc1.640029,avc1.64002A,mp4a.40.2"}))
        first = json.loads(self.ws.recv())
        assert first["type"] == "mse", first
        self.data = bytearray()
        self.messages = 0
        self.closed = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while True:
                op, payload = self.ws.recv_data()
                if op == websocket.ABNF.OPCODE_BINARY:
                    self.data += payload
                    self.messages += 1
                elif op == websocket.ABNF.OPCODE_TEXT:
                    self.closed = payload.decode()
                    return
                elif op == websocket.ABNF.OPCODE_CLOSE:
                    self.closed = "close"
                    return
        except Exception as e:  # the socket closed under us at the end of the test
            self.closed = self.closed or repr(e)

    def decoded_frames(self, tmp_path):
        path = tmp_path / "mse.mp4"
        path.write_bytes(bytes(self.data))
        out = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error",
                              "-i", str(path), "-map", "0:v", "-f", "null", "-progress",
                              "pipe:1", "-"], capture_output=True, text=True, timeout=60)
        return decoded_frames(out.stdout), out.stderr


def wait_until(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def survive(srv, name, interrupt, tmp_path):
    """Starts the three viewers, calls `interrupt()` (the producer goes away and a new one
    comes), and checks every viewer goes on decoding."""
    rtsp = Progress(srv.url(name), ["-rtsp_transport", "tcp"])
    mp4 = Progress(f"http://127.0.0.1:{srv.api_port}/api/stream.mp4?src={name}")
    mse = MseViewer(srv, name)
    viewers = [rtsp, mp4]
    try:
        wait_until(lambda: all(v.frames >= 50 for v in viewers) and mse.messages >= 50, 20,
                   "every viewer decoding before the interruption")
        before = [v.frames for v in viewers]
        mse_before = mse.messages
        interrupt()
        # Each viewer decodes 4 s more of the new producer (25 fps).
        wait_until(lambda: all(v.frames >= b + 100 for v, b in zip(viewers, before))
                   and mse.messages >= mse_before + 100, 30,
                   f"viewers going on after the new producer (frames {[v.frames for v in viewers]}"
                   f" from {before}, mse {mse.messages} from {mse_before}); log:\n{srv.log()}")
        for v in viewers:
            assert v.proc.poll() is None, v.err
        assert mse.closed is None, mse.closed
    finally:
        for v in viewers:
            v.stop()
        mse.ws.close()
    for v in viewers:
        errors = [l for l in v.err.splitlines() if l.strip()]
        assert errors == [], errors
    frames, err = mse.decoded_frames(tmp_path)
    assert frames >= 150, (frames, err)
    assert err.strip() == "", err
    consumers = srv.streams()[name]
    assert consumers["online"], consumers


def test_viewers_survive_a_replaced_publisher(server_factory, procs, clip, tmp_path):
    srv = server_factory()
    url = srv.url("cam")
    pub = ffmpeg_publish(url, clip, loop=True)
    procs.append(pub)
    srv.wait_producer("cam")

    def interrupt():
        pub.send_signal(signal.SIGKILL)
        pub.wait()
        wait_until(lambda: not srv.streams()["cam"]["online"], 10, "the publisher to be gone")
        pub2 = ffmpeg_publish(url, clip, loop=True)
        procs.append(pub2)

    survive(srv, "cam", interrupt, tmp_path)


def test_viewers_survive_an_exec_restart(server_factory, procs, clip, tmp_path):
    # A copy under a unique name: the test finds the source's ffmpeg by it.
    own = tmp_path / f"exec-source-{os.getpid()}.mp4"
    shutil.copy(clip, own)
    cmd = (f"exec:ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i {own} "
           "-c copy -f rtsp {output}")
    srv = server_factory(f"streams:\n  ex: {cmd}\n")

    def child():
        out = subprocess.run(["pgrep", "-f", str(own)], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        return pids[0] if pids else None

    def interrupt():
        pid = child()
        assert pid, "the exec source's program is not running"
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: child() not in (None, pid), 15, "the exec source to restart")

    survive(srv, "ex", interrupt, tmp_path)


def lavfi_publisher(url, size):
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
         f"testsrc2=size={size}:rate=25", "-c:v", "libx264", "-preset", "ultrafast",
         "-g", "25", "-bf", "0", "-pix_fmt", "yuv420p", "-f", "rtsp", "-rtsp_transport", "tcp",
         url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_new_codec_parameters_end_the_viewers(server_factory, procs):
    """A new publisher whose tracks differ from the old one's (here the H.264 parameter
    sets of another resolution, announced in its SDP): viewers set up for the old ones
    cannot switch mid-session (the RTSP SDP and the fMP4 init segment are given once), so
    they are ended cleanly at once (RTSP and stream.mp4: end of stream; MSE: an `error`
    message, then close) and the next request gets the new parameters."""
    srv = server_factory()
    url = srv.url("cam")
    pub = lavfi_publisher(url, "320x240")
    procs.append(pub)
    srv.wait_producer("cam")
    rtsp = Progress(srv.url("cam"), ["-rtsp_transport", "tcp"])
    mp4 = Progress(f"http://127.0.0.1:{srv.api_port}/api/stream.mp4?src=cam")
    mse = MseViewer(srv, "cam")
    try:
        wait_until(lambda: rtsp.frames >= 25 and mp4.frames >= 25 and mse.messages >= 25, 20,
                   "viewers decoding")
        pub.send_signal(signal.SIGKILL)
        pub.wait()
        wait_until(lambda: not srv.streams()["cam"]["online"], 10, "the publisher to be gone")
        # Still attached while the stream waits for a new producer.
        assert rtsp.proc.poll() is None and mp4.proc.poll() is None and mse.closed is None
        pub2 = lavfi_publisher(url, "640x360")
        procs.append(pub2)
        for v, what in ((rtsp, "RTSP"), (mp4, "stream.mp4")):
            wait_until(lambda: v.proc.poll() is not None, 10, f"the {what} viewer to end")
            assert v.proc.returncode == 0 and v.frames >= 25, (what, v.proc.returncode, v.err)
        wait_until(lambda: mse.closed is not None, 10, "the MSE viewer to be told")
        assert "stream ended" in mse.closed, mse.closed
        for target in (srv.url("cam"),
                       f"http://127.0.0.1:{srv.api_port}/api/stream.mp4?src=cam&duration=2"):
            probe = subprocess.run(
                ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v:0",
                 "-show_entries", "stream=width,height", "-of", "csv=p=0", target],
                capture_output=True, text=True, timeout=30)
            assert probe.stdout.strip() == "640,360", (target, probe.stdout, probe.stderr)
    finally:
        rtsp.stop()
        mp4.stop()
        mse.ws.close()
