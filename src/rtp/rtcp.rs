//! RTCP (RFC 3550 §6): writing sender reports so readers can map RTP time to wall-clock
//! time, reading them from publishers, and reading what viewers send back (receiver
//! reports, NACK, PLI, FIR, SDES, BYE: RFC 4585, RFC 5104) in [`parse_compound`].

/// RTCP packet type of a sender report.
pub const PT_SR: u8 = 200;
/// RTCP packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// RTCP packet type of source description items.
pub const PT_SDES: u8 = 202;
/// RTCP packet type of a goodbye.
pub const PT_BYE: u8 = 203;
/// RTCP packet type of application-defined data.
pub const PT_APP: u8 = 204;
/// RTCP packet type of transport-layer feedback (RFC 4585): NACK, TWCC.
pub const PT_RTPFB: u8 = 205;
/// RTCP packet type of payload-specific feedback (RFC 4585): PLI, FIR, REMB.
pub const PT_PSFB: u8 = 206;
/// RTCP packet type of extended reports (RFC 3611).
pub const PT_XR: u8 = 207;
/// RTPFB format of a generic NACK.
pub const FMT_NACK: u8 = 1;
/// RTPFB format of transport-wide congestion control feedback.
pub const FMT_TWCC: u8 = 15;
/// PSFB format of a picture loss indication.
pub const FMT_PLI: u8 = 1;
/// PSFB format of a full intra request (RFC 5104).
pub const FMT_FIR: u8 = 4;
/// PSFB format of application-layer feedback (REMB lives here).
pub const FMT_AFB: u8 = 15;

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

/// Most NACK FCI entries [`write_nack`] writes (each covers up to 17 sequence numbers).
pub const MAX_NACK_ENTRIES: usize = 64;

/// Why a compound RTCP packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    #[error("RTCP: packet shorter than its 4-byte header")]
    Truncated,
    #[error("RTCP: version is not 2")]
    BadVersion,
    #[error("RTCP: packet type {pt} claims {len} bytes, {left} left")]
    BadLength { pt: u8, len: usize, left: usize },
    #[error("RTCP: padding on packet type {0} is zero, too long or not on the last packet")]
    BadPadding(u8),
    #[error("RTCP: packet type {0} too short for its content")]
    BadBody(u8),
}

/// One report block of a sender or receiver report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on (one of our SSRCs for a viewer's report).
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// The report blocks of an SR or RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a>(&'a [u8]);

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let (b, rest) = self.0.split_first_chunk::<24>()?;
        self.0 = rest;
        let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // Sign-extend the 24-bit count.
        let cumulative_lost = (i32::from_be_bytes([b[5], b[6], b[7], 0])) >> 8;
        Some(ReportBlock {
            ssrc: w(0),
            fraction_lost: b[4],
            cumulative_lost,
            highest_seq: w(8),
            jitter: w(12),
            last_sr: w(16),
            delay_since_last_sr: w(20),
        })
    }
}

/// The sequence numbers a generic NACK asks for (RFC 4585 §6.2.1): each FCI entry is a
/// packet id and a bitmask of the 16 following ones. At most 17 per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackSeqs<'a> {
    fci: &'a [u8],
    pid: u16,
    /// Offsets from `pid` still to report: bit 0 is the PID itself, bit i is PID + i.
    mask: u32,
}

impl Iterator for NackSeqs<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        loop {
            if self.mask != 0 {
                let offset = self.mask.trailing_zeros() as u16; // < 17
                self.mask &= self.mask - 1;
                return Some(self.pid.wrapping_add(offset));
            }
            let (e, rest) = self.fci.split_first_chunk::<4>()?;
            self.fci = rest;
            self.pid = u16::from_be_bytes([e[0], e[1]]);
            self.mask = (u32::from(u16::from_be_bytes([e[2], e[3]])) << 1) | 1;
        }
    }
}

/// FIR entries (RFC 5104 §4.3.1.1): `(media SSRC, command sequence number)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirEntries<'a>(&'a [u8]);

