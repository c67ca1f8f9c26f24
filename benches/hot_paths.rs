//! Criterion micro-benchmarks of corecast's hot paths. What each group measures, how to run
//! it and the recorded results are in BENCHMARKS.md.
//!
//! - `rtsp_parse`: `rtsp::message::parse` on real requests and on interleaved RTP frames.
//! - `rtp_view`: `rtp::view`, and the whole parse-once ingest (`Ingest::packet`).
//! - `ingest_copy`: ingest storing the receive buffer's slice vs a packed copy, alone
//!   and with the push into a stream's time-bounded ring (which frees one per push).
//! - `fanout`: one packet into a `Ring<Rc<Packet>>`, read by N cursors doing the RTSP
//!   writer's per-viewer work minus the syscall.
//! - The engine's per-viewer path on the real `shards/` code is in `benches/engine.rs`
//!   (`cargo bench -p corecast-shards --bench engine`).
//! - `relay`: the cross-shard hop between two real glommio executors.
//!
//! A counting global allocator (thread-local switch and counter: no atomics) checks the
//! allocation claims once per run and prints `alloc-check:` lines.

use bytes::BytesMut;
use corecast::ingest::Ingest;
use corecast::packet::Packet;
use corecast::ring::{Cursor, Next, Ring};
use corecast::rtsp::message::{self, Message, Method};
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Allocation counting
// ---------------------------------------------------------------------------------------

#[path = "alloc_count.rs"]
mod alloc_count;
use alloc_count::count_allocs;

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
// ingest_copy: the copy at ingest (`Ingest::copy_payloads`)
// ---------------------------------------------------------------------------------------

/// One 1,200-byte packet per iteration, as a stream's producer handles it: parse once, then
/// into a ring bounded as a stream's (2 s, 8 MiB), which in steady state evicts (frees) one
/// packet per push. `slice` stores the receive buffer's slice, `copy` a copy packed in the
/// producer's 32 KiB chunks.
fn bench_ingest_copy(c: &mut Criterion) {
    let sdp = corecast::sdp::parse(LAVF_SDP).expect("valid SDP");
    // A slice of a 64 KiB read buffer, as the RTSP/TCP reader hands it over.
    let mut read = BytesMut::with_capacity(64 * 1024);
    read.extend_from_slice(&rtp_packet(1200, 2, &FU_A_MIDDLE));
    let mid = read.split_to(1200).freeze();
    let mut g = c.benchmark_group("ingest_copy");
    g.throughput(Throughput::Elements(1));
    for (name, copy) in [("slice", false), ("copy", true)] {
        let mut ingest = Ingest::new(&sdp);
        ingest.copy_payloads(copy);
        let ((p, _), allocs) = count_allocs(|| ingest.packet(0, mid.clone(), 7).unwrap());
        assert_eq!(p.data.as_ptr() == mid.as_ptr(), !copy);
        drop(p);
        eprintln!("alloc-check: Ingest::packet, {name}: {allocs} allocations per packet");
        g.bench_function(BenchmarkId::new("ingest", name), |b| {
            b.iter(|| ingest.packet(0, black_box(mid.clone()), 1_000))
        });
        let mut ring: Ring<Rc<Packet>> = Ring::bounded(corecast::ring::Bounds {
            max_age_us: 2_000_000,
            max_bytes: 8 << 20,
            max_items: 16384,
        });
        // 417 packets/s: a 4 Mbit/s stream of 1,200-byte packets.
        let mut now = 0u64;
        g.bench_function(BenchmarkId::new("ingest_ring", name), |b| {
            b.iter(|| {
                now += 2_400;
                let (p, _) = ingest.packet(0, black_box(mid.clone()), now).unwrap();
                let (key, bytes) = (p.keyframe, p.held_bytes());
                ring.push_held(Rc::new(p), key, bytes, now);
            })
        });
        assert!(ring.len() <= 835, "the ring holds 2 s: {}", ring.len());
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
    bench_ingest_copy,
    bench_fanout,
    bench_relay
);
criterion_main!(benches);
