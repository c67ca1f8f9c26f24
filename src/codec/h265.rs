//! H.265 over RTP (RFC 7798): keyframe detection, parameter-set discovery and a
//! depacketizer.
//!
//! Assumes `sprop-max-don-diff` is 0 (no DONL fields), which is what encoders and cameras send.

use base64::Engine as _;

use super::h264::{replace_if_different, AccessUnit, MAX_ACCESS_UNIT};
use super::AggregatedUnits;

/// First and last IRAP (random access) NAL unit types: BLA, IDR and CRA pictures.
pub const IRAP_FIRST: u8 = 16;
pub const IRAP_LAST: u8 = 21;
pub const VPS: u8 = 32;
pub const SPS: u8 = 33;
pub const PPS: u8 = 34;
/// RFC 7798 aggregation packet.
pub const AP: u8 = 48;
/// RFC 7798 fragmentation unit.
pub const FU: u8 = 49;
/// Access unit delimiter.
pub const AUD: u8 = 35;
/// Prefix supplemental enhancement information.
pub const PREFIX_SEI: u8 = 39;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const FU_START: u8 = 0x80;
const FU_END: u8 = 0x40;

/// NAL unit type from the two-byte NAL header; 0 for a slice too short to hold one.
pub fn nal_type(nal: &[u8]) -> u8 {
    match nal {
        [b0, _, ..] => (b0 >> 1) & 0x3f,
        _ => 0,
    }
}

fn is_key(t: u8) -> bool {
    matches!(t, IRAP_FIRST..=IRAP_LAST | VPS | SPS | PPS)
}

/// Does this RTP payload start a keyframe? True for an IRAP picture or parameter set sent
/// alone, inside an aggregation packet, or as the first fragment of an FU. Never panics.
pub fn rtp_starts_keyframe(payload: &[u8]) -> bool {
    match nal_type(payload) {
        AP => AggregatedUnits::new(&payload[2..]).any(|nal| is_key(nal_type(nal))),
        FU => matches!(payload, [_, _, h, ..] if h & 0x80 != 0 && is_key(h & 0x3f)),
        t => is_key(t),
    }
}

/// Learn VPS/SPS/PPS from a single-NAL or aggregation payload. Returns whether any changed.
pub fn learn_parameter_sets(
    payload: &[u8],
    vps: &mut Option<Vec<u8>>,
    sps: &mut Option<Vec<u8>>,
    pps: &mut Option<Vec<u8>>,
) -> bool {
    let mut changed = false;
    // Anything shorter than a NAL header plus one byte cannot be a real parameter set.
    let mut learn = |nal: &[u8]| match nal_type(nal) {
        VPS if nal.len() > 2 => changed |= replace_if_different(vps, nal),
        SPS if nal.len() > 2 => changed |= replace_if_different(sps, nal),
        PPS if nal.len() > 2 => changed |= replace_if_different(pps, nal),
        _ => {}
    };
    match nal_type(payload) {
        AP => AggregatedUnits::new(&payload[2..]).for_each(learn),
        _ => learn(payload),
    }
    changed
}

/// fmtp parameters advertising parameter sets: `sprop-vps=..;sprop-sps=..;sprop-pps=..`.
pub fn sprop_fmtp(vps: &[u8], sps: &[u8], pps: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "sprop-vps={};sprop-sps={};sprop-pps={}",
        b64.encode(vps),
        b64.encode(sps),
        b64.encode(pps)
    )
}

