//! Annex-B H.264 / H.265 byte streams → access units stamped with their arrival time.
//!
//! The stream carries no timestamps, so an access unit is stamped with the time its first
//! start code was read. Its end is only known when the next one begins (H.264 7.4.1.2.3,
//! H.265 7.4.2.4.4): that is decided from the first bytes of the following NAL, so a unit is
//! handed on as soon as the next one's header arrives, not when the next one is complete.

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{h264, h265};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoCodec {
    H264,
    H265,
}

impl VideoCodec {
    pub fn nal_type(self, nal: &[u8]) -> u8 {
        match self {
            VideoCodec::H264 => h264::nal_type(nal),
            VideoCodec::H265 => h265::nal_type(nal),
        }
    }

    fn header_len(self) -> usize {
        match self {
            VideoCodec::H264 => 1,
            VideoCodec::H265 => 2,
        }
    }

    /// Access unit delimiters and filler data carry nothing a receiver needs; RTP marks
    /// access units by timestamp and marker bit instead.
    pub fn is_droppable(self, nal: &[u8]) -> bool {
        let t = self.nal_type(nal);
        match self {
            VideoCodec::H264 => t == h264::AUD || t == 12,
            VideoCodec::H265 => t == 35 || t == 38,
        }
    }

    fn is_vcl(self, t: u8) -> bool {
        match self {
            VideoCodec::H264 => (1..=5).contains(&t),
            VideoCodec::H265 => t < 32,
        }
    }

    fn is_keyframe(self, t: u8) -> bool {
        match self {
            VideoCodec::H264 => t == h264::IDR,
            VideoCodec::H265 => (h265::IRAP_FIRST..=h265::IRAP_LAST).contains(&t),
        }
    }

    /// Whether `nal` (at least its header plus one byte, when it has them) is the first NAL of
    /// a new access unit, assuming the current unit already holds a picture.
    fn starts_access_unit(self, nal: &[u8]) -> bool {
        let t = self.nal_type(nal);
        match self {
            // SEI, SPS, PPS, AUD, and prefix/SVC/reserved 14..=18; a slice whose
            // first_mb_in_slice is 0 (ue(v) coded: the first bit is 1).
            VideoCodec::H264 => match t {
                6..=9 | 14..=18 => true,
                1 | 2 | 5 => nal.get(1).is_some_and(|b| b & 0x80 != 0),
                _ => false,
            },
            // VPS, SPS, PPS, AUD, prefix SEI, reserved 41..=44 and 48..=55; a slice segment
            // with first_slice_segment_in_pic_flag.
            VideoCodec::H265 => match t {
                32..=35 | 39 | 41..=44 | 48..=55 => true,
                0..=31 => nal.get(2).is_some_and(|b| b & 0x80 != 0),
                _ => false,
            },
        }
    }
}

/// One coded picture with its parameter sets and SEI, AUD and filler removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessUnit {
    pub nals: Vec<Bytes>,
    /// Arrival time (µs) of the unit's first start code.
    pub time: u64,
    pub keyframe: bool,
}

/// Splits a pushed Annex-B byte stream into access units.
#[derive(Debug)]
pub(crate) struct AnnexBSplitter {
    codec: VideoCodec,
    /// Once synced: the NAL being read (after its start code), then unscanned bytes.
    /// Before: the last bytes seen, which may hold the start of a start code.
    buf: BytesMut,
    synced: bool,
    /// Where the search for the next start code resumes in `buf`.
    scan: usize,
    /// The NAL being read was already checked for starting an access unit.
    classified: bool,
    nal_time: u64,
    au: Vec<Bytes>,
    au_bytes: usize,
    /// An access unit has begun (possibly with only dropped NALs so far).
    au_open: bool,
    au_time: u64,
    au_has_picture: bool,
    au_keyframe: bool,
}

