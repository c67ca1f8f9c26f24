//! The HTTP server: go2rtc's API, live media over HTTP (fMP4, MPEG-TS, ADTS, snapshots),
//! go2rtc's WebSocket protocol (MSE), Prometheus metrics and the embedded web UI.
//!
//! Our own HTTP/1.1 on `corecast::http` (httparse underneath): keep-alive, pipelining,
//! chunked responses for live streams, strict limits. A malformed request gets its status
//! (400/413/414/431/501/505) and the connection closes; nothing else is affected.

use crate::api::{self, Reply};
use crate::core::hub::Shard;
use crate::core::registry::{ConsumerInfo, ConsumerStats};
use crate::io::conn::HttpConn;
use crate::io::sendv;
use crate::muxers::{self, MuxReader, Variant};
use crate::sources::hardware;
use bytes::Bytes;
use corecast::http::{self, response, ws, HeadSlot, Limits, Request};
use corecast::packet::Packet;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, UnixListener};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// A keep-alive connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A live response whose socket accepts nothing for this long is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest WebSocket message we accept from a client (signalling only).
const MAX_WS_MESSAGE: usize = 64 << 10;
/// Fragments written per batch: each is a whole frame (or several), so a few make a large
/// write; a small batch keeps each viewer's vectors small.
const BATCH: usize = 16;
/// Bytes asked of the socket per request read (a request can take several).
const READ_CHUNK: usize = 4096;

pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let sh = shard.clone();
                glommio::spawn_local(async move { handle(sh, HttpConn::Tcp(stream), peer).await })
                    .detach();
            }
            Err(e) => {
                warn!(shard = shard.id, error = %e, "http accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Counts an open connection for metrics while it lives.
struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Counted<'a> {
    fn new(c: &'a std::sync::atomic::AtomicUsize) -> Self {
        c.fetch_add(1, Relaxed);
        Counted(c)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Adds one back to a counter when dropped (undoes a temporary decrement).
struct Restore<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Relaxed);
    }
}

/// How a request left the connection.
enum After {
    KeepAlive,
    Close,
}

/// How Unix-socket clients appear (go2rtc treats them as loopback: exempt from auth unless
/// `local_auth`, the same rule as 127.0.0.1).
pub const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The API on a Unix socket (`api: unix_listen`), served by one shard.
pub async fn serve_unix(shard: Rc<Shard>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let sh = shard.clone();
                glommio::spawn_local(
                    async move { handle(sh, HttpConn::Unix(stream), UNIX_PEER).await },
                )
                .detach();
            }
            Err(e) => {
                warn!(shard = shard.id, error = %e, "http unix accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(shard: Rc<Shard>, mut stream: HttpConn, peer: SocketAddr) {
    let stats = &shard.registry.shards[shard.id];
    let _counted = Counted::new(&stats.http_connections);
    stream.set_read_timeout(Some(IDLE_TIMEOUT));
    stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let limits = Limits::default();
    // Requests are read straight into `buf`, which is released once it holds nothing: a
    // connection that streams or waits for its next request keeps no read buffer.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match http::parse_request(&buf, &limits) {
            Ok(Some((req, consumed))) => {
                buf.drain(..consumed);
                if buf.is_empty() {
                    buf = Vec::new();
                }
                debug!(method = %req.method, target = %req.target, %peer, "http request");
                // Boxed: the request's future (3 KiB, the WebRTC offer's) lives only
                // while it runs, not in every idle keep-alive connection.
                match Box::pin(dispatch(&shard, &mut stream, peer, req)).await {
                    After::KeepAlive => continue,
                    After::Close => break,
                }
            }
            Ok(None) if buf.is_empty() => {
                // Waiting for the next request (a WHEP client keeps its connection for
                // the DELETE): one byte, so that an idle connection holds no buffer.
                let mut first = [0u8; 1];
                match stream.read_idle(&mut first, IDLE_TIMEOUT).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        buf.reserve_exact(1 + READ_CHUNK);
                        buf.push(first[0]);
                    }
                }
            }
            Ok(None) => {
                let start = buf.len();
                buf.resize(start + READ_CHUNK, 0);
                match stream.read_idle(&mut buf[start..], IDLE_TIMEOUT).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.truncate(start + n),
                }
            }
            Err(e) => {
                let status = e.status();
                debug!(%peer, error = %e, status, "bad http request");
                let body = format!("{e}\n");
                let mut out = response::head(
                    status,
                    &[("Content-Type", "text/plain; charset=utf-8")],
                    Some(body.len()),
                    false,
                );
                out.extend_from_slice(body.as_bytes());
                let _ = stream.write_all(&out).await;
                break;
            }
        }
    }
    stream.close().await;
}

/// Headers every response carries: CORS when `api: origin: "*"`.
fn common_headers(shard: &Shard) -> Vec<(&'static str, String)> {
    match shard.config.api.origin.as_deref() {
        Some(o) => vec![
            ("Access-Control-Allow-Origin", o.to_string()),
            (
                "Access-Control-Allow-Methods",
                "GET, POST, PUT, PATCH, DELETE, OPTIONS".into(),
            ),
            (
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type".into(),
            ),
        ],
        None => Vec::new(),
    }
}

async fn send_reply(
    shard: &Shard,
    stream: &mut HttpConn,
    req: &Request,
    reply: Reply,
    extra: &[(&str, String)],
) -> After {
    let keep = req.keep_alive();
    let common = common_headers(shard);
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", reply.ctype)];
    headers.extend(common.iter().map(|(k, v)| (*k, v.as_str())));
    headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    let mut out = response::head(reply.status, &headers, Some(reply.body.len()), keep);
    if req.method != "HEAD" {
        out.extend_from_slice(&reply.body);
    }
    if stream.write_all(&out).await.is_err() {
        return After::Close;
    }
    if keep {
        After::KeepAlive
    } else {
        After::Close
    }
}

