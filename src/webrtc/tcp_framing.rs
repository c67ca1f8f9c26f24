//! RFC 4571 framing for ICE-TCP (RFC 6544): each STUN, DTLS or SRTP packet on the stream is
//! preceded by its length as a 2-byte big-endian number.
//!
//! The deframer hands out frames that lie whole in the bytes just read without copying
//! them, and buffers only a frame that straddles two reads (at most `max_frame` + 2 bytes).

/// Largest frame accepted by default: a UDP-sized packet with room to spare (browsers keep
/// ICE-TCP packets at their UDP MTU, about 1,200 bytes).
pub const DEFAULT_MAX_FRAME: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    #[error("RFC 4571: zero-length frame")]
    Empty,
    #[error("RFC 4571: frame of {len} bytes is larger than the limit of {max}")]
    TooLarge { len: usize, max: usize },
}

/// Splits an ICE-TCP byte stream into packets. After an error the connection must be closed:
/// the stream has lost its framing.
#[derive(Debug)]
pub struct Deframer {
    max_frame: usize,
    /// A partial frame (with its length prefix) carried over from earlier reads.
    partial: Vec<u8>,
    failed: Option<FramingError>,
}

impl Deframer {
    /// `max_frame` is clamped to 1..=65535 (what the 2-byte length can say).
    pub fn new(max_frame: usize) -> Self {
        Deframer {
            max_frame: max_frame.clamp(1, usize::from(u16::MAX)),
            partial: Vec::new(),
            failed: None,
        }
    }

    /// Bytes held back waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Feed bytes read from the connection; `on_frame` gets every complete packet in order.
    /// Returns the error that ends the connection (and keeps returning it).
    pub fn push(
        &mut self,
        mut data: &[u8],
        mut on_frame: impl FnMut(&[u8]),
    ) -> Result<(), FramingError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        // Complete the carried-over frame first.
        if !self.partial.is_empty() {
            if self.partial.len() < 2 {
                let take = (2 - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.partial.len() < 2 {
                    return Ok(());
                }
            }
            let len = self.frame_len([self.partial[0], self.partial[1]])?;
            let missing = 2 + len - self.partial.len();
            let take = missing.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if take < missing {
                return Ok(());
            }
            on_frame(&self.partial[2..]);
            self.partial.clear();
        }
        // Whole frames straight from the caller's buffer.
        while let &[hi, lo, ref rest @ ..] = data {
            let len = self.frame_len([hi, lo])?;
            if rest.len() < len {
                break;
            }
            on_frame(&rest[..len]);
            data = &rest[len..];
        }
        self.partial.extend_from_slice(data);
        Ok(())
    }

    fn frame_len(&mut self, prefix: [u8; 2]) -> Result<usize, FramingError> {
        let len = usize::from(u16::from_be_bytes(prefix));
        let err = if len == 0 {
            FramingError::Empty
        } else if len > self.max_frame {
            FramingError::TooLarge {
                len,
                max: self.max_frame,
            }
        } else {
            return Ok(len);
        };
        self.failed = Some(err);
        self.partial = Vec::new();
        Err(err)
    }
}

impl Default for Deframer {
    fn default() -> Self {
        Deframer::new(DEFAULT_MAX_FRAME)
    }
}

/// The 2-byte prefix of a packet, for a vectored write of prefix + shared payload; `None`
/// for an empty packet or one over 65,535 bytes, which cannot be framed.
pub fn prefix(packet_len: usize) -> Option<[u8; 2]> {
    match u16::try_from(packet_len) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n.to_be_bytes()),
    }
}

/// Append `packet` with its length prefix to `out`.
pub fn frame(out: &mut Vec<u8>, packet: &[u8]) -> Result<(), FramingError> {
    let p = prefix(packet.len()).ok_or(if packet.is_empty() {
        FramingError::Empty
    } else {
        FramingError::TooLarge {
            len: packet.len(),
            max: usize::from(u16::MAX),
        }
    })?;
    out.extend_from_slice(&p);
    out.extend_from_slice(packet);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(d: &mut Deframer, data: &[u8]) -> (Vec<Vec<u8>>, Result<(), FramingError>) {
        let mut frames = Vec::new();
        let r = d.push(data, |f| frames.push(f.to_vec()));
        (frames, r)
    }

    fn stream(packets: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            frame(&mut out, p).unwrap();
        }
        out
    }

    #[test]
    fn frames_survive_every_split() {
        let packets: [&[u8]; 4] = [b"\x00\x01stun", &[0x16; 300], b"x", &[0x80; 1200]];
        let bytes = stream(&packets);
        for split in 0..=bytes.len() {
            for split2 in [split, (split + 1).min(bytes.len()), bytes.len()] {
                let mut d = Deframer::default();
                let mut got = Vec::new();
                for chunk in [&bytes[..split], &bytes[split..split2], &bytes[split2..]] {
                    let (f, r) = collect(&mut d, chunk);
                    r.unwrap();
                    got.extend(f);
                }
                assert_eq!(got, packets.map(<[u8]>::to_vec), "split {split}/{split2}");
                assert_eq!(d.buffered(), 0);
            }
        }
        // Byte by byte.
        let mut d = Deframer::default();
        let mut got = Vec::new();
        for b in &bytes {
            got.extend(collect(&mut d, std::slice::from_ref(b)).0);
        }
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn zero_or_oversized_length_closes() {
        let mut d = Deframer::new(100);
        let (f, r) = collect(&mut d, &[0, 2, 1, 2, 0, 0, 9, 9]);
        assert_eq!(f, vec![vec![1, 2]]);
        assert_eq!(r, Err(FramingError::Empty));
        // Stays failed.
        assert_eq!(collect(&mut d, &[0, 1, 5]).1, Err(FramingError::Empty));

        let mut d = Deframer::new(100);
        assert_eq!(
            collect(&mut d, &[0, 101]).1,
            Err(FramingError::TooLarge { len: 101, max: 100 })
        );
        // Split prefix of an oversized frame.
        let mut d = Deframer::new(100);
        assert_eq!(collect(&mut d, &[0x01]).1, Ok(()));
        assert!(collect(&mut d, &[0x00, 7]).1.is_err());
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn buffer_is_bounded() {
        let mut d = Deframer::new(1000);
        let mut junk = vec![0x03, 0xe8]; // 1000
        junk.extend_from_slice(&[7; 999]);
        collect(&mut d, &junk).1.unwrap();
        assert_eq!(d.buffered(), 1001);
        let (f, r) = collect(&mut d, &[7, 0x03]);
        r.unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(d.buffered(), 1);
        // Random input never buffers more than a frame plus its prefix.
        let mut x = 12345u32;
        for _ in 0..200 {
            let mut d = Deframer::new(1500);
            for _ in 0..20 {
                let chunk: Vec<u8> = (0..x % 3000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        (x % 7) as u8
                    })
                    .collect();
                let _ = d.push(&chunk, |f| assert!(!f.is_empty() && f.len() <= 1500));
                assert!(d.buffered() <= 1502);
            }
        }
    }

    #[test]
    fn framer_limits() {
        let mut out = Vec::new();
        assert_eq!(frame(&mut out, &[]), Err(FramingError::Empty));
        assert!(frame(&mut out, &vec![0; 65_536]).is_err());
        assert!(out.is_empty());
        frame(&mut out, &vec![1; 65_535]).unwrap();
        assert_eq!(&out[..2], &[0xff, 0xff]);
        assert_eq!(prefix(1200), Some([0x04, 0xb0]));
        assert_eq!(prefix(0), None);
    }
}