impl Iterator for FirEntries<'_> {
    type Item = (u32, u8);

    fn next(&mut self) -> Option<(u32, u8)> {
        let (e, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some((u32::from_be_bytes([e[0], e[1], e[2], e[3]]), e[4]))
    }
}

/// SDES chunks: `(SSRC, CNAME if the chunk has one)`. Validated when the packet was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunks<'a> {
    body: &'a [u8],
    left: u8,
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = (u32, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (ssrc, cname, len) = sdes_chunk(self.body)?;
        self.body = self.body.get(len..)?;
        Some((ssrc, cname))
    }
}

/// Walk one SDES chunk: `(SSRC, CNAME, chunk length with padding)`.
fn sdes_chunk(buf: &[u8]) -> Option<(u32, Option<&[u8]>, usize)> {
    let (ssrc, mut rest) = buf.split_first_chunk::<4>()?;
    let mut cname = None;
    let mut at: usize = 4;
    loop {
        match *rest {
            [0, ..] => {
                // End of items: null octets up to the next 32-bit boundary.
                let end = (at + 1).next_multiple_of(4);
                if end > buf.len() {
                    return None;
                }
                return Some((u32::from_be_bytes(*ssrc), cname, end));
            }
            [ty, len, ref tail @ ..] => {
                let text = tail.get(..usize::from(len))?;
                if ty == SDES_CNAME && cname.is_none() {
                    cname = Some(text);
                }
                rest = &tail[usize::from(len)..];
                at += 2 + usize::from(len);
            }
            _ => return None,
        }
    }
}

/// The SSRCs of a BYE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ssrcs<'a>(&'a [u8]);

impl Iterator for Ssrcs<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (s, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*s))
    }
}

/// One packet of a compound RTCP packet, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket<'a> {
    SenderReport {
        info: SenderInfo,
        reports: ReportBlocks<'a>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: ReportBlocks<'a>,
    },
    Sdes(SdesChunks<'a>),
    Bye {
        ssrcs: Ssrcs<'a>,
        reason: Option<&'a [u8]>,
    },
    /// Generic NACK: resend these packets of `media_ssrc`.
    Nack {
        sender_ssrc: u32,
        media_ssrc: u32,
        seqs: NackSeqs<'a>,
    },
    /// Picture loss: send a keyframe on `media_ssrc`.
    Pli {
        sender_ssrc: u32,
        media_ssrc: u32,
    },
    /// Full intra request: a keyframe for each entry's SSRC.
    Fir {
        sender_ssrc: u32,
        entries: FirEntries<'a>,
    },
    /// Recognised and not acted on: REMB, TWCC, other RTPFB/PSFB formats.
    OtherFeedback {
        pt: u8,
        fmt: u8,
    },
    /// APP, XR and unknown packet types.
    Other {
        pt: u8,
    },
}

/// Parse a compound RTCP packet (already decrypted). Yields each packet in order and stops
/// after the first error, which it yields. Reduced-size RTCP (RFC 5506: a lone PLI or NACK)
/// is accepted. Never allocates or panics.
pub fn parse_compound(buf: &[u8]) -> Compound<'_> {
    Compound { rest: buf }
}

/// Iterator returned by [`parse_compound`].
#[derive(Debug, Clone)]
pub struct Compound<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Compound<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.next_packet();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

impl<'a> Compound<'a> {
    fn next_packet(&mut self) -> Result<RtcpPacket<'a>, RtcpError> {
        let &[b0, pt, l0, l1, ..] = self.rest else {
            return Err(RtcpError::Truncated);
        };
        if b0 >> 6 != 2 {
            return Err(RtcpError::BadVersion);
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let left = self.rest.len();
        if len > left {
            return Err(RtcpError::BadLength { pt, len, left });
        }
        let (packet, rest) = self.rest.split_at(len);
        self.rest = rest;
        let mut body = &packet[4..];
        if b0 & 0x20 != 0 {
            // RFC 3550 §6.4.1: only the last packet of a compound may be padded.
            let pad = usize::from(*body.last().ok_or(RtcpError::BadPadding(pt))?);
            if !rest.is_empty() || pad == 0 || pad > body.len() {
                return Err(RtcpError::BadPadding(pt));
            }
            body = &body[..body.len() - pad];
        }
        parse_one(b0 & 0x1f, pt, body)
    }
}

