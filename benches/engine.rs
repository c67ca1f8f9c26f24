//! Criterion benches of the engine's per-viewer path on the real code of `shards/` (a
//! library, so no copies): one packet pushed into a real `hub::LocalStream` and woken, then
//! every caught-up viewer takes it the way the RTSP writer does — its `fanout::Consumer`
//! fills the batch, the 4-byte interleave header and the iovecs are built with
//! `sendv::iovec` (the `sendmsg` itself is left out), the statistics are accounted, and the
//! viewer registers its waker again with `LocalStream::poll_data`.
//!
//! The `http` group does the same for HTTP and WebSocket viewers of a muxer's output (one
//! fMP4 fragment per frame): each takes the new fragments and frames them with the
//! server's own `egress::http::frame_batch` (chunked `stream.mp4`, or MSE's binary
//! WebSocket frames), as `live` and `websocket` do before their one vectored write.
//!
//! Run: `cargo bench -p corecast-shards --bench engine`. Results in BENCHMARKS.md. A
//! counting allocator checks that a viewer's turn allocates nothing (`alloc-check:` lines).

use bytes::Bytes;
use corecast::fanout::{Consumer, Policy};
use corecast::http::HeadSlot;
use corecast::packet::Packet;
use corecast::rtsp::message;
use corecast_shards::core::hub::LocalStream;
use corecast_shards::core::registry::{Generation, StreamId};
use corecast_shards::egress::http::{frame_batch, Framing};
use corecast_shards::io::sendv;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::task::{Context, Waker};

#[path = "alloc_count.rs"]
mod alloc_count;
use alloc_count::count_allocs;

const RING: usize = 4096;

fn packet(i: u64) -> Packet {
    let mut data = vec![0u8; 1200];
    data[0] = 0x80;
    data[1] = 96;
    data[2..4].copy_from_slice(&(i as u16).to_be_bytes());
    Packet {
        data: Bytes::from(data),
        track: 0,
        seq: i,
        timestamp: i * 3000,
        marker: false,
        keyframe: i.is_multiple_of(300),
        arrival: i * 1000,
        payload_offset: 12,
    }
}

/// A viewer's reusable state, as the RTSP writer keeps it.
struct Viewer {
    fanout: Consumer,
    registered: Cell<u64>,
    batch: Vec<Rc<Packet>>,
    hdrs: Vec<[u8; 4]>,
    iov: Vec<libc::iovec>,
}

struct Engine {
    stream: LocalStream,
    viewers: Vec<Viewer>,
    next: u64,
    waker: Waker,
}

impl Engine {
    fn new(n: usize) -> Engine {
        let stream = LocalStream::new(
            StreamId(1),
            "bench",
            Generation(1),
            true,
            corecast::ring::Bounds::items(RING),
            1,
        );
        let mut next = 0;
        while next < RING as u64 + 300 {
            stream.push(packet(next));
            next += 1;
        }
        let now = next * 1000;
        let viewers = (0..n)
            .map(|_| Viewer {
                fanout: Consumer::join(&stream.ring.borrow(), Policy::default(), 0, now),
                registered: Cell::new(0),
                batch: Vec::with_capacity(64),
                hdrs: Vec::with_capacity(64),
                iov: Vec::with_capacity(128),
            })
            .collect();
        let mut e = Engine {
            stream,
            viewers,
            next,
            waker: Waker::noop().clone(),
        };
        // Catch every viewer up (their batch vectors reach their working size).
        while e.turn() > 0 {}
        e
    }

    /// Every viewer takes what is new; returns the iovecs built.
    fn turn(&mut self) -> usize {
        let now = self.next * 1000;
        let ring = self.stream.ring.borrow();
        let cx = Context::from_waker(&self.waker);
        let mut iovs = 0;
        for v in &mut self.viewers {
            v.fanout.fill(&ring, now, &mut v.batch, 64);
            v.hdrs.clear();
            v.iov.clear();
            let mut bytes = 0u64;
            for p in &v.batch {
                v.hdrs
                    .push(message::write_interleaved_header(0, p.data.len() as u16));
                bytes += p.data.len() as u64;
            }
            for (h, p) in v.hdrs.iter().zip(&v.batch) {
                v.iov.push(sendv::iovec(h));
                v.iov.push(sendv::iovec(&p.data));
            }
            black_box(&v.iov);
            iovs += v.iov.len();
            let _ = v.fanout.delivered(v.batch.len() as u64, bytes, now);
            v.batch.clear();
            let _ = self
                .stream
                .poll_data(v.fanout.position(), &v.registered, &cx);
        }
        iovs
    }

    /// One packet in, woken, every viewer takes it.
    fn step(&mut self) -> usize {
        self.stream.push(packet(self.next));
        self.next += 1;
        self.stream.notify();
        self.turn()
    }
}

