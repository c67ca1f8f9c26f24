//! `stream.mp4` viewers: the HTTP response head, then the body (chunked or delimited by
//! the close) walked as ISO-BMFF boxes, counting bytes and `moof` fragments. Streaming:
//! any split of the input gives the same counts; nothing is buffered but a box header.

/// Longest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest chunk-size line accepted (hex digits, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the size line (bytes so far in `line`).
    Size,
    Data(u64),
    /// The CRLF after a chunk's data (bytes left).
    Crlf(u8),
    Done,
}

/// What the body held so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Mp4Counts {
    /// Body bytes (chunk framing excluded).
    pub bytes: u64,
    /// Complete box headers seen of type `moof`.
    pub fragments: u64,
    /// Top-level boxes of any type.
    pub boxes: u64,
}

#[derive(Debug)]
pub struct Mp4Body {
    chunked: bool,
    chunk: Chunk,
    line: Vec<u8>,
    /// Header of the current box (up to 16 bytes with a 64-bit size).
    hdr: [u8; 16],
    hdr_len: usize,
    /// Bytes of the current box's payload still to skip.
    skip: u64,
    pub counts: Mp4Counts,
}

/// Parses a response head. Ok(Some((head length, chunked))) once complete.
pub fn parse_head(buf: &[u8]) -> Result<Option<(usize, bool)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err("HTTP head too long".into());
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("HTTP {status}"));
    }
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok(Some((end + 4, chunked)))
}

impl Mp4Body {
    pub fn new(chunked: bool) -> Self {
        Mp4Body {
            chunked,
            chunk: Chunk::Size,
            line: Vec::new(),
            hdr: [0; 16],
            hdr_len: 0,
            skip: 0,
            counts: Mp4Counts::default(),
        }
    }

    /// Feeds body bytes as they arrive. Err on malformed framing; Ok(true) at the end of
    /// a chunked body.
    pub fn feed(&mut self, mut buf: &[u8]) -> Result<bool, String> {
        if !self.chunked {
            self.boxes(buf)?;
            return Ok(false);
        }
        while !buf.is_empty() {
            match self.chunk {
                Chunk::Done => return Ok(true),
                Chunk::Size => {
                    let nl = buf.iter().position(|&b| b == b'\n');
                    let take = nl.map_or(buf.len(), |i| i + 1);
                    self.line.extend_from_slice(&buf[..take]);
                    buf = &buf[take..];
                    if self.line.len() > MAX_CHUNK_LINE {
                        return Err("chunk size line too long".into());
                    }
                    if nl.is_some() {
                        let text = String::from_utf8_lossy(&self.line);
                        let hex = text.trim().split(';').next().unwrap_or("").trim();
                        let n = u64::from_str_radix(hex, 16)
                            .map_err(|_| format!("bad chunk size {hex:?}"))?;
                        self.line.clear();
                        self.chunk = if n == 0 { Chunk::Done } else { Chunk::Data(n) };
                    }
                }
                Chunk::Data(left) => {
                    let n = (left as usize).min(buf.len());
                    self.boxes(&buf[..n])?;
                    buf = &buf[n..];
                    self.chunk = if left as usize == n {
                        Chunk::Crlf(2)
                    } else {
                        Chunk::Data(left - n as u64)
                    };
                }
                Chunk::Crlf(left) => {
                    let n = (left as usize).min(buf.len());
                    buf = &buf[n..];
                    self.chunk = if left as usize == n {
                        Chunk::Size
                    } else {
                        Chunk::Crlf(left - n as u8)
                    };
                }
            }
        }
        Ok(self.chunk == Chunk::Done)
    }

    fn boxes(&mut self, mut buf: &[u8]) -> Result<(), String> {
        self.counts.bytes += buf.len() as u64;
        while !buf.is_empty() {
            if self.skip > 0 {
                let n = (self.skip as usize).min(buf.len());
                self.skip -= n as u64;
                buf = &buf[n..];
                continue;
            }
            // Collect the 8-byte header (16 with a 64-bit size).
            let want = if self.hdr_len >= 8 && self.hdr[..4] == [0, 0, 0, 1] {
                16
            } else {
                8
            };
            let n = (want - self.hdr_len).min(buf.len());
            self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&buf[..n]);
            self.hdr_len += n;
            buf = &buf[n..];
            if self.hdr_len < want {
                continue;
            }
            let small = u32::from_be_bytes(self.hdr[..4].try_into().unwrap()) as u64;
            if small == 1 && want == 8 {
                continue; // read the 64-bit size next
            }
            let size = if small == 1 {
                u64::from_be_bytes(self.hdr[8..16].try_into().unwrap())
            } else {
                small
            };
            if size < want as u64 {
                return Err(format!("bad box size {size}"));
            }
            self.counts.boxes += 1;
            if &self.hdr[4..8] == b"moof" {
                self.counts.fragments += 1;
            }
            self.skip = size - want as u64;
            self.hdr_len = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], payload: usize) -> Vec<u8> {
        let mut b = ((8 + payload) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(&vec![7u8; payload]);
        b
    }

    fn stream() -> Vec<u8> {
        let mut s = mp4_box(b"ftyp", 16);
        s.extend(mp4_box(b"moov", 300));
        for _ in 0..3 {
            s.extend(mp4_box(b"moof", 90));
            s.extend(mp4_box(b"mdat", 1000));
        }
        // A 64-bit-size box.
        s.extend_from_slice(&1u32.to_be_bytes());
        s.extend_from_slice(b"mdat");
        s.extend_from_slice(&(16u64 + 5).to_be_bytes());
        s.extend_from_slice(&[1, 2, 3, 4, 5]);
        s
    }

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut k = 0;
        while !rest.is_empty() {
            let n = sizes[k % sizes.len()].min(rest.len());
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            k += 1;
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn counts_fragments_at_every_split() {
        let body = stream();
        let want = Mp4Counts {
            bytes: body.len() as u64,
            fragments: 3,
            boxes: 9,
        };
        let wire = chunked(&body, &[100, 7, 1500]);
        for split in 0..wire.len() {
            let mut p = Mp4Body::new(true);
            p.feed(&wire[..split]).unwrap();
            assert!(p.feed(&wire[split..]).unwrap(), "split {split}");
            assert_eq!(p.counts, want, "split {split}");
        }
        for split in 0..body.len() {
            let mut p = Mp4Body::new(false);
            p.feed(&body[..split]).unwrap();
            p.feed(&body[split..]).unwrap();
            assert_eq!(p.counts, want, "plain split {split}");
        }
    }

    #[test]
    fn head_and_errors() {
        let ok =
            b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nTransfer-Encoding: chunked\r\n\r\nxx";
        assert_eq!(parse_head(ok).unwrap(), Some((ok.len() - 2, true)));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(parse_head(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(Mp4Body::new(true).feed(b"zz\r\n").is_err());
        assert!(Mp4Body::new(false)
            .feed(&[0, 0, 0, 3, b'm', b'o', b'o', b'f'])
            .is_err());
    }
}