fn parse_one(count: u8, pt: u8, body: &[u8]) -> Result<RtcpPacket<'_>, RtcpError> {
    let bad = RtcpError::BadBody(pt);
    let word = |at: usize| -> Result<u32, RtcpError> {
        body.get(at..at + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .ok_or(bad)
    };
    let blocks = |at: usize| -> Result<ReportBlocks<'_>, RtcpError> {
        // Profile-specific extensions may follow the blocks; they are skipped.
        body.get(at..at + 24 * usize::from(count))
            .map(ReportBlocks)
            .ok_or(bad)
    };
    Ok(match pt {
        PT_SR => RtcpPacket::SenderReport {
            info: SenderInfo {
                ssrc: word(0)?,
                ntp: (u64::from(word(4)?) << 32) | u64::from(word(8)?),
                rtp_time: word(12)?,
                packet_count: word(16)?,
                octet_count: word(20)?,
            },
            reports: blocks(24)?,
        },
        PT_RR => RtcpPacket::ReceiverReport {
            ssrc: word(0)?,
            reports: blocks(4)?,
        },
        PT_SDES => {
            let mut at = 0;
            for _ in 0..count {
                let (_, _, len) = sdes_chunk(&body[at..]).ok_or(bad)?;
                at += len;
            }
            RtcpPacket::Sdes(SdesChunks { body, left: count })
        }
        PT_BYE => {
            let n = 4 * usize::from(count);
            let ssrcs = body.get(..n).ok_or(bad)?;
            let reason = match body[n..] {
                [] => None,
                [len, ref text @ ..] => Some(text.get(..usize::from(len)).ok_or(bad)?),
            };
            RtcpPacket::Bye {
                ssrcs: Ssrcs(ssrcs),
                reason,
            }
        }
        PT_RTPFB | PT_PSFB => {
            let (sender_ssrc, media_ssrc) = (word(0)?, word(4)?);
            let fci = &body[8..];
            match (pt, count) {
                (PT_RTPFB, FMT_NACK) => {
                    if fci.is_empty() || !fci.len().is_multiple_of(4) {
                        return Err(bad);
                    }
                    RtcpPacket::Nack {
                        sender_ssrc,
                        media_ssrc,
                        seqs: NackSeqs {
                            fci,
                            pid: 0,
                            mask: 0,
                        },
                    }
                }
                (PT_PSFB, FMT_PLI) => RtcpPacket::Pli {
                    sender_ssrc,
                    media_ssrc,
                },
                (PT_PSFB, FMT_FIR) => {
                    if fci.is_empty() || !fci.len().is_multiple_of(8) {
                        return Err(bad);
                    }
                    RtcpPacket::Fir {
                        sender_ssrc,
                        entries: FirEntries(fci),
                    }
                }
                (pt, fmt) => RtcpPacket::OtherFeedback { pt, fmt },
            }
        }
        pt => RtcpPacket::Other { pt },
    })
}

/// Append a PLI (RFC 4585 §6.3.1) asking `media_ssrc`'s sender for a keyframe.
pub fn write_pli(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32) {
    out.extend_from_slice(&[0x80 | FMT_PLI, PT_PSFB, 0, 2]);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
}

