//! H.264: Annex-B splitting, RTP keyframe detection and parameter-set discovery, and an
//! RFC 6184 packetizer/depacketizer (packetization-mode=1).

use base64::Engine as _;
use bytes::Bytes;

use super::AggregatedUnits;
use crate::rtp;

/// Coded slice of a non-IDR picture.
pub const NON_IDR: u8 = 1;
/// Coded slice of an IDR picture.
pub const IDR: u8 = 5;
/// Supplemental enhancement information.
pub const SEI: u8 = 6;
pub const SPS: u8 = 7;
pub const PPS: u8 = 8;
/// Access unit delimiter.
pub const AUD: u8 = 9;
/// RFC 6184 single-time aggregation packet.
pub const STAP_A: u8 = 24;
/// RFC 6184 fragmentation unit.
pub const FU_A: u8 = 28;
/// Like FU-A but with a decoding order number; only its first two bytes matter to us.
const FU_B: u8 = 29;

/// Default maximum RTP packet size (header included), safe under common tunnel MTUs.
pub const DEFAULT_MTU: usize = 1200;
/// Largest access unit the depacketizer assembles before giving up on it.
pub const MAX_ACCESS_UNIT: usize = 8 << 20;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const FU_START: u8 = 0x80;
const FU_END: u8 = 0x40;

/// Split an Annex-B byte stream into NAL units at 3- and 4-byte start codes.
///
/// The units are zero-copy slices of `annexb`. Trailing zero bytes (the leading zero of a
/// following 4-byte start code, or `trailing_zero_8bits`) are trimmed, empty units are
/// skipped, and bytes before the first start code are ignored.
pub fn nal_units(annexb: &Bytes) -> Vec<Bytes> {
    let data = annexb.as_ref();
    let mut out = Vec::new();
    let mut push = |start: usize, end: usize| {
        let trimmed = data[start..end]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(start, |last| start + last + 1);
        if trimmed > start {
            out.push(annexb.slice(start..trimmed));
        }
    };
    let mut nal_start = None;
    let mut i = 2;
    while i < data.len() {
        // A start code ends at a 0x01 preceded by two zeros; any nonzero byte at `i` rules out
        // start codes ending at i (unless it is that 0x01), i+1 and i+2.
        if data[i] > 1 {
            i += 3;
        } else if data[i] == 1 && data[i - 1] == 0 && data[i - 2] == 0 {
            if let Some(start) = nal_start {
                push(start, i - 2);
            }
            nal_start = Some(i + 1);
            i += 3;
        } else {
            i += 1;
        }
    }
    if let Some(start) = nal_start {
        push(start, data.len());
    }
    out
}

/// NAL unit type (low 5 bits of the header byte); 0 for an empty slice.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Does this RTP payload start a keyframe? True for an IDR slice or SPS sent alone, inside a
/// STAP-A, or as the first fragment of an FU-A. Never panics on malformed payloads.
pub fn rtp_starts_keyframe(payload: &[u8]) -> bool {
    let is_key = |t: u8| t == IDR || t == SPS;
    match nal_type(payload) {
        t @ 1..=23 => is_key(t),
        STAP_A => AggregatedUnits::new(&payload[1..]).any(|nal| is_key(nal_type(nal))),
        FU_A | FU_B => matches!(payload, [_, h, ..] if h & FU_START != 0 && is_key(h & 0x1f)),
        _ => false,
    }
}

/// Learn SPS and PPS from a single-NAL or STAP-A payload, so an SDP can advertise parameter
/// sets a publisher only sends in-band. Returns whether either changed.
///
/// Only the most recent PPS is kept; streams with several PPS ids need their SDP fmtp.
pub fn learn_parameter_sets(
    payload: &[u8],
    sps: &mut Option<Vec<u8>>,
    pps: &mut Option<Vec<u8>>,
) -> bool {
    let mut changed = false;
    let mut learn = |nal: &[u8]| match nal_type(nal) {
        // Shorter SPS cannot even hold profile/level, so it is junk.
        SPS if nal.len() >= 4 => changed |= replace_if_different(sps, nal),
        PPS if nal.len() >= 2 => changed |= replace_if_different(pps, nal),
        _ => {}
    };
    match nal_type(payload) {
        1..=23 => learn(payload),
        STAP_A => AggregatedUnits::new(&payload[1..]).for_each(learn),
        _ => {}
    }
    changed
}

