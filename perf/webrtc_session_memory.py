# Memory per WebRTC session before DTLS: RSS growth of a running corecast (pid argv[1])
# while argv[2] WHEP sessions are created for the demo stream on 127.0.0.1:18984.
# Usage: see BENCHMARKS.md "WebRTC (issue #12, first slice)".
import asyncio, sys, time, urllib.request, subprocess, os
from aiortc import RTCPeerConnection
async def offer():
    pc = RTCPeerConnection(); pc.addTransceiver("video", direction="recvonly"); pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer()); s = pc.localDescription.sdp; await pc.close(); return s
sdp = asyncio.run(offer()).encode()
pid = int(sys.argv[1]); n = int(sys.argv[2])
def rss(): return int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1])
# warm: one session (creates the feeds, identity)
def post():
    r = urllib.request.Request("http://127.0.0.1:18984/api/webrtc?src=demo", data=sdp, headers={"Content-Type": "application/sdp"})
    return urllib.request.urlopen(r, timeout=10).status
post(); time.sleep(0.5)
a = rss(); t = time.time()
for _ in range(n): post()
b = rss()
print(f"{n} sessions in {time.time()-t:.1f}s, RSS {a} -> {b} KiB, {(b-a)/n:.1f} KiB per session")
