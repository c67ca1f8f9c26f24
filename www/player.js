// corecast player: stream.html?src=NAME[&mode=auto|mse|webrtc|webrtc,mse]
// Playback modes are made by createMseMode/createWebrtcMode for a context (the video element
// they draw into, where their state goes); `auto` runs both and keeps the better one.
'use strict';

const RECONNECT_MS = 2000;
const MAX_LATENCY_S = 2;     // jump to live when further behind than this
const LIVE_MARGIN_S = 0.5;   // ...landing this far before the buffered end
const TRIM_EVERY_MS = 10000; // how often to drop old buffered media
const KEEP_BEHIND_S = 20;    // how much played media to keep
// Auto mode: a WebRTC attempt that shows no video by then is dropped (MSE plays meanwhile);
// ICE alone may take 30 s to declare failure.
const WEBRTC_TRY_MS = 15000;
// ...and WebRTC's picture waits this long for MSE's codecs before it is ranked.
const MSE_WAIT_MS = 3000;

// go2rtc's candidate list; the server picks tracks the browser can decode.
const MSE_CANDIDATES = [
  'avc1.640029', 'avc1.64002A', 'avc1.640033', 'hvc1.1.6.L153.B0',
  'mp4a.40.2', 'mp4a.40.5', 'flac', 'opus',
];

const params = new URLSearchParams(location.search);
const src = params.get('src') || '';
const video = document.getElementById('video');
const statusEl = document.getElementById('status');

// Per-mode counters; the top-level ones below read the active mode's.
const modeStats = {
  mse: { state: null, error: null, bytes: 0, messages: 0, codecs: null },
  webrtc: { state: null, error: null, bytes: 0, framesDecoded: 0, codecs: null },
};
const modeVideo = { mse: null, webrtc: null }; // the element each mode draws into
let activeName = null; // the mode whose picture is on the page

// Public, test-visible state. bytes/messages are totals across reconnects.
const player = window.corecastPlayer = {
  mode: null,          // what was asked for: 'auto' | 'mse' | 'webrtc'
  active: null,        // the mode playing on the page ('mse' | 'webrtc')
  decided: false,      // auto: the race is over (`active` is the winner)
  state: 'connecting', // 'connecting' | 'playing' | 'error'
  error: null,         // last error string, or null
  modes: modeStats,    // each mode's own state and counters (auto runs both at first)
  pc: null,            // WebRTC: the peer connection, for tests and the console
};
function activeStats() { return modeStats[activeName] || modeStats.mse; }
for (const [key, read] of Object.entries({
  bytes: () => activeStats().bytes,          // binary bytes (MSE) / bytesReceived (WebRTC)
  messages: () => modeStats.mse.messages,    // binary (media) messages received by MSE
  codecs: () => activeStats().codecs,        // codecs of the active mode's session
  // Video frames decoded by the active mode: getStats (WebRTC) or the element's playback
  // quality (MSE).
  framesDecoded: () => {
    if (activeName === 'webrtc') return modeStats.webrtc.framesDecoded;
    const v = modeVideo.mse;
    const q = v && v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
    return q ? q.totalVideoFrames : 0;
  },
})) Object.defineProperty(player, key, { get: read, enumerable: true });

function setState(state, detail) {
  player.state = state;
  if (state === 'error') player.error = detail;
  statusEl.className = state;
  statusEl.textContent = detail ? `${state}: ${detail}` : state;
}

