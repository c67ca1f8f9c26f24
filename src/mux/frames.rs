//! RTP packets to complete frames, per track, for the codecs the muxers take.

use bytes::Bytes;

use crate::codec::{aac, h264, h265, CodecKind};
use crate::packet::Packet;
use crate::sdp::{Media, Sdp};

use super::params::parse_audio_specific_config;
use super::{fmtp_param, jpeg};

/// A packet this far behind the newest one is taken as the sender restarting its sequence
/// numbers rather than as a late packet (RFC 3550 appendix A.1's MAX_MISORDER).
const MAX_MISORDER: u64 = 100;

/// One complete frame (access unit) of one track.
#[derive(Debug, Clone)]
pub struct Frame {
    /// SDP media index (`Packet::track`).
    pub track: usize,
    /// Extended RTP timestamp, track clock.
    pub timestamp: u64,
    /// Microseconds, arrival of the frame's first packet.
    pub arrival: u64,
    /// H.264 IDR / H.265 IRAP; always true for audio and JPEG.
    pub keyframe: bool,
    /// Video: NAL units without start codes (in order, AUD/SEI kept; muxers decide). AAC:
    /// exactly one raw AAC frame. JPEG: one whole JPEG file.
    pub units: Vec<Bytes>,
}

/// Turns the stream's RTP packets into frames, per track, for the tracks it supports (H.264,
/// H.265, AAC mpeg4-generic AAC-hbr, JPEG/RFC 2435, and Opus, G.711 and L16 one frame per
/// packet); other tracks are ignored. Never panics on
/// hostile payloads; memory is bounded by one access unit of
/// [`h264::MAX_ACCESS_UNIT`] per track.
#[derive(Debug)]
pub struct FrameAssembler {
    /// Indexed by SDP media index.
    tracks: Vec<Option<Track>>,
}

#[derive(Debug)]
struct Track {
    kind: CodecKind,
    /// Extended sequence number of the last packet taken; older ones are duplicates or late
    /// (or, much older, a restart).
    last_seq: Option<u64>,
    depacketizer: Depacketizer,
    /// Timestamp (wire and extended) and first-packet arrival of the access unit being
    /// assembled and of the one before: a depacketizer finishes the previous unit when the
    /// timestamp moves on without a marker, and reports only the wire timestamp.
    current: Option<AccessUnitStart>,
    previous: Option<AccessUnitStart>,
}

#[derive(Debug, Clone, Copy)]
struct AccessUnitStart {
    rtp_timestamp: u32,
    timestamp: u64,
    arrival: u64,
}

#[derive(Debug)]
enum Depacketizer {
    H264(h264::Depacketizer),
    H265(h265::Depacketizer),
    /// `frame_ticks`: one AAC frame (1024 samples) in RTP clock units, for packets that carry
    /// several.
    Aac {
        frame_ticks: u64,
    },
    Jpeg(jpeg::JpegDepacketizer),
    /// One packet is one frame: Opus (RFC 7587), G.711 and L16 (RFC 3551).
    Whole,
}

impl FrameAssembler {
    pub fn new(sdp: &Sdp) -> Self {
        FrameAssembler {
            tracks: sdp.medias.iter().map(Track::for_media).collect(),
        }
    }

    /// Tracks it will produce frames for: (SDP media index, codec kind).
    pub fn tracks(&self) -> Vec<(usize, CodecKind)> {
        self.tracks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((i, t.as_ref()?.kind)))
            .collect()
    }

    /// Feed one packet of any track; completed frames are appended to `out` in the order
    /// they complete.
    pub fn push(&mut self, pkt: &Packet, out: &mut Vec<Frame>) {
        let index = usize::from(pkt.track);
        let Some(Some(track)) = self.tracks.get_mut(index) else {
            return;
        };
        if let Some(last) = track.last_seq {
            if pkt.seq <= last {
                if last - pkt.seq <= MAX_MISORDER {
                    return; // duplicate or late
                }
                // Far behind: the sender restarted its sequence numbers (a camera reboot).
                tracing::debug!(seq = pkt.seq, last, "mux: RTP sequence restarted");
                track.reset();
            }
        }
        track.last_seq = Some(pkt.seq);
        track.push(index, pkt, out);
    }
}

