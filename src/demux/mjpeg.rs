//! MJPEG byte streams → JPEG frames stamped with their arrival time.
//!
//! Handles JPEGs written back to back and multipart (`--boundary`, part headers, JPEG) alike:
//! between frames everything up to the next SOI is skipped, and part headers are text that
//! cannot contain one. A frame's end is found by walking its marker segments and then the
//! entropy-coded data, so an EOI inside an embedded thumbnail (APP1/Exif) does not cut it.
//! A frame with a broken segment length is dropped and the search goes on from where the
//! walk failed (so the work stays linear), which can cost the following frame too.

use bytes::{Buf, Bytes, BytesMut};

/// Largest frame collected; a bigger one is dropped and the search moves to the next SOI.
pub(crate) const MAX_FRAME: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JpegFrame {
    /// SOI through EOI.
    pub data: Bytes,
    /// Arrival time (µs) of the SOI.
    pub time: u64,
    /// Stream offset of the SOI, for error messages.
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for SOI; `buf` holds at most one byte (a 0xff that may start it).
    Seeking,
    /// In marker segments; the next marker is expected at this index of `buf`.
    Segments(usize),
    /// In entropy-coded data, scanned up to this index.
    Entropy(usize),
}

#[derive(Debug)]
pub(crate) struct MjpegSplitter {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    buf_offset: u64,
    state: State,
    frame_time: u64,
    /// Frames dropped as oversize or malformed.
    pub dropped: u64,
}

impl MjpegSplitter {
    pub fn new() -> Self {
        MjpegSplitter {
            buf: BytesMut::new(),
            buf_offset: 0,
            state: State::Seeking,
            frame_time: 0,
            dropped: 0,
        }
    }

    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn reset_buffers(&mut self) {
        self.skip(self.buf.len());
        self.state = State::Seeking;
    }

    pub fn push(&mut self, data: &[u8], now: u64, out: &mut Vec<JpegFrame>) {
        self.buf.extend_from_slice(data);
        loop {
            match self.state {
                State::Seeking => match self.buf.windows(2).position(|w| w == [0xff, 0xd8]) {
                    Some(at) => {
                        self.skip(at);
                        self.state = State::Segments(2);
                        self.frame_time = now;
                    }
                    None => {
                        let keep = usize::from(self.buf.last() == Some(&0xff));
                        self.skip(self.buf.len() - keep);
                        return;
                    }
                },
                State::Segments(pos) => {
                    let Some(&[first, marker]) = self.buf.get(pos..pos + 2) else {
                        return;
                    };
                    if first != 0xff {
                        self.drop_frame(pos);
                        continue;
                    }
                    match marker {
                        0xff => self.state = State::Segments(pos + 1), // fill byte
                        0x01 | 0xd0..=0xd7 => self.state = State::Segments(pos + 2),
                        // A new SOI: the frame so far was cut short.
                        0xd8 => self.drop_frame(pos),
                        // EOI before any scan: nothing to show.
                        0xd9 => self.drop_frame(pos + 2),
                        _ => {
                            let Some(&[hi, lo]) = self.buf.get(pos + 2..pos + 4) else {
                                return;
                            };
                            let len = usize::from(u16::from_be_bytes([hi, lo]));
                            if len < 2 {
                                self.drop_frame(pos + 2);
                                continue;
                            }
                            let next = pos + 2 + len;
                            self.state = if marker == 0xda {
                                State::Entropy(next)
                            } else {
                                State::Segments(next)
                            };
                        }
                    }
                }
                State::Entropy(pos) => {
                    // In entropy-coded data 0xff is followed by 0x00 (stuffing), a restart
                    // marker, or more 0xff fill; anything else is the next marker.
                    let found = self.buf.get(pos..).and_then(|tail| {
                        tail.windows(2).position(|w| {
                            w[0] == 0xff && !matches!(w[1], 0x00 | 0xd0..=0xd7 | 0xff)
                        })
                    });
                    match found {
                        Some(i) if self.buf[pos + i + 1] == 0xd9 => {
                            let end = pos + i + 2;
                            let data = self.buf.split_to(end).freeze();
                            out.push(JpegFrame {
                                data,
                                time: self.frame_time,
                                offset: self.buf_offset,
                            });
                            self.buf_offset += end as u64;
                            self.state = State::Seeking;
                        }
                        // Another segment (e.g. a further scan); checked when parsed.
                        Some(i) => self.state = State::Segments(pos + i),
                        None => {
                            self.state = State::Entropy(self.buf.len().saturating_sub(1).max(pos));
                            self.check_size();
                            return;
                        }
                    }
                }
            }
            self.check_size();
        }
    }