// Where a mode's state goes: its own record, and the page's when it is on the page.
function reporter(name, onPage) {
  return (state, detail) => {
    const m = modeStats[name];
    m.state = state;
    if (state === 'error') m.error = detail;
    if (onPage()) setState(state, detail);
  };
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
// ctx: { video, report(state, detail), onFail(message)? } — with onFail the owner decides
// what happens after a failure; without it the mode reconnects itself.

function createMseMode(ctx) {
  const stats = modeStats.mse;
  let session = null;     // current connection; replaced on every reconnect
  let reconnectTimer = null;
  let stopped = true;

  function start() {
    stopped = false;
    modeVideo.mse = ctx.video;
    if (!MediaSourceImpl) {
      ctx.report('error', 'MediaSource is not supported by this browser');
      if (ctx.onFail) ctx.onFail('no MediaSource');
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
    ctx.report('error', message);
    teardown();
    if (stopped) return;
    if (ctx.onFail) ctx.onFail(message);
    else reconnectTimer = setTimeout(connect, RECONNECT_MS);
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
      ctx.video.removeEventListener('error', s.onVideoError);
      ctx.video.removeAttribute('src');
      ctx.video.load();
    }
  }

  function connect() {
    teardown();
    const s = { ws: null, ms: null, sb: null, objectUrl: null, queue: [], appended: 0, lastTrim: Date.now(), failed: false };
    s.onVideoError = () => {
      const e = ctx.video.error;
      fail(s, 'video error: ' + (e ? e.message || e.code : 'unknown'));
    };
    session = s;
    stats.codecs = null;
    ctx.report('connecting');

    const ws = s.ws = new WebSocket(wsUrl());
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => ws.send(JSON.stringify({ type: 'mse', value: mseSupportedCodecs() }));
    ws.onclose = (ev) => fail(s, `connection closed${ev.code ? ' (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ')' : ''}`);
    ws.onerror = () => {}; // onclose always follows, with a close code
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') return onText(s, ev.data);
      stats.bytes += ev.data.byteLength;
      stats.messages += 1;
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
    const video = ctx.video;
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
    video.srcObject = null;
    video.src = s.objectUrl;
    video.addEventListener('error', s.onVideoError);
    stats.codecs = codecs;
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
    const video = ctx.video;
    const sb = s.sb;
    const buf = sb.buffered;

    if (s.appended++ === 0) {
      // First append done (the init segment, often with media): start playback.
      video.play().catch(() => { /* autoplay blocked; the user can press play */ });
    }
    if (buf.length > 0) {
      if (stats.state !== 'playing') ctx.report('playing', stats.codecs);
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

  return { label: 'MSE', start, stop };
}

// ---- WebRTC over the same WebSocket (go2rtc protocol) -------------------------
// ctx as for MSE, plus onVideo(stream, pc)?: called once the picture is there (the
// element's `loadeddata`), which auto mode uses to choose.

function createWebrtcMode(ctx) {
  const stats = modeStats.webrtc;
  let session = null;
  let reconnectTimer = null;
  let stopped = true;

  function start() {
    stopped = false;
    modeVideo.webrtc = ctx.video;
    if (!window.RTCPeerConnection) {
      ctx.report('error', 'WebRTC is not supported by this browser');
      if (ctx.onFail) ctx.onFail('no RTCPeerConnection');
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
    ctx.report('error', message);
    teardown();
    if (stopped) return;
    if (ctx.onFail) ctx.onFail(message);
    else reconnectTimer = setTimeout(connect, RECONNECT_MS);
  }

  function teardown() {
    const s = session;
    session = null;
    if (!s) return;
    clearInterval(s.statsTimer);
    closeWs(s);
    s.pc.ontrack = s.pc.onicecandidate = s.pc.onconnectionstatechange = null;
    s.pc.close();
    if (player.pc === s.pc) player.pc = null;
    if (ctx.video.srcObject === s.media) ctx.video.srcObject = null;
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
    const s = { pc, ws: null, failed: false, statsTimer: null, media: new MediaStream() };
    player.pc = pc;
    session = s;
    stats.codecs = null;
    stats.framesDecoded = 0;
    ctx.report('connecting');
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (ev) => {
      s.media.addTrack(ev.track);
      const video = ctx.video;
      if (ctx.onVideo && !s.shown) {
        video.addEventListener('loadeddata', () => {
          if (s === session && !s.shown) { s.shown = true; ctx.onVideo(s.media, pc); }
        }, { once: true });
      }
      video.srcObject = s.media;
      video.play().catch(() => { /* autoplay blocked */ });
    };
    pc.onconnectionstatechange = () => {
      if (s !== session) return;
      if (pc.connectionState === 'connected') {
        ctx.report('playing', 'webrtc');
        // The session no longer needs the signalling socket (the server keeps it).
        closeWs(s);
      } else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        fail(s, `WebRTC ${pc.connectionState}`);
      }
    };
    pc.onicecandidate = (ev) => {
      if (ev.candidate && tcpOnly && ev.candidate.protocol === 'udp') return;
      if (s.ws && s.ws.readyState === WebSocket.OPEN) {
        s.ws.send(JSON.stringify({ type: 'webrtc/candidate', value: ev.candidate ? ev.candidate.candidate : '' }));
      }
    };
    // Test-visible decoding progress.
    s.statsTimer = setInterval(async () => {
      if (s !== session) return;
      const report = await pc.getStats();
      report.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') {
          stats.framesDecoded = r.framesDecoded || 0;
          stats.bytes = r.bytesReceived || 0;
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
          await pc.setRemoteDescription({ type: 'answer', sdp: tcpOnly ? withoutUdp(msg.value) : msg.value });
          stats.codecs = 'webrtc';
        } catch (err) {
          fail(s, 'answer: ' + err.message);
        }
      } else if (msg.type === 'webrtc/candidate' && msg.value && !(tcpOnly && / udp /i.test(msg.value))) {
        pc.addIceCandidate({ candidate: msg.value, sdpMid: '0' }).catch(() => {});
      }
    };
  }

  return { label: 'WebRTC', start, stop };
}

// `webrtc/tcp`: our answer carries its candidates in the SDP; the UDP ones go.
function withoutUdp(sdp) {
  return sdp.split('\r\n').filter((l) => !/^a=candidate:\S+ \d+ udp /i.test(l)).join('\r\n');
}

// ---- Auto: both started, the better kept (go2rtc's video-rtc.js) ----------------
// MSE plays on the page at once; WebRTC connects into a detached element. When WebRTC's
// picture arrives the two are ranked as go2rtc ranks them (video+audio > video, H.265 >
// H.264, video > audio, WebRTC > MSE on a tie): the loser is stopped. A WebRTC winner that
// fails later restarts the race; a WebRTC loser or a failed attempt leaves MSE alone.

function rtcPriority(stream, pc) {
  let p = 0;
  if (stream.getVideoTracks().length > 0) {
    const sdp = pc.remoteDescription ? pc.remoteDescription.sdp : '';
    p += sdp.includes('H265/90000') ? 0x240 : 0x220;
  }
  if (stream.getAudioTracks().length > 0) p += 0x102;
  return p;
}

function msePriority(codecs) {
  let p = 0;
  if (!codecs) return p;
  if (codecs.includes('hvc1.')) p += 0x230;
  if (codecs.includes('avc1.')) p += 0x210;
  if (codecs.includes('mp4a.')) p += 0x101;
  return p;
}

function createAutoMode() {
  let mse = null, rtc = null, tryTimer = null, restartTimer = null, stopped = true;
  // WebRTC's picture came before MSE said its codecs: the choice waits for them (a bit).
  let pending = null, pendingTimer = null;

  function start() {
    stopped = false;
    activeName = 'mse';
    player.active = null;
    player.decided = false;
    const rtcVideo = document.createElement('video');
    rtcVideo.muted = true;
    rtcVideo.playsInline = true;
    const rtcCtx = {
      video: rtcVideo,
      report: reporter('webrtc', () => activeName === 'webrtc'),
      onFail: (why) => {
        // On the page, or MSE is gone as well: start over.
        if (activeName === 'webrtc' || modeStats.mse.state === 'error') return restart(why);
        modeStats.webrtc.error = why; // MSE keeps playing
        rtc.stop();
        player.decided = true;
      },
      onVideo: (stream, pc) => choose(stream, pc, rtcCtx),
    };
    const mseReport = reporter('mse', () => activeName === 'mse');
    mse = createMseMode({
      video,
      report: (state, detail) => {
        mseReport(state, detail);
        if (state === 'playing' && activeName === 'mse') player.active = 'mse';
        if (pending && (state === 'playing' || state === 'error')) decide();
      },
      onFail: (why) => {
        // MSE lost while WebRTC is still trying: let WebRTC take the page if it comes.
        if (rtc && modeStats.webrtc.state !== 'error' && activeName === 'mse') {
          mse.stop();
          restartTimer = setTimeout(() => { if (activeName !== 'webrtc') restart(why); }, WEBRTC_TRY_MS);
          return;
        }
        restart(why);
      },
    });
    rtc = createWebrtcMode(rtcCtx);
    mse.start();
    rtc.start();
    tryTimer = setTimeout(() => {
      if (activeName !== 'webrtc' && rtc) {
        modeStats.webrtc.error = modeStats.webrtc.error || `no WebRTC picture in ${WEBRTC_TRY_MS / 1000} s`;
        rtc.stop();
        player.decided = true;
      }
    }, WEBRTC_TRY_MS);
  }

  function choose(stream, pc, rtcCtx) {
    if (stopped) return;
    pending = { stream, pc, rtcCtx };
    if (modeStats.mse.codecs || modeStats.mse.state === 'error') return decide();
    pendingTimer = setTimeout(decide, MSE_WAIT_MS);
  }

  function decide() {
    clearTimeout(pendingTimer);
    if (stopped || !pending) return;
    const { stream, pc, rtcCtx } = pending;
    pending = null;
    const r = rtcPriority(stream, pc);
    const m = msePriority(modeStats.mse.codecs);
    player.decided = true;
    if (r >= m) {
      clearTimeout(tryTimer);
      clearTimeout(restartTimer);
      mse.stop();
      modeStats.mse.state = 'stopped';
      activeName = 'webrtc';
      player.active = 'webrtc';
      // The picture moves to the page; the WebRTC mode now owns the page's element.
      rtcCtx.video.srcObject = null;
      rtcCtx.video = video;
      modeVideo.webrtc = video;
      video.removeAttribute('src');
      video.srcObject = stream;
      video.play().catch(() => { /* autoplay blocked */ });
      setState('playing', 'webrtc');
    } else {
      rtc.stop();
      modeStats.webrtc.state = 'stopped';
      modeStats.webrtc.error = `MSE ranks higher (${m.toString(16)} > ${r.toString(16)})`;
      player.active = 'mse';
    }
  }

  function restart(why) {
    stop();
    setState('error', why);
    restartTimer = setTimeout(start, RECONNECT_MS);
  }

  function stop() {
    stopped = true;
    pending = null;
    clearTimeout(pendingTimer);
    clearTimeout(tryTimer);
    clearTimeout(restartTimer);
    if (mse) mse.stop();
    if (rtc) rtc.stop();
    mse = rtc = null;
  }

  return { label: 'Auto', start, stop };
}

// MSE alone wins as soon as it plays: note it as the active mode then.
function single(name, make) {
  return make({
    video,
    report: (state, detail) => {
      reporter(name, () => true)(state, detail);
      if (state === 'playing') player.active = name;
    },
  });
}

const modes = {
  auto: createAutoMode(),
  mse: single('mse', createMseMode),
  webrtc: single('webrtc', createWebrtcMode),
};

// go2rtc's `mode=` is a list (`webrtc,mse,hls,mjpeg`, its default): both of ours in it is
// auto; ones we lack (hls, mp4, mjpeg) are skipped. No mode at all is go2rtc's default.
// `webrtc/tcp` is WebRTC over ICE-TCP only (UDP candidates dropped both ways), as go2rtc's.
const tcpOnly = (params.get('mode') || '').split(',').some((x) => x.trim() === 'webrtc/tcp');
function parseMode(text) {
  if (!text) return 'auto';
  const items = text.split(',').map((x) => x.trim().split('/')[0]);
  const hasMse = items.includes('mse'), hasRtc = items.includes('webrtc');
  if (items.includes('auto') || (hasMse && hasRtc)) return 'auto';
  if (hasRtc) return 'webrtc';
  return 'mse';
}

// ---- Page wiring --------------------------------------------------------------

let current = null;

function selectMode(name, updateUrl) {
  if (!modes[name]) name = 'auto';
  if (current === modes[name]) return;
  if (current) current.stop();
  current = modes[name];
  player.mode = name;
  player.active = null;
  player.decided = name !== 'auto';
  player.error = null;
  activeName = name === 'auto' ? 'mse' : name;

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
  selectMode(parseMode(params.get('mode')), false);
}
