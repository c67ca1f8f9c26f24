//! Recognising what a program writes to stdout from its first bytes.

use super::ts::{PACKET_LEN, SYNC};
use super::{DemuxError, Format};

/// Most bytes [`detect`] looks at; by then it has decided.
pub const DETECT_LIMIT: usize = 4096;
/// Sync bytes in a row that make a stream MPEG-TS.
const TS_SYNCS: usize = 3;

/// Sniff the first bytes of a stream.
///
/// - MPEG-TS: 0x47 at offsets 0, 188 and 376.
/// - Annex-B: zeros and 0x01, then a NAL header. H.265 when the header is a VPS, SPS, PPS, AUD
///   or SEI on layer 0 (a stream typically starts `40 01`); H.264 when it is a plausible
///   first NAL (SPS, PPS, AUD, SEI, IDR or non-IDR slice with a consistent nal_ref_idc).
/// - MJPEG: a JPEG SOI (`FF D8 FF`), or a multipart part (`--boundary`) whose Content-Type
///   is image/jpeg.
///
/// Returns None while more bytes are needed (never beyond [`DETECT_LIMIT`]), and an error
/// naming the first bytes when the stream is none of these.
pub fn detect(prefix: &[u8]) -> Option<Result<Format, DemuxError>> {
    match sniff(prefix) {
        None if prefix.len() >= DETECT_LIMIT => Some(Err(unrecognized(prefix))),
        decision => decision,
    }
}

fn sniff(prefix: &[u8]) -> Option<Result<Format, DemuxError>> {
    let first = *prefix.first()?;
    let unrecognized = || Some(Err(unrecognized(prefix)));
    match first {
        SYNC => {
            let needed = (TS_SYNCS - 1) * PACKET_LEN + 1;
            let syncs = (0..TS_SYNCS).filter_map(|i| prefix.get(i * PACKET_LEN));
            if syncs.clone().any(|&b| b != SYNC) {
                unrecognized()
            } else if prefix.len() < needed {
                None
            } else {
                Some(Ok(Format::MpegTs))
            }
        }
        0xff => match prefix {
            [_, 0xd8, 0xff, ..] => Some(Ok(Format::Mjpeg)),
            [_] | [_, 0xd8] => None,
            _ => unrecognized(),
        },
        0x00 => annexb(prefix),
        b'-' | b'\r' | b'\n' => multipart(prefix),
        _ => unrecognized(),
    }
}

fn annexb(prefix: &[u8]) -> Option<Result<Format, DemuxError>> {
    let zeros = prefix.iter().take_while(|&&b| b == 0).count();
    if zeros == prefix.len() {
        return if zeros >= DETECT_LIMIT {
            Some(Err(unrecognized(prefix)))
        } else {
            None
        };
    }
    if zeros < 2 || prefix[zeros] != 0x01 {
        return Some(Err(unrecognized(prefix)));
    }
    let (b0, b1) = match prefix.get(zeros + 1..zeros + 3)? {
        &[b0, b1] => (b0, b1),
        _ => return None,
    };
    if plausible_h265(b0, b1) {
        Some(Ok(Format::AnnexBH265))
    } else if plausible_h264(b0) {
        Some(Ok(Format::AnnexBH264))
    } else {
        Some(Err(unrecognized(prefix)))
    }
}

/// VPS..=suffix SEI (32..=40) with forbidden bit 0, nuh_layer_id 0, TemporalId+1 nonzero.
fn plausible_h265(b0: u8, b1: u8) -> bool {
    let nal_type = (b0 >> 1) & 0x3f;
    b0 & 0x80 == 0
        && (32..=40).contains(&nal_type)
        && b0 & 0x01 == 0
        && b1 >> 3 == 0
        && b1 & 0x07 != 0
}

/// A NAL an H.264 stream can start with, with the nal_ref_idc the spec requires of it
/// (nonzero for SPS, PPS and IDR; zero for SEI and AUD).
fn plausible_h264(b0: u8) -> bool {
    let ref_idc = (b0 >> 5) & 0x03;
    b0 & 0x80 == 0
        && match b0 & 0x1f {
            5 | 7 | 8 => ref_idc != 0,
            6 | 9 => ref_idc == 0,
            1 => true,
            _ => false,
        }
}

