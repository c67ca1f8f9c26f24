//! Live muxers: RTP packets become frames ([`FrameAssembler`]), frames become fragmented MP4
//! ([`fmp4::LiveFmp4`], for MSE and progressive download) or MPEG-TS ([`ts::LiveTs`]).
//!
//! One muxer serves every viewer of a stream: its output [`Fragment`]s are shared by
//! reference count, and a viewer joins at a fragment marked `keyframe`.

pub mod fmp4;
pub mod frames;
mod jpeg;
mod params;
mod timing;
pub mod ts;

#[cfg(test)]
mod test_support;

use base64::Engine as _;
use bytes::Bytes;

use crate::codec::{flac, g711, h264, h265, CodecKind};
pub use fmp4::LiveFmp4;
pub use frames::{Frame, FrameAssembler};
use params::{parse_audio_specific_config, parse_h264_sps, parse_h265_sps, VideoInfo};
pub use ts::LiveTs;

/// Codec configuration of one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackConfig {
    H264 {
        sps: Bytes,
        pps: Bytes,
    },
    H265 {
        vps: Bytes,
        sps: Bytes,
        pps: Bytes,
    },
    /// `config` is the AudioSpecificConfig.
    Aac {
        config: Bytes,
        sample_rate: u32,
        channels: u8,
    },
    /// Opus (RFC 7587): 48 kHz in RTP and in MP4 whatever the encoder's rate.
    Opus {
        channels: u8,
    },
    /// PCM audio (G.711 or L16) that the fMP4 muxer re-encodes as FLAC, as go2rtc does for
    /// MSE: browsers play FLAC in MP4 but not G.711.
    Flac {
        pcm: Pcm,
        sample_rate: u32,
        channels: u8,
    },
}

/// The PCM flavours carried as FLAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pcm {
    /// G.711 A-law (PCMA).
    Alaw,
    /// G.711 µ-law (PCMU).
    Ulaw,
    /// 16-bit big-endian linear PCM (RFC 3551 L16).
    L16,
}

impl Pcm {
    /// Bytes per sample per channel on the wire.
    pub fn sample_bytes(self) -> usize {
        match self {
            Pcm::Alaw | Pcm::Ulaw => 1,
            Pcm::L16 => 2,
        }
    }

    /// Appends the payload's samples as linear PCM; a trailing partial L16 sample is dropped.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        match self {
            Pcm::Alaw => out.extend(payload.iter().map(|&b| g711::alaw_to_linear(b))),
            Pcm::Ulaw => out.extend(payload.iter().map(|&b| g711::ulaw_to_linear(b))),
            Pcm::L16 => out.extend(
                payload
                    .chunks_exact(2)
                    .map(|s| i16::from_be_bytes([s[0], s[1]])),
            ),
        }
    }
}

impl TrackConfig {
    /// From an SDP media section: H264 sprop-parameter-sets, H265 sprop-vps/sps/pps, AAC
    /// (MPEG4-GENERIC) config=hex. None when the codec is not one of these or the parameters
    /// are missing or garbage.
    pub fn from_media(m: &crate::sdp::Media) -> Option<TrackConfig> {
        let (kind, map) = m.codec()?;
        let pcm = match kind {
            CodecKind::Opus => return Some(TrackConfig::Opus { channels: 2 }),
            CodecKind::Pcma => Some(Pcm::Alaw),
            CodecKind::Pcmu => Some(Pcm::Ulaw),
            CodecKind::Other if map.encoding.eq_ignore_ascii_case("L16") => Some(Pcm::L16),
            _ => None,
        };
        if let Some(pcm) = pcm {
            let channels = map.channels.unwrap_or(1);
            let ok = (1..=u16::from(flac::MAX_CHANNELS)).contains(&channels)
                && (1..=flac::MAX_SAMPLE_RATE).contains(&map.clock_rate);
            return ok.then_some(TrackConfig::Flac {
                pcm,
                sample_rate: map.clock_rate,
                channels: channels as u8,
            });
        }
        let fmtp = m.fmtp_for(map.payload_type)?;
        match kind {
            CodecKind::H264 => {
                let nals = fmtp_param(fmtp, "sprop-parameter-sets")?
                    .split(',')
                    .filter_map(decode_base64)
                    .collect::<Vec<_>>();
                TrackConfig::from_nals(false, &nals)
            }
            CodecKind::H265 => {
                let nals = ["sprop-vps", "sprop-sps", "sprop-pps"]
                    .iter()
                    .filter_map(|key| fmtp_param(fmtp, key))
                    .flat_map(|v| v.split(','))
                    .filter_map(decode_base64)
                    .collect::<Vec<_>>();
                TrackConfig::from_nals(true, &nals)
            }
            CodecKind::Aac => {
                let config = decode_hex(fmtp_param(fmtp, "config")?)?;
                let asc = parse_audio_specific_config(&config)?;
                // Channel configuration 0 means a program config element; trust the rtpmap.
                let channels = match asc.channel_config {
                    0 => map.channels.and_then(|c| u8::try_from(c).ok()).unwrap_or(2),
                    7 => 8,
                    c => c,
                };
                Some(TrackConfig::Aac {
                    config: config.into(),
                    sample_rate: asc.sample_rate,
                    channels,
                })
            }
            _ => None,
        }
    }

