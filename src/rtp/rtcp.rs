//! Just enough RTCP (RFC 3550 §6) for an RTSP server: writing sender reports so readers can
//! map RTP time to wall-clock time, and reading them from publishers.

/// RTCP packet type of a sender report.
pub const PT_SR: u8 = 200;
/// RTCP packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// RTCP packet type of source description items.
pub const PT_SDES: u8 = 202;
/// RTCP packet type of a goodbye.
pub const PT_BYE: u8 = 203;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;
/// SDES item type of a canonical name.
const SDES_CNAME: u8 = 1;
/// Header (4) + SSRC (4) + NTP (8) + RTP time (4) + packet count (4) + octet count (4).
const SR_LEN: usize = 28;

/// The sender-info block of a sender report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    /// NTP timestamp, 32.32 fixed point seconds since 1900.
    pub ntp: u64,
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Append a compound RTCP packet: a sender report without report blocks followed by an SDES
/// with the CNAME (which RFC 3550 requires in every compound packet).
///
/// A CNAME longer than 255 bytes is cut at a character boundary, as SDES items cannot hold more.
pub fn write_sender_report(out: &mut Vec<u8>, info: &SenderInfo, cname: &str) {
    out.push(0x80); // V=2, P=0, RC=0
    out.push(PT_SR);
    out.extend_from_slice(&((SR_LEN / 4 - 1) as u16).to_be_bytes());
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.to_be_bytes());
    out.extend_from_slice(&info.rtp_time.to_be_bytes());
    out.extend_from_slice(&info.packet_count.to_be_bytes());
    out.extend_from_slice(&info.octet_count.to_be_bytes());

    let mut end = cname.len().min(255);
    while !cname.is_char_boundary(end) {
        end -= 1;
    }
    let cname = &cname.as_bytes()[..end];
    // SSRC + item type + item length + text + at least one null terminating the item list,
    // padded to a 32-bit boundary.
    let chunk_len = (4 + 2 + cname.len() + 1).next_multiple_of(4);
    let total = 4 + chunk_len;
    out.push(0x81); // V=2, P=0, SC=1
    out.push(PT_SDES);
    out.extend_from_slice(&((total / 4 - 1) as u16).to_be_bytes());
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.push(SDES_CNAME);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.resize(out.len() + chunk_len - 6 - cname.len(), 0);
}

/// The sender info of the first sender report in a compound RTCP packet, if any.
/// Walks lengths defensively; never panics.
pub fn parse_sender_report(packet: &[u8]) -> Option<SenderInfo> {
    let (_, sr) = packets(packet).find(|&(pt, p)| pt == PT_SR && p.len() >= SR_LEN)?;
    let word = |at: usize| u32::from_be_bytes([sr[at], sr[at + 1], sr[at + 2], sr[at + 3]]);
    Some(SenderInfo {
        ssrc: word(4),
        ntp: (u64::from(word(8)) << 32) | u64::from(word(12)),
        rtp_time: word(16),
        packet_count: word(20),
        octet_count: word(24),
    })
}

/// Iterate the packets of a compound RTCP packet as `(packet type, whole packet)`, stopping
/// at the first one with a bad version or a length running past the buffer.
pub fn packets(buf: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    Packets { rest: buf }
}

struct Packets<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Packets<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let &[b0, pt, len_hi, len_lo, ..] = self.rest else {
            return None;
        };
        let len = (usize::from(u16::from_be_bytes([len_hi, len_lo])) + 1) * 4;
        if b0 >> 6 != 2 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let (packet, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some((pt, packet))
    }
}

