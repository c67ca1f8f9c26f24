//! RTSP connection driver: read socket → parse → session → write, and the per-viewer
//! writer that turns ring entries into vectored writes.
//!
//! Each connection has two tasks on its shard: the reader (requests, interleaved media from
//! publishers, RTCP from readers) and the writer (responses, media to readers). The writer
//! owns a dup of the socket so both can wait on it independently; only the writer writes,
//! so responses and interleaved frames never mix mid-frame.

use crate::core::hub::{LocalStream, Shard};
use crate::core::producer::Producer;
use crate::core::registry::{ConsumerInfo, ConsumerStats, ProducerInfo, ProducerStats};
use crate::io::sendv::{self, UdpBatch};
use bytes::BytesMut;
use corecast::fanout;
use corecast::filter::{self, Filter};
use corecast::packet::Packet;
use corecast::rtp::rtcp::{self, SenderInfo};
use corecast::rtsp::auth::ServerAuth;
use corecast::rtsp::message::{self, Message, Method, Request, Response};
use corecast::rtsp::server::{Event, Host, RtpInfo, ServerSession, SetupTrack, TrackTransport};
use corecast::rtsp::url;
use corecast::sdp::Sdp;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Most packets one writer turn takes from the ring (one vectored write).
const BATCH: usize = 64;
/// Responses waiting for a client that does not read them: beyond this, it is dropped.
const MAX_PENDING_OUT: usize = 64 * 1024;
/// A writer blocked this long on a socket that does not drain gives up (zero window).
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Read buffer of a connection; grows for publishers (media) and large bodies.
const READ_CHUNK: usize = 1024;
const PUBLISH_READ_CHUNK: usize = 64 * 1024;

/// Interval between RTCP sender reports per track.
const SR_INTERVAL_US: u64 = 2_000_000;
/// Kernel send buffer per connection: large enough for bursts, small enough that a stalled
/// reader shows up as backpressure here (and gets skipped) instead of seconds of backlog.
const SNDBUF: usize = 256 * 1024;
/// A player of a stream with fewer viewers than this (on all shards) is handed to the
/// stream's owner shard at its first DESCRIBE/SETUP, so it reads the owner's ring directly:
/// no mirror, no cross-shard hop per tick. That is the NVR case (hundreds of cameras, a
/// few consumers each), where the relay was ~4 % of the server. Beyond it, players stay
/// where the kernel put them, so a popular stream's viewers spread over all shards.
const OWNER_SHARD_VIEWERS: usize = 8;

/// Takes over a connection another shard handed to us (see `RoomMsg::Handoff`): a
/// publisher, or a player of a stream with few viewers (`OWNER_SHARD_VIEWERS`).
pub fn take_handoff(
    shard: &Rc<Shard>,
    fd: std::os::fd::OwnedFd,
    peer: SocketAddr,
    buffered: Vec<u8>,
    authenticated: bool,
) {
    let stream = crate::io::fd::stream_from(fd);
    let sh = shard.clone();
    glommio::spawn_local(async move {
        handle(
            sh,
            stream,
            peer,
            BytesMut::from(&buffered[..]),
            authenticated,
        )
        .await;
    })
    .detach();
}

pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let peer = match stream.peer_addr() {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                let sh = shard.clone();
                glommio::spawn_local(async move {
                    handle(sh, stream, peer, BytesMut::new(), false).await;
                })
                .detach();
            }
            Err(e) => {
                warn!(shard = shard.id, error = %e, "rtsp accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// State shared by a connection's reader and writer.
struct Conn {
    peer: SocketAddr,
    out: RefCell<Vec<u8>>,
    waker: RefCell<Option<Waker>>,
    closing: Cell<bool>,
    play: RefCell<Option<Play>>,
    /// The writer's registration marker in its stream's waiter list (see `poll_data`).
    registered: Cell<u64>,
    /// Parked: the stream's notify writes this viewer inline (`DirectWriter`).
    parking: crate::core::hub::Parking,
    direct: Cell<Option<DirectWriter>>,
    /// What an inline write could not send (socket full): the writer task sends it first.
    spill: RefCell<Vec<u8>>,
}

impl Conn {
    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
    fn send(&self, resp: &Response) {
        resp.write_to(&mut self.out.borrow_mut());
        self.wake();
    }
}

/// Where one track of a reader goes.
#[derive(Clone, Copy)]
enum Out {
    Tcp { rtp: u8, rtcp: u8 },
    Udp { rtp: SocketAddr, rtcp: SocketAddr },
}

#[derive(Clone, Copy, Default)]
struct TrackSync {
    ssrc: u32,
    clock_rate: u32,
    /// Smallest (arrival − media time) seen: the least-delayed packet anchors RTP time to
    /// wall time for sender reports.
    offset_us: Option<i64>,
    /// Set once the first sender report went out: from then on the mapping stays put, so
    /// players never see time step backwards (only a drift over 5 s re-anchors it).
    frozen: bool,
    packets: u32,
    octets: u32,
    last_sr: u64,
}

/// One media of the stream as a reader gets it.
struct TrackOut {
    /// Where its packets go; `None`: a media the reader did not set up.
    out: Option<Out>,
    sync: TrackSync,
}

/// A reader that is playing.
struct Play {
    stream: Rc<LocalStream>,
    /// Indexed by media index. Output and sender-report state together: one allocation
    /// that every batch touches (two were two cache misses per viewer per tick at 2,000
    /// viewers).
    tracks: Vec<TrackOut>,
    consumer: Arc<ConsumerInfo>,
    /// Where it is in the ring and what it owes the shared counters (the policy every
    /// viewer follows).
    fanout: fanout::Consumer,
}

impl Play {
    fn publish(&self, s: fanout::Stats) {
        publish_stats(&self.consumer.stats, s);
    }
}

/// Hands a viewer's statistics to the shared counters the API reads.
pub(crate) fn publish_stats(c: &ConsumerStats, s: fanout::Stats) {
    c.packets.fetch_add(s.items, Relaxed);
    c.bytes.fetch_add(s.bytes, Relaxed);
    c.skips.store(s.skips, Relaxed);
    c.skipped_packets.store(s.skipped, Relaxed);
}

/// A publisher's ingest state, shared by its RTSP connection and its UDP routes.
pub type PublishSlot = Rc<RefCell<Option<Publish>>>;

/// A publisher that is recording.
pub struct Publish {
    producer: Producer,
}

/// The session's view of the hub.
struct HostImpl {
    shard: Rc<Shard>,
    conn: Rc<Conn>,
    user_agent: String,
    /// Reader track j is stream media `selection[j]` (set by DESCRIBE's filter).
    selection: Vec<usize>,
    /// Tracks are set up: later DESCRIBEs no longer change `selection`.
    setup_done: bool,
    /// Set by ANNOUNCE: the stream, the producer's info, and whether it takes over a stream
    /// whose viewers waited for a new producer.
    announced: Option<(Rc<LocalStream>, Arc<ProducerInfo>, bool)>,
    publish: PublishSlot,
    /// UDP publisher routes to remove at the end.
    udp_routes: Vec<SocketAddr>,
    activity: Rc<Cell<u64>>,
}

impl HostImpl {
    fn reader_sdp(&self, path: &str) -> Result<Sdp, u16> {
        self.shard.registry.reader_sdp(path).ok_or(404)
    }
}

impl Host for HostImpl {
    fn describe(&mut self, path: &str, query: Option<&str>) -> Result<Sdp, u16> {
        let full = self.reader_sdp(path)?;
        let filter = Filter::parse(query, self.shard.config.rtsp.default_query.as_deref());
        let selection = filter.select(&full);
        if selection.is_empty() {
            debug!(
                stream = path,
                ?query,
                "no track matches the reader's filter"
            );
            return Err(404);
        }
        let sdp = filter::filtered(&full, &selection).for_readers();
        // The session keeps the SDP of its first DESCRIBE once tracks are set up; so do we.
        if !self.setup_done {
            self.selection = selection;
        }
        Ok(sdp)
    }

    fn announce(&mut self, path: &str, sdp: &Sdp) -> Result<(), u16> {
        let producer = Arc::new(ProducerInfo {
            id: self.shard.registry.next_id(),
            protocol: "rtsp",
            remote_addr: crate::io::listen::peer_text(self.conn.peer),
            url: format!(
                "rtsp://{}/{}",
                crate::io::listen::peer_text(self.conn.peer),
                path
            ),
            user_agent: self.user_agent.clone(),
            stats: ProducerStats::default(),
        });
        let (stream, resumed) = self
            .shard
            .claim_stream(path, sdp, producer.clone())
            .map_err(|e| {
                warn!(stream = path, peer = %self.conn.peer, error = %e, "ANNOUNCE refused");
                e.status()
            })?;
        info!(stream = path, peer = %self.conn.peer, shard = self.shard.id, medias = sdp.medias.len(), resumed, "publisher announced");
        self.announced = Some((stream, producer, resumed));
        Ok(())
    }

    fn udp_server_ports(&self) -> Option<(u16, u16)> {
        crate::egress::udp::pair().map(|u| u.ports)
    }

    fn play(&mut self, path: &str, reader_tracks: &[SetupTrack]) -> Result<Vec<RtpInfo>, u16> {
        let sdp = self.reader_sdp(path)?;
        // The reader's track numbers index its filtered SDP; map them to the stream's.
        let tracks: Vec<SetupTrack> = reader_tracks
            .iter()
            .filter_map(|t| {
                self.selection.get(t.media_index).map(|&m| SetupTrack {
                    media_index: m,
                    transport: t.transport,
                })
            })
            .collect();
        if tracks.len() != reader_tracks.len() {
            return Err(455);
        }
        let tracks = &tracks[..];
        let stream = self.shard.attach_reader(path).map_err(|e| {
            debug!(stream = path, peer = %self.conn.peer, error = %e, "PLAY refused");
            e.status()
        })?;
        let ring = stream.ring.borrow();
        let fanout = fanout::Consumer::join(
            &ring,
            self.shard.fanout_policy(),
            stream.producer_epoch(),
            self.shard.clock.now(),
        );
        let mut outs: Vec<TrackOut> = sdp
            .medias
            .iter()
            .map(|m| TrackOut {
                out: None,
                sync: TrackSync {
                    clock_rate: m.clock_rate().max(1),
                    ..TrackSync::default()
                },
            })
            .collect();
        for t in tracks {
            let out = match t.transport {
                TrackTransport::Tcp {
                    rtp_channel,
                    rtcp_channel,
                } => Out::Tcp {
                    rtp: rtp_channel,
                    rtcp: rtcp_channel,
                },
                TrackTransport::Udp {
                    client_rtp,
                    client_rtcp,
                } => Out::Udp {
                    rtp: SocketAddr::new(self.conn.peer.ip(), client_rtp),
                    rtcp: SocketAddr::new(self.conn.peer.ip(), client_rtcp),
                },
            };
            if let Some(o) = outs.get_mut(t.media_index) {
                o.out = Some(out);
            }
        }
        // RTP-Info: the first packet of each track this reader will get.
        let mut infos: Vec<RtpInfo> = tracks
            .iter()
            .map(|t| RtpInfo {
                media_index: t.media_index,
                seq: None,
                rtptime: None,
            })
            .collect();
        let mut pos = fanout.position();
        while pos < ring.head() && infos.iter().any(|i| i.seq.is_none()) {
            if let Some(p) = ring.get(pos) {
                if let Some(i) = infos
                    .iter_mut()
                    .find(|i| i.media_index == p.track as usize && i.seq.is_none())
                {
                    i.seq = Some(p.rtp_seq());
                    i.rtptime = Some(p.rtp_timestamp());
                }
            }
            pos += 1;
        }
        // Without a known start for every track, give none: a partial RTP-Info makes some
        // players drop the other tracks' first packets.
        if infos.iter().any(|i| i.seq.is_none()) {
            for i in &mut infos {
                i.seq = None;
                i.rtptime = None;
            }
        }
        drop(ring);
        // RTP-Info names the reader's own track numbers.
        for (i, t) in infos.iter_mut().zip(reader_tracks) {
            i.media_index = t.media_index;
        }
        let consumer = Arc::new(ConsumerInfo {
            id: self.shard.registry.next_id(),
            shard: self.shard.id,
            format_name: "rtsp",
            protocol: if tracks
                .iter()
                .all(|t| matches!(t.transport, TrackTransport::Tcp { .. }))
            {
                "rtsp+tcp"
            } else {
                "rtsp+udp"
            },
            remote_addr: crate::io::listen::peer_text(self.conn.peer),
            user_agent: self.user_agent.clone(),
            tracks: tracks.iter().map(|t| t.media_index).collect(),
            stats: ConsumerStats::default(),
        });
        self.shard.viewer_joined(path, consumer.clone());
        debug!(stream = path, peer = %self.conn.peer, shard = self.shard.id, "reader playing");
        self.conn.registered.set(0);
        *self.conn.play.borrow_mut() = Some(Play {
            stream,
            tracks: outs,
            consumer,
            fanout,
        });
        self.conn.wake();
        Ok(infos)
    }

    fn record(&mut self, path: &str, tracks: &[SetupTrack]) -> Result<(), u16> {
        let (stream, info, resumed) = self.announced.clone().ok_or(455u16)?;
        let sdp = {
            let g = self.shard.registry.lock();
            g.streams
                .get(path)
                .and_then(|e| e.sdp.clone())
                .ok_or(455u16)?
        };
        for t in tracks {
            if let TrackTransport::Udp { client_rtp, .. } = t.transport {
                let from = SocketAddr::new(self.conn.peer.ip(), client_rtp);
                if crate::egress::udp::ROUTES.with(|r| r.borrow().contains_key(&from)) {
                    // Another publisher already sends from this address and port.
                    return Err(461);
                }
                crate::egress::udp::ROUTES.with(|r| {
                    r.borrow_mut().insert(
                        from,
                        crate::egress::udp::UdpRoute {
                            publish: self.publish.clone(),
                            track: t.media_index as u8,
                            activity: self.activity.clone(),
                        },
                    )
                });
                self.udp_routes.push(from);
            }
        }
        let producer = Producer::new(stream, &sdp, info);
        *self.publish.borrow_mut() = Some(Publish {
            producer: if resumed {
                producer.resuming()
            } else {
                producer
            },
        });
        info!(stream = path, peer = %self.conn.peer, "publisher recording");
        Ok(())
    }
}

impl HostImpl {
    fn stop_play(&mut self) {
        let play = self.conn.play.borrow_mut().take();
        if let Some(mut p) = play {
            let last = p.fanout.take_stats(self.shard.clock.now());
            p.publish(last);
            self.shard.detach_reader(&p.stream);
            self.shard.viewer_left(&p.stream.name, p.consumer.id);
        }
    }

    fn stop_publish(&mut self) {
        for r in self.udp_routes.drain(..) {
            crate::egress::udp::ROUTES.with(|routes| {
                let mut routes = routes.borrow_mut();
                if routes
                    .get(&r)
                    .is_some_and(|route| Rc::ptr_eq(&route.publish, &self.publish))
                {
                    routes.remove(&r);
                }
            });
        }
        *self.publish.borrow_mut() = None;
        if let Some((stream, _, _)) = self.announced.take() {
            info!(stream = %stream.name, peer = %self.conn.peer, "publisher left");
            self.shard.leave_owned(&stream);
        }
    }
}

/// One RTSP connection, from accept (or handoff) to close.
async fn handle(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut buf: BytesMut,
    pre_authenticated: bool,
) {
    let _ = stream.set_nodelay(true);
    crate::io::fd::set_sndbuf(stream.as_raw_fd(), SNDBUF);
    // The writer task gets its own owner of the socket.
    let Some(wstream) = crate::io::fd::dup_stream(&stream) else {
        warn!(%peer, "dup failed; dropping connection");
        return;
    };
    let _ = wstream.set_write_timeout(Some(WRITE_TIMEOUT));
    let stats = &shard.registry.shards[shard.id];
    stats.connections.fetch_add(1, Relaxed);
    let conn = Rc::new(Conn {
        peer,
        out: RefCell::new(Vec::new()),
        waker: RefCell::new(None),
        closing: Cell::new(false),
        play: RefCell::new(None),
        registered: Cell::new(0),
        parking: Default::default(),
        direct: Cell::new(None),
        spill: RefCell::new(Vec::new()),
    });
    let writer = glommio::spawn_local(writer(shard.clone(), conn.clone(), wstream));
    let now = shard.clock.now();
    let activity = Rc::new(Cell::new(now));
    // A publisher's read buffer (see the read below); none for players.
    let mut media_buf: Vec<u8> = Vec::new();
    // A publisher's socket is read through the shard's epoll set (see `io::ready`): its
    // arrivals then do not each wake the shard. Dropped before the socket.
    let mut polled: Option<crate::io::ready::Registration> = None;
    let mut session = ServerSession::new(
        format!("{:016X}", rand::random::<u64>()),
        shard.config.rtsp.session_timeout_secs,
        now,
    );
    let mut host = HostImpl {
        shard: shard.clone(),
        conn: conn.clone(),
        user_agent: String::new(),
        selection: Vec::new(),
        setup_done: false,
        announced: None,
        publish: Rc::new(RefCell::new(None)),
        udp_routes: Vec::new(),
        activity: activity.clone(),
    };
    // RTSP server auth (go2rtc's `rtsp: {username, password}`); loopback peers are exempt
    // unless `local_auth` is set (the same rule as the HTTP API's).
    let auth = match (&shard.config.rtsp.username, &shard.config.rtsp.password) {
        (Some(u), p)
            if shard.config.rtsp.local_auth || !corecast::policy::is_local_peer(peer.ip()) =>
        {
            Some(ServerAuth {
                realm: "corecast".into(),
                username: u.clone(),
                password: p.clone().unwrap_or_default(),
                nonce: format!("{:032x}", rand::random::<u128>()),
            })
        }
        _ => None,
    };
    let mut authenticated = auth.is_none() || pre_authenticated;
    // After a protocol error: let the error response reach the client before closing.
    let mut linger = false;
    let beat_mark = Cell::new(0);
    let handoff = 'conn: loop {
        // Everything complete in the buffer, then one flush: one producer tick.
        loop {
            match message::parse(&mut buf) {
                Ok(Some(Message::Request(req))) => {
                    let now = shard.clock.now();
                    activity.set(now);
                    if let Some(ua) = req.headers.get("User-Agent") {
                        if host.user_agent.is_empty() {
                            host.user_agent = ua.chars().take(256).collect();
                        }
                    }
                    if !authenticated {
                        let a = auth.as_ref().expect("auth is set when not authenticated");
                        if a.check(req.method.as_str(), req.headers.get("Authorization")) {
                            authenticated = true;
                        } else {
                            let mut resp = Response::new(401);
                            for v in a.challenge_headers() {
                                resp.headers.append("WWW-Authenticate", v);
                            }
                            if let Some(c) = req.cseq() {
                                resp.headers.insert("CSeq", c.to_string());
                            }
                            if req.headers.get("Authorization").is_some() {
                                warn!(%peer, uri = %req.uri, "rtsp authentication failed");
                            }
                            conn.send(&resp);
                            continue;
                        }
                    }
                    // The first request naming a stream: a publisher always, a player of a
                    // stream with few viewers, moves to the stream's owner shard.
                    if session.path().is_none() {
                        let target = match req.method {
                            Method::Announce => Some((url::path_and_query(&req.uri).0, false)),
                            Method::Describe | Method::Setup => Some((stream_name(&req), true)),
                            _ => None,
                        };
                        if let Some((name, player)) = target {
                            let owner = shard.owner_of(name);
                            if owner != shard.id
                                && !name.is_empty()
                                && (!player || few_viewers(&shard, name))
                            {
                                let mut raw = Vec::new();
                                req.write_to(&mut raw);
                                raw.extend_from_slice(&buf);
                                break 'conn Some((owner, raw, authenticated));
                            }
                        }
                    }
                    if matches!(req.method, Method::Describe | Method::Setup)
                        && session.path().is_none()
                    {
                        let name = stream_name(&req);
                        let (_, query) = url::path_and_query(&req.uri);
                        let ua = req.headers.get("User-Agent").unwrap_or("");
                        // Boxed: its state would otherwise widen every connection's task.
                        if let Err(e) =
                            Box::pin(crate::sources::lifecycle::ensure(&shard, name, query, ua))
                                .await
                        {
                            warn!(stream = name, %peer, error = %e, "source unavailable for reader");
                        }
                    }
                    if conn.out.borrow().len() > MAX_PENDING_OUT {
                        // A client that sends requests but never reads the answers.
                        warn!(%peer, "rtsp client does not read responses; closing");
                        break 'conn None;
                    }
                    host.setup_done = !session.tracks().is_empty();
                    let (resp, ev) = session.handle_request(&req, &mut host, shard.clock.now());
                    if resp.status >= 400 {
                        debug!(%peer, method = req.method.as_str(), uri = %req.uri, status = resp.status, "rtsp request refused");
                    }
                    conn.send(&resp);
                    match ev {
                        Some(Event::Teardown) | Some(Event::Pause) => {
                            host.stop_play();
                            if ev == Some(Event::Teardown) {
                                host.stop_publish();
                            }
                        }
                        Some(Event::Play) | Some(Event::Record) | None => {}
                    }
                }
                Ok(Some(Message::Interleaved { channel, payload })) => {
                    activity.set(shard.clock.now());
                    let Some((track, is_rtcp)) = session.track_for_channel(channel) else {
                        continue;
                    };
                    if is_rtcp {
                        continue;
                    }
                    if let Some(p) = host.publish.borrow_mut().as_mut() {
                        ingest(&shard, p, track, payload);
                    }
                }
                Ok(Some(Message::Response(_))) => {}
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, shard = shard.id, stream = session.path().unwrap_or("-"), error = %e, "malformed RTSP input; closing connection");
                    conn.send(&Response::new(e.status()).with_header("Connection", "close"));
                    linger = true;
                    break 'conn None;
                }
            }
        }
        if let Some(p) = host.publish.borrow().as_ref() {
            p.producer.flush(&shard);
        }
        // Read more, waking up now and then to check the session timeout. A publisher's
        // reads land in `media_buf` (zeroed once) and are appended: zeroing a 64 KiB
        // window of `buf` before every read cost more than the bytes read.
        let publishing = host.publish.borrow().is_some();
        if publishing && media_buf.is_empty() {
            media_buf = vec![0u8; PUBLISH_READ_CHUNK];
            if !crate::io::ready::disabled() {
                polled = crate::io::ready::Registration::new(stream.as_raw_fd()).ok();
            }
        }
        let start = buf.len();
        if !publishing {
            buf.resize(start + READ_CHUNK, 0);
        }
        // Until data or the shard's slow beat (≤ 5 s): no timer per read (see `Beat`).
        let into = if publishing {
            &mut media_buf[..]
        } else {
            &mut buf[start..]
        };
        let read = futures_lite::future::or(
            async {
                Some(match &polled {
                    Some(r) => r.read(into).await,
                    None => stream.read(into).await,
                })
            },
            async {
                shard.slow_beat.next(&beat_mark).await;
                None
            },
        )
        .await;
        if !publishing {
            let n = match read {
                Some(Ok(n)) => n,
                _ => 0,
            };
            buf.truncate(start + n);
        }
        match read {
            Some(Ok(0)) => break None,
            Some(Ok(n)) => {
                if publishing {
                    buf.extend_from_slice(&media_buf[..n]);
                }
            }
            None => {
                let now = shard.clock.now();
                // UDP media and RTCP keep the session alive through `activity`.
                session.touch(activity.get());
                // A player's open RTSP connection is its liveness (a dead process closes
                // it; UDP players' receiver reports go to a shared port).
                let playing = conn.play.borrow().is_some();
                if session.timed_out(now) && !playing {
                    info!(%peer, stream = session.path().unwrap_or("-"), "rtsp connection idle past the session timeout; closing");
                    break None;
                }
            }
            Some(Err(e)) => {
                debug!(%peer, error = %e, "rtsp read failed");
                break None;
            }
        }
    };
    drop(polled);
    host.stop_play();
    host.stop_publish();
    conn.closing.set(true);
    conn.wake();
    // The writer first sends what is queued (an error response, say); one stuck on a peer
    // that stopped reading is cancelled after a grace period.
    let _ = glommio::timer::timeout(Duration::from_secs(2), async {
        writer.await;
        Ok(())
    })
    .await;
    if linger {
        // Closing with unread input would reset the connection and destroy the response
        // in flight: half-close, then discard what the client still sends, briefly.
        crate::io::fd::shutdown(&stream, libc::SHUT_WR);
        // On the heap: an array here would sit in every connection's task for its life.
        let mut sink = vec![0u8; 4096];
        let _ = glommio::timer::timeout(Duration::from_secs(1), async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
            Ok(())
        })
        .await;
    }
    stats.connections.fetch_sub(1, Relaxed);
    if let Some((owner, raw, authenticated)) = handoff {
        // A dup of our socket travels to the owner shard, which becomes its only user once
        // we drop ours below; owned all the way, so a lost message closes it.
        let fd = crate::io::fd::dup_owned(&stream);
        drop(stream);
        if let Err(e) = &fd {
            warn!(%peer, error = %e, "cannot hand the connection to its owner shard (dup failed); dropped");
        }
        if let Ok(fd) = fd {
            debug!(%peer, from = shard.id, to = owner, "connection handed to owner shard");
            shard.send_room(
                owner,
                crate::core::hub::RoomMsg::Handoff {
                    fd,
                    peer,
                    buffered: raw,
                    authenticated,
                },
            );
        }
    }
}