impl AnnexBSplitter {
    pub fn new(codec: VideoCodec) -> Self {
        AnnexBSplitter {
            codec,
            buf: BytesMut::new(),
            synced: false,
            scan: 0,
            classified: false,
            nal_time: 0,
            au: Vec::new(),
            au_bytes: 0,
            au_open: false,
            au_time: 0,
            au_has_picture: false,
            au_keyframe: false,
        }
    }

    /// Bytes held: the NAL being read and the access unit being collected.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.au_bytes
    }

    pub fn reset_buffers(&mut self) {
        *self = AnnexBSplitter::new(self.codec);
    }

    pub fn push(&mut self, data: &[u8], now: u64, out: &mut Vec<AccessUnit>) {
        self.buf.extend_from_slice(data);
        loop {
            if !self.synced {
                // Anything before the first start code is not a NAL.
                match find_start_code(&self.buf, 0) {
                    Some(at) => {
                        self.buf.advance(at + 3);
                        self.synced = true;
                        self.begin_nal(now);
                    }
                    None => {
                        let keep = self.buf.len().min(2);
                        self.buf.advance(self.buf.len() - keep);
                        return;
                    }
                }
            }
            if !self.classified && self.buf.len() > self.codec.header_len() {
                // Header plus one byte is all the decision needs (at most 3 bytes).
                let n = self.codec.header_len() + 1;
                let mut head = [0; 3];
                head[..n].copy_from_slice(&self.buf[..n]);
                self.classify(&head[..n], out);
            }
            match find_start_code(&self.buf, self.scan) {
                Some(at) => {
                    let nal = self.buf.split_to(at).freeze();
                    self.buf.advance(3);
                    self.end_nal(nal, out);
                    self.begin_nal(now);
                }
                None => {
                    self.scan = self.buf.len().saturating_sub(2);
                    return;
                }
            }
        }
    }

    /// End of input: what is buffered is the last NAL of the last access unit.
    pub fn finish(&mut self, out: &mut Vec<AccessUnit>) {
        if self.synced {
            let nal = self.buf.split().freeze();
            self.end_nal(nal, out);
            self.synced = false;
        }
        self.emit(out);
    }

    fn begin_nal(&mut self, now: u64) {
        self.nal_time = now;
        self.classified = false;
        self.scan = 0;
    }

    fn classify(&mut self, head: &[u8], out: &mut Vec<AccessUnit>) {
        self.classified = true;
        if self.au_has_picture && self.codec.starts_access_unit(head) {
            self.emit(out);
        }
        if !self.au_open {
            self.au_open = true;
            self.au_time = self.nal_time;
        }
        let t = self.codec.nal_type(head);
        self.au_has_picture |= self.codec.is_vcl(t);
        self.au_keyframe |= self.codec.is_keyframe(t);
    }

    fn end_nal(&mut self, nal: Bytes, out: &mut Vec<AccessUnit>) {
        // The zero before a 4-byte start code (and trailing_zero_8bits) ends up here.
        let len = nal.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
        if len == 0 {
            return;
        }
        let nal = nal.slice(..len);
        if !self.classified {
            self.classify(&nal, out);
        }
        if !self.codec.is_droppable(&nal) {
            self.au_bytes += nal.len();
            self.au.push(nal);
        }
    }

    fn emit(&mut self, out: &mut Vec<AccessUnit>) {
        if !self.au.is_empty() {
            out.push(AccessUnit {
                nals: std::mem::take(&mut self.au),
                time: self.au_time,
                keyframe: self.au_keyframe,
            });
        }
        self.au.clear();
        self.au_bytes = 0;
        self.au_open = false;
        self.au_has_picture = false;
        self.au_keyframe = false;
    }
}