/// RFC 7798 depacketizer (single NAL unit, AP, FU; no DONL) producing Annex-B access units
/// with 4-byte start codes.
///
/// Same rules as [`super::h264::Depacketizer`]: a sequence gap drops the access unit it
/// interrupts and the one it may have cut the head off, anything over [`MAX_ACCESS_UNIT`] is
/// dropped, duplicates and late packets are ignored. `keyframe` means an IRAP picture.
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
            tracing::debug!(seq, "h265 depacketizer: sequence gap, dropping access unit");
            self.drop_current();
        }
        if self.timestamp != Some(timestamp) {
            self.finish(out);
            self.timestamp = Some(timestamp);
        }
        if gap {
            // The lost packet may have been the head of this new access unit.
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
        let t = nal_type(payload);
        // Too short for a payload header: nothing we can use, and nothing to lose.
        if payload.len() < 2 {
            return;
        }
        if self.in_fu && t != FU {
            return self.drop_current();
        }
        match t {
            0..=47 => self.push_nal(&[], payload),
            AP => {
                let mut units = AggregatedUnits::new(&payload[2..]);
                for nal in units.by_ref() {
                    self.push_nal(&[], nal);
                }
                if units.malformed {
                    self.drop_current();
                }
            }
            FU => {
                let [h0, h1, header, data @ ..] = payload else {
                    return self.drop_current();
                };
                if header & FU_START != 0 {
                    if self.in_fu {
                        return self.drop_current();
                    }
                    // The NAL header is the payload header with the FU's type put back.
                    let nal_header = [(h0 & 0x81) | ((header & 0x3f) << 1), *h1];
                    self.push_nal(&nal_header, data);
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
            // PACI (50) and reserved types carry nothing we can decode.
            _ => {}
        }
    }

    fn push_nal(&mut self, head: &[u8], rest: &[u8]) {
        let t = if head.is_empty() {
            nal_type(rest)
        } else {
            nal_type(head)
        };
        if (IRAP_FIRST..=IRAP_LAST).contains(&t) {
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
            tracing::debug!("h265 depacketizer: access unit over limit, dropping");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two-byte NAL header for a type (layer 0, temporal id 1).
    fn hdr(t: u8) -> [u8; 2] {
        [t << 1, 1]
    }

    #[test]
    fn single_nal_keyframes() {
        for t in [16, 19, 20, 21, VPS, SPS, PPS] {
            assert!(rtp_starts_keyframe(&[hdr(t)[0], 1, 0xaf]), "type {t}");
        }
        for t in [0, 1, 15, 22, 35, 39] {
            assert!(!rtp_starts_keyframe(&[hdr(t)[0], 1, 0xaf]), "type {t}");
        }
    }

    #[test]
    fn aggregation_and_fragments() {
        let mut ap = hdr(AP).to_vec();
        ap.extend_from_slice(&[0, 3, hdr(VPS)[0], 1, 0xc]);
        ap.extend_from_slice(&[0, 3, hdr(SPS)[0], 1, 0x1]);
        assert!(rtp_starts_keyframe(&ap));
        let mut ap2 = hdr(AP).to_vec();
        ap2.extend_from_slice(&[0, 3, hdr(1)[0], 1, 0xd0]);
        assert!(!rtp_starts_keyframe(&ap2));

        let fu = |fu_header: u8| [hdr(FU)[0], 1, fu_header, 0xaa];
        assert!(rtp_starts_keyframe(&fu(0x80 | 19)));
        assert!(rtp_starts_keyframe(&fu(0x80 | 21)));
        assert!(!rtp_starts_keyframe(&fu(19)));
        assert!(!rtp_starts_keyframe(&fu(0x40 | 19)));
        assert!(!rtp_starts_keyframe(&fu(0x80 | 1)));
    }

    #[test]
    fn malformed_payloads() {
        assert!(!rtp_starts_keyframe(&[]));
        assert!(!rtp_starts_keyframe(&[hdr(19)[0]]));
        assert!(!rtp_starts_keyframe(&hdr(FU)));
        assert!(!rtp_starts_keyframe(&hdr(AP)));
        assert!(!rtp_starts_keyframe(&[
            hdr(AP)[0],
            1,
            0xff,
            0xff,
            hdr(19)[0],
            1
        ]));
        assert!(!rtp_starts_keyframe(&[hdr(AP)[0], 1, 0]));
        assert!(!rtp_starts_keyframe(&[hdr(50)[0], 1, 0x80 | 19]));
        let (mut v, mut s, mut p) = (None, None, None);
        for bad in [&[][..], &[0x60], &hdr(AP), &[hdr(AP)[0], 1, 0, 9, 0x40]] {
            assert!(!learn_parameter_sets(bad, &mut v, &mut s, &mut p));
        }
    }

    #[test]
    fn learns_parameter_sets() {
        let (mut v, mut s, mut p) = (None, None, None);
        let mut ap = hdr(AP).to_vec();
        ap.extend_from_slice(&[0, 3, 0x40, 1, 0x0c]);
        ap.extend_from_slice(&[0, 4, 0x42, 1, 1, 1]);
        ap.extend_from_slice(&[0, 3, 0x44, 1, 0xc1]);
        assert!(learn_parameter_sets(&ap, &mut v, &mut s, &mut p));
        assert_eq!(v.as_deref(), Some(&[0x40, 1, 0x0c][..]));
        assert_eq!(s.as_deref(), Some(&[0x42, 1, 1, 1][..]));
        assert_eq!(p.as_deref(), Some(&[0x44, 1, 0xc1][..]));
        assert!(!learn_parameter_sets(&ap, &mut v, &mut s, &mut p));
        assert!(learn_parameter_sets(
            &[0x44, 1, 0xc2],
            &mut v,
            &mut s,
            &mut p
        ));
        assert!(!learn_parameter_sets(
            &[0x26, 1, 0xaf],
            &mut v,
            &mut s,
            &mut p
        ));
        assert_eq!(
            sprop_fmtp(&v.unwrap(), &s.unwrap(), &p.unwrap()),
            "sprop-vps=QAEM;sprop-sps=QgEBAQ==;sprop-pps=RAHC"
        );
    }
}

#[cfg(test)]
mod depacketizer_tests {
    use super::*;
    use crate::codec::h264::nal_units;
    use bytes::Bytes;

    fn nal(t: u8, len: usize) -> Vec<u8> {
        let mut v = vec![t << 1, 1];
        v.extend((0..len).map(|i| (i * 13 + 7) as u8 | 1));
        v
    }

    /// FU packets for one NAL unit, `chunk` payload bytes each.
    fn fu(nal: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let t = nal_type(nal);
        let chunks: Vec<&[u8]> = nal[2..].chunks(chunk).collect();
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let mut h = t;
                if k == 0 {
                    h |= FU_START;
                }
                if k == last {
                    h |= FU_END;
                }
                let mut p = vec![(nal[0] & 0x81) | (FU << 1), nal[1], h];
                p.extend_from_slice(c);
                p
            })
            .collect()
    }

    fn ap(nals: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![AP << 1, 1];
        for n in nals {
            p.extend_from_slice(&(n.len() as u16).to_be_bytes());
            p.extend_from_slice(n);
        }
        p
    }

    /// Feed (timestamp, payload) in order with consecutive sequence numbers, the marker on the
    /// last packet of each timestamp.
    fn run(d: &mut Depacketizer, seq0: u16, packets: &[(u32, Vec<u8>)]) -> Vec<AccessUnit> {
        let mut out = Vec::new();
        for (k, (ts, p)) in packets.iter().enumerate() {
            let marker = packets.get(k + 1).is_none_or(|(next, _)| next != ts);
            d.push(seq0.wrapping_add(k as u16), *ts, marker, p, &mut out);
        }
        out
    }

    #[test]
    fn ap_fu_and_single() {
        let (vps, sps, pps) = (nal(VPS, 20), nal(SPS, 40), nal(PPS, 6));
        let idr = nal(19, 3000);
        let trail = nal(1, 500);
        let mut packets = vec![(0, ap(&[&vps, &sps, &pps]))];
        packets.extend(fu(&idr, 1000).into_iter().map(|p| (0, p)));
        packets.push((3000, trail.clone()));
        let aus = run(&mut Depacketizer::new(), 65534, &packets);
        assert_eq!(aus.len(), 2);
        assert!(aus[0].keyframe && !aus[1].keyframe);
        assert_eq!((aus[0].timestamp, aus[1].timestamp), (0, 3000));
        assert!(aus[0].data.starts_with(&START_CODE));
        let want: Vec<Bytes> = [vps, sps, pps, idr].into_iter().map(Bytes::from).collect();
        assert_eq!(nal_units(&aus[0].data), want);
        assert_eq!(nal_units(&aus[1].data), vec![Bytes::from(trail)]);
    }

    #[test]
    fn malformed_fu_and_ap_are_dropped() {
        let idr = nal(19, 300);
        let frags = fu(&idr, 100);
        let good = nal(1, 10);
        // Truncated FU: the end fragment is missing but the marker arrives.
        let cases: Vec<Vec<Vec<u8>>> = vec![
            vec![frags[0].clone(), frags[1].clone()],
            // FU without its start.
            vec![frags[1].clone(), frags[2].clone()],
            // A second start inside an FU.
            vec![frags[0].clone(), frags[0].clone(), frags[2].clone()],
            // Another NAL inside an FU.
            vec![frags[0].clone(), good.clone(), frags[2].clone()],
            // AP whose unit length runs past the end, and a zero length.
            vec![vec![AP << 1, 1, 0, 3, 2, 1, 0, 40, 0x26, 1]],
            vec![vec![AP << 1, 1, 0, 0]],
            // FU too short for its header.
            vec![vec![FU << 1, 1]],
        ];
        for (n, case) in cases.iter().enumerate() {
            let mut packets: Vec<(u32, Vec<u8>)> = case.iter().map(|p| (0, p.clone())).collect();
            packets.push((3000, good.clone()));
            let aus = run(&mut Depacketizer::new(), 0, &packets);
            let ts: Vec<u32> = aus.iter().map(|a| a.timestamp).collect();
            assert_eq!(ts, vec![3000], "case {n}");
        }
        // Junk never panics and yields nothing.
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        let junk: [&[u8]; 7] = [
            &[],
            &[0x62],
            &[0x62, 1],
            &[0x60, 1],
            &[0x64, 1, 0xc0],
            &[0xff, 0xff],
            &[0x64, 1, 5],
        ];
        for (seq, p) in (0..).zip(junk) {
            d.push(seq, u32::from(seq), true, p, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn gaps_duplicates_and_limit() {
        let mut packets = Vec::new();
        for (k, t) in [19u8, 1, 1].into_iter().enumerate() {
            packets.extend(
                fu(&nal(t, 3000), 1000)
                    .into_iter()
                    .map(|p| (k as u32 * 3000, p)),
            );
        }
        assert_eq!(packets.len(), 9);
        let ts = |aus: Vec<AccessUnit>| aus.iter().map(|a| a.timestamp).collect::<Vec<_>>();
        // Lose packet 1 (middle of the first AU), then packet 3 (head of the second).
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        for (k, (t, p)) in packets.iter().enumerate() {
            if k != 1 {
                d.push(k as u16, *t, k % 3 == 2, p, &mut out);
            }
        }
        assert_eq!(ts(out), vec![3000, 6000]);
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        for (k, (t, p)) in packets.iter().enumerate() {
            if k != 3 {
                d.push(k as u16, *t, k % 3 == 2, p, &mut out);
            }
        }
        assert_eq!(ts(out), vec![0, 6000]);
        // Duplicates and late packets.
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        for (k, (t, p)) in packets.iter().enumerate() {
            d.push(k as u16, *t, k % 3 == 2, p, &mut out);
            d.push(k as u16, *t, k % 3 == 2, p, &mut out);
            d.push((k as u16).wrapping_sub(1), *t, false, p, &mut out);
        }
        assert_eq!(ts(out), vec![0, 3000, 6000]);

        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        let mut p = vec![FU << 1, 1, FU_START | 1];
        p.resize(60_000, 0xaa);
        d.push(0, 1, false, &p, &mut out);
        p[2] = 1;
        let n = (MAX_ACCESS_UNIT / 60_000 + 3) as u16;
        for seq in 1..n {
            d.push(seq, 1, false, &p, &mut out);
        }
        assert!(d.buf.len() <= MAX_ACCESS_UNIT);
        p[2] = FU_END | 1;
        d.push(n, 1, true, &p, &mut out);
        assert!(out.is_empty());
    }
}
