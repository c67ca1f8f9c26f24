//! WebRTC viewers: the shared UDP port, sessions (ICE-lite, DTLS, SRTP), media from the
//! stream's shared packets (`feed`), and the signalling entry points (`signal`).
//!
//! Every shard binds the WebRTC port with SO_REUSEPORT. A session lives on the shard that
//! answered its offer; our ICE ufrag starts with that shard's index (two hex digits), so a
//! check that the kernel delivers to another shard is forwarded to the owner over the shard
//! mesh, and the receiving shard remembers the remote address: the DTLS and RTCP that follow
//! from the same address (the kernel keeps a 4-tuple on one socket) are forwarded too. Only
//! the viewer's few incoming datagrams travel; media leaves from the owner's socket.

pub mod feed;
pub mod relay;
pub mod signal;
pub mod whip;

use crate::core::hub::{RoomMsg, Shard};
use crate::core::registry::ConsumerInfo;
use crate::io::sendv::UdpBatch;
use corecast::ring::{Cursor, Next};
use corecast::rtp::rtcp::{self, RtcpPacket, SenderInfo};
use corecast::webrtc::dtls::{DtlsEvent, DtlsSession, SrtpKeys};
use corecast::webrtc::ice::{self, IceLite, IceState, Remote, Transport};
use corecast::webrtc::tcp_framing::{self, Deframer};
use corecast::webrtc::{demux, Demux};
use feed::{RtcFeed, RtcPacket};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Sessions one shard holds at most (each costs a DTLS state and a few KiB).
pub const MAX_SESSIONS: usize = 4096;
/// Remote addresses remembered for routing, per shard.
const MAX_ROUTES: usize = 16_384;
/// Largest datagram read from the port.
const MAX_DATAGRAM: usize = 2048;
/// Interval of each track's RTCP sender report.
const SR_INTERVAL_US: u64 = 2_000_000;
/// Packets one viewer turn takes from the feed.
const TURN: usize = 256;
/// A viewer further behind than this (packets) skips to the next keyframe.
const MAX_LAG: u64 = 2048;
/// Datagrams per sendmmsg.
const SEND_BATCH: usize = 32;
/// Packets resent for one RTCP packet's NACKs, and per session per second, at most.
const NACK_RESENDS_PER_PACKET: usize = 64;
const NACK_RESENDS_PER_SEC: u32 = 500;
/// How long a session waits for DTLS to finish after the offer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// After an alert the retired DTLS state cannot authenticate (a viewer's close_notify,
/// or a forgery from someone who knows its address), the session ends unless the viewer
/// shows it is still there: an ICE check within this long (browsers check every 4-6 s,
/// RFC 7675) ...
const ALERT_GRACE_US: u64 = 8_000_000;
/// ... or, for a peer that sends SRTCP or SRTP often (receiver reports every ~1 s from
/// browsers and aiortc, a WHIP publisher's media; one came in this long before the
/// alert), such a packet within this long.
const ALERT_GRACE_RTCP_US: u64 = 3_000_000;

