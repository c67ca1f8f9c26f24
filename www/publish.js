// corecast publisher: webrtc.html?dst=NAME[&media=camera+microphone] (go2rtc's page and
// parameters) sends the browser's camera and microphone to stream NAME by WHIP
// (`POST api/webrtc?dst=NAME`, application/sdp → 201 + answer + Location; DELETE ends it).
// webrtc.html?src=NAME (go2rtc's WebRTC viewer) goes to the player in WebRTC mode.
'use strict';

// Waiting longer for the last ICE candidates only delays the offer: host candidates come
// first, and WHIP here takes no trickled ones.
const GATHER_MS = 2000;
const STATS_MS = 1000;

const params = new URLSearchParams(location.search);
if (!params.get('dst') && params.get('src')) {
  location.replace('stream.html?src=' + encodeURIComponent(params.get('src')) + '&mode=webrtc');
}

const form = document.getElementById('publish-form');
const startBtn = document.getElementById('start');
const stopBtn = document.getElementById('stop');
const statusEl = document.getElementById('status');
const watchEl = document.getElementById('watch');
const video = document.getElementById('video');

// Public, test-visible state.
const pub = window.corecastPublisher = {
  dst: null,
  state: 'idle',       // 'idle' | 'starting' | 'publishing' | 'error' | 'stopped'
  error: null,         // last error string, or null
  location: null,      // the session's URL (DELETE ends it)
  videoCodec: null,    // e.g. 'video/H264', from getStats once sending
  audioCodec: null,    // e.g. 'audio/opus'
  framesEncoded: 0,
  framesSent: 0,
  packetsSent: 0,      // video and audio together
  bytesSent: 0,
  pc: null,
};

function setState(state, detail) {
  pub.state = state;
  if (state === 'error') pub.error = detail;
  statusEl.className = state === 'publishing' ? 'playing' : state;
  statusEl.textContent = detail ? `${state}: ${detail}` : state;
}

let session = null;

// H.264 first (every corecast viewer can take it: RTSP, MSE, WebRTC), packetization-mode=1
// before 0 (FU-A; mode 0 caps a NAL unit at one packet); the rest after, in the browser's order.
function preferH264(transceiver) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpSender || !RTCRtpSender.getCapabilities) return;
  const caps = RTCRtpSender.getCapabilities('video');
  if (!caps) return;
  const rank = (c) => {
    if (c.mimeType.toLowerCase() !== 'video/h264') return 2;
    return /packetization-mode=1/.test(c.sdpFmtpLine || '') ? 0 : 1;
  };
  const sorted = caps.codecs.slice().sort((a, b) => rank(a) - rank(b));
  try { transceiver.setCodecPreferences(sorted); } catch (_) { /* keep the browser's order */ }
}

function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_MS);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
}

async function start(dst, media) {
  await stop();
  const s = { dst, pc: null, stream: null, location: null, statsTimer: null };
  session = s;
  Object.assign(pub, { dst, error: null, location: null, videoCodec: null, audioCodec: null,
    framesEncoded: 0, framesSent: 0, packetsSent: 0, bytesSent: 0 });
  setState('starting');
  startBtn.disabled = true;
  stopBtn.disabled = false;
  try {
    s.stream = await navigator.mediaDevices.getUserMedia({
      video: media.includes('camera'),
      audio: media.includes('microphone'),
    });
  } catch (err) {
    return fail(s, `getUserMedia: ${err.name}: ${err.message}`);
  }
  if (s !== session) return stopTracks(s);
  video.srcObject = s.stream;

  const pc = s.pc = pub.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  for (const track of s.stream.getTracks()) {
    const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [s.stream] });
    if (track.kind === 'video') preferH264(tr);
  }
  pc.onconnectionstatechange = () => {
    if (s !== session) return;
    if (pc.connectionState === 'connected') setState('publishing', dst);
    else if (pc.connectionState === 'failed') fail(s, 'WebRTC failed');
  };

  let answer;
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (s !== session) return;
    const url = new URL('api/webrtc?dst=' + encodeURIComponent(dst), location.href);
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`server answered ${res.status}: ${text.trim()}`);
    // `Location: webrtc?id=...` is relative to the request's URL.
    const loc = res.headers.get('Location');
    if (loc) s.location = pub.location = new URL(loc, url).href;
    answer = text;
  } catch (err) {
    return fail(s, `offer: ${err.message}`);
  }
  if (s !== session) return;
  try {
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  } catch (err) {
    return fail(s, `answer: ${err.message}`);
  }
  watchEl.href = 'stream.html?src=' + encodeURIComponent(dst);
  watchEl.hidden = false;
  s.statsTimer = setInterval(() => readStats(s), STATS_MS);
}

async function readStats(s) {
  if (s !== session || !s.pc) return;
  const report = await s.pc.getStats();
  let packets = 0, bytes = 0;
  report.forEach((r) => {
    if (r.type !== 'outbound-rtp') return;
    packets += r.packetsSent || 0;
    bytes += r.bytesSent || 0;
    const codec = r.codecId && report.get(r.codecId);
    if (r.kind === 'video') {
      pub.framesEncoded = r.framesEncoded || 0;
      pub.framesSent = r.framesSent || 0;
      if (codec) pub.videoCodec = codec.mimeType;
    } else if (r.kind === 'audio' && codec) {
      pub.audioCodec = codec.mimeType;
    }
  });
  pub.packetsSent = packets;
  pub.bytesSent = bytes;
}

function stopTracks(s) {
  if (s.stream) for (const t of s.stream.getTracks()) t.stop();
}

// Ends the session here and at the server.
async function stop() {
  const s = session;
  session = null;
  if (!s) return;
  clearInterval(s.statsTimer);
  if (s.pc) { s.pc.onconnectionstatechange = null; s.pc.close(); }
  stopTracks(s);
  if (video.srcObject === s.stream) video.srcObject = null;
  if (pub.pc === s.pc) pub.pc = null;
  startBtn.disabled = false;
  stopBtn.disabled = true;
  if (s.location) {
    try { await fetch(s.location, { method: 'DELETE', keepalive: true }); } catch (_) { /* gone */ }
  }
}

function fail(s, message) {
  if (s !== session) return;
  stop();
  setState('error', message);
}

function mediaFromForm() {
  return ['camera', 'microphone'].filter((m) => form.elements[m].checked).join('+');
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const dst = form.elements.dst.value.trim();
  const media = mediaFromForm();
  if (!dst || !media) return;
  const p = new URLSearchParams(location.search);
  p.set('dst', dst);
  p.set('media', media);
  history.replaceState(null, '', '?' + p.toString());
  start(dst, media);
});
stopBtn.addEventListener('click', () => { setState('stopped'); stop(); });
// The server ends the session by itself ~30 s after the page is gone; DELETE ends it now.
window.addEventListener('pagehide', () => { stop(); });

// go2rtc's `media=` list (`camera+microphone`, also with commas); publishing starts at once
// when the page is opened with ?dst=, as go2rtc's webrtc.html does.
{
  const dst = params.get('dst');
  const media = params.get('media') || 'camera+microphone';
  form.elements.camera.checked = media.includes('camera');
  form.elements.microphone.checked = media.includes('microphone');
  if (dst) {
    form.elements.dst.value = dst;
    start(dst, mediaFromForm());
  }
}