impl Track {
    fn for_media(media: &Media) -> Option<Track> {
        let (kind, map) = media.codec()?;
        let fmtp = media.fmtp_for(map.payload_type).unwrap_or("");
        let param = |key| fmtp_param(fmtp, key);
        let depacketizer = match kind {
            CodecKind::H264 => {
                // Interleaved mode reorders NAL units by DON, which we do not do.
                if param("packetization-mode") == Some("2") {
                    tracing::debug!("mux: H.264 packetization-mode=2 is not supported");
                    return None;
                }
                Depacketizer::H264(h264::Depacketizer::new())
            }
            CodecKind::H265 => {
                // A nonzero max-don-diff puts a DONL field in every unit.
                if param("sprop-max-don-diff").is_some_and(|v| v != "0") {
                    tracing::debug!("mux: H.265 with DONL fields is not supported");
                    return None;
                }
                Depacketizer::H265(h265::Depacketizer::new())
            }
            CodecKind::Aac => {
                // depacketize_rfc3640 reads AAC-hbr's 13-bit sizes and 3-bit indices only.
                let hbr = param("mode").is_some_and(|m| m.eq_ignore_ascii_case("AAC-hbr"));
                let sizes = param("sizelength").is_none_or(|v| v == "13")
                    && param("indexlength").is_none_or(|v| v == "3")
                    && param("indexdeltalength").is_none_or(|v| v == "3");
                if !hbr || !sizes {
                    tracing::debug!(fmtp, "mux: only mpeg4-generic AAC-hbr is supported");
                    return None;
                }
                let rate = param("config")
                    .and_then(super::decode_hex)
                    .and_then(|c| parse_audio_specific_config(&c))
                    .map(|asc| asc.sample_rate);
                let frame_ticks = match rate {
                    Some(rate) => 1024 * u64::from(map.clock_rate.max(1)) / u64::from(rate),
                    None => 1024,
                };
                Depacketizer::Aac {
                    frame_ticks: frame_ticks.max(1),
                }
            }
            CodecKind::Mjpeg => Depacketizer::Jpeg(jpeg::JpegDepacketizer::default()),
            CodecKind::Opus | CodecKind::Pcma | CodecKind::Pcmu => Depacketizer::Whole,
            CodecKind::Other if map.encoding.eq_ignore_ascii_case("L16") => Depacketizer::Whole,
            _ => return None,
        };
        Some(Track {
            kind,
            last_seq: None,
            depacketizer,
            current: None,
            previous: None,
        })
    }

    /// Forget the partial access unit and sequence state.
    fn reset(&mut self) {
        match &mut self.depacketizer {
            Depacketizer::H264(d) => *d = h264::Depacketizer::new(),
            Depacketizer::H265(d) => *d = h265::Depacketizer::new(),
            Depacketizer::Jpeg(d) => d.reset(),
            Depacketizer::Aac { .. } | Depacketizer::Whole => {}
        }
        self.current = None;
        self.previous = None;
    }