    fn check_size(&mut self) {
        if self.state != State::Seeking && self.buf.len() > MAX_FRAME {
            tracing::debug!("mjpeg: frame over {MAX_FRAME} bytes, dropped");
            let all = self.buf.len();
            self.drop_frame(all);
        }
    }

    /// Give up on the frame being collected and look for the next SOI from `at`.
    fn drop_frame(&mut self, at: usize) {
        self.dropped += 1;
        self.skip(at.min(self.buf.len()));
        self.state = State::Seeking;
    }

    fn skip(&mut self, n: usize) {
        self.buf.advance(n);
        self.buf_offset += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static RAW: &[u8] = include_bytes!("fixtures/raw.mjpeg");
    static MULTIPART: &[u8] = include_bytes!("fixtures/multipart.mjpeg");

    fn split(data: &[u8], chunk: usize) -> (Vec<JpegFrame>, u64) {
        let mut s = MjpegSplitter::new();
        let mut out = Vec::new();
        for (n, c) in data.chunks(chunk).enumerate() {
            s.push(c, n as u64, &mut out);
        }
        (out, s.dropped)
    }

    #[test]
    fn raw_and_multipart_give_the_same_frames() {
        let (raw, dropped) = split(RAW, 4096);
        assert_eq!((raw.len(), dropped), (5, 0));
        assert_eq!(raw.iter().map(|f| f.data.len()).sum::<usize>(), RAW.len());
        assert_eq!(raw[1].offset, raw[0].data.len() as u64);
        let (multi, dropped) = split(MULTIPART, 4096);
        assert_eq!((multi.len(), dropped), (5, 0));
        for (a, b) in raw.iter().zip(&multi) {
            assert_eq!(a.data, b.data);
            assert_eq!(&MULTIPART[b.offset as usize..][..b.data.len()], &b.data[..]);
        }
    }

    #[test]
    fn chunking_does_not_matter() {
        let (reference, _) = split(MULTIPART, MULTIPART.len());
        for chunk in [1, 2, 3, 1000] {
            assert_eq!(
                split(MULTIPART, chunk)
                    .0
                    .iter()
                    .map(|f| &f.data)
                    .collect::<Vec<_>>(),
                reference.iter().map(|f| &f.data).collect::<Vec<_>>(),
                "{chunk}"
            );
        }
        // Frame times are the arrival of the SOI (complete with its second byte).
        let (frames, _) = split(RAW, 1);
        assert_eq!(frames[2].time, frames[2].offset + 1);
    }

    #[test]
    fn embedded_eoi_in_app_segment_does_not_end_the_frame() {
        let first = &split(RAW, RAW.len()).0[0].data;
        let mut frame = first[..2].to_vec();
        // APP1 holding a tiny "thumbnail" with its own SOI/EOI.
        frame.extend_from_slice(&[0xff, 0xe1, 0, 8, 0xff, 0xd8, 0xff, 0xd9, 0, 0]);
        frame.extend_from_slice(&first[2..]);
        let (frames, dropped) = split(&frame, 7);
        assert_eq!((frames.len(), dropped), (1, 0));
        assert_eq!(frames[0].data, frame);
    }

    #[test]
    fn truncated_and_garbage_frames_are_dropped() {
        let frames = split(RAW, RAW.len()).0;
        // Cut short in its entropy-coded data, where the next SOI is seen.
        let mut data = frames[0].data[..frames[0].data.len() - 100].to_vec();
        data.extend_from_slice(b"junk\r\n");
        data.extend_from_slice(&frames[1].data);
        data.extend_from_slice(&[0xff, 0xd8, 0x12, 0x34]); // no marker after SOI
        data.extend_from_slice(&frames[2].data);
        let (got, dropped) = split(&data, 3);
        assert_eq!(got.len(), 2);
        assert_eq!(dropped, 2);
        assert_eq!(got[0].data, frames[1].data);
        assert_eq!(got[1].data, frames[2].data);
    }

    #[test]
    fn oversize_frame_is_dropped_and_memory_bounded() {
        let mut s = MjpegSplitter::new();
        let mut out = Vec::new();
        // SOI, SOS header, then endless entropy data.
        s.push(&[0xff, 0xd8, 0xff, 0xda, 0, 2], 0, &mut out);
        let chunk = vec![0x12; 64 * 1024];
        for _ in 0..(MAX_FRAME / chunk.len() + 2) {
            s.push(&chunk, 0, &mut out);
            assert!(s.pending() <= MAX_FRAME + chunk.len());
        }
        assert_eq!(s.dropped, 1);
        assert!(out.is_empty());
        s.push(&[0x55; 100], 0, &mut out);
        assert!(s.pending() <= 1);
    }
}