async fn dispatch(
    shard: &Rc<Shard>,
    stream: &mut HttpConn,
    peer: SocketAddr,
    req: Request,
) -> After {
    // go2rtc's `base_path`: everything lives under the prefix.
    let base = shard.config.api.base_path.as_str();
    let path = match req.path.strip_prefix(base) {
        Some("") => "/".to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        _ => {
            return send_reply(shard, stream, &req, Reply::text(404, "not found"), &[]).await;
        }
    };
    // Basic auth (go2rtc: loopback clients are exempt unless `local_auth`).
    let api = &shard.config.api;
    if let Some(user) = &api.username {
        let pass = api.password.as_deref().unwrap_or("");
        if (api.local_auth || !corecast::policy::is_local_peer(peer.ip()))
            && !response::basic_auth_ok(req.header("authorization"), user, pass)
        {
            return send_reply(
                shard,
                stream,
                &req,
                Reply::text(401, "unauthorized"),
                // go2rtc's realm: clients that match on it keep working.
                &[("WWW-Authenticate", "Basic realm=\"go2rtc\"".into())],
            )
            .await;
        }
    }
    // go2rtc's `allow_paths`: only the listed paths exist (Home Assistant lists the few it
    // uses). "/" keeps the web UI's files, as go2rtc's catch-all static handler does.
    if let Some(allowed) = &api.allow_paths {
        let full = format!("{base}{path}");
        let ok = allowed.contains(&full)
            || (allowed.iter().any(|p| p == "/") && static_file(&path).is_some());
        if !ok {
            return send_reply(shard, stream, &req, Reply::text(404, "not found"), &[]).await;
        }
    }
    // A web page elsewhere must not drive the API through the visitor's browser (CSRF: a
    // form POST needs no CORS). Browsers send `Origin` with such requests; without
    // `api: origin: "*"` (which opts in to cross-origin use, as Frigate's config does) a
    // changing request from another origin is refused. Server-side clients send no Origin.
    if matches!(req.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
        && api.origin.as_deref() != Some("*")
    {
        if let Some(origin) = req.header("origin") {
            let from = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
            if Some(from) != req.header("host") {
                warn!(%peer, origin, "cross-origin API request refused");
                let reply = Reply::text(
                    403,
                    "cross-origin request refused (api: origin: \"*\" allows it)",
                );
                return send_reply(shard, stream, &req, reply, &[]).await;
            }
        }
    }
    if req.method == "OPTIONS" {
        let reply = Reply {
            status: 204,
            ctype: "text/plain",
            body: Vec::new(),
        };
        return send_reply(shard, stream, &req, reply, &[]).await;
    }
    let get = req.method == "GET" || req.method == "HEAD";
    // Live media and snapshots do real work per request: GET only (HEAD gets 405).
    let media_get = req.method == "GET";
    // Hidden muxer outputs (`NAME\0VARIANT`) are not addressable.
    if req.query("src").is_some_and(|s| s.contains('\0')) {
        return send_reply(shard, stream, &req, Reply::text(400, "invalid `src`"), &[]).await;
    }
    let reply = match path.as_str() {
        "/api" if get => api::info(shard, &req),
        "/api/streams" => api::streams_endpoint(shard, &req).await,
        "/api/config" => api::config_endpoint(shard, &req).await,
        "/api/schemes" if get => api::schemes(),
        "/api/ffmpeg/hardware" if get => hardware::api(&shard.config).await,
        "/api/preload" => api::preload_endpoint(shard, &req).await,
        "/api/streams.dot" if get => api::streams_dot(shard, &req),
        "/api/log" => api::log_endpoint(&req),
        "/api/restart" => api::restart_endpoint(&req),
        "/api/exit" => api::exit_endpoint(&req),
        "/metrics" if get => api::metrics(shard),
        "/api/ws" if req.method == "GET" => return websocket(shard, stream, peer, req).await,
        "/api/webrtc" => {
            let (reply, extra) = crate::egress::webrtc::signal::http(shard, &req, peer).await;
            return send_reply(shard, stream, &req, reply, &extra).await;
        }
        // The old RTSPtoWebRTC integration's path (form `data=<base64 offer>`).
        p if p.starts_with("/stream/") && p.ends_with("/channel/0/webrtc") => {
            let reply = crate::egress::webrtc::signal::legacy(shard, &req, peer, p).await;
            return send_reply(shard, stream, &req, reply, &[]).await;
        }
        "/api/stream.mp4" if media_get => {
            return live(shard, stream, peer, req, Variant::Mp4).await
        }
        "/api/stream.ts" if media_get => return live(shard, stream, peer, req, Variant::Ts).await,
        "/api/stream.aac" if media_get => {
            return live(shard, stream, peer, req, Variant::Aac).await
        }
        "/api/frame.mp4" | "/api/frame.jpeg" if media_get => {
            return snapshot(shard, stream, peer, req, path.ends_with(".jpeg")).await
        }
        "/api/stream.mjpeg" if media_get => {
            return live(shard, stream, peer, req, Variant::Mjpeg).await
        }
        p if get => match static_file(p) {
            Some((ctype, body)) => Reply {
                status: 200,
                ctype,
                body: body.to_vec(),
            },
            None => Reply::text(404, "not found"),
        },
        "/api" | "/api/schemes" | "/metrics" | "/api/stream.mp4" | "/api/stream.ts"
        | "/api/stream.aac" | "/api/stream.mjpeg" | "/api/frame.mp4" | "/api/frame.jpeg" => {
            Reply::text(405, "method not allowed")
        }
        _ => Reply::text(404, "not found"),
    };
    send_reply(shard, stream, &req, reply, &[]).await
}

/// The web UI, embedded at build time.
fn static_file(path: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match path {
        "/" | "/index.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../../../www/index.html"),
        ),
        "/stream.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../../../www/stream.html"),
        ),
        "/app.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../../../www/app.css"),
        ),
        "/index.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../../www/index.js"),
        ),
        "/player.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../../www/player.js"),
        ),
        // go2rtc's path for publishing the browser's camera; publish.html is the plain name.
        "/webrtc.html" | "/publish.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../../../www/webrtc.html"),
        ),
        "/publish.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../../www/publish.js"),
        ),
        _ => return None,
    })
}