pub(crate) fn replace_if_different(slot: &mut Option<Vec<u8>>, value: &[u8]) -> bool {
    if slot.as_deref() == Some(value) {
        return false;
    }
    *slot = Some(value.to_vec());
    true
}

/// `sprop-parameter-sets` fmtp value: base64 of SPS and PPS, comma-separated.
pub fn sprop_parameter_sets(sps: &[u8], pps: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("{},{}", b64.encode(sps), b64.encode(pps))
}

/// `profile-level-id` fmtp value (profile_idc, constraint flags, level_idc as 6 hex digits)
/// from an SPS NAL unit including its header byte.
pub fn profile_level_id(sps: &[u8]) -> Option<String> {
    match sps {
        [h, p, c, l, ..] if h & 0x1f == SPS => Some(format!("{p:02X}{c:02X}{l:02X}")),
        _ => None,
    }
}

/// RFC 6184 packetizer (non-interleaved mode): small NALs are aggregated into STAP-A, NALs
/// that fit go alone, larger ones are split into FU-A fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packetizer {
    pub payload_type: u8,
    pub ssrc: u32,
    /// Sequence number of the next packet.
    pub seq: u16,
    /// Maximum RTP packet size including the 12-byte header.
    pub mtu: usize,
}

impl Packetizer {
    pub fn new(payload_type: u8, ssrc: u32, seq: u16) -> Self {
        Packetizer {
            payload_type,
            ssrc,
            seq,
            mtu: DEFAULT_MTU,
        }
    }

    /// Packetize one access unit into complete RTP packets appended to `out`; the marker bit
    /// is set on the last one. Empty NALs are skipped.
    pub fn packetize(&mut self, nals: &[Bytes], timestamp: u32, out: &mut Vec<Bytes>) {
        // 65535 keeps packets within UDP and RTSP interleaved framing; the floor leaves room
        // for an FU-A carrying at least one byte.
        let max_payload = self.mtu.clamp(rtp::HEADER_LEN + 3, 65_535) - rtp::HEADER_LEN;
        // The marker can only be set once we know which packet is last, so one packet is held
        // back until the next one starts.
        let mut pending: Option<Vec<u8>> = None;
        let mut i = 0;
        while i < nals.len() {
            let nal = &nals[i];
            if nal.is_empty() {
                i += 1;
                continue;
            }
            let (group_end, count, stap_len) = stap_group(&nals[i..], max_payload);
            if count >= 2 {
                let packet = self.start_packet(&mut pending, out, timestamp, stap_len);
                // F is the OR and NRI the maximum over the aggregated units (RFC 6184 5.7).
                let group = nals[i..i + group_end].iter().filter(|n| !n.is_empty());
                let f = group.clone().fold(0, |acc, n| acc | (n[0] & 0x80));
                let nri = group.clone().map(|n| n[0] & 0x60).max().unwrap_or(0);
                packet.push(f | nri | STAP_A);
                for n in group {
                    packet.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    packet.extend_from_slice(n);
                }
                i += group_end;
                continue;
            }
            if nal.len() <= max_payload {
                self.start_packet(&mut pending, out, timestamp, nal.len())
                    .extend_from_slice(nal);
            } else {
                let indicator = (nal[0] & 0xe0) | FU_A;
                let chunks = nal[1..].chunks(max_payload - 2);
                let last = chunks.len() - 1;
                for (k, chunk) in chunks.enumerate() {
                    let mut header = nal[0] & 0x1f;
                    if k == 0 {
                        header |= FU_START;
                    }
                    if k == last {
                        header |= FU_END;
                    }
                    let packet = self.start_packet(&mut pending, out, timestamp, chunk.len() + 2);
                    packet.extend_from_slice(&[indicator, header]);
                    packet.extend_from_slice(chunk);
                }
            }
            i += 1;
        }
        if let Some(mut last) = pending {
            last[1] |= 0x80;
            out.push(last.into());
        }
    }

