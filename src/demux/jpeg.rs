//! JPEG over RTP (RFC 2435): header parsing and packetization.
//!
//! RFC 2435 does not carry the JPEG headers: the receiver rebuilds them from a type (0 for
//! 4:2:2, 1 for 4:2:0), the size in 8-pixel units, and quantization tables, assuming the
//! standard Huffman tables of ITU T.81 Annex K.3. So a frame is only sendable if it is
//! baseline, YCbCr with those samplings, and uses those Huffman tables; anything else is
//! refused with the reason rather than sent as a picture the receiver would decode wrong.

use std::ops::Range;

use bytes::Bytes;

use crate::rtp;

/// Static RTP payload type of JPEG (RFC 3551).
pub(crate) const PAYLOAD_TYPE: u8 = 26;
/// Q values of 128..=255 mean the tables are in-band; 255 says they may change every frame.
const Q_DYNAMIC: u8 = 255;
/// Width and height travel as a byte counting 8-pixel blocks.
const MAX_DIMENSION: u16 = 255 * 8;
const MAIN_HEADER_LEN: usize = 8;
const RESTART_HEADER_LEN: usize = 4;
const QUANT_HEADER_LEN: usize = 4;

/// Why a JPEG frame cannot be sent as RFC 2435.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JpegError {
    #[error("malformed JPEG: {0}")]
    Malformed(&'static str),
    #[error("not baseline sequential (SOF marker 0x{0:02x}, e.g. progressive)")]
    NotBaseline(u8),
    #[error("{0} color components; RFC 2435 needs 3 (YCbCr)")]
    Components(u8),
    #[error(
        "sampling Y {y:02x}, Cb {cb:02x}, Cr {cr:02x} (hv); RFC 2435 needs Y 2x1 (4:2:2) or 2x2 \
         (4:2:0) with chroma 1x1"
    )]
    Sampling { y: u8, cb: u8, cr: u8 },
    #[error("Huffman tables are not the standard ones (with ffmpeg: -huffman default)")]
    NonStandardHuffman,
    #[error("quantization table {0} is used but not defined, or Cb and Cr use different tables")]
    QuantTables(u8),
    #[error("{width}x{height} is over the RFC 2435 limit of 2040x2040")]
    TooLarge { width: u16, height: u16 },
}

/// What RFC 2435 needs from a frame's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JpegInfo {
    /// RFC 2435 type: 0 (4:2:2) or 1 (4:2:0), plus 64 when restart markers are used.
    pub kind: u8,
    pub width: u16,
    pub height: u16,
    pub restart_interval: u16,
    /// Quantization table header fields: a bit per table set when it has 16-bit entries, and
    /// the luma then chroma tables in zigzag order as in DQT.
    pub precision: u8,
    pub tables: Vec<u8>,
    /// The entropy-coded data after the SOS header, without the EOI marker.
    pub scan: Range<usize>,
}

/// A quantization table as defined in a DQT segment.
#[derive(Debug, Clone, Copy)]
struct QuantTable<'a> {
    sixteen_bit: bool,
    values: &'a [u8],
}

