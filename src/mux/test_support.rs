//! Test inputs: the demo clips as RTP packets, the way ingest hands them to the muxers.

use bytes::Bytes;

use crate::codec::{aac, h264};
use crate::packet::Packet;
use crate::rtp;
use crate::sdp::{self, Sdp};

pub(crate) static DEMO_H264: &[u8] = include_bytes!("../../shards/assets/demo.h264");
pub(crate) static DEMO_AAC: &[u8] = include_bytes!("../../shards/assets/demo.aac");
pub(crate) static DEMO_H265: &[u8] = include_bytes!("../demux/fixtures/h265.hevc");

/// Starts near the 32-bit wrap so extended timestamps are exercised.
pub(crate) const TS_BASE: u64 = (1 << 32) - 90_000;
/// Arrival of the first packet, µs.
pub(crate) const ARRIVAL_BASE: u64 = 5_000_000;

/// H.264 (track 0, pt 96) + AAC 48 kHz mono (track 1, pt 97) + H.265 (track 2, pt 98) + PCMA.
pub(crate) fn sdp() -> Sdp {
    sdp::parse(
        "v=0\r\ns=demo\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/1\r\n\
a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1188\r\n\
m=video 0 RTP/AVP 98\r\na=rtpmap:98 H265/90000\r\n\
m=audio 0 RTP/AVP 8\r\n",
    )
    .unwrap()
}

/// A Packet as ingest builds it from a whole RTP packet.
pub(crate) fn packet(data: Bytes, track: u8, seq: u64, timestamp: u64, arrival: u64) -> Packet {
    let v = rtp::view(&data).unwrap();
    Packet {
        payload_offset: v.payload_offset as u16,
        marker: v.marker,
        data,
        track,
        seq,
        timestamp,
        keyframe: false,
        arrival,
    }
}

/// The demo H.264 clip: access units (NAL lists) and its SPS/PPS.
pub(crate) fn h264_units() -> (Vec<Vec<Bytes>>, Bytes, Bytes) {
    let (aus, sps, pps) = h264::access_units(&Bytes::from_static(DEMO_H264));
    (aus, sps.unwrap(), pps.unwrap())
}

/// The H.265 fixture split into access units (a new one at a parameter set, AUD or prefix
/// SEI after a picture, or at a slice with first_slice_segment_in_pic_flag set).
pub(crate) fn h265_units() -> Vec<Vec<Bytes>> {
    split_h265(DEMO_H265)
}

pub(crate) fn split_h265(clip: &[u8]) -> Vec<Vec<Bytes>> {
    use crate::codec::h265::nal_type;
    let mut aus: Vec<Vec<Bytes>> = Vec::new();
    let mut has_vcl = false;
    for nal in h264::nal_units(&Bytes::copy_from_slice(clip)) {
        let t = nal_type(&nal);
        let vcl = t < 32;
        let first_slice = vcl && nal.get(2).is_some_and(|b| b & 0x80 != 0);
        if aus.is_empty() || (has_vcl && (first_slice || matches!(t, 32..=35 | 39))) {
            aus.push(Vec::new());
            has_vcl = false;
        }
        has_vcl |= vcl;
        aus.last_mut().unwrap().push(nal);
    }
    aus
}

/// Video access units as RTP packets (25 fps; H.265 packetized by hand: AP for small units,
/// FU for big ones, single NAL otherwise), arrival 40 ms apart plus 1 ms per packet.
pub(crate) fn video_packets(track: u8, aus: &[Vec<Bytes>], h265: bool) -> Vec<Packet> {
    let mut packetizer = h264::Packetizer::new(96, 1, 0);
    let mut out = Vec::new();
    let mut seq = 0u64;
    for (n, au) in aus.iter().enumerate() {
        let ts = TS_BASE + n as u64 * 3600;
        let mut raw = Vec::new();
        if h265 {
            for payload in h265_payloads(au) {
                let mut p = Vec::new();
                let seq = (seq as u16).wrapping_add(raw.len() as u16);
                rtp::write_header(&mut p, 98, false, seq, ts as u32, 1);
                p.extend_from_slice(&payload);
                raw.push(Bytes::from(p));
            }
            let last = raw.pop().unwrap();
            let mut last = last.to_vec();
            last[1] |= 0x80;
            raw.push(last.into());
        } else {
            packetizer.packetize(au, ts as u32, &mut raw);
        }
        for (k, data) in raw.into_iter().enumerate() {
            let arrival = ARRIVAL_BASE + n as u64 * 40_000 + k as u64 * 1000;
            out.push(packet(data, track, seq, ts, arrival));
            seq += 1;
        }
    }
    out
}

