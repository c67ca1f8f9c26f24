//! N RTSP viewers on one thread per core: nonblocking sockets, one epoll per thread,
//! level-triggered, one large read per ready TCP socket and `recvmmsg` batches for UDP.
//! Per packet the cost is a header check, a sequence-window update and (synthetic
//! streams) a clock read per read call and a histogram increment. stream.mp4 and WebRTC
//! viewers (`rtcview.rs`: WHEP, ICE check, DTLS client, SRTP decrypt) share the loop.

use crate::client;
use crate::frames::{self, Item};
use crate::hist::Histogram;
use crate::mp4view::{self, Mp4Body};
use crate::rtcview::{self, Rtc};
use crate::seq::SeqTracker;
use crate::source;
use crate::util::{now_ns, thread_cpu, Rng};
use bytes::BytesMut;
use corecast::rtsp::message::{self, Message, Method, Response};
use corecast::webrtc::dtls::Identity;
use corecast::webrtc::{demux, Demux};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const PHASE_RAMP: u32 = 0;
pub const PHASE_MEASURE: u32 = 1;
pub const PHASE_END: u32 = 2;
pub const PHASE_STOP: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
    /// HTTP `GET /api/stream.mp4?src=NAME` (corecast's API): bytes and `moof` fragments.
    #[serde(rename = "http-mp4")]
    HttpMp4,
    /// WebRTC via WHEP (`POST /api/webrtc?src=NAME`, corecast only): ICE check, DTLS
    /// client, SRTP receive on one UDP socket per viewer.
    Webrtc,
}

/// Viewers leave after a random lifetime and are replaced (soak).
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    pub min_life_s: f64,
    pub max_life_s: f64,
    pub rejoin_delay_s: f64,
}

#[derive(Debug, Clone)]
pub struct ViewConfig {
    /// Viewer k reads `urls[k % urls.len()]`.
    pub urls: Vec<String>,
    pub viewers: usize,
    pub transport: Transport,
    pub workers: usize,
    pub ramp_secs: f64,
    pub connect_timeout: Duration,
    pub keepalive_secs: f64,
    pub churn: Option<Churn>,
    /// Largest datagram expected (UDP receive slots).
    pub max_packet: usize,
    /// Send PAUSE right after PLAY: connected, set-up, idle viewers (memory per idle
    /// viewer).
    pub pause: bool,
    /// WebRTC: decrypt (and authenticate) every SRTP packet; else count it from its clear
    /// RTP header (sequence number, marker) with the SRTP tag length taken off.
    pub srtp_decrypt: bool,
}

/// State shared with the coordinator: the phase it sets, counters the workers bump on
/// connection events (never per packet).
#[derive(Debug, Default)]
pub struct Shared {
    pub phase: AtomicU32,
    pub playing: AtomicI64,
    pub in_handshake: AtomicI64,
    pub plays: AtomicU64,
    pub failures: AtomicU64,
    pub disconnects: AtomicU64,
    pub left: AtomicU64,
    pub ramp_done: AtomicU32,
}

/// Counters summed over viewers.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Totals {
    pub bytes: u64,
    pub packets: u64,
    pub rtcp_packets: u64,
    pub expected: u64,
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub gaps: u64,
    pub too_late: u64,
    pub bad_packets: u64,
    pub latency_samples: u64,
    pub backlog_packets: u64,
    pub read_calls: u64,
}

impl Totals {
    fn add_tracker(&mut self, s: &SeqTracker) {
        self.expected += s.expected;
        self.received += s.received;
        self.duplicates += s.duplicates;
        self.reordered += s.reordered;
        self.gaps += s.gaps;
        self.too_late += s.too_late;
    }

    fn add(&mut self, o: &Totals) {
        self.bytes += o.bytes;
        self.packets += o.packets;
        self.rtcp_packets += o.rtcp_packets;
        self.expected += o.expected;
        self.received += o.received;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.gaps += o.gaps;
        self.too_late += o.too_late;
        self.bad_packets += o.bad_packets;
        self.latency_samples += o.latency_samples;
        self.backlog_packets += o.backlog_packets;
        self.read_calls += o.read_calls;
    }

    pub fn minus(&self, o: &Totals) -> Totals {
        Totals {
            bytes: self.bytes - o.bytes,
            packets: self.packets - o.packets,
            rtcp_packets: self.rtcp_packets - o.rtcp_packets,
            expected: self.expected - o.expected,
            received: self.received - o.received,
            duplicates: self.duplicates - o.duplicates,
            reordered: self.reordered - o.reordered,
            gaps: self.gaps - o.gaps,
            too_late: self.too_late - o.too_late,
            bad_packets: self.bad_packets - o.bad_packets,
            latency_samples: self.latency_samples - o.latency_samples,
            backlog_packets: self.backlog_packets - o.backlog_packets,
            read_calls: self.read_calls - o.read_calls,
        }
    }

    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }
}

/// One viewer's account of the measurement window (viewers playing throughout it).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct ViewerWindow {
    pub packets: u64,
    pub bytes: u64,
    /// RTP marker bits on the first track (video for our sources and for ffmpeg's clip):
    /// the frames this viewer received completely enough to know they ended.
    pub frames: u64,
    /// Packets missing from the RTP sequence numbers, all tracks.
    pub lost: u64,
}

/// One worker's account of the measurement window.
#[derive(Debug, Default)]
pub struct WorkerReport {
    pub window: Totals,
    pub window_secs: f64,
    pub latency: Histogram,
    pub connect: Histogram,
    pub failures: BTreeMap<String, u64>,
    pub cpu_s: f64,
    /// Per-viewer packets in the window, for viewers playing throughout it.
    pub per_viewer_packets: Vec<u64>,
    pub per_viewer: Vec<ViewerWindow>,
    pub all_time: Totals,
}