/// Convert Unix time in microseconds to a 32.32 NTP timestamp (the seconds field wraps in
/// 2036 as NTP era 0 does).
pub fn unix_micros_to_ntp(micros: u64) -> u64 {
    let secs = micros / 1_000_000 + NTP_UNIX_OFFSET_SECS;
    let frac = ((micros % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// NTP 32.32 -> Unix time in microseconds (0 for times before 1970).
pub fn ntp_to_unix_micros(ntp: u64) -> u64 {
    let secs = (ntp >> 32).saturating_sub(NTP_UNIX_OFFSET_SECS);
    let frac = ((ntp & 0xffff_ffff) * 1_000_000) >> 32;
    secs * 1_000_000 + frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_unix_round_trip() {
        for us in [0u64, 1, 999_999, 1_700_000_000_123_456] {
            let back = ntp_to_unix_micros(unix_micros_to_ntp(us));
            assert!(back.abs_diff(us) <= 1, "{us} -> {back}");
        }
    }

    fn info() -> SenderInfo {
        SenderInfo {
            ssrc: 0x1122_3344,
            ntp: 0xe8f0_1234_8000_0000,
            rtp_time: 90_000,
            packet_count: 10,
            octet_count: 12_345,
        }
    }

    #[test]
    fn sender_report_roundtrip() {
        let mut out = Vec::new();
        write_sender_report(&mut out, &info(), "corecast@example");
        assert_eq!(out.len() % 4, 0);
        assert_eq!(parse_sender_report(&out), Some(info()));
        let kinds: Vec<(u8, usize)> = packets(&out).map(|(pt, p)| (pt, p.len())).collect();
        assert_eq!(kinds, vec![(PT_SR, 28), (PT_SDES, out.len() - 28)]);
        assert!(crate::rtp::is_rtcp(&out));
        // CNAME item is null-terminated and padded.
        let sdes = &out[28..];
        assert_eq!(sdes[8], SDES_CNAME);
        assert_eq!(usize::from(sdes[9]), "corecast@example".len());
        assert_eq!(&sdes[10..26], b"corecast@example");
        assert!(sdes[26..].iter().all(|&b| b == 0) && !sdes[26..].is_empty());
    }

    #[test]
    fn sdes_padding_for_every_cname_length() {
        for n in 0..300 {
            let cname = "x".repeat(n);
            let mut out = Vec::new();
            write_sender_report(&mut out, &info(), &cname);
            let all: Vec<_> = packets(&out).collect();
            assert_eq!(all.len(), 2, "cname len {n}");
            assert_eq!(all.iter().map(|(_, p)| p.len()).sum::<usize>(), out.len());
            assert_eq!(usize::from(all[1].1[9]), n.min(255));
        }
        // A multi-byte character straddling the 255-byte cut is dropped whole.
        let cname = format!("{}é", "a".repeat(254));
        let mut out = Vec::new();
        write_sender_report(&mut out, &info(), &cname);
        assert_eq!(out[28 + 9], 254);
    }

    #[test]
    fn compound_with_receiver_report_first() {
        // RR with one report block, then SR.
        let mut buf = vec![0x81, PT_RR, 0, 7];
        buf.extend_from_slice(&[0x55; 28]);
        write_sender_report(&mut buf, &info(), "cam");
        assert_eq!(parse_sender_report(&buf), Some(info()));
        let pts: Vec<u8> = packets(&buf).map(|(pt, _)| pt).collect();
        assert_eq!(pts, vec![PT_RR, PT_SR, PT_SDES]);
    }

    #[test]
    fn truncated_or_garbage_gives_none() {
        let mut out = Vec::new();
        write_sender_report(&mut out, &info(), "cam");
        for len in 0..SR_LEN {
            assert_eq!(parse_sender_report(&out[..len]), None, "len {len}");
        }
        assert_eq!(parse_sender_report(&[0xff; 64]), None);
        assert_eq!(parse_sender_report(&[]), None);
        // SR claiming a length shorter than the sender info.
        assert_eq!(parse_sender_report(&[0x80, PT_SR, 0, 1, 0, 0, 0, 1]), None);
        // Bad version stops the walk.
        let mut bad = vec![0x40, PT_RR, 0, 0];
        bad.extend_from_slice(&out);
        assert_eq!(parse_sender_report(&bad), None);
        assert_eq!(packets(&bad).count(), 0);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9e37_79b9u32;
        for len in 0..300 {
            let mut buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if let Some(b) = buf.first_mut() {
                *b = 0x80 | (*b & 0x3f);
            }
            if len > 2 {
                buf[1] = PT_SR;
                buf[2] = 0;
            }
            let _ = parse_sender_report(&buf);
            assert!(packets(&buf).map(|(_, p)| p.len()).sum::<usize>() <= buf.len());
        }
    }

    #[test]
    fn ntp_conversion() {
        assert_eq!(unix_micros_to_ntp(0), NTP_UNIX_OFFSET_SECS << 32);
        assert_eq!(
            unix_micros_to_ntp(1_500_000),
            ((NTP_UNIX_OFFSET_SECS + 1) << 32) | 0x8000_0000
        );
        // 2024-01-01T00:00:00Z
        let ntp = unix_micros_to_ntp(1_704_067_200_000_000);
        assert_eq!(ntp >> 32, 1_704_067_200 + NTP_UNIX_OFFSET_SECS);
        assert_eq!(ntp & 0xffff_ffff, 0);
    }
}