/// Append a generic NACK for `seqs` (in the order lost; runs within 16 of an entry's PID
/// share it). At most [`MAX_NACK_ENTRIES`] entries; later sequence numbers are left out.
/// Writes nothing for an empty list.
pub fn write_nack(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32, seqs: &[u16]) {
    let mut entries: Vec<(u16, u16)> = Vec::new();
    for &seq in seqs {
        if let Some((pid, blp)) = entries.last_mut() {
            let offset = seq.wrapping_sub(*pid);
            if offset <= 16 {
                if offset > 0 {
                    *blp |= 1 << (offset - 1);
                }
                continue;
            }
        }
        if entries.len() == MAX_NACK_ENTRIES {
            break;
        }
        entries.push((seq, 0));
    }
    if entries.is_empty() {
        return;
    }
    out.extend_from_slice(&[0x80 | FMT_NACK, PT_RTPFB]);
    out.extend_from_slice(&(2 + entries.len() as u16).to_be_bytes());
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    for (pid, blp) in entries {
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&blp.to_be_bytes());
    }
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

    fn all(buf: &[u8]) -> Vec<Result<RtcpPacket<'_>, RtcpError>> {
        parse_compound(buf).collect()
    }

    #[test]
    fn chrome_style_compound_rr_sdes_then_feedback() {
        // RR with one block, SDES CNAME, then (reduced-size style) a NACK and a PLI.
        let mut buf = vec![0x81, PT_RR, 0, 7];
        buf.extend_from_slice(&0xaaaa_aaaau32.to_be_bytes()); // reporter
        buf.extend_from_slice(&0x1122_3344u32.to_be_bytes()); // our SSRC
        buf.extend_from_slice(&[0x40, 0xff, 0xff, 0xfe]); // 25 % lost, cumulative -2
        buf.extend_from_slice(&70_000u32.to_be_bytes());
        buf.extend_from_slice(&12u32.to_be_bytes());
        buf.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        buf.extend_from_slice(&65_536u32.to_be_bytes());
        buf.extend_from_slice(&[0x81, PT_SDES, 0, 3, 0xaa, 0xaa, 0xaa, 0xaa, 1, 3]);
        buf.extend_from_slice(b"abc\0\0\0");
        write_nack(
            &mut buf,
            0xaaaa_aaaa,
            0x1122_3344,
            &[100, 101, 116, 117, 65535, 0],
        );
        write_pli(&mut buf, 0xaaaa_aaaa, 0x1122_3344);
        let packets = all(&buf);
        assert_eq!(packets.len(), 4, "{packets:?}");
        let Ok(RtcpPacket::ReceiverReport { ssrc, mut reports }) = packets[0] else {
            panic!("{:?}", packets[0]);
        };
        assert_eq!(ssrc, 0xaaaa_aaaa);
        let block = reports.next().unwrap();
        assert_eq!(reports.next(), None);
        assert_eq!(
            block,
            ReportBlock {
                ssrc: 0x1122_3344,
                fraction_lost: 0x40,
                cumulative_lost: -2,
                highest_seq: 70_000,
                jitter: 12,
                last_sr: 0x1234_5678,
                delay_since_last_sr: 65_536,
            }
        );
        let Ok(RtcpPacket::Sdes(chunks)) = packets[1] else {
            panic!("{:?}", packets[1]);
        };
        assert_eq!(
            chunks.collect::<Vec<_>>(),
            [(0xaaaa_aaaa, Some(&b"abc"[..]))]
        );
        let Ok(RtcpPacket::Nack {
            sender_ssrc,
            media_ssrc,
            seqs,
        }) = packets[2]
        else {
            panic!("{:?}", packets[2]);
        };
        assert_eq!((sender_ssrc, media_ssrc), (0xaaaa_aaaa, 0x1122_3344));
        assert_eq!(seqs.collect::<Vec<_>>(), [100, 101, 116, 117, 65535, 0]);
        assert_eq!(
            packets[3],
            Ok(RtcpPacket::Pli {
                sender_ssrc: 0xaaaa_aaaa,
                media_ssrc: 0x1122_3344
            })
        );
    }

    #[test]
    fn nack_fci_expands_pid_and_mask() {
        // PID 65534, BLP bits 0, 1 and 15 (PID+1, PID+2, PID+16): 65534, 65535, 0, 14.
        let buf = [
            0x81, PT_RTPFB, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xfe, 0x80, 0x03,
        ];
        let Some(Ok(RtcpPacket::Nack { seqs, .. })) = parse_compound(&buf).next() else {
            panic!();
        };
        assert_eq!(seqs.collect::<Vec<_>>(), [65534, 65535, 0, 14]);
        // Writer: a run of 17 fits one entry, the 18th starts another; cap on entries.
        let mut out = Vec::new();
        let seqs: Vec<u16> = (1000..1018).collect();
        write_nack(&mut out, 1, 2, &seqs);
        assert_eq!(out.len(), 12 + 8);
        let Some(Ok(RtcpPacket::Nack { seqs: got, .. })) = parse_compound(&out).next() else {
            panic!();
        };
        assert_eq!(got.collect::<Vec<_>>(), seqs);
        let mut out = Vec::new();
        let spread: Vec<u16> = (0..1000u16).map(|i| i.wrapping_mul(50)).collect();
        write_nack(&mut out, 1, 2, &spread);
        assert_eq!(out.len(), 12 + 4 * MAX_NACK_ENTRIES);
        let mut out = Vec::new();
        write_nack(&mut out, 1, 2, &[]);
        assert!(out.is_empty());
    }

    #[test]
    fn sr_fir_bye_remb_twcc_app() {
        let mut buf = Vec::new();
        write_sender_report(&mut buf, &info(), "cam");
        // FIR with two entries.
        buf.extend_from_slice(&[0x80 | FMT_FIR, PT_PSFB, 0, 6, 0, 0, 0, 9, 0, 0, 0, 0]);
        buf.extend_from_slice(&[0, 0, 0, 5, 7, 0, 0, 0, 0, 0, 0, 6, 8, 0, 0, 0]);
        // REMB (AFB) and TWCC: recognised, ignored.
        buf.extend_from_slice(&[0x80 | FMT_AFB, PT_PSFB, 0, 4, 0, 0, 0, 9, 0, 0, 0, 0]);
        buf.extend_from_slice(b"REMB\x01\x0a\x00\x00");
        buf.extend_from_slice(&[0x80 | FMT_TWCC, PT_RTPFB, 0, 3, 0, 0, 0, 9, 0, 0, 0, 1]);
        buf.extend_from_slice(&[0; 4]);
        // APP.
        buf.extend_from_slice(&[0x80, PT_APP, 0, 2, 0, 0, 0, 9]);
        buf.extend_from_slice(b"name");
        // BYE with reason, padded (last packet).
        buf.extend_from_slice(&[0xa1, PT_BYE, 0, 3, 0, 0, 0, 9, 3, b'b', b'y', b'e']);
        buf.extend_from_slice(&[0, 0, 0, 4]);
        let p = all(&buf);
        assert_eq!(p.len(), 7, "{p:?}");
        assert!(
            matches!(p[0], Ok(RtcpPacket::SenderReport { info: i, reports }) if i == info() && reports.count() == 0)
        );
        assert!(matches!(p[1], Ok(RtcpPacket::Sdes(_))));
        let Ok(RtcpPacket::Fir {
            sender_ssrc: 9,
            entries,
        }) = p[2]
        else {
            panic!("{:?}", p[2]);
        };
        assert_eq!(entries.collect::<Vec<_>>(), [(5, 7), (6, 8)]);
        assert_eq!(
            p[3],
            Ok(RtcpPacket::OtherFeedback {
                pt: PT_PSFB,
                fmt: FMT_AFB
            })
        );
        assert_eq!(
            p[4],
            Ok(RtcpPacket::OtherFeedback {
                pt: PT_RTPFB,
                fmt: FMT_TWCC
            })
        );
        assert_eq!(p[5], Ok(RtcpPacket::Other { pt: PT_APP }));
        let Ok(RtcpPacket::Bye { ssrcs, reason }) = p[6] else {
            panic!("{:?}", p[6]);
        };
        assert_eq!(ssrcs.collect::<Vec<_>>(), [9]);
        assert_eq!(reason, Some(&b"bye"[..]));
    }

    #[test]
    fn strict_errors() {
        let pli = {
            let mut b = Vec::new();
            write_pli(&mut b, 1, 2);
            b
        };
        assert_eq!(all(&[0x80, PT_RR]), [Err(RtcpError::Truncated)]);
        assert_eq!(all(&[0x40, PT_RR, 0, 0]), [Err(RtcpError::BadVersion)]);
        assert!(matches!(
            all(&[0x80, PT_RR, 0, 1, 0, 0, 0, 7])[..],
            [Ok(RtcpPacket::ReceiverReport { ssrc: 7, reports })] if reports.count() == 0
        ));
        assert!(matches!(
            all(&[0x80, PT_RR, 0, 2, 0, 0, 0, 0])[..],
            [Err(RtcpError::BadLength { .. })]
        ));
        // RR claiming a block it does not have.
        assert_eq!(
            all(&[0x81, PT_RR, 0, 1, 0, 0, 0, 0]),
            [Err(RtcpError::BadBody(PT_RR))]
        );
        // Feedback without media SSRC, NACK without FCI, FIR with a short entry.
        assert_eq!(
            all(&[0x81, PT_PSFB, 0, 1, 0, 0, 0, 1]),
            [Err(RtcpError::BadBody(PT_PSFB))]
        );
        assert_eq!(
            all(&[0x81, PT_RTPFB, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]),
            [Err(RtcpError::BadBody(PT_RTPFB))]
        );
        assert_eq!(
            all(&[0x84, PT_PSFB, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5]),
            [Err(RtcpError::BadBody(PT_PSFB))]
        );
        // Padding: not on the last packet, zero, longer than the body.
        let mut padded_first = vec![0xa0, PT_RR, 0, 1, 0, 0, 0, 4];
        padded_first.extend_from_slice(&pli);
        assert_eq!(all(&padded_first), [Err(RtcpError::BadPadding(PT_RR))]);
        assert_eq!(
            all(&[0xa0, PT_RR, 0, 1, 0, 0, 0, 0]),
            [Err(RtcpError::BadPadding(PT_RR))]
        );
        assert_eq!(
            all(&[0xa0, PT_RR, 0, 1, 0, 0, 0, 9]),
            [Err(RtcpError::BadPadding(PT_RR))]
        );
        // SDES with a truncated item or missing terminator.
        assert_eq!(
            all(&[0x81, PT_SDES, 0, 2, 0, 0, 0, 1, 1, 9, b'a', b'b']),
            [Err(RtcpError::BadBody(PT_SDES))]
        );
        assert_eq!(
            all(&[0x81, PT_SDES, 0, 2, 0, 0, 0, 1, 1, 2, b'a', b'b']),
            [Err(RtcpError::BadBody(PT_SDES))]
        );
        // BYE reason running past the packet.
        assert_eq!(
            all(&[0x81, PT_BYE, 0, 2, 0, 0, 0, 1, 9, b'a', b'b', b'c']),
            [Err(RtcpError::BadBody(PT_BYE))]
        );
        // A good packet, then garbage: the good one, then the error, then nothing.
        let mut b = pli.clone();
        b.extend_from_slice(&[0xff, 0xff]);
        let p = all(&b);
        assert!(matches!(
            p[..],
            [Ok(RtcpPacket::Pli { .. }), Err(RtcpError::Truncated)]
        ));
    }

    #[test]
    fn random_compounds_never_panic_and_stay_bounded() {
        let mut x = 0x0bad_cafeu32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Bias towards plausible headers so the bodies get exercised.
            let mut at = 0;
            while at + 4 <= buf.len() {
                buf[at] = 0x80 | (buf[at] & 0x3f);
                buf[at + 1] = 200 + (buf[at + 1] % 8);
                buf[at + 2] = 0;
                buf[at + 3] %= 6;
                at += (usize::from(buf[at + 3]) + 1) * 4;
            }
            for p in parse_compound(&buf).flatten() {
                match p {
                    RtcpPacket::Nack { seqs, .. } => assert!(seqs.count() <= 17 * buf.len() / 4),
                    RtcpPacket::SenderReport { reports, .. }
                    | RtcpPacket::ReceiverReport { reports, .. } => {
                        assert!(reports.count() <= 31)
                    }
                    RtcpPacket::Sdes(chunks) => assert!(chunks.count() <= 31),
                    RtcpPacket::Fir { entries, .. } => assert!(entries.count() <= buf.len() / 8),
                    RtcpPacket::Bye { ssrcs, .. } => assert!(ssrcs.count() <= 31),
                    _ => {}
                }
            }
        }
    }
}
