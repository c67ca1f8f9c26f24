//! H.265 over RTP (RFC 7798): keyframe detection and parameter-set discovery.
//!
//! Assumes `sprop-max-don-diff` is 0 (no DONL fields), which is what encoders and cameras send.

use base64::Engine as _;

use super::h264::replace_if_different;
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
