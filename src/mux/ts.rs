//! Live MPEG-TS (ISO/IEC 13818-1): one PES per frame, written as soon as the frame arrives.

use bytes::Bytes;

use super::timing::TrackClock;
use super::{adts_header, nal_class, Fragment, Frame, NalClass, TrackConfig};

pub const PACKET_LEN: usize = 188;
const SYNC_BYTE: u8 = 0x47;
const PAT_PID: u16 = 0;
pub const PMT_PID: u16 = 0x1000;
pub const VIDEO_PID: u16 = 0x100;
pub const AUDIO_PID: u16 = 0x101;
/// Further tracks of the same kind get PIDs from here.
const EXTRA_PID: u16 = 0x102;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_H265: u8 = 0x24;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
const PTS_HZ: u32 = 90_000;
/// Added to every decode time so PTS (and the PCR before it) never go below zero.
const PTS_OFFSET: u64 = 90_000;
/// How far the PCR runs behind the PTS: the decoder's buffering time (0.7 s,
/// ffmpeg's default mux delay).
const PCR_LEAD: u64 = 63_000;
const TIMESTAMP_MASK: u64 = (1 << 33) - 1;
/// An audio-only output repeats PAT and PMT this often (in fragments) for joining viewers.
const AUDIO_PSI_INTERVAL: u64 = 20;
const H264_AUD: [u8; 2] = [0x09, 0xf0];
/// H.265 AUD (type 35, layer 0, temporal id 1), pic_type 2 (I, P or B).
const H265_AUD: [u8; 3] = [0x46, 0x01, 0x50];
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Live MPEG-TS (188-byte packets): PAT+PMT, one PES per frame with a PTS, PCR on the video
/// PID (or the audio PID for audio-only output).
#[derive(Debug)]
pub struct LiveTs {
    tracks: Vec<Track>,
    has_video: bool,
    pcr_pid: Option<u16>,
    /// PAT and PMT packets with continuity counter 0; patched per emission.
    psi: [[u8; PACKET_LEN]; 2],
    psi_cc: u8,
    origin: Option<u64>,
    fragments: u64,
}

#[derive(Debug)]
struct Track {
    sdp_index: usize,
    config: TrackConfig,
    pid: u16,
    stream_id: u8,
    stream_type: u8,
    clock: TrackClock,
    /// A keyframe was seen (always true for audio): frames may be written.
    started: bool,
    cc: u8,
}

impl LiveTs {
    pub fn new(tracks: Vec<(usize, TrackConfig)>) -> Self {
        let mut next_extra = EXTRA_PID;
        let (mut video_ids, mut audio_ids) = (0xe0u8, 0xc0u8);
        let (mut video_pid, mut audio_pid) = (Some(VIDEO_PID), Some(AUDIO_PID));
        let tracks: Vec<Track> = tracks
            .into_iter()
            // MPEG-TS here carries H.264, H.265 and AAC (ADTS) only.
            .filter(|(_, c)| c.is_video() || matches!(c, TrackConfig::Aac { .. }))
            .map(|(sdp_index, config)| {
                let is_video = config.is_video();
                let pid = if is_video {
                    video_pid.take()
                } else {
                    audio_pid.take()
                }
                .unwrap_or_else(|| {
                    next_extra += 1;
                    next_extra - 1
                });
                let ids = if is_video {
                    &mut video_ids
                } else {
                    &mut audio_ids
                };
                let stream_id = *ids;
                *ids = ids.wrapping_add(1);
                let stream_type = match config {
                    TrackConfig::H264 { .. } => STREAM_TYPE_H264,
                    TrackConfig::H265 { .. } => STREAM_TYPE_H265,
                    // Only AAC is left of the audio codecs (filtered above).
                    _ => STREAM_TYPE_AAC_ADTS,
                };
                let default_step = if is_video {
                    3000
                } else {
                    1024 * u64::from(PTS_HZ) / u64::from(config.timescale())
                };
                Track {
                    sdp_index,
                    pid,
                    stream_id,
                    stream_type,
                    clock: TrackClock::new(PTS_HZ, config.timescale(), default_step),
                    started: !is_video,
                    config,
                    cc: 0,
                }
            })
            .collect();
        let has_video = tracks.iter().any(|t| t.config.is_video());
        let pcr_pid = tracks
            .iter()
            .find(|t| t.config.is_video())
            .or(tracks.first())
            .map(|t| t.pid);
        let psi = psi_packets(&tracks, pcr_pid.unwrap_or(0x1fff));
        LiveTs {
            tracks,
            has_video,
            pcr_pid,
            psi,
            psi_cc: 0,
            origin: None,
            fragments: 0,
        }
    }

