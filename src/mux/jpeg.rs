//! RFC 2435 JPEG depacketizing: the scan data comes over RTP, the headers are rebuilt from
//! the type, size and quantization tables (in-band, or derived from Q), with the standard
//! Huffman tables of ITU T.81 K.3 (the ones RFC 2435 assumes).

use bytes::Bytes;

use crate::codec::h264::MAX_ACCESS_UNIT;

const MAIN_HEADER_LEN: usize = 8;
const RESTART_HEADER_LEN: usize = 4;
/// Q values from here on carry their tables in-band.
const Q_IN_BAND: u8 = 128;
/// Q=255 tables may change every frame, so they are never cached.
const Q_DYNAMIC: u8 = 255;

/// A rebuilt JPEG file and the RTP timestamp of its packets.
#[derive(Debug)]
pub(crate) struct Jpeg {
    pub timestamp: u32,
    pub data: Bytes,
}

/// What the first packet of a frame says about it.
#[derive(Debug, Clone)]
struct FrameHeader {
    /// RFC 2435 type with the restart bit (64) cleared: 0 = 4:2:2, 1 = 4:2:0.
    kind: u8,
    width: u16,
    height: u16,
    restart_interval: u16,
    /// Bit 0: luma table has 16-bit entries; bit 1: chroma.
    precision: u8,
    /// Luma then chroma table, zigzag order, as DQT carries them.
    tables: Vec<u8>,
}

/// Reassembles RFC 2435 frames. A frame is emitted on its marker bit when every fragment
/// arrived in order; a gap in the fragment offsets, a frame without its first fragment, or
/// one over [`MAX_ACCESS_UNIT`] is dropped.
#[derive(Debug, Default)]
pub(crate) struct JpegDepacketizer {
    timestamp: Option<u32>,
    header: Option<FrameHeader>,
    scan: Vec<u8>,
    discard: bool,
    /// Tables sent once for a Q in 128..=254 and then referred to by Q alone.
    cached: Vec<(u8, u8, Vec<u8>)>,
}

impl JpegDepacketizer {
    /// Forget the frame in progress (cached tables stay: they belong to the Q value).
    pub(crate) fn reset(&mut self) {
        self.timestamp = None;
        self.header = None;
        self.scan.clear();
        self.discard = false;
    }

