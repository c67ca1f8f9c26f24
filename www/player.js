// corecast player: stream.html?src=NAME[&mode=mse|webrtc]
// Playback modes are entries of `modes` with start()/stop().
'use strict';

const RECONNECT_MS = 2000;
const MAX_LATENCY_S = 2;     // jump to live when further behind than this
const LIVE_MARGIN_S = 0.5;   // ...landing this far before the buffered end
const TRIM_EVERY_MS = 10000; // how often to drop old buffered media
const KEEP_BEHIND_S = 20;    // how much played media to keep

// go2rtc's candidate list; the server picks tracks the browser can decode.
const MSE_CANDIDATES = [
  'avc1.640029', 'avc1.64002A', 'avc1.640033', 'hvc1.1.6.L153.B0',
  'mp4a.40.2', 'mp4a.40.5', 'flac', 'opus',
];

const params = new URLSearchParams(location.search);
const src = params.get('src') || '';
const video = document.getElementById('video');
const statusEl = document.getElementById('status');

// Public, test-visible state. bytes/messages are totals across reconnects.
const player = window.corecastPlayer = {
  mode: null,
  state: 'connecting', // 'connecting' | 'playing' | 'error'
  error: null,         // last error string, or null
  bytes: 0,            // total binary bytes received
  messages: 0,         // total binary (media) messages received
  codecs: null,        // codecs announced by the server for the current session
  framesDecoded: 0,    // WebRTC: inbound video frames decoded (getStats)
};

function setState(state, detail) {
  player.state = state;
  if (state === 'error') player.error = detail;
  statusEl.className = state;
  statusEl.textContent = detail ? `${state}: ${detail}` : state;
}

// Safari on iOS only offers ManagedMediaSource.
const MediaSourceImpl = window.ManagedMediaSource || window.MediaSource;

function mseSupportedCodecs() {
  if (!MediaSourceImpl) return '';
  return MSE_CANDIDATES
    .filter((c) => MediaSourceImpl.isTypeSupported(`video/mp4; codecs="${c}"`))
    .join(',');
}