    /// A video config learned from the NAL units of a keyframe (SPS/PPS[/VPS] in-band); None
    /// if they are not all there or the SPS does not parse. `h265` picks the codec.
    pub fn from_nals(h265: bool, nals: &[Bytes]) -> Option<TrackConfig> {
        let find = |t: u8| {
            nals.iter()
                // Parameter sets longer than 16 bits can say cannot go in a sample entry.
                .filter(|n| n.len() <= usize::from(u16::MAX))
                .find(|n| {
                    if h265 {
                        h265::nal_type(n) == t && n.len() > 2
                    } else {
                        h264::nal_type(n) == t && n.len() > 1
                    }
                })
                .cloned()
        };
        let config = if h265 {
            TrackConfig::H265 {
                vps: find(h265::VPS)?,
                sps: find(h265::SPS)?,
                pps: find(h265::PPS)?,
            }
        } else {
            TrackConfig::H264 {
                sps: find(h264::SPS)?,
                pps: find(h264::PPS)?,
            }
        };
        config.video_info().map(|_| config)
    }

    /// RFC 6381 codec string for MSE: `avc1.PPCCLL`, `hvc1.…` (ISO/IEC 14496-15 annex E) or
    /// `mp4a.40.<object type>`. A config too short to say more gives the bare prefix.
    pub fn codec_string(&self) -> String {
        match self {
            TrackConfig::H264 { sps, .. } => match h264::profile_level_id(sps) {
                Some(id) => format!("avc1.{id}"),
                None => "avc1".to_owned(),
            },
            TrackConfig::H265 { sps, .. } => match parse_h265_sps(sps) {
                Some(info) => hevc_codec_string(&info.hevc_ptl),
                None => "hvc1".to_owned(),
            },
            TrackConfig::Aac { config, .. } => match parse_audio_specific_config(config) {
                Some(asc) => format!("mp4a.40.{}", asc.object_type),
                None => "mp4a.40.2".to_owned(),
            },
            TrackConfig::Opus { .. } => "opus".to_owned(),
            TrackConfig::Flac { .. } => "flac".to_owned(),
        }
    }

    /// MP4 timescale: 90000 for video, the sample rate for audio (48000 for Opus).
    pub fn timescale(&self) -> u32 {
        match self {
            TrackConfig::Aac { sample_rate, .. } | TrackConfig::Flac { sample_rate, .. } => {
                (*sample_rate).max(1)
            }
            TrackConfig::Opus { .. } => 48_000,
            TrackConfig::H264 { .. } | TrackConfig::H265 { .. } => 90_000,
        }
    }

    pub fn is_video(&self) -> bool {
        matches!(self, TrackConfig::H264 { .. } | TrackConfig::H265 { .. })
    }

    /// Length of one sample when the next one never comes, in [`Self::timescale`] units:
    /// 1/30 s of video, one 1024-sample AAC frame, 20 ms of Opus or PCM (the usual packet).
    pub(crate) fn default_duration(&self) -> u64 {
        match self {
            TrackConfig::H264 { .. } | TrackConfig::H265 { .. } => 3000,
            TrackConfig::Aac { .. } => 1024,
            TrackConfig::Opus { .. } | TrackConfig::Flac { .. } => {
                u64::from(self.timescale() / 50).max(1)
            }
        }
    }