/// The stream a DESCRIBE or SETUP names (a SETUP's URL may end in a track).
fn stream_name(req: &Request) -> &str {
    let (path, _) = url::path_and_query(&req.uri);
    let (stream_path, _) = url::split_track(path);
    if req.method == Method::Setup && !stream_path.is_empty() {
        stream_path
    } else {
        path
    }
}

/// Whether `name` has fewer viewers than `OWNER_SHARD_VIEWERS` (see there).
fn few_viewers(shard: &Shard, name: &str) -> bool {
    shard
        .registry
        .lock()
        .streams
        .get(name)
        .is_none_or(|e| e.consumers.len() < OWNER_SHARD_VIEWERS)
}

/// Parses one received RTP packet once and appends it to the stream.
fn ingest(shard: &Shard, p: &mut Publish, track: usize, payload: bytes::Bytes) {
    p.producer.packet(shard, track, payload);
}

/// Ingests a publisher packet received over UDP (see `drive::udp`).
pub fn ingest_udp(shard: &Shard, slot: &PublishSlot, track: u8, data: bytes::Bytes) {
    if let Some(p) = slot.borrow_mut().as_mut() {
        ingest(shard, p, track as usize, data);
    }
}

/// Ends a UDP receive tick for a publisher.
pub fn flush_udp(shard: &Shard, slot: &PublishSlot) {
    if let Some(p) = slot.borrow().as_ref() {
        p.producer.flush(shard);
    }
}

