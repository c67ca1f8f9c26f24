"""Start-up failures are reported, not hung; bad input gets an error and costs only its
own connection."""
import socket
import subprocess
import time

from conftest import BIN, decoded_frames, ffmpeg_read, start_server, stop


def test_executor_without_locked_memory_fails_fast(tmp_path):
    t0 = time.time()
    out = subprocess.run(["bash", "-c", f"ulimit -l 0; exec {BIN} --shards 2"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "locked memory" in out.stderr and "ulimit -l" in out.stderr, out.stderr
    assert time.time() - t0 < 20


def test_malformed_config_names_key_and_line(tmp_path):
    cfg = tmp_path / "corecast.yaml"
    cfg.write_text("streams:\n  cam: rtsp://x/y\nrtsp:\n  listen: \"nonsense\"\n")
    out = subprocess.run([str(BIN), "-c", str(cfg)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2
    assert "line 4" in out.stderr and "rtsp.listen" in out.stderr, out.stderr


def test_unknown_key_is_a_warning(server_factory):
    srv = server_factory("frobnicate: 3\n")
    deadline = time.time() + 5
    while "frobnicate" not in srv.log() and time.time() < deadline:
        time.sleep(0.1)
    assert "frobnicate" in srv.log() and "line" in srv.log()


def rtsp_exchange(port, data, read_for=2.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=read_for)
    s.sendall(data)
    chunks = []
    end = time.time() + read_for
    try:
        while time.time() < end:
            b = s.recv(65536)
            if not b:
                chunks.append(b"<EOF>")
                break
            chunks.append(b)
    except socket.timeout:
        pass
    s.close()
    return b"".join(chunks)


def test_malformed_rtsp_gets_error_and_only_that_connection_closes(server_factory, procs):
    srv = server_factory()
    reader = ffmpeg_read(srv.url("demo"), duration=6)
    procs.append(reader)
    time.sleep(1)
    cases = {
        b"GARBAGE\x00\x01\x02 nonsense\r\n\r\n": b"RTSP/1.0 400",
        b"DESCRIBE rtsp://h/demo RTSP/2.0\r\nCSeq: 1\r\n\r\n": b"RTSP/1.0 505",
        b"DESCRIBE rtsp://h/demo RTSP/1.0\r\nCSeq: 1\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n": b"RTSP/1.0 431",
        b"DESCRIBE rtsp://h/demo RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999\r\n\r\n": b"RTSP/1.0 413",
        b"DESCRIBE rtsp://h/demo RTSP/1.0\r\nCSeq: 1\r\nBad header line\r\n\r\n": b"RTSP/1.0 400",
    }
    for data, expect in cases.items():
        got = rtsp_exchange(srv.rtsp_port, data)
        assert got.startswith(expect), (data[:40], got[:200])
        assert got.endswith(b"<EOF>"), "connection must be closed after a protocol error"
    # Protocol-level errors keep the connection.
    got = rtsp_exchange(srv.rtsp_port, b"DESCRIBE rtsp://h/nope RTSP/1.0\r\nCSeq: 7\r\n\r\n"
                        b"OPTIONS rtsp://h/demo RTSP/1.0\r\nCSeq: 8\r\n\r\n", read_for=1.0)
    assert b"RTSP/1.0 404" in got and b"CSeq: 7" in got and b"CSeq: 8" in got, got
    assert not got.endswith(b"<EOF>")
    # Garbage interleaved data and a bogus ANNOUNCE body on a publisher connection.
    sdp = b"not an sdp at all"
    got = rtsp_exchange(srv.rtsp_port, b"ANNOUNCE rtsp://h/bad RTSP/1.0\r\nCSeq: 1\r\n"
                        b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s" % (len(sdp), sdp))
    assert got.startswith(b"RTSP/1.0 400"), got
    # The reader that was already playing is unaffected, and the server still serves.
    out, err = reader.communicate(timeout=30)
    assert decoded_frames(out) >= 120, err
    assert srv.alive()
    assert "demo" in srv.streams()