    /// The RTP clock rate of a track when it differs from the codec's own rate (an AAC stream
    /// whose SDP clock is not the sample rate). Without this call they are assumed equal.
    pub fn set_clock_rate(&mut self, sdp_index: usize, clock_rate: u32) {
        for t in self.tracks.iter_mut().filter(|t| t.sdp_index == sdp_index) {
            t.clock.set_clock_rate(clock_rate);
        }
    }

    /// Emits one Fragment per frame right away. PAT+PMT are prepended to the first fragment,
    /// every video keyframe fragment, and every 20th fragment of an audio-only output.
    pub fn push(&mut self, frame: Frame, out: &mut Vec<Fragment>) {
        let Some(index) = self.tracks.iter().position(|t| t.sdp_index == frame.track) else {
            return;
        };
        let track = &mut self.tracks[index];
        let is_video = track.config.is_video();
        if !track.started {
            if !frame.keyframe {
                return;
            }
            track.started = true;
        }
        let Some(es) = elementary_stream(&track.config, frame.keyframe, &frame.units) else {
            return;
        };
        let origin = *self.origin.get_or_insert(frame.arrival);
        let decode_time = track
            .clock
            .decode_time(origin, frame.timestamp, frame.arrival);
        let pts = (decode_time + PTS_OFFSET) & TIMESTAMP_MASK;
        let pcr = (self.pcr_pid == Some(track.pid))
            .then_some((decode_time + PTS_OFFSET - PCR_LEAD) & TIMESTAMP_MASK);
        let keyframe = is_video && frame.keyframe;
        let with_psi = self.fragments == 0
            || keyframe
            || (!self.has_video && self.fragments.is_multiple_of(AUDIO_PSI_INTERVAL));

        let pes = pes_packet(track.stream_id, is_video, pts, &es);
        let packets = pes.len().div_ceil(PACKET_LEN - 4) + 2 * usize::from(with_psi) + 1;
        let mut data = Vec::with_capacity(packets * PACKET_LEN);
        if with_psi {
            for packet in &self.psi {
                data.extend_from_slice(packet);
                let at = data.len() - PACKET_LEN + 3;
                data[at] |= self.psi_cc;
            }
            self.psi_cc = (self.psi_cc + 1) & 0x0f;
        }
        let random_access = keyframe || !self.has_video;
        write_packets(
            &mut data,
            track.pid,
            &mut track.cc,
            &pes,
            pcr,
            random_access,
        );
        self.fragments += 1;
        out.push(Fragment {
            data: data.into(),
            keyframe: keyframe || !self.has_video,
        });
    }
}