/// The writer: responses, then media batches from the ring, then wait.
/// A writer's buffers for one batch. The task keeps its own (they live across a wait for a
/// full socket); inline writes share one per shard (they never wait).
struct Scratch {
    batch: Vec<Rc<Packet>>,
    hdrs: Vec<[u8; 4]>,
    rtcp_bufs: Vec<Vec<u8>>,
    iov: Vec<libc::iovec>,
    dests: Vec<Option<Out>>,
    udp: UdpBatch,
    udp_rtcp: UdpBatch,
    /// Inline writes only (the shard's one `Scratch`): the TCP bytes in one buffer, shared
    /// by the caught-up viewers a notify writes one after another (see `Gathered`).
    gathered: sendv::Gathered<Packet>,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            batch: Vec::new(),
            hdrs: Vec::new(),
            rtcp_bufs: Vec::new(),
            iov: Vec::new(),
            dests: Vec::new(),
            udp: UdpBatch::new(),
            udp_rtcp: UdpBatch::new(),
            gathered: Default::default(),
        }
    }

    /// Builds the TCP writes of the batch in `iov` (shared payloads, per-viewer 4-byte
    /// headers) and sends its UDP ones: one sendmmsg per socket. Without bound UDP ports
    /// nothing was queued (SETUP refused UDP), so the fallback only clears the batches.
    /// `gather`: the TCP write as one buffer (`gathered`; inline writes, which never wait).
    fn build(&mut self, udp_fds: Option<(i32, i32)>, gather: bool) {
        self.hdrs.clear();
        self.iov.clear();
        // Sender reports go first: a player that gets a track's report before its first
        // packet times it by the report from the start, with no jump later.
        let n_rtcp = self.rtcp_bufs.len();
        // The TCP part as framed: each packet on its track's channel. A sender report is
        // this viewer's own, so a write with one is gathered but never reused.
        let dests = &self.dests[n_rtcp..];
        let key = (n_rtcp == 0).then(|| {
            self.batch.iter().zip(dests).filter_map(|(p, d)| match d {
                Some(Out::Tcp { rtp, .. }) => Some((p, *rtp)),
                _ => None,
            })
        });
        // Most often a caught-up viewer's write is the one the viewer before it got: then
        // it is not framed again.
        let reused = gather
            && key
                .clone()
                .is_some_and(|k| self.gathered.reuse(&mut self.iov, k));
        let items = self
            .rtcp_bufs
            .iter()
            .map(|b| &b[..])
            .chain(self.batch.iter().map(|p| &p.data[..]));
        for (i, data) in items.enumerate() {
            let rtcp = i < n_rtcp;
            match self.dests[i] {
                Some(Out::Tcp { .. }) if reused => {}
                Some(Out::Tcp { rtp, rtcp: rtcp_ch }) => {
                    let ch = if rtcp { rtcp_ch } else { rtp };
                    self.hdrs.push(message::write_interleaved_header(
                        ch,
                        data.len().min(u16::MAX as usize) as u16,
                    ));
                }
                Some(Out::Udp {
                    rtp,
                    rtcp: rtcp_addr,
                }) => {
                    if rtcp {
                        self.udp_rtcp.push(data, rtcp_addr);
                    } else {
                        self.udp.push(data, rtp);
                    }
                }
                None => {}
            }
        }
        if !reused {
            // iovecs point into `hdrs` (no longer growing) and the packets held by `batch`.
            let mut h = 0;
            for (i, data) in self
                .rtcp_bufs
                .iter()
                .map(|b| &b[..])
                .chain(self.batch.iter().map(|p| &p.data[..]))
                .enumerate()
            {
                if let Some(Out::Tcp { .. }) = self.dests[i] {
                    self.iov.push(sendv::iovec(&self.hdrs[h]));
                    self.iov.push(sendv::iovec(data));
                    h += 1;
                }
            }
            if gather {
                self.gathered.gather(&mut self.iov, key);
            }
        }
        match udp_fds {
            Some((rtp_fd, rtcp_fd)) => {
                if !self.udp_rtcp.is_empty() {
                    self.udp_rtcp.send(rtcp_fd);
                }
                if !self.udp.is_empty() {
                    self.udp.send(rtp_fd);
                }
            }
            None => {
                self.udp.clear();
                self.udp_rtcp.clear();
            }
        }
    }
}

