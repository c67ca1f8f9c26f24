//! A small FLAC encoder for live PCM (G.711 decoded, L16): one frame per RTP packet, each
//! channel a verbatim subframe of 16-bit samples, variable-blocksize numbering by sample
//! (the FLAC format spec, RFC 9639). Not compression, but a codec every MSE browser plays,
//! which is why go2rtc sends PCM cameras' audio this way.

/// Largest block (samples per channel) in one frame; it is also STREAMINFO's minimum and
/// maximum block size (go2rtc's choice: Apple's players want the two equal, at most 32768).
pub const MAX_BLOCK: usize = 32768;
/// Channels a frame header can say with independent channel assignment.
pub const MAX_CHANNELS: u8 = 8;
/// Largest rate STREAMINFO's 20-bit field holds.
pub const MAX_SAMPLE_RATE: u32 = (1 << 20) - 1;
const BITS_PER_SAMPLE: u8 = 16;

/// The STREAMINFO metadata block with its header (last-metadata-block set), as the
/// `dfLa` box of FLAC-in-ISOBMFF carries it: 4 + 34 bytes. Totals and MD5 are unknown (0)
/// for a live stream.
pub fn streaminfo_block(sample_rate: u32, channels: u8) -> [u8; 38] {
    let mut b = [0u8; 38];
    b[0] = 0x80; // last metadata block, type 0 = STREAMINFO
    b[3] = 34;
    let block = (MAX_BLOCK as u16).to_be_bytes();
    b[4..6].copy_from_slice(&block);
    b[6..8].copy_from_slice(&block);
    // Minimum and maximum frame size (24 bits each): 0, unknown.
    let rate = sample_rate.min(MAX_SAMPLE_RATE);
    let ch = channels.clamp(1, MAX_CHANNELS) - 1;
    // sample rate (20) | channels-1 (3) | bits-1 (5) | total samples (36, 0 = unknown)
    b[14] = (rate >> 12) as u8;
    b[15] = (rate >> 4) as u8;
    b[16] = ((rate & 0x0f) as u8) << 4 | ch << 1 | (BITS_PER_SAMPLE - 1) >> 4;
    b[17] = ((BITS_PER_SAMPLE - 1) & 0x0f) << 4;
    b
}

/// Why a block cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlacError {
    #[error("{0} channels (1 to 8 supported)")]
    Channels(u8),
    #[error("block of {0} samples per channel (1 to 32768 supported)")]
    BlockSize(usize),
    #[error("sample rate {0} Hz out of range")]
    SampleRate(u32),
}