/// RFC 7798 payloads for one access unit: parameter sets in one AP, NALs over 1000 bytes as
/// FUs, the rest alone.
fn h265_payloads(au: &[Bytes]) -> Vec<Vec<u8>> {
    use crate::codec::h265::{nal_type, AP, FU};
    let mut out = Vec::new();
    let mut ap = vec![AP << 1, 1];
    for nal in au {
        if matches!(nal_type(nal), 32..=34) {
            ap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            ap.extend_from_slice(nal);
        } else if nal.len() > 1000 {
            let chunks: Vec<&[u8]> = nal[2..].chunks(900).collect();
            for (k, chunk) in chunks.iter().enumerate() {
                let mut h = nal_type(nal);
                if k == 0 {
                    h |= 0x80;
                }
                if k == chunks.len() - 1 {
                    h |= 0x40;
                }
                let mut p = vec![(nal[0] & 0x81) | (FU << 1), nal[1], h];
                p.extend_from_slice(chunk);
                out.push(p);
            }
        } else {
            out.push(nal.to_vec());
        }
    }
    if ap.len() > 2 {
        out.insert(0, ap);
    }
    out
}

/// The demo AAC clip: raw frames and their AudioSpecificConfig.
pub(crate) fn aac_frames() -> (Vec<Bytes>, [u8; 2]) {
    let frames = aac::adts_frames(&Bytes::from_static(DEMO_AAC));
    let config = aac::audio_specific_config(&frames[0].0);
    (frames.into_iter().map(|(_, f)| f).collect(), config)
}

/// One AAC frame per RTP packet, 48 kHz clock, arriving with the video clock.
pub(crate) fn aac_packets(track: u8, frames: &[Bytes]) -> Vec<Packet> {
    frames
        .iter()
        .enumerate()
        .map(|(n, frame)| {
            let ts = 7_000 + n as u64 * 1024;
            let mut p = Vec::new();
            rtp::write_header(&mut p, 97, true, n as u16, ts as u32, 2);
            aac::packetize_rfc3640(frame, &mut p).unwrap();
            // 1024 samples at 48 kHz = 21.333 ms.
            let arrival = ARRIVAL_BASE + 3000 + n as u64 * 64_000 / 3;
            packet(p.into(), track, n as u64, ts, arrival)
        })
        .collect()
}

/// Merge packet lists by arrival (stable).
pub(crate) fn by_arrival(lists: Vec<Vec<Packet>>) -> Vec<Packet> {
    let mut all: Vec<Packet> = lists.into_iter().flatten().collect();
    all.sort_by_key(|p| p.arrival);
    all
}

/// The demo video (track 0) and audio (track 1) through the FrameAssembler, interleaved by
/// arrival, with the track configs learned from them.
pub(crate) fn demo_av_frames() -> (
    Vec<crate::mux::Frame>,
    Vec<(usize, crate::mux::TrackConfig)>,
) {
    let (aus, _, _) = h264_units();
    let (raw, config) = aac_frames();
    let packets = by_arrival(vec![video_packets(0, &aus, false), aac_packets(1, &raw)]);
    let mut assembler = crate::mux::FrameAssembler::new(&sdp());
    let mut frames = Vec::new();
    for p in &packets {
        assembler.push(p, &mut frames);
    }
    let video = frames.iter().find(|f| f.keyframe && f.track == 0).unwrap();
    let configs = vec![
        (
            0,
            crate::mux::TrackConfig::from_nals(false, &video.units).unwrap(),
        ),
        (
            1,
            crate::mux::TrackConfig::Aac {
                config: Bytes::copy_from_slice(&config),
                sample_rate: 48000,
                channels: 1,
            },
        ),
    ];
    (frames, configs)
}

/// Frames of an H.265 Annex-B clip (track 2) and its config.
pub(crate) fn h265_frames(clip: &[u8]) -> (Vec<crate::mux::Frame>, crate::mux::TrackConfig) {
    let aus = split_h265(clip);
    let packets = video_packets(2, &aus, true);
    let mut assembler = crate::mux::FrameAssembler::new(&sdp());
    let mut frames = Vec::new();
    for p in &packets {
        assembler.push(p, &mut frames);
    }
    let config = crate::mux::TrackConfig::from_nals(true, &frames[0].units).unwrap();
    (frames, config)
}