/// Parse the headers of one complete JPEG (SOI … EOI).
pub(crate) fn parse(frame: &[u8]) -> Result<JpegInfo, JpegError> {
    if !frame.starts_with(&[0xff, 0xd8]) {
        return Err(JpegError::Malformed("no SOI marker"));
    }
    let mut tables: [Option<QuantTable>; 4] = [None; 4];
    // (component id, sampling hv, quantization table)
    let mut components: Option<[(u8, u8, u8); 3]> = None;
    let mut size = (0, 0);
    let mut restart_interval = 0;
    let mut pos = 2;
    let scan_start = loop {
        let (marker, segment, next) = match frame.get(pos..) {
            Some([0xff, 0xff, ..]) => {
                pos += 1; // fill byte
                continue;
            }
            Some([0xff, 0x01 | 0xd0..=0xd7, ..]) => {
                pos += 2; // standalone markers
                continue;
            }
            Some([0xff, 0xd8 | 0xd9, ..]) => return Err(JpegError::Malformed("no SOS before EOI")),
            Some([0xff, marker, hi, lo, ..]) => {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let segment = len
                    .checked_sub(2)
                    .and_then(|n| frame.get(pos + 4..pos + 4 + n))
                    .ok_or(JpegError::Malformed("segment runs past the end"))?;
                (*marker, segment, pos + 2 + len)
            }
            _ => return Err(JpegError::Malformed("expected a marker")),
        };
        match marker {
            0xdb => parse_dqt(segment, &mut tables)?,
            0xc4 => check_dht(segment)?,
            0xc0 => {
                let [8, h_hi, h_lo, w_hi, w_lo, count, rest @ ..] = segment else {
                    return match segment.first() {
                        Some(8) | None => Err(JpegError::Malformed("short SOF0")),
                        Some(_) => Err(JpegError::Malformed("sample precision is not 8 bits")),
                    };
                };
                size = (
                    u16::from_be_bytes([*w_hi, *w_lo]),
                    u16::from_be_bytes([*h_hi, *h_lo]),
                );
                let &[y0, y1, y2, b0, b1, b2, r0, r1, r2] = rest else {
                    return Err(JpegError::Components(*count));
                };
                if *count != 3 {
                    return Err(JpegError::Components(*count));
                }
                components = Some([(y0, y1, y2), (b0, b1, b2), (r0, r1, r2)]);
            }
            // Other SOFn (DHT 0xc4, JPG 0xc8 and DAC 0xcc excluded above or below).
            0xc1..=0xcf if marker != 0xc8 && marker != 0xcc => {
                return Err(JpegError::NotBaseline(marker));
            }
            0xdd => {
                let [hi, lo, ..] = segment else {
                    return Err(JpegError::Malformed("short DRI"));
                };
                restart_interval = u16::from_be_bytes([*hi, *lo]);
            }
            0xda => {
                let comps = components.ok_or(JpegError::Malformed("SOS before SOF0"))?;
                check_sos(segment, &comps)?;
                break next;
            }
            _ => {} // APPn, COM and the like say nothing RFC 2435 carries
        }
        pos = next;
    };

    let [(_, y, yq), (_, cb, cq), (_, cr, crq)] =
        components.ok_or(JpegError::Malformed("no SOF0"))?;
    let kind = match (y, cb, cr) {
        (0x21, 0x11, 0x11) => 0,
        (0x22, 0x11, 0x11) => 1,
        _ => return Err(JpegError::Sampling { y, cb, cr }),
    };
    let (width, height) = size;
    if width == 0 || height == 0 {
        return Err(JpegError::Malformed("zero width or height"));
    }
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(JpegError::TooLarge { width, height });
    }
    if cq != crq {
        return Err(JpegError::QuantTables(crq));
    }
    let table = |id: u8| {
        tables
            .get(usize::from(id))
            .copied()
            .flatten()
            .ok_or(JpegError::QuantTables(id))
    };
    let (luma, chroma) = (table(yq)?, table(cq)?);
    let end = if frame.ends_with(&[0xff, 0xd9]) {
        frame.len() - 2
    } else {
        frame.len()
    };
    Ok(JpegInfo {
        kind: kind | if restart_interval != 0 { 64 } else { 0 },
        width,
        height,
        restart_interval,
        precision: u8::from(luma.sixteen_bit) | (u8::from(chroma.sixteen_bit) << 1),
        tables: [luma.values, chroma.values].concat(),
        scan: scan_start.min(end)..end,
    })
}

fn parse_dqt<'a>(
    mut segment: &'a [u8],
    tables: &mut [Option<QuantTable<'a>>; 4],
) -> Result<(), JpegError> {
    while let [pq_tq, rest @ ..] = segment {
        let (sixteen_bit, id) = (pq_tq >> 4, pq_tq & 0x0f);
        if sixteen_bit > 1 || id > 3 {
            return Err(JpegError::Malformed("bad DQT table"));
        }
        let (values, rest) = rest
            .split_at_checked(64 << sixteen_bit)
            .ok_or(JpegError::Malformed("short DQT"))?;
        tables[usize::from(id)] = Some(QuantTable {
            sixteen_bit: sixteen_bit == 1,
            values,
        });
        segment = rest;
    }
    Ok(())
}

/// Every table defined must be the Annex K.3 table for its class and id.
fn check_dht(mut segment: &[u8]) -> Result<(), JpegError> {
    while let [tc_th, rest @ ..] = segment {
        let counts = rest.get(..16).ok_or(JpegError::Malformed("short DHT"))?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let table = rest
            .get(..16 + total)
            .ok_or(JpegError::Malformed("short DHT"))?;
        let standard = match tc_th {
            0x00 => STD_DC_LUMA,
            0x01 => STD_DC_CHROMA,
            0x10 => STD_AC_LUMA,
            0x11 => STD_AC_CHROMA,
            _ => return Err(JpegError::NonStandardHuffman),
        };
        if table != standard {
            return Err(JpegError::NonStandardHuffman);
        }
        segment = &rest[16 + total..];
    }
    Ok(())
}