/// Counters for `/metrics` (all shards). Those a session turn touches are counted in the
/// shard's [`LocalStats`] and added here every [`STATS_INTERVAL_US`]; PLIs and FIRs are
/// added at once (WHIP ingest watches them to ask its publisher for a keyframe), and
/// forwarding, which a shard without sessions does, too.
pub struct Stats {
    pub sessions: [AtomicUsize; 64],
    pub srtp_packets: AtomicU64,
    pub srtp_bytes: AtomicU64,
    pub nacks: AtomicU64,
    pub nack_resent: AtomicU64,
    pub plis: AtomicU64,
    /// PLIs sent to WHIP publishers.
    pub plis_sent: AtomicU64,
    pub firs: AtomicU64,
    pub consent_failures: AtomicU64,
    /// Datagrams handed to the shard that owns their session.
    pub forwarded: AtomicU64,
    /// Datagrams not forwarded because a shard forwarded too many (a flood of checks
    /// naming other shards' ufrags).
    pub forward_dropped: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicUsize = AtomicUsize::new(0);
pub static STATS: Stats = Stats {
    sessions: [ZERO; 64],
    srtp_packets: AtomicU64::new(0),
    srtp_bytes: AtomicU64::new(0),
    nacks: AtomicU64::new(0),
    nack_resent: AtomicU64::new(0),
    plis: AtomicU64::new(0),
    plis_sent: AtomicU64::new(0),
    firs: AtomicU64::new(0),
    consent_failures: AtomicU64::new(0),
    forwarded: AtomicU64::new(0),
    forward_dropped: AtomicU64::new(0),
};

/// How often a shard adds its [`LocalStats`] to [`STATS`] (and a session its traffic to
/// its consumer's counters), as RTSP viewers publish theirs.
const STATS_INTERVAL_US: u64 = corecast::fanout::DEFAULT_STATS_INTERVAL_US;

/// One shard's counts not yet added to [`STATS`]: plain cells, no shared cache line
/// touched per viewer turn.
#[derive(Default)]
struct LocalStats {
    srtp_packets: Cell<u64>,
    srtp_bytes: Cell<u64>,
    nacks: Cell<u64>,
    nack_resent: Cell<u64>,
    consent_failures: Cell<u64>,
    /// When they were last added (shard clock, µs).
    published_at: Cell<u64>,
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// Adds this shard's counts to [`STATS`] when [`STATS_INTERVAL_US`] has passed (cheap
/// otherwise: called on every session turn), or at once with `force` (a session ends:
/// the last one's counts must not wait for a turn that never comes).
fn publish_stats(now: u64, force: bool) {
    LOCAL_STATS.with(|l| {
        if !force && now.saturating_sub(l.published_at.get()) < STATS_INTERVAL_US {
            return;
        }
        l.published_at.set(now);
        for (cell, total) in [
            (&l.srtp_packets, &STATS.srtp_packets),
            (&l.srtp_bytes, &STATS.srtp_bytes),
            (&l.nacks, &STATS.nacks),
            (&l.nack_resent, &STATS.nack_resent),
            (&l.consent_failures, &STATS.consent_failures),
        ] {
            let n = cell.take();
            if n != 0 {
                total.fetch_add(n, Relaxed);
            }
        }
    });
}

/// Datagrams one shard forwards per second at most: a viewer sends a few (checks every
/// couple of seconds, a DTLS handshake, RTCP); the shard mesh's control queue must not grow
/// with a flood.
const FORWARD_PER_SEC: u32 = 4000;

/// `/metrics` lines.
pub fn metrics(out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "# HELP corecast_webrtc_sessions WebRTC sessions per shard.\n\
         # TYPE corecast_webrtc_sessions gauge\n"
    );
    let shards = crate::egress::webrtc::SHARDS.load(Relaxed).min(64);
    for (i, n) in STATS.sessions.iter().take(shards).enumerate() {
        let _ = writeln!(
            out,
            "corecast_webrtc_sessions{{shard=\"{i}\"}} {}",
            n.load(Relaxed)
        );
    }
    for (name, help, v) in [
        (
            "srtp_packets_total",
            "SRTP packets sent to WebRTC viewers.",
            &STATS.srtp_packets,
        ),
        (
            "srtp_bytes_total",
            "SRTP bytes sent to WebRTC viewers.",
            &STATS.srtp_bytes,
        ),
        (
            "nacks_total",
            "RTCP NACKs received from WebRTC viewers.",
            &STATS.nacks,
        ),
        (
            "nack_resent_total",
            "Packets resent from the shared history for NACKs.",
            &STATS.nack_resent,
        ),
        (
            "plis_total",
            "PLIs received from WebRTC viewers (each asks WHIP publishers for a keyframe).",
            &STATS.plis,
        ),
        (
            "plis_sent_total",
            "PLIs sent to WHIP publishers.",
            &STATS.plis_sent,
        ),
        ("firs_total", "FIRs received.", &STATS.firs),
        (
            "consent_failures_total",
            "Sessions ended by ICE consent expiry.",
            &STATS.consent_failures,
        ),
        (
            "forwarded_total",
            "Datagrams forwarded to the shard owning their session.",
            &STATS.forwarded,
        ),
        (
            "forward_dropped_total",
            "Datagrams not forwarded (rate limit).",
            &STATS.forward_dropped,
        ),
    ] {
        let _ = write!(
            out,
            "# HELP corecast_webrtc_{name} {help}\n# TYPE corecast_webrtc_{name} counter\ncorecast_webrtc_{name} {}\n",
            v.load(Relaxed)
        );
    }
}

/// Number of shards (for the metrics), set at start.
pub static SHARDS: AtomicUsize = AtomicUsize::new(0);

/// The shard's WebRTC socket.
pub struct Port {
    sock: glommio::net::UdpSocket,
    fd: i32,
    /// An IPv6 socket: IPv4 peers are sent to as `::ffff:a.b.c.d`.
    v6: bool,
    pub port: u16,
}

thread_local! {
    static PORT: RefCell<Option<Rc<Port>>> = const { RefCell::new(None) };
    /// Our candidate lines, the same in every answer of this shard.
    static CANDIDATES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Sessions of this shard by local ufrag.
    static SESSIONS: RefCell<HashMap<String, Rc<Session>>> = RefCell::new(HashMap::new());
    /// Remote address -> local ufrag of a session here (learned from its checks).
    static BY_ADDR: RefCell<HashMap<Remote, String>> = RefCell::new(HashMap::new());
    /// ICE-TCP connections of this shard by remote address.
    static TCP: RefCell<HashMap<SocketAddr, Rc<TcpOut>>> = RefCell::new(HashMap::new());
    /// Remote address -> the shard that owns its session (learned from forwarded checks).
    static FORWARD: RefCell<HashMap<SocketAddr, usize>> = RefCell::new(HashMap::new());
    /// Forwarding budget: (second it counts, datagrams forwarded in it).
    static FORWARD_BUDGET: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
    /// Per-shard scratch for the send path (no await while in use).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    static LOCAL_STATS: LocalStats = LocalStats::default();
}

#[derive(Default)]
struct Scratch {
    pkts: Vec<Rc<RtcPacket>>,
    bufs: Vec<Vec<u8>>,
    batch: UdpBatch,
}

/// An IPv4-mapped IPv6 address as IPv4: how ICE and the maps know a peer.
fn canon(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        a => a,
    }
}

/// The address to send to on our socket.
fn wire(port: &Port, a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) if port.v6 => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        a => a,
    }
}

fn port() -> Option<Rc<Port>> {
    PORT.with(|p| p.borrow().clone())
}