    /// Flush the held-back packet and start a new one with its RTP header written.
    fn start_packet<'p>(
        &mut self,
        pending: &'p mut Option<Vec<u8>>,
        out: &mut Vec<Bytes>,
        timestamp: u32,
        payload_len: usize,
    ) -> &'p mut Vec<u8> {
        if let Some(previous) = pending.take() {
            out.push(previous.into());
        }
        let mut packet = Vec::with_capacity(rtp::HEADER_LEN + payload_len);
        rtp::write_header(
            &mut packet,
            self.payload_type,
            false,
            self.seq,
            timestamp,
            self.ssrc,
        );
        self.seq = self.seq.wrapping_add(1);
        pending.insert(packet)
    }
}

/// How many leading entries of `nals` fit in one STAP-A: returns (entries consumed, non-empty
/// NALs among them, STAP-A payload size).
fn stap_group(nals: &[Bytes], max_payload: usize) -> (usize, usize, usize) {
    let mut size = 1;
    let mut count = 0;
    let mut consumed = 0;
    for nal in nals {
        if !nal.is_empty() {
            if size + 2 + nal.len() > max_payload {
                break;
            }
            size += 2 + nal.len();
            count += 1;
        }
        consumed += 1;
    }
    (consumed, count, size)
}

/// A reassembled access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub timestamp: u32,
    /// Annex-B with 4-byte start codes.
    pub data: Bytes,
    /// Contains an IDR slice.
    pub keyframe: bool,
}

/// Minimal RFC 6184 depacketizer (single NAL, STAP-A, FU-A) producing Annex-B access units.
///
/// Deliberately unforgiving: a sequence gap drops both the access unit it interrupts and the
/// one it may have cut the head off, and anything over [`MAX_ACCESS_UNIT`] is dropped.
/// Duplicates and late (reordered) packets are ignored.
#[derive(Debug, Default, Clone)]
pub struct Depacketizer {
    buf: Vec<u8>,
    timestamp: Option<u32>,
    last_seq: Option<u16>,
    in_fu: bool,
    keyframe: bool,
    discard: bool,
}

impl Depacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one RTP packet's fields and payload; completed access units are appended to `out`
    /// (on the marker bit, or when the timestamp moves on without one).
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        out: &mut Vec<AccessUnit>,
    ) {
        let mut gap = false;
        if let Some(last) = self.last_seq {
            let delta = seq.wrapping_sub(last);
            if delta == 0 || delta >= 0x8000 {
                return;
            }
            gap = delta != 1;
        }
        self.last_seq = Some(seq);
        if gap {
            tracing::debug!(seq, "h264 depacketizer: sequence gap, dropping access unit");
            self.drop_current();
        }
        if self.timestamp != Some(timestamp) {
            self.finish(out);
            self.timestamp = Some(timestamp);
        }
        if gap {
            self.drop_current();
        }
        if !self.discard {
            self.append(payload);
        }
        if marker {
            self.finish(out);
            self.timestamp = None;
        }
    }

    fn append(&mut self, payload: &[u8]) {
        let Some(&first) = payload.first() else {
            return;
        };
        let t = first & 0x1f;
        if self.in_fu && t != FU_A {
            return self.drop_current();
        }
        match t {
            1..=23 => self.push_nal(&[], payload),
            STAP_A => {
                let mut units = AggregatedUnits::new(&payload[1..]);
                for nal in units.by_ref() {
                    self.push_nal(&[], nal);
                }
                if units.malformed {
                    self.drop_current();
                }
            }
            FU_A => {
                let [indicator, header, data @ ..] = payload else {
                    return self.drop_current();
                };
                if header & FU_START != 0 {
                    if self.in_fu {
                        return self.drop_current();
                    }
                    self.push_nal(&[(indicator & 0xe0) | (header & 0x1f)], data);
                    self.in_fu = true;
                } else if !self.in_fu {
                    return self.drop_current();
                } else {
                    self.extend(data);
                }
                if header & FU_END != 0 {
                    self.in_fu = false;
                }
            }
            // STAP-B, MTAP and FU-B belong to interleaved mode, which we never negotiate.
            _ => {}
        }
    }

    fn push_nal(&mut self, head: &[u8], rest: &[u8]) {
        if head.first().or(rest.first()).map(|b| b & 0x1f) == Some(IDR) {
            self.keyframe = true;
        }
        self.extend(&START_CODE);
        self.extend(head);
        self.extend(rest);
    }

    fn extend(&mut self, data: &[u8]) {
        if self.discard {
            return;
        }
        if self.buf.len() + data.len() > MAX_ACCESS_UNIT {
            tracing::debug!("h264 depacketizer: access unit over limit, dropping");
            return self.drop_current();
        }
        self.buf.extend_from_slice(data);
    }

    fn drop_current(&mut self) {
        self.buf.clear();
        self.in_fu = false;
        self.keyframe = false;
        self.discard = true;
    }

    fn finish(&mut self, out: &mut Vec<AccessUnit>) {
        if let Some(timestamp) = self.timestamp {
            // An FU still open at the end means its tail never arrived.
            if !self.discard && !self.in_fu && !self.buf.is_empty() {
                out.push(AccessUnit {
                    timestamp,
                    data: std::mem::take(&mut self.buf).into(),
                    keyframe: self.keyframe,
                });
            }
        }
        self.buf.clear();
        self.in_fu = false;
        self.keyframe = false;
        self.discard = false;
    }
}

