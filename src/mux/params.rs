//! The few fields of H.264/H.265 sequence parameter sets and the AAC AudioSpecificConfig
//! that sample entries and codec strings need. Every reader is bounds-checked: a short or
//! garbage parameter set yields `None`, never a panic.

/// Longest Exp-Golomb prefix accepted; real values stay far below 2^32.
const MAX_LEADING_ZEROS: u32 = 31;

/// Reads bits MSB first from an RBSP (emulation prevention already removed).
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        u32::try_from(v).ok()
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.pos = self.pos.checked_add(n)?;
        (self.pos <= self.data.len() * 8).then_some(())
    }

    fn flag(&mut self) -> Option<bool> {
        Some(self.bit()? == 1)
    }

    /// Unsigned Exp-Golomb.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > MAX_LEADING_ZEROS {
                return None;
            }
        }
        let rest = u64::from(self.bits(zeros)?);
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    }

    /// Signed Exp-Golomb.
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Remove emulation prevention bytes (00 00 03 → 00 00).
pub(crate) fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// What the avc1/hvc1 sample entries need from a sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VideoInfo {
    pub width: u16,
    pub height: u16,
    pub chroma_format_idc: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
    /// H.265 only: the 12 bytes of general_profile_tier_level after the first RBSP byte
    /// (profile space/tier/idc, compatibility flags, constraint flags, level), as hvcC wants.
    pub hevc_ptl: [u8; 12],
    /// H.265 only: sps_max_sub_layers_minus1 + 1 and sps_temporal_id_nesting_flag.
    pub temporal_layers: u8,
    pub temporal_id_nested: bool,
}

/// (SubWidthC, SubHeightC) for a chroma_format_idc (4:0:0 and 4:4:4 crop in luma units).
fn chroma_subsampling(chroma_format_idc: u32) -> (u32, u32) {
    match chroma_format_idc {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    }
}

fn cropped(size: u64, crop: u64) -> Option<u16> {
    u16::try_from(size.checked_sub(crop)?)
        .ok()
        .filter(|&v| v > 0)
}