/// Sends one packet to `to` (control traffic: STUN, DTLS, RTCP): a datagram from this
/// shard's port, or a frame on the ICE-TCP connection.
fn send_to(data: &[u8], to: Remote) {
    match to.transport {
        Transport::Udp => {
            let Some(p) = port() else { return };
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                s.batch.clear();
                s.batch.push(data, wire(&p, to.addr));
                s.batch.send(p.fd);
            });
        }
        Transport::Tcp => {
            if let Some(c) = tcp_conn_of(to.addr) {
                c.push(data);
            }
        }
        Transport::Relay(slot) => relay::send(slot, data, to.addr),
    }
}

fn tcp_conn_of(addr: SocketAddr) -> Option<Rc<TcpOut>> {
    TCP.with(|t| t.borrow().get(&addr).cloned())
}

/// Framed packets an ICE-TCP connection's writer has yet to send.
pub struct TcpOut {
    queue: RefCell<Vec<u8>>,
    waker: RefCell<Option<Waker>>,
    closed: Cell<bool>,
}

/// Bytes queued on one ICE-TCP connection at most: beyond, packets are dropped (as UDP
/// would lose them) rather than memory growing behind a slow reader.
const TCP_QUEUE_MAX: usize = 1 << 20;
/// ICE-TCP connections per shard at most.
const MAX_TCP: usize = 4096;
/// An ICE-TCP connection that sends nothing for this long is closed (consent checks
/// come every few seconds).
const TCP_IDLE: Duration = Duration::from_secs(35);

impl TcpOut {
    fn push(&self, packet: &[u8]) -> bool {
        {
            let mut q = self.queue.borrow_mut();
            if self.closed.get() || q.len() + packet.len() + 2 > TCP_QUEUE_MAX {
                return false;
            }
            if tcp_framing::frame(&mut q, packet).is_err() {
                return false;
            }
        }
        self.wake();
        true
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn close(&self) {
        self.closed.set(true);
        self.wake();
    }
}

/// The shard a local ufrag belongs to (its two-hex-digit prefix).
fn owner_of_ufrag(ufrag: &str) -> Option<usize> {
    ufrag
        .get(..2)
        .and_then(|h| usize::from_str_radix(h, 16).ok())
}

/// Binds this shard's WebRTC port, works out its candidates, starts the receive loop.
pub fn start(shard: &Rc<Shard>) -> Result<(), String> {
    let cfg = &shard.config.webrtc;
    SHARDS.store(shard.registry.shards.len(), Relaxed);
    let Some(addr) = cfg.listen else {
        return Ok(());
    };
    let (sock, at) = crate::io::listen::udp_shared(addr, cfg.dual_stack)
        .map_err(|e| format!("cannot listen for WebRTC on UDP {addr}: {e}"))?;
    let p = Rc::new(Port {
        fd: sock.as_raw_fd(),
        v6: at.is_ipv6(),
        port: at.port(),
        sock,
    });
    // ICE-TCP, passive, on the same port number (go2rtc's one port per protocol).
    let tcp = match crate::io::listen::tcp(SocketAddr::new(addr.ip(), p.port), cfg.dual_stack) {
        Ok(l) => Some(l),
        Err(e) => {
            if shard.id == 0 {
                warn!(port = p.port, error = %e, "webrtc: no ICE-TCP listener (UDP only)");
            }
            None
        }
    };
    let ports = ice::Ports {
        udp: Some(p.port),
        tcp: tcp.as_ref().map(|_| p.port),
    };
    if let Some(l) = tcp {
        glommio::spawn_local(tcp_serve(shard.clone(), l)).detach();
    }
    let ips = if addr.ip().is_unspecified() {
        ice::host_ips(&crate::io::listen::interfaces(), &cfg.filters)
    } else {
        vec![addr.ip()]
    };
    let lines = host_candidates(shard, p.port, ports, &ips);
    if shard.id == 0 {
        if lines.is_empty() {
            warn!(port = p.port, "webrtc: no candidate to offer (set webrtc: candidates, or filters: loopback: true for local tests)");
        }
        info!(addr = %at, candidates = lines.len(), "[webrtc] listen");
    }
    CANDIDATES.with(|c| *c.borrow_mut() = lines);
    if cfg.candidates.iter().any(|c| c.starts_with("stun:")) {
        let (sh, port) = (shard.clone(), p.port);
        let rebuild = move || {
            let lines = host_candidates(&sh, port, ports, &ips);
            CANDIDATES.with(|c| *c.borrow_mut() = lines);
        };
        glommio::spawn_local(relay::stun_task(shard.clone(), rebuild)).detach();
    }
    PORT.with(|x| *x.borrow_mut() = Some(p.clone()));
    glommio::spawn_local(receive_loop(shard.clone(), p)).detach();
    Ok(())
}

/// The shard's candidate lines: `candidates:` entries first, then the interfaces'.
fn host_candidates(shard: &Shard, port: u16, ports: ice::Ports, ips: &[IpAddr]) -> Vec<String> {
    let mut configured = Vec::new();
    for c in &shard.config.webrtc.candidates {
        match resolve_candidate(c, port) {
            Some(a) => configured.push((
                a.ip(),
                ice::Ports {
                    udp: Some(a.port()),
                    tcp: ports.tcp.map(|_| a.port()),
                },
            )),
            // Not known yet (or no STUN server answered): added when it is.
            None if c.starts_with("stun:") => {}
            None => {
                if shard.id == 0 {
                    warn!(candidate = %c, "webrtc: candidate not used (not ip:port, host:port or stun:port)");
                }
            }
        }
    }
    ice::gather(&configured, ips, ports, &shard.config.webrtc.filters)
}

/// `ip:port`, `host:port` (resolved at start) or `stun:port` (the public IP from STUN).
fn resolve_candidate(c: &str, listen_port: u16) -> Option<SocketAddr> {
    if let Some(port) = c.strip_prefix("stun:") {
        return Some(SocketAddr::new(relay::stun_ip()?, port.parse().ok()?));
    }
    if let Ok(a) = c.parse::<SocketAddr>() {
        return Some(a);
    }
    if let Ok(ip) = c.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, listen_port));
    }
    use std::net::ToSocketAddrs;
    c.to_socket_addrs().ok()?.next()
}