/// An Annex-B stream split into access units (NAL lists, AUDs dropped), with the first SPS
/// and PPS seen. A new unit starts at an SEI/SPS/PPS/AUD or at a slice whose
/// first_mb_in_slice is 0 (first bit of the slice header set) after a previous slice.
/// Meant for stored clips without B-frames, where decode order is presentation order.
pub fn access_units(data: &Bytes) -> (Vec<Vec<Bytes>>, Option<Bytes>, Option<Bytes>) {
    let mut units: Vec<Vec<Bytes>> = Vec::new();
    let (mut sps, mut pps) = (None, None);
    let mut cur: Vec<Bytes> = Vec::new();
    for nal in nal_units(data) {
        let t = nal_type(&nal);
        match t {
            SPS => sps = sps.or(Some(nal.clone())),
            PPS => pps = pps.or(Some(nal.clone())),
            _ => {}
        }
        if t == AUD {
            continue;
        }
        let is_slice = t == 1 || t == 5;
        let first_mb_zero = nal.get(1).is_some_and(|b| b & 0x80 != 0);
        let cur_has_slice = cur.iter().any(|n| matches!(nal_type(n), 1 | 5));
        if cur_has_slice && ((is_slice && first_mb_zero) || matches!(t, 6..=9)) {
            units.push(std::mem::take(&mut cur));
        }
        cur.push(nal);
    }
    if !cur.is_empty() {
        units.push(cur);
    }
    (units, sps, pps)
}

#[cfg(test)]
mod tests {
    use super::*;

    static DEMO: &[u8] = include_bytes!("../../shards/assets/demo.h264");

    fn b(data: &[u8]) -> Bytes {
        Bytes::copy_from_slice(data)
    }

    /// Group NALs into access units: a new one starts at a non-VCL NAL (SEI/SPS/PPS/AUD) or a
    /// slice with first_mb_in_slice == 0 once the current unit already has a slice.
    fn access_units(nals: Vec<Bytes>) -> Vec<Vec<Bytes>> {
        let mut aus: Vec<Vec<Bytes>> = Vec::new();
        let mut has_slice = false;
        for nal in nals {
            let t = nal_type(&nal);
            let is_slice = (1..=5).contains(&t);
            let first_slice = is_slice && nal.get(1).is_some_and(|b| b & 0x80 != 0);
            let starts_au = (6..=9).contains(&t) || first_slice;
            if aus.is_empty() || (has_slice && starts_au) {
                aus.push(Vec::new());
                has_slice = false;
            }
            has_slice |= is_slice;
            aus.last_mut().unwrap().push(nal);
        }
        aus
    }

    fn depacketize_all(packets: &[Bytes]) -> Vec<AccessUnit> {
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        for p in packets {
            let v = rtp::view(p).unwrap();
            d.push(v.sequence, v.timestamp, v.marker, v.payload(p), &mut out);
        }
        out
    }

