//! RTP packet views, sequence/timestamp widening and header writing (RFC 3550).

pub mod rtcp;

use rtp_rs::{RtpReader, RtpReaderError};

/// Length of a fixed RTP header without CSRCs or extension.
pub const HEADER_LEN: usize = 12;

/// Parsed view of an RTP packet, checked once at ingest.
///
/// Offsets index into the packet the view was made from, so the packet can be kept as
/// `Bytes` and the payload sliced out without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_offset: usize,
    /// Payload length with any padding removed.
    pub payload_len: usize,
}

impl RtpView {
    /// The payload inside the packet this view was made from.
    ///
    /// Returns an empty slice if `packet` is not the packet the view came from and is too
    /// short, so a mix-up cannot panic.
    pub fn payload<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        packet
            .get(self.payload_offset..self.payload_offset + self.payload_len)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    #[error("RTP packet shorter than the 12-byte header")]
    TooShort,
    #[error("RTP version is not 2")]
    BadVersion,
    #[error("RTP CSRC list runs past the end of the packet")]
    BadCsrc,
    #[error("RTP header extension runs past the end of the packet")]
    BadExtension,
    #[error("RTP padding length is zero or larger than the payload")]
    BadPadding,
}

/// Validate an RTP packet and return its header fields and payload bounds. Never panics.
pub fn view(packet: &[u8]) -> Result<RtpView, RtpError> {
    let reader = RtpReader::new(packet).map_err(|e| classify(packet, e))?;
    let payload_offset = reader.payload_offset();
    Ok(RtpView {
        payload_type: reader.payload_type(),
        marker: reader.mark(),
        sequence: reader.sequence_number().into(),
        timestamp: reader.timestamp(),
        ssrc: reader.ssrc(),
        payload_offset,
        payload_len: reader.payload().len(),
    })
}

/// rtp-rs reports every overrun as `HeadersTruncated`; work out which part overran so the
/// error tells an operator what the sender got wrong.
fn classify(packet: &[u8], err: RtpReaderError) -> RtpError {
    match err {
        RtpReaderError::BufferTooShort(_) => RtpError::TooShort,
        RtpReaderError::UnsupportedVersion(_) => RtpError::BadVersion,
        RtpReaderError::PaddingLengthInvalid(_) => RtpError::BadPadding,
        RtpReaderError::HeadersTruncated { .. } => {
            // Only reachable with at least HEADER_LEN bytes.
            let csrc_end = HEADER_LEN + 4 * usize::from(packet[0] & 0x0f);
            let has_extension = packet[0] & 0x10 != 0;
            let extension_overruns = || match packet.get(csrc_end + 2..csrc_end + 4) {
                Some(&[hi, lo]) => {
                    csrc_end + 4 + 4 * usize::from(u16::from_be_bytes([hi, lo])) > packet.len()
                }
                _ => true,
            };
            if csrc_end > packet.len() {
                RtpError::BadCsrc
            } else if has_extension && extension_overruns() {
                RtpError::BadExtension
            } else {
                // Padding flag set but no byte left to hold the padding length.
                RtpError::BadPadding
            }
        }
    }
}

/// Widens wrapping 16-bit sequence numbers to `u64`, choosing the value closest to the
/// previous one so reordering and wraparound both come out monotonic-ish.
///
/// The first value is `65536 + seq`, so a packet arriving slightly late never underflows.
#[derive(Debug, Default, Clone)]
pub struct SeqExtender {
    last: Option<u64>,
}

impl SeqExtender {
    pub fn extend(&mut self, seq: u16) -> u64 {
        let value = match self.last {
            None => (1u64 << 16) + u64::from(seq),
            Some(last) => extend_near(last, u64::from(seq), 16),
        };
        self.last = Some(value);
        value
    }
}

/// Same as [`SeqExtender`] for 32-bit RTP timestamps; the first value is `2^32 + ts`.
#[derive(Debug, Default, Clone)]
pub struct TsExtender {
    last: Option<u64>,
}

impl TsExtender {
    pub fn extend(&mut self, ts: u32) -> u64 {
        let value = match self.last {
            None => (1u64 << 32) + u64::from(ts),
            Some(last) => extend_near(last, u64::from(ts), 32),
        };
        self.last = Some(value);
        value
    }
}

/// The value with low `bits` equal to `value` that is closest to `last` (ties go forward).
fn extend_near(last: u64, value: u64, bits: u32) -> u64 {
    let modulus = 1u64 << bits;
    let mask = modulus - 1;
    let forward = value.wrapping_sub(last) & mask;
    if forward <= modulus / 2 {
        last.saturating_add(forward)
    } else {
        let backward = modulus - forward;
        // Going below zero is impossible to represent; fall forward instead, which only
        // happens after a long run of backward jumps from a tiny start value.
        last.checked_sub(backward)
            .unwrap_or_else(|| last.saturating_add(forward))
    }
}

/// Append a 12-byte RTP header (version 2, no padding, extension or CSRCs).
pub fn write_header(
    out: &mut Vec<u8>,
    payload_type: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
) {
    out.push(0x80);
    out.push((u8::from(marker) << 7) | (payload_type & 0x7f));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
}

