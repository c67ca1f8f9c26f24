//! Elementary-stream frames → RTP packets and SDP media, one [`Track`] per stream, plus the
//! RFC 7798 H.265 packetizer (single NAL unit and fragmentation unit packets).

use bytes::Bytes;

use super::jpeg::{self, JpegInfo, JpegPacketizer};
use crate::codec::{aac, h264, h265};
use crate::rtp;
use crate::sdp::{Media, RtpMap};

/// First dynamic RTP payload type; a source's stream n uses 96 + n.
const DYNAMIC_PAYLOAD_TYPE: u8 = 96;
/// Samples per AAC frame in ADTS.
const AAC_FRAME_SAMPLES: u64 = 1024;
/// ADTS frame length is a 13-bit field.
const MAX_ADTS_FRAME: usize = (1 << 13) - 1;
const VIDEO_CLOCK: u64 = 90_000;

/// What a demuxer hands to a track.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// NAL units of one access unit, without start codes, AUD or filler.
    Nals(Vec<Bytes>),
    /// A PES payload of ADTS frames (a frame may continue in the next one).
    Adts(Bytes),
    Jpeg {
        data: Bytes,
        info: JpegInfo,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// 90 kHz time: PTS (MPEG-TS) or arrival time. None when a PES carried no PTS.
    pub ts90k: Option<u64>,
    pub payload: Payload,
}