/// Index of the first `00 00 01` starting at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from + 2;
    while i < data.len() {
        // Any byte above 1 at `i` rules out start codes ending at i, i+1 and i+2.
        if data[i] > 1 {
            i += 3;
        } else if data[i] == 1 && data[i - 1] == 0 && data[i - 2] == 0 {
            return Some(i - 2);
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    static H264: &[u8] = include_bytes!("fixtures/h264.h264");
    static H265: &[u8] = include_bytes!("fixtures/h265.hevc");

    fn split(codec: VideoCodec, data: &[u8], chunk: usize) -> Vec<AccessUnit> {
        let mut s = AnnexBSplitter::new(codec);
        let mut out = Vec::new();
        for (n, c) in data.chunks(chunk).enumerate() {
            s.push(c, n as u64, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn h264_fixture_access_units() {
        let aus = split(VideoCodec::H264, H264, 4096);
        assert_eq!(aus.len(), 50);
        let keys: Vec<usize> = (0..aus.len()).filter(|&i| aus[i].keyframe).collect();
        assert_eq!(keys, vec![0, 25]);
        // The first unit carries SPS, PPS, SEI and the IDR slice.
        let types: Vec<u8> = aus[0].nals.iter().map(|n| h264::nal_type(n)).collect();
        assert_eq!(types, vec![h264::SPS, h264::PPS, h264::SEI, h264::IDR]);
        // Everything but start codes survives: same NALs as a one-shot split.
        let all: Vec<Bytes> = aus.into_iter().flat_map(|a| a.nals).collect();
        assert_eq!(all, h264::nal_units(&Bytes::from_static(H264)));
    }

    #[test]
    fn h265_fixture_access_units() {
        let aus = split(VideoCodec::H265, H265, 1000);
        assert_eq!(aus.len(), 25);
        assert!(aus[0].keyframe && aus[1..].iter().all(|a| !a.keyframe));
        let types: Vec<u8> = aus[0].nals.iter().map(|n| h265::nal_type(n)).collect();
        assert_eq!(&types[..3], &[h265::VPS, h265::SPS, h265::PPS]);
    }

    #[test]
    fn any_chunking_gives_the_same_units() {
        let nals =
            |aus: Vec<AccessUnit>| -> Vec<Vec<Bytes>> { aus.into_iter().map(|a| a.nals).collect() };
        let reference = nals(split(VideoCodec::H264, H264, H264.len()));
        for chunk in [1, 2, 3, 5, 1399] {
            assert_eq!(
                nals(split(VideoCodec::H264, H264, chunk)),
                reference,
                "{chunk}"
            );
        }
    }

    #[test]
    fn time_is_first_start_code_arrival() {
        let mut s = AnnexBSplitter::new(VideoCodec::H264);
        let mut out = Vec::new();
        // AUD, slice (first_mb 0) at t=10; second half of the slice at t=20; next AUD at 30.
        s.push(
            &[0xaa, 0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 0x88, 1],
            10,
            &mut out,
        );
        s.push(&[2, 3], 20, &mut out);
        assert!(out.is_empty());
        s.push(&[0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x41, 0x9a], 30, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].time, 10);
        assert!(out[0].keyframe);
        assert_eq!(
            out[0].nals,
            vec![Bytes::from_static(&[0x65, 0x88, 1, 2, 3])]
        );
        // Second slice of the same picture (first_mb != 0) stays in the unit.
        s.push(&[0, 0, 1, 0x41, 0x1a, 0, 0, 1, 0x41, 0x9b], 40, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].time, 30);
        assert_eq!(out[1].nals.len(), 2);
        s.finish(&mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].time, 40);
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded() {
        let mut x = 0x9e37_79b9u32;
        for codec in [VideoCodec::H264, VideoCodec::H265] {
            let mut s = AnnexBSplitter::new(codec);
            let mut out = Vec::new();
            for len in 0..300 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        // Plenty of zeros and ones so start codes appear.
                        [0, 0, 1, x as u8][(x >> 8) as usize % 4]
                    })
                    .collect();
                s.push(&data, len, &mut out);
            }
            s.finish(&mut out);
            assert!(s.pending() == 0);
        }
        // Without a start code nothing accumulates.
        let mut s = AnnexBSplitter::new(VideoCodec::H264);
        s.push(&[0x55; 10_000], 0, &mut Vec::new());
        assert!(s.pending() <= 2);
    }
}