/// The bytes of one frame as the PES carries them: Annex-B with an AUD first (and parameter
/// sets before a keyframe that lacks them) for video, ADTS for AAC. None when there is
/// nothing to send or the AAC config cannot be written as ADTS.
fn elementary_stream(config: &TrackConfig, keyframe: bool, units: &[Bytes]) -> Option<Vec<u8>> {
    let mut es = Vec::with_capacity(units.iter().map(|u| u.len() + 7).sum::<usize>() + 64);
    match config {
        TrackConfig::Aac { config, .. } => {
            let frame = units.iter().find(|u| !u.is_empty())?;
            es.extend_from_slice(&adts_header(config, frame.len())?);
            es.extend_from_slice(frame);
        }
        TrackConfig::Opus { .. } | TrackConfig::Flac { .. } => return None,
        TrackConfig::H264 { .. } | TrackConfig::H265 { .. } => {
            let h265 = matches!(config, TrackConfig::H265 { .. });
            let body = || {
                units
                    .iter()
                    .filter(move |u| !u.is_empty() && nal_class(h265, u) != NalClass::Aud)
            };
            body().next()?;
            es.extend_from_slice(&START_CODE);
            es.extend_from_slice(if h265 { &H265_AUD[..] } else { &H264_AUD[..] });
            let in_band = body().any(|u| nal_class(h265, u) == NalClass::ParameterSet);
            if keyframe && !in_band {
                let sets: Vec<&Bytes> = match config {
                    TrackConfig::H264 { sps, pps } => vec![sps, pps],
                    TrackConfig::H265 { vps, sps, pps } => vec![vps, sps, pps],
                    _ => vec![],
                };
                for nal in sets.into_iter().filter(|n| !n.is_empty()) {
                    es.extend_from_slice(&START_CODE);
                    es.extend_from_slice(nal);
                }
            }
            for nal in body() {
                es.extend_from_slice(&START_CODE);
                es.extend_from_slice(nal);
            }
        }
    }
    Some(es)
}

/// PES header with a PTS only (no B-frames, so DTS = PTS), then the payload.
fn pes_packet(stream_id: u8, is_video: bool, pts: u64, es: &[u8]) -> Vec<u8> {
    let mut pes = Vec::with_capacity(es.len() + 14);
    pes.extend_from_slice(&[0, 0, 1, stream_id]);
    // Video PES may be longer than 16 bits can say; 0 means unbounded (video only).
    let len = u16::try_from(es.len() + 8)
        .ok()
        .filter(|_| !is_video)
        .unwrap_or(0);
    pes.extend_from_slice(&len.to_be_bytes());
    pes.push(0x84); // marker bits, data_alignment_indicator
    pes.push(0x80); // PTS only
    pes.push(5);
    pes.extend_from_slice(&[
        0x21 | ((pts >> 29) & 0x0e) as u8,
        (pts >> 22) as u8,
        0x01 | ((pts >> 14) & 0xfe) as u8,
        (pts >> 7) as u8,
        0x01 | ((pts << 1) & 0xfe) as u8,
    ]);
    pes.extend_from_slice(es);
    pes
}

/// Split a PES into TS packets: the first has payload_unit_start and, when asked, a PCR and
/// the random access indicator; the last is padded with adaptation-field stuffing.
fn write_packets(
    out: &mut Vec<u8>,
    pid: u16,
    cc: &mut u8,
    pes: &[u8],
    pcr: Option<u64>,
    random_access: bool,
) {
    let mut rest = pes;
    let mut first = true;
    while first || !rest.is_empty() {
        let flags = if first {
            (if random_access { 0x40 } else { 0 }) | (if pcr.is_some() { 0x10 } else { 0 })
        } else {
            0
        };
        let pcr = pcr.filter(|_| first);
        // Adaptation field bytes this packet needs before stuffing: length, flags, PCR.
        let min_af = if flags != 0 {
            2 + if pcr.is_some() { 6 } else { 0 }
        } else {
            0
        };
        let payload_len = rest.len().min(PACKET_LEN - 4 - min_af);
        let af_len = PACKET_LEN - 4 - payload_len;
        out.push(SYNC_BYTE);
        out.push((u8::from(first) << 6) | (pid >> 8) as u8 & 0x1f);
        out.push(pid as u8);
        out.push(if af_len > 0 { 0x30 } else { 0x10 } | *cc);
        *cc = (*cc + 1) & 0x0f;
        if af_len > 0 {
            out.push((af_len - 1) as u8);
            if af_len > 1 {
                out.push(flags);
                if let Some(base) = pcr {
                    out.extend_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        ((base & 1) << 7) as u8 | 0x7e, // extension 0
                        0,
                    ]);
                }
                let used = 2 + if pcr.is_some() { 6 } else { 0 };
                out.resize(out.len() + af_len - used, 0xff);
            }
        }
        out.extend_from_slice(&rest[..payload_len]);
        rest = &rest[payload_len..];
        first = false;
    }
}