    pub(crate) fn video_info(&self) -> Option<VideoInfo> {
        match self {
            TrackConfig::H264 { sps, .. } => parse_h264_sps(sps),
            TrackConfig::H265 { sps, .. } => parse_h265_sps(sps),
            TrackConfig::Aac { .. } | TrackConfig::Opus { .. } | TrackConfig::Flac { .. } => None,
        }
    }
}

/// `hvc1.<space><profile>.<compat reversed>.<tier><level>[.<constraint bytes>]` from the 12
/// general profile_tier_level bytes.
fn hevc_codec_string(ptl: &[u8; 12]) -> String {
    let space = ["", "A", "B", "C"][usize::from(ptl[0] >> 6)];
    let tier = if ptl[0] & 0x20 != 0 { 'H' } else { 'L' };
    let compat = u32::from_be_bytes([ptl[1], ptl[2], ptl[3], ptl[4]]).reverse_bits();
    let mut s = format!("hvc1.{space}{}.{compat:X}.{tier}{}", ptl[0] & 0x1f, ptl[11]);
    // Constraint bytes, trailing zero bytes omitted.
    let constraints = &ptl[5..11];
    let used = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in &constraints[..used] {
        s.push_str(&format!(".{b:X}"));
    }
    s
}

/// A muxed piece of output, shared by reference count with every viewer.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub data: Bytes,
    /// A viewer may start here (video keyframe, or any fragment of an audio-only output).
    pub keyframe: bool,
}

/// ADTS header (7 bytes, no CRC) for one raw AAC frame of `payload_len` bytes with this
/// AudioSpecificConfig; None if the config is not usable in ADTS (object type above 4, a
/// rate outside the index table, a program config element, or a frame over 13 bits).
pub fn adts_header(config: &[u8], payload_len: usize) -> Option<[u8; 7]> {
    let asc = parse_audio_specific_config(config)?;
    // HE-AAC frames are plain AAC-LC at the core rate to an ADTS reader (implicit SBR).
    let profile = asc.core_object_type.checked_sub(1).filter(|&p| p <= 3)?;
    let index = asc.frequency_index.or_else(|| {
        params::SAMPLE_RATES
            .iter()
            .position(|&r| r == asc.sample_rate)
            .map(|i| i as u8)
    })?;
    if index > 12 || asc.channel_config == 0 || asc.channel_config > 7 {
        return None;
    }
    let len = payload_len.checked_add(7).filter(|&l| l < 1 << 13)?;
    let ch = asc.channel_config;
    Some([
        0xff,
        0xf1, // MPEG-4, layer 0, no CRC
        (profile << 6) | (index << 2) | (ch >> 2),
        ((ch & 3) << 6) | (len >> 11) as u8,
        (len >> 3) as u8,
        ((len & 7) << 5) as u8 | 0x1f, // buffer fullness 0x7ff: variable rate
        0xfc,
    ])
}

/// What the muxers need to know about a video NAL unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NalClass {
    Aud,
    /// SPS/PPS (H.264), VPS/SPS/PPS (H.265).
    ParameterSet,
    Other,
}

pub(crate) fn nal_class(h265: bool, nal: &[u8]) -> NalClass {
    if h265 {
        match h265::nal_type(nal) {
            h265::AUD => NalClass::Aud,
            h265::VPS | h265::SPS | h265::PPS => NalClass::ParameterSet,
            _ => NalClass::Other,
        }
    } else {
        match h264::nal_type(nal) {
            h264::AUD => NalClass::Aud,
            h264::SPS | h264::PPS => NalClass::ParameterSet,
            _ => NalClass::Other,
        }
    }
}

/// Value of `key` in an fmtp string (`a=b; c=d`), key case-insensitive.
fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
}

