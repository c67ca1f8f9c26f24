// corecast stream list: polls api/streams, renders a table, adds/deletes streams.
// All URLs are relative so the UI works behind a configured base path.
'use strict';

const POLL_MS = 2000;
const FETCH_TIMEOUT_MS = 5000;

const $ = (id) => document.getElementById(id);
const tbody = $('streams');
const notice = $('notice');

let rtspPort = '8554'; // replaced by the port from `api` -> rtsp.listen when known
let haveInfo = false;

// fetch() with a timeout, so a hung server cannot stall the polling loop forever.
async function request(url, options = {}) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), FETCH_TIMEOUT_MS);
  try {
    return await fetch(url, { cache: 'no-store', ...options, signal: ctrl.signal });
  } finally {
    clearTimeout(timer);
  }
}

// Turns a failed response / exception into a human readable message.
async function describeFailure(res, err) {
  if (err) return err.name === 'AbortError' ? 'server did not respond (timeout)' : 'network error: ' + err.message;
  if (res.status === 401) return 'authentication required (401) — reload the page to sign in';
  const text = (await res.text().catch(() => '')).trim();
  return `HTTP ${res.status}${text ? ': ' + text : ''}`;
}

function showNotice(msg) {
  notice.textContent = msg || '';
}

// Header version + RTSP port; retried on each poll until it succeeds once.
async function loadInfo() {
  try {
    const res = await request('api');
    if (!res.ok) return;
    const info = await res.json();
    const ver = [];
    if (info.corecast_version) ver.push('corecast ' + info.corecast_version);
    if (info.version) ver.push('API ' + info.version);
    $('version').textContent = ver.join(' · ');
    const listen = info.rtsp && info.rtsp.listen;
    const m = typeof listen === 'string' && listen.match(/:(\d+)$/);
    if (m) rtspPort = m[1];
    haveInfo = true;
  } catch (_) {
    // ignored: the streams poll reports connectivity problems
  }
}

function streamState(s) {
  if (s.error) return 'error';
  // `online` is corecast's flag; go2rtc lists idle sources as producers with a URL only.
  if (s.online === true || (s.online === undefined && (s.producers || []).some((p) => p.remote_addr || p.medias))) return 'online';
  return 'idle';
}

// Unique codec names across producers; falls back to the last token of `medias`.
function streamCodecs(s) {
  const names = new Set();
  for (const p of s.producers || []) {
    for (const c of p.codecs || []) if (c.codec_name) names.add(c.codec_name.toUpperCase());
    if (!p.codecs) {
      for (const m of p.medias || []) {
        const parts = String(m).split(',');
        if (parts.length >= 3) names.add(parts[parts.length - 1].trim().toUpperCase());
      }
    }
  }
  return [...names].join(', ');
}

function rtspUrl(name) {
  // Keep '/' readable in names; escape everything else that is unsafe in a path.
  const path = encodeURIComponent(name).replace(/%2F/gi, '/');
  return `rtsp://${location.hostname}:${rtspPort}/${path}`;
}

// Small DOM helper: el('a', {href: 'x', textContent: 'y'}, child...)
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function buildRow(name, view) {
  const q = encodeURIComponent(name);

  const state = el('td', { class: 'state-cell' }, el('span', { class: 'state ' + view.state, textContent: view.state }));
  if (view.error) state.append(el('span', { class: 'err-text', textContent: view.error }));

  const links = el('span', { class: 'links' },
    el('a', { href: 'stream.html?src=' + q, textContent: 'play' }),
    el('a', { href: 'api/stream.mp4?src=' + q, textContent: 'mp4', target: '_blank' }),
    el('a', { href: 'api/stream.ts?src=' + q, textContent: 'ts', target: '_blank' }),
    el('a', { href: 'api/frame.jpeg?src=' + q, textContent: 'jpeg', target: '_blank' }),
    el('a', { href: 'api/stream.mjpeg?src=' + q, textContent: 'mjpeg', target: '_blank' }));

  const rtspInput = el('input', { type: 'text', readOnly: true, value: view.rtsp, 'aria-label': 'RTSP URL' });
  rtspInput.addEventListener('focus', () => rtspInput.select());
  const copyBtn = el('button', { type: 'button', textContent: 'copy', title: 'Copy RTSP URL' });
  copyBtn.addEventListener('click', () => copyText(view.rtsp, rtspInput, copyBtn));

  const delBtn = el('button', { type: 'button', class: 'danger', textContent: 'delete' });
  delBtn.addEventListener('click', () => deleteStream(name));

  // data-label is shown instead of the table header in the narrow (card) layout.
  state.dataset.label = 'State';
  const tr = el('tr', {},
    el('td', { class: 'name', textContent: name }),
    state,
    el('td', { textContent: view.codecs || '—', 'data-label': 'Codecs' }),
    el('td', { textContent: String(view.viewers), 'data-label': 'Viewers' }),
    el('td', { 'data-label': 'Links' }, links),
    el('td', { 'data-label': 'RTSP' }, el('div', { class: 'rtsp' }, rtspInput, copyBtn)),
    el('td', { class: 'actions' }, delBtn));
  tr.dataset.name = name;
  return tr;
}