/// A registered consumer, removed from the registry when dropped.
struct Consumer {
    shard: Rc<Shard>,
    name: String,
    info: Arc<ConsumerInfo>,
}

impl Consumer {
    fn register(
        shard: &Rc<Shard>,
        name: &str,
        peer: SocketAddr,
        req: &Request,
        format_name: &'static str,
        protocol: &'static str,
        tracks: Vec<usize>,
    ) -> Consumer {
        let info = Arc::new(ConsumerInfo {
            id: shard.registry.next_id(),
            shard: shard.id,
            format_name,
            protocol,
            remote_addr: crate::io::listen::peer_text(peer),
            user_agent: req.header("user-agent").unwrap_or("").to_string(),
            tracks,
            stats: ConsumerStats::default(),
        });
        shard.viewer_joined(name, info.clone());
        Consumer {
            shard: shard.clone(),
            name: name.to_string(),
            info,
        }
    }

    /// Counts a delivered batch; the shared counters see it on the policy's cadence.
    fn sent(&self, packets: u64, bytes: u64, reader: &mut MuxReader) {
        if let Some(st) = reader.delivered(packets, bytes) {
            crate::egress::rtsp::publish_stats(&self.info.stats, st);
        }
    }

    /// Publishes what is still pending (the viewer is leaving).
    fn finish(&self, reader: &mut MuxReader) {
        crate::egress::rtsp::publish_stats(&self.info.stats, reader.take_stats());
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.shard.viewer_left(&self.name, self.info.id);
    }
}

/// Starts the stream's source if needed; the error names what went wrong.
async fn ensure_source(shard: &Rc<Shard>, name: &str, req: &Request) -> Result<(), Reply> {
    if !shard.registry.lock().streams.contains_key(name) {
        return Err(Reply::text(404, format!("stream `{name}` not found")));
    }
    let ua = req.header("user-agent").unwrap_or("");
    crate::sources::lifecycle::ensure(shard, name, None, ua)
        .await
        .map_err(|e| Reply::text(502, format!("stream `{name}`: {e}")))
}

/// Starts the stream's source for an fMP4 viewer that accepts `accept`, dialling the stream's
/// later sources when only they carry what it accepts (as RTSP readers' filters do), then
/// picks its tracks. The error names the stream, its codecs and what was accepted.
async fn mp4_tracks(
    shard: &Rc<Shard>,
    name: &str,
    req: &Request,
    accept: &corecast::filter::Filter,
) -> Result<Variant, Reply> {
    if !shard.registry.lock().streams.contains_key(name) {
        return Err(Reply::text(404, format!("stream `{name}` not found")));
    }
    let ua = req.header("user-agent").unwrap_or("");
    let query = muxers::accept_query(accept);
    crate::sources::lifecycle::ensure(shard, name, Some(&query), ua)
        .await
        .map_err(|e| Reply::text(502, format!("stream `{name}`: {e}")))?;
    let sdp = shard
        .registry
        .reader_sdp(name)
        .ok_or_else(|| Reply::text(404, format!("stream `{name}` is not live")))?;
    muxers::choose_mp4(&sdp, accept).ok_or_else(|| {
        let have = muxers::stream_codecs(&sdp);
        Reply::text(
            415,
            format!(
                "stream `{name}` ({have}) has no track this viewer accepts ({query}); \
                 MP4 carries {}",
                muxers::MP4_CARRIES
            ),
        )
    })
}

/// `attachment; filename="NAME"` with quotes, backslashes and control characters dropped
/// (they would end the header or the quoted string), at most 255 characters.
fn attachment(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .take(255)
        .collect();
    if clean.is_empty() {
        return String::new();
    }
    format!("attachment; filename=\"{clean}\"")
}

/// How a live body frames each fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// HTTP/1.1 chunked: size line, data, CRLF.
    Chunked,
    /// HTTP/1.0, delimited by the close: the data as is.
    Raw,
    /// One binary WebSocket frame per fragment (MSE).
    WsBinary,
}