function wsUrl() {
  const url = new URL('api/ws?src=' + encodeURIComponent(src), location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

// ---- MSE over WebSocket (go2rtc protocol) ---------------------------------

function createMseMode() {
  let session = null;     // current connection; replaced on every reconnect
  let reconnectTimer = null;
  let stopped = true;

  function start() {
    stopped = false;
    if (!MediaSourceImpl) {
      setState('error', 'MediaSource is not supported by this browser');
      return;
    }
    connect();
  }

  function stop() {
    stopped = true;
    clearTimeout(reconnectTimer);
    teardown();
  }

  // Reports an error once per session and schedules a fresh connection.
  function fail(s, message) {
    if (s !== session || s.failed) return;
    s.failed = true;
    setState('error', message);
    teardown();
    if (!stopped) reconnectTimer = setTimeout(connect, RECONNECT_MS);
  }

  function teardown() {
    const s = session;
    session = null;
    if (!s) return;
    if (s.ws) {
      s.ws.onopen = s.ws.onmessage = s.ws.onclose = s.ws.onerror = null;
      try { s.ws.close(); } catch (_) { /* already closed */ }
    }
    if (s.ms) {
      // Detach the MediaSource from the element so the decoder is released.
      if (s.ms.readyState === 'open') {
        try { s.ms.endOfStream(); } catch (_) { /* updating or closed */ }
      }
      if (s.objectUrl) URL.revokeObjectURL(s.objectUrl);
      video.removeAttribute('src');
      video.load();
    }
  }

  function connect() {
    teardown();
    const s = { ws: null, ms: null, sb: null, objectUrl: null, queue: [], appended: 0, lastTrim: Date.now(), failed: false };
    session = s;
    player.codecs = null;
    setState('connecting');

    const ws = s.ws = new WebSocket(wsUrl());
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => ws.send(JSON.stringify({ type: 'mse', value: mseSupportedCodecs() }));
    ws.onclose = (ev) => fail(s, `connection closed${ev.code ? ' (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ')' : ''}`);
    ws.onerror = () => {}; // onclose always follows, with a close code
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') return onText(s, ev.data);
      player.bytes += ev.data.byteLength;
      player.messages += 1;
      s.queue.push(ev.data);
      pump(s);
    };
  }

  function onText(s, text) {
    let msg;
    try { msg = JSON.parse(text); } catch (_) { return; }
    if (msg.type === 'error') return fail(s, String(msg.value || 'server error'));
    if (msg.type !== 'mse' || s.ms) return;
    if (!msg.value) return fail(s, 'no playable codecs in this stream');
    openMediaSource(s, msg.value);
  }

  function openMediaSource(s, codecs) {
    const ms = s.ms = new MediaSourceImpl();
    // ManagedMediaSource only streams when remote playback (AirPlay) is off.
    if (window.ManagedMediaSource && ms instanceof window.ManagedMediaSource) video.disableRemotePlayback = true;
    ms.addEventListener('sourceopen', () => {
      if (s !== session) return;
      URL.revokeObjectURL(s.objectUrl);
      s.objectUrl = null;
      try {
        // go2rtc answers a full MIME type (`video/mp4; codecs="..."`).
        const mime = codecs.startsWith('video/') ? codecs : `video/mp4; codecs="${codecs}"`;
        const sb = ms.addSourceBuffer(mime);
        sb.mode = 'segments';
        sb.addEventListener('updateend', () => onUpdateEnd(s));
        sb.addEventListener('error', () => fail(s, 'SourceBuffer error'));
        s.sb = sb;
      } catch (err) {
        return fail(s, `cannot play codecs ${codecs}: ${err.message}`);
      }
      pump(s);
    }, { once: true });
    s.objectUrl = URL.createObjectURL(ms);
    video.src = s.objectUrl;
    player.codecs = codecs;
  }

  // Appends everything queued as one buffer; only when the SourceBuffer is idle.
  function pump(s) {
    const sb = s.sb;
    if (s !== session || !sb || sb.updating || s.queue.length === 0) return;
    let data;
    if (s.queue.length === 1) {
      data = s.queue.pop();
    } else {
      const total = s.queue.reduce((n, b) => n + b.byteLength, 0);
      const merged = new Uint8Array(total);
      let off = 0;
      for (const b of s.queue) { merged.set(new Uint8Array(b), off); off += b.byteLength; }
      s.queue.length = 0;
      data = merged;
    }
    try {
      sb.appendBuffer(data);
    } catch (err) {
      fail(s, 'appendBuffer: ' + err.message);
    }
  }

  function onUpdateEnd(s) {
    if (s !== session) return;
    const sb = s.sb;
    const buf = sb.buffered;

    if (s.appended++ === 0) {
      // First append done (the init segment, often with media): start playback.
      video.play().catch(() => { /* autoplay blocked; the user can press play */ });
    }
    if (buf.length > 0) {
      if (player.state !== 'playing') setState('playing', player.codecs);
      const start = buf.start(0);
      const end = buf.end(buf.length - 1);
      // Live fMP4 decode times do not start at 0: jump to the first buffered frame.
      if (video.currentTime === 0 && start > 0) video.currentTime = start;
      // Stay close to live (skip when paused so the user's pause is kept).
      if (!video.paused && end - video.currentTime > MAX_LATENCY_S) {
        video.currentTime = end - LIVE_MARGIN_S;
      }
      // Periodically drop media well behind the playhead to bound memory.
      const trimTo = video.currentTime - KEEP_BEHIND_S;
      if (Date.now() - s.lastTrim > TRIM_EVERY_MS && trimTo > start) {
        s.lastTrim = Date.now();
        try {
          sb.remove(start, trimTo);
          return; // remove() fires updateend again, which resumes pump()
        } catch (_) { /* try again next time */ }
      }
    }
    pump(s);
  }

  video.addEventListener('error', () => {
    if (session && session.ms) fail(session, 'video error: ' + (video.error ? video.error.message || video.error.code : 'unknown'));
  });

  return { label: 'MSE', start, stop };
}

// ---- WebRTC over the same WebSocket (go2rtc protocol) -------------------------

function createWebrtcMode() {
  let session = null;
  let reconnectTimer = null;
  let stopped = true;

  function start() {
    stopped = false;
    if (!window.RTCPeerConnection) {
      setState('error', 'WebRTC is not supported by this browser');
      return;
    }
    connect();
  }

  function stop() {
    stopped = true;
    clearTimeout(reconnectTimer);
    teardown();
  }

  function fail(s, message) {
    if (s !== session || s.failed) return;
    s.failed = true;
    setState('error', message);
    teardown();
    if (!stopped) reconnectTimer = setTimeout(connect, RECONNECT_MS);
  }

  function teardown() {
    const s = session;
    session = null;
    if (!s) return;
    clearInterval(s.statsTimer);
    closeWs(s);
    s.pc.ontrack = s.pc.onicecandidate = s.pc.onconnectionstatechange = null;
    s.pc.close();
    video.srcObject = null;
  }

  function closeWs(s) {
    if (!s.ws) return;
    s.ws.onopen = s.ws.onmessage = s.ws.onclose = s.ws.onerror = null;
    try { s.ws.close(); } catch (_) { /* already closed */ }
    s.ws = null;
  }

  function connect() {
    teardown();
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    const s = { pc, ws: null, failed: false, statsTimer: null };
    player.pc = pc; // for tests and the console
    session = s;
    player.codecs = null;
    player.framesDecoded = 0;
    setState('connecting');
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const media = new MediaStream();
    pc.ontrack = (ev) => {
      media.addTrack(ev.track);
      video.srcObject = media;
      video.play().catch(() => { /* autoplay blocked */ });
    };
    pc.onconnectionstatechange = () => {
      if (s !== session) return;
      if (pc.connectionState === 'connected') {
        setState('playing', 'webrtc');
        // The session no longer needs the signalling socket (the server keeps it).
        closeWs(s);
      } else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        fail(s, `WebRTC ${pc.connectionState}`);
      }
    };
    pc.onicecandidate = (ev) => {
      if (s.ws && s.ws.readyState === WebSocket.OPEN) {
        s.ws.send(JSON.stringify({ type: 'webrtc/candidate', value: ev.candidate ? ev.candidate.candidate : '' }));
      }
    };
    // Test-visible decoding progress.
    s.statsTimer = setInterval(async () => {
      if (s !== session) return;
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') {
          player.framesDecoded = r.framesDecoded || 0;
          player.bytes = r.bytesReceived || 0;
        }
      });
    }, 500);

    const ws = s.ws = new WebSocket(wsUrl());
    ws.onopen = async () => {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      ws.send(JSON.stringify({ type: 'webrtc/offer', value: pc.localDescription.sdp }));
    };
    ws.onclose = () => { if (!pc.remoteDescription) fail(s, 'connection closed before the answer'); };
    ws.onerror = () => {};
    ws.onmessage = async (ev) => {
      if (typeof ev.data !== 'string') return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      if (msg.type === 'error') return fail(s, String(msg.value || 'server error'));
      if (msg.type === 'webrtc/answer') {
        try {
          await pc.setRemoteDescription({ type: 'answer', sdp: msg.value });
          player.codecs = 'webrtc';
        } catch (err) {
          fail(s, 'answer: ' + err.message);
        }
      } else if (msg.type === 'webrtc/candidate' && msg.value) {
        pc.addIceCandidate({ candidate: msg.value, sdpMid: '0' }).catch(() => {});
      }
    };
  }

  return { label: 'WebRTC', start, stop };
}

const modes = {
  mse: createMseMode(),
  webrtc: createWebrtcMode(),
};

// ---- Page wiring --------------------------------------------------------------

let current = null;

function selectMode(name, updateUrl) {
  if (!modes[name] || modes[name].disabled) name = 'mse';
  if (current === modes[name]) return;
  if (current) current.stop();
  current = modes[name];
  player.mode = name;
  player.error = null;

  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.checked = radio.value === name;
  if (updateUrl) {
    const p = new URLSearchParams(location.search);
    p.set('mode', name);
    history.replaceState(null, '', '?' + p.toString());
  }
  current.start();
}

for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener('change', () => { if (radio.checked) selectMode(radio.value, true); });
}

if (!src) {
  document.getElementById('title').textContent = 'No stream selected';
  player.mode = null;
  setState('error', 'missing ?src= parameter');
} else {
  document.getElementById('title').textContent = src;
  document.title = `${src} – corecast`;
  selectMode(params.get('mode') || 'mse', params.has('mode') && params.get('mode') !== 'mse');
}
