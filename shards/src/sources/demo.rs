//! The built-in `demo` stream: a short H.264 + AAC clip stored in the binary, looped in
//! real time with continuous timestamps and sequence numbers. It runs on the shard that
//! owns the name, exactly like a publisher.

use crate::core::hub::Shard;
use crate::core::producer::Producer;
use crate::core::registry::{ProducerInfo, ProducerStats};
use bytes::Bytes;
use corecast::codec::{aac, h264};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

static VIDEO: &[u8] = include_bytes!("../../assets/demo.h264");
static AUDIO: &[u8] = include_bytes!("../../assets/demo.aac");

pub const NAME: &str = "demo";
const FPS: u64 = 25;
const VIDEO_TICKS: u64 = 90_000 / FPS;
const AUDIO_RATE: u64 = 48_000;
const AUDIO_FRAME: u64 = 1024;

/// The clip, split once into access units / frames.
pub struct Clip {
    /// Access units (NAL lists) in decode order; no B-frames, so also presentation order.
    pub video: Vec<Vec<Bytes>>,
    pub audio: Vec<Bytes>,
    pub sdp: String,
}

pub fn load() -> Result<Clip, String> {
    let data = Bytes::from_static(VIDEO);
    let (video, sps, pps) = h264::access_units(&data);
    let (sps, pps) = match (sps, pps) {
        (Some(s), Some(p)) => (s, p),
        _ => return Err("demo clip has no SPS/PPS".into()),
    };
    let frames = aac::adts_frames(&Bytes::from_static(AUDIO));
    let Some(hdr) = frames.first().map(|(h, _)| *h) else {
        return Err("demo clip has no AAC frames".into());
    };
    let cfg = aac::audio_specific_config(&hdr);
    // Trim audio to the video's duration so the loop keeps A/V aligned.
    let video_us = video.len() as u64 * 1_000_000 / FPS;
    let audio_frames = (video_us * AUDIO_RATE / 1_000_000 / AUDIO_FRAME) as usize;
    let audio: Vec<Bytes> = frames
        .into_iter()
        .take(audio_frames)
        .map(|(_, f)| f)
        .collect();
    let sdp = format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=corecast demo\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id={};sprop-parameter-sets={}\r\na=control:trackID=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/{}/{}\r\na=fmtp:97 {}\r\na=control:trackID=1\r\n",
        h264::profile_level_id(&sps).unwrap_or_else(|| "42e01f".into()),
        h264::sprop_parameter_sets(&sps, &pps),
        hdr.sample_rate,
        hdr.channels,
        aac::fmtp_for(&cfg),
    );
    Ok(Clip { video, audio, sdp })
}

/// Runs the demo producer forever on this (owner) shard.
pub async fn run(shard: Rc<Shard>) {
    let clip = match load() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "demo stream disabled");
            return;
        }
    };
    let sdp = match corecast::sdp::parse(&clip.sdp) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "demo SDP invalid; demo stream disabled");
            return;
        }
    };
    let info = Arc::new(ProducerInfo {
        id: shard.registry.next_id(),
        protocol: "demo",
        remote_addr: "internal".into(),
        url: "internal:demo".into(),
        user_agent: String::new(),
        stats: ProducerStats::default(),
    });
    let stream = match shard.claim_stream(NAME, &sdp, info.clone()) {
        Ok((s, _)) => s,
        Err(_) => {
            warn!("demo stream name taken; demo disabled");
            return;
        }
    };
    let mut producer = Producer::new(stream, &sdp, info).payloads_owned();
    let ssrc_v: u32 = rand::random();
    let ssrc_a: u32 = rand::random();
    let mut vpk = h264::Packetizer::new(96, ssrc_v, rand::random());
    let mut aseq: u16 = rand::random();
    let vts0: u32 = rand::random();
    let ats0: u32 = rand::random();
    info!(
        shard = shard.id,
        frames = clip.video.len(),
        "demo stream running"
    );

    let start = Instant::now();
    // Both tracks' RTP clocks start now: exact anchors for readers' sender reports.
    let start_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    for (track, rtp) in [(0, vts0), (1, ats0)] {
        shard.set_anchor(
            &producer.stream,
            track,
            crate::core::registry::Anchor {
                unix_us: start_unix,
                rtp,
            },
        );
    }
    let (mut vi, mut ai) = (0u64, 0u64);
    let mut out: Vec<Bytes> = Vec::new();
    loop {
        let v_due = vi * 1_000_000 / FPS;
        let a_due = ai * AUDIO_FRAME * 1_000_000 / AUDIO_RATE;
        let due = v_due.min(a_due);
        let elapsed = start.elapsed().as_micros() as u64;
        if due > elapsed {
            glommio::timer::sleep(Duration::from_micros(due - elapsed)).await;
        }
        out.clear();
        if v_due <= a_due {
            let au = &clip.video[(vi % clip.video.len() as u64) as usize];
            let ts = vts0.wrapping_add((vi * VIDEO_TICKS) as u32);
            vpk.packetize(au, ts, &mut out);
            for pkt in out.drain(..) {
                producer.packet(&shard, 0, pkt);
            }
            vi += 1;
        } else {
            let frame = &clip.audio[(ai % clip.audio.len() as u64) as usize];
            let ts = ats0.wrapping_add((ai * AUDIO_FRAME) as u32);
            let mut p = Vec::with_capacity(16 + frame.len());
            corecast::rtp::write_header(&mut p, 97, true, aseq, ts, ssrc_a);
            if aac::packetize_rfc3640(frame, &mut p).is_err() {
                // Cannot happen with the stored clip (frames are far below 8 KiB).
                ai += 1;
                continue;
            }
            aseq = aseq.wrapping_add(1);
            producer.packet(&shard, 1, Bytes::from(p));
            ai += 1;
        }
        producer.flush(&shard);
    }
}