/// Frames one batch of fragments for one viewer: a header per fragment in the reused
/// fixed slots `hdrs`, then the iovecs of one vectored write in `iov` (headers and the
/// shared payloads, never copied). Allocates only while the two vectors grow to a batch's
/// size. Returns the payload bytes. `iov` points into `hdrs` and `batch`: write it before
/// either changes.
pub fn frame_batch(
    framing: Framing,
    batch: &[Rc<Packet>],
    hdrs: &mut Vec<HeadSlot>,
    iov: &mut Vec<libc::iovec>,
) -> u64 {
    hdrs.clear();
    iov.clear();
    match framing {
        Framing::Chunked => hdrs.extend(batch.iter().map(|p| match p.data.len() {
            // Skipped below: an empty chunk would end the body.
            0 => HeadSlot::default(),
            n => response::chunk_head(n),
        })),
        Framing::WsBinary => hdrs.extend(
            batch
                .iter()
                .map(|p| ws::frame_head(ws::OP_BINARY, p.data.len())),
        ),
        Framing::Raw => {}
    }
    let mut bytes = 0u64;
    for (i, p) in batch.iter().enumerate() {
        if p.data.is_empty() && framing == Framing::Chunked {
            continue;
        }
        if let Some(h) = hdrs.get(i) {
            iov.push(sendv::iovec(h));
        }
        iov.push(sendv::iovec(&p.data));
        if framing == Framing::Chunked {
            iov.push(sendv::iovec(response::CHUNK_END));
        }
        bytes += p.data.len() as u64;
    }
    bytes
}

/// A live HTTP or WebSocket viewer's media side, shared by its task and, while parked, the
/// stream's inline list (`Direct`): as for RTSP viewers (issue #10), a caught-up viewer is
/// written by the stream's notify from one buffer set per shard, and its task sleeps until
/// an inline write declines.
struct Live {
    reader: RefCell<MuxReader>,
    consumer: Consumer,
    framing: Framing,
    /// The socket for inline writes (None: a Unix socket, whose fd glommio hides; the task
    /// writes every batch).
    fd: Option<i32>,
    /// go2rtc's `duration=`: inline writes stop at it and leave the ending to the task.
    until: Option<Instant>,
    parking: crate::core::hub::Parking,
    /// What an inline write could not send (socket full): the task sends it first.
    spill: RefCell<Vec<u8>>,
    /// An inline write failed: the task ends the response.
    failed: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Inline writes' buffers, one set per shard (they never wait, so never overlap).
#[derive(Default)]
struct LiveScratch {
    batch: Vec<Rc<Packet>>,
    hdrs: Vec<HeadSlot>,
    iov: Vec<libc::iovec>,
    /// The write in one buffer, shared by the caught-up viewers of an output that a notify
    /// writes one after another (see `Gathered`).
    gathered: sendv::Gathered<Packet>,
}

thread_local! {
    static LIVE_SCRATCH: RefCell<LiveScratch> = RefCell::new(LiveScratch::default());
}

impl Live {
    fn new(
        reader: MuxReader,
        consumer: Consumer,
        framing: Framing,
        fd: Option<i32>,
        until: Option<Instant>,
    ) -> Rc<Live> {
        Rc::new(Live {
            reader: RefCell::new(reader),
            consumer,
            framing,
            fd,
            until,
            parking: Default::default(),
            spill: RefCell::new(Vec::new()),
            failed: Cell::new(false),
            waker: RefCell::new(None),
        })
    }

    /// The task runs again: any entry parked so far becomes stale (no inline write can
    /// interleave with the task's own), and what an inline write left goes first. False:
    /// the response is over (an inline write or this one failed).
    async fn resume(&self, stream: &mut HttpConn) -> bool {
        self.parking.unpark();
        let spill = std::mem::take(&mut *self.spill.borrow_mut());
        if !spill.is_empty() && stream.write_all(&spill).await.is_err() {
            return false;
        }
        !self.failed.get()
    }

    /// The task writes a batch (framed in its own `hdrs`/`iov`, which live across the
    /// wait for a full socket) and counts it; returns how many fragments it held.
    async fn send(
        &self,
        stream: &mut HttpConn,
        batch: &mut Vec<Rc<Packet>>,
        hdrs: &mut Vec<HeadSlot>,
        iov: &mut Vec<libc::iovec>,
    ) -> std::io::Result<usize> {
        let bytes = frame_batch(self.framing, batch, hdrs, iov);
        sendv::write_all_vectored(stream, iov).await?;
        let n = batch.len();
        batch.clear();
        self.consumer
            .sent(n as u64, bytes, &mut self.reader.borrow_mut());
        Ok(n)
    }

    /// After a batch of the task's: park when it emptied the ring (and was not a full
    /// batch), so that the stream's next notify writes this viewer inline.
    fn park_if_caught_up(self: &Rc<Self>, written: usize) -> bool {
        if self.fd.is_none() || written >= BATCH || !crate::egress::direct_allowed() {
            return false;
        }
        let reader = self.reader.borrow();
        if !reader.caught_up() {
            return false;
        }
        let entry = Rc::downgrade(self);
        reader.stream.park_direct(entry, self.parking.park());
        true
    }