/// The scan must cover Y, Cb, Cr in frame order with Huffman tables 0 (luma) and 1 (chroma),
/// as the receiver's rebuilt headers will say.
fn check_sos(segment: &[u8], comps: &[(u8, u8, u8); 3]) -> Result<(), JpegError> {
    let [3, y, yt, cb, cbt, cr, crt, 0, 63, 0, ..] = segment else {
        return match segment.first() {
            Some(3) => Err(JpegError::Malformed("SOS is not one full baseline scan")),
            Some(&n) => Err(JpegError::Components(n)),
            None => Err(JpegError::Malformed("short SOS")),
        };
    };
    if [*y, *cb, *cr] != [comps[0].0, comps[1].0, comps[2].0] {
        return Err(JpegError::Malformed("SOS components differ from SOF0"));
    }
    if [*yt, *cbt, *crt] != [0x00, 0x11, 0x11] {
        return Err(JpegError::NonStandardHuffman);
    }
    Ok(())
}

/// RFC 2435 packetizer: Q=255 with the tables in the first packet of each frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JpegPacketizer {
    pub ssrc: u32,
    pub seq: u16,
    pub mtu: usize,
}

impl JpegPacketizer {
    /// Packetize one frame (`info` from [`parse`] of the same bytes) into complete RTP
    /// packets; the marker bit is set on the last one.
    pub fn packetize(&mut self, frame: &[u8], info: &JpegInfo, ts: u32, out: &mut Vec<Bytes>) {
        let data = frame.get(info.scan.clone()).unwrap_or_default();
        let restart = info.kind >= 64;
        let fixed =
            rtp::HEADER_LEN + MAIN_HEADER_LEN + if restart { RESTART_HEADER_LEN } else { 0 };
        let quant = QUANT_HEADER_LEN + info.tables.len();
        // Leave room for at least some data next to the headers whatever the MTU.
        let mtu = self.mtu.clamp(fixed + quant + 64, 65_535);
        let mut offset = 0;
        loop {
            let first = offset == 0;
            let room = mtu - fixed - if first { quant } else { 0 };
            let chunk = room.min(data.len() - offset);
            let last = offset + chunk == data.len();
            let mut p = Vec::with_capacity(fixed + if first { quant } else { 0 } + chunk);
            rtp::write_header(&mut p, PAYLOAD_TYPE, last, self.seq, ts, self.ssrc);
            self.seq = self.seq.wrapping_add(1);
            // Type-specific 0 (progressive frame), 24-bit fragment offset.
            p.push(0);
            p.extend_from_slice(&(offset as u32).to_be_bytes()[1..]);
            p.extend_from_slice(&[
                info.kind,
                Q_DYNAMIC,
                info.width.div_ceil(8) as u8,
                info.height.div_ceil(8) as u8,
            ]);
            if restart {
                // F and L set, count 0x3fff: fragments are not aligned to restart intervals.
                p.extend_from_slice(&info.restart_interval.to_be_bytes());
                p.extend_from_slice(&[0xff, 0xff]);
            }
            if first {
                p.extend_from_slice(&[0, info.precision]);
                p.extend_from_slice(&(info.tables.len() as u16).to_be_bytes());
                p.extend_from_slice(&info.tables);
            }
            p.extend_from_slice(&data[offset..offset + chunk]);
            out.push(p.into());
            offset += chunk;
            if last {
                return;
            }
        }
    }
}