/// Base64 as cameras write it: padding optional.
fn decode_base64(s: &str) -> Option<Bytes> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        general_purpose::GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = LENIENT.decode(s.trim()).ok()?;
    (!bytes.is_empty()).then(|| bytes.into())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.is_empty() || !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp;

    const CAMERA_SDP: &str = "v=0\r\n\
o=- 0 0 IN IP4 127.0.0.1\r\n\
s=cam\r\n\
t=0 0\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z2QAH6zZQFAFuwEQAAADABAAAAMDyPGDGWA=,aOvjyyLA;profile-level-id=64001f\r\n\
m=video 0 RTP/AVP 97\r\n\
a=rtpmap:97 H265/90000\r\n\
a=fmtp:97 sprop-vps=QAEMAf//AWAAAAMAAAMAAAMAAAMAlqwJ;sprop-sps=QgEBAWAAAAMAAAMAAAMAAAMAlqADwIARB8u0;sprop-pps=RAHA8vA8kA==\r\n\
m=audio 0 RTP/AVP 98\r\n\
a=rtpmap:98 MPEG4-GENERIC/48000/2\r\n\
a=fmtp:98 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1190\r\n\
m=audio 0 RTP/AVP 8\r\n";

    #[test]
    fn configs_from_sdp() {
        let sdp = sdp::parse(CAMERA_SDP).unwrap();
        let configs: Vec<_> = sdp.medias.iter().map(TrackConfig::from_media).collect();
        let h264 = configs[0].clone().unwrap();
        assert_eq!(h264.codec_string(), "avc1.64001F");
        assert!(h264.is_video() && h264.timescale() == 90_000);
        let h265 = configs[1].clone().unwrap();
        assert_eq!(h265.codec_string(), "hvc1.1.6.L150");
        let aac = configs[2].clone().unwrap();
        assert_eq!(
            aac,
            TrackConfig::Aac {
                config: Bytes::from_static(&[0x11, 0x90]),
                sample_rate: 48000,
                channels: 2
            }
        );
        assert_eq!(
            (aac.codec_string(), aac.timescale()),
            ("mp4a.40.2".into(), 48000)
        );
        assert!(!aac.is_video());
        // G.711 (static payload type 8, no rtpmap) is carried as FLAC.
        assert_eq!(
            configs[3],
            Some(TrackConfig::Flac {
                pcm: Pcm::Alaw,
                sample_rate: 8000,
                channels: 1
            })
        );
        assert_eq!(configs[3].as_ref().unwrap().codec_string(), "flac");
    }

    #[test]
    fn garbage_configs() {
        let with_fmtp = |rtpmap: &str, fmtp: &str| {
            let text = format!(
                "v=0\r\ns=x\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 {rtpmap}\r\na=fmtp:96 {fmtp}\r\n"
            );
            TrackConfig::from_media(&sdp::parse(&text).unwrap().medias[0])
        };
        for (rtpmap, fmtp) in [
            ("H264/90000", "packetization-mode=1"),
            ("H264/90000", "sprop-parameter-sets=!!!,???"),
            ("H264/90000", "sprop-parameter-sets=Z00=,aO48gA=="), // SPS too short
            ("H264/90000", "sprop-parameter-sets=aO48gA=="),      // no SPS
            ("H264/90000", "sprop-parameter-sets="),
            (
                "H265/90000",
                "sprop-sps=QgEBAWAAAAMAAAMAAAMAAAMAlqADwIARB8u0;sprop-pps=RAHA8vA8kA==",
            ),
            ("H265/90000", "sprop-vps=QAE=;sprop-sps=QgE=;sprop-pps=RAE="),
            ("MPEG4-GENERIC/48000", "config=zz"),
            ("MPEG4-GENERIC/48000", "config=119"),
            ("MPEG4-GENERIC/48000", "config="),
            ("MPEG4-GENERIC/48000", "config=0000"),
            ("MPEG4-GENERIC/48000", "mode=AAC-hbr"),
            ("PCMA/8000/9", ""), // more channels than FLAC frames say
            ("L16/0", ""),
            ("MP4A-LATM/48000", "config=1190"),
        ] {
            assert_eq!(with_fmtp(rtpmap, fmtp), None, "{rtpmap} {fmtp}");
        }
        assert_eq!(
            with_fmtp("L16/16000/2", ""),
            Some(TrackConfig::Flac {
                pcm: Pcm::L16,
                sample_rate: 16000,
                channels: 2
            })
        );
        assert_eq!(
            with_fmtp("opus/48000/2", "sprop-stereo=1"),
            Some(TrackConfig::Opus { channels: 2 })
        );
        assert_eq!(TrackConfig::Opus { channels: 2 }.timescale(), 48_000);
        // Missing base64 padding is tolerated.
        assert!(with_fmtp("H264/90000", "sprop-parameter-sets=Z00AHpWoKA9oAPGU,aO48gA").is_some());
    }

    #[test]
    fn codec_strings_of_short_parameter_sets() {
        let short = TrackConfig::H264 {
            sps: Bytes::from_static(&[0x67, 0x4d]),
            pps: Bytes::new(),
        };
        assert_eq!(short.codec_string(), "avc1");
        assert!(short.video_info().is_none());
        let short = TrackConfig::H265 {
            vps: Bytes::new(),
            sps: Bytes::from_static(&[0x42, 1, 1, 1]),
            pps: Bytes::new(),
        };
        assert_eq!(short.codec_string(), "hvc1");
        let aac = TrackConfig::Aac {
            config: Bytes::new(),
            sample_rate: 0,
            channels: 0,
        };
        assert_eq!(
            (aac.codec_string(), aac.timescale()),
            ("mp4a.40.2".into(), 1)
        );
        assert!(TrackConfig::from_nals(false, &[]).is_none());
        assert!(
            TrackConfig::from_nals(true, &[Bytes::new(), Bytes::from_static(&[0x40])]).is_none()
        );
    }

    #[test]
    fn hevc_strings() {
        let mut ptl = [0u8; 12];
        ptl[0] = 0x01;
        ptl[1] = 0x60;
        ptl[5] = 0xb0;
        ptl[11] = 93;
        assert_eq!(hevc_codec_string(&ptl), "hvc1.1.6.L93.B0");
        // Main 10, high tier, profile space 1, two constraint bytes.
        ptl[0] = 0x40 | 0x20 | 2;
        ptl[1] = 0x20;
        ptl[6] = 0x01;
        ptl[11] = 120;
        assert_eq!(hevc_codec_string(&ptl), "hvc1.A2.4.H120.B0.1");
        assert_eq!(hevc_codec_string(&[0; 12]), "hvc1.0.0.L0");
    }

    #[test]
    fn adts_header_fields() {
        let h = adts_header(&[0x11, 0x88], 100).unwrap();
        let parsed = crate::codec::aac::parse_adts(&h).unwrap();
        assert_eq!(
            (
                parsed.profile,
                parsed.sample_rate,
                parsed.channels,
                parsed.frame_len,
                parsed.header_len
            ),
            (1, 48000, 1, 107, 7)
        );
        assert_eq!(h[5] & 0x1f, 0x1f);
        assert_eq!(h[6], 0xfc);
        // Matches the demo clip's own headers, bit for bit.
        let demo = Bytes::from_static(include_bytes!("../../shards/assets/demo.aac"));
        for (hdr, frame) in crate::codec::aac::adts_frames(&demo).iter().take(20) {
            let at = demo.as_ptr() as usize;
            let start = frame.as_ptr() as usize - at - hdr.header_len;
            let cfg = crate::codec::aac::audio_specific_config(hdr);
            assert_eq!(
                &adts_header(&cfg, frame.len()).unwrap()[..],
                &demo[start..start + 7]
            );
        }
        // HE-AAC: the core object type and rate.
        let he = adts_header(&[0x2b, 0x11, 0x88, 0x00], 10).unwrap();
        let parsed = crate::codec::aac::parse_adts(&he).unwrap();
        assert_eq!(
            (parsed.profile, parsed.sample_rate, parsed.channels),
            (1, 24000, 2)
        );
        // Explicit 8000 Hz maps back to its index; 8001 Hz cannot be said in ADTS.
        assert!(adts_header(&[0x17, 0x80, 0x0f, 0xa0, 0x08], 10).is_some());
        for bad in [
            &[][..],
            &[0x11],
            &[0x10, 0x00],
            &[0xf9, 0x46, 0x40],
            &[0x17, 0x80, 0x0f, 0xa0, 0x88],
        ] {
            assert_eq!(adts_header(bad, 10), None, "{bad:?}");
        }
        assert_eq!(adts_header(&[0x11, 0x88], 8185), None);
        assert!(adts_header(&[0x11, 0x88], 8184).is_some());
    }

    /// What the fuzz target does, with a fixed pseudo-random input: nothing may panic and the
    /// outputs stay well formed.
    #[test]
    fn garbage_through_assembler_and_muxers() {
        let text = CAMERA_SDP.replace("m=audio 0 RTP/AVP 8", "m=video 0 RTP/AVP 26");
        let sdp = sdp::parse(&text).unwrap();
        let configs: Vec<(usize, TrackConfig)> = sdp
            .medias
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((i, TrackConfig::from_media(m)?)))
            .collect();
        assert_eq!(configs.len(), 3);
        let mut assembler = FrameAssembler::new(&sdp);
        assert_eq!(assembler.tracks().len(), 4);
        let mut mp4 = LiveFmp4::new(configs.clone());
        let mut ts = LiveTs::new(configs);
        let (mut frames, mut mp4_out, mut ts_out) = (Vec::new(), Vec::new(), Vec::new());
        let mut x = 0x2545_f491u32;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        // Payload starts that reach every parser path: single NAL (IDR/non-IDR/parameter
        // sets), STAP-A, FU-A, H.265 AP/FU, AU headers, JPEG main headers.
        let heads: [&[u8]; 10] = [
            &[0x65],
            &[0x41],
            &[0x67, 0x4d],
            &[0x78, 0, 3],
            &[0x7c, 0x85],
            &[0x60, 1, 0, 4],
            &[0x62, 1, 0x93],
            &[0x26, 1],
            &[0, 16, 0, 0x50],
            &[0, 0, 0, 0, 1, 255, 2, 2, 0, 0, 0, 128],
        ];
        for seq in 0..30_000u64 {
            let track = (rand() % 5) as u8;
            let mut data = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            data.extend_from_slice(heads[rand() as usize % heads.len()]);
            let len = (rand() % 300) as usize;
            data.extend((0..len).map(|_| rand() as u8));
            let pkt = crate::packet::Packet {
                data: data.into(),
                track,
                seq: seq.saturating_sub(u64::from(rand() % 3 == 0)),
                timestamp: seq / 4 * 3000 + u64::from(rand() % 2),
                marker: rand() % 4 == 0,
                keyframe: false,
                arrival: seq * 1000,
                payload_offset: 12,
            };
            assembler.push(&pkt, &mut frames);
            for frame in frames.drain(..) {
                mp4.push(frame.clone(), &mut mp4_out);
                ts.push(frame, &mut ts_out);
            }
        }
        mp4.flush(&mut mp4_out);
        assert!(!mp4_out.is_empty() && !ts_out.is_empty());
        for f in &ts_out {
            assert_eq!(f.data.len() % ts::PACKET_LEN, 0);
        }
        for f in &mp4_out {
            let moof = u32::from_be_bytes(f.data[..4].try_into().unwrap()) as usize;
            let mdat = u32::from_be_bytes(f.data[moof..moof + 4].try_into().unwrap()) as usize;
            assert_eq!(moof + mdat, f.data.len());
        }
    }

    /// Hostile audio packets (odd sizes, empty, huge) through the assembler and the FLAC and
    /// Opus paths of the fMP4 muxer: no panic, every fragment well formed.
    #[test]
    fn garbage_audio_through_flac_and_opus() {
        let text = "v=0\r\ns=x\r\n\
m=audio 0 RTP/AVP 0\r\n\
m=audio 0 RTP/AVP 96\r\na=rtpmap:96 L16/44100/2\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\n\
m=audio 0 RTP/AVP 98\r\na=rtpmap:98 L16/8000/8\r\n";
        let sdp = sdp::parse(text).unwrap();
        let configs: Vec<(usize, TrackConfig)> = sdp
            .medias
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((i, TrackConfig::from_media(m)?)))
            .collect();
        assert_eq!(configs.len(), 4);
        let mut assembler = FrameAssembler::new(&sdp);
        let mut mp4 = LiveFmp4::new(configs);
        assert_eq!(mp4.codecs(), "flac,flac,opus,flac");
        let (mut frames, mut out) = (Vec::new(), Vec::new());
        let mut x = 0x9e37_79b9u32;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for seq in 0..2_000u64 {
            let mut data = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            let len = match rand() % 10 {
                0 => 0,
                1 => 65_000,
                _ => (rand() % 1_500) as usize,
            };
            data.extend((0..len).map(|_| rand() as u8));
            let pkt = crate::packet::Packet {
                data: data.into(),
                track: (rand() % 4) as u8,
                seq,
                timestamp: seq * 160 + u64::from(rand() % 3),
                marker: true,
                keyframe: true,
                arrival: seq * 20_000,
                payload_offset: 12,
            };
            assembler.push(&pkt, &mut frames);
            for frame in frames.drain(..) {
                mp4.push(frame, &mut out);
            }
        }
        mp4.flush(&mut out);
        assert!(out.len() > 500);
        for f in &out {
            let moof = u32::from_be_bytes(f.data[..4].try_into().unwrap()) as usize;
            let mdat = u32::from_be_bytes(f.data[moof..moof + 4].try_into().unwrap()) as usize;
            assert_eq!(moof + mdat, f.data.len());
        }
    }

    #[test]
    fn hot_struct_sizes() {
        // Printed so growth is noticed in review: one of each per frame per viewer stream.
        let (frame, fragment) = (size_of::<Frame>(), size_of::<Fragment>());
        println!("Frame: {frame} bytes, Fragment: {fragment} bytes");
        assert!(frame <= 64 && fragment <= 40);
    }

    #[test]
    fn fmtp_and_hex() {
        assert_eq!(fmtp_param("a=1; B = 2 ;c", "b"), Some("2"));
        assert_eq!(fmtp_param("a=1", "b"), None);
        assert_eq!(decode_hex("1190"), Some(vec![0x11, 0x90]));
        assert_eq!(decode_hex("11 90"), None);
        assert_eq!(decode_hex("é1"), None);
    }

    /// Writes the demo clips muxed both ways for checking with real tools:
    /// `cargo test -p corecast --lib mux::tests::files_for_ffprobe -- --ignored --nocapture`,
    /// then `ffprobe -show_streams /tmp/corecast-mux/av.mp4`, `ffmpeg -v error -i … -f null -`.
    /// `CORECAST_H265_CLIP` may name another H.265 Annex-B clip (default: the demux fixture).
    #[test]
    #[ignore]
    fn files_for_ffprobe() {
        use std::io::Write as _;
        let dir = std::path::Path::new("/tmp/corecast-mux");
        std::fs::create_dir_all(dir).unwrap();
        let write = |name: &str, init: Option<Bytes>, fragments: &[Fragment]| {
            let mut f = std::fs::File::create(dir.join(name)).unwrap();
            if let Some(init) = init {
                f.write_all(&init).unwrap();
            }
            for frag in fragments {
                f.write_all(&frag.data).unwrap();
            }
        };
        let (frames, configs) = test_support::demo_av_frames();
        let mut mp4 = fmp4::LiveFmp4::new(configs.clone());
        let mut ts = ts::LiveTs::new(configs);
        let (mut mp4_out, mut ts_out) = (Vec::new(), Vec::new());
        for frame in frames {
            mp4.push(frame.clone(), &mut mp4_out);
            ts.push(frame, &mut ts_out);
        }
        mp4.flush(&mut mp4_out);
        println!("av codecs {}", mp4.codecs());
        write("av.mp4", Some(mp4.init()), &mp4_out);
        write("av.ts", None, &ts_out);

        let clip = std::env::var("CORECAST_H265_CLIP")
            .map(|path| std::fs::read(path).unwrap())
            .unwrap_or_else(|_| test_support::DEMO_H265.to_vec());
        let (frames, config) = test_support::h265_frames(&clip);
        println!(
            "h265 frames {} codecs {}",
            frames.len(),
            config.codec_string()
        );
        let mut mp4 = fmp4::LiveFmp4::new(vec![(2, config.clone())]);
        let mut ts = ts::LiveTs::new(vec![(2, config)]);
        let (mut mp4_out, mut ts_out) = (Vec::new(), Vec::new());
        for frame in frames {
            mp4.push(frame.clone(), &mut mp4_out);
            ts.push(frame, &mut ts_out);
        }
        mp4.flush(&mut mp4_out);
        write("h265.mp4", Some(mp4.init()), &mp4_out);
        write("h265.ts", None, &ts_out);

        // 2 s of a 440 Hz tone as A-law, 20 ms packets, carried as FLAC.
        let config = TrackConfig::Flac {
            pcm: Pcm::Alaw,
            sample_rate: 8000,
            channels: 1,
        };
        let mut mp4 = fmp4::LiveFmp4::new(vec![(0, config)]);
        let mut mp4_out = Vec::new();
        for packet in 0..100u64 {
            let alaw: Vec<u8> = (0..160u64)
                .map(|i| {
                    let t = (packet * 160 + i) as f64 / 8000.0;
                    let v = (t * 440.0 * std::f64::consts::TAU).sin();
                    // A-law code of a positive or negative mid-level sample.
                    if v >= 0.0 {
                        0xfa
                    } else {
                        0x7a
                    }
                })
                .collect();
            let frame = Frame {
                track: 0,
                timestamp: packet * 160,
                arrival: packet * 20_000,
                keyframe: true,
                units: vec![alaw.into()],
            };
            mp4.push(frame, &mut mp4_out);
        }
        mp4.flush(&mut mp4_out);
        write("flac.mp4", Some(mp4.init()), &mp4_out);
    }
}
