//! AAC: ADTS parsing, AudioSpecificConfig, and RFC 3640 (mpeg4-generic, AAC-hbr) payloads.

use bytes::Bytes;

/// Sampling frequencies by index (ISO/IEC 14496-3 table 1.18); 13..=15 are not usable in ADTS.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];
/// AU-size is 13 bits in AAC-hbr.
const MAX_AU_SIZE: usize = (1 << 13) - 1;
/// One AU header (13-bit size + 3-bit index) is 16 bits in AAC-hbr.
const AU_HEADER_BITS: usize = 16;
/// Upper bound on AUs per RTP packet; real senders put 1..=a few dozen.
const MAX_AUS_PER_PACKET: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AacError {
    #[error("not enough bytes")]
    TooShort,
    #[error("no ADTS sync word")]
    BadSync,
    #[error("ADTS layer is not 0")]
    BadLayer,
    #[error("reserved sampling frequency index {0}")]
    BadSampleRate(u8),
    #[error("ADTS frame length {0} is shorter than its header")]
    BadFrameLength(usize),
    #[error("ADTS frames with several raw data blocks are not supported")]
    MultipleRawBlocks,
    #[error("AAC frame of {0} bytes does not fit a 13-bit AU size")]
    FrameTooLarge(usize),
    #[error("RFC 3640 AU headers are malformed")]
    BadAuHeaders,
    #[error("RFC 3640 AU data runs past the end of the packet")]
    Truncated,
}

/// Fields of an ADTS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// Audio object type minus one (1 = AAC-LC).
    pub profile: u8,
    pub sample_rate_index: u8,
    pub sample_rate: u32,
    pub channels: u8,
    /// Whole frame length including the header.
    pub frame_len: usize,
    /// 7, or 9 with a CRC.
    pub header_len: usize,
}

/// Parse the ADTS header at the start of `buf` (the frame body need not be present).
pub fn parse_adts(buf: &[u8]) -> Result<AdtsHeader, AacError> {
    let &[b0, b1, b2, b3, b4, b5, b6, ..] = buf else {
        return Err(AacError::TooShort);
    };
    if b0 != 0xff || b1 & 0xf0 != 0xf0 {
        return Err(AacError::BadSync);
    }
    if b1 & 0x06 != 0 {
        return Err(AacError::BadLayer);
    }
    let header_len = if b1 & 0x01 != 0 { 7 } else { 9 };
    let sample_rate_index = (b2 >> 2) & 0x0f;
    let sample_rate = *SAMPLE_RATES
        .get(usize::from(sample_rate_index))
        .ok_or(AacError::BadSampleRate(sample_rate_index))?;
    let frame_len = (usize::from(b3 & 0x03) << 11) | (usize::from(b4) << 3) | usize::from(b5 >> 5);
    if frame_len <= header_len {
        return Err(AacError::BadFrameLength(frame_len));
    }
    if b6 & 0x03 != 0 {
        return Err(AacError::MultipleRawBlocks);
    }
    Ok(AdtsHeader {
        profile: b2 >> 6,
        sample_rate_index,
        sample_rate,
        channels: ((b2 & 0x01) << 2) | (b3 >> 6),
        frame_len,
        header_len,
    })
}

/// Split an ADTS stream into frames: each header with its raw AAC payload as a zero-copy
/// slice. Stops at the first malformed or truncated frame.
pub fn adts_frames(data: &Bytes) -> Vec<(AdtsHeader, Bytes)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Ok(h) = parse_adts(&data[at..]) {
        let end = at + h.frame_len;
        if end > data.len() {
            break;
        }
        frames.push((h, data.slice(at + h.header_len..end)));
        at = end;
    }
    frames
}

/// Two-byte AudioSpecificConfig: object type (5 bits), frequency index (4), channels (4),
/// then GASpecificConfig zeros.
pub fn audio_specific_config(h: &AdtsHeader) -> [u8; 2] {
    let object_type = (h.profile & 0x03) + 1;
    let sfi = h.sample_rate_index & 0x0f;
    let channels = h.channels & 0x0f;
    [
        (object_type << 3) | (sfi >> 1),
        ((sfi & 1) << 7) | (channels << 3),
    ]
}

