//! H.265 over RTP (RFC 7798): keyframe detection, parameter-set discovery, a depacketizer
//! and a packetizer.
//!
//! Assumes `sprop-max-don-diff` is 0 (no DONL fields), which is what encoders and cameras send.

use base64::Engine as _;
use bytes::Bytes;

use super::h264::{replace_if_different, AccessUnit, MAX_ACCESS_UNIT};
use super::AggregatedUnits;
use crate::rtp;

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

/// RFC 7798 packetizer (no DONL, as the depacketizer): runs of small NAL units go into one
/// aggregation packet (AP), units that fit go alone, larger ones are split into
/// fragmentation units (FU). The marker bit is set on the access unit's last packet.
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
            mtu: super::h264::DEFAULT_MTU,
        }
    }

    /// Packetize one access unit (NAL units without start codes) into RTP packets appended
    /// to `out`. Units shorter than a NAL header carry nothing and are skipped.
    pub fn packetize(&mut self, nals: &[Bytes], timestamp: u32, out: &mut Vec<Bytes>) {
        // The floor leaves room for an FU carrying one byte; 65535 keeps within UDP.
        let max_payload = self.mtu.clamp(rtp::HEADER_LEN + 4, 65_535) - rtp::HEADER_LEN;
        let usable = |n: &Bytes| n.len() > 2;
        let start = out.len();
        let mut i = 0;
        while i < nals.len() {
            if !usable(&nals[i]) {
                i += 1;
                continue;
            }
            // How many of the next units fit one AP (2-byte header, 2-byte size each).
            let (mut end, mut count, mut size) = (i, 0, 2);
            while end < nals.len() {
                let n = &nals[end];
                if usable(n) {
                    if size + 2 + n.len() > max_payload {
                        break;
                    }
                    size += 2 + n.len();
                    count += 1;
                }
                end += 1;
            }
            if count >= 2 {
                let group = nals[i..end].iter().filter(|n| usable(n));
                // F is the OR, LayerId and TID the lowest over the units (RFC 7798 4.4.2).
                let f = group.clone().fold(0, |acc, n| acc | (n[0] & 0x80));
                let layer = group.clone().map(layer_id).min().unwrap_or(0);
                let tid = group.clone().map(|n| n[1] & 0x07).min().unwrap_or(1);
                let mut p = self.header(timestamp, size);
                p.push(f | (AP << 1) | (layer >> 5) as u8);
                p.push(((layer & 0x1f) << 3) as u8 | tid);
                for n in group {
                    p.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    p.extend_from_slice(n);
                }
                out.push(p.into());
                i = end;
                continue;
            }
            let nal = &nals[i];
            if nal.len() <= max_payload {
                let mut p = self.header(timestamp, nal.len());
                p.extend_from_slice(nal);
                out.push(p.into());
            } else {
                // Payload header: the NAL header with type FU; FU header: S, E, the type.
                let h0 = (nal[0] & 0x81) | (FU << 1);
                let t = nal_type(nal);
                let chunks = nal[2..].chunks(max_payload - 3);
                let last = chunks.len() - 1;
                for (k, chunk) in chunks.enumerate() {
                    let mut fu = t;
                    if k == 0 {
                        fu |= FU_START;
                    }
                    if k == last {
                        fu |= FU_END;
                    }
                    let mut p = self.header(timestamp, chunk.len() + 3);
                    p.extend_from_slice(&[h0, nal[1], fu]);
                    p.extend_from_slice(chunk);
                    out.push(p.into());
                }
            }
            i += 1;
        }
        if out.len() > start {
            if let Some(last) = out.pop() {
                let mut last = Vec::from(last);
                last[1] |= 0x80;
                out.push(last.into());
            }
        }
    }

    /// A new packet with its RTP header written (marker clear) and room for the payload.
    fn header(&mut self, timestamp: u32, payload_len: usize) -> Vec<u8> {
        let mut p = Vec::with_capacity(rtp::HEADER_LEN + payload_len);
        rtp::write_header(
            &mut p,
            self.payload_type,
            false,
            self.seq,
            timestamp,
            self.ssrc,
        );
        self.seq = self.seq.wrapping_add(1);
        p
    }
}

/// nuh_layer_id from a NAL header (6 bits across the two bytes).
fn layer_id(nal: &Bytes) -> u16 {
    (u16::from(nal[0] & 1) << 5) | u16::from(nal[1] >> 3)
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

    /// Packetizer output parsed back by our depacketizer gives the same NAL units: parameter
    /// sets aggregated, the IRAP slice fragmented, a mid-size slice alone; every packet
    /// within the MTU and the marker on the last packet only.
    #[test]
    fn packetizer_round_trip() {
        let (vps, sps, pps) = (nal(VPS, 22), nal(SPS, 60), nal(PPS, 5));
        let sei = nal(PREFIX_SEI, 30);
        let idr = nal(19, 5000);
        let trail = nal(1, 900);
        let au1: Vec<Bytes> = [&vps, &sps, &pps, &sei, &idr]
            .iter()
            .map(|n| Bytes::from(n.to_vec()))
            .collect();
        // An empty and a too-short unit are skipped, not sent.
        let au2: Vec<Bytes> = vec![Bytes::new(), Bytes::from_static(&[2]), trail.clone().into()];
        let mut pk = Packetizer::new(96, 0x1234, 65_533);
        pk.mtu = 1200;
        let mut packets = Vec::new();
        pk.packetize(&au1, 90_000, &mut packets);
        let first = packets.len();
        pk.packetize(&au2, 93_000, &mut packets);
        assert_eq!(packets.len(), first + 1);
        // AP with the four small units, then ceil(5000 / (1200 - 12 - 3)) FUs.
        assert_eq!(first, 1 + 5000_usize.div_ceil(1185));
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        for (k, p) in packets.iter().enumerate() {
            assert!(p.len() <= 1200);
            let h = crate::rtp::view(p).unwrap();
            let payload = h.payload(p);
            assert_eq!(h.sequence, 65_533u16.wrapping_add(k as u16));
            assert_eq!((h.payload_type, h.ssrc), (96, 0x1234));
            assert_eq!(h.marker, k + 1 == first || k + 1 == packets.len());
            if k == 0 {
                assert_eq!(nal_type(payload), AP);
                // Lowest TID of the units (all 1), layer 0.
                assert_eq!(payload[1], 1);
            }
            if k == 1 {
                assert_eq!(nal_type(payload), FU);
            }
            d.push(h.sequence, h.timestamp, h.marker, payload, &mut out);
        }
        assert_eq!(out.len(), 2);
        assert!(out[0].keyframe && !out[1].keyframe);
        assert_eq!((out[0].timestamp, out[1].timestamp), (90_000, 93_000));
        assert_eq!(nal_units(&out[0].data), au1);
        assert_eq!(nal_units(&out[1].data), vec![Bytes::from(trail)]);
        // Nothing usable: no packets, no sequence numbers spent.
        let seq = pk.seq;
        pk.packetize(&[Bytes::new()], 0, &mut packets);
        assert_eq!((packets.len(), pk.seq), (first + 1, seq));
    }
}