    fn push(&mut self, index: usize, pkt: &Packet, out: &mut Vec<Frame>) {
        let payload = pkt.payload();
        let mut units = Vec::new();
        match &mut self.depacketizer {
            Depacketizer::Whole => {
                if !payload.is_empty() {
                    out.push(Frame {
                        track: index,
                        timestamp: pkt.timestamp,
                        arrival: pkt.arrival,
                        keyframe: true,
                        units: vec![pkt.data.slice_ref(payload)],
                    });
                }
                return;
            }
            Depacketizer::Aac { frame_ticks } => {
                let Ok(aus) = aac::depacketize_rfc3640(payload) else {
                    tracing::debug!(seq = pkt.seq, "mux: malformed RFC 3640 payload");
                    return;
                };
                let mut timestamp = pkt.timestamp;
                for au in aus {
                    if !au.is_empty() {
                        out.push(Frame {
                            track: index,
                            timestamp,
                            arrival: pkt.arrival,
                            keyframe: true,
                            // `au` borrows from the payload, itself a slice of `data`.
                            units: vec![pkt.data.slice_ref(au)],
                        });
                    }
                    timestamp = timestamp.saturating_add(*frame_ticks);
                }
                return;
            }
            Depacketizer::Jpeg(d) => {
                self.current = note_start(self.current, &mut self.previous, pkt);
                if let Some(jpeg) = d.push(pkt.rtp_timestamp(), pkt.marker, payload) {
                    let start = self.start_of(jpeg.timestamp, pkt);
                    out.push(Frame {
                        track: index,
                        timestamp: start.timestamp,
                        arrival: start.arrival,
                        keyframe: true,
                        units: vec![jpeg.data],
                    });
                }
                return;
            }
            Depacketizer::H264(d) => {
                self.current = note_start(self.current, &mut self.previous, pkt);
                d.push(
                    pkt.rtp_seq(),
                    pkt.rtp_timestamp(),
                    pkt.marker,
                    payload,
                    &mut units,
                );
            }
            Depacketizer::H265(d) => {
                self.current = note_start(self.current, &mut self.previous, pkt);
                d.push(
                    pkt.rtp_seq(),
                    pkt.rtp_timestamp(),
                    pkt.marker,
                    payload,
                    &mut units,
                );
            }
        }
        for au in units {
            let start = self.start_of(au.timestamp, pkt);
            out.push(Frame {
                track: index,
                timestamp: start.timestamp,
                arrival: start.arrival,
                keyframe: au.keyframe,
                units: h264::nal_units(&au.data),
            });
        }
    }

    /// Where the access unit with this 32-bit timestamp started.
    fn start_of(&self, rtp_timestamp: u32, pkt: &Packet) -> AccessUnitStart {
        [self.current, self.previous]
            .into_iter()
            .flatten()
            .find(|s| s.rtp_timestamp == rtp_timestamp)
            .unwrap_or_else(|| {
                // Not reached with the depacketizers above; widen against this packet.
                let back = pkt.rtp_timestamp().wrapping_sub(rtp_timestamp) as i32;
                AccessUnitStart {
                    rtp_timestamp,
                    timestamp: pkt.timestamp.saturating_add_signed(-i64::from(back)),
                    arrival: pkt.arrival,
                }
            })
    }
}