/// Lowercase hex, as used in the fmtp `config=` parameter.
pub fn config_hex(cfg: &[u8]) -> String {
    cfg.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fmtp value for an AAC-hbr mpeg4-generic stream with this AudioSpecificConfig.
pub fn fmtp_for(cfg: &[u8]) -> String {
    format!(
        "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={}",
        config_hex(cfg)
    )
}

/// Write an RFC 3640 AAC-hbr payload carrying one raw AAC frame: AU-headers-length, one AU
/// header (size, index 0), then the frame. The caller writes the RTP header.
pub fn packetize_rfc3640(frame: &[u8], out: &mut Vec<u8>) -> Result<(), AacError> {
    if frame.len() > MAX_AU_SIZE {
        return Err(AacError::FrameTooLarge(frame.len()));
    }
    out.extend_from_slice(&(AU_HEADER_BITS as u16).to_be_bytes());
    out.extend_from_slice(&((frame.len() as u16) << 3).to_be_bytes());
    out.extend_from_slice(frame);
    Ok(())
}

/// Split an RFC 3640 AAC-hbr payload into its access units (borrowed from `payload`).
///
/// Fragmented AUs (one AU larger than the packet) are rejected as [`AacError::Truncated`]
/// rather than reassembled; AAC frames fit a packet in practice.
pub fn depacketize_rfc3640(payload: &[u8]) -> Result<Vec<&[u8]>, AacError> {
    let [hi, lo, rest @ ..] = payload else {
        return Err(AacError::TooShort);
    };
    let header_bits = usize::from(u16::from_be_bytes([*hi, *lo]));
    let count = header_bits / AU_HEADER_BITS;
    if header_bits % AU_HEADER_BITS != 0 || count == 0 || count > MAX_AUS_PER_PACKET {
        return Err(AacError::BadAuHeaders);
    }
    let Some((headers, mut data)) = rest.split_at_checked(count * 2) else {
        return Err(AacError::BadAuHeaders);
    };
    let mut aus = Vec::with_capacity(count);
    for header in headers.chunks_exact(2) {
        let size = usize::from(u16::from_be_bytes([header[0], header[1]]) >> 3);
        let (au, tail) = data.split_at_checked(size).ok_or(AacError::Truncated)?;
        aus.push(au);
        data = tail;
    }
    Ok(aus)
}

#[cfg(test)]
mod tests {
    use super::*;

    static DEMO: &[u8] = include_bytes!("../../shards/assets/demo.aac");

    #[test]
    fn demo_clip() {
        let data = Bytes::from_static(DEMO);
        let frames = adts_frames(&data);
        assert_eq!(frames.len(), 376);
        let total: usize = frames.iter().map(|(h, _)| h.frame_len).sum();
        assert_eq!(total, DEMO.len());
        let (h, _) = frames[0];
        assert_eq!(
            (h.profile, h.sample_rate, h.channels, h.header_len),
            (1, 48000, 1, 7)
        );
        let cfg = audio_specific_config(&h);
        assert_eq!(config_hex(&cfg), "1188");
        assert_eq!(
            fmtp_for(&cfg),
            "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1188"
        );

        for (h, frame) in &frames {
            assert_eq!(frame.len(), h.frame_len - h.header_len);
            let mut payload = Vec::new();
            packetize_rfc3640(frame, &mut payload).unwrap();
            assert_eq!(payload.len(), frame.len() + 4);
            assert_eq!(depacketize_rfc3640(&payload).unwrap(), vec![&frame[..]]);
        }
    }

    #[test]
    fn config_for_other_layouts() {
        let h = AdtsHeader {
            profile: 1,
            sample_rate_index: 4,
            sample_rate: 44100,
            channels: 2,
            frame_len: 100,
            header_len: 7,
        };
        assert_eq!(config_hex(&audio_specific_config(&h)), "1210");
    }

    #[test]
    fn malformed_adts() {
        let good = &DEMO[..7];
        assert!(parse_adts(good).is_ok());
        assert_eq!(parse_adts(&good[..6]), Err(AacError::TooShort));
        let mut bad = good.to_vec();
        bad[0] = 0xfe;
        assert_eq!(parse_adts(&bad), Err(AacError::BadSync));
        let mut bad = good.to_vec();
        bad[1] |= 0x02;
        assert_eq!(parse_adts(&bad), Err(AacError::BadLayer));
        let mut bad = good.to_vec();
        bad[2] = (bad[2] & !0x3c) | (13 << 2);
        assert_eq!(parse_adts(&bad), Err(AacError::BadSampleRate(13)));
        let mut bad = good.to_vec();
        bad[3] &= !0x03;
        bad[4] = 0;
        bad[5] &= 0x1f;
        assert_eq!(parse_adts(&bad), Err(AacError::BadFrameLength(0)));
        let mut bad = good.to_vec();
        bad[6] |= 0x01;
        assert_eq!(parse_adts(&bad), Err(AacError::MultipleRawBlocks));

        // A truncated final frame and trailing garbage end the frame list early.
        let data = Bytes::copy_from_slice(&DEMO[..DEMO.len() - 1]);
        assert_eq!(adts_frames(&data).len(), 375);
        let mut junk = DEMO[..400].to_vec();
        let first_len = parse_adts(&junk).unwrap().frame_len;
        junk[first_len] = 0;
        assert_eq!(adts_frames(&Bytes::from(junk)).len(), 1);
        assert!(adts_frames(&Bytes::new()).is_empty());
    }

    #[test]
    fn rfc3640_several_aus_and_errors() {
        // Two AUs of 3 and 2 bytes.
        let payload = [0, 32, 0, 3 << 3, 0, 2 << 3, 1, 2, 3, 4, 5];
        assert_eq!(
            depacketize_rfc3640(&payload).unwrap(),
            vec![&[1, 2, 3][..], &[4, 5]]
        );
        assert_eq!(depacketize_rfc3640(&[]), Err(AacError::TooShort));
        assert_eq!(depacketize_rfc3640(&[0, 16]), Err(AacError::BadAuHeaders));
        assert_eq!(depacketize_rfc3640(&[0, 0]), Err(AacError::BadAuHeaders));
        assert_eq!(
            depacketize_rfc3640(&[0, 13, 0, 0]),
            Err(AacError::BadAuHeaders)
        );
        assert_eq!(
            depacketize_rfc3640(&[0xff, 0xf0, 0, 0]),
            Err(AacError::BadAuHeaders)
        );
        assert_eq!(
            depacketize_rfc3640(&[0, 16, 0, 4 << 3, 1]),
            Err(AacError::Truncated)
        );
        let mut out = Vec::new();
        assert_eq!(
            packetize_rfc3640(&vec![0; 8192], &mut out),
            Err(AacError::FrameTooLarge(8192))
        );
        assert!(out.is_empty());
    }
}