async fn receive_loop(shard: Rc<Shard>, p: Rc<Port>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match p.sock.recv_from(&mut buf).await {
            Ok((n, from)) if n < MAX_DATAGRAM => {
                on_datagram(&shard, &buf[..n], Remote::udp(canon(from)), false)
            }
            Ok(_) => {}
            Err(e) => {
                warn!(shard = shard.id, error = %e, "webrtc: receive failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn remember<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, k: K, v: V) {
    if map.len() >= MAX_ROUTES && !map.contains_key(&k) {
        // Crude but bounded: a flood of spoofed checks must not grow memory.
        map.clear();
    }
    map.insert(k, v);
}

/// One datagram from the WebRTC port (or forwarded by the shard that received it, or a
/// frame of an ICE-TCP connection: `forwarded` then too, as it is never forwarded).
pub fn on_datagram(shard: &Rc<Shard>, data: &[u8], from: Remote, forwarded: bool) {
    let kind = demux(data);
    let session = match kind {
        Demux::Stun => match ice::ufrag_of(data) {
            Some(ufrag) => {
                let owner = owner_of_ufrag(ufrag);
                match owner {
                    Some(o) if o != shard.id => {
                        if !forwarded && o < shard.registry.shards.len() {
                            FORWARD.with(|f| remember(&mut f.borrow_mut(), from.addr, o));
                            forward(shard, o, data, from.addr);
                        }
                        return;
                    }
                    _ => SESSIONS.with(|s| s.borrow().get(ufrag).cloned()),
                }
            }
            None => by_addr(from),
        },
        Demux::Dtls | Demux::Rtp => by_addr(from),
        Demux::Other => return,
    };
    let Some(session) = session else {
        if !forwarded {
            if let Some(o) = FORWARD.with(|f| f.borrow().get(&from.addr).copied()) {
                forward(shard, o, data, from.addr);
            }
        }
        return;
    };
    match kind {
        Demux::Stun => session.on_stun(data, from, shard.clock.now()),
        Demux::Dtls => session.on_dtls(data, from, shard.clock.now()),
        Demux::Rtp => match &session.whip {
            Some(w) => whip::on_packet(shard, &session, w, data, from),
            None => session.on_rtcp(data, from, shard.clock.now()),
        },
        Demux::Other => {}
    }
}

fn by_addr(from: Remote) -> Option<Rc<Session>> {
    let ufrag = BY_ADDR.with(|b| b.borrow().get(&from).cloned())?;
    SESSIONS.with(|s| s.borrow().get(&ufrag).cloned())
}

fn forward(shard: &Rc<Shard>, owner: usize, data: &[u8], from: SocketAddr) {
    let second = shard.clock.now() / 1_000_000;
    let ok = FORWARD_BUDGET.with(|b| {
        let (s, n) = b.get();
        let n = if s == second { n } else { 0 };
        b.set((second, n.saturating_add(1)));
        n < FORWARD_PER_SEC
    });
    if !ok {
        STATS.forward_dropped.fetch_add(1, Relaxed);
        return;
    }
    STATS.forwarded.fetch_add(1, Relaxed);
    shard.send_room(
        owner,
        RoomMsg::WebRtcDatagram {
            data: data.to_vec(),
            from,
        },
    );
}

/// One track a viewer receives.
struct Track {
    payload_type: u8,
    ssrc: u32,
    clock_rate: u32,
    seq_offset: u16,
    ts_offset: u32,
    packets: u32,
    octets: u32,
    last_sr: u64,
    /// Last packet sent: its RTP time and its frame's arrival (for sender reports).
    last: Option<(u32, u64)>,
}

impl Track {
    fn new(payload_type: u8, ssrc: u32, clock_rate: u32) -> Track {
        Track {
            payload_type,
            ssrc,
            clock_rate: clock_rate.max(1),
            seq_offset: rand::random(),
            ts_offset: rand::random(),
            packets: 0,
            octets: 0,
            last_sr: 0,
            last: None,
        }
    }

    /// This viewer's copy of the shared packet's header.
    fn header(&self, p: &RtcPacket) -> [u8; 12] {
        let mut h = [0u8; 12];
        h.copy_from_slice(&p.data[..12]);
        h[1] = (h[1] & 0x80) | (self.payload_type & 0x7f);
        h[2..4].copy_from_slice(&p.seq.wrapping_add(self.seq_offset).to_be_bytes());
        h[4..8].copy_from_slice(&p.timestamp.wrapping_add(self.ts_offset).to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        h
    }
}

struct State {
    ice: IceLite,
    dtls: DtlsSession,
    keys: Option<Box<SrtpKeys>>,
    video: Option<Track>,
    audio: Option<Track>,
    /// Remote addresses routed to us in `BY_ADDR` (removed at the end).
    addrs: Vec<Remote>,
    /// Set when DTLS reports an error or close: the task ends the session.
    failed: Option<String>,
    /// NACK resends: (second, count in it).
    nack_budget: (u64, u32),
    /// When the retired DTLS state got an alert (see [`ALERT_GRACE_US`]).
    alert_at: Option<u64>,
    /// When the last authenticated SRTP or SRTCP packet from the peer arrived.
    last_heard: Option<u64>,
}

/// One WebRTC viewer.
pub struct Session {
    /// Our ICE ufrag; also the WHEP resource id.
    pub id: String,
    pub name: String,
    st: RefCell<State>,
    /// A viewer's media; None for a WHIP publisher.
    feed: Option<Rc<RtcFeed>>,
    /// A WHIP publisher's ingest.
    whip: Option<RefCell<whip::Ingest>>,
    closed: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    consumer: Arc<ConsumerInfo>,
    created: Instant,
    /// Packets and bytes sent and not yet added to `consumer`'s counters.
    unpublished: Cell<(u64, u64)>,
    /// When they were last added (shard clock, µs).
    published_at: Cell<u64>,
}

impl Session {
    /// Adds the traffic not yet counted to the consumer's counters (`/api/streams`).
    fn publish_consumer_stats(&self) {
        let (packets, bytes) = self.unpublished.take();
        if packets != 0 {
            let c = &self.consumer.stats;
            c.packets.fetch_add(packets, Relaxed);
            c.bytes.fetch_add(bytes, Relaxed);
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn close(&self) {
        self.closed.set(true);
        self.wake();
    }

    fn on_stun(&self, data: &[u8], from: Remote, now: u64) {
        let mut st = self.st.borrow_mut();
        if let Some(reply) = st.ice.handle_stun(from, data, now) {
            send_to(&reply, from);
        }
        if st.ice.is_valid_remote(from, now)
            && !st.addrs.contains(&from)
            && st.addrs.len() < ice::MAX_REMOTES
        {
            st.addrs.push(from);
            BY_ADDR.with(|b| remember(&mut b.borrow_mut(), from, self.id.clone()));
        }
    }

    fn on_dtls(&self, data: &[u8], from: Remote, now: u64) {
        let mut st = self.st.borrow_mut();
        if let Err(e) = st.dtls.handle_datagram(data, Instant::now()) {
            debug!(session = %self.id, peer = %from, error = %e, "webrtc: DTLS datagram refused");
        }
        self.drain_dtls(&mut st, from, now);
    }

    /// Sends what DTLS wants sent; takes the SRTP keys when the handshake is done and
    /// then retires the DTLS state (it is most of a session's memory).
    fn drain_dtls(&self, st: &mut State, to: Remote, now: u64) {
        let to = st.ice.selected().unwrap_or(to);
        loop {
            match st.dtls.poll(&mut |d| send_to(d, to)) {
                Ok(None) => break,
                Ok(Some(DtlsEvent::Connected(keys))) => {
                    info!(stream = %self.name, session = %self.id, peer = %to, profile = keys.profile.name(), "webrtc: DTLS connected, media starts");
                    st.keys = Some(keys);
                    st.dtls.retire();
                    self.wake();
                }
                Ok(Some(DtlsEvent::PeerAlert)) => {
                    debug!(session = %self.id, peer = %to, "webrtc: DTLS alert after the handshake: the session ends unless the viewer is heard from soon");
                    st.alert_at.get_or_insert(now);
                    self.wake();
                }
                Ok(Some(DtlsEvent::Closed)) => {
                    st.failed = Some("the viewer closed DTLS".into());
                    self.wake();
                    break;
                }
                Err(e) => {
                    st.failed = Some(format!("DTLS: {e}"));
                    self.wake();
                    break;
                }
            }
        }
    }

    fn on_rtcp(&self, data: &[u8], from: Remote, now: u64) {
        if !corecast::rtp::is_rtcp(data) {
            return; // a viewer's media: we answered sendonly
        }
        let mut st = self.st.borrow_mut();
        let st = &mut *st;
        let Some(keys) = st.keys.as_mut() else { return };
        let mut buf = data.to_vec();
        let n = match keys.recv.unprotect_rtcp(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                debug!(session = %self.id, peer = %from, error = %e, "webrtc: SRTCP refused");
                return;
            }
        };
        st.last_heard = Some(now);
        let Some(dest) = st.ice.selected() else {
            return;
        };
        for pkt in rtcp::parse_compound(&buf[..n]) {
            let Ok(pkt) = pkt else { break };
            match pkt {
                RtcpPacket::Nack {
                    media_ssrc, seqs, ..
                } => {
                    LOCAL_STATS.with(|l| add(&l.nacks, 1));
                    let (video, track) = match (&st.video, &st.audio) {
                        (Some(v), _) if v.ssrc == media_ssrc => (true, v),
                        (_, Some(a)) if a.ssrc == media_ssrc => (false, a),
                        _ => continue,
                    };
                    // Bounded per RTCP packet and per second: a NACK costs the viewer
                    // a few bytes and us a resend each.
                    let now_s = now / 1_000_000;
                    if st.nack_budget.0 != now_s {
                        st.nack_budget = (now_s, 0);
                    }
                    let room = NACK_RESENDS_PER_SEC.saturating_sub(st.nack_budget.1);
                    for seq in seqs.take(NACK_RESENDS_PER_PACKET.min(room as usize)) {
                        st.nack_budget.1 += 1;
                        let Some(p) = self
                            .feed
                            .as_ref()
                            .and_then(|f| f.find(video, seq.wrapping_sub(track.seq_offset)))
                        else {
                            continue;
                        };
                        let hdr = track.header(&p);
                        let mut out = Vec::with_capacity(p.data.len() + 32);
                        if keys.send.protect_rtp(&hdr, &p.data[12..], &mut out).is_ok() {
                            send_to(&out, dest);
                            LOCAL_STATS.with(|l| add(&l.nack_resent, 1));
                        }
                    }
                }
                // Counted; WHIP publishers see the count change and send a PLI on.
                RtcpPacket::Pli { .. } => {
                    STATS.plis.fetch_add(1, Relaxed);
                }
                RtcpPacket::Fir { .. } => {
                    STATS.firs.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
    }

    /// Sends what the feed has for this viewer past `cursor`, and due sender reports.
    fn send_media(&self, cursor: &mut Cursor, now: u64) {
        let Some(p) = port() else { return };
        let Some(feed) = &self.feed else { return };
        let mut st = self.st.borrow_mut();
        let st = &mut *st;
        let Some(remote) = st.ice.selected() else {
            return;
        };
        let dest = wire(&p, remote.addr);
        // ICE-TCP: frames on the connection instead of datagrams.
        let tcp = match remote.transport {
            Transport::Udp | Transport::Relay(_) => None,
            Transport::Tcp => match tcp_conn_of(remote.addr) {
                Some(c) => Some(c),
                None => return,
            },
        };
        let Some(keys) = st.keys.as_mut() else { return };
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            s.pkts.clear();
            {
                let ring = feed.ring.borrow();
                while s.pkts.len() < TURN {
                    match cursor.next(&ring, MAX_LAG) {
                        Next::Item(p) => s.pkts.push(p.clone()),
                        Next::Empty => break,
                    }
                }
            }
            if s.bufs.len() < SEND_BATCH {
                s.bufs
                    .resize_with(SEND_BATCH, || Vec::with_capacity(feed::MTU + 64));
            }
            let (mut packets, mut bytes) = (0u64, 0u64);
            for chunk in s.pkts.chunks(SEND_BATCH) {
                s.batch.clear();
                let mut used = 0;
                for pkt in chunk {
                    let track = if pkt.video {
                        st.video.as_mut()
                    } else {
                        st.audio.as_mut()
                    };
                    let Some(t) = track else { continue };
                    let hdr = t.header(pkt);
                    let buf = &mut s.bufs[used];
                    if keys.send.protect_rtp(&hdr, &pkt.data[12..], buf).is_err() {
                        continue;
                    }
                    t.packets = t.packets.wrapping_add(1);
                    t.octets = t.octets.wrapping_add((pkt.data.len() - 12) as u32);
                    t.last = Some((pkt.timestamp.wrapping_add(t.ts_offset), pkt.arrival));
                    packets += 1;
                    bytes += buf.len() as u64;
                    used += 1;
                }
                for b in &s.bufs[..used] {
                    match (&tcp, remote.transport) {
                        (Some(c), _) => {
                            c.push(b);
                        }
                        (None, Transport::Relay(slot)) => relay::send(slot, b, remote.addr),
                        (None, _) => s.batch.push(b, dest),
                    }
                }
                if !s.batch.is_empty() {
                    s.batch.send(p.fd);
                }
            }
            s.pkts.clear();
            LOCAL_STATS.with(|l| {
                add(&l.srtp_packets, packets);
                add(&l.srtp_bytes, bytes);
            });
            let (p0, b0) = self.unpublished.get();
            self.unpublished.set((p0 + packets, b0 + bytes));
            if now.saturating_sub(self.published_at.get()) >= STATS_INTERVAL_US {
                self.published_at.set(now);
                self.publish_consumer_stats();
            }
        });
        // Sender reports: RTP time now, from the last packet's frame arrival.
        for t in [st.video.as_mut(), st.audio.as_mut()].into_iter().flatten() {
            let Some((ts, arrival)) = t.last else {
                continue;
            };
            if now.saturating_sub(t.last_sr) < SR_INTERVAL_US {
                continue;
            }
            t.last_sr = now;
            let elapsed = now.saturating_sub(arrival) as u128;
            let rtp_time = ts.wrapping_add((elapsed * t.clock_rate as u128 / 1_000_000) as u32);
            let info = SenderInfo {
                ssrc: t.ssrc,
                ntp: rtcp::unix_micros_to_ntp(unix_micros()),
                rtp_time,
                packet_count: t.packets,
                octet_count: t.octets,
            };
            let mut sr = Vec::with_capacity(64);
            rtcp::write_sender_report(&mut sr, &info, "corecast");
            let mut out = Vec::with_capacity(sr.len() + 32);
            if keys.send.protect_rtcp(&sr, &mut out).is_ok() {
                send_to(&out, remote);
            }
        }
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Ends the session `id` if it lives on this shard; false when unknown here.
pub fn close_local(id: &str) -> bool {
    match SESSIONS.with(|s| s.borrow().get(id).cloned()) {
        Some(s) => {
            info!(stream = %s.name, session = %id, "webrtc: session ended by request");
            s.close();
            true
        }
        None => false,
    }
}

/// Ends the session `id` wherever it lives (WHEP DELETE). False when it is known to be
/// nowhere (its shard is this one and it is not here, or the id is not ours).
pub fn close(shard: &Rc<Shard>, id: &str) -> bool {
    match owner_of_ufrag(id) {
        Some(o) if o == shard.id => close_local(id),
        Some(o) if o < shard.registry.shards.len() => {
            shard.send_room(o, RoomMsg::WebRtcClose { id: id.to_string() });
            true
        }
        _ => false,
    }
}

/// Runs one session: timers, media, the end.
async fn run(shard: Rc<Shard>, s: Rc<Session>) {
    let registered = Cell::new(0u64);
    let mut cursor: Option<Cursor> = None;
    let why = loop {
        if s.closed.get() {
            break "closed".to_string();
        }
        let now = shard.clock.now();
        publish_stats(now, false);
        {
            let mut st = s.st.borrow_mut();
            if let Some(f) = st.failed.take() {
                break f;
            }
            if st.ice.poll(now) == IceState::Closed {
                LOCAL_STATS.with(|l| add(&l.consent_failures, 1));
                break "ICE consent expired (no check for 30 s)".into();
            }
            if let Some(at) = st.alert_at {
                let heard = st.last_heard;
                if st.ice.last_check().max(heard).is_some_and(|t| t > at) {
                    st.alert_at = None; // still there: the alert was not the peer's
                } else {
                    let grace = match heard {
                        Some(r) if at.saturating_sub(r) < ALERT_GRACE_RTCP_US => {
                            ALERT_GRACE_RTCP_US
                        }
                        _ => ALERT_GRACE_US,
                    };
                    if now >= at.saturating_add(grace) {
                        break "the viewer closed DTLS (alert, nothing from it since)".into();
                    }
                }
            }
            if st.keys.is_none() {
                if s.created.elapsed() > CONNECT_TIMEOUT {
                    break format!("no DTLS connection within {CONNECT_TIMEOUT:?}");
                }
                // Retransmissions; and in the client role (an offer with `setup:passive`)
                // the first flight, once a check told us where the peer is.
                let t = Instant::now();
                if let Some(to) = st.ice.selected() {
                    if st.dtls.next_timeout().is_none_or(|d| d <= t) {
                        let _ = st.dtls.handle_timeout(t);
                        s.drain_dtls(&mut st, to, now);
                    }
                }
            }
        }
        if s.feed.as_ref().is_some_and(|f| f.is_closed()) {
            break "stream ended".into();
        }
        let connected = s.st.borrow().keys.is_some();
        if let (true, Some(feed)) = (connected, &s.feed) {
            feed.pump();
            let c = cursor.get_or_insert_with(|| Cursor::join(&feed.ring.borrow()));
            s.send_media(c, now);
            let data = async {
                feed.wait(&registered, Duration::from_millis(500)).await;
            };
            futures_lite::future::or(data, wait_wake(&s)).await;
        } else if let (true, Some(w)) = (connected, &s.whip) {
            if let Some(why) = whip::tick(&s, w, now) {
                break why;
            }
            let timer = async {
                glommio::timer::sleep(whip::TICK).await;
            };
            futures_lite::future::or(timer, wait_wake(&s)).await;
        } else {
            let timer = async {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            };
            futures_lite::future::or(timer, wait_wake(&s)).await;
        }
    };
    info!(stream = %s.name, session = %s.id, reason = %why, "webrtc: session ended");
    s.publish_consumer_stats();
    finish(&shard, &s);
    publish_stats(shard.clock.now(), true);
    match &s.whip {
        Some(w) => whip::end(&shard, &s, w),
        None => shard.viewer_left(&s.name, s.consumer.id),
    }
}

/// Ends a session's transport: DTLS close, ICE, its routes and ICE-TCP connections.
fn finish(shard: &Rc<Shard>, s: &Session) {
    {
        let mut st = s.st.borrow_mut();
        if st.keys.is_some() {
            let _ = st.dtls.close();
            if let Some(to) = st.ice.selected() {
                let _ = st.dtls.poll(&mut |d| send_to(d, to));
            }
        }
        st.ice.close();
        BY_ADDR.with(|b| {
            let mut b = b.borrow_mut();
            for a in &st.addrs {
                if b.get(a) == Some(&s.id) {
                    b.remove(a);
                }
            }
        });
        // Its ICE-TCP connections end with it.
        TCP.with(|t| {
            let t = t.borrow();
            for a in st.addrs.iter().filter(|a| a.transport == Transport::Tcp) {
                if let Some(c) = t.get(&a.addr) {
                    c.close();
                }
            }
        });
    }
    relay::detach(&s.id);
    SESSIONS.with(|m| m.borrow_mut().remove(&s.id));
    STATS.sessions[shard.id % 64].fetch_sub(1, Relaxed);
}

/// Waits until something pokes the session (DTLS connected, closed).
async fn wait_wake(s: &Session) {
    let mut first = true;
    futures_lite::future::poll_fn(|cx| {
        if !first || s.closed.get() {
            return Poll::Ready(());
        }
        first = false;
        *s.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

async fn tcp_serve(shard: Rc<Shard>, listener: glommio::net::TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                glommio::spawn_local(tcp_conn(shard.clone(), stream, peer, Vec::new())).detach();
            }
            Err(e) => {
                warn!(shard = shard.id, error = %e, "webrtc: ICE-TCP accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Takes over an ICE-TCP connection another shard accepted for a session of ours.
pub fn take_tcp(shard: &Rc<Shard>, fd: std::os::fd::OwnedFd, peer: SocketAddr, buffered: Vec<u8>) {
    let stream = crate::io::fd::stream_from(fd);
    glommio::spawn_local(tcp_conn(shard.clone(), stream, peer, buffered)).detach();
}

/// One ICE-TCP connection (RFC 6544 passive, RFC 4571 framing). Its first frame must be a
/// check naming one of our ufrags: the shard that owns that session takes the connection.
async fn tcp_conn(
    shard: Rc<Shard>,
    mut stream: glommio::net::TcpStream,
    peer: SocketAddr,
    mut raw: Vec<u8>,
) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let peer = canon(peer);
    let remote = Remote::tcp(peer);
    let max = tcp_framing::DEFAULT_MAX_FRAME;
    let mut chunk = vec![0u8; 4096];
    // Who owns it: the first frame's ufrag.
    let owner = loop {
        if let [hi, lo, rest @ ..] = &raw[..] {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            if len == 0 || len > max {
                return;
            }
            if rest.len() >= len {
                break ice::ufrag_of(&rest[..len]).and_then(owner_of_ufrag);
            }
        }
        let read = glommio::timer::timeout(Duration::from_secs(10), async {
            stream
                .read(&mut chunk)
                .await
                .map_err(glommio::GlommioError::from)
        })
        .await;
        match read {
            Ok(n) if n > 0 && raw.len() + n <= max + 2 + chunk.len() => {
                raw.extend_from_slice(&chunk[..n])
            }
            _ => return,
        }
    };
    match owner {
        Some(o) if o == shard.id => {}
        Some(o) if o < shard.registry.shards.len() => {
            match crate::io::fd::dup_owned(&stream) {
                Ok(fd) => {
                    drop(stream);
                    shard.send_room(
                        o,
                        RoomMsg::WebRtcTcp {
                            fd,
                            peer,
                            buffered: raw,
                        },
                    );
                }
                Err(e) => {
                    warn!(%peer, error = %e, "webrtc: cannot hand an ICE-TCP connection to its shard")
                }
            }
            return;
        }
        _ => {
            debug!(%peer, "webrtc: ICE-TCP connection without a check for us: closed");
            return;
        }
    }
    if TCP.with(|t| t.borrow().len()) >= MAX_TCP {
        return;
    }
    let Some(wstream) = crate::io::fd::dup_stream(&stream) else {
        return;
    };
    let out = Rc::new(TcpOut {
        queue: RefCell::new(Vec::new()),
        waker: RefCell::new(None),
        closed: Cell::new(false),
    });
    if let Some(old) = TCP.with(|t| t.borrow_mut().insert(peer, out.clone())) {
        old.close();
    }
    let writer = {
        let out = out.clone();
        glommio::spawn_local(async move {
            let mut stream = wstream;
            loop {
                let data = std::mem::take(&mut *out.queue.borrow_mut());
                if data.is_empty() {
                    if out.closed.get() {
                        break;
                    }
                    let mut first = true;
                    futures_lite::future::poll_fn(|cx| {
                        if !first || out.closed.get() || !out.queue.borrow().is_empty() {
                            return Poll::Ready(());
                        }
                        first = false;
                        *out.waker.borrow_mut() = Some(cx.waker().clone());
                        Poll::Pending
                    })
                    .await;
                    continue;
                }
                if stream.write_all(&data).await.is_err() {
                    break;
                }
            }
            out.closed.set(true);
            // Unblocks the reader below.
            crate::io::fd::shutdown(&stream, libc::SHUT_RDWR);
        })
    };
    debug!(%peer, shard = shard.id, "webrtc: ICE-TCP connection");
    let mut deframer = Deframer::new(max);
    let mut ok = deframer
        .push(&raw, |f| on_datagram(&shard, f, remote, true))
        .is_ok();
    drop(raw);
    while ok && !out.closed.get() {
        let read = glommio::timer::timeout(TCP_IDLE, async {
            stream
                .read(&mut chunk)
                .await
                .map_err(glommio::GlommioError::from)
        })
        .await;
        match read {
            Ok(n) if n > 0 => {
                ok = deframer
                    .push(&chunk[..n], |f| on_datagram(&shard, f, remote, true))
                    .is_ok();
            }
            _ => break,
        }
    }
    out.close();
    writer.await;
    TCP.with(|t| {
        let mut t = t.borrow_mut();
        if t.get(&peer).is_some_and(|c| Rc::ptr_eq(c, &out)) {
            t.remove(&peer);
        }
    });
}