    /// Waits while parked: until an inline write declines (more to send, the end, an
    /// error, a full socket).
    async fn wait_unparked(&self) {
        futures_lite::future::poll_fn(|cx| {
            if !self.parking.is_parked() {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The task's next batch, waiting for one (false: the output ended). The reader is
    /// borrowed only between waits.
    async fn next_batch(&self, out: &mut Vec<Rc<Packet>>) -> bool {
        loop {
            match self.reader.borrow_mut().try_batch(out, BATCH) {
                muxers::Batch::Data => return true,
                muxers::Batch::Closed => return false,
                muxers::Batch::Empty => {}
            }
            futures_lite::future::poll_fn(|cx| self.reader.borrow().poll_ready(cx)).await;
        }
    }

    /// One batch written without waiting; false when the task must take over.
    fn write_inline(&self, fd: i32) -> bool {
        if self.until.is_some_and(|t| Instant::now() >= t) {
            return false;
        }
        let Ok(mut reader) = self.reader.try_borrow_mut() else {
            return false;
        };
        LIVE_SCRATCH.with(|cell| {
            let Ok(mut sc) = cell.try_borrow_mut() else {
                return false;
            };
            let sc = &mut *sc;
            sc.batch.clear();
            match reader.try_batch(&mut sc.batch, BATCH) {
                muxers::Batch::Data => {}
                // Another notify than this output's data (nothing to write yet).
                muxers::Batch::Empty => return true,
                muxers::Batch::Closed => return false,
            }
            let n = sc.batch.len();
            let gather = crate::egress::gather_allowed();
            let tag = self.framing as u8;
            let key = sc.batch.iter().map(|p| (p, tag));
            // Most often the write the viewer before this one got: not framed again.
            let bytes = if gather && sc.gathered.reuse(&mut sc.iov, key.clone()) {
                sc.batch.iter().map(|p| p.data.len() as u64).sum()
            } else {
                let bytes = frame_batch(self.framing, &sc.batch, &mut sc.hdrs, &mut sc.iov);
                if gather {
                    sc.gathered.gather(&mut sc.iov, Some(key));
                }
                bytes
            };
            let sent = sendv::try_write_all(fd, &mut sc.iov, &mut self.spill.borrow_mut());
            sc.batch.clear();
            match sent {
                Ok(all) => {
                    self.consumer.sent(n as u64, bytes, &mut reader);
                    all && n < BATCH && reader.caught_up()
                }
                Err(_) => {
                    self.failed.set(true);
                    false
                }
            }
        })
    }

    /// Publishes what is still pending (the viewer is leaving).
    fn finish(&self) {
        self.consumer.finish(&mut self.reader.borrow_mut());
    }
}

/// A parked viewer, written inline at each notify of its output while its generation is
/// the viewer's.
impl crate::core::hub::Direct for Live {
    fn on_data(&self, generation: u64) -> bool {
        if !self.parking.holds(generation) {
            return false;
        }
        let Some(fd) = self.fd else {
            return false;
        };
        if self.write_inline(fd) {
            return true;
        }
        self.parking.unpark();
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
        false
    }
}

/// `stream.mp4` / `stream.ts` / `stream.aac` / `stream.mjpeg`: the shared muxer's output, live, until the
/// client leaves or the stream ends (or `duration=` seconds, as in go2rtc).
async fn live(
    shard: &Rc<Shard>,
    stream: &mut HttpConn,
    peer: SocketAddr,
    req: Request,
    mut v: Variant,
) -> After {
    let Some(name) = req.query("src").map(str::to_string) else {
        return send_reply(shard, stream, &req, Reply::text(400, "missing `src`"), &[]).await;
    };
    // MP4: the tracks this query accepts (go2rtc's `mp4`, `video=`, `audio=`), later sources
    // dialled when only they carry them.
    let started = if v == Variant::Mp4 {
        let accept = muxers::mp4_accept(&req.query);
        mp4_tracks(shard, &name, &req, &accept).await.map(|t| {
            // Its own muxer when it publishes at another interval than MSE's.
            v = match t {
                Variant::Mp4Tracks { video, audio, .. } => Variant::Mp4Tracks {
                    video,
                    audio,
                    paced: muxers::paced_progressive(shard),
                },
                t => t,
            }
        })
    } else {
        ensure_source(shard, &name, &req).await
    };
    if let Err(r) = started {
        return send_reply(shard, stream, &req, r, &[]).await;
    }
    let tracks = muxers::mp4_consumer_tracks(v);
    let consumer = Consumer::register(shard, &name, peer, &req, v.tag(), "http", tracks);
    let reader = match muxers::attach(shard, &name, v).await {
        Ok(r) => r,
        Err(e) => {
            return send_reply(
                shard,
                stream,
                &req,
                Reply::text(e.status(), e.to_string()),
                &[],
            )
            .await;
        }
    };
    // go2rtc's `duration=` (seconds); absurd values mean no limit.
    let until = req
        .query("duration")
        .and_then(|d| d.parse::<u64>().ok())
        .and_then(|s| Instant::now().checked_add(Duration::from_secs(s.min(1 << 32))));
    // HTTP/1.0 clients get a body delimited by the close instead of chunks.
    let chunked = req.version >= 1;
    // The head's strings are dropped once it is written: a viewer keeps nothing of them.
    let head = {
        let ctype = match v {
            // go2rtc names the codecs, as for MSE.
            Variant::Mp4 | Variant::Mp4Tracks { .. } => {
                format!("video/mp4; codecs=\"{}\"", reader.info.codecs)
            }
            Variant::Ts => "video/mp2t".into(),
            Variant::Aac => "audio/aac".into(),
            Variant::Mjpeg => "multipart/x-mixed-replace; boundary=frame".into(),
        };
        // go2rtc's `filename=`: a download rather than a player.
        let disposition = req
            .query("filename")
            .map(attachment)
            .filter(|d| !d.is_empty());
        let common = common_headers(shard);
        let mut headers: Vec<(&str, &str)> =
            vec![("Content-Type", &ctype), ("Cache-Control", "no-cache")];
        if let Some(d) = &disposition {
            headers.push(("Content-Disposition", d));
        }
        headers.extend(common.iter().map(|(k, val)| (*k, val.as_str())));
        if chunked {
            response::head(200, &headers, None, false)
        } else {
            response::head_close_delimited(200, &headers)
        }
    };
    // Nor of the request.
    drop(req);
    if stream.write_all(&head).await.is_err() {
        return After::Close;
    }
    drop(head);
    info!(stream = %name, %peer, format = v.tag(), "http viewer started");
    let framing = if chunked {
        Framing::Chunked
    } else {
        Framing::Raw
    };
    // Grown to a batch's size on first use, then reused: nothing allocated per fragment.
    let mut batch: Vec<Rc<Packet>> = Vec::new();
    let mut hdrs: Vec<HeadSlot> = Vec::new();
    let mut iov: Vec<libc::iovec> = Vec::new();
    let init = reader.info.init.clone();
    if !init.is_empty() {
        // The init segment is one more chunk (no copy of it).
        let h = response::chunk_head(init.len());
        if chunked {
            iov.push(sendv::iovec(&h));
        }
        iov.push(sendv::iovec(&init));
        if chunked {
            iov.push(sendv::iovec(response::CHUNK_END));
        }
        if sendv::write_all_vectored(stream, &mut iov).await.is_err() {
            return After::Close;
        }
    }
    // A live viewer sends nothing while it watches: no idle read timeout (as for MSE).
    stream.set_read_timeout(None);
    let fd = sendv::Sink::send_fd(stream);
    let live = Live::new(reader, consumer, framing, fd, until);
    let mut scratch = [0u8; 64];
    enum Ev {
        Gone,
        Media(bool),
    }
    loop {
        // Running again: whatever parked this viewer is over.
        if !live.resume(stream).await {
            break;
        }
        batch.clear();
        // The client sends nothing while it watches: a read that ends means it left, even
        // when the stream is stalled and nothing is being written. (glommio keeps the
        // socket's readiness poll armed across these reads: nothing is allocated per wait.)
        let ev = {
            let media = async { Ev::Media(live.next_batch(&mut batch).await) };
            let gone = async {
                client_gone(stream, &mut scratch).await;
                Ev::Gone
            };
            futures_lite::future::or(gone, media).await
        };
        match ev {
            Ev::Gone => break,
            Ev::Media(false) => {
                if chunked {
                    let _ = stream.write_all(response::LAST_CHUNK).await;
                }
                break;
            }
            Ev::Media(true) => {}
        }
        let Ok(n) = live.send(stream, &mut batch, &mut hdrs, &mut iov).await else {
            break;
        };
        if until.is_some_and(|t| Instant::now() >= t) {
            if chunked {
                let _ = stream.write_all(response::LAST_CHUNK).await;
            }
            break;
        }
        // Caught up: the stream's notify writes this viewer inline while its task sleeps
        // (until an inline write declines or the client leaves).
        if live.park_if_caught_up(n) {
            let gone = async {
                client_gone(stream, &mut scratch).await;
                true
            };
            let resumed = async {
                live.wait_unparked().await;
                false
            };
            if futures_lite::future::or(gone, resumed).await {
                break;
            }
        }
    }
    debug!(stream = %name, %peer, format = v.tag(), "http viewer left");
    live.finish();
    After::Close
}

/// Returns when the client of a live response leaves (it sends nothing while it watches).
async fn client_gone(stream: &mut HttpConn, scratch: &mut [u8]) {
    loop {
        match stream.read(scratch).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// `frame.mp4` (one keyframe as MP4) and `frame.jpeg` (see `muxers::snapshot`: a JPEG
/// track's picture, or a keyframe decoded, scaled and rotated by ffmpeg; `cache=`).
async fn snapshot(
    shard: &Rc<Shard>,
    stream: &mut HttpConn,
    _peer: SocketAddr,
    req: Request,
    jpeg: bool,
) -> After {
    let Some(name) = req.query("src").map(str::to_string) else {
        return send_reply(shard, stream, &req, Reply::text(400, "missing `src`"), &[]).await;
    };
    let jpeg_query = match jpeg.then(|| muxers::snapshot::JpegQuery::parse(|k| req.query(k))) {
        Some(Err(e)) => {
            let r = Reply::text(400, format!("stream `{name}`: {e}"));
            return send_reply(shard, stream, &req, r, &[]).await;
        }
        Some(Ok(q)) => Some(q),
        None => None,
    };
    let cached = jpeg_query
        .as_ref()
        .filter(|_| shard.registry.lock().streams.contains_key(&name))
        .and_then(|q| muxers::snapshot::cached(&name, q));
    if let Some(b) = cached {
        let reply = Reply {
            status: 200,
            ctype: "image/jpeg",
            body: b.to_vec(),
        };
        let headers = [("Cache-Control", "no-cache".into())];
        return send_reply(shard, stream, &req, reply, &headers).await;
    }
    if let Err(r) = ensure_source(shard, &name, &req).await {
        return send_reply(shard, stream, &req, r, &[]).await;
    }
    let reply = match jpeg_query {
        Some(q) => match muxers::snapshot::frame_jpeg(shard, &name, &q).await {
            Ok(b) => Reply {
                status: 200,
                ctype: "image/jpeg",
                body: b.to_vec(),
            },
            Err(e) => {
                if matches!(e, muxers::MuxError::Transcode(_) | muxers::MuxError::Busy) {
                    warn!(stream = %name, error = %e, "snapshot failed");
                }
                Reply::text(e.status(), format!("stream `{name}`: {e}"))
            }
        },
        None => match muxers::keyframe(shard, &name).await {
            Err(e) => Reply::text(e.status(), format!("stream `{name}`: {e}")),
            Ok((Some(cfg), frame, _)) => Reply {
                status: 200,
                ctype: "video/mp4",
                body: muxers::frame_mp4(cfg, frame).to_vec(),
            },
            Ok((None, _, _)) => Reply::text(415, "frame.mp4 needs an H.264 or H.265 track"),
        },
    };
    send_reply(
        shard,
        stream,
        &req,
        reply,
        &[("Cache-Control", "no-cache".into())],
    )
    .await
}

/// go2rtc's WebSocket messages: `{"type": ..., "value": ...}`.
#[derive(Deserialize)]
struct WsIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    value: Option<simd_json::OwnedValue>,
}

#[derive(Serialize)]
struct WsOut<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    value: &'a str,
}

fn ws_json(kind: &str, value: &str) -> Vec<u8> {
    let text = simd_json::to_string(&WsOut { kind, value }).unwrap_or_default();
    ws::text_frame(&text)
}

/// `GET /api/ws?src=NAME`: go2rtc's WebSocket protocol. Supported message: `mse` (answer
/// the codecs, then binary fMP4: init segment, fragments). Anything else gets an `error`
/// message and the socket stays open.
async fn websocket(
    shard: &Rc<Shard>,
    stream: &mut HttpConn,
    peer: SocketAddr,
    req: Request,
) -> After {
    let Some(key) = req.websocket_key().map(str::to_string) else {
        return send_reply(
            shard,
            stream,
            &req,
            Reply::text(400, "not a WebSocket upgrade"),
            &[],
        )
        .await;
    };
    let common = common_headers(shard);
    let extra: Vec<(&str, &str)> = common.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if stream
        .write_all(&response::websocket_accept(&key, &extra))
        .await
        .is_err()
    {
        return After::Close;
    }
    let stats = &shard.registry.shards[shard.id];
    // Counted as a WebSocket from here on, not as plain HTTP.
    stats.http_connections.fetch_sub(1, Relaxed);
    let _ws = Counted::new(&stats.ws_connections);
    let _http_again = Restore(&stats.http_connections);
    let name = req.query("src").map(str::to_string);
    let mut dec = ws::Decoder::new(MAX_WS_MESSAGE);
    let mut rbuf: Vec<u8> = Vec::new();
    // Client messages are small (signalling); a larger one takes several reads.
    let mut chunk = vec![0u8; 1024];
    let mut playing: Option<Rc<Live>> = None;
    let fd = sendv::Sink::send_fd(stream);
    // Set when the last media batch parked the viewer: the next wait keeps it parked.
    let mut parked_now = false;
    let mut batch: Vec<Rc<Packet>> = Vec::new();
    let mut hdrs: Vec<HeadSlot> = Vec::new();
    let mut iov: Vec<libc::iovec> = Vec::new();
    // A live viewer sends nothing for long stretches: no read timeout while playing.
    stream.set_read_timeout(None);
    'conn: loop {
        // Running for anything but the wait right after parking: whatever parked the
        // viewer is over, and what an inline write left goes before any reply.
        if !std::mem::take(&mut parked_now) {
            if let Some(l) = &playing {
                if !l.resume(stream).await {
                    break;
                }
            }
        }
        // Handle every complete message buffered.
        loop {
            match dec.decode(&rbuf) {
                Ok((msg, used)) => {
                    rbuf.drain(..used);
                    let Some(msg) = msg else {
                        if used == 0 {
                            break;
                        }
                        continue;
                    };
                    match msg {
                        ws::Message::Text(t) => {
                            let out =
                                on_ws_text(shard, peer, &req, name.as_deref(), t, fd, &mut playing)
                                    .await;
                            if stream.write_all(&out).await.is_err() {
                                break 'conn;
                            }
                        }
                        ws::Message::Binary(_) => {
                            let out = ws_json("error", "binary messages are not expected");
                            if stream.write_all(&out).await.is_err() {
                                break 'conn;
                            }
                        }
                        ws::Message::Ping(p) => {
                            if stream.write_all(&ws::pong_frame(&p)).await.is_err() {
                                break 'conn;
                            }
                        }
                        ws::Message::Pong(_) => {}
                        ws::Message::Close(code, _) => {
                            let _ = stream
                                .write_all(&ws::close_frame(code.unwrap_or(1000), ""))
                                .await;
                            break 'conn;
                        }
                    }
                }
                Err(e) => {
                    debug!(%peer, error = %e, "bad websocket frame");
                    let _ = stream
                        .write_all(&ws::close_frame(e.close_code(), &e.to_string()))
                        .await;
                    break 'conn;
                }
            }
        }
        // Wait for client bytes or media.
        enum Ev {
            Read(std::io::Result<usize>),
            Media(bool),
            /// An inline write declined: the task takes over.
            Resumed,
        }
        let ev = match playing.as_ref() {
            Some(l) => {
                batch.clear();
                let media = async {
                    if l.parking.is_parked() {
                        l.wait_unparked().await;
                        return Ev::Resumed;
                    }
                    Ev::Media(l.next_batch(&mut batch).await)
                };
                let read = async { Ev::Read(stream.read(&mut chunk).await) };
                futures_lite::future::or(read, media).await
            }
            None => {
                let r = glommio::timer::timeout(IDLE_TIMEOUT, async {
                    Ok(stream.read(&mut chunk).await)
                })
                .await;
                Ev::Read(r.unwrap_or(Ok(0)))
            }
        };
        match ev {
            Ev::Read(Ok(0)) | Ev::Read(Err(_)) => break,
            Ev::Read(Ok(n)) => {
                rbuf.extend_from_slice(&chunk[..n]);
                if rbuf.len() > MAX_WS_MESSAGE + 16 {
                    // The decoder consumes complete frames; this much unconsumed input
                    // means a frame larger than allowed is being announced.
                    let _ = stream
                        .write_all(&ws::close_frame(1009, "message too large"))
                        .await;
                    break;
                }
            }
            Ev::Media(false) => {
                let _ = stream.write_all(&ws_json("error", "stream ended")).await;
                let _ = stream
                    .write_all(&ws::close_frame(1000, "stream ended"))
                    .await;
                break;
            }
            Ev::Resumed => {}
            Ev::Media(true) => {
                let Some(l) = playing.as_ref() else {
                    continue;
                };
                let Ok(n) = l.send(stream, &mut batch, &mut hdrs, &mut iov).await else {
                    break;
                };
                parked_now = l.park_if_caught_up(n);
            }
        }
    }
    if let Some(l) = playing.as_ref() {
        l.finish();
    }
    drop(playing);
    After::Close
}

/// Answers one text message; starts MSE on `{"type":"mse"}`.
async fn on_ws_text(
    shard: &Rc<Shard>,
    peer: SocketAddr,
    req: &Request,
    name: Option<&str>,
    text: String,
    fd: Option<i32>,
    playing: &mut Option<Rc<Live>>,
) -> Vec<u8> {
    let mut raw = text.into_bytes();
    let msg: WsIn = match simd_json::from_slice(&mut raw) {
        Ok(m) => m,
        Err(e) => return ws_json("error", &format!("invalid message: {e}")),
    };
    // go2rtc prefixes an error with the type it answers ("mse: ..."): its player falls back
    // to another mode when the error starts with the mode it asked for.
    let kind = msg.kind.as_str();
    let fail = |e: &str| ws_json("error", &format!("{kind}: {e}"));
    match kind {
        "mse" => {
            if playing.is_some() {
                return fail("already started on this socket");
            }
            let Some(name) = name else {
                return fail("missing `src` in the WebSocket URL");
            };
            // The browser's codec list picks the tracks (and so the muxer) it gets.
            let client = msg
                .value
                .as_ref()
                .and_then(|v| simd_json::prelude::ValueAsScalar::as_str(v))
                .unwrap_or("")
                .to_string();
            let accept = muxers::mse_accept(&client);
            let v = match mp4_tracks(shard, name, req, &accept).await {
                Ok(v) => v,
                Err(r) => return fail(String::from_utf8_lossy(&r.body).trim()),
            };
            let tracks = muxers::mp4_consumer_tracks(v);
            let consumer = Consumer::register(shard, name, peer, req, "mse", "ws", tracks);
            let reader = match muxers::attach(shard, name, v).await {
                Ok(r) => r,
                Err(e) => return fail(&format!("stream `{name}`: {e}")),
            };
            info!(stream = name, %peer, codecs = %reader.info.codecs, "mse viewer started");
            // go2rtc answers the MIME type players pass to addSourceBuffer as is.
            let mime = format!("video/mp4; codecs=\"{}\"", reader.info.codecs);
            let mut out = ws_json("mse", &mime);
            let init: Bytes = reader.info.init.clone();
            out.extend_from_slice(&ws::frame_header(ws::OP_BINARY, init.len()));
            out.extend_from_slice(&init);
            consumer
                .info
                .stats
                .bytes
                .fetch_add(init.len() as u64, Relaxed);
            *playing = Some(Live::new(reader, consumer, Framing::WsBinary, fd, None));
            out
        }
        "webrtc" | "webrtc/offer" | "webrtc/candidate" => {
            let texts =
                crate::egress::webrtc::signal::ws(shard, peer, req, name, kind, msg.value.as_ref())
                    .await;
            texts.iter().flat_map(|t| ws::text_frame(t)).collect()
        }
        _ => fail("unsupported message type (this server speaks `mse` and `webrtc`)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(data: &'static [u8]) -> Rc<Packet> {
        Rc::new(Packet {
            data: Bytes::from_static(data),
            track: 0,
            seq: 0,
            timestamp: 0,
            marker: true,
            keyframe: false,
            arrival: 0,
            payload_offset: 0,
        })
    }

    /// The bytes a vectored write of `iov` sends.
    #[allow(unsafe_code)]
    fn gather(iov: &[libc::iovec]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in iov {
            // SAFETY: made by `sendv::iovec` from slices the test still holds.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
            });
        }
        out
    }

    #[test]
    fn batches_are_framed_in_place() {
        let batch = [fragment(b"hello"), fragment(b""), fragment(&[7; 300])];
        let (mut hdrs, mut iov) = (Vec::new(), Vec::new());
        let n = frame_batch(Framing::Chunked, &batch, &mut hdrs, &mut iov);
        let mut want = b"5\r\nhello\r\n12c\r\n".to_vec();
        want.extend_from_slice(&[7; 300]);
        want.extend_from_slice(b"\r\n");
        assert_eq!((n, gather(&iov)), (305, want));
        frame_batch(Framing::WsBinary, &batch, &mut hdrs, &mut iov);
        let mut want = vec![0x82, 5];
        want.extend_from_slice(b"hello");
        want.extend_from_slice(&[0x82, 0, 0x82, 126, 1, 44]);
        want.extend_from_slice(&[7; 300]);
        assert_eq!(gather(&iov), want);
        frame_batch(Framing::Raw, &batch, &mut hdrs, &mut iov);
        assert_eq!(gather(&iov).len(), 305);
    }

    #[test]
    fn attachment_header() {
        assert_eq!(attachment("cam.mp4"), "attachment; filename=\"cam.mp4\"");
        assert_eq!(
            attachment("a\"b\r\nX-Evil: 1\\.mp4"),
            "attachment; filename=\"abX-Evil: 1.mp4\""
        );
        assert_eq!(attachment("\r\n"), "");
        assert_eq!(attachment(&"x".repeat(1000)).len(), 255 + 23);
    }
}