/// PAT and PMT, one packet each, continuity counter left 0.
fn psi_packets(tracks: &[Track], pcr_pid: u16) -> [[u8; PACKET_LEN]; 2] {
    let pat = section(0x00, 1, |s| {
        s.extend_from_slice(&1u16.to_be_bytes()); // program_number
        s.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
    });
    let pmt = section(0x02, 1, |s| {
        s.extend_from_slice(&(0xe000 | pcr_pid).to_be_bytes());
        s.extend_from_slice(&[0xf0, 0]); // program_info_length
        for t in tracks {
            s.push(t.stream_type);
            s.extend_from_slice(&(0xe000 | t.pid).to_be_bytes());
            s.extend_from_slice(&[0xf0, 0]); // ES_info_length
        }
    });
    [psi_packet(PAT_PID, &pat), psi_packet(PMT_PID, &pmt)]
}

/// A long-form PSI section (version 0, current, section 0 of 0) with its CRC.
fn section(table_id: u8, id: u16, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut s = vec![table_id, 0, 0];
    s.extend_from_slice(&id.to_be_bytes());
    s.extend_from_slice(&[0xc1, 0, 0]);
    body(&mut s);
    // section_length counts from after itself through the CRC.
    let len = (s.len() - 3 + 4) as u16;
    s[1] = 0xb0 | (len >> 8) as u8;
    s[2] = len as u8;
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

fn psi_packet(pid: u16, section: &[u8]) -> [u8; PACKET_LEN] {
    let mut p = [0xff; PACKET_LEN];
    p[..5].copy_from_slice(&[SYNC_BYTE, 0x40 | (pid >> 8) as u8, pid as u8, 0x10, 0]);
    // Sections here are tiny (a PMT of 32 tracks is under 180 bytes).
    let n = section.len().min(PACKET_LEN - 5);
    p[5..5 + n].copy_from_slice(&section[..n]);
    p
}

/// CRC-32/MPEG-2: polynomial 0x04C11DB7, MSB first, no final XOR.
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::aac;
    use crate::mux::test_support::*;
    use std::collections::HashMap;

    struct TsPacket<'a> {
        pid: u16,
        start: bool,
        cc: u8,
        adaptation: &'a [u8],
        payload: &'a [u8],
    }

    fn parse_packets(data: &[u8]) -> Vec<TsPacket<'_>> {
        assert_eq!(data.len() % PACKET_LEN, 0);
        data.chunks(PACKET_LEN)
            .map(|p| {
                assert_eq!(p[0], SYNC_BYTE);
                let control = (p[3] >> 4) & 3;
                assert!(control == 1 || control == 3, "always a payload");
                let (adaptation, payload) = if control == 3 {
                    let len = usize::from(p[4]);
                    assert!(len <= 183);
                    (&p[5..5 + len], &p[5 + len..])
                } else {
                    (&p[4..4], &p[4..])
                };
                TsPacket {
                    pid: u16::from_be_bytes([p[1] & 0x1f, p[2]]),
                    start: p[1] & 0x40 != 0,
                    cc: p[3] & 0x0f,
                    adaptation,
                    payload,
                }
            })
            .collect()
    }

    fn pcr_of(adaptation: &[u8]) -> Option<u64> {
        let a = adaptation;
        (a.len() >= 7 && a[0] & 0x10 != 0).then(|| {
            (u64::from(u32::from_be_bytes([a[1], a[2], a[3], a[4]])) << 1) | u64::from(a[5] >> 7)
        })
    }

    fn pts_of(pes: &[u8]) -> u64 {
        assert_eq!(&pes[..3], &[0, 0, 1]);
        assert_eq!(pes[7], 0x80, "PTS only");
        let p = &pes[9..14];
        (u64::from(p[0] & 0x0e) << 29)
            | (u64::from(p[1]) << 22)
            | (u64::from(p[2] >> 1) << 15)
            | (u64::from(p[3]) << 7)
            | u64::from(p[4] >> 1)
    }

    /// Checks the PSI tables and continuity counters of a whole output; returns the PES
    /// packets per PID with the PCR of their first TS packet.
    /// PES packets with the PCR of their first TS packet, per PID.
    type PesByPid = HashMap<u16, Vec<(Vec<u8>, Option<u64>)>>;

    fn demux(data: &[u8]) -> PesByPid {
        let mut pes = PesByPid::new();
        let mut last_cc: HashMap<u16, u8> = HashMap::new();
        for p in parse_packets(data) {
            if let Some(&cc) = last_cc.get(&p.pid) {
                assert_eq!(p.cc, (cc + 1) & 0x0f, "continuity on PID {:#x}", p.pid);
            }
            last_cc.insert(p.pid, p.cc);
            if p.pid == PAT_PID || p.pid == PMT_PID {
                assert!(p.start);
                let len = usize::from(u16::from_be_bytes([p.payload[2], p.payload[3]]) & 0xfff);
                let section = &p.payload[1..4 + len];
                assert_eq!(crc32_mpeg2(section), 0, "CRC");
                continue;
            }
            let list = pes.entry(p.pid).or_default();
            if p.start {
                list.push((Vec::new(), pcr_of(p.adaptation)));
            } else {
                assert_eq!(pcr_of(p.adaptation), None);
            }
            list.last_mut().unwrap().0.extend_from_slice(p.payload);
        }
        pes
    }

    #[test]
    fn psi_tables() {
        let (_, configs) = demo_av_frames();
        let ts = LiveTs::new(configs);
        let [pat, pmt] = &ts.psi;
        assert_eq!(
            &pat[5..17],
            &[0, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00]
        );
        assert_eq!(
            &pmt[5..27],
            &[
                2, 0xb0, 23, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0, //
                0x1b, 0xe1, 0x00, 0xf0, 0, //
                0x0f, 0xe1, 0x01, 0xf0, 0
            ]
        );
        // CRC-32/MPEG-2 check value.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn demo_av() {
        let (frames, configs) = demo_av_frames();
        let (aus, sps, pps) = h264_units();
        let (raw, _) = aac_frames();
        let mut ts = LiveTs::new(configs);
        let mut out = Vec::new();
        for frame in frames {
            ts.push(frame, &mut out);
        }
        assert_eq!(out.len(), 200 + 376);
        let keyframes: Vec<&Fragment> = out.iter().filter(|f| f.keyframe).collect();
        assert_eq!(keyframes.len(), 8);
        for (n, f) in out.iter().enumerate() {
            let pids: Vec<u16> = parse_packets(&f.data).iter().map(|p| p.pid).collect();
            let with_psi = pids.starts_with(&[PAT_PID, PMT_PID]);
            assert_eq!(with_psi, n == 0 || f.keyframe, "fragment {n}");
        }
        let all: Vec<u8> = out.iter().flat_map(|f| f.data.to_vec()).collect();
        let pes = demux(&all);
        let video = &pes[&VIDEO_PID];
        let audio = &pes[&AUDIO_PID];
        assert_eq!((video.len(), audio.len()), (200, 376));

        for (n, ((p, pcr), au)) in video.iter().zip(&aus).enumerate() {
            let pts = pts_of(p);
            assert_eq!(pts, PTS_OFFSET + n as u64 * 3600);
            assert_eq!(*pcr, Some(pts - PCR_LEAD), "PCR on every video PES");
            assert_eq!(u16::from_be_bytes([p[4], p[5]]), 0);
            let es = &p[14..];
            assert!(es.starts_with(&[0, 0, 0, 1, 9, 0xf0]));
            let nals = crate::codec::h264::nal_units(&Bytes::copy_from_slice(es));
            // In-band SPS/PPS are kept, so nothing is added: the AU plus the AUD.
            assert_eq!(&nals[1..], &au[..], "access unit {n}");
            if n % 25 == 0 {
                assert_eq!((&nals[1], &nals[2]), (&sps, &pps));
            }
        }
        let mut last = 0;
        for ((p, pcr), frame) in audio.iter().zip(&raw) {
            let pts = pts_of(p);
            assert!(pts > last);
            last = pts;
            assert_eq!(*pcr, None);
            let len = usize::from(u16::from_be_bytes([p[4], p[5]]));
            assert_eq!(len, p.len() - 6);
            let adts = aac::parse_adts(&p[14..]).unwrap();
            assert_eq!(adts.frame_len, p.len() - 14);
            assert_eq!(&p[21..], &frame[..]);
        }
    }

    #[test]
    fn parameter_sets_are_added_when_not_in_band() {
        let (frames, config) = h265_frames(DEMO_H265);
        let mut ts = LiveTs::new(vec![(2, config.clone())]);
        let mut out = Vec::new();
        for mut frame in frames.into_iter().take(3) {
            frame
                .units
                .retain(|u| !matches!(crate::codec::h265::nal_type(u), 32..=34));
            ts.push(frame, &mut out);
        }
        let all: Vec<u8> = out.iter().flat_map(|f| f.data.to_vec()).collect();
        let pes = demux(&all);
        let video = &pes[&VIDEO_PID];
        let TrackConfig::H265 { vps, sps, pps } = config else {
            unreachable!()
        };
        for (n, (p, _)) in video.iter().enumerate() {
            let nals = crate::codec::h264::nal_units(&Bytes::copy_from_slice(&p[14..]));
            assert_eq!(&nals[0][..], &H265_AUD);
            let sets = [vps.clone(), sps.clone(), pps.clone()];
            assert_eq!(nals.get(1..4) == Some(&sets[..]), n == 0, "frame {n}");
        }
        assert!(out[0].keyframe && !out[1].keyframe);
    }

    #[test]
    fn audio_only_repeats_psi_and_carries_pcr() {
        let (frames, configs) = demo_av_frames();
        let mut ts = LiveTs::new(configs[1..].to_vec());
        let mut out = Vec::new();
        for frame in frames.into_iter().filter(|f| f.track == 1).take(45) {
            ts.push(frame, &mut out);
        }
        assert!(out.iter().all(|f| f.keyframe));
        let with_psi: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, f)| parse_packets(&f.data)[0].pid == PAT_PID)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(with_psi, [0, 20, 40]);
        let all: Vec<u8> = out.iter().flat_map(|f| f.data.to_vec()).collect();
        let pes = demux(&all);
        assert!(pes[&AUDIO_PID].iter().all(|(_, pcr)| pcr.is_some()));
    }

    #[test]
    fn stuffing_at_every_length() {
        let mut cc = 0;
        for len in 0..600 {
            let pes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for (pcr, random_access) in [(None, false), (Some(12345), true), (None, true)] {
                let mut out = Vec::new();
                write_packets(&mut out, 0x100, &mut cc, &pes, pcr, random_access);
                let packets = parse_packets(&out);
                let payload: Vec<u8> = packets.iter().flat_map(|p| p.payload.to_vec()).collect();
                assert_eq!(payload, pes, "length {len}");
                assert!(packets[0].start && packets[1..].iter().all(|p| !p.start));
                assert_eq!(pcr_of(packets[0].adaptation), pcr);
                if random_access {
                    assert_eq!(packets[0].adaptation[0] & 0x40, 0x40);
                }
            }
        }
    }

    #[test]
    fn unusable_frames_are_skipped() {
        let config = TrackConfig::Aac {
            config: Bytes::from_static(&[0xf9, 0x46, 0x40]), // USAC: no ADTS for it
            sample_rate: 48000,
            channels: 2,
        };
        let mut ts = LiveTs::new(vec![(1, config)]);
        let mut out = Vec::new();
        let frame = Frame {
            track: 1,
            timestamp: 0,
            arrival: 0,
            keyframe: true,
            units: vec![Bytes::from_static(&[1, 2, 3])],
        };
        ts.push(frame.clone(), &mut out);
        ts.push(Frame { track: 0, ..frame }, &mut out);
        assert!(out.is_empty());
        let (_, configs) = demo_av_frames();
        let mut ts = LiveTs::new(configs);
        let aud_only = Frame {
            track: 0,
            timestamp: 0,
            arrival: 0,
            keyframe: true,
            units: vec![Bytes::from_static(&[9, 0xf0]), Bytes::new()],
        };
        ts.push(aud_only, &mut out);
        assert!(out.is_empty());
    }
}
