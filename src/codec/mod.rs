//! Codec knowledge the server needs without decoding: keyframe detection on RTP payloads,
//! parameter-set discovery, and the packetizers for the elementary streams we ingest.

pub mod aac;
pub mod flac;
pub mod g711;
pub mod h264;
pub mod h265;
pub mod pcm;

/// Codecs the server treats specially; everything else passes through as [`CodecKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecKind {
    H264,
    H265,
    Aac,
    Opus,
    Pcma,
    Pcmu,
    Mjpeg,
    Other,
}

impl CodecKind {
    /// Map an SDP rtpmap encoding name (case-insensitive) to a codec.
    ///
    /// MP4A-LATM is AAC too, but in a framing we do not handle, so it is `Other`.
    pub fn from_encoding_name(name: &str) -> Self {
        const NAMES: [(&str, CodecKind); 8] = [
            ("H264", CodecKind::H264),
            ("H265", CodecKind::H265),
            ("HEVC", CodecKind::H265),
            ("MPEG4-GENERIC", CodecKind::Aac),
            ("OPUS", CodecKind::Opus),
            ("PCMA", CodecKind::Pcma),
            ("PCMU", CodecKind::Pcmu),
            ("JPEG", CodecKind::Mjpeg),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(CodecKind::Other, |&(_, kind)| kind)
    }

    pub fn is_video(self) -> bool {
        matches!(self, CodecKind::H264 | CodecKind::H265 | CodecKind::Mjpeg)
    }
}

/// Does this RTP payload start a random access point for this codec?
///
/// Audio packets are all sync points. For RFC 2435 JPEG every frame is a keyframe, so the
/// first fragment (offset 0) of each frame qualifies. Unknown codecs answer `true` so they are
/// never held back waiting for a keyframe we cannot recognise.
pub fn starts_keyframe(kind: CodecKind, payload: &[u8]) -> bool {
    match kind {
        CodecKind::H264 => h264::rtp_starts_keyframe(payload),
        CodecKind::H265 => h265::rtp_starts_keyframe(payload),
        // Main JPEG header: type-specific(8) fragment offset(24) ...; 8 bytes in total.
        CodecKind::Mjpeg => matches!(payload, [_, 0, 0, 0, _, _, _, _, ..]),
        CodecKind::Aac | CodecKind::Opus | CodecKind::Pcma | CodecKind::Pcmu | CodecKind::Other => {
            true
        }
    }
}

/// The length-prefixed NAL units of an aggregation packet body (H.264 STAP-A after its
/// one-byte header, H.265 AP after its two-byte header). Stops at the first unit whose
/// 16-bit size is zero or runs past the end, and records that in `malformed`.
#[derive(Debug, Clone)]
pub(crate) struct AggregatedUnits<'a> {
    rest: &'a [u8],
    pub(crate) malformed: bool,
}

impl<'a> AggregatedUnits<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        AggregatedUnits {
            rest: body,
            malformed: false,
        }
    }
}

impl<'a> Iterator for AggregatedUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() || self.malformed {
            return None;
        }
        let unit = match self.rest {
            [hi, lo, tail @ ..] => {
                let size = usize::from(u16::from_be_bytes([*hi, *lo]));
                (size > 0 && size <= tail.len()).then(|| tail.split_at(size))
            }
            _ => None,
        };
        match unit {
            Some((unit, rest)) => {
                self.rest = rest;
                Some(unit)
            }
            None => {
                self.malformed = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_names() {
        assert_eq!(CodecKind::from_encoding_name("h264"), CodecKind::H264);
        assert_eq!(CodecKind::from_encoding_name("H265"), CodecKind::H265);
        assert_eq!(CodecKind::from_encoding_name("hevc"), CodecKind::H265);
        assert_eq!(
            CodecKind::from_encoding_name("mpeg4-generic"),
            CodecKind::Aac
        );
        assert_eq!(CodecKind::from_encoding_name("MP4A-LATM"), CodecKind::Other);
        assert_eq!(CodecKind::from_encoding_name("opus"), CodecKind::Opus);
        assert_eq!(CodecKind::from_encoding_name("PCMA"), CodecKind::Pcma);
        assert_eq!(CodecKind::from_encoding_name("PCMU"), CodecKind::Pcmu);
        assert_eq!(CodecKind::from_encoding_name("JPEG"), CodecKind::Mjpeg);
        assert_eq!(
            CodecKind::from_encoding_name("vnd.onvif.metadata"),
            CodecKind::Other
        );
        assert_eq!(CodecKind::from_encoding_name(""), CodecKind::Other);
        assert!(CodecKind::H264.is_video() && CodecKind::Mjpeg.is_video());
        assert!(!CodecKind::Aac.is_video() && !CodecKind::Other.is_video());
    }

    #[test]
    fn keyframe_dispatch() {
        assert!(starts_keyframe(CodecKind::H264, &[0x65, 0x88]));
        assert!(!starts_keyframe(CodecKind::H264, &[0x41, 0x9a]));
        assert!(starts_keyframe(CodecKind::H265, &[0x26, 0x01, 0xaf]));
        assert!(!starts_keyframe(CodecKind::H265, &[0x02, 0x01, 0xd0]));
        assert!(starts_keyframe(CodecKind::Aac, &[]));
        assert!(starts_keyframe(CodecKind::Other, &[1]));
        assert!(starts_keyframe(
            CodecKind::Mjpeg,
            &[0, 0, 0, 0, 1, 255, 80, 45]
        ));
        assert!(!starts_keyframe(
            CodecKind::Mjpeg,
            &[0, 0, 4, 0, 1, 255, 80, 45]
        ));
        assert!(!starts_keyframe(CodecKind::Mjpeg, &[0, 0, 0]));
    }

    #[test]
    fn aggregated_units() {
        let body = [0, 2, 7, 7, 0, 1, 8];
        let mut it = AggregatedUnits::new(&body);
        assert_eq!(
            it.by_ref().collect::<Vec<_>>(),
            vec![&[7u8, 7][..], &[8][..]]
        );
        assert!(!it.malformed);
        for bad in [&[0u8, 3, 1, 2][..], &[0], &[0, 0, 1], &[0, 1, 5, 0]] {
            let mut it = AggregatedUnits::new(bad);
            let _ = it.by_ref().count();
            assert!(it.malformed, "{bad:?}");
        }
    }
}