    #[test]
    fn nal_units_with_both_start_code_lengths() {
        let stream = b(&[
            0, 0, 0, 1, 0x67, 1, 2, // SPS, 4-byte start code
            0, 0, 1, 0x68, 3, // PPS, 3-byte
            0, 0, 0, 1, 0x65, 4, 5, 0, 0, // IDR with trailing zeros
            0, 0, 1, // empty NAL
            0, 0, 1, 0x41, 6,
        ]);
        let nals = nal_units(&stream);
        let got: Vec<&[u8]> = nals.iter().map(|n| n.as_ref()).collect();
        assert_eq!(
            got,
            vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5], &[0x41, 6]]
        );
        assert_eq!(nal_type(&nals[2]), IDR);
        assert_eq!(nal_type(&[]), 0);
    }

    #[test]
    fn nal_units_edge_cases() {
        assert!(nal_units(&b(&[])).is_empty());
        assert!(nal_units(&b(&[0, 0, 1])).is_empty());
        assert!(nal_units(&b(&[0, 0, 0, 0])).is_empty());
        assert!(nal_units(&b(&[0x65, 1, 2])).is_empty()); // no start code at all
        let got = nal_units(&b(&[9, 9, 0, 0, 1, 0x09, 0xf0, 0, 0, 1]));
        assert_eq!(got, vec![b(&[0x09, 0xf0])]);
        // Start code right after a 0x01 payload byte, and back-to-back start codes.
        let got = nal_units(&b(&[0, 0, 1, 0x41, 1, 0, 0, 1, 0, 0, 1, 0x41, 2]));
        assert_eq!(got, vec![b(&[0x41, 1]), b(&[0x41, 2])]);
    }

    #[test]
    fn keyframe_detection() {
        assert!(rtp_starts_keyframe(&[0x65, 0x88, 0x84]));
        assert!(rtp_starts_keyframe(&[0x67, 0x42]));
        assert!(!rtp_starts_keyframe(&[0x68, 0xce]));
        assert!(!rtp_starts_keyframe(&[0x41, 0x9a]));
        // STAP-A with SPS+PPS, and with only a non-IDR slice.
        assert!(rtp_starts_keyframe(&[
            0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce
        ]));
        assert!(!rtp_starts_keyframe(&[0x78, 0, 2, 0x41, 0x9a]));
        // FU-A: start of IDR, middle of IDR, start of non-IDR.
        assert!(rtp_starts_keyframe(&[0x7c, 0x85, 0xb8]));
        assert!(!rtp_starts_keyframe(&[0x7c, 0x05, 0xb8]));
        assert!(!rtp_starts_keyframe(&[0x7c, 0x45, 0xb8]));
        assert!(!rtp_starts_keyframe(&[0x5c, 0x81, 0x9a]));
    }

    #[test]
    fn keyframe_detection_malformed() {
        assert!(!rtp_starts_keyframe(&[]));
        assert!(!rtp_starts_keyframe(&[0x7c]));
        assert!(!rtp_starts_keyframe(&[0x78]));
        assert!(!rtp_starts_keyframe(&[0x78, 0]));
        // STAP-A whose unit length overflows the payload.
        assert!(!rtp_starts_keyframe(&[0x78, 0xff, 0xff, 0x65, 1]));
        assert!(!rtp_starts_keyframe(&[0x78, 0, 9, 0x67]));
        assert!(!rtp_starts_keyframe(&[0x00]));
        assert!(!rtp_starts_keyframe(&[0x1e, 0x85]));
        // Keyframe units before a malformed one still count.
        assert!(rtp_starts_keyframe(&[0x78, 0, 1, 0x65, 0, 9]));
    }

    #[test]
    fn learns_parameter_sets() {
        let (mut sps, mut pps) = (None, None);
        assert!(!learn_parameter_sets(&[0x65, 1, 2, 3], &mut sps, &mut pps));
        let stap = [0x78, 0, 4, 0x67, 0x4d, 0, 0x1e, 0, 2, 0x68, 0xce];
        assert!(learn_parameter_sets(&stap, &mut sps, &mut pps));
        assert_eq!(sps.as_deref(), Some(&[0x67, 0x4d, 0, 0x1e][..]));
        assert_eq!(pps.as_deref(), Some(&[0x68, 0xce][..]));
        assert!(!learn_parameter_sets(&stap, &mut sps, &mut pps));
        assert!(learn_parameter_sets(&[0x68, 0xcf], &mut sps, &mut pps));
        assert_eq!(pps.as_deref(), Some(&[0x68, 0xcf][..]));
        // Junk is ignored.
        assert!(!learn_parameter_sets(&[0x67, 0x4d], &mut sps, &mut pps));
        assert!(!learn_parameter_sets(
            &[0x78, 0xff, 0xff, 0x67],
            &mut sps,
            &mut pps
        ));
        assert!(!learn_parameter_sets(&[], &mut sps, &mut pps));
    }

    #[test]
    fn sprop_and_profile() {
        let sps = [
            0x67, 0x4d, 0x00, 0x1e, 0x95, 0xa8, 0x28, 0x0f, 0x68, 0x00, 0xf1, 0x94,
        ];
        let pps = [0x68, 0xee, 0x3c, 0x80];
        assert_eq!(
            sprop_parameter_sets(&sps, &pps),
            "Z00AHpWoKA9oAPGU,aO48gA=="
        );
        assert_eq!(profile_level_id(&sps).as_deref(), Some("4D001E"));
        assert_eq!(profile_level_id(&[0x67, 0x42]), None);
        assert_eq!(profile_level_id(&pps), None);
    }

    #[test]
    fn packetize_roundtrip_large_nal() {
        let sps = b(&[0x67, 0x4d, 0x00, 0x1e, 0x95, 0xa8, 0x28]);
        let pps = b(&[0x68, 0xee, 0x3c, 0x80]);
        let mut idr = vec![0x65];
        idr.extend((0..4999u32).map(|i| (i * 7 + 3) as u8));
        let nals = vec![sps.clone(), pps.clone(), Bytes::from(idr)];

        let mut p = Packetizer::new(96, 0xabcd, 65530);
        let mut packets = Vec::new();
        p.packetize(&nals, 3600, &mut packets);
        // STAP-A(SPS, PPS) + 5 FU-A fragments of at most 1186 bytes.
        assert_eq!(packets.len(), 6);
        assert_eq!(p.seq, 65530u16.wrapping_add(6));
        for (k, pkt) in packets.iter().enumerate() {
            assert!(pkt.len() <= DEFAULT_MTU);
            let v = rtp::view(pkt).unwrap();
            assert_eq!(
                v.marker,
                k == packets.len() - 1,
                "marker only on the last packet"
            );
            assert_eq!((v.payload_type, v.ssrc, v.timestamp), (96, 0xabcd, 3600));
            assert_eq!(v.sequence, 65530u16.wrapping_add(k as u16));
        }
        let first = rtp::view(&packets[0]).unwrap();
        assert_eq!(nal_type(first.payload(&packets[0])), STAP_A);
        assert!(rtp_starts_keyframe(first.payload(&packets[0])));
        let second = rtp::view(&packets[1]).unwrap();
        assert!(rtp_starts_keyframe(second.payload(&packets[1])));
        let third = rtp::view(&packets[2]).unwrap();
        assert!(!rtp_starts_keyframe(third.payload(&packets[2])));

        let aus = depacketize_all(&packets);
        assert_eq!(aus.len(), 1);
        assert_eq!(aus[0].timestamp, 3600);
        assert!(aus[0].keyframe);
        assert_eq!(nal_units(&aus[0].data), nals);
        assert!(aus[0].data.starts_with(&START_CODE));
    }

    #[test]
    fn packetize_single_nal_and_tiny_mtu() {
        let nal = b(&[0x41, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut p = Packetizer::new(97, 1, 0);
        let mut out = Vec::new();
        p.packetize(&[Bytes::new(), nal.clone(), Bytes::new()], 10, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][rtp::HEADER_LEN..], &nal[..]);
        assert!(rtp::view(&out[0]).unwrap().marker);

        // An absurd MTU still makes progress with minimal FU-A fragments.
        p.mtu = 0;
        out.clear();
        p.packetize(std::slice::from_ref(&nal), 20, &mut out);
        assert_eq!(out.len(), 9);
        assert_eq!(nal_units(&depacketize_all(&out)[0].data), vec![nal]);

        out.clear();
        p.packetize(&[], 30, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn depacketizer_drops_on_gap() {
        let mut p = Packetizer::new(96, 1, 100);
        let mut packets = Vec::new();
        let big = |t: u8| {
            let mut v = vec![t];
            v.resize(3000, 0xaa);
            Bytes::from(v)
        };
        p.packetize(&[big(0x65)], 0, &mut packets);
        let first_len = packets.len();
        p.packetize(&[big(0x41)], 3600, &mut packets);
        p.packetize(&[big(0x41)], 7200, &mut packets);
        assert_eq!(first_len, 3);

        // Lose the middle of AU 1: only AU 2 and 3 survive.
        let mut lossy = packets.clone();
        lossy.remove(1);
        let ts: Vec<u32> = depacketize_all(&lossy)
            .iter()
            .map(|a| a.timestamp)
            .collect();
        assert_eq!(ts, vec![3600, 7200]);

        // Lose the head of AU 2: AU 1 and 3 survive.
        let mut lossy = packets.clone();
        lossy.remove(first_len);
        let ts: Vec<u32> = depacketize_all(&lossy)
            .iter()
            .map(|a| a.timestamp)
            .collect();
        assert_eq!(ts, vec![0, 7200]);

        // Duplicates and late packets are ignored.
        let mut dup = packets.clone();
        dup.insert(2, packets[1].clone());
        dup.insert(4, packets[0].clone());
        assert_eq!(depacketize_all(&dup).len(), 3);
    }

    #[test]
    fn depacketizer_without_marker_and_malformed() {
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        d.push(1, 100, false, &[0x65, 1], &mut out);
        d.push(2, 200, false, &[0x41, 2], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], &[0, 0, 0, 1, 0x65, 1]);
        // FU-A middle without a start, then malformed STAP-A, in the AU at ts 200.
        d.push(3, 200, false, &[0x7c, 0x05, 9], &mut out);
        d.push(4, 200, true, &[0x78, 0, 5, 1], &mut out);
        assert_eq!(out.len(), 1);
        // FU-A that never ends is dropped at the marker.
        d.push(5, 300, false, &[0x7c, 0x85, 9], &mut out);
        d.push(6, 300, true, &[0x7c, 0x05, 9], &mut out);
        assert_eq!(out.len(), 1);
        // Garbage never panics.
        for (seq, payload) in (7..).zip([&[][..], &[0x7c], &[0x78], &[0x1f, 1], &[0x00]]) {
            d.push(seq, 400 + u32::from(seq), true, payload, &mut out);
        }
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn depacketizer_bounds_access_unit_size() {
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        let chunk = vec![0xaa; 60_000];
        let mut seq = 0u16;
        let mut fu = vec![0x7c, 0x85];
        fu.extend_from_slice(&chunk);
        d.push(seq, 1, false, &fu, &mut out);
        fu[1] = 0x05;
        for _ in 0..(MAX_ACCESS_UNIT / chunk.len() + 2) {
            seq += 1;
            d.push(seq, 1, false, &fu, &mut out);
        }
        assert!(d.buf.len() <= MAX_ACCESS_UNIT);
        fu[1] = 0x45;
        d.push(seq + 1, 1, true, &fu, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn demo_clip_roundtrip() {
        let stream = Bytes::from_static(DEMO);
        let aus = access_units(nal_units(&stream));
        assert_eq!(aus.len(), 200);

        let mut p = Packetizer::new(96, 0x1234, 0);
        let mut packets = Vec::new();
        let mut keyframes = 0;
        let (mut sps, mut pps) = (None, None);
        for (n, au) in aus.iter().enumerate() {
            let start = packets.len();
            p.packetize(au, n as u32 * 3600, &mut packets);
            let payloads = packets[start..].iter().map(|pkt| {
                let v = rtp::view(pkt).unwrap();
                &pkt[v.payload_offset..v.payload_offset + v.payload_len]
            });
            let mut key = false;
            for payload in payloads {
                key |= rtp_starts_keyframe(payload);
                learn_parameter_sets(payload, &mut sps, &mut pps);
            }
            keyframes += usize::from(key);
            assert_eq!(key, n % 25 == 0, "access unit {n}");
        }
        assert_eq!(keyframes, 8);
        assert!(packets.iter().all(|pkt| pkt.len() <= DEFAULT_MTU));

        let out = depacketize_all(&packets);
        assert_eq!(out.len(), 200);
        for (n, (au, got)) in aus.iter().zip(&out).enumerate() {
            assert_eq!(got.timestamp, n as u32 * 3600);
            assert_eq!(&nal_units(&got.data), au, "access unit {n}");
            assert_eq!(got.keyframe, n % 25 == 0);
        }

        let sps = sps.unwrap();
        assert_eq!(sps, aus[0][0]);
        assert_eq!(profile_level_id(&sps).as_deref(), Some("4D401E"));
        assert_eq!(pps.unwrap(), aus[0][1]);
    }
}