/// Whether a packet on a shared (RFC 5761 muxed) channel is RTCP rather than RTP: version 2
/// and a second byte of 192..=223, which RTP cannot produce with the dynamic/static payload
/// types that avoid the RTCP range.
pub fn is_rtcp(packet: &[u8]) -> bool {
    match packet {
        [b0, b1, ..] => b0 >> 6 == 2 && (192..=223).contains(b1),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_with_ext_and_padding() -> Vec<u8> {
        // V=2, P=1, X=1, CC=1; M=1, PT=96
        let mut p = vec![
            0xb1, 0xe0, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef,
        ];
        p.extend_from_slice(&[1, 2, 3, 4]); // CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // one-word extension
        p.extend_from_slice(b"payload");
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        p
    }

    #[test]
    fn view_valid_packet() {
        let p = packet_with_ext_and_padding();
        let v = view(&p).unwrap();
        assert_eq!(v.payload_type, 96);
        assert!(v.marker);
        assert_eq!(v.sequence, 0x1234);
        assert_eq!(v.timestamp, 0x1000);
        assert_eq!(v.ssrc, 0xdeadbeef);
        assert_eq!(v.payload_offset, 24);
        assert_eq!(v.payload(&p), b"payload");
    }

    #[test]
    fn view_plain_packet_and_empty_payload() {
        let mut p = Vec::new();
        write_header(&mut p, 8, false, 7, 160, 42);
        let v = view(&p).unwrap();
        assert_eq!(
            (v.payload_type, v.marker, v.sequence, v.timestamp, v.ssrc),
            (8, false, 7, 160, 42)
        );
        assert_eq!(v.payload_len, 0);
        p.extend_from_slice(&[1, 2]);
        assert_eq!(view(&p).unwrap().payload(&p), &[1, 2]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let p = packet_with_ext_and_padding();
        for len in 0..p.len() {
            assert!(view(&p[..len]).is_err(), "truncated to {len} accepted");
        }
    }

    #[test]
    fn specific_errors() {
        let good = packet_with_ext_and_padding();
        assert_eq!(view(&good[..11]), Err(RtpError::TooShort));
        let mut p = good.clone();
        p[0] = (p[0] & 0x3f) | 0x40;
        assert_eq!(view(&p), Err(RtpError::BadVersion));
        assert_eq!(view(&good[..14]), Err(RtpError::BadCsrc));
        assert_eq!(view(&good[..20]), Err(RtpError::BadExtension));
        assert_eq!(view(&good[..23]), Err(RtpError::BadExtension));
        let mut p = good.clone();
        *p.last_mut().unwrap() = 0;
        assert_eq!(view(&p), Err(RtpError::BadPadding));
        let mut p = good.clone();
        *p.last_mut().unwrap() = 200;
        assert_eq!(view(&p), Err(RtpError::BadPadding));
        // Padding flag with nothing after the header.
        assert_eq!(view(&good[..24]), Err(RtpError::BadPadding));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = view(&buf);
            let mut forced = buf.clone();
            if let Some(b) = forced.first_mut() {
                *b = 0x80 | (*b & 0x3f);
                let _ = view(&forced);
            }
        }
    }

    #[test]
    fn seq_extender_wraps_forward() {
        let mut e = SeqExtender::default();
        assert_eq!(e.extend(65534), 65536 + 65534);
        assert_eq!(e.extend(65535), 65536 + 65535);
        assert_eq!(e.extend(0), 2 * 65536);
        assert_eq!(e.extend(1), 2 * 65536 + 1);
    }

    #[test]
    fn seq_extender_wraps_backward_and_reorders() {
        let mut e = SeqExtender::default();
        assert_eq!(e.extend(1), 65537);
        assert_eq!(e.extend(0), 65536);
        assert_eq!(e.extend(65535), 65535); // late packet from before the wrap
        assert_eq!(e.extend(2), 65538);
        assert_eq!(e.extend(4), 65540);
        assert_eq!(e.extend(3), 65539);
        assert_eq!(e.extend(5), 65541);
    }

    #[test]
    fn seq_extender_follows_large_jumps() {
        // After a jump (e.g. a publisher restart) the extender follows the new numbering
        // instead of treating every later packet as far out of order.
        let mut e = SeqExtender::default();
        let first = e.extend(100);
        let forward = e.extend(30_100);
        assert_eq!(forward, first + 30_000);
        assert_eq!(e.extend(30_101), forward + 1);
        // 40_000 past 30_101 is closer going backwards.
        let backward = e.extend(4_565);
        assert_eq!(backward, forward + 1 + 40_000 - 65_536);
        assert_eq!(e.extend(4_566), backward + 1);
    }

    #[test]
    fn ts_extender_wraps() {
        let mut e = TsExtender::default();
        let base = 1u64 << 32;
        assert_eq!(e.extend(u32::MAX - 3000), base + u64::from(u32::MAX - 3000));
        assert_eq!(e.extend(600), 2 * base + 600);
        assert_eq!(e.extend(u32::MAX - 100), base + u64::from(u32::MAX - 100));
        assert_eq!(e.extend(4200), 2 * base + 4200);
    }

    #[test]
    fn extend_never_underflows() {
        let mut e = SeqExtender::default();
        let mut v = e.extend(0);
        for _ in 0..10 {
            // Repeated backward jumps of ~30000 from a small start.
            let seq = (v as u16).wrapping_sub(30_000);
            v = e.extend(seq);
            assert_eq!(v as u16, seq);
        }
    }

    #[test]
    fn write_header_roundtrips_through_view() {
        let mut p = Vec::new();
        write_header(&mut p, 0xff, true, 65535, u32::MAX, 1);
        assert_eq!(p.len(), HEADER_LEN);
        let v = view(&p).unwrap();
        assert_eq!(
            (v.payload_type, v.marker, v.sequence, v.timestamp, v.ssrc),
            (127, true, 65535, u32::MAX, 1)
        );
    }

    #[test]
    fn rtcp_detection() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201, 0, 7]));
        assert!(!is_rtcp(&[0x80, 96, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0xe0, 0, 1])); // RTP PT 96 with marker
        assert!(!is_rtcp(&[0x40, 200]));
        assert!(!is_rtcp(&[0x80]));
        assert!(!is_rtcp(&[]));
    }
}