/// Record the start of a new access unit when this packet's timestamp differs.
fn note_start(
    current: Option<AccessUnitStart>,
    previous: &mut Option<AccessUnitStart>,
    pkt: &Packet,
) -> Option<AccessUnitStart> {
    match current {
        Some(c) if c.rtp_timestamp == pkt.rtp_timestamp() => Some(c),
        _ => {
            *previous = current;
            Some(AccessUnitStart {
                rtp_timestamp: pkt.rtp_timestamp(),
                timestamp: pkt.timestamp,
                arrival: pkt.arrival,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::test_support::*;
    use crate::rtp;

    fn assemble(a: &mut FrameAssembler, packets: &[Packet]) -> Vec<Frame> {
        let mut out = Vec::new();
        for p in packets {
            a.push(p, &mut out);
        }
        out
    }

    #[test]
    fn tracks_of_the_sdp() {
        let a = FrameAssembler::new(&sdp());
        assert_eq!(
            a.tracks(),
            vec![
                (0, CodecKind::H264),
                (1, CodecKind::Aac),
                (2, CodecKind::H265),
                (3, CodecKind::Pcma)
            ]
        );
        let unsupported = crate::sdp::parse(
            "v=0\r\ns=x\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=2\r\n\
m=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\na=fmtp:97 sprop-max-don-diff=2\r\n\
m=audio 0 RTP/AVP 98\r\na=rtpmap:98 MPEG4-GENERIC/48000\r\na=fmtp:98 mode=AAC-lbr;sizelength=6;indexlength=2\r\n\
m=audio 0 RTP/AVP 99\r\na=rtpmap:99 MPEG4-GENERIC/48000\r\n\
m=audio 0 RTP/AVP 100\r\na=rtpmap:100 MP4A-LATM/48000\r\n\
m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\n",
        )
        .unwrap();
        assert!(FrameAssembler::new(&unsupported).tracks().is_empty());
    }

    #[test]
    fn h264_demo_roundtrip() {
        let (aus, _, _) = h264_units();
        let packets = video_packets(0, &aus, false);
        let frames = assemble(&mut FrameAssembler::new(&sdp()), &packets);
        assert_eq!(frames.len(), 200);
        for (n, (frame, au)) in frames.iter().zip(&aus).enumerate() {
            assert_eq!(frame.track, 0);
            assert_eq!(&frame.units, au, "access unit {n}");
            assert_eq!(frame.keyframe, n % 25 == 0);
            assert_eq!(frame.timestamp, TS_BASE + n as u64 * 3600);
            assert_eq!(frame.arrival, ARRIVAL_BASE + n as u64 * 40_000);
        }
    }

    #[test]
    fn h265_roundtrip_with_ap_and_fu() {
        let aus = h265_units();
        assert_eq!(aus.len(), 25);
        let packets = video_packets(2, &aus, true);
        // The fixture's keyframe has an AP (VPS/SPS/PPS) and FUs.
        let first = packets[0].payload();
        assert_eq!(crate::codec::h265::nal_type(first), crate::codec::h265::AP);
        assert!(packets
            .iter()
            .any(|p| crate::codec::h265::nal_type(p.payload()) == crate::codec::h265::FU));
        let frames = assemble(&mut FrameAssembler::new(&sdp()), &packets);
        assert_eq!(frames.len(), 25);
        for (n, (frame, au)) in frames.iter().zip(&aus).enumerate() {
            assert_eq!(frame.track, 2);
            assert_eq!(&frame.units, au, "access unit {n}");
            assert_eq!(frame.keyframe, n == 0, "access unit {n}");
        }
    }

    #[test]
    fn aac_demo_roundtrip() {
        let (raw, _) = aac_frames();
        let packets = aac_packets(1, &raw);
        let frames = assemble(&mut FrameAssembler::new(&sdp()), &packets);
        assert_eq!(frames.len(), 376);
        for (n, (frame, want)) in frames.iter().zip(&raw).enumerate() {
            assert_eq!(frame.units, vec![want.clone()]);
            assert!(frame.keyframe);
            assert_eq!(frame.timestamp, 7000 + n as u64 * 1024);
        }
        // Two AUs in one packet: the second is one frame (1024 samples) later.
        let mut p = Vec::new();
        rtp::write_header(&mut p, 97, true, 9, 100, 2);
        p.extend_from_slice(&[0, 32, 0, 3 << 3, 0, 2 << 3, 1, 2, 3, 4, 5]);
        let frames = assemble(
            &mut FrameAssembler::new(&sdp()),
            &[packet(p.into(), 1, 9, 100, 0)],
        );
        let got: Vec<_> = frames
            .iter()
            .map(|f| (f.timestamp, f.units[0].to_vec()))
            .collect();
        assert_eq!(got, vec![(100, vec![1, 2, 3]), (1124, vec![4, 5])]);
    }

    #[test]
    fn interleaved_tracks_and_duplicates() {
        let (aus, _, _) = h264_units();
        let (raw, _) = aac_frames();
        let mut packets = by_arrival(vec![
            video_packets(0, &aus[..50], false),
            aac_packets(1, &raw[..90]),
        ]);
        // Every packet twice, and a late copy of an old one.
        packets = packets.into_iter().flat_map(|p| [p.clone(), p]).collect();
        packets.insert(100, packets[3].clone());
        let frames = assemble(&mut FrameAssembler::new(&sdp()), &packets);
        assert_eq!(frames.iter().filter(|f| f.track == 0).count(), 50);
        assert_eq!(frames.iter().filter(|f| f.track == 1).count(), 90);
    }

    #[test]
    fn jpeg_track() {
        let sdp = crate::sdp::parse("v=0\r\ns=x\r\nm=video 0 RTP/AVP 26\r\n").unwrap();
        let mut a = FrameAssembler::new(&sdp);
        assert_eq!(a.tracks(), vec![(0, CodecKind::Mjpeg)]);
        let mut packets = Vec::new();
        for (k, offset) in [0u8, 100, 200].into_iter().enumerate() {
            let mut p = Vec::new();
            rtp::write_header(&mut p, 26, k == 2, 10 + k as u16, 9000, 3);
            p.extend_from_slice(&[0, 0, 0, offset, 1, 50, 20, 15]);
            p.extend(std::iter::repeat_n(k as u8 + 1, 100));
            packets.push(packet(
                p.into(),
                0,
                10 + k as u64,
                (1 << 32) + 9000,
                50 + k as u64,
            ));
        }
        let frames = assemble(&mut a, &packets);
        assert_eq!(frames.len(), 1);
        let f = &frames[0];
        assert_eq!(
            (f.timestamp, f.arrival, f.keyframe),
            ((1 << 32) + 9000, 50, true)
        );
        let jpeg = &f.units[0];
        assert!(jpeg.starts_with(&[0xff, 0xd8]) && jpeg.ends_with(&[0xff, 0xd9]));
        assert_eq!(
            &jpeg[jpeg.len() - 302..jpeg.len() - 2],
            &[[1u8; 100], [2; 100], [3; 100]].concat()[..]
        );
    }

    #[test]
    fn sequence_restart_is_followed() {
        let (aus, _, _) = h264_units();
        let mut packets = video_packets(0, &aus[..30], false);
        // The camera reboots after the first 10 frames: sequence numbers go 5000 back.
        let first_of_11 = packets
            .iter()
            .position(|p| p.timestamp == TS_BASE + 10 * 3600)
            .unwrap();
        for p in &mut packets[..first_of_11] {
            p.seq += 5000;
        }
        let mut a = FrameAssembler::new(&sdp());
        let frames = assemble(&mut a, &packets);
        assert_eq!(frames.len(), 30);
        // A packet a little late is still dropped as late.
        let mut late = packets[first_of_11 + 5].clone();
        late.seq -= 3;
        assert!(assemble(&mut a, &[late]).is_empty());
    }

    #[test]
    fn hostile_packets_never_panic() {
        let mut a = FrameAssembler::new(&sdp());
        let mut out = Vec::new();
        let mut x = 0x9e37_79b9u32;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for seq in 0..20_000u64 {
            let track = (rand() % 6) as u8;
            let len = (rand() % 40) as usize;
            let mut data = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            data.extend((0..len).map(|_| rand() as u8));
            // Bias the first payload bytes towards the interesting packet types.
            if len >= 3 && rand() % 2 == 0 {
                data[12] = [0x78, 0x7c, 0x60, 0x62, 0x00][rand() as usize % 5];
                data[13] = [0, 1, 0x85, 0x45, 0x13][rand() as usize % 5];
            }
            let pkt = Packet {
                data: data.into(),
                track,
                seq: seq / 2,
                timestamp: u64::from(rand() % 4) * 3000,
                marker: rand() % 3 == 0,
                keyframe: false,
                arrival: seq,
                payload_offset: if seq % 97 == 0 { 9999 } else { 12 },
            };
            a.push(&pkt, &mut out);
        }
        // Whatever came out is well formed.
        assert!(out
            .iter()
            .all(|f| f.track <= 3 && f.units.iter().all(|u| !u.is_empty())));
    }
}
