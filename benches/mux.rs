//! Cost of the HTTP-side hot paths: assembling frames from RTP and muxing them (fMP4,
//! MPEG-TS) — once per stream, whatever the number of viewers — and parsing HTTP requests
//! and WebSocket frames. Results in BENCHMARKS.md.

use bytes::Bytes;
use corecast::codec::h264::{self, Packetizer};
use corecast::http::{self, ws, Limits};
use corecast::mux::{Frame, FrameAssembler, LiveFmp4, LiveTs, TrackConfig};
use corecast::packet::Packet;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

static DEMO: &[u8] = include_bytes!("../shards/assets/demo.h264");

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n";

/// The demo clip as received RTP packets (25 fps, 90 kHz clock).
fn packets() -> (Vec<Packet>, TrackConfig, usize) {
    let (aus, sps, pps) = h264::access_units(&Bytes::from_static(DEMO));
    let mut p = Packetizer::new(96, 1, 0);
    let mut out = Vec::new();
    let mut seq = 0u64;
    for (i, au) in aus.iter().enumerate() {
        let ts = i as u64 * 3600;
        let mut rtp = Vec::new();
        p.packetize(au, ts as u32, &mut rtp);
        for (j, data) in rtp.into_iter().enumerate() {
            let view = corecast::rtp::view(&data).expect("our own packet");
            out.push(Packet {
                payload_offset: view.payload_offset as u16,
                marker: view.marker,
                keyframe: j == 0 && corecast::codec::h264::rtp_starts_keyframe(view.payload(&data)),
                data,
                track: 0,
                seq,
                timestamp: ts,
                arrival: i as u64 * 40_000,
            });
            seq += 1;
        }
    }
    let cfg = TrackConfig::H264 {
        sps: sps.expect("demo has an SPS"),
        pps: pps.expect("demo has a PPS"),
    };
    (out, cfg, aus.len())
}

fn frames(pkts: &[Packet]) -> Vec<Frame> {
    let sdp = corecast::sdp::parse(SDP).expect("bench SDP");
    let mut asm = FrameAssembler::new(&sdp);
    let mut out = Vec::new();
    for p in pkts {
        asm.push(p, &mut out);
    }
    out
}

fn bench_mux(c: &mut Criterion) {
    let (pkts, cfg, n) = packets();
    let sdp = corecast::sdp::parse(SDP).expect("bench SDP");
    let mut g = c.benchmark_group("mux");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("assemble_h264_frames_demo_clip", |b| {
        b.iter(|| {
            let mut asm = FrameAssembler::new(&sdp);
            let mut out = Vec::new();
            for p in &pkts {
                asm.push(p, &mut out);
            }
            out.len()
        })
    });
    let fr = frames(&pkts);
    g.bench_function("fmp4_fragments_demo_clip", |b| {
        b.iter_batched(
            || fr.clone(),
            |fr| {
                let mut m = LiveFmp4::new(vec![(0, cfg.clone())]);
                let mut out = Vec::new();
                for f in fr {
                    m.push(f, &mut out);
                }
                out.len()
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("ts_packets_demo_clip", |b| {
        b.iter_batched(
            || fr.clone(),
            |fr| {
                let mut m = LiveTs::new(vec![(0, cfg.clone())]);
                let mut out = Vec::new();
                for f in fr {
                    m.push(f, &mut out);
                }
                out.len()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_http(c: &mut Criterion) {
    let req = b"GET /api/stream.mp4?src=demo HTTP/1.1\r\nHost: 127.0.0.1:1984\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/130\r\nAccept: */*\r\n\
Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n";
    let limits = Limits::default();
    let mut g = c.benchmark_group("http");
    g.bench_function("parse_request", |b| {
        b.iter(|| {
            http::parse_request(req, &limits)
                .expect("valid")
                .expect("complete")
                .1
        })
    });
    let frame = ws::masked_frame(
        true,
        ws::OP_TEXT,
        [1, 2, 3, 4],
        br#"{"type":"mse","value":"avc1.640029,avc1.64002A,avc1.640033,hvc1.1.6.L153.B0,mp4a.40.2"}"#,
    );
    g.bench_function("ws_decode_text", |b| {
        b.iter(|| {
            let mut d = ws::Decoder::new(1 << 16);
            d.decode(&frame).expect("valid").1
        })
    });
    g.finish();
}

criterion_group!(benches, bench_mux, bench_http);
criterion_main!(benches);