/// ITU T.81 Annex K.3 tables as they appear in DHT: 16 code counts, then the symbols.
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

    static RAW: &[u8] = include_bytes!("fixtures/raw.mjpeg");
    static OPTIMAL_HUFFMAN: &[u8] = include_bytes!("fixtures/optimal_huffman.jpg");
    /// ffmpeg's yuvj422p is Y 2x2 with chroma 1x2, which RFC 2435 type 0 cannot describe.
    static FFMPEG_422: &[u8] = include_bytes!("fixtures/yuv422.jpg");

    fn first_frame() -> &'static [u8] {
        let end = RAW.windows(2).position(|w| w == [0xff, 0xd9]).unwrap() + 2;
        &RAW[..end]
    }

    /// Offset of the SOF0 sampling byte of the first component.
    fn y_sampling_offset(frame: &[u8]) -> usize {
        frame.windows(2).position(|w| w == [0xff, 0xc0]).unwrap() + 11
    }

    #[test]
    fn parses_ffmpeg_frame() {
        let frame = first_frame();
        let info = parse(frame).unwrap();
        assert_eq!((info.kind, info.width, info.height), (1, 160, 120));
        assert_eq!(info.restart_interval, 0);
        // ffmpeg writes one table used by all components: sent as luma and chroma.
        assert_eq!(info.precision, 0);
        assert_eq!(info.tables.len(), 128);
        assert_eq!(info.tables[..64], info.tables[64..]);
        assert_eq!(info.scan.end, frame.len() - 2);
        assert_eq!(&frame[info.scan.start - 14..][..2], &[0xff, 0xda]);
    }

    #[test]
    fn sampling_and_restart_types() {
        let mut frame = first_frame().to_vec();
        let at = y_sampling_offset(&frame);
        assert_eq!(frame[at], 0x22);
        frame[at] = 0x21;
        assert_eq!(parse(&frame).unwrap().kind, 0);
        frame[at] = 0x11;
        assert_eq!(
            parse(&frame),
            Err(JpegError::Sampling {
                y: 0x11,
                cb: 0x11,
                cr: 0x11
            })
        );
        frame[at] = 0x22;
        // Insert DRI (interval 4) right after SOI.
        frame.splice(2..2, [0xff, 0xdd, 0, 4, 0, 4]);
        let info = parse(&frame).unwrap();
        assert_eq!((info.kind, info.restart_interval), (65, 4));
    }

    #[test]
    fn refuses_what_rfc2435_cannot_carry() {
        assert_eq!(parse(OPTIMAL_HUFFMAN), Err(JpegError::NonStandardHuffman));
        assert_eq!(
            parse(FFMPEG_422),
            Err(JpegError::Sampling {
                y: 0x22,
                cb: 0x12,
                cr: 0x12
            })
        );
        let frame = first_frame();
        let sof = frame.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        let mut progressive = frame.to_vec();
        progressive[sof + 1] = 0xc2;
        assert_eq!(parse(&progressive), Err(JpegError::NotBaseline(0xc2)));
        let mut wide = frame.to_vec();
        wide[sof + 7..sof + 9].copy_from_slice(&2048u16.to_be_bytes());
        assert_eq!(
            parse(&wide),
            Err(JpegError::TooLarge {
                width: 2048,
                height: 120
            })
        );
        let mut no_table = frame.to_vec();
        no_table[y_sampling_offset(frame) + 1] = 2;
        assert_eq!(parse(&no_table), Err(JpegError::QuantTables(2)));
    }

    #[test]
    fn truncations_never_panic() {
        let frame = first_frame();
        let info = parse(frame).unwrap();
        for len in 0..info.scan.start {
            assert!(parse(&frame[..len]).is_err(), "truncated to {len}");
        }
        let mut x = 0x1234_5678u32;
        for i in 0..2000 {
            let mut f = frame[..info.scan.start + 16].to_vec();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let at = 2 + x as usize % (f.len() - 2);
            f[at] = (x >> 24) as u8 ^ (i as u8);
            let _ = parse(&f);
        }
    }

    #[test]
    fn packets() {
        let frame = first_frame();
        let info = parse(frame).unwrap();
        let mut p = JpegPacketizer {
            ssrc: 7,
            seq: 65535,
            mtu: 1200,
        };
        let mut out = Vec::new();
        p.packetize(frame, &info, 1234, &mut out);
        let data = &frame[info.scan.clone()];
        assert_eq!(out.len(), (data.len() + 4 + 128).div_ceil(1200 - 20));
        let mut rebuilt = Vec::new();
        for (k, pkt) in out.iter().enumerate() {
            assert!(pkt.len() <= 1200);
            let v = rtp::view(pkt).unwrap();
            assert_eq!((v.payload_type, v.timestamp, v.ssrc), (26, 1234, 7));
            assert_eq!(v.sequence, 65535u16.wrapping_add(k as u16));
            assert_eq!(v.marker, k == out.len() - 1);
            let payload = v.payload(pkt);
            let offset = u32::from_be_bytes([0, payload[1], payload[2], payload[3]]);
            assert_eq!(offset as usize, rebuilt.len());
            assert_eq!(&payload[4..8], &[1, 255, 20, 15]);
            let mut body = &payload[8..];
            if k == 0 {
                assert_eq!(&body[..4], &[0, 0, 0, 128]);
                assert_eq!(&body[4..132], &info.tables[..]);
                body = &body[132..];
            }
            rebuilt.extend_from_slice(body);
        }
        assert_eq!(rebuilt, data);
        assert_eq!(p.seq, 65535u16.wrapping_add(out.len() as u16));
        assert!(crate::codec::starts_keyframe(
            crate::codec::CodecKind::Mjpeg,
            rtp::view(&out[0]).unwrap().payload(&out[0])
        ));
    }

    #[test]
    fn restart_header_and_tiny_mtu() {
        let mut frame = first_frame().to_vec();
        frame.splice(2..2, [0xff, 0xdd, 0, 4, 0, 4]);
        let info = parse(&frame).unwrap();
        let mut p = JpegPacketizer {
            ssrc: 1,
            seq: 0,
            mtu: 0,
        };
        let mut out = Vec::new();
        p.packetize(&frame, &info, 0, &mut out);
        let total: usize = out
            .iter()
            .enumerate()
            .map(|(k, pkt)| {
                let payload = &pkt[rtp::HEADER_LEN..];
                assert_eq!(&payload[8..12], &[0, 4, 0xff, 0xff]);
                payload.len() - 12 - if k == 0 { 132 } else { 0 }
            })
            .sum();
        assert_eq!(total, info.scan.len());
    }
}