/// H.264 SPS (NAL unit with its header byte): picture size and chroma/bit-depth fields.
pub(crate) fn parse_h264_sps(nal: &[u8]) -> Option<VideoInfo> {
    if nal.first()? & 0x1f != 7 {
        return None;
    }
    let data = rbsp(&nal[1..]);
    let mut r = BitReader::new(&data);
    let profile_idc = r.bits(8)?;
    r.skip(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let (mut chroma_format_idc, mut depth_luma, mut depth_chroma) = (1, 0, 0);
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            r.skip(1)?; // separate_colour_plane_flag
        }
        depth_luma = r.ue()?;
        depth_chroma = r.ue()?;
        r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.skip(1)?; // delta_pic_order_always_zero_flag
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.skip(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.flag()? {
        left = u64::from(r.ue()?);
        right = u64::from(r.ue()?);
        top = u64::from(r.ue()?);
        bottom = u64::from(r.ue()?);
    }
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let (crop_x, crop_y) = if chroma_format_idc == 0 {
        (1, field_factor)
    } else {
        let (sw, sh) = chroma_subsampling(chroma_format_idc);
        (u64::from(sw), u64::from(sh) * field_factor)
    };
    Some(VideoInfo {
        width: cropped(width_mbs * 16, crop_x * (left + right))?,
        height: cropped(field_factor * height_units * 16, crop_y * (top + bottom))?,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma_minus8: u8::try_from(depth_luma).ok().filter(|&d| d <= 6)?,
        bit_depth_chroma_minus8: u8::try_from(depth_chroma).ok().filter(|&d| d <= 6)?,
        hevc_ptl: [0; 12],
        temporal_layers: 1,
        temporal_id_nested: false,
    })
}

fn skip_scaling_list(r: &mut BitReader, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// H.265 SPS (NAL unit with its two-byte header): profile_tier_level, picture size,
/// chroma format and bit depths.
pub(crate) fn parse_h265_sps(nal: &[u8]) -> Option<VideoInfo> {
    if nal.len() < 3 || (nal[0] >> 1) & 0x3f != 33 {
        return None;
    }
    let data = rbsp(&nal[2..]);
    let mut r = BitReader::new(&data);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    let temporal_id_nested = r.flag()?;
    let hevc_ptl: [u8; 12] = data.get(1..13)?.try_into().ok()?;
    r.skip(96)?; // general profile_tier_level
    let mut sub_layer_flags = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        sub_layer_flags.push((r.flag()?, r.flag()?));
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1 as usize))?; // reserved_zero_2bits
    }
    for (profile_present, level_present) in sub_layer_flags {
        if profile_present {
            r.skip(88)?;
        }
        if level_present {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc > 3 {
        return None;
    }
    if chroma_format_idc == 3 {
        r.skip(1)?; // separate_colour_plane_flag
    }
    let width = u64::from(r.ue()?);
    let height = u64::from(r.ue()?);
    let (mut crop_x, mut crop_y) = (0, 0);
    if r.flag()? {
        let (sw, sh) = chroma_subsampling(chroma_format_idc);
        let (left, right) = (u64::from(r.ue()?), u64::from(r.ue()?));
        let (top, bottom) = (u64::from(r.ue()?), u64::from(r.ue()?));
        crop_x = u64::from(sw) * (left + right);
        crop_y = u64::from(sh) * (top + bottom);
    }
    let depth_luma = r.ue()?;
    let depth_chroma = r.ue()?;
    Some(VideoInfo {
        width: cropped(width, crop_x)?,
        height: cropped(height, crop_y)?,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma_minus8: u8::try_from(depth_luma).ok().filter(|&d| d <= 8)?,
        bit_depth_chroma_minus8: u8::try_from(depth_chroma).ok().filter(|&d| d <= 8)?,
        hevc_ptl,
        temporal_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nested,
    })
}

/// Sampling frequencies by index (ISO/IEC 14496-3 table 1.18).
pub(crate) const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The leading fields of an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AudioConfig {
    /// The signalled audio object type (5 = SBR, 29 = PS for explicit HE-AAC).
    pub object_type: u8,
    /// The object type of the core AAC frames (differs from `object_type` for HE-AAC).
    pub core_object_type: u8,
    /// Sampling frequency index, or `None` for an explicit rate.
    pub frequency_index: Option<u8>,
    /// Rate of the core AAC frames (1024 samples each).
    pub sample_rate: u32,
    pub channel_config: u8,
}

pub(crate) fn parse_audio_specific_config(asc: &[u8]) -> Option<AudioConfig> {
    let mut r = BitReader::new(asc);
    let object_type = read_object_type(&mut r)?;
    let (frequency_index, sample_rate) = read_frequency(&mut r)?;
    let channel_config = r.bits(4)? as u8;
    let mut core_object_type = object_type;
    if object_type == 5 || object_type == 29 {
        // Explicit SBR signalling: extension rate, then the core's object type.
        read_frequency(&mut r)?;
        core_object_type = read_object_type(&mut r)?;
    }
    if object_type == 0 || core_object_type == 0 || sample_rate == 0 {
        return None;
    }
    Some(AudioConfig {
        object_type,
        core_object_type,
        frequency_index,
        sample_rate,
        channel_config,
    })
}

fn read_object_type(r: &mut BitReader) -> Option<u8> {
    let t = r.bits(5)?;
    let t = if t == 31 { 32 + r.bits(6)? } else { t };
    u8::try_from(t).ok()
}

fn read_frequency(r: &mut BitReader) -> Option<(Option<u8>, u32)> {
    match r.bits(4)? {
        15 => Some((None, r.bits(24)?)),
        i => Some((Some(i as u8), *SAMPLE_RATES.get(i as usize)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn bit_reader() {
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(r.bits(1), Some(1));
        assert_eq!(r.ue(), Some(1)); // 010
        assert_eq!(r.ue(), Some(2)); // 011
        assert_eq!(r.se(), Some(2)); // 00100 = ue 3
        assert_eq!(r.bits(7), None);
        let mut r = BitReader::new(&[0, 0, 0, 0, 0]);
        assert_eq!(r.ue(), None);
        assert_eq!(
            rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
    }

    #[test]
    fn h264_sps_sizes() {
        // Demo clip (640x360, Main) and a High-profile 1280x720 camera SPS from the SDP tests.
        let demo = include_bytes!("../../shards/assets/demo.h264");
        let (_, sps, _) = crate::codec::h264::access_units(&bytes::Bytes::from_static(demo));
        let info = parse_h264_sps(&sps.unwrap()).unwrap();
        assert_eq!(
            (info.width, info.height, info.chroma_format_idc),
            (640, 360, 1)
        );
        let high = b64("Z2QAH6zZQFAFuwEQAAADABAAAAMDyPGDGWA=");
        let info = parse_h264_sps(&high).unwrap();
        assert_eq!((info.width, info.height), (1280, 720));
        // The VUI after the size fields is not needed; anything cut before them fails.
        for len in 0..high.len() {
            let got = parse_h264_sps(&high[..len]);
            assert!(got.is_none() || len >= 10, "truncated to {len}");
        }
    }

    #[test]
    fn h265_sps_fields() {
        // A camera's 1920x1080 Main-profile SPS.
        let sps = b64("QgEBAWAAAAMAAAMAAAMAAAMAlqADwIARB8u0");
        let info = parse_h265_sps(&sps).unwrap();
        assert_eq!((info.width, info.height), (1920, 1080));
        assert_eq!(info.hevc_ptl[0], 0x01);
        assert_eq!(&info.hevc_ptl[1..5], &[0x60, 0, 0, 0]);
        assert_eq!(info.hevc_ptl[11], 0x96);
        for len in 0..sps.len() - 1 {
            assert_eq!(parse_h265_sps(&sps[..len]), None, "truncated to {len}");
        }
    }

    #[test]
    fn audio_specific_configs() {
        let lc = parse_audio_specific_config(&[0x11, 0x88]).unwrap();
        assert_eq!(
            (
                lc.object_type,
                lc.frequency_index,
                lc.sample_rate,
                lc.channel_config
            ),
            (2, Some(3), 48000, 1)
        );
        // HE-AAC v1, explicit: SBR at 48 kHz over LC at 24 kHz, stereo.
        let he = parse_audio_specific_config(&[0x2b, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!(
            (he.object_type, he.core_object_type, he.sample_rate),
            (5, 2, 24000)
        );
        // Explicit rate; escaped object type (42, USAC).
        let explicit = parse_audio_specific_config(&[0x17, 0x80, 0x0f, 0xa0, 0x08]).unwrap();
        assert_eq!(
            (explicit.frequency_index, explicit.sample_rate),
            (None, 8000)
        );
        let escaped = parse_audio_specific_config(&[0xf9, 0x46, 0x40]).unwrap();
        assert_eq!((escaped.object_type, escaped.channel_config), (42, 2));
        for bad in [&[][..], &[0x11], &[0x00, 0x08], &[0x16, 0x88], &[0xf8]] {
            assert_eq!(parse_audio_specific_config(bad), None, "{bad:?}");
        }
    }
}