/// Where a parked writer's inline writes go (set once by the writer task).
#[derive(Clone, Copy)]
struct DirectWriter {
    fd: i32,
    clock: crate::core::hub::Clock,
    udp_fds: Option<(i32, i32)>,
}

/// A parked connection, written inline at each notify of its stream while its generation
/// is the connection's.
impl crate::core::hub::Direct for Conn {
    fn on_data(&self, generation: u64) -> bool {
        if !self.parking.holds(generation) {
            return false;
        }
        let Some(w) = self.direct.get() else {
            return false;
        };
        if w.write(self) {
            return true;
        }
        self.parking.unpark();
        self.wake();
        false
    }

    fn prefetch(&self) {
        // The tracks, which every batch updates (their own allocation).
        if let Ok(play) = self.play.try_borrow() {
            if let Some(p) = play.as_ref() {
                sendv::prefetch_bytes(
                    p.tracks.as_ptr() as *const u8,
                    std::mem::size_of_val(&p.tracks[..]),
                );
            }
        }
    }
}

impl DirectWriter {
    /// One batch, written without waiting; false when the task must take over (a response
    /// or closing pending, not playing, the end of the stream, a full socket, more than a
    /// batch waiting, an error).
    fn write(&self, conn: &Conn) -> bool {
        if conn.closing.get()
            || !conn.out.borrow().is_empty()
            || conn.play.try_borrow_mut().is_err()
        {
            return false;
        }
        SCRATCH.with(|cell| {
            let Ok(mut guard) = cell.try_borrow_mut() else {
                return false;
            };
            let sc = guard.get_or_insert_with(Scratch::new);
            let drained = match take_batch(
                conn,
                self.clock,
                &mut sc.batch,
                &mut sc.dests,
                &mut sc.rtcp_bufs,
            ) {
                Step::Wait(..) => return true,
                Step::Idle | Step::End => return false,
                Step::Write(drained) => drained.is_some(),
            };
            sc.build(self.udp_fds, super::gather_allowed());
            let sent = sendv::try_write_all(self.fd, &mut sc.iov, &mut conn.spill.borrow_mut());
            sc.batch.clear();
            match sent {
                Ok(all) => all && drained,
                Err(_) => {
                    conn.closing.set(true);
                    crate::io::fd::shutdown_fd(self.fd, libc::SHUT_RDWR);
                    false
                }
            }
        })
    }
}