fn bench_viewer_turn(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    for n in [100usize, 1_000, 10_000] {
        let mut e = Engine::new(n);
        e.step();
        let (iovs, allocs) = count_allocs(|| e.step());
        assert_eq!(iovs, 2 * n);
        // The packet's own buffer (made here; the receive buffer in the server) and its Rc
        // in the ring: nothing per viewer.
        assert_eq!(allocs, 2, "allocations per packet with {n} viewers");
        eprintln!("alloc-check: engine turn {n} viewers: {allocs} allocations per packet (its buffer and its Rc), none per viewer");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("packet_to_every_viewer", n), |b| {
            b.iter(|| e.step())
        });
    }
    g.finish();
}

/// A muxer's output fragment (one frame of fMP4: `moof` + `mdat`), as `run_muxer` pushes it.
fn fragment(i: u64) -> Packet {
    Packet {
        data: Bytes::from(vec![0u8; 4000]),
        track: 0,
        seq: i,
        timestamp: 0,
        marker: true,
        keyframe: i.is_multiple_of(25),
        arrival: i * 40_000,
        payload_offset: 0,
    }
}

/// An HTTP or WebSocket viewer's reusable state, as `live` / `websocket` keep it.
struct HttpViewer {
    fanout: Consumer,
    registered: Cell<u64>,
    batch: Vec<Rc<Packet>>,
    hdrs: Vec<HeadSlot>,
    iov: Vec<libc::iovec>,
}

struct HttpEngine {
    stream: LocalStream,
    viewers: Vec<HttpViewer>,
    framing: Framing,
    next: u64,
    waker: Waker,
}

impl HttpEngine {
    fn new(n: usize, framing: Framing) -> HttpEngine {
        let stream = LocalStream::new(
            StreamId(2),
            "bench-mp4",
            Generation(1),
            true,
            corecast::ring::Bounds::items(1024),
            1,
        );
        let mut next = 0;
        while next < 100 {
            stream.push(fragment(next));
            next += 1;
        }
        let now = next * 40_000;
        let viewers = (0..n)
            .map(|_| HttpViewer {
                fanout: Consumer::join(&stream.ring.borrow(), Policy::default(), 0, now),
                registered: Cell::new(0),
                batch: Vec::with_capacity(64),
                hdrs: Vec::with_capacity(64),
                iov: Vec::with_capacity(192),
            })
            .collect();
        let mut e = HttpEngine {
            stream,
            viewers,
            framing,
            next,
            waker: Waker::noop().clone(),
        };
        while e.turn() > 0 {}
        e
    }

    /// Every viewer takes the new fragments and frames them; returns the iovecs built.
    fn turn(&mut self) -> usize {
        let now = self.next * 40_000;
        let ring = self.stream.ring.borrow();
        let cx = Context::from_waker(&self.waker);
        let mut iovs = 0;
        for v in &mut self.viewers {
            v.fanout.fill(&ring, now, &mut v.batch, 64);
            let bytes = frame_batch(self.framing, &v.batch, &mut v.hdrs, &mut v.iov);
            black_box(&v.iov);
            iovs += v.iov.len();
            // The statistics cadence: shared counters only every 250 ms (not measured here).
            let _ = v.fanout.delivered(v.batch.len() as u64, bytes, now);
            v.batch.clear();
            let _ = self
                .stream
                .poll_data(v.fanout.position(), &v.registered, &cx);
        }
        iovs
    }

    /// One fragment in, woken, every viewer takes it.
    fn step(&mut self) -> usize {
        self.stream.push(fragment(self.next));
        self.next += 1;
        self.stream.notify();
        self.turn()
    }
}

fn bench_http_viewer_turn(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    for (framing, label, per_fragment) in [
        (Framing::Chunked, "stream_mp4_chunked", 3),
        (Framing::WsBinary, "mse_websocket", 2),
    ] {
        for n in [100usize, 1_000, 10_000] {
            let mut e = HttpEngine::new(n, framing);
            e.step();
            let (iovs, allocs) = count_allocs(|| e.step());
            assert_eq!(iovs, per_fragment * n);
            // The fragment's buffer and its Rc in the ring: nothing per viewer.
            assert_eq!(
                allocs, 2,
                "allocations per fragment with {n} {label} viewers"
            );
            eprintln!("alloc-check: http {label} {n} viewers: {allocs} allocations per fragment (its buffer and its Rc), none per viewer");
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(
                BenchmarkId::new(format!("fragment_to_every_viewer/{label}"), n),
                |b| b.iter(|| e.step()),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench_viewer_turn, bench_http_viewer_turn);
criterion_main!(benches);
