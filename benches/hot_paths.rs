//! Criterion micro-benchmarks of corecast's hot paths. What each group measures, how to run
//! it and the recorded results are in BENCHMARKS.md.
//!
//! - `rtsp_parse`: `rtsp::message::parse` on real requests and on interleaved RTP frames.
//! - `rtp_view`: `rtp::view`, and the whole parse-once ingest (`Ingest::packet`).
//! - `fanout`: one packet into a `Ring<Rc<Packet>>`, read by N cursors doing the RTSP
//!   writer's per-viewer work minus the syscall.
//! - `writer_replica`: a caught-up viewer's per-packet work in `shards/src/drive/rtsp.rs`
//!   (writer turn and `take_batch`) and `shards/src/hub.rs` (waker registration), copied
//!   here (a binary crate, so not importable) in the version before the fixes (`_old`,
//!   `_scan`: commit 16d993c) and after (`_new`, `_epoch`), so one run gives both. Keep the
//!   new copies in step with that code, or delete them once it changes.
//! - `relay`: the cross-shard hop between two real glommio executors.
//!
//! A counting global allocator (thread-local switch and counter: no atomics) checks the
//! allocation claims once per run and prints `alloc-check:` lines.

use bytes::BytesMut;
use corecast::ingest::Ingest;
use corecast::packet::Packet;
use corecast::ring::{Cursor, Next, Ring};
use corecast::rtp::rtcp::{self, SenderInfo};
use corecast::rtsp::message::{self, Message, Method};
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Allocation counting
// ---------------------------------------------------------------------------------------

/// The system allocator, counting allocations made on the current thread while switched on.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note_alloc() {
    // `try_with`: allocations can happen while thread-locals are being torn down.
    let on = COUNTING.try_with(Cell::get).unwrap_or(false);
    if on {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counting touches only
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the number of allocations (and reallocations) it
/// made on this thread.
fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, u64) {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get))
}

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

const LAVF: &str = "Lavf61.7.100";

/// What FFmpeg (`ffplay`/`ffmpeg -rtsp_transport tcp -i ...`) sends to set up a track.
fn setup_request() -> String {
    format!(
        "SETUP rtsp://127.0.0.1:8554/cam/trackID=0 RTSP/1.0\r\n\
         Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\
         CSeq: 3\r\n\
         User-Agent: {LAVF}\r\n\r\n"
    )
}

fn describe_request() -> String {
    format!(
        "DESCRIBE rtsp://127.0.0.1:8554/cam RTSP/1.0\r\n\
         Accept: application/sdp\r\n\
         CSeq: 2\r\n\
         User-Agent: {LAVF}\r\n\r\n"
    )
}

/// OPTIONS, DESCRIBE, SETUP, PLAY sent back to back (one read holds all four).
fn pipeline() -> String {
    format!(
        "OPTIONS rtsp://127.0.0.1:8554/cam RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: {LAVF}\r\n\r\n\
         {}{}\
         PLAY rtsp://127.0.0.1:8554/cam/ RTSP/1.0\r\nRange: npt=0.000-\r\nCSeq: 4\r\n\
         User-Agent: {LAVF}\r\nSession: 3F2A9C01D4E5B677\r\n\r\n",
        describe_request(),
        setup_request()
    )
}

/// The SDP FFmpeg announces for H.264 + AAC.
const LAVF_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\na=tool:libavformat 61.7.100\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAH6zZQFAFuhAAAAMAEAAAAwPA8YMZYA==,aOvjyyLA; profile-level-id=64001F\r\n\
a=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1190\r\n\
a=control:streamid=1\r\n";

/// An RTP packet of `len` bytes: PT 96, then `payload_head`, then filler.
fn rtp_packet(len: usize, seq: u16, payload_head: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    corecast::rtp::write_header(&mut p, 96, false, seq, 90_000, 0x1234_5678);
    p.extend_from_slice(payload_head);
    p.resize(len, 0xA5);
    p
}

/// H.264 FU-A, first fragment of an IDR slice (NRI 3): a keyframe start.
const FU_A_IDR_START: [u8; 2] = [0x7C, 0x85];
/// H.264 FU-A, middle fragment of a non-IDR slice: the common case.
const FU_A_MIDDLE: [u8; 2] = [0x5C, 0x01];

/// A connection's receive buffer in steady state: already split once, so later splits only
/// bump a reference count (as in the RTSP reader, whose buffer lives for the connection).
fn conn_buffer(bytes: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(bytes.len());
    buf.extend_from_slice(bytes);
    drop(buf.split_to(0));
    buf
}