/// Encodes one frame of interleaved 16-bit `samples` (`channels` per sample instant) whose
/// first sample is number `first_sample` of the stream. Appends the frame to `out`.
pub fn encode_frame(
    samples: &[i16],
    channels: u8,
    sample_rate: u32,
    first_sample: u64,
    out: &mut Vec<u8>,
) -> Result<(), FlacError> {
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(FlacError::Channels(channels));
    }
    if sample_rate == 0 || sample_rate > MAX_SAMPLE_RATE {
        return Err(FlacError::SampleRate(sample_rate));
    }
    let block = samples.len() / usize::from(channels);
    if block == 0 || block > MAX_BLOCK || !samples.len().is_multiple_of(usize::from(channels)) {
        return Err(FlacError::BlockSize(block));
    }
    let start = out.len();
    out.reserve(16 + samples.len() * 2 + usize::from(channels) + 2);
    // Sync code, reserved 0, blocking strategy 1 (variable: the number is a sample number).
    out.extend_from_slice(&[0xff, 0xf9]);
    // Block size 7 (16-bit value at the end of the header), the rate's code.
    out.push(0x70 | rate_code(sample_rate));
    // Independent channels, sample size code 4 (16 bits), reserved 0.
    out.push((channels - 1) << 4 | 0x08);
    put_coded_number(out, first_sample & ((1 << 36) - 1));
    out.extend_from_slice(&((block - 1) as u16).to_be_bytes());
    let crc = crc8(&out[start..]);
    out.push(crc);
    for ch in 0..usize::from(channels) {
        // Zero bit, type 000001 (verbatim), no wasted bits.
        out.push(0x02);
        for s in samples.iter().skip(ch).step_by(usize::from(channels)) {
            out.extend_from_slice(&s.to_be_bytes());
        }
    }
    // 16-bit samples keep the frame byte-aligned: no padding before the footer.
    let crc = crc16(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// The frame header's sample rate code; 0 (take it from STREAMINFO) for other rates.
fn rate_code(rate: u32) -> u8 {
    match rate {
        88_200 => 1,
        176_400 => 2,
        192_000 => 3,
        8_000 => 4,
        16_000 => 5,
        22_050 => 6,
        24_000 => 7,
        32_000 => 8,
        44_100 => 9,
        48_000 => 10,
        96_000 => 11,
        _ => 0,
    }
}

/// FLAC's UTF-8-like coding of a frame/sample number (up to 36 bits, 7 bytes).
fn put_coded_number(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    // Continuation bytes needed: each carries 6 bits; the lead byte has 6 - n bits free.
    let mut n = 1;
    while n < 6 && v >= 1u64 << (6 - n + 6 * n) {
        n += 1;
    }
    let lead_mark = (0xff00u16 >> (n + 1)) as u8; // n+1 leading ones
    out.push(lead_mark | (v >> (6 * n)) as u8);
    for i in (0..n).rev() {
        out.push(0x80 | ((v >> (6 * i)) & 0x3f) as u8);
    }
}

/// CRC-8, polynomial x^8 + x^2 + x + 1, initial 0 (frame header check).
pub fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                crc << 1 ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// CRC-16, polynomial x^16 + x^15 + x^2 + 1, initial 0 (whole-frame check).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                crc << 1 ^ 0x8005
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_values() {
        // The catalogue's check values for CRC-8/SMBUS and CRC-16/UMTS (BUYPASS).
        assert_eq!(crc8(b"123456789"), 0xf4);
        assert_eq!(crc16(b"123456789"), 0xfee8);
    }

    #[test]
    fn coded_numbers() {
        let enc = |v| {
            let mut o = Vec::new();
            put_coded_number(&mut o, v);
            o
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(0x7f), [0x7f]);
        assert_eq!(enc(0x80), [0xc2, 0x80]);
        assert_eq!(enc(0x7ff), [0xdf, 0xbf]);
        assert_eq!(enc(0x800), [0xe0, 0xa0, 0x80]);
        assert_eq!(enc(0xffff), [0xef, 0xbf, 0xbf]);
        assert_eq!(enc(0x10000), [0xf0, 0x90, 0x80, 0x80]);
        assert_eq!(enc(0x7fff_ffff).len(), 6);
        assert_eq!(enc(0x8000_0000), [0xfe, 0x82, 0x80, 0x80, 0x80, 0x80, 0x80]);
        assert_eq!(
            enc((1 << 36) - 1),
            [0xfe, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf]
        );
        // Below 2^21 the coding is plain UTF-8.
        for v in [0x80u32, 0x3ff, 0x1234, 0xfffd, 0x1_0000, 0x10_ffff] {
            let s = char::from_u32(v).unwrap().to_string();
            assert_eq!(enc(u64::from(v)), s.as_bytes(), "{v:#x}");
        }
    }

    /// Reads a frame back by the spec and checks every field and both CRCs.
    fn parse(frame: &[u8], channels: u8) -> (u64, Vec<Vec<i16>>) {
        assert_eq!(&frame[..2], &[0xff, 0xf9]);
        assert_eq!(frame[2] >> 4, 7);
        assert_eq!(frame[3], (channels - 1) << 4 | 0x08);
        // Coded number: count the lead byte's ones.
        let ones = frame[4].leading_ones() as usize;
        let len = if ones == 0 { 1 } else { ones };
        let mut number = u64::from(frame[4] & (0x7f >> ones.min(7)));
        for b in &frame[5..4 + len] {
            assert_eq!(b & 0xc0, 0x80);
            number = number << 6 | u64::from(b & 0x3f);
        }
        let at = 4 + len;
        let block = usize::from(u16::from_be_bytes([frame[at], frame[at + 1]])) + 1;
        assert_eq!(crc8(&frame[..at + 2]), frame[at + 2], "header CRC-8");
        let mut pos = at + 3;
        let mut out = Vec::new();
        for _ in 0..channels {
            assert_eq!(frame[pos], 0x02, "verbatim subframe");
            pos += 1;
            let ch = (0..block)
                .map(|i| i16::from_be_bytes([frame[pos + 2 * i], frame[pos + 2 * i + 1]]))
                .collect();
            pos += 2 * block;
            out.push(ch);
        }
        assert_eq!(pos + 2, frame.len());
        let crc = u16::from_be_bytes([frame[pos], frame[pos + 1]]);
        assert_eq!(crc16(&frame[..pos]), crc, "frame CRC-16");
        // A CRC over data + its own CRC is zero.
        assert_eq!(crc16(frame), 0);
        (number, out)
    }

    #[test]
    fn frames_read_back() {
        let mono: Vec<i16> = (0..160).map(|i| (i * 200 - 16000) as i16).collect();
        let mut out = Vec::new();
        encode_frame(&mono, 1, 8000, 0, &mut out).unwrap();
        assert_eq!(out[2] & 0x0f, 4, "8 kHz code");
        assert_eq!(out.len(), 4 + 1 + 2 + 1 + 1 + 320 + 2);
        let (n, ch) = parse(&out, 1);
        assert_eq!((n, &ch[0]), (0, &mono));

        let stereo: Vec<i16> = (0..2 * 480)
            .map(|i| if i % 2 == 0 { 7 } else { -7 })
            .collect();
        let mut out = Vec::new();
        encode_frame(&stereo, 2, 48000, 1_000_000, &mut out).unwrap();
        let (n, ch) = parse(&out, 2);
        assert_eq!(n, 1_000_000);
        assert!(ch[0].iter().all(|&s| s == 7) && ch[1].iter().all(|&s| s == -7));
        assert_eq!(ch[0].len(), 480);

        // An odd rate goes by STREAMINFO (code 0); numbers wrap at 36 bits.
        let mut out = Vec::new();
        encode_frame(&[1, 2, 3], 1, 11025, (1 << 36) + 5, &mut out).unwrap();
        assert_eq!(out[2] & 0x0f, 0);
        assert_eq!(parse(&out, 1).0, 5);
    }

    #[test]
    fn refused_blocks() {
        let mut out = Vec::new();
        assert_eq!(
            encode_frame(&[], 1, 8000, 0, &mut out),
            Err(FlacError::BlockSize(0))
        );
        assert_eq!(
            encode_frame(&[1, 2, 3], 2, 8000, 0, &mut out),
            Err(FlacError::BlockSize(1))
        );
        assert_eq!(
            encode_frame(&[1], 0, 8000, 0, &mut out),
            Err(FlacError::Channels(0))
        );
        assert_eq!(
            encode_frame(&[1], 9, 8000, 0, &mut out),
            Err(FlacError::Channels(9))
        );
        assert_eq!(
            encode_frame(&[1], 1, 0, 0, &mut out),
            Err(FlacError::SampleRate(0))
        );
        let big = vec![0i16; MAX_BLOCK + 1];
        assert_eq!(
            encode_frame(&big, 1, 8000, 0, &mut out),
            Err(FlacError::BlockSize(MAX_BLOCK + 1))
        );
        assert!(out.is_empty());
        assert!(encode_frame(&big[..MAX_BLOCK], 1, 8000, 0, &mut out).is_ok());
    }

    #[test]
    fn streaminfo_fields() {
        let b = streaminfo_block(8000, 1);
        assert_eq!(&b[..4], &[0x80, 0, 0, 34]);
        assert_eq!(u16::from_be_bytes([b[4], b[5]]), 32768);
        assert_eq!(u16::from_be_bytes([b[6], b[7]]), 32768);
        let bits = u64::from_be_bytes(b[14..22].try_into().unwrap());
        assert_eq!(bits >> 44, 8000, "sample rate");
        assert_eq!((bits >> 41) & 7, 0, "channels - 1");
        assert_eq!((bits >> 36) & 0x1f, 15, "bits per sample - 1");
        let b = streaminfo_block(48000, 2);
        let bits = u64::from_be_bytes(b[14..22].try_into().unwrap());
        assert_eq!((bits >> 44, (bits >> 41) & 7), (48000, 1));
    }
}