impl Frame {
    pub fn len(&self) -> usize {
        match &self.payload {
            Payload::Nals(nals) => nals.iter().map(Bytes::len).sum(),
            Payload::Adts(data) | Payload::Jpeg { data, .. } => data.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrackCodec {
    H264,
    H265,
    Aac,
    Jpeg,
}

/// One outgoing RTP stream: what its parameters are so far, and its packetizer.
#[derive(Debug)]
pub(crate) struct Track {
    state: State,
    /// Random offset added to every 90 kHz time. Shared by a source's tracks, so their RTP
    /// clocks keep the relationship the PTS had.
    ts_base: u64,
    last_ts90k: Option<u64>,
}

#[derive(Debug)]
enum State {
    H264 {
        sps: Option<Vec<u8>>,
        pps: Option<Vec<u8>>,
        packetizer: h264::Packetizer,
    },
    H265 {
        vps: Option<Vec<u8>>,
        sps: Option<Vec<u8>>,
        pps: Option<Vec<u8>>,
        packetizer: H265Packetizer,
    },
    Aac {
        header: Option<aac::AdtsHeader>,
        payload_type: u8,
        ssrc: u32,
        seq: u16,
        /// Start of an ADTS frame that continues in the next PES.
        leftover: Vec<u8>,
        /// RTP time (sample rate, before truncation to 32 bits) of the next frame.
        next_ts: Option<u64>,
        /// Bytes skipped looking for an ADTS sync word.
        skipped: u64,
    },
    Jpeg {
        size: Option<(u16, u16)>,
        packetizer: JpegPacketizer,
    },
}

impl Track {
    /// `index` picks the payload type; `ssrc`, `seq` and `ts_base` should be random.
    pub fn new(codec: TrackCodec, index: usize, ssrc: u32, seq: u16, ts_base: u64) -> Self {
        let payload_type = DYNAMIC_PAYLOAD_TYPE.saturating_add(index as u8).min(127);
        let state = match codec {
            TrackCodec::H264 => State::H264 {
                sps: None,
                pps: None,
                packetizer: h264::Packetizer::new(payload_type, ssrc, seq),
            },
            TrackCodec::H265 => State::H265 {
                vps: None,
                sps: None,
                pps: None,
                packetizer: H265Packetizer::new(payload_type, ssrc, seq),
            },
            TrackCodec::Aac => State::Aac {
                header: None,
                payload_type,
                ssrc,
                seq,
                leftover: Vec::new(),
                next_ts: None,
                skipped: 0,
            },
            TrackCodec::Jpeg => State::Jpeg {
                size: None,
                packetizer: JpegPacketizer {
                    ssrc,
                    seq,
                    mtu: h264::DEFAULT_MTU,
                },
            },
        };
        Track {
            state,
            ts_base,
            last_ts90k: None,
        }
    }

    pub fn codec(&self) -> TrackCodec {
        match self.state {
            State::H264 { .. } => TrackCodec::H264,
            State::H265 { .. } => TrackCodec::H265,
            State::Aac { .. } => TrackCodec::Aac,
            State::Jpeg { .. } => TrackCodec::Jpeg,
        }
    }

    /// Learn what the SDP needs from a frame (parameter sets, audio config, picture size).
    /// Called for every frame, whether or not it is sent.
    pub fn observe(&mut self, frame: &Frame) {
        match (&mut self.state, &frame.payload) {
            (State::H264 { sps, pps, .. }, Payload::Nals(nals)) => {
                for nal in nals {
                    h264::learn_parameter_sets(nal, sps, pps);
                }
            }
            (State::H265 { vps, sps, pps, .. }, Payload::Nals(nals)) => {
                for nal in nals {
                    h265::learn_parameter_sets(nal, vps, sps, pps);
                }
            }
            (State::Aac { header, .. }, Payload::Adts(data)) if header.is_none() => {
                *header = first_adts_header(data);
            }
            (State::Jpeg { size, .. }, Payload::Jpeg { info, .. }) if size.is_none() => {
                *size = Some((info.width, info.height));
            }
            _ => {}
        }
    }

    /// Can a decoder start at this frame? Video: an IDR (H.264) or IRAP (H.265) picture.
    pub fn is_random_access(&self, frame: &Frame) -> bool {
        match (&self.state, &frame.payload) {
            (State::H264 { .. }, Payload::Nals(nals)) => {
                nals.iter().any(|n| h264::nal_type(n) == h264::IDR)
            }
            (State::H265 { .. }, Payload::Nals(nals)) => nals
                .iter()
                .any(|n| (h265::IRAP_FIRST..=h265::IRAP_LAST).contains(&h265::nal_type(n))),
            _ => true,
        }
    }

    /// Everything the SDP needs is known.
    pub fn ready(&self) -> bool {
        match &self.state {
            State::H264 { sps, pps, .. } => sps.is_some() && pps.is_some(),
            State::H265 { vps, sps, pps, .. } => vps.is_some() && sps.is_some() && pps.is_some(),
            State::Aac { header, .. } => header.is_some(),
            State::Jpeg { size, .. } => size.is_some(),
        }
    }

    /// The m= section for this track as media number `mline`. Meant for a ready track; an
    /// unready one gets an m= section without parameters.
    pub fn media(&self, mline: usize) -> Media {
        let b64 = |v: &Option<Vec<u8>>| v.as_deref().unwrap_or_default().to_vec();
        let (kind, payload_type, encoding, clock_rate, channels, fmtp) = match &self.state {
            State::H264 {
                sps,
                pps,
                packetizer,
            } => {
                let (sps, pps) = (b64(sps), b64(pps));
                let mut fmtp = "packetization-mode=1".to_owned();
                if let Some(profile) = h264::profile_level_id(&sps) {
                    fmtp += &format!(";profile-level-id={profile}");
                }
                fmtp += &format!(
                    ";sprop-parameter-sets={}",
                    h264::sprop_parameter_sets(&sps, &pps)
                );
                (
                    "video",
                    packetizer.payload_type,
                    "H264",
                    90_000,
                    None,
                    Some(fmtp),
                )
            }
            State::H265 {
                vps,
                sps,
                pps,
                packetizer,
            } => {
                let fmtp = h265::sprop_fmtp(&b64(vps), &b64(sps), &b64(pps));
                (
                    "video",
                    packetizer.payload_type,
                    "H265",
                    90_000,
                    None,
                    Some(fmtp),
                )
            }
            State::Aac {
                header,
                payload_type,
                ..
            } => {
                let (rate, channels, fmtp) = match header {
                    Some(h) => (
                        h.sample_rate,
                        // Channel configuration 0 (set by a PCE) cannot be advertised.
                        (h.channels != 0).then_some(u16::from(h.channels)),
                        Some(aac::fmtp_for(&aac::audio_specific_config(h))),
                    ),
                    None => (90_000, None, None),
                };
                (
                    "audio",
                    *payload_type,
                    "MPEG4-GENERIC",
                    rate,
                    channels,
                    fmtp,
                )
            }
            State::Jpeg { .. } => ("video", jpeg::PAYLOAD_TYPE, "JPEG", 90_000, None, None),
        };
        Media {
            kind: kind.to_owned(),
            port: 0,
            proto: "RTP/AVP".to_owned(),
            formats: vec![payload_type.to_string()],
            control: Some(format!("trackID={mline}")),
            rtpmap: vec![RtpMap {
                payload_type,
                encoding: encoding.to_owned(),
                clock_rate,
                channels,
            }],
            fmtp: fmtp.map(|f| (payload_type, f)).into_iter().collect(),
            lines: Vec::new(),
        }
    }

    /// Turn a frame into complete RTP packets appended to `out`.
    pub fn packetize(&mut self, frame: Frame, out: &mut Vec<Bytes>) {
        // A PES without PTS goes with the previous time; before any, there is none to give.
        let Some(ts90k) = frame.ts90k.or(self.last_ts90k) else {
            return;
        };
        self.last_ts90k = Some(ts90k);
        let time = ts90k.wrapping_add(self.ts_base);
        let rtp_ts = time as u32;
        match (&mut self.state, frame.payload) {
            (State::H264 { packetizer, .. }, Payload::Nals(nals)) => {
                packetizer.packetize(&nals, rtp_ts, out);
            }
            (State::H265 { packetizer, .. }, Payload::Nals(nals)) => {
                packetizer.packetize(&nals, rtp_ts, out);
            }
            (State::Jpeg { packetizer, .. }, Payload::Jpeg { data, info }) => {
                packetizer.packetize(&data, &info, rtp_ts, out);
            }
            (state @ State::Aac { .. }, Payload::Adts(data)) => {
                packetize_adts(state, &data, frame.ts90k.map(|_| time), out);
            }
            _ => {} // A payload of another codec cannot reach a track.
        }
    }
}

/// The first ADTS header in a PES payload that is followed by another header or the end, so
/// a stray 0xfff in a frame continued from the previous PES is not taken for one.
fn first_adts_header(data: &[u8]) -> Option<aac::AdtsHeader> {
    (0..data.len()).find_map(|at| {
        let h = aac::parse_adts(&data[at..]).ok()?;
        let next = at + h.frame_len;
        (next == data.len() || aac::parse_adts(data.get(next..)?).is_ok()).then_some(h)
    })
}

/// One RTP packet (RFC 3640 AAC-hbr, one AU) per ADTS frame. `time` is the PES time in
/// 90 kHz with the base added; the first frame that starts in this PES gets it converted to
/// the sample rate, each further frame 1024 more.
fn packetize_adts(state: &mut State, pes: &[u8], time: Option<u64>, out: &mut Vec<Bytes>) {
    let State::Aac {
        header: Some(config),
        payload_type,
        ssrc,
        seq,
        leftover,
        next_ts,
        skipped,
    } = state
    else {
        return;
    };
    let carried = leftover.len();
    let mut data = std::mem::take(leftover);
    data.extend_from_slice(pes);
    let mut pts_ts = time
        .map(|t| (u128::from(t) * u128::from(config.sample_rate) / u128::from(VIDEO_CLOCK)) as u64);
    let mut pos = 0;
    while pos < data.len() {
        let h = match aac::parse_adts(&data[pos..]) {
            Ok(h) => h,
            Err(aac::AacError::TooShort) => break,
            Err(_) => {
                // Not a frame start: skip to the next possible sync byte.
                let next = data[pos + 1..]
                    .iter()
                    .position(|&b| b == 0xff)
                    .map_or(data.len(), |i| pos + 1 + i);
                *skipped += (next - pos) as u64;
                pos = next;
                continue;
            }
        };
        let end = pos + h.frame_len;
        if end > data.len() {
            break;
        }
        // A frame started in the previous PES continues that PES's timing.
        let from_pts = if pos >= carried { pts_ts.take() } else { None };
        // Within half a frame of the running count the PTS is rounding noise: keep counting,
        // so timestamps advance by exactly 1024.
        let ts = match (from_pts, *next_ts) {
            (Some(p), Some(n)) if p.abs_diff(n) <= AAC_FRAME_SAMPLES / 2 => n,
            (Some(p), _) => p,
            (None, Some(n)) => n,
            (None, None) => {
                pos = end;
                continue;
            }
        };
        *next_ts = Some(ts + AAC_FRAME_SAMPLES);
        let raw = &data[pos + h.header_len..end];
        let mut packet = Vec::with_capacity(rtp::HEADER_LEN + 4 + raw.len());
        rtp::write_header(&mut packet, *payload_type, true, *seq, ts as u32, *ssrc);
        // An ADTS frame is at most 8191 bytes, within the 13-bit AU size.
        if aac::packetize_rfc3640(raw, &mut packet).is_ok() {
            *seq = seq.wrapping_add(1);
            out.push(packet.into());
        }
        pos = end;
    }
    let rest = &data[pos.min(data.len())..];
    if rest.len() <= MAX_ADTS_FRAME {
        leftover.extend_from_slice(rest);
    }
}

/// RFC 7798 packetizer: a NAL unit that fits goes alone, a larger one as FU fragments.
/// (No aggregation packets: parameter sets are few and small.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct H265Packetizer {
    pub payload_type: u8,
    pub ssrc: u32,
    pub seq: u16,
    /// Maximum RTP packet size including the 12-byte header.
    pub mtu: usize,
}

impl H265Packetizer {
    pub fn new(payload_type: u8, ssrc: u32, seq: u16) -> Self {
        H265Packetizer {
            payload_type,
            ssrc,
            seq,
            mtu: h264::DEFAULT_MTU,
        }
    }

    /// Packetize one access unit; the marker bit is set on its last packet. NALs shorter than
    /// the 2-byte header are skipped.
    pub fn packetize(&mut self, nals: &[Bytes], ts: u32, out: &mut Vec<Bytes>) {
        // Room for the 2-byte payload header, the FU header and at least one byte.
        let max_payload = self.mtu.clamp(rtp::HEADER_LEN + 4, 65_535) - rtp::HEADER_LEN;
        let last = nals.iter().rposition(|n| n.len() >= 2);
        for (i, nal) in nals.iter().enumerate() {
            if nal.len() < 2 {
                continue;
            }
            let final_nal = Some(i) == last;
            if nal.len() <= max_payload {
                self.push(out, ts, final_nal, &[], nal);
                continue;
            }
            // PayloadHdr: the NAL header with type FU (F, LayerId, TID kept).
            let header = [(nal[0] & 0x81) | (h265::FU << 1), nal[1]];
            let nal_type = h265::nal_type(nal);
            let chunks = nal[2..].chunks(max_payload - 3);
            let count = chunks.len();
            for (k, chunk) in chunks.enumerate() {
                let mut fu = nal_type;
                if k == 0 {
                    fu |= 0x80;
                }
                if k == count - 1 {
                    fu |= 0x40;
                }
                let end = final_nal && k == count - 1;
                self.push(out, ts, end, &[header[0], header[1], fu], chunk);
            }
        }
    }

    fn push(&mut self, out: &mut Vec<Bytes>, ts: u32, marker: bool, head: &[u8], body: &[u8]) {
        let mut p = Vec::with_capacity(rtp::HEADER_LEN + head.len() + body.len());
        rtp::write_header(&mut p, self.payload_type, marker, self.seq, ts, self.ssrc);
        self.seq = self.seq.wrapping_add(1);
        p.extend_from_slice(head);
        p.extend_from_slice(body);
        out.push(p.into());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Minimal RFC 7798 depacketizer for tests: (timestamp, NAL units) per marker-ended unit.
    pub(crate) fn h265_depacketize(packets: &[Bytes]) -> Vec<(u32, Vec<Bytes>)> {
        let mut out = Vec::new();
        let mut nals = Vec::new();
        let mut fu: Option<Vec<u8>> = None;
        for p in packets {
            let v = rtp::view(p).unwrap();
            let payload = v.payload(p);
            if h265::nal_type(payload) == h265::FU {
                let fu_header = payload[2];
                if fu_header & 0x80 != 0 {
                    assert!(fu.is_none());
                    let t = fu_header & 0x3f;
                    fu = Some(vec![(payload[0] & 0x81) | (t << 1), payload[1]]);
                }
                fu.as_mut()
                    .expect("FU start")
                    .extend_from_slice(&payload[3..]);
                if fu_header & 0x40 != 0 {
                    nals.push(Bytes::from(fu.take().unwrap()));
                }
            } else {
                assert!(fu.is_none());
                nals.push(Bytes::copy_from_slice(payload));
            }
            if v.marker {
                out.push((v.timestamp, std::mem::take(&mut nals)));
            }
        }
        assert!(nals.is_empty() && fu.is_none());
        out
    }

    fn adts(len: usize, fill: u8) -> Vec<u8> {
        // AAC-LC, 48 kHz (index 3), mono, no CRC.
        let frame_len = len + 7;
        let mut f = vec![
            0xff,
            0xf1,
            (1 << 6) | (3 << 2),
            (1 << 6) | ((frame_len >> 11) as u8 & 0x03),
            (frame_len >> 3) as u8,
            ((frame_len as u8 & 0x07) << 5) | 0x1f,
            0xfc,
        ];
        f.resize(frame_len, fill);
        f
    }

    fn aac_track() -> Track {
        Track::new(TrackCodec::Aac, 1, 5, 10, 0)
    }

    fn timestamps(packets: &[Bytes]) -> Vec<u32> {
        packets
            .iter()
            .map(|p| rtp::view(p).unwrap().timestamp)
            .collect()
    }

    #[test]
    fn h265_single_and_fragmented() {
        let vps = Bytes::from_static(&[0x40, 0x01, 0x0c, 0x01]);
        let mut idr = vec![0x26, 0x01];
        idr.extend((0..5000u32).map(|i| (i * 13) as u8));
        let idr = Bytes::from(idr);
        let mut p = H265Packetizer::new(96, 9, 65534);
        let mut out = Vec::new();
        p.packetize(
            &[vps.clone(), Bytes::from_static(&[0x40]), idr.clone()],
            90,
            &mut out,
        );
        // VPS alone, then 5 FUs of at most 1185 data bytes; the 1-byte NAL is skipped.
        assert_eq!(out.len(), 6);
        assert!(out.iter().all(|p| p.len() <= h264::DEFAULT_MTU));
        let second = rtp::view(&out[1]).unwrap();
        assert_eq!(&second.payload(&out[1])[..3], &[0x62, 0x01, 0x80 | 19]);
        assert!(h265::rtp_starts_keyframe(second.payload(&out[1])));
        assert_eq!(h265_depacketize(&out), vec![(90, vec![vps, idr])]);
        assert_eq!(p.seq, 4);
    }

    #[test]
    fn aac_frames_across_pes_and_timing() {
        let mut t = aac_track();
        let (a, b, c) = (adts(100, 1), adts(50, 2), adts(80, 3));
        let first = Frame {
            ts90k: Some(90_000),
            payload: Payload::Adts([a.clone(), b[..20].to_vec()].concat().into()),
        };
        t.observe(&first);
        assert!(t.ready());
        let mut out = Vec::new();
        t.packetize(first, &mut out);
        assert_eq!(out.len(), 1);
        // The second PES finishes frame b and carries c; its PTS (one frame later plus a
        // rounding tick) belongs to c, which starts in it.
        let second = Frame {
            ts90k: Some(90_000 + 2 * 1920 + 1),
            payload: Payload::Adts([&b[20..], &c[..]].concat().into()),
        };
        t.packetize(second, &mut out);
        assert_eq!(timestamps(&out), vec![48_000, 49_024, 50_048]);
        for (pkt, frame) in out.iter().zip([&a, &b, &c]) {
            let payload = rtp::view(pkt).unwrap().payload(pkt).to_vec();
            assert_eq!(
                aac::depacketize_rfc3640(&payload).unwrap(),
                vec![&frame[7..]]
            );
        }
        // A real jump in PTS is followed.
        out.clear();
        t.packetize(
            Frame {
                ts90k: Some(180_000),
                payload: Payload::Adts(a.clone().into()),
            },
            &mut out,
        );
        assert_eq!(timestamps(&out), vec![96_000]);
        let media = t.media(1);
        assert_eq!(media.rtpmap[0].encoding, "MPEG4-GENERIC");
        assert_eq!(
            (media.rtpmap[0].clock_rate, media.rtpmap[0].channels),
            (48_000, Some(1))
        );
        assert!(media.fmtp[0].1.ends_with("config=1188"));
    }

    #[test]
    fn aac_skips_garbage_and_bounds_leftover() {
        let mut t = aac_track();
        let a = adts(30, 7);
        let mut pes = vec![0x12, 0xff, 0x00];
        pes.extend_from_slice(&a);
        let frame = Frame {
            ts90k: Some(0),
            payload: Payload::Adts(pes.into()),
        };
        t.observe(&frame);
        let mut out = Vec::new();
        t.packetize(frame, &mut out);
        assert_eq!(out.len(), 1);
        let State::Aac { skipped, .. } = t.state else {
            unreachable!()
        };
        assert_eq!(skipped, 3);
        // Garbage only: nothing out, nothing kept beyond one frame.
        let mut t = aac_track();
        t.observe(&Frame {
            ts90k: Some(0),
            payload: Payload::Adts(a.into()),
        });
        for _ in 0..100 {
            t.packetize(
                Frame {
                    ts90k: None,
                    payload: Payload::Adts(vec![0xff; 5000].into()),
                },
                &mut out,
            );
        }
        let State::Aac { leftover, .. } = &t.state else {
            unreachable!()
        };
        assert!(leftover.len() <= MAX_ADTS_FRAME);
    }

    #[test]
    fn video_media_lines() {
        let mut t = Track::new(TrackCodec::H264, 0, 1, 2, 3);
        assert!(!t.ready());
        let sps = Bytes::from_static(&[0x67, 0x64, 0x00, 0x0d, 0xac]);
        let pps = Bytes::from_static(&[0x68, 0xeb, 0xc3]);
        t.observe(&Frame {
            ts90k: None,
            payload: Payload::Nals(vec![sps, pps]),
        });
        assert!(t.ready());
        let m = t.media(0);
        assert_eq!(m.formats, vec!["96"]);
        assert_eq!(m.control.as_deref(), Some("trackID=0"));
        assert_eq!(
            m.fmtp[0].1,
            "packetization-mode=1;profile-level-id=64000D;sprop-parameter-sets=Z2QADaw=,aOvD"
        );
        // No time yet: a frame is dropped, not stamped with garbage.
        let mut out = Vec::new();
        t.packetize(
            Frame {
                ts90k: None,
                payload: Payload::Nals(vec![Bytes::from_static(&[0x65, 1])]),
            },
            &mut out,
        );
        assert!(out.is_empty());
        t.packetize(
            Frame {
                ts90k: Some(10),
                payload: Payload::Nals(vec![Bytes::from_static(&[0x65, 1])]),
            },
            &mut out,
        );
        assert_eq!(timestamps(&out), vec![13]);
    }
}