/// `n` packets as the RTSP reader produces them: slices of 64 KiB receive buffers, so
/// packets from one read share one reference count.
fn received_packets(n: usize, len: usize) -> Vec<Packet> {
    let per_read = (64 * 1024) / (len + 4);
    let mut out = Vec::with_capacity(n);
    let mut buf = BytesMut::new();
    for i in 0..n {
        if i % per_read == 0 {
            buf = BytesMut::with_capacity(per_read * len);
        }
        buf.extend_from_slice(&rtp_packet(len, i as u16, &FU_A_MIDDLE));
        let data = buf.split_to(len).freeze();
        out.push(Packet {
            data,
            track: 0,
            seq: (1 << 16) + i as u64,
            timestamp: (1 << 32) + 90_000 + 3000 * (i as u64 / 8),
            marker: i % 8 == 7,
            keyframe: false,
            arrival: 1_000_000 + 4_000 * i as u64,
            payload_offset: 12,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------
// rtsp_parse
// ---------------------------------------------------------------------------------------

/// Parses everything in `buf`, dropping each message (as the reader does once handled).
fn parse_all(buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Some(m) = message::parse(buf).expect("valid input") {
        black_box(&m);
        n += 1;
    }
    n
}

fn bench_rtsp_parse(c: &mut Criterion) {
    let setup = setup_request();
    let describe = describe_request();
    let pipe = pipeline();
    const FRAMES: usize = 64;
    const FRAME_PAYLOAD: usize = 1400;
    let mut frames = Vec::with_capacity(FRAMES * (FRAME_PAYLOAD + 4));
    for i in 0..FRAMES {
        frames.extend_from_slice(&message::write_interleaved_header(0, FRAME_PAYLOAD as u16));
        frames.extend_from_slice(&rtp_packet(FRAME_PAYLOAD, i as u16, &FU_A_MIDDLE));
    }

    // Sanity and allocation checks.
    let mut b = conn_buffer(setup.as_bytes());
    let (m, allocs) = count_allocs(|| message::parse(&mut b).unwrap().unwrap());
    match &m {
        Message::Request(r) => {
            assert_eq!(r.method, Method::Setup);
            assert!(r.headers.get("Transport").is_some());
        }
        other => panic!("expected a request, got {other:?}"),
    }
    drop(m);
    eprintln!("alloc-check: rtsp_parse SETUP request: {allocs} allocations per parse");
    let mut b = conn_buffer(pipe.as_bytes());
    let (n, allocs) = count_allocs(|| parse_all(&mut b));
    assert_eq!(n, 4);
    eprintln!("alloc-check: rtsp_parse 4-request pipeline: {allocs} allocations for 4 parses");
    let mut b = conn_buffer(&frames);
    let (n, allocs) = count_allocs(|| parse_all(&mut b));
    assert_eq!(n, FRAMES);
    eprintln!(
        "alloc-check: rtsp_parse interleaved {FRAME_PAYLOAD} B frames: {allocs} allocations for {FRAMES} frames"
    );

    let mut g = c.benchmark_group("rtsp_parse");
    for (name, text, msgs) in [
        ("setup_ffmpeg", setup.as_bytes(), 1u64),
        ("describe", describe.as_bytes(), 1),
        ("pipeline_4", pipe.as_bytes(), 4),
    ] {
        g.throughput(Throughput::Elements(msgs));
        g.bench_function(name, |bch| {
            bch.iter_batched_ref(|| conn_buffer(text), parse_all, BatchSize::SmallInput)
        });
    }
    // 64 frames per iteration (about one 64 KiB read): the zero-copy split path.
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.bench_function("interleaved_1400x64", |bch| {
        bch.iter_batched_ref(
            || conn_buffer(&frames),
            parse_all,
            BatchSize::NumIterations(16),
        )
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// rtp_view and ingest
// ---------------------------------------------------------------------------------------

fn bench_rtp_view(c: &mut Criterion) {
    let pkt = rtp_packet(1200, 4242, &FU_A_MIDDLE);
    let sdp = corecast::sdp::parse(LAVF_SDP).expect("valid SDP");
    let mut ingest = Ingest::new(&sdp);
    let idr = conn_buffer(&rtp_packet(1200, 1, &FU_A_IDR_START)).freeze();
    let mid = conn_buffer(&rtp_packet(1200, 2, &FU_A_MIDDLE)).freeze();

    let ((p, learned), allocs) = count_allocs(|| ingest.packet(0, idr.clone(), 7).unwrap());
    assert!(p.keyframe && learned.is_none());
    assert_eq!(p.payload_offset, 12);
    drop(p);
    eprintln!("alloc-check: Ingest::packet (FU-A IDR start): {allocs} allocations per packet");

    let mut g = c.benchmark_group("rtp_view");
    g.throughput(Throughput::Elements(1));
    g.bench_function("view_1200", |b| {
        b.iter(|| corecast::rtp::view(black_box(&pkt[..])))
    });
    for (name, data) in [
        ("ingest_fu_a_idr_start", &idr),
        ("ingest_fu_a_middle", &mid),
    ] {
        g.bench_function(name, |b| {
            // The `Bytes` clone (one atomic increment) stands for the split off the receive
            // buffer the reader would hand over; the packet is dropped (one decrement).
            b.iter(|| ingest.packet(0, black_box(data.clone()), 1_000))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// fanout
// ---------------------------------------------------------------------------------------

/// Writer batch size and buffer capacities, as in `shards/src/drive/rtsp.rs`.
const BATCH: usize = 64;
const RING: usize = 4096;

/// One viewer's state: its cursor and the writer's reusable buffers.
struct Reader {
    cursor: Cursor,
    batch: Vec<Rc<Packet>>,
    hdrs: Vec<[u8; 4]>,
    /// Stands for `libc::iovec` (base, len): what `sendmsg` would be given.
    iov: Vec<(*const u8, usize)>,
    /// Media index -> interleaved RTP channel, as the writer's `outs`.
    outs: Vec<Option<u8>>,
}

impl Reader {
    fn new(ring: &Ring<Rc<Packet>>) -> Reader {
        Reader {
            cursor: Cursor::join(ring),
            batch: Vec::with_capacity(BATCH),
            hdrs: Vec::with_capacity(BATCH + 8),
            iov: Vec::with_capacity(2 * BATCH + 16),
            outs: vec![Some(0), Some(2)],
        }
    }

    /// The writer's per-viewer work for one turn, minus the syscall: take what is new from
    /// the ring, build the 4-byte headers and the (header, shared payload) iovec pairs.
    /// Returns the number of iovecs built.
    #[inline]
    fn turn(&mut self, ring: &Ring<Rc<Packet>>, max_lag: u64) -> usize {
        self.batch.clear();
        self.hdrs.clear();
        self.iov.clear();
        while self.batch.len() < BATCH {
            match self.cursor.next(ring, max_lag) {
                Next::Item(p) => {
                    if let Some(Some(_)) = self.outs.get(p.track as usize) {
                        self.batch.push(Rc::clone(p));
                    }
                }
                Next::Empty => break,
            }
        }
        for p in &self.batch {
            let ch = self.outs[p.track as usize].unwrap_or(0);
            let len = p.data.len().min(u16::MAX as usize) as u16;
            self.hdrs.push(message::write_interleaved_header(ch, len));
        }
        for (h, p) in self.hdrs.iter().zip(&self.batch) {
            self.iov.push((h.as_ptr(), h.len()));
            self.iov.push((p.data.as_ptr(), p.data.len()));
        }
        // Here the writer would call sendmsg(iov).
        black_box(&self.iov);
        let n = self.iov.len();
        // As the writer does after the write: the Rc clones go.
        self.batch.clear();
        n
    }
}

/// A stream with `n` caught-up readers, and the packet source that feeds it.
struct Fanout {
    ring: Ring<Rc<Packet>>,
    readers: Vec<Reader>,
    source: Vec<Packet>,
    next: usize,
    max_lag: u64,
}

impl Fanout {
    fn new(n: usize) -> Fanout {
        let source = received_packets(1024, 1200);
        let mut ring = Ring::new(RING);
        // Steady state: the ring is full, so every push also frees the slot it overwrites.
        // The last keyframe is a GOP (300 packets) before the head: readers join there.
        let fill = RING + 300;
        for i in 0..fill {
            ring.push(Rc::new(source[i % source.len()].clone()), i == RING);
        }
        let mut readers: Vec<Reader> = (0..n).map(|_| Reader::new(&ring)).collect();
        let max_lag = (ring.capacity() / 2) as u64;
        for r in &mut readers {
            while r.turn(&ring, max_lag) > 0 {}
        }
        Fanout {
            ring,
            readers,
            source,
            next: fill,
            max_lag,
        }
    }

    fn push_one(&mut self) {
        let p = Rc::new(self.source[self.next % self.source.len()].clone());
        self.next += 1;
        self.ring.push(p, false);
    }

    /// One packet in, every reader takes it. Returns the iovecs built (2 per reader).
    fn step(&mut self) -> usize {
        self.push_one();
        let mut iovs = 0;
        for r in &mut self.readers {
            iovs += r.turn(&self.ring, self.max_lag);
        }
        iovs
    }
}

fn bench_fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for n in [100usize, 1_000, 10_000] {
        let mut f = Fanout::new(n);
        let (iovs, allocs) = count_allocs(|| f.step());
        assert_eq!(iovs, 2 * n, "every reader takes exactly the one new packet");
        assert_eq!(
            allocs, 1,
            "one allocation per packet (its Rc), none per reader"
        );
        eprintln!(
            "alloc-check: fanout {n} readers: {allocs} allocation per packet (the Rc); \
             {} B of reader state each, plus 4 heap buffers",
            std::mem::size_of::<Reader>()
        );
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| b.iter(|| f.step()));
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// writer_replica
// ---------------------------------------------------------------------------------------
//
// `shards` is a binary crate, so this section copies what a caught-up RTSP viewer runs per
// packet in `shards/src/hub.rs` and `shards/src/drive/rtsp.rs`, in two versions: `_old` as
// at commit 16d993c, and `_new` as after the fixes (registration once per notify epoch,
// `stream.tick()` instead of a clock read per writer turn, counters published every
// 250 ms). Code that did not change is shared or copied the same way into both, so the
// difference between the two versions is the fix. Keep both copies in step with the code
// (the `_new` ones at least), or delete them once it changes.

/// As in `shards/src/drive/rtsp.rs`.
const MAX_DELAY_US: u64 = 2_000_000;
const SR_INTERVAL_US: u64 = 2_000_000;
const STATS_INTERVAL_US: u64 = 250_000;

/// `hub::Clock`: monotonic microseconds since start.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// The parts of `hub::LocalStream` the writer and the waker registration touch. `epoch`
/// and `tick` exist only in the new code; the old methods leave them alone.
struct Stream {
    ring: RefCell<Ring<Rc<Packet>>>,
    waiters: RefCell<Vec<Waker>>,
    epoch: Cell<u64>,
    tick: Cell<u64>,
    closed: Cell<bool>,
}

impl Stream {
    fn new(ring: Ring<Rc<Packet>>) -> Rc<Stream> {
        Rc::new(Stream {
            ring: RefCell::new(ring),
            waiters: RefCell::new(Vec::new()),
            epoch: Cell::new(0),
            tick: Cell::new(0),
            closed: Cell::new(false),
        })
    }

    fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn tick(&self) -> u64 {
        self.tick.get()
    }

    /// `LocalStream::notify` at 16d993c: takes the list, leaving a new empty `Vec` that the
    /// viewers' registrations grow again.
    fn notify_old(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    /// `LocalStream::register` at 16d993c: scans the list for the caller's own waker.
    fn register_old(&self, cx: &Context<'_>) {
        let mut w = self.waiters.borrow_mut();
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
    }

    /// `LocalStream::poll_data` at 16d993c.
    fn poll_data_old(&self, pos: u64, cx: &Context<'_>) -> Poll<()> {
        if self.closed.get() || self.ring.borrow().head() > pos {
            return Poll::Ready(());
        }
        self.register_old(cx);
        Poll::Pending
    }

    /// `LocalStream::notify` now: drains in place (keeps the capacity), bumps the epoch.
    fn notify_new(&self) {
        let mut w = self.waiters.borrow_mut();
        self.epoch.set(self.epoch.get() + 1);
        for waker in w.drain(..) {
            waker.wake();
        }
    }

    /// `LocalStream::poll_data` now: registers at most once per epoch, checked against the
    /// viewer's own marker (`Conn::registered`).
    fn poll_data_new(&self, pos: u64, registered: &Cell<u64>, cx: &Context<'_>) -> Poll<()> {
        if self.closed.get() || self.ring.borrow().head() > pos {
            return Poll::Ready(());
        }
        let mark = self.epoch.get() + 1;
        if registered.get() != mark {
            self.waiters.borrow_mut().push(cx.waker().clone());
            registered.set(mark);
        }
        Poll::Pending
    }
}

/// `Out` in `shards/src/drive/rtsp.rs`, with the same layout: `dests` holds these by value.
#[derive(Clone, Copy)]
enum Out {
    Tcp {
        rtp: u8,
        rtcp: u8,
    },
    #[expect(
        dead_code,
        reason = "kept for the layout; the replicated viewers use TCP"
    )]
    Udp {
        rtp: SocketAddr,
        rtcp: SocketAddr,
    },
}

/// `TrackSync` in `shards/src/drive/rtsp.rs`.
#[derive(Clone, Copy, Default)]
struct TrackSync {
    ssrc: u32,
    clock_rate: u32,
    offset_us: Option<i64>,
    frozen: bool,
    packets: u32,
    octets: u32,
    last_sr: u64,
}

/// `registry::ConsumerStats`: a viewer's counters, shared with the API.
#[derive(Default)]
struct ConsumerStats {
    bytes: AtomicU64,
    packets: AtomicU64,
    skips: AtomicU64,
    skipped_packets: AtomicU64,
}

/// `Play` in `shards/src/drive/rtsp.rs` (the `pending_*`/`stats_at` fields are new; the
/// old code leaves them alone).
struct Play {
    stream: Rc<Stream>,
    cursor: Cursor,
    outs: Vec<Option<Out>>,
    sync: Vec<TrackSync>,
    consumer: Arc<ConsumerStats>,
    max_lag: u64,
    pending_packets: u64,
    pending_bytes: u64,
    stats_at: u64,
}

impl Play {
    /// `Play::flush_stats` (new).
    fn flush_stats(&mut self, now: u64) {
        let c = &self.consumer;
        c.packets
            .fetch_add(std::mem::take(&mut self.pending_packets), Relaxed);
        c.bytes
            .fetch_add(std::mem::take(&mut self.pending_bytes), Relaxed);
        self.stats_at = now;
    }
}

/// The parts of `Conn` (one per connection, behind an `Rc`) the writer touches.
struct Conn {
    play: RefCell<Option<Play>>,
    /// New: the writer's registration marker (see `Stream::poll_data_new`).
    registered: Cell<u64>,
}

enum Step {
    Idle,
    Wait(Rc<Stream>, u64),
    End,
    Write,
}

/// A sender-report clock anchor, as `registry::Anchor`.
#[derive(Clone, Copy)]
struct Anchor {
    rtp: u32,
    unix_us: u64,
}

/// Stands for `Registry::sync_of` (a registry lock and a map lookup), which the new
/// `take_batch` calls only when a sender report is due (every 2 s per track): here no
/// anchor, arrival-time sync allowed, as for a publisher.
fn sync_of() -> (Option<Anchor>, bool) {
    black_box((None, true))
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `take_batch` at 16d993c, given `now` by the writer (which read the clock for it).
fn take_batch_old(
    conn: &Conn,
    now: u64,
    batch: &mut Vec<Rc<Packet>>,
    dests: &mut Vec<Option<Out>>,
    rtcp_bufs: &mut Vec<Vec<u8>>,
) -> Step {
    let mut play_ref = conn.play.borrow_mut();
    let Some(play) = play_ref.as_mut() else {
        return Step::Idle;
    };
    if play.stream.is_closed() {
        return Step::End;
    }
    let ring = play.stream.ring.borrow();
    let skips_before = play.cursor.skips;
    if let Some(next) = play.cursor.peek(&ring) {
        if now.saturating_sub(next.arrival) > MAX_DELAY_US {
            play.cursor.jump_to_last_keyframe(&ring);
        }
    }
    while batch.len() < BATCH {
        match play.cursor.next(&ring, play.max_lag) {
            Next::Item(p) => {
                if let Some(Some(_)) = play.outs.get(p.track as usize) {
                    batch.push(p.clone());
                }
            }
            Next::Empty => break,
        }
    }
    if play.cursor.skips != skips_before {
        let c = &play.consumer;
        c.skips.store(play.cursor.skips, Relaxed);
        c.skipped_packets.store(play.cursor.skipped, Relaxed);
    }
    drop(ring);
    if batch.is_empty() {
        return Step::Wait(play.stream.clone(), play.cursor.position());
    }
    dests.clear();
    let mut bytes = 0u64;
    for p in batch.iter() {
        let t = p.track as usize;
        dests.push(play.outs[t]);
        bytes += p.data.len() as u64;
        let s = &mut play.sync[t];
        if s.packets == 0 {
            s.ssrc = corecast::rtp::view(&p.data).map(|v| v.ssrc).unwrap_or(0);
        }
        s.packets = s.packets.wrapping_add(1);
        s.octets = s
            .octets
            .wrapping_add(p.data.len().saturating_sub(p.payload_offset as usize) as u32);
        let media_us = (p.timestamp as i128 * 1_000_000 / s.clock_rate.max(1) as i128) as i64;
        let off = p.arrival as i64 - media_us;
        match s.offset_us {
            None => s.offset_us = Some(off),
            Some(o) if !s.frozen && off < o => s.offset_us = Some(off),
            Some(o) if s.frozen && (off - o).abs() > 1_000_000 => s.offset_us = Some(off),
            _ => {}
        }
    }
    rtcp_bufs.clear();
    for (t, s) in play.sync.iter_mut().enumerate() {
        if s.packets > 0 && now.saturating_sub(s.last_sr) >= SR_INTERVAL_US {
            if let (Some(off), Some(out)) = (s.offset_us, play.outs[t]) {
                s.last_sr = now;
                s.frozen = true;
                let media_us = now as i64 - off;
                let rtp_time = (media_us as i128 * s.clock_rate as i128 / 1_000_000) as u64 as u32;
                let info = SenderInfo {
                    ssrc: s.ssrc,
                    ntp: rtcp::unix_micros_to_ntp(unix_micros()),
                    rtp_time,
                    packet_count: s.packets,
                    octet_count: s.octets,
                };
                let mut b = Vec::with_capacity(64);
                rtcp::write_sender_report(&mut b, &info, "corecast");
                rtcp_bufs.push(b);
                dests.push(Some(out));
            }
        }
    }
    let c = &play.consumer;
    c.packets.fetch_add(batch.len() as u64, Relaxed);
    c.bytes.fetch_add(bytes, Relaxed);
    Step::Write
}

/// `take_batch` now: `now` is the stream's last flush time (the clock is read only for a
/// sender report), counters go to the shared atomics every `STATS_INTERVAL_US`.
fn take_batch_new(
    conn: &Conn,
    clock: Clock,
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
        return Step::End;
    }
    let ring = play.stream.ring.borrow();
    let skips_before = play.cursor.skips;
    if let Some(next) = play.cursor.peek(&ring) {
        if now.saturating_sub(next.arrival) > MAX_DELAY_US {
            play.cursor.jump_to_last_keyframe(&ring);
        }
    }
    while batch.len() < BATCH {
        match play.cursor.next(&ring, play.max_lag) {
            Next::Item(p) => {
                if let Some(Some(_)) = play.outs.get(p.track as usize) {
                    batch.push(p.clone());
                }
            }
            Next::Empty => break,
        }
    }
    if play.cursor.skips != skips_before {
        let c = &play.consumer;
        c.skips.store(play.cursor.skips, Relaxed);
        c.skipped_packets.store(play.cursor.skipped, Relaxed);
    }
    drop(ring);
    if batch.is_empty() {
        return Step::Wait(play.stream.clone(), play.cursor.position());
    }
    dests.clear();
    let mut bytes = 0u64;
    for p in batch.iter() {
        let t = p.track as usize;
        dests.push(play.outs[t]);
        bytes += p.data.len() as u64;
        let s = &mut play.sync[t];
        if s.packets == 0 {
            s.ssrc = corecast::rtp::view(&p.data).map(|v| v.ssrc).unwrap_or(0);
        }
        s.packets = s.packets.wrapping_add(1);
        s.octets = s
            .octets
            .wrapping_add(p.data.len().saturating_sub(p.payload_offset as usize) as u32);
        let media_us = (p.timestamp as i128 * 1_000_000 / s.clock_rate.max(1) as i128) as i64;
        let off = p.arrival as i64 - media_us;
        match s.offset_us {
            None => s.offset_us = Some(off),
            Some(o) if !s.frozen && off < o => s.offset_us = Some(off),
            Some(o) if s.frozen && off.abs_diff(o) > 1_000_000 => s.offset_us = Some(off),
            _ => {}
        }
    }
    rtcp_bufs.clear();
    let mut rtcp_dests: Vec<Option<Out>> = Vec::new();
    for (t, s) in play.sync.iter_mut().enumerate() {
        if s.packets == 0 || now.saturating_sub(s.last_sr) < SR_INTERVAL_US {
            continue;
        }
        let Some(out) = play.outs[t] else { continue };
        s.last_sr = now;
        // Both clocks read at the same instant (the tick time may be a little old).
        let (mono_now, now_unix) = (clock.now(), unix_micros());
        let rate = s.clock_rate.max(1) as i128;
        let rtp_time = match sync_of() {
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
    dests.splice(0..0, rtcp_dests);
    play.pending_packets += batch.len() as u64;
    play.pending_bytes += bytes;
    if now.saturating_sub(play.stats_at) >= STATS_INTERVAL_US {
        play.flush_stats(now);
    }
    Step::Write
}

/// One viewer: its connection, and the writer task's reusable buffers.
struct Viewer {
    conn: Rc<Conn>,
    batch: Vec<Rc<Packet>>,
    dests: Vec<Option<Out>>,
    rtcp_bufs: Vec<Vec<u8>>,
    hdrs: Vec<[u8; 4]>,
    /// Stands for `libc::iovec`.
    iov: Vec<(*const u8, usize)>,
}

impl Viewer {
    /// The writer's `Step::Write` arm minus the syscall (sender reports first, as now; the
    /// old writer put them after the media, which is the same work). Returns the iovecs.
    fn write(&mut self) -> usize {
        self.hdrs.clear();
        self.iov.clear();
        let n_rtcp = self.rtcp_bufs.len();
        let items = self
            .rtcp_bufs
            .iter()
            .map(|b| &b[..])
            .chain(self.batch.iter().map(|p| &p.data[..]));
        for (i, data) in items.enumerate() {
            let rtcp = i < n_rtcp;
            if let Some(Out::Tcp { rtp, rtcp: rtcp_ch }) = self.dests[i] {
                let ch = if rtcp { rtcp_ch } else { rtp };
                self.hdrs.push(message::write_interleaved_header(
                    ch,
                    data.len().min(u16::MAX as usize) as u16,
                ));
            }
        }
        let mut h = 0;
        for (i, data) in self
            .rtcp_bufs
            .iter()
            .map(|b| &b[..])
            .chain(self.batch.iter().map(|p| &p.data[..]))
            .enumerate()
        {
            if let Some(Out::Tcp { .. }) = self.dests[i] {
                self.iov.push((self.hdrs[h].as_ptr(), self.hdrs[h].len()));
                self.iov.push((data.as_ptr(), data.len()));
                h += 1;
            }
        }
        // Here the writer would call sendmsg(iov).
        black_box(&self.iov);
        self.batch.clear();
        self.iov.len()
    }

    /// A caught-up viewer's writer for one new packet, at 16d993c: clock read,
    /// `take_batch` (Write), the write, then round the loop: clock read again, `take_batch`
    /// finds nothing (Wait), where the writer would register its waker.
    fn packet_old(&mut self, clock: Clock) -> usize {
        let now = clock.now();
        let Step::Write = take_batch_old(
            &self.conn,
            now,
            &mut self.batch,
            &mut self.dests,
            &mut self.rtcp_bufs,
        ) else {
            unreachable!("a caught-up viewer has the new packet to write")
        };
        let n = self.write();
        let now = clock.now();
        let Step::Wait(s, pos) = take_batch_old(
            &self.conn,
            now,
            &mut self.batch,
            &mut self.dests,
            &mut self.rtcp_bufs,
        ) else {
            unreachable!("nothing more to write")
        };
        black_box((&s, pos));
        n
    }

    /// The same with the new `take_batch`: no clock read in the writer (`take_batch` gets
    /// the clock, but reads it only when a sender report is due).
    fn packet_new(&mut self, clock: Clock) -> usize {
        let Step::Write = take_batch_new(
            &self.conn,
            clock,
            &mut self.batch,
            &mut self.dests,
            &mut self.rtcp_bufs,
        ) else {
            unreachable!("a caught-up viewer has the new packet to write")
        };
        let n = self.write();
        let Step::Wait(s, pos) = take_batch_new(
            &self.conn,
            clock,
            &mut self.batch,
            &mut self.dests,
            &mut self.rtcp_bufs,
        ) else {
            unreachable!("nothing more to write")
        };
        black_box((&s, pos));
        n
    }
}

/// One stream (4096 slots, full) with `n` caught-up viewers playing two TCP tracks (H.264 on
/// channels 0-1, AAC on 2-3); all packets are video.
struct Writers {
    clock: Clock,
    stream: Rc<Stream>,
    viewers: Vec<Viewer>,
    source: Vec<Packet>,
    next: usize,
}

impl Writers {
    fn new(n: usize) -> Writers {
        let clock = Clock(Instant::now());
        let source = received_packets(1024, 1200);
        let mut ring = Ring::new(RING);
        let fill = RING + 300;
        for i in 0..fill {
            let mut p = source[i % source.len()].clone();
            p.arrival = clock.now();
            ring.push(Rc::new(p), i == RING);
        }
        let max_lag = (ring.capacity() / 2) as u64;
        let stream = Stream::new(ring);
        let ring = stream.ring.borrow();
        let viewers = (0..n)
            .map(|_| {
                // Caught up: joined at the last keyframe, then read to the head.
                let mut cursor = Cursor::join(&ring);
                while let Next::Item(_) = cursor.next(&ring, max_lag) {}
                let track = |clock_rate| TrackSync {
                    clock_rate,
                    ..Default::default()
                };
                let play = Play {
                    stream: Rc::clone(&stream),
                    cursor,
                    outs: vec![
                        Some(Out::Tcp { rtp: 0, rtcp: 1 }),
                        Some(Out::Tcp { rtp: 2, rtcp: 3 }),
                    ],
                    sync: vec![track(90_000), track(48_000)],
                    consumer: Arc::new(ConsumerStats::default()),
                    max_lag,
                    pending_packets: 0,
                    pending_bytes: 0,
                    stats_at: 0,
                };
                Viewer {
                    conn: Rc::new(Conn {
                        play: RefCell::new(Some(play)),
                        registered: Cell::new(0),
                    }),
                    batch: Vec::with_capacity(BATCH),
                    dests: Vec::with_capacity(BATCH),
                    rtcp_bufs: Vec::new(),
                    hdrs: Vec::with_capacity(BATCH + 8),
                    iov: Vec::with_capacity(2 * BATCH + 16),
                }
            })
            .collect::<Vec<_>>();
        drop(ring);
        Writers {
            clock,
            stream,
            viewers,
            source,
            next: fill,
        }
    }

    /// The producer's side of one packet: ingest stamps its arrival, `LocalStream::push`.
    fn push(&mut self) {
        let mut p = self.source[self.next % self.source.len()].clone();
        self.next += 1;
        p.arrival = self.clock.now();
        let key = p.keyframe;
        self.stream.ring.borrow_mut().push(Rc::new(p), key);
    }

    /// One packet in, through the old flush and the old writers. Returns the iovecs built.
    fn step_old(&mut self) -> usize {
        self.push();
        self.stream.notify_old();
        let clock = self.clock;
        self.viewers.iter_mut().map(|v| v.packet_old(clock)).sum()
    }

    /// The same through the new `Shard::flush` (one clock read per tick) and writers.
    fn step_new(&mut self) -> usize {
        self.push();
        self.stream.tick.set(self.clock.now());
        self.stream.notify_new();
        let clock = self.clock;
        self.viewers.iter_mut().map(|v| v.packet_new(clock)).sum()
    }
}

/// A waker that does nothing, distinct per viewer (as each writer task's waker is).
struct NoopWake;

impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// `n` viewers waiting on one stream: each with its writer task's waker and its `Conn`
/// (which holds the new registration marker).
struct Waiting {
    stream: Rc<Stream>,
    viewers: Vec<(Waker, Rc<Conn>)>,
    pos: u64,
}

impl Waiting {
    fn new(n: usize) -> Waiting {
        let stream = Stream::new(Ring::new(RING));
        let pos = stream.ring.borrow().head();
        let viewers = (0..n)
            .map(|_| {
                let conn = Rc::new(Conn {
                    play: RefCell::new(None),
                    registered: Cell::new(0),
                });
                (Waker::from(Arc::new(NoopWake)), conn)
            })
            .collect();
        Waiting {
            stream,
            viewers,
            pos,
        }
    }

    /// Old: a flush wakes every viewer, then each one's `poll_data` registers again,
    /// scanning the list for its own waker first.
    fn cycle_scan(&self) {
        self.stream.notify_old();
        for (waker, _) in &self.viewers {
            let cx = Context::from_waker(waker);
            let _ = black_box(self.stream.poll_data_old(self.pos, &cx));
        }
    }

    /// New: the same with the epoch marker.
    fn cycle_epoch(&self) {
        self.stream.notify_new();
        for (waker, conn) in &self.viewers {
            let cx = Context::from_waker(waker);
            let _ = black_box(self.stream.poll_data_new(self.pos, &conn.registered, &cx));
        }
    }
}

fn bench_writer_replica(c: &mut Criterion) {
    // Every viewer writes exactly the new packet, with no allocation (the sender-report
    // clocks start at 0, so none is due for 2 s).
    let n = 1_000usize;
    let mut old = Writers::new(n);
    let mut new = Writers::new(n);
    let (iovs, allocs_old) = count_allocs(|| old.step_old());
    assert_eq!(iovs, 2 * n);
    let (iovs, allocs_new) = count_allocs(|| new.step_new());
    assert_eq!(iovs, 2 * n);
    assert_eq!((allocs_old, allocs_new), (1, 1), "only the packet's Rc");
    eprintln!(
        "alloc-check: writer_replica turn {n} viewers: old {allocs_old}, new {allocs_new} \
         allocation per packet (the Rc)"
    );
    let mut waiting = Vec::new();
    for n in [100usize, 1_000, 10_000] {
        let w = Waiting::new(n);
        // The first cycle fills the list from nothing; measure the second (steady state).
        w.cycle_scan();
        let ((), scan) = count_allocs(|| w.cycle_scan());
        assert_eq!(w.stream.waiters.borrow().len(), n);
        let w = Waiting::new(n);
        w.cycle_epoch();
        let ((), epoch) = count_allocs(|| w.cycle_epoch());
        assert_eq!(w.stream.waiters.borrow().len(), n);
        // A second poll in the same epoch (a spurious wake-up) does not register again.
        let (waker, conn) = &w.viewers[0];
        let _ = w
            .stream
            .poll_data_new(w.pos, &conn.registered, &Context::from_waker(waker));
        assert_eq!(w.stream.waiters.borrow().len(), n);
        assert_eq!(epoch, 0, "the epoch version keeps the list's capacity");
        eprintln!(
            "alloc-check: writer_replica wake/register {n} viewers: scan {scan}, epoch {epoch} \
             allocations per notify"
        );
        waiting.push((n, w));
    }

    let mut g = c.benchmark_group("writer_replica");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("turn_with_accounting_old", n), |b| {
        b.iter(|| old.step_old())
    });
    g.bench_function(BenchmarkId::new("turn_with_accounting_new", n), |b| {
        b.iter(|| new.step_new())
    });
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    for (n, w_epoch) in &waiting {
        let w_scan = Waiting::new(*n);
        w_scan.cycle_scan();
        g.throughput(Throughput::Elements(*n as u64));
        g.bench_function(BenchmarkId::new("wake_register_scan", n), |b| {
            b.iter(|| w_scan.cycle_scan())
        });
        g.bench_function(BenchmarkId::new("wake_register_epoch", n), |b| {
            b.iter(|| w_epoch.cycle_epoch())
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// relay
// ---------------------------------------------------------------------------------------

/// Packets per relay message (one producer tick).
const RELAY_BATCH: usize = 32;
/// Packets per criterion iteration.
const RELAY_PACKETS: u64 = 200_000;
/// As `MESH_CAPACITY` in `shards/src/runtime.rs`.
const RELAY_CAPACITY: usize = 1024;

/// Same shape as `hub::DataMsg`.
struct DataMsg {
    stream_id: u64,
    generation: u64,
    packets: Vec<Packet>,
}

/// A mirror stream on the receiving shard.
struct Mirror {
    generation: u64,
    ring: RefCell<Ring<Rc<Packet>>>,
}

fn executor(name: &str) -> glommio::LocalExecutorBuilder {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name(name)
        // As the shards: small registered buffer, under the default memlock limit.
        .io_memory(512 << 10)
        .ring_depth(256)
}

/// Sends `packets` packets from one executor to another in batches and returns the time
/// from the sender's first send to the receiver's last ring push.
fn relay_run(packets: u64) -> Duration {
    let batches = packets.div_ceil(RELAY_BATCH as u64);
    let total = batches * RELAY_BATCH as u64;
    let (tx, rx) = glommio::channels::shared_channel::new_bounded::<DataMsg>(RELAY_CAPACITY);
    let source = received_packets(4096, 1200);

    let receiver = executor("relay-rx")
        .spawn(move || async move {
            let rx = rx.connect().await;
            let mut streams: HashMap<u64, Rc<Mirror>> = HashMap::new();
            streams.insert(
                7,
                Rc::new(Mirror {
                    generation: 1,
                    ring: RefCell::new(Ring::new(RING)),
                }),
            );
            let mut got = 0u64;
            while got < total {
                let Some(msg) = rx.recv().await else { break };
                // As `Shard::on_data`.
                let Some(s) = streams.get(&msg.stream_id).cloned() else {
                    continue;
                };
                if s.generation != msg.generation {
                    continue;
                }
                let mut ring = s.ring.borrow_mut();
                for p in msg.packets {
                    let key = p.keyframe;
                    ring.push(Rc::new(p), key);
                    got += 1;
                }
            }
            (Instant::now(), got)
        })
        .expect("receiver executor (io_uring and memlock available?)");

    let sender = executor("relay-tx")
        .spawn(move || async move {
            let tx = tx.connect().await;
            let start = Instant::now();
            let mut i = 0usize;
            for _ in 0..batches {
                let mut packets = Vec::with_capacity(RELAY_BATCH);
                for _ in 0..RELAY_BATCH {
                    // As `LocalStream::push`: a `Packet` clone, the payload shared.
                    packets.push(source[i].clone());
                    i = (i + 1) % source.len();
                }
                let msg = DataMsg {
                    stream_id: 7,
                    generation: 1,
                    packets,
                };
                if tx.send(msg).await.is_err() {
                    panic!("relay receiver went away");
                }
            }
            start
        })
        .expect("sender executor");

    let start = sender.join().expect("sender ran");
    let (end, got) = receiver.join().expect("receiver ran");
    assert_eq!(got, total);
    end.saturating_duration_since(start)
}

/// One producer tick of `Shard::flush`'s relay queue for one shard: `RELAY_BATCH` packets
/// pushed, then the batch handed over for sending. Before the fix the queue was replaced by
/// `std::mem::take` (an empty `Vec`, grown again by the next tick's pushes); now by
/// `Vec::with_capacity(batch.len())`. Returns the allocations of the second tick.
fn relay_handover_allocs(with_capacity: bool) -> u64 {
    let source = received_packets(RELAY_BATCH, 1200);
    let mut pending: Vec<Packet> = Vec::new();
    let tick = |pending: &mut Vec<Packet>| {
        for p in &source {
            pending.push(p.clone());
        }
        if with_capacity {
            std::mem::replace(pending, Vec::with_capacity(pending.len()))
        } else {
            std::mem::take(pending)
        }
    };
    drop(tick(&mut pending));
    let (sent, allocs) = count_allocs(|| tick(&mut pending));
    assert_eq!(sent.len(), RELAY_BATCH);
    allocs
}

fn bench_relay(c: &mut Criterion) {
    let (take, replace) = (relay_handover_allocs(false), relay_handover_allocs(true));
    assert_eq!(replace, 1, "one allocation per relay batch");
    eprintln!(
        "alloc-check: relay batch hand-over ({RELAY_BATCH} packets): mem::take {take}, \
         with_capacity {replace} allocations per batch"
    );
    let mut g = c.benchmark_group("relay");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(RELAY_PACKETS));
    g.bench_function("shared_channel_batch32_200k", |b| {
        // One executor pair per sample, `iters` rounds of 200k packets through it.
        b.iter_custom(|iters| relay_run(iters * RELAY_PACKETS))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_rtsp_parse,
    bench_rtp_view,
    bench_fanout,
    bench_writer_replica,
    bench_relay
);
criterion_main!(benches);