/// Unparks the writer when its task ends or is cancelled: no live entry may outlive the
/// descriptor it writes to.
struct Unpark(Rc<Conn>);

impl Drop for Unpark {
    fn drop(&mut self) {
        self.0.parking.unpark();
        // And forget the descriptor: it closes next, and may be reused.
        self.0.direct.set(None);
    }
}

async fn writer(shard: Rc<Shard>, conn: Rc<Conn>, mut stream: TcpStream) {
    // Grown on first use and then reused: an idle connection costs no batch memory.
    let mut sc = Scratch::new();
    let udp_fds = crate::egress::udp::pair().map(|u| (u.rtp_fd, u.rtcp_fd));
    conn.direct.set(Some(DirectWriter {
        fd: stream.as_raw_fd(),
        clock: shard.clock,
        udp_fds,
    }));
    // A local: dropped before `stream` (a parameter), so before its descriptor closes.
    let _unpark = Unpark(conn.clone());
    loop {
        // Running again: whatever parked this writer is over.
        conn.parking.unpark();
        // What an inline write left goes first, then the responses.
        let mut out = std::mem::take(&mut *conn.spill.borrow_mut());
        if out.is_empty() {
            out = std::mem::take(&mut *conn.out.borrow_mut());
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                end_connection(&conn, &stream);
                break;
            }
            continue;
        }
        if conn.closing.get() {
            break;
        }
        let drained = match take_batch(
            &conn,
            shard.clock,
            &mut sc.batch,
            &mut sc.dests,
            &mut sc.rtcp_bufs,
        ) {
            Step::Idle => {
                // Not playing (before PLAY, or PAUSEd): give the batch memory back, so an
                // idle connection holds none (it grows again on the next PLAY).
                if sc.batch.capacity() > 0 {
                    sc = Scratch::new();
                }
                wait(&conn, None).await;
                continue;
            }
            Step::Wait(s, pos) => {
                wait(&conn, Some((s, pos))).await;
                continue;
            }
            Step::End => {
                end_connection(&conn, &stream);
                break;
            }
            Step::Write(drained) => drained,
        };
        sc.build(udp_fds, false);
        if !sc.iov.is_empty()
            && sendv::write_all_vectored(&mut stream, &mut sc.iov)
                .await
                .is_err()
        {
            conn.closing.set(true);
            break;
        }
        sc.batch.clear();
        // The batch emptied the ring: wait now rather than take an empty batch first. With
        // nothing new meanwhile the writer parks: the stream's next notify writes it inline
        // (`DirectWriter`), its task staying asleep until something needs it.
        if let Some((s, pos)) = drained {
            if super::direct_allowed() && !s.has_data(pos) {
                let entry = Rc::downgrade(&conn);
                s.park_direct(entry, conn.parking.park());
                wait_unparked(&conn).await;
            } else {
                wait(&conn, Some((s, pos))).await;
            }
        }
    }
    // No shutdown(): it would act on the socket, which a handoff keeps alive on another
    // shard. Dropping our fd is enough; the last fd closed sends the FIN.
    drop(stream);
}

