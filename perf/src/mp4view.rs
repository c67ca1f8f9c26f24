//! `stream.mp4` viewers: the HTTP response head, then the body (chunked or delimited by
//! the close) walked as ISO-BMFF boxes, counting bytes and `moof` fragments. Streaming:
//! any split of the input gives the same counts; nothing is buffered but a box header.

/// Longest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest chunk-size line accepted (hex digits, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 256;
/// `moov` and `moof` boxes up to this size are kept whole and parsed (track types, video
/// samples); larger ones are only counted.
const MAX_PARSED_BOX: u64 = 256 * 1024;

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
    /// Video samples (frames): `trun` sample counts of the video track's `traf`s, the
    /// video track known from the init segment's `moov` (`hdlr` = `vide`).
    pub video_frames: u64,
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
    /// A `moov`/`moof` being collected (its type and payload so far, and size).
    keep: Option<([u8; 4], Vec<u8>, usize)>,
    video_track: Option<u32>,
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
            keep: None,
            video_track: None,
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
                if let Some((kind, data, want)) = self.keep.as_mut() {
                    data.extend_from_slice(&buf[..n]);
                    if data.len() == *want {
                        let (kind, data) = (*kind, std::mem::take(data));
                        self.keep = None;
                        self.parsed(&kind, &data);
                    }
                }
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
            let kind: [u8; 4] = self.hdr[4..8].try_into().unwrap();
            if &kind == b"moof" {
                self.counts.fragments += 1;
            }
            self.skip = size - want as u64;
            self.hdr_len = 0;
            if (&kind == b"moof" || &kind == b"moov") && self.skip <= MAX_PARSED_BOX {
                if self.skip == 0 {
                    self.parsed(&kind, &[]);
                } else {
                    let n = self.skip as usize;
                    self.keep = Some((kind, Vec::with_capacity(n), n));
                }
            }
        }
        Ok(())
    }

    /// A whole `moov` (learn the video track) or `moof` (count its video samples).
    fn parsed(&mut self, kind: &[u8; 4], payload: &[u8]) {
        if kind == b"moov" {
            for (k, trak) in children(payload) {
                if k != *b"trak" {
                    continue;
                }
                let mut id = None;
                let mut video = false;
                for (k, b) in children(trak) {
                    if k == *b"tkhd" && !b.is_empty() {
                        // version 1: 8-byte times; then the track ID.
                        let at = if b[0] == 1 { 4 + 16 } else { 4 + 8 };
                        id = be32(b, at);
                    }
                    if k == *b"mdia" {
                        for (k, h) in children(b) {
                            if k == *b"hdlr" && h.get(8..12) == Some(b"vide") {
                                video = true;
                            }
                        }
                    }
                }
                if video && self.video_track.is_none() {
                    self.video_track = id;
                }
            }
            return;
        }
        for (k, traf) in children(payload) {
            if k != *b"traf" {
                continue;
            }
            let mut track = None;
            let mut samples = 0u64;
            for (k, b) in children(traf) {
                if k == *b"tfhd" {
                    track = be32(b, 4);
                }
                if k == *b"trun" {
                    samples += be32(b, 4).unwrap_or(0) as u64;
                }
            }
            if track.is_some() && track == self.video_track {
                self.counts.video_frames += samples;
            }
        }
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The child boxes of a container payload (32-bit sizes; stops at anything malformed).
fn children(mut b: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size = be32(b, 0)? as usize;
        let kind: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        if size < 8 || size > b.len() {
            return None;
        }
        let payload = &b[8..size];
        b = &b[size..];
        Some((kind, payload))
    })
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

    fn wrap(kind: &[u8; 4], parts: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = parts.concat();
        let mut b = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend(body);
        b
    }

    fn trak(id: u32, handler: &[u8; 4]) -> Vec<u8> {
        let mut tkhd = vec![0u8; 12];
        tkhd.extend_from_slice(&id.to_be_bytes());
        tkhd.extend_from_slice(&[0; 60]);
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0; 13]);
        wrap(
            b"trak",
            &[
                wrap(b"tkhd", &[tkhd]),
                wrap(b"mdia", &[wrap(b"hdlr", &[hdlr])]),
            ],
        )
    }

    fn traf(id: u32, samples: u32) -> Vec<u8> {
        let mut tfhd = vec![0u8; 4];
        tfhd.extend_from_slice(&id.to_be_bytes());
        let mut trun = vec![0u8; 4];
        trun.extend_from_slice(&samples.to_be_bytes());
        trun.extend_from_slice(&[0; 8]);
        wrap(b"traf", &[wrap(b"tfhd", &[tfhd]), wrap(b"trun", &[trun])])
    }

    fn stream() -> Vec<u8> {
        let mut s = mp4_box(b"ftyp", 16);
        // Audio first, so the video track is found by its handler, not its position.
        s.extend(wrap(b"moov", &[trak(2, b"soun"), trak(1, b"vide")]));
        for _ in 0..3 {
            s.extend(wrap(
                b"moof",
                &[mp4_box(b"mfhd", 8), traf(1, 1), traf(2, 2)],
            ));
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
            video_frames: 3,
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