async function copyText(text, input, btn) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    // Clipboard API needs a secure context; fall back to the legacy path.
    input.select();
    document.execCommand && document.execCommand('copy');
  }
  btn.textContent = 'copied';
  setTimeout(() => { btn.textContent = 'copy'; }, 1200);
}

// Rows are rebuilt only when their content changes, so polling does not
// disturb a selection in the RTSP field or a focused button.
const rowCache = new Map(); // name -> { key, tr }

function render(streams) {
  const names = Object.keys(streams).sort((a, b) => a.localeCompare(b));
  if (names.length === 0) {
    rowCache.clear();
    tbody.replaceChildren(el('tr', {}, el('td', { class: 'empty', colSpan: 7, textContent: 'No streams configured.' })));
    return;
  }

  const rows = names.map((name) => {
    const s = streams[name] || {};
    const view = {
      state: streamState(s),
      error: s.error || '',
      codecs: streamCodecs(s),
      viewers: Array.isArray(s.consumers) ? s.consumers.length : 0,
      rtsp: rtspUrl(name),
    };
    const key = JSON.stringify(view);
    let cached = rowCache.get(name);
    if (!cached || cached.key !== key) {
      cached = { key, tr: buildRow(name, view) };
      rowCache.set(name, cached);
    }
    return cached.tr;
  });

  for (const name of [...rowCache.keys()]) if (!(name in streams)) rowCache.delete(name);

  // Only touch the DOM if order/identity of rows changed.
  const current = [...tbody.children];
  if (current.length !== rows.length || rows.some((tr, i) => current[i] !== tr)) {
    tbody.replaceChildren(...rows);
  }
}

async function refresh() {
  let res;
  try {
    res = await request('api/streams');
  } catch (err) {
    showNotice(await describeFailure(null, err));
    return;
  }
  if (!res.ok) {
    showNotice(await describeFailure(res));
    return;
  }
  try {
    render((await res.json()) || {});
    showNotice('');
  } catch (err) {
    showNotice('bad response from api/streams: ' + err.message);
  }
}

// setTimeout chain (not setInterval) so slow responses never overlap.
async function poll() {
  if (!haveInfo) await loadInfo();
  await refresh();
  setTimeout(poll, POLL_MS);
}

async function deleteStream(name) {
  if (!confirm(`Delete stream "${name}"?`)) return;
  try {
    const res = await request('api/streams?src=' + encodeURIComponent(name), { method: 'DELETE' });
    if (!res.ok) showNotice(`delete "${name}" failed: ` + await describeFailure(res));
  } catch (err) {
    showNotice(`delete "${name}" failed: ` + await describeFailure(null, err));
  }
  refresh();
}

$('add-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const addError = $('add-error');
  const name = form.elements.name.value.trim();
  const src = form.elements.src.value.trim();
  if (!name || !src) return;

  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  addError.textContent = '';
  try {
    const url = 'api/streams?name=' + encodeURIComponent(name) + '&src=' + encodeURIComponent(src);
    const res = await request(url, { method: 'PUT' });
    if (res.ok) {
      form.reset();
    } else {
      addError.textContent = await describeFailure(res);
    }
  } catch (err) {
    addError.textContent = await describeFailure(null, err);
  } finally {
    button.disabled = false;
  }
  refresh();
});

poll();