/// Waits while the writer is parked (until an inline write declines, or a response or
/// closing needs the task).
async fn wait_unparked(conn: &Conn) {
    futures_lite::future::poll_fn(|cx| {
        if !conn.parking.is_parked() || conn.closing.get() || !conn.out.borrow().is_empty() {
            return Poll::Ready(());
        }
        *conn.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// The writer ends the connection (producer gone, peer unreachable): shut the socket down
/// so the reader task's pending read returns at once.
fn end_connection(conn: &Conn, stream: &TcpStream) {
    conn.closing.set(true);
    crate::io::fd::shutdown(stream, libc::SHUT_RDWR);
}

/// What the writer does next.
enum Step {
    /// Not playing: wait for a response or PLAY.
    Idle,
    /// Caught up: wait for the ring to move past this position.
    Wait(Rc<LocalStream>, u64),
    /// The producer is gone: end the connection.
    End,
    /// `batch` (and maybe sender reports) are ready to write; with the stream and position
    /// to wait at afterwards when the batch emptied the ring.
    Write(Option<(Rc<LocalStream>, u64)>),
}

/// Takes the next batch from the ring under a short borrow (never held across an await).
fn take_batch(
    conn: &Conn,
    clock: crate::core::hub::Clock,
    batch: &mut Vec<Rc<Packet>>,
    dests: &mut Vec<Option<Out>>,
    rtcp_bufs: &mut Vec<Vec<u8>>,
) -> Step {
    let mut play_ref = conn.play.borrow_mut();
    let Some(play) = play_ref.as_mut() else {
        return Step::Idle;
    };
    let now = play.stream.tick();
    if play.stream.is_closed() {
        // The producer left: end the session cleanly, players see EOF.
        return Step::End;
    }
    play.fanout.observe_epoch(play.stream.producer_epoch());
    let ring = play.stream.ring.borrow();
    let skips_before = play.fanout.skips().0;
    play.fanout.catch_up(&*ring, now);
    let mut drained = false;
    while batch.len() < BATCH {
        match play.fanout.next(&ring) {
            Some(p) => {
                if play
                    .tracks
                    .get(p.track as usize)
                    .is_some_and(|t| t.out.is_some())
                {
                    batch.push(p.clone());
                }
            }
            None => {
                drained = true;
                break;
            }
        }
    }
    if play.fanout.skips().0 != skips_before {
        debug!(stream = %play.stream.name, peer = %conn.peer, skips = play.fanout.skips().0, "slow reader skipped to keyframe");
    }
    drop(ring);
    if batch.is_empty() {
        if let Some(st) = play.fanout.delivered(0, 0, now) {
            play.publish(st);
        }
        return Step::Wait(play.stream.clone(), play.fanout.position());
    }
    // Per-track accounting and sender reports (rare) for this batch.
    dests.clear();
    let mut bytes = 0u64;
    for p in batch.iter() {
        let t = p.track as usize;
        let track = &mut play.tracks[t];
        dests.push(track.out);
        bytes += p.data.len() as u64;
        let s = &mut track.sync;
        if s.packets == 0 {
            s.ssrc = corecast::rtp::view(&p.data).map(|v| v.ssrc).unwrap_or(0);
        }
        s.packets = s.packets.wrapping_add(1);
        s.octets = s
            .octets
            .wrapping_add(p.data.len().saturating_sub(p.payload_offset as usize) as u32);
        // In i128 and clamped: a hostile SDP clock rate or timestamp must not overflow.
        let media_us = p.timestamp as i128 * 1_000_000 / s.clock_rate.max(1) as i128;
        let off =
            (p.arrival as i128 - media_us).clamp(i64::MIN as i128 / 2, i64::MAX as i128 / 2) as i64;
        match s.offset_us {
            None => s.offset_us = Some(off),
            Some(o) if !s.frozen && off < o => s.offset_us = Some(off),
            // Re-anchor only on a large drift (a producer clock running off over hours);
            // scheduling delays must not move it.
            Some(o) if s.frozen && off.abs_diff(o) > 5_000_000 => s.offset_us = Some(off),
            _ => {}
        }
    }
    rtcp_bufs.clear();
    let mut rtcp_dests: Vec<Option<Out>> = Vec::new();
    for (t, track) in play.tracks.iter_mut().enumerate() {
        let s = &mut track.sync;
        if s.packets == 0 || now.saturating_sub(s.last_sr) < SR_INTERVAL_US {
            continue;
        }
        let Some(out) = track.out else { continue };
        s.last_sr = now;
        // Both clocks read at the same instant (the tick time may be a little old).
        let (mono_now, now_unix) = (clock.now(), unix_micros());
        let rate = s.clock_rate.max(1) as i128;
        // Prefer an exact clock relation (internal sources know theirs); else one estimated
        // from arrival times, when allowed. Publishers' own sender reports are not used:
        // ffmpeg's are computed from its send times, which its AAC packetizer delays, and
        // forwarding them made readers' audio step back (seen in the relay tests).
        let rtp_time = match play.stream.sync_of(t) {
            (Some(a), _) => {
                let dt = now_unix as i128 - a.unix_us as i128;
                a.rtp.wrapping_add((dt * rate / 1_000_000) as i64 as u32)
            }
            (None, true) => match s.offset_us {
                Some(off) => {
                    s.frozen = true;
                    let media_us = mono_now as i128 - off as i128;
                    (media_us * rate / 1_000_000) as u64 as u32
                }
                None => continue,
            },
            (None, false) => continue,
        };
        let info = SenderInfo {
            ssrc: s.ssrc,
            ntp: rtcp::unix_micros_to_ntp(now_unix),
            rtp_time,
            packet_count: s.packets,
            octet_count: s.octets,
        };
        let mut b = Vec::with_capacity(64);
        rtcp::write_sender_report(&mut b, &info, "corecast");
        rtcp_bufs.push(b);
        rtcp_dests.push(Some(out));
    }
    if !rtcp_dests.is_empty() {
        dests.splice(0..0, rtcp_dests);
    }
    // Counters reach the shared atomics a few times a second, not per packet.
    if let Some(st) = play.fanout.delivered(batch.len() as u64, bytes, now) {
        play.publish(st);
    }
    Step::Write(drained.then(|| (play.stream.clone(), play.fanout.position())))
}

/// Waits until there is something to write: a response, new ring data, or closing.
async fn wait(conn: &Conn, data: Option<(Rc<LocalStream>, u64)>) {
    futures_lite::future::poll_fn(|cx| {
        if conn.closing.get() || !conn.out.borrow().is_empty() {
            return Poll::Ready(());
        }
        // PLAY may have started since we looked.
        if data.is_none() && conn.play.borrow().is_some() {
            return Poll::Ready(());
        }
        if let Some((s, pos)) = &data {
            if s.poll_data(*pos, &conn.registered, cx).is_ready() {
                return Poll::Ready(());
            }
            if conn.play.borrow().is_none() {
                return Poll::Ready(());
            }
        }
        *conn.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