/// `--boundary` then part headers; decided by the first part's Content-Type.
fn multipart(prefix: &[u8]) -> Option<Result<Format, DemuxError>> {
    let start = prefix.iter().position(|b| !b"\r\n".contains(b));
    let Some(start) = start else {
        return (prefix.len() >= DETECT_LIMIT).then(|| Err(unrecognized(prefix)));
    };
    let text = &prefix[start..];
    match text {
        [b'-'] => return None,
        [b'-', b'-', ..] => {}
        _ => return Some(Err(unrecognized(prefix))),
    }
    // The earliest blank line ends the headers, whichever line ending it uses: preferring
    // CRLF CRLF wherever it is would let more bytes move the end past an earlier LF LF and
    // change the answer (fuzz finding, see the test `more_bytes_keep_the_answer`). The
    // earliest end stays the earliest as bytes arrive: a CRLF CRLF cannot straddle an LF LF.
    let crlf = find(text, b"\r\n\r\n");
    let lf = find(text, b"\n\n");
    let headers_end = match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let Some(headers_end) = headers_end else {
        return (prefix.len() >= DETECT_LIMIT).then(|| Err(unrecognized(prefix)));
    };
    // Headers are ASCII; anything else is not multipart.
    let Ok(headers) = std::str::from_utf8(&text[..headers_end]) else {
        return Some(Err(unrecognized(prefix)));
    };
    let content_type = headers.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-type")
            .then(|| value.trim())
    });
    match content_type {
        Some(ct) if ct.to_ascii_lowercase().starts_with("image/jpeg") => Some(Ok(Format::Mjpeg)),
        Some(ct) => Some(Err(DemuxError::NotJpegMultipart {
            content_type: ct.to_owned(),
        })),
        // No Content-Type: the body itself says.
        None => {
            let body = &text[headers_end..];
            let body = &body[body
                .iter()
                .position(|b| !b"\r\n".contains(b))
                .unwrap_or(body.len())..];
            match body {
                [0xff, 0xd8, 0xff, ..] => Some(Ok(Format::Mjpeg)),
                [] | [0xff] | [0xff, 0xd8] => None,
                _ => Some(Err(unrecognized(prefix))),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn unrecognized(prefix: &[u8]) -> DemuxError {
    DemuxError::Unrecognized {
        head: prefix
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> &'static [u8] {
        match name {
            "ts" => include_bytes!("fixtures/h264_aac.ts"),
            "h265ts" => include_bytes!("fixtures/h265.ts"),
            "h264" => include_bytes!("fixtures/h264.h264"),
            "h265" => include_bytes!("fixtures/h265.hevc"),
            "mjpeg" => include_bytes!("fixtures/raw.mjpeg"),
            "multipart" => include_bytes!("fixtures/multipart.mjpeg"),
            _ => unreachable!(),
        }
    }

    /// Format detected from the shortest prefix that decides, and that length.
    fn decide(data: &[u8]) -> (Result<Format, DemuxError>, usize) {
        for len in 1..=data.len() {
            if let Some(result) = detect(&data[..len]) {
                // Longer prefixes agree.
                assert_eq!(
                    detect(&data[..(len + 100).min(data.len())]),
                    Some(result.clone())
                );
                return (result, len);
            }
        }
        panic!("undecided after {} bytes", data.len());
    }

    /// tools/fuzz stdout_demux found this (base64 with its selector byte:
    /// `SC0tDAsKSC0tC0AKCgr/2P/YVxsEKRsNCg0K`): a prefix ending in LF LF was MJPEG, the whole input
    /// (with a later CRLF CRLF) an error.
    #[test]
    fn more_bytes_keep_the_answer() {
        let input: &[u8] = b"--\x0c\x0b\nH--\x0b@\n\n\n\xff\xd8\xff\xd8W\x1b\x04)\x1b\r\n\r\n";
        let whole = detect(input);
        assert_eq!(whole, Some(Ok(Format::Mjpeg)));
        for len in 1..input.len() {
            if let Some(earlier) = detect(&input[..len]) {
                assert_eq!(earlier.ok(), Some(Format::Mjpeg), "prefix of {len} bytes");
            }
        }
    }

    #[test]
    fn fixtures() {
        assert_eq!(decide(fixture("ts")), (Ok(Format::MpegTs), 377));
        assert_eq!(decide(fixture("h265ts")), (Ok(Format::MpegTs), 377));
        assert_eq!(decide(fixture("h264")), (Ok(Format::AnnexBH264), 6));
        assert_eq!(decide(fixture("h265")), (Ok(Format::AnnexBH265), 6));
        assert_eq!(decide(fixture("mjpeg")), (Ok(Format::Mjpeg), 3));
        let (format, len) = decide(fixture("multipart"));
        assert_eq!(format, Ok(Format::Mjpeg));
        assert!(len < 100);
    }

    #[test]
    fn annexb_starts() {
        let h = |bytes: &[u8]| detect(bytes).map(|r| r.ok());
        assert_eq!(h(&[0, 0, 1, 0x09, 0xf0]), Some(Some(Format::AnnexBH264)));
        assert_eq!(
            h(&[0, 0, 0, 0, 1, 0x67, 0x42]),
            Some(Some(Format::AnnexBH264))
        );
        assert_eq!(h(&[0, 0, 1, 0x06, 0x05]), Some(Some(Format::AnnexBH264)));
        assert_eq!(h(&[0, 0, 1, 0x65, 0x88]), Some(Some(Format::AnnexBH264)));
        assert_eq!(h(&[0, 0, 1, 0x46, 0x01]), Some(Some(Format::AnnexBH265))); // AUD
        assert_eq!(h(&[0, 0, 1, 0x4e, 0x01]), Some(Some(Format::AnnexBH265))); // SEI
        assert_eq!(h(&[0, 0, 1, 0x42, 0x01]), Some(Some(Format::AnnexBH265))); // SPS
                                                                               // Implausible: SEI with nal_ref_idc, SPS without, reserved type, forbidden bit.
        for bad in [[0x26, 0], [0x07, 0], [0x17, 0], [0xe7, 0]] {
            assert_eq!(h(&[0, 0, 1, bad[0], bad[1]]), Some(None), "{bad:02x?}");
        }
        assert_eq!(h(&[0, 0, 1, 0x67]), None);
        assert_eq!(h(&[0, 0]), None);
        assert_eq!(h(&[0, 1, 0x67, 0]), Some(None));
        assert_eq!(h(&[0, 0, 2]), Some(None));
        assert!(matches!(detect(&[0; DETECT_LIMIT]), Some(Err(_))));
        // Undecided at the limit (start code in its last bytes) is a refusal too.
        let mut late = vec![0; DETECT_LIMIT - 2];
        late.extend_from_slice(&[1, 0x67]);
        assert!(matches!(detect(&late), Some(Err(_))));
        assert_eq!(detect(&late[..DETECT_LIMIT - 1]), None);
    }

    #[test]
    fn multipart_headers() {
        let part = |headers: &str| format!("\r\n--myboundary\r\n{headers}\r\n\r\n").into_bytes();
        let mut jpeg = part("Content-Type: IMAGE/JPEG\r\nContent-Length: 9");
        jpeg.extend_from_slice(&[0xff, 0xd8, 0xff]);
        assert_eq!(detect(&jpeg), Some(Ok(Format::Mjpeg)));
        assert_eq!(
            detect(&part("content-type: text/plain")),
            Some(Err(DemuxError::NotJpegMultipart {
                content_type: "text/plain".into()
            }))
        );
        let mut untyped = part("X-Timestamp: 1");
        assert_eq!(detect(&untyped), None);
        untyped.extend_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
        assert_eq!(detect(&untyped), Some(Ok(Format::Mjpeg)));
        // Headers that never end are given up on at the limit.
        let mut endless = b"--b\r\n".to_vec();
        assert_eq!(detect(&endless), None);
        endless.resize(DETECT_LIMIT, b'x');
        assert!(matches!(detect(&endless), Some(Err(_))));
        assert!(matches!(detect(b"-x"), Some(Err(_))));
        assert_eq!(detect(b"\r\n"), None);
    }

    #[test]
    fn decisions_never_change_with_more_bytes() {
        let mut x = 7u32;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for name in ["ts", "h264", "h265", "mjpeg", "multipart"] {
            for _ in 0..200 {
                let mut data = fixture(name)[..600].to_vec();
                for _ in 0..rand() % 4 {
                    let at = rand() as usize % 600;
                    data[at] = [0, 1, 0xff, b'\n', b'-', rand() as u8][rand() as usize % 6];
                }
                let mut decided: Option<Option<Format>> = None;
                for len in 1..=data.len() {
                    if let Some(result) = detect(&data[..len]) {
                        let format = result.ok();
                        assert_eq!(*decided.get_or_insert(format), format, "{name} {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn garbage() {
        assert_eq!(detect(&[]), None);
        let err = detect(b"HTTP/1.1 200 OK\r\n").unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "stdout is not MPEG-TS, Annex-B H.264/H.265 or MJPEG (starts with 48 54 54 50 2f 31 2e 31)"
        );
        // 'G' is the MPEG-TS sync byte: "GET" needs a packet's worth to be refused.
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), None);
        assert!(matches!(detect(&[0xff, 0xd8, 0x00]), Some(Err(_))));
        assert!(matches!(detect(&[0xff, 0xfb]), Some(Err(_)))); // MP3
                                                                // A lone 0x47 is not MPEG-TS.
        let mut ts = fixture("ts")[..400].to_vec();
        assert_eq!(detect(&ts[..100]), None);
        ts[188] = 0;
        assert!(matches!(detect(&ts[..200]), Some(Err(_))));
        let mut x = 1u32;
        for len in 0..2000 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = detect(&data);
        }
    }
}