/// Everything the workers measured, merged.
#[derive(Debug, Default)]
pub struct ViewReport {
    pub window: Totals,
    /// Sum over workers of bytes/s and packets/s in their windows.
    pub bits_per_sec: f64,
    pub packets_per_sec: f64,
    pub window_secs: f64,
    pub latency: Histogram,
    pub connect: Histogram,
    pub failures: BTreeMap<String, u64>,
    pub workers_cpu_s: f64,
    pub per_viewer_packets: Vec<u64>,
    pub per_viewer: Vec<ViewerWindow>,
    pub all_time: Totals,
}

pub struct Viewers {
    pub shared: Arc<Shared>,
    workers: usize,
    handles: Vec<JoinHandle<WorkerReport>>,
}

impl Viewers {
    pub fn start(cfg: ViewConfig) -> Result<Viewers, String> {
        if cfg.urls.is_empty() {
            return Err("no URL to view".into());
        }
        for u in &cfg.urls {
            client::parse_url(u)?;
        }
        let shared = Arc::new(Shared::default());
        let cfg = Arc::new(cfg);
        let workers = cfg.workers.max(1);
        let mut handles = Vec::new();
        for id in 0..workers {
            let (c, s) = (cfg.clone(), shared.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("viewers-{id}"))
                    .spawn(move || Worker::new(id, workers, c, s).run())
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(Viewers {
            shared,
            workers,
            handles,
        })
    }

    /// Waits until every viewer has been started and has either reached PLAY or failed.
    pub fn wait_ramp(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.shared.ramp_done.load(Acquire) as usize == self.workers
                && self.shared.in_handshake.load(Acquire) <= 0
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn set_phase(&self, p: u32) {
        self.shared.phase.store(p, Release);
    }

    pub fn finish(self) -> ViewReport {
        self.set_phase(PHASE_STOP);
        let mut r = ViewReport::default();
        let mut secs = Vec::new();
        for h in self.handles {
            let Ok(w) = h.join() else { continue };
            r.window.add(&w.window);
            if w.window_secs > 0.0 {
                r.bits_per_sec += w.window.bytes as f64 * 8.0 / w.window_secs;
                r.packets_per_sec += w.window.packets as f64 / w.window_secs;
            }
            secs.push(w.window_secs);
            r.latency.merge(&w.latency);
            r.connect.merge(&w.connect);
            for (k, v) in w.failures {
                *r.failures.entry(k).or_default() += v;
            }
            r.workers_cpu_s += w.cpu_s;
            r.per_viewer_packets.extend(w.per_viewer_packets);
            r.per_viewer.extend(w.per_viewer);
            r.all_time.add(&w.all_time);
        }
        r.window_secs = secs.iter().copied().fold(0.0, f64::max);
        r
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Connecting,
    Describe,
    Setup(usize),
    Play,
    /// stream.mp4: waiting for the response head.
    HttpHead,
    /// WebRTC: waiting for the WHEP answer.
    Whep,
    /// WebRTC: ICE check and DTLS handshake.
    Ice,
    Playing,
}

struct Track {
    rtp_ch: u8,
    rtcp_ch: u8,
    seq: SeqTracker,
    udp: Option<(Socket, Socket)>,
}

struct Handshake {
    buf: BytesMut,
    setup_urls: Vec<String>,
    base: String,
}

/// Counters of one viewer that the packet path updates.
#[derive(Default)]
struct Counters {
    bytes: u64,
    packets: u64,
    rtcp: u64,
    bad: u64,
    latency_samples: u64,
    /// Marker bits on the first track's RTP packets (frames).
    frames: u64,
    /// Synthetic packets sent before our PLAY was answered: the ring backlog a joining
    /// viewer gets (from the last keyframe), not live latency; counted, not timed.
    backlog: u64,
    /// When PLAY was answered (CLOCK_MONOTONIC ns).
    live_from: u64,
}

struct Viewer {
    url_idx: usize,
    sock: Socket,
    state: St,
    hs: Option<Box<Handshake>>,
    carry: Vec<u8>,
    tracks: Vec<Track>,
    c: Counters,
    session: Option<String>,
    cseq: u32,
    started: u64,
    next_keepalive: u64,
    end_at: u64,
    window_start_packets: Option<u64>,
    /// The viewer's counters when the window opened (if it was playing then).
    window_start: Option<ViewerWindow>,
    /// stream.mp4 viewers: the body parser.
    mp4: Option<Box<Mp4Body>>,
    /// WebRTC viewers: ICE/DTLS/SRTP state and the UDP socket.
    rtc: Option<Box<Rtc>>,
    /// WebRTC viewers: our ICE ufrag (kept until the answer arrives).
    ufrag: String,
}

impl Viewer {
    fn snapshot(&self) -> ViewerWindow {
        ViewerWindow {
            packets: self.c.packets,
            bytes: self.c.bytes,
            frames: self.c.frames,
            lost: self
                .tracks
                .iter()
                .map(|t| t.seq.expected.saturating_sub(t.seq.received))
                .sum(),
        }
    }

    fn totals(&self, t: &mut Totals) {
        t.bytes += self.c.bytes;
        t.packets += self.c.packets;
        t.rtcp_packets += self.c.rtcp;
        t.bad_packets += self.c.bad;
        t.latency_samples += self.c.latency_samples;
        t.backlog_packets += self.c.backlog;
        for tr in &self.tracks {
            t.add_tracker(&tr.seq);
        }
    }
}

const KIND_TCP: u64 = 0;
const KIND_RTP: u64 = 1; // + track
const KIND_RTCP: u64 = 128; // + track
const KIND_RTC: u64 = 1000;
const READ_BUF: usize = 256 * 1024;
const MMSG: usize = 64;

struct Worker {
    id: usize,
    nworkers: usize,
    cfg: Arc<ViewConfig>,
    shared: Arc<Shared>,
    ep: i32,
    slots: Vec<Option<Viewer>>,
    free: Vec<usize>,
    to_free: Vec<usize>,
    retired: Totals,
    read_calls: u64,
    rbuf: Vec<u8>,
    udp_bufs: Vec<u8>,
    latency: Histogram,
    connect: Histogram,
    failures: BTreeMap<String, u64>,
    rng: Rng,
    rejoin: Vec<(u64, usize)>,
    addrs: Vec<SocketAddr>,
    /// WebRTC: the DTLS certificate all of this process's viewers use.
    identity: Option<Arc<Identity>>,
}

impl Worker {
    fn new(id: usize, nworkers: usize, cfg: Arc<ViewConfig>, shared: Arc<Shared>) -> Self {
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        let addrs = cfg
            .urls
            .iter()
            .map(|u| {
                client::parse_url(u)
                    .map(|p| p.addr)
                    .unwrap_or(([127, 0, 0, 1], 554).into())
            })
            .collect();
        let slot = cfg.max_packet.max(2048);
        Worker {
            id,
            nworkers,
            shared,
            ep,
            slots: Vec::new(),
            free: Vec::new(),
            to_free: Vec::new(),
            retired: Totals::default(),
            read_calls: 0,
            rbuf: vec![0; READ_BUF],
            udp_bufs: vec![0; MMSG * slot],
            latency: Histogram::new(),
            connect: Histogram::new(),
            failures: BTreeMap::new(),
            rng: Rng::new(now_ns() ^ ((id as u64 + 1) * 0x5851_F42D_4C95_7F2D)),
            rejoin: Vec::new(),
            addrs,
            identity: (cfg.transport == Transport::Webrtc)
                .then(|| Identity::process().ok())
                .flatten(),
            cfg,
        }
    }

    fn totals(&self) -> Totals {
        let mut t = self.retired;
        t.read_calls = self.read_calls;
        for v in self.slots.iter().flatten() {
            v.totals(&mut t);
        }
        t
    }

    fn run(mut self) -> WorkerReport {
        // Viewer k belongs to worker k % nworkers and starts at k/V of the ramp.
        let plan: Vec<(u64, usize)> = (0..self.cfg.viewers)
            .filter(|k| k % self.nworkers == self.id)
            .map(|k| {
                let at = if self.cfg.viewers > 1 {
                    (self.cfg.ramp_secs * 1e9 * k as f64 / self.cfg.viewers as f64) as u64
                } else {
                    0
                };
                (at, k % self.cfg.urls.len())
            })
            .collect();
        let t0 = now_ns();
        let mut next = 0;
        let mut ramp_reported = false;
        let mut phase = PHASE_RAMP;
        let mut report = WorkerReport::default();
        let (mut start_totals, mut start_ns, mut start_cpu) = (Totals::default(), 0u64, 0.0);
        let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
        let mut last_tick = 0u64;
        loop {
            let p = self.shared.phase.load(Acquire);
            if p != phase {
                let now = now_ns();
                if p >= PHASE_MEASURE && phase < PHASE_MEASURE {
                    start_totals = self.totals();
                    start_ns = now;
                    start_cpu = thread_cpu();
                    self.latency.reset();
                    for v in self.slots.iter_mut().flatten() {
                        v.window_start_packets = (v.state == St::Playing).then_some(v.c.packets);
                        v.window_start = (v.state == St::Playing).then(|| v.snapshot());
                    }
                }
                if p >= PHASE_END && phase < PHASE_END && start_ns > 0 {
                    report.window = self.totals().minus(&start_totals);
                    report.window_secs = (now - start_ns) as f64 / 1e9;
                    report.cpu_s = thread_cpu() - start_cpu;
                    report.per_viewer_packets = self
                        .slots
                        .iter()
                        .flatten()
                        .filter(|v| v.state == St::Playing)
                        .filter_map(|v| v.window_start_packets.map(|s| v.c.packets - s))
                        .collect();
                    report.per_viewer = self
                        .slots
                        .iter()
                        .flatten()
                        .filter(|v| v.state == St::Playing)
                        .filter_map(|v| {
                            let (a, b) = (v.window_start?, v.snapshot());
                            Some(ViewerWindow {
                                packets: b.packets - a.packets,
                                bytes: b.bytes - a.bytes,
                                frames: b.frames - a.frames,
                                lost: b.lost.saturating_sub(a.lost),
                            })
                        })
                        .collect();
                }
                phase = p;
                if p >= PHASE_STOP {
                    break;
                }
            }
            let now = now_ns();
            while next < plan.len() && t0 + plan[next].0 <= now {
                self.start_viewer(plan[next].1, now);
                next += 1;
            }
            if next == plan.len() && !ramp_reported {
                ramp_reported = true;
                self.shared.ramp_done.fetch_add(1, Release);
            }
            if now - last_tick > 100_000_000 {
                last_tick = now;
                self.tick(now, phase);
            }
            let mut timeout_ms = 10;
            if next < plan.len() {
                let wait = (t0 + plan[next].0).saturating_sub(now) / 1_000_000;
                timeout_ms = timeout_ms.min(wait as i32);
            }
            // SAFETY: `events` is a valid buffer of the given length.
            let n = unsafe {
                libc::epoll_wait(
                    self.ep,
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout_ms,
                )
            };
            for ev in events.iter().take(n.max(0) as usize) {
                let (flags, data) = (ev.events, ev.u64);
                self.event(data, flags);
            }
            self.free.append(&mut self.to_free);
        }
        // Stop: leave politely.
        let slots: Vec<usize> = (0..self.slots.len()).collect();
        for i in slots {
            if self.slots[i].is_some() {
                self.close(i, Close::Teardown);
            }
        }
        report.latency = std::mem::take(&mut self.latency);
        report.connect = std::mem::take(&mut self.connect);
        report.failures = std::mem::take(&mut self.failures);
        report.all_time = self.totals();
        // SAFETY: our epoll fd.
        unsafe { libc::close(self.ep) };
        report
    }

    /// Timeouts, keepalives, churn; every 100 ms.
    fn tick(&mut self, now: u64, phase: u32) {
        let timeout = self.cfg.connect_timeout.as_nanos() as u64;
        let ka = (self.cfg.keepalive_secs * 1e9) as u64;
        for i in 0..self.slots.len() {
            let Some(v) = &mut self.slots[i] else {
                continue;
            };
            if let (Some(r), St::Ice | St::Playing) = (v.rtc.as_mut(), v.state) {
                // ICE check retransmission until answered, consent every 5 s after, and
                // DTLS handshake timers.
                let due = if r.checked {
                    rtcview::CONSENT_NS
                } else {
                    rtcview::CHECK_RETRY_NS
                };
                if now >= r.next_check {
                    r.next_check = now + due;
                    let mut tid = [0u8; 12];
                    tid[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                    let _ = r.send_check(tid);
                }
                if v.state == St::Ice {
                    match r.on_timer(Instant::now()) {
                        Ok(true) => {
                            self.rtc_playing(i, now);
                            continue;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            self.fail(i, e);
                            continue;
                        }
                    }
                }
            }
            let Some(v) = &mut self.slots[i] else {
                continue;
            };
            if v.state != St::Playing {
                if now - v.started > timeout {
                    let why = format!("timeout in {:?}", v.state);
                    self.fail(i, why);
                }
                continue;
            }
            if ka > 0 && now >= v.next_keepalive && v.mp4.is_none() {
                v.next_keepalive = now + ka;
                let url = self.cfg.urls[v.url_idx].clone();
                if send_request(v, Method::GetParameter, &url).is_err() {
                    self.close(i, Close::Disconnect);
                    continue;
                }
            }
            if now >= v.end_at && phase < PHASE_END {
                let idx = v.url_idx;
                self.close(i, Close::Leave);
                let delay = self
                    .cfg
                    .churn
                    .map_or(0.0, |c| self.rng.range_f64(0.0, c.rejoin_delay_s));
                self.rejoin.push((now + (delay * 1e9) as u64, idx));
            }
        }
        if phase < PHASE_END {
            let due: Vec<usize> = self
                .rejoin
                .iter()
                .filter(|(t, _)| *t <= now)
                .map(|(_, u)| *u)
                .collect();
            self.rejoin.retain(|(t, _)| *t > now);
            for u in due {
                self.start_viewer(u, now);
            }
        }
    }

    fn alloc_slot(&mut self) -> usize {
        if let Some(i) = self.free.pop() {
            i
        } else {
            self.slots.push(None);
            self.slots.len() - 1
        }
    }

    fn epoll(&self, op: i32, fd: i32, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: valid epoll fd and event struct.
        if unsafe { libc::epoll_ctl(self.ep, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn start_viewer(&mut self, url_idx: usize, now: u64) {
        self.shared.in_handshake.fetch_add(1, AcqRel);
        let addr = self.addrs[url_idx];
        let sock = match Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) {
            Ok(s) => s,
            Err(e) => {
                self.count_failure(format!("socket: {e}"));
                return;
            }
        };
        let _ = sock.set_nonblocking(true);
        let _ = sock.set_nodelay(true);
        match sock.connect(&SockAddr::from(addr)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => {
                self.count_failure(format!("connect: {e}"));
                return;
            }
        }
        let i = self.alloc_slot();
        let fd = sock.as_raw_fd();
        let life = self.cfg.churn.map_or(u64::MAX, |c| {
            (self.rng.range_f64(c.min_life_s, c.max_life_s) * 1e9) as u64
        });
        self.slots[i] = Some(Viewer {
            url_idx,
            sock,
            state: St::Connecting,
            hs: Some(Box::new(Handshake {
                buf: BytesMut::new(),
                setup_urls: Vec::new(),
                base: self.cfg.urls[url_idx].clone(),
            })),
            carry: Vec::new(),
            tracks: Vec::new(),
            c: Counters::default(),
            session: None,
            cseq: 0,
            started: now,
            next_keepalive: u64::MAX,
            end_at: life,
            window_start_packets: None,
            window_start: None,
            mp4: None,
            rtc: None,
            ufrag: String::new(),
        });
        if let Err(e) = self.epoll(
            libc::EPOLL_CTL_ADD,
            fd,
            (libc::EPOLLIN | libc::EPOLLOUT) as u32,
            key(i, KIND_TCP),
        ) {
            self.fail(i, format!("epoll: {e}"));
        }
    }

    fn count_failure(&mut self, why: String) {
        self.shared.in_handshake.fetch_sub(1, AcqRel);
        self.shared.failures.fetch_add(1, Relaxed);
        *self.failures.entry(why).or_default() += 1;
    }

    /// A handshake failed: count it and drop the viewer.
    fn fail(&mut self, i: usize, why: String) {
        if let Some(v) = self.slots[i].take() {
            self.retire(v);
            self.to_free.push(i);
        }
        self.count_failure(why);
    }

    fn retire(&mut self, v: Viewer) {
        let mut t = Totals::default();
        v.totals(&mut t);
        self.retired.add(&t);
        // Dropping the sockets closes them (and removes them from the epoll set).
    }

    fn close(&mut self, i: usize, how: Close) {
        let Some(mut v) = self.slots[i].take() else {
            return;
        };
        self.to_free.push(i);
        if v.state == St::Playing {
            self.shared.playing.fetch_sub(1, AcqRel);
            if how != Close::Disconnect && v.mp4.is_none() {
                let url = self.cfg.urls[v.url_idx].clone();
                if let Some(r) = &v.rtc {
                    // WHEP: DELETE the resource on the signalling connection if it is
                    // still open (best effort; the server's consent timer ends it too).
                    if let Some(loc) = &r.location {
                        let req = rtcview::delete_request(&url, loc);
                        let _ = v.sock.send_with_flags(req.as_bytes(), libc::MSG_NOSIGNAL);
                    }
                } else {
                    let _ = send_request(&mut v, Method::Teardown, &url);
                }
            }
            match how {
                Close::Disconnect => {
                    self.shared.disconnects.fetch_add(1, Relaxed);
                }
                Close::Leave => {
                    self.shared.left.fetch_add(1, Relaxed);
                }
                Close::Teardown => {}
            }
        } else {
            self.shared.in_handshake.fetch_sub(1, AcqRel);
        }
        self.retire(v);
    }

    fn event(&mut self, data: u64, flags: u32) {
        let i = (data >> 16) as usize;
        let kind = data & 0xffff;
        let Some(Some(v)) = self.slots.get(i) else {
            return;
        };
        if kind == KIND_RTC {
            self.on_rtc(i);
        } else if kind == KIND_TCP {
            if v.state == St::Connecting {
                self.on_connected(i, flags);
            } else if v.state == St::Playing {
                self.on_tcp_data(i);
            } else {
                self.on_handshake_data(i);
            }
        } else if kind >= KIND_RTCP {
            self.on_udp(i, (kind - KIND_RTCP) as usize, true);
        } else {
            self.on_udp(i, (kind - KIND_RTP) as usize, false);
        }
    }

    fn on_connected(&mut self, i: usize, flags: u32) {
        let v = self.slots[i].as_mut().unwrap();
        let err = match v.sock.take_error() {
            Ok(Some(e)) => Some(e.to_string()),
            Ok(None) if flags & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 => {
                Some("connection failed".into())
            }
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = err {
            self.fail(i, format!("connect: {e}"));
            return;
        }
        let fd = v.sock.as_raw_fd();
        let url = self.cfg.urls[v.url_idx].clone();
        let r = if self.cfg.transport == Transport::HttpMp4 {
            v.state = St::HttpHead;
            send_http_get(v, &url)
        } else if self.cfg.transport == Transport::Webrtc {
            v.state = St::Whep;
            match &self.identity {
                Some(id) => {
                    let (ufrag, pwd) = rtcview::credentials(&mut self.rng);
                    let req = rtcview::post_request(
                        &url,
                        &rtcview::offer(&ufrag, &pwd, &id.fingerprint()),
                    );
                    v.ufrag = ufrag;
                    send_all(&v.sock, req.as_bytes())
                }
                None => Err(io::Error::other("no DTLS identity")),
            }
        } else {
            v.state = St::Describe;
            send_request(v, Method::Describe, &url)
        };
        if let Err(e) = r.and_then(|_| {
            self.epoll(
                libc::EPOLL_CTL_MOD,
                fd,
                libc::EPOLLIN as u32,
                key(i, KIND_TCP),
            )
        }) {
            self.fail(i, format!("DESCRIBE: {e}"));
        }
    }

    fn on_handshake_data(&mut self, i: usize) {
        let v = self.slots[i].as_mut().unwrap();
        let hs = v.hs.as_mut().unwrap();
        hs.buf.reserve(16 * 1024);
        let n = match read_fd(v.sock.as_raw_fd(), &mut self.rbuf[..16 * 1024]) {
            Ok(0) => {
                let st = v.state;
                self.fail(i, format!("closed during {st:?}"));
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                let st = v.state;
                self.fail(i, format!("read during {st:?}: {e}"));
                return;
            }
        };
        hs.buf.extend_from_slice(&self.rbuf[..n]);
        if v.state == St::HttpHead {
            self.on_http_head(i);
            return;
        }
        if v.state == St::Whep {
            self.on_whep_answer(i);
            return;
        }
        loop {
            let v = self.slots[i].as_mut().unwrap();
            let hs = v.hs.as_mut().unwrap();
            match message::parse(&mut hs.buf) {
                Ok(Some(Message::Response(resp))) => {
                    if let Err(e) = self.on_response(i, resp) {
                        self.fail(i, e);
                        return;
                    }
                    if self.slots[i].as_ref().unwrap().state == St::Playing {
                        // Media may have followed the PLAY answer in the same read.
                        let v = self.slots[i].as_mut().unwrap();
                        let rest = v.hs.take().unwrap().buf;
                        v.carry.extend_from_slice(&rest);
                        if !v.carry.is_empty() {
                            self.consume_carry(i);
                        }
                        return;
                    }
                }
                Ok(Some(_)) => continue,
                Ok(None) => return,
                Err(e) => {
                    self.fail(i, format!("bad RTSP: {e}"));
                    return;
                }
            }
        }
    }

    /// stream.mp4: the response head; the body bytes after it are media.
    fn on_http_head(&mut self, i: usize) {
        let v = self.slots[i].as_mut().unwrap();
        let buf = &v.hs.as_ref().unwrap().buf;
        let (len, chunked) = match mp4view::parse_head(buf) {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(e) => {
                self.fail(i, e);
                return;
            }
        };
        let now = now_ns();
        let rest = v.hs.take().unwrap().buf.split_off(len);
        v.mp4 = Some(Box::new(Mp4Body::new(chunked)));
        v.state = St::Playing;
        v.c.live_from = now;
        self.connect.record(now - v.started);
        self.shared.in_handshake.fetch_sub(1, AcqRel);
        self.shared.playing.fetch_add(1, AcqRel);
        self.shared.plays.fetch_add(1, Relaxed);
        v.carry.extend_from_slice(&rest);
        if !v.carry.is_empty() {
            self.consume_carry(i);
        }
    }

    /// WebRTC: the WHEP answer; the UDP socket sends its first check right away.
    fn on_whep_answer(&mut self, i: usize) {
        let v = self.slots[i].as_mut().unwrap();
        let buf = &v.hs.as_ref().unwrap().buf;
        let (status, location, sdp) = match rtcview::parse_answer(buf) {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(e) => {
                self.fail(i, e);
                return;
            }
        };
        if status != 201 && status != 200 {
            let first = sdp
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(80)
                .collect::<String>();
            self.fail(i, format!("WHEP POST {status}: {first}"));
            return;
        }
        let ufrag = std::mem::take(&mut v.ufrag);
        let tie = self.rng.next_u64();
        let mut r = match Rtc::new(ufrag, &sdp, location, tie) {
            Ok(r) => Box::new(r),
            Err(e) => {
                self.fail(i, e);
                return;
            }
        };
        let mut tid = [0u8; 12];
        tid[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        let now = now_ns();
        r.next_check = now + rtcview::CHECK_RETRY_NS;
        let sent = r.send_check(tid);
        let fd = r.sock.as_raw_fd();
        let tcp = v.sock.as_raw_fd();
        v.hs = None;
        v.rtc = Some(r);
        v.state = St::Ice;
        v.tracks.push(Track {
            rtp_ch: 0,
            rtcp_ch: 1,
            seq: SeqTracker::new(),
            udp: None,
        });
        // The signalling connection stays open, idle, for the DELETE at the end.
        let _ = self.epoll(libc::EPOLL_CTL_DEL, tcp, 0, 0);
        if let Err(e) = sent.and_then(|_| {
            self.epoll(
                libc::EPOLL_CTL_ADD,
                fd,
                libc::EPOLLIN as u32,
                key(i, KIND_RTC),
            )
        }) {
            self.fail(i, format!("ICE check: {e}"));
        }
    }

    /// WebRTC: DTLS connected, media follows.
    fn rtc_playing(&mut self, i: usize, now: u64) {
        let v = self.slots[i].as_mut().unwrap();
        v.state = St::Playing;
        v.c.live_from = now;
        if v.end_at != u64::MAX {
            v.end_at += now;
        }
        self.connect.record(now - v.started);
        self.shared.in_handshake.fetch_sub(1, AcqRel);
        self.shared.playing.fetch_add(1, AcqRel);
        self.shared.plays.fetch_add(1, Relaxed);
    }

    /// WebRTC: datagrams on the viewer's UDP socket, by RFC 7983 demultiplexing.
    fn on_rtc(&mut self, i: usize) {
        let slot = self.cfg.max_packet.max(2048);
        loop {
            let v = self.slots[i].as_mut().unwrap();
            let Some(r) = v.rtc.as_mut() else { return };
            let fd = r.sock.as_raw_fd();
            self.read_calls += 1;
            let mut got = [(0usize, false); MMSG];
            let n = recv_batch(fd, &mut self.udp_bufs, slot, &mut got);
            if n == 0 {
                return;
            }
            let now = now_ns();
            for (k, &(msg_len, truncated)) in got.iter().enumerate().take(n) {
                let len = msg_len.min(slot);
                let v = self.slots[i].as_mut().unwrap();
                let Some(r) = v.rtc.as_mut() else { return };
                let data = &mut self.udp_bufs[k * slot..k * slot + len];
                if truncated {
                    v.c.bad += 1;
                    continue;
                }
                match demux(data) {
                    Demux::Rtp => {
                        let Some(srtp) = r.srtp.as_mut() else {
                            continue;
                        };
                        if corecast::webrtc::srtp::is_rtcp(data) {
                            v.c.rtcp += 1;
                            continue;
                        }
                        let res = if self.cfg.srtp_decrypt {
                            srtp.unprotect_rtp(data)
                        } else {
                            Ok(data.len().saturating_sub(srtp.profile().rtp_overhead()))
                        };
                        match res {
                            Ok(plain) => on_rtp(
                                &mut v.c,
                                &mut v.tracks[0].seq,
                                &mut self.latency,
                                &data[..plain],
                                now,
                                true,
                            ),
                            Err(_) => v.c.bad += 1,
                        }
                    }
                    Demux::Stun => {
                        let Some(id) = self.identity.as_deref() else {
                            return;
                        };
                        if let Err(e) = r.on_stun(data, id) {
                            if v.state != St::Playing {
                                self.fail(i, e);
                                return;
                            }
                        }
                    }
                    Demux::Dtls => match r.on_dtls(data) {
                        Ok(true) if v.state == St::Ice => self.rtc_playing(i, now),
                        Ok(_) => {}
                        Err(e) => {
                            if v.state == St::Playing {
                                self.close(i, Close::Disconnect);
                            } else {
                                self.fail(i, e);
                            }
                            return;
                        }
                    },
                    Demux::Other => v.c.bad += 1,
                }
            }
            if n < MMSG {
                return;
            }
        }
    }

    fn on_response(&mut self, i: usize, resp: Response) -> Result<(), String> {
        let transport = self.cfg.transport;
        let v = self.slots[i].as_mut().unwrap();
        let st = v.state;
        let method = match st {
            St::Describe => "DESCRIBE",
            St::Setup(_) => "SETUP",
            St::Play => "PLAY",
            _ => "?",
        };
        if resp.status != 200 {
            return Err(format!("{method} {}", resp.status));
        }
        let url = self.cfg.urls[v.url_idx].clone();
        match st {
            St::Describe => {
                let hs = v.hs.as_mut().unwrap();
                hs.setup_urls = client::setup_urls(&url, &resp)?;
                if let Some(b) = resp.headers.get("Content-Base") {
                    hs.base = b.to_string();
                }
                v.state = St::Setup(0);
                self.send_setup(i, 0)?;
            }
            St::Setup(t) => {
                if let Some(s) = client::session_id(&resp) {
                    v.session = Some(s);
                }
                if transport == Transport::Tcp {
                    if let Some((a, b)) = resp
                        .headers
                        .get("Transport")
                        .and_then(client::interleaved_of)
                    {
                        v.tracks[t].rtp_ch = a;
                        v.tracks[t].rtcp_ch = b;
                    }
                }
                let n = v.hs.as_ref().unwrap().setup_urls.len();
                if t + 1 < n {
                    v.state = St::Setup(t + 1);
                    self.send_setup(i, t + 1)?;
                } else {
                    v.state = St::Play;
                    let base = v.hs.as_ref().unwrap().base.clone();
                    let base = base.trim_end_matches('/').to_string();
                    send_request_with(v, Method::Play, &base, &[("Range", "npt=0.000-")])
                        .map_err(|e| format!("PLAY write: {e}"))?;
                }
            }
            St::Play => {
                let now = now_ns();
                v.state = St::Playing;
                v.c.live_from = now;
                v.next_keepalive = now + (self.cfg.keepalive_secs * 1e9) as u64;
                if v.end_at != u64::MAX {
                    v.end_at += now;
                }
                self.connect.record(now - v.started);
                if self.cfg.pause {
                    let base = self.cfg.urls[v.url_idx].clone();
                    send_request(v, Method::Pause, &base).map_err(|e| format!("PAUSE: {e}"))?;
                }
                self.shared.in_handshake.fetch_sub(1, AcqRel);
                self.shared.playing.fetch_add(1, AcqRel);
                self.shared.plays.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        Ok(())
    }

    fn send_setup(&mut self, i: usize, t: usize) -> Result<(), String> {
        let transport = self.cfg.transport;
        let v = self.slots[i].as_mut().unwrap();
        let url = v.hs.as_ref().unwrap().setup_urls[t].clone();
        let (header, udp) = match transport {
            Transport::Tcp => (
                format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * t, 2 * t + 1),
                None,
            ),
            Transport::HttpMp4 | Transport::Webrtc => {
                return Err("stream.mp4 and WebRTC viewers do not SETUP".into())
            }
            Transport::Udp => {
                let (a, b) = udp_pair().map_err(|e| format!("udp bind: {e}"))?;
                let port = a
                    .local_addr()
                    .ok()
                    .and_then(|x| x.as_socket())
                    .map(|s| s.port())
                    .unwrap_or(0);
                (
                    format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1),
                    Some((a, b)),
                )
            }
        };
        let fds = udp.as_ref().map(|(a, b)| (a.as_raw_fd(), b.as_raw_fd()));
        v.tracks.push(Track {
            rtp_ch: (2 * t) as u8,
            rtcp_ch: (2 * t + 1) as u8,
            seq: SeqTracker::new(),
            udp,
        });
        send_request_with(v, Method::Setup, &url, &[("Transport", &header)])
            .map_err(|e| format!("SETUP write: {e}"))?;
        if let Some((a, b)) = fds {
            self.epoll(
                libc::EPOLL_CTL_ADD,
                a,
                libc::EPOLLIN as u32,
                key(i, KIND_RTP + t as u64),
            )
            .map_err(|e| format!("epoll: {e}"))?;
            self.epoll(
                libc::EPOLL_CTL_ADD,
                b,
                libc::EPOLLIN as u32,
                key(i, KIND_RTCP + t as u64),
            )
            .map_err(|e| format!("epoll: {e}"))?;
        }
        Ok(())
    }

    /// Readable TCP socket of a playing viewer: one read (more if it filled the buffer).
    fn on_tcp_data(&mut self, i: usize) {
        loop {
            let v = self.slots[i].as_mut().unwrap();
            let c = v.carry.len();
            self.rbuf[..c].copy_from_slice(&v.carry);
            self.read_calls += 1;
            let n = match read_fd(v.sock.as_raw_fd(), &mut self.rbuf[c..]) {
                Ok(0) => {
                    self.close(i, Close::Disconnect);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.close(i, Close::Disconnect);
                    return;
                }
            };
            let now = now_ns();
            let total = c + n;
            match consume(&self.rbuf[..total], v, &mut self.latency, now) {
                Ok(used) => {
                    v.carry.clear();
                    v.carry.extend_from_slice(&self.rbuf[used..total]);
                }
                Err(_) => {
                    v.c.bad += 1;
                    self.close(i, Close::Disconnect);
                    return;
                }
            }
            if total < self.rbuf.len() {
                return;
            }
        }
    }

    /// Bytes that arrived with the PLAY answer.
    fn consume_carry(&mut self, i: usize) {
        let v = self.slots[i].as_mut().unwrap();
        let data = std::mem::take(&mut v.carry);
        match consume(&data, v, &mut self.latency, now_ns()) {
            Ok(used) => v.carry.extend_from_slice(&data[used..]),
            Err(_) => self.close(i, Close::Disconnect),
        }
    }

    fn on_udp(&mut self, i: usize, track: usize, rtcp: bool) {
        let slot = self.cfg.max_packet.max(2048);
        let v = self.slots[i].as_mut().unwrap();
        let Some(t) = v.tracks.get_mut(track) else {
            return;
        };
        let Some((a, b)) = &t.udp else { return };
        let fd = if rtcp { b.as_raw_fd() } else { a.as_raw_fd() };
        loop {
            self.read_calls += 1;
            let mut got = [(0usize, false); MMSG];
            let n = recv_batch(fd, &mut self.udp_bufs, slot, &mut got);
            if n == 0 {
                return;
            }
            let now = now_ns();
            for (k, &(msg_len, truncated)) in got.iter().enumerate().take(n) {
                let data = &self.udp_bufs[k * slot..k * slot + msg_len.min(slot)];
                if rtcp {
                    v.c.rtcp += 1;
                } else if truncated {
                    v.c.bad += 1;
                } else {
                    on_rtp(
                        &mut v.c,
                        &mut v.tracks[track].seq,
                        &mut self.latency,
                        data,
                        now,
                        track == 0,
                    );
                }
            }
            if n < MMSG {
                return;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The peer went away or the stream broke.
    Disconnect,
    /// Churn: the viewer leaves on purpose.
    Leave,
    /// End of run.
    Teardown,
}

fn key(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << 16) | kind
}

/// Processes complete interleaved frames in `buf`; returns bytes consumed.
fn consume(buf: &[u8], v: &mut Viewer, hist: &mut Histogram, now: u64) -> Result<usize, usize> {
    if let Some(m) = v.mp4.as_mut() {
        // stream.mp4: every byte is body; a fragment counts as a packet, a video sample
        // as a frame.
        m.feed(buf).map_err(|_| 0usize)?;
        v.c.bytes = m.counts.bytes;
        v.c.packets = m.counts.fragments;
        v.c.frames = m.counts.video_frames;
        return Ok(buf.len());
    }
    let Viewer { c, tracks, .. } = v;
    frames::split(buf, |it| {
        if let Item::Frame { channel, data } = it {
            let mut first = true;
            for t in tracks.iter_mut() {
                if channel == t.rtp_ch {
                    on_rtp(c, &mut t.seq, hist, data, now, first);
                    return;
                }
                if channel == t.rtcp_ch {
                    c.rtcp += 1;
                    return;
                }
                first = false;
            }
            c.bad += 1;
        }
    })
}

#[inline]
fn on_rtp(
    c: &mut Counters,
    seq: &mut SeqTracker,
    hist: &mut Histogram,
    data: &[u8],
    now: u64,
    first_track: bool,
) {
    c.bytes += data.len() as u64;
    c.packets += 1;
    if data.len() < 12 || data[0] >> 6 != 2 {
        c.bad += 1;
        return;
    }
    if first_track && data[1] & 0x80 != 0 {
        c.frames += 1;
    }
    seq.push(u16::from_be_bytes([data[2], data[3]]));
    if let Some(sent) = source::send_time(data) {
        if sent < c.live_from {
            c.backlog += 1;
        } else {
            hist.record(now.saturating_sub(sent));
            c.latency_samples += 1;
        }
    }
}

fn read_fd(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reading into a valid mutable buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `http://host:port/api/stream.mp4?src=x` → one HTTP/1.1 GET (chunked answer, as
/// browsers get it).
fn send_http_get(v: &mut Viewer, url: &str) -> io::Result<()> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let req = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corecast-perf\r\n\r\n");
    let mut off = 0;
    let b = req.as_bytes();
    while off < b.len() {
        match v.sock.send(&b[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn send_all(sock: &Socket, b: &[u8]) -> io::Result<()> {
    let mut off = 0;
    while off < b.len() {
        match sock.send_with_flags(&b[off..], libc::MSG_NOSIGNAL) {
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn send_request(v: &mut Viewer, method: Method, url: &str) -> io::Result<()> {
    send_request_with(v, method, url, &[])
}

fn send_request_with(
    v: &mut Viewer,
    method: Method,
    url: &str,
    extra: &[(&str, &str)],
) -> io::Result<()> {
    v.cseq += 1;
    let mut out = Vec::with_capacity(256);
    let mut ex: Vec<(&str, &str)> = extra.to_vec();
    if method == Method::Describe {
        ex.push(("Accept", "application/sdp"));
    }
    client::request(method, url, v.cseq, v.session.as_deref(), &ex, &mut out);
    // Requests are small and the socket's send side is otherwise idle: one write does it.
    let n = v.sock.send_with_flags(&out, libc::MSG_NOSIGNAL)?;
    if n != out.len() {
        return Err(io::Error::other("short write"));
    }
    Ok(())
}

/// One `recvmmsg(MSG_DONTWAIT)` of up to `MMSG` datagrams into `bufs` (slot `k` at
/// `k * slot`); fills `got[k]` with (length, truncated) and returns how many arrived.
fn recv_batch(fd: i32, bufs: &mut [u8], slot: usize, got: &mut [(usize, bool); MMSG]) -> usize {
    assert!(bufs.len() >= MMSG * slot);
    let mut iov: [libc::iovec; MMSG] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MMSG];
    // SAFETY: zeroed mmsghdr is a valid "empty" value; filled below.
    let mut msgs: [libc::mmsghdr; MMSG] = unsafe { std::mem::zeroed() };
    for k in 0..MMSG {
        iov[k].iov_base = bufs[k * slot..].as_mut_ptr() as *mut libc::c_void;
        iov[k].iov_len = slot;
        msgs[k].msg_hdr.msg_iov = &mut iov[k];
        msgs[k].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every msghdr points at one iovec into `bufs`, which outlives the call.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            MMSG as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let n = n.max(0) as usize;
    for (g, m) in got.iter_mut().zip(&msgs).take(n) {
        *g = (
            m.msg_len as usize,
            m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        );
    }
    n
}

/// Receive buffer of the harness's UDP viewers (RTSP/UDP and WebRTC alike): room for
/// ~4 s of a 1 Mbit/s stream, so a viewer thread that the loaded 2-core machine runs late
/// does not turn into kernel drops counted as loss (net.core.rmem_max caps it; 4 MiB here).
pub const UDP_RCVBUF: usize = 1 << 20;

fn udp_pair() -> io::Result<(Socket, Socket)> {
    for _ in 0..200 {
        let a = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        a.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))?;
        let port = a.local_addr()?.as_socket().map(|s| s.port()).unwrap_or(1);
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        let b = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        if b.bind(&SockAddr::from(SocketAddr::from((
            [127, 0, 0, 1],
            port + 1,
        ))))
        .is_ok()
        {
            a.set_nonblocking(true)?;
            b.set_nonblocking(true)?;
            let _ = a.set_recv_buffer_size(UDP_RCVBUF);
            return Ok((a, b));
        }
    }
    Err(io::Error::other("no free UDP port pair"))
}