    pub(crate) fn push(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Option<Jpeg> {
        if self.timestamp != Some(timestamp) {
            // A frame whose marker never came is incomplete.
            self.reset();
            self.timestamp = Some(timestamp);
        }
        if !self.discard && self.append(payload).is_none() {
            tracing::debug!(
                timestamp,
                "mux: dropping malformed or incomplete JPEG frame"
            );
            self.discard = true;
            self.scan.clear();
        }
        if !marker {
            return None;
        }
        self.timestamp = None;
        let header = self.header.take()?;
        if self.discard || self.scan.is_empty() {
            return None;
        }
        let scan = std::mem::take(&mut self.scan);
        Some(Jpeg {
            timestamp,
            data: build_jpeg(&header, &scan).into(),
        })
    }

    /// Take one packet's payload; None means the frame is broken.
    fn append(&mut self, payload: &[u8]) -> Option<()> {
        let main = payload.get(..MAIN_HEADER_LEN)?;
        let offset = u32::from_be_bytes([0, main[1], main[2], main[3]]) as usize;
        let (kind, q, width, height) = (main[4], main[5], main[6], main[7]);
        if !matches!(kind & !64, 0 | 1) || width == 0 || height == 0 {
            return None;
        }
        let mut rest = &payload[MAIN_HEADER_LEN..];
        let mut restart_interval = 0;
        if kind & 64 != 0 {
            let header = rest.get(..RESTART_HEADER_LEN)?;
            restart_interval = u16::from_be_bytes([header[0], header[1]]);
            rest = &rest[RESTART_HEADER_LEN..];
        }
        if offset == 0 {
            let (precision, tables) = if q >= Q_IN_BAND {
                let [_, precision, hi, lo, body @ ..] = rest else {
                    return None;
                };
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let data = body.get(..len)?;
                rest = &body[len..];
                if len == 0 {
                    let (_, p, t) = self.cached.iter().find(|(cq, _, _)| *cq == q)?;
                    (*p, t.clone())
                } else {
                    let tables = split_tables(*precision, data)?;
                    if q != Q_DYNAMIC && !self.cached.iter().any(|(cq, _, _)| *cq == q) {
                        self.cached.push((q, *precision, tables.clone()));
                    }
                    (*precision, tables)
                }
            } else {
                (0, q_tables(q))
            };
            self.header = Some(FrameHeader {
                kind: kind & !64,
                width: u16::from(width) * 8,
                height: u16::from(height) * 8,
                restart_interval,
                precision,
                tables,
            });
        }
        // Fragments must arrive in order, each starting where the last ended.
        if self.header.is_none() || offset != self.scan.len() {
            return None;
        }
        if self.scan.len() + rest.len() > MAX_ACCESS_UNIT {
            return None;
        }
        self.scan.extend_from_slice(rest);
        Some(())
    }
}

/// In-band tables as luma and chroma; a single table serves both.
fn split_tables(precision: u8, data: &[u8]) -> Option<Vec<u8>> {
    let luma_len = 64 << (precision & 1);
    let chroma_len = 64 << ((precision >> 1) & 1);
    if data.len() == luma_len + chroma_len {
        Some(data.to_vec())
    } else if data.len() == luma_len && luma_len == chroma_len {
        Some([data, data].concat())
    } else {
        None
    }
}

/// RFC 2435 appendix A: the T.81 K.1 example tables scaled by Q (1..=99), zigzag order.
fn q_tables(q: u8) -> Vec<u8> {
    let factor = u32::from(q.clamp(1, 99));
    let scale = if factor < 50 {
        5000 / factor
    } else {
        200 - factor * 2
    };
    STD_LUMA_QUANT
        .iter()
        .chain(STD_CHROMA_QUANT.iter())
        .map(|&v| ((u32::from(v) * scale + 50) / 100).clamp(1, 255) as u8)
        .collect()
}

/// SOI, DQT, DRI, SOF0, DHT, SOS as RFC 2435 appendix B makes them, then the scan and EOI.
fn build_jpeg(h: &FrameHeader, scan: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(scan.len() + 700);
    out.extend_from_slice(&[0xff, 0xd8]);
    let luma_len = 64 << (h.precision & 1);
    let (luma, chroma) = h.tables.split_at(luma_len.min(h.tables.len()));
    let dqt_len = 2 + 1 + luma.len() + 1 + chroma.len();
    out.extend_from_slice(&[0xff, 0xdb]);
    out.extend_from_slice(&(dqt_len as u16).to_be_bytes());
    out.push((h.precision & 1) << 4);
    out.extend_from_slice(luma);
    out.push((((h.precision >> 1) & 1) << 4) | 1);
    out.extend_from_slice(chroma);
    if h.restart_interval != 0 {
        out.extend_from_slice(&[0xff, 0xdd, 0, 4]);
        out.extend_from_slice(&h.restart_interval.to_be_bytes());
    }
    out.extend_from_slice(&[0xff, 0xc0, 0, 17, 8]);
    out.extend_from_slice(&h.height.to_be_bytes());
    out.extend_from_slice(&h.width.to_be_bytes());
    let luma_sampling = if h.kind == 0 { 0x21 } else { 0x22 };
    out.extend_from_slice(&[3, 1, luma_sampling, 0, 2, 0x11, 1, 3, 0x11, 1]);
    let dht_len =
        2 + 4 + STD_DC_LUMA.len() + STD_AC_LUMA.len() + STD_DC_CHROMA.len() + STD_AC_CHROMA.len();
    out.extend_from_slice(&[0xff, 0xc4]);
    out.extend_from_slice(&(dht_len as u16).to_be_bytes());
    for (class_id, table) in [
        (0x00, STD_DC_LUMA),
        (0x10, STD_AC_LUMA),
        (0x01, STD_DC_CHROMA),
        (0x11, STD_AC_CHROMA),
    ] {
        out.push(class_id);
        out.extend_from_slice(table);
    }
    out.extend_from_slice(&[0xff, 0xda, 0, 12, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
    out.extend_from_slice(scan);
    if !scan.ends_with(&[0xff, 0xd9]) {
        out.extend_from_slice(&[0xff, 0xd9]);
    }
    out
}

/// ITU T.81 K.1 quantization tables in zigzag order.
const STD_LUMA_QUANT: [u8; 64] = [
    16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35, 37,
    29, 40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81,
    87, 95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
];
const STD_CHROMA_QUANT: [u8; 64] = [
    17, 18, 18, 24, 21, 24, 47, 26, 26, 47, 99, 66, 56, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

// ITU T.81 K.3 Huffman tables as DHT carries them: 16 code counts, then the symbols. The same
// tables as `demux::jpeg` checks for (private there).
const STD_DC_LUMA: &[u8] = &[
    0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, //
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
];
const STD_DC_CHROMA: &[u8] = &[
    0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, //
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
];
const STD_AC_LUMA: &[u8] = &[
    0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d, //
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];
const STD_AC_CHROMA: &[u8] = &[
    0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77, //
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
    0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];

#[cfg(test)]
mod tests {
    use super::*;

    static RAW: &[u8] = include_bytes!("../demux/fixtures/raw.mjpeg");

    /// The first frame of the fixture (ffmpeg, 160x120 4:2:0, standard Huffman tables).
    fn first_frame() -> &'static [u8] {
        let end = RAW.windows(2).position(|w| w == [0xff, 0xd9]).unwrap() + 2;
        &RAW[..end]
    }

    /// Body of the first segment with this marker.
    fn segment(jpeg: &[u8], marker: u8) -> &[u8] {
        let at = jpeg.windows(2).position(|w| w == [0xff, marker]).unwrap();
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        &jpeg[at + 4..at + 2 + len]
    }

    /// The entropy-coded data after SOS, without EOI.
    fn scan(jpeg: &[u8]) -> &[u8] {
        let sos = segment(jpeg, 0xda);
        let start = sos.as_ptr() as usize - jpeg.as_ptr() as usize + sos.len();
        &jpeg[start..jpeg.len() - 2]
    }

    /// RFC 2435 payloads for a scan: `chunk` bytes each, tables (Q >= 128) in the first.
    fn payloads(scan: &[u8], kind: u8, q: u8, tables: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        scan.chunks(chunk)
            .enumerate()
            .map(|(k, c)| {
                let offset = (k * chunk) as u32;
                let mut p = vec![0];
                p.extend_from_slice(&offset.to_be_bytes()[1..]);
                p.extend_from_slice(&[kind, q, 20, 15]);
                if kind & 64 != 0 {
                    p.extend_from_slice(&[0, 4, 0xff, 0xff]);
                }
                if offset == 0 && q >= 128 {
                    p.extend_from_slice(&[0, 0]);
                    p.extend_from_slice(&(tables.len() as u16).to_be_bytes());
                    p.extend_from_slice(tables);
                }
                p.extend_from_slice(c);
                p
            })
            .collect()
    }

    fn run(d: &mut JpegDepacketizer, ts: u32, packets: &[Vec<u8>]) -> Option<Jpeg> {
        let mut got = None;
        for (k, p) in packets.iter().enumerate() {
            let r = d.push(ts, k == packets.len() - 1, p);
            assert!(r.is_none() || k == packets.len() - 1);
            got = got.or(r);
        }
        got
    }

    #[test]
    fn rebuilds_the_fixture_frame() {
        let frame = first_frame();
        let table = &segment(frame, 0xdb)[1..65];
        let tables = [table, table].concat();
        let packets = payloads(scan(frame), 1, 255, &tables, 1000);
        assert!(packets.len() > 2);
        let jpeg = run(&mut JpegDepacketizer::default(), 77, &packets).unwrap();
        assert_eq!(jpeg.timestamp, 77);
        let data = &jpeg.data[..];
        assert!(data.starts_with(&[0xff, 0xd8]) && data.ends_with(&[0xff, 0xd9]));
        assert_eq!(scan(data), scan(frame));
        let dqt = segment(data, 0xdb);
        assert_eq!((&dqt[1..65], &dqt[66..130]), (table, table));
        let sof = segment(data, 0xc0);
        assert_eq!(&sof[..5], &[8, 0, 120, 0, 160]);
        assert_eq!(sof[7], 0x22);
        // Same Huffman tables as the original, which used the standard ones.
        assert_eq!(segment(data, 0xc4).len(), 4 + 28 + 28 + 178 + 178);
    }

    #[test]
    fn tables_from_q_and_cache() {
        assert_eq!(&q_tables(50)[..64], &STD_LUMA_QUANT);
        assert_eq!(&q_tables(50)[64..], &STD_CHROMA_QUANT);
        assert!(q_tables(99).iter().all(|&v| v >= 1));
        assert!(q_tables(1).iter().all(|&v| v == 255 || v > 100));
        let frame = first_frame();
        let mut d = JpegDepacketizer::default();
        let jpeg = run(&mut d, 1, &payloads(scan(frame), 0, 80, &[], 500)).unwrap();
        let dqt = segment(&jpeg.data, 0xdb);
        assert_eq!(&dqt[1..65], &q_tables(80)[..64]);
        assert_eq!(segment(&jpeg.data, 0xc0)[7], 0x21);
        // Q=200 tables once, then by reference; restart markers (type 65) add DRI.
        let tables: Vec<u8> = (1..=128).collect();
        assert!(run(&mut d, 2, &payloads(scan(frame), 65, 200, &tables, 500)).is_some());
        let jpeg = run(&mut d, 3, &payloads(scan(frame), 65, 200, &[], 500)).unwrap();
        assert_eq!(&segment(&jpeg.data, 0xdb)[1..65], &tables[..64]);
        assert_eq!(segment(&jpeg.data, 0xdd), &[0, 4]);
        // Q=255 is never cached.
        assert!(run(&mut d, 4, &payloads(scan(frame), 1, 255, &tables, 500)).is_some());
        assert!(run(&mut d, 5, &payloads(scan(frame), 1, 255, &[], 500)).is_none());
    }

    #[test]
    fn broken_frames_are_dropped() {
        let frame = first_frame();
        let good = payloads(scan(frame), 1, 50, &[], 400);
        let mut d = JpegDepacketizer::default();
        // Lost first fragment, lost middle fragment, reordered fragments.
        assert!(run(&mut d, 1, &good[1..]).is_none());
        let mut gap = good.clone();
        gap.remove(2);
        assert!(run(&mut d, 2, &gap).is_none());
        let mut swapped = good.clone();
        swapped.swap(1, 2);
        assert!(run(&mut d, 3, &swapped).is_none());
        // A frame whose marker never came, then a good one.
        for p in &good[..3] {
            assert!(d.push(4, false, p).is_none());
        }
        assert!(run(&mut d, 5, &good).is_some());
        // Malformed headers: short, unknown type, zero size, short tables and restart header.
        let bad: [&[u8]; 7] = [
            &[],
            &[0, 0, 0, 0, 1, 50, 20],
            &[0, 0, 0, 0, 7, 50, 20, 15, 1],
            &[0, 0, 0, 0, 1, 50, 0, 15, 1],
            &[0, 0, 0, 0, 1, 255, 20, 15, 0, 0, 0, 128, 1, 2],
            &[0, 0, 0, 0, 1, 255, 20, 15, 0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7],
            &[0, 0, 0, 0, 65, 50, 20, 15, 0, 4],
        ];
        for (k, p) in bad.iter().enumerate() {
            assert!(d.push(10 + k as u32, true, p).is_none(), "case {k}");
        }
        assert!(run(&mut d, 20, &good).is_some());
    }

    /// Writes the fixture frame and its RTP round trip (Q=255 and Q=50) for comparing with
    /// `ffmpeg -i … -f framemd5 -`.
    #[test]
    #[ignore]
    fn files_for_ffmpeg() {
        let dir = std::path::Path::new("/tmp/corecast-mux");
        std::fs::create_dir_all(dir).unwrap();
        let frame = first_frame();
        let table = &segment(frame, 0xdb)[1..65];
        let tables = [table, table].concat();
        let mut d = JpegDepacketizer::default();
        let in_band = run(&mut d, 1, &payloads(scan(frame), 1, 255, &tables, 1000)).unwrap();
        let derived = run(&mut d, 2, &payloads(scan(frame), 1, 50, &[], 1000)).unwrap();
        std::fs::write(dir.join("orig.jpg"), frame).unwrap();
        std::fs::write(dir.join("rtp.jpg"), &in_band.data).unwrap();
        std::fs::write(dir.join("rtp_q50.jpg"), &derived.data).unwrap();
    }
}
