//! Live fragmented MP4 (ISO/IEC 14496-12 and -15): one init segment, then one `moof`+`mdat`
//! per sample, so a fragment leaves as soon as its duration is known.

use bytes::Bytes;

use super::params::VideoInfo;
use super::timing::TrackClock;
use super::{nal_class, Fragment, Frame, NalClass, TrackConfig};
use crate::codec::flac;

/// `sample_depends_on` = 2 (an I picture, or audio).
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on` = 1 and `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// data-offset, sample-duration, sample-size and sample-flags present.
const TRUN_FLAGS: u32 = 0x0001 | 0x0100 | 0x0200 | 0x0400;
/// Movie header timescale; nothing is timed in it since the movie is empty.
const MOVIE_TIMESCALE: u32 = 1000;
const UNIT_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Live fragmented MP4 for MSE and progressive download: one init segment, then one fragment
/// (moof+mdat) per sample per track.
#[derive(Debug)]
pub struct LiveFmp4 {
    tracks: Vec<Track>,
    init: Bytes,
    has_video: bool,
    /// Arrival of the first frame accepted; decode time zero.
    origin: Option<u64>,
    /// mfhd sequence number of the next fragment.
    sequence: u32,
}

#[derive(Debug)]
struct Track {
    sdp_index: usize,
    config: TrackConfig,
    clock: TrackClock,
    /// A keyframe was seen (always true for audio): samples may be written.
    started: bool,
    /// The last sample, waiting for the next one to know its duration.
    pending: Option<Sample>,
    /// FLAC: number of the next frame's first sample.
    flac_next: u64,
}

#[derive(Debug)]
struct Sample {
    decode_time: u64,
    keyframe: bool,
    units: Vec<Bytes>,
}

impl LiveFmp4 {
    /// `tracks`: (SDP media index, config) in the order they become MP4 track ids 1, 2, ...
    pub fn new(tracks: Vec<(usize, TrackConfig)>) -> Self {
        let init = init_segment(&tracks);
        let has_video = tracks.iter().any(|(_, c)| c.is_video());
        let tracks = tracks
            .into_iter()
            .map(|(sdp_index, config)| Track {
                sdp_index,
                clock: TrackClock::new(
                    config.timescale(),
                    config.timescale(),
                    config.default_duration(),
                ),
                started: !config.is_video(),
                config,
                pending: None,
                flac_next: 0,
            })
            .collect();
        LiveFmp4 {
            tracks,
            init,
            has_video,
            origin: None,
            sequence: 1,
        }
    }

    /// The RTP clock rate of a track when it differs from its timescale (an AAC stream whose
    /// SDP clock is not the sample rate). Without this call they are assumed equal.
    pub fn set_clock_rate(&mut self, sdp_index: usize, clock_rate: u32) {
        for t in self.tracks.iter_mut().filter(|t| t.sdp_index == sdp_index) {
            t.clock.set_clock_rate(clock_rate);
        }
    }

    /// ftyp + moov (mvhd, one trak per track with stsd avc1+avcC / hvc1+hvcC / mp4a+esds,
    /// empty sample tables, mvex with trex).
    pub fn init(&self) -> Bytes {
        self.init.clone()
    }

    /// Comma-joined codec strings in track order, e.g. "avc1.4D401E,mp4a.40.2".
    pub fn codecs(&self) -> String {
        let strings: Vec<String> = self
            .tracks
            .iter()
            .map(|t| t.config.codec_string())
            .collect();
        strings.join(",")
    }

    /// Feed one frame of one of the tracks (frames of other SDP tracks are ignored). Emits the
    /// previous sample of that track, whose duration this frame settles, as one fragment.
    pub fn push(&mut self, frame: Frame, out: &mut Vec<Fragment>) {
        let Some(index) = self.tracks.iter().position(|t| t.sdp_index == frame.track) else {
            return;
        };
        let track = &mut self.tracks[index];
        let units = sample_units(&track.config, &mut track.flac_next, frame.units);
        if units.is_empty() {
            return;
        }
        if !track.started {
            if !frame.keyframe {
                return;
            }
            track.started = true;
        }
        let origin = *self.origin.get_or_insert(frame.arrival);
        let decode_time = track
            .clock
            .decode_time(origin, frame.timestamp, frame.arrival);
        let sample = Sample {
            decode_time,
            keyframe: frame.keyframe || !track.config.is_video(),
            units,
        };
        if let Some(previous) = track.pending.replace(sample) {
            let duration = decode_time - previous.decode_time;
            out.push(self.fragment(index, previous, duration));
        }
    }

    /// Emits the buffered last sample of every track with a default duration (video 3000,
    /// AAC 1024), e.g. to finish a one-frame MP4.
    pub fn flush(&mut self, out: &mut Vec<Fragment>) {
        for index in 0..self.tracks.len() {
            let track = &mut self.tracks[index];
            if let Some(sample) = track.pending.take() {
                let duration = track.clock.default_step();
                out.push(self.fragment(index, sample, duration));
            }
        }
    }

    fn fragment(&mut self, index: usize, sample: Sample, duration: u64) -> Fragment {
        let track = &self.tracks[index];
        let is_video = track.config.is_video();
        let size: usize = sample
            .units
            .iter()
            .map(|u| if is_video { 4 + u.len() } else { u.len() })
            .sum();
        let mut out = Vec::with_capacity(size + 128);
        let mut data_offset_at = 0;
        write_box(&mut out, b"moof", |out| {
            write_full_box(out, b"mfhd", 0, 0, |out| put_u32(out, self.sequence));
            write_box(out, b"traf", |out| {
                write_full_box(out, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |out| {
                    put_u32(out, index as u32 + 1);
                });
                write_full_box(out, b"tfdt", 1, 0, |out| {
                    out.extend_from_slice(&sample.decode_time.to_be_bytes());
                });
                write_full_box(out, b"trun", 0, TRUN_FLAGS, |out| {
                    put_u32(out, 1); // sample_count
                    data_offset_at = out.len();
                    put_u32(out, 0);
                    put_u32(out, u32::try_from(duration).unwrap_or(u32::MAX));
                    put_u32(out, size as u32);
                    put_u32(
                        out,
                        if sample.keyframe {
                            SYNC_SAMPLE_FLAGS
                        } else {
                            NON_SYNC_SAMPLE_FLAGS
                        },
                    );
                });
            });
        });
        // The sample starts right after the 8-byte mdat header.
        let data_offset = (out.len() + 8) as u32;
        out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
        write_box(&mut out, b"mdat", |out| {
            for unit in &sample.units {
                if is_video {
                    put_u32(out, unit.len() as u32);
                }
                out.extend_from_slice(unit);
            }
        });
        self.sequence = self.sequence.wrapping_add(1);
        Fragment {
            data: out.into(),
            keyframe: !self.has_video || (is_video && sample.keyframe),
        }
    }
}

/// The units that go into a sample: video without AUD and parameter sets (those live in the
/// sample entry) and empty units; AAC and Opus exactly the first frame; PCM one FLAC frame
/// (`flac_next` numbers its first sample).
fn sample_units(config: &TrackConfig, flac_next: &mut u64, units: Vec<Bytes>) -> Vec<Bytes> {
    match config {
        TrackConfig::Flac {
            pcm,
            sample_rate,
            channels,
        } => {
            let mut samples = Vec::new();
            for u in &units {
                pcm.decode(u, &mut samples);
            }
            let per_instant = usize::from(*channels);
            // A partial last sample instant (a truncated packet) is dropped; a packet larger
            // than a FLAC block allows keeps its first block.
            let instants = (samples.len() / per_instant).min(flac::MAX_BLOCK);
            samples.truncate(instants * per_instant);
            let mut out = Vec::new();
            match flac::encode_frame(&samples, *channels, *sample_rate, *flac_next, &mut out) {
                Ok(()) => {
                    *flac_next = flac_next.wrapping_add(instants as u64);
                    vec![out.into()]
                }
                Err(_) => Vec::new(),
            }
        }
        TrackConfig::Aac { .. } | TrackConfig::Opus { .. } => units
            .into_iter()
            .filter(|u| !u.is_empty())
            .take(1)
            .collect(),
        TrackConfig::H264 { .. } | TrackConfig::H265 { .. } => {
            let h265 = matches!(config, TrackConfig::H265 { .. });
            units
                .into_iter()
                .filter(|u| !u.is_empty() && nal_class(h265, u) == NalClass::Other)
                .collect()
        }
    }
}

fn init_segment(tracks: &[(usize, TrackConfig)]) -> Bytes {
    let mut out = Vec::with_capacity(1024);
    write_box(&mut out, b"ftyp", |out| {
        out.extend_from_slice(b"isom");
        put_u32(out, 0x200);
        for brand in [b"isom", b"iso5", b"iso6", b"mp41"] {
            out.extend_from_slice(brand);
        }
    });
    write_box(&mut out, b"moov", |out| {
        write_full_box(out, b"mvhd", 0, 0, |out| {
            put_u32(out, 0); // creation_time
            put_u32(out, 0); // modification_time
            put_u32(out, MOVIE_TIMESCALE);
            put_u32(out, 0); // duration
            put_u32(out, 0x0001_0000); // rate 1.0
            out.extend_from_slice(&[0x01, 0x00]); // volume 1.0
            out.extend_from_slice(&[0; 10]);
            UNIT_MATRIX.iter().for_each(|&v| put_u32(out, v));
            out.extend_from_slice(&[0; 24]); // pre_defined
            put_u32(out, tracks.len() as u32 + 1); // next_track_ID
        });
        for (i, (_, config)) in tracks.iter().enumerate() {
            write_trak(out, i as u32 + 1, config);
        }
        write_box(out, b"mvex", |out| {
            for i in 0..tracks.len() {
                write_full_box(out, b"trex", 0, 0, |out| {
                    put_u32(out, i as u32 + 1);
                    put_u32(out, 1); // default_sample_description_index
                    put_u32(out, 0); // default_sample_duration
                    put_u32(out, 0); // default_sample_size
                    put_u32(out, 0); // default_sample_flags
                });
            }
        });
    });
    out.into()
}

fn write_trak(out: &mut Vec<u8>, track_id: u32, config: &TrackConfig) {
    let video = config.video_info();
    let (width, height) = video.as_ref().map_or((0, 0), |v| (v.width, v.height));
    write_box(out, b"trak", |out| {
        // Flags: enabled, in movie.
        write_full_box(out, b"tkhd", 0, 3, |out| {
            put_u32(out, 0); // creation_time
            put_u32(out, 0); // modification_time
            put_u32(out, track_id);
            put_u32(out, 0); // reserved
            put_u32(out, 0); // duration
            out.extend_from_slice(&[0; 8]);
            put_u32(out, 0); // layer, alternate_group
            let volume: u16 = if config.is_video() { 0 } else { 0x0100 };
            out.extend_from_slice(&volume.to_be_bytes());
            out.extend_from_slice(&[0; 2]);
            UNIT_MATRIX.iter().for_each(|&v| put_u32(out, v));
            put_u32(out, u32::from(width) << 16);
            put_u32(out, u32::from(height) << 16);
        });
        write_box(out, b"mdia", |out| {
            write_full_box(out, b"mdhd", 0, 0, |out| {
                put_u32(out, 0);
                put_u32(out, 0);
                put_u32(out, config.timescale());
                put_u32(out, 0);
                out.extend_from_slice(&[0x55, 0xc4]); // language "und"
                out.extend_from_slice(&[0; 2]);
            });
            let (handler, name): (&[u8; 4], &[u8]) = if config.is_video() {
                (b"vide", b"VideoHandler\0")
            } else {
                (b"soun", b"SoundHandler\0")
            };
            write_full_box(out, b"hdlr", 0, 0, |out| {
                put_u32(out, 0);
                out.extend_from_slice(handler);
                out.extend_from_slice(&[0; 12]);
                out.extend_from_slice(name);
            });
            write_box(out, b"minf", |out| {
                if config.is_video() {
                    write_full_box(out, b"vmhd", 0, 1, |out| out.extend_from_slice(&[0; 8]));
                } else {
                    write_full_box(out, b"smhd", 0, 0, |out| out.extend_from_slice(&[0; 4]));
                }
                write_box(out, b"dinf", |out| {
                    write_full_box(out, b"dref", 0, 0, |out| {
                        put_u32(out, 1);
                        // Flag 1: the media is in this file.
                        write_full_box(out, b"url ", 0, 1, |_| {});
                    });
                });
                write_box(out, b"stbl", |out| {
                    write_full_box(out, b"stsd", 0, 0, |out| {
                        put_u32(out, 1);
                        write_sample_entry(out, config, video.as_ref());
                    });
                    // Samples live in the fragments: empty tables.
                    for name in [b"stts", b"stsc", b"stco"] {
                        write_full_box(out, name, 0, 0, |out| put_u32(out, 0));
                    }
                    write_full_box(out, b"stsz", 0, 0, |out| {
                        put_u32(out, 0);
                        put_u32(out, 0);
                    });
                });
            });
        });
    });
}

fn write_sample_entry(out: &mut Vec<u8>, config: &TrackConfig, video: Option<&VideoInfo>) {
    let name = match config {
        TrackConfig::H264 { .. } => b"avc1",
        TrackConfig::H265 { .. } => b"hvc1",
        TrackConfig::Aac { .. } => b"mp4a",
        TrackConfig::Opus { .. } => b"Opus",
        TrackConfig::Flac { .. } => b"fLaC",
    };
    write_box(out, name, |out| {
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&1u16.to_be_bytes()); // data_reference_index
        match config {
            TrackConfig::H264 { sps, pps } => {
                write_visual_fields(out, video);
                write_box(out, b"avcC", |out| write_avcc(out, sps, pps, video));
            }
            TrackConfig::H265 { vps, sps, pps } => {
                write_visual_fields(out, video);
                write_box(out, b"hvcC", |out| write_hvcc(out, vps, sps, pps, video));
            }
            TrackConfig::Aac {
                config,
                sample_rate,
                channels,
            } => {
                write_audio_fields(out, *channels, *sample_rate);
                write_esds(out, config);
            }
            TrackConfig::Opus { channels } => {
                // Opus in ISOBMFF (opus-codec.org): samplerate 48000, dOps follows.
                let channels = (*channels).clamp(1, 2);
                write_audio_fields(out, channels, 48_000);
                write_box(out, b"dOps", |out| {
                    out.push(0); // Version
                    out.push(channels); // OutputChannelCount
                                        // PreSkip 0: a live viewer joins mid-stream, there is no start to trim.
                    out.extend_from_slice(&0u16.to_be_bytes());
                    put_u32(out, 48_000); // InputSampleRate
                    out.extend_from_slice(&0i16.to_be_bytes()); // OutputGain
                    out.push(0); // ChannelMappingFamily 0: mono or stereo
                });
            }
            TrackConfig::Flac {
                sample_rate,
                channels,
                ..
            } => {
                // FLAC in ISOBMFF (xiph.org): dfLa holds the STREAMINFO block.
                write_audio_fields(out, *channels, *sample_rate);
                write_full_box(out, b"dfLa", 0, 0, |out| {
                    out.extend_from_slice(&flac::streaminfo_block(*sample_rate, *channels));
                });
            }
        }
    });
}

/// AudioSampleEntry fields after data_reference_index.
fn write_audio_fields(out: &mut Vec<u8>, channels: u8, sample_rate: u32) {
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&u16::from(channels).to_be_bytes());
    out.extend_from_slice(&16u16.to_be_bytes()); // samplesize
    put_u32(out, 0); // pre_defined, reserved
                     // 16.16 fixed point; rates over 65535 Hz do not fit and are left to the decoder config.
    let rate = u16::try_from(sample_rate).map_or(0, |r| u32::from(r) << 16);
    put_u32(out, rate);
}

fn write_visual_fields(out: &mut Vec<u8>, video: Option<&VideoInfo>) {
    let (width, height) = video.map_or((0, 0), |v| (v.width, v.height));
    out.extend_from_slice(&[0; 16]); // pre_defined, reserved
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&height.to_be_bytes());
    put_u32(out, 0x0048_0000); // 72 dpi
    put_u32(out, 0x0048_0000);
    put_u32(out, 0);
    out.extend_from_slice(&1u16.to_be_bytes()); // frame_count
    out.extend_from_slice(&[0; 32]); // compressorname
    out.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
    out.extend_from_slice(&[0xff, 0xff]); // pre_defined = -1
}

/// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) with 4-byte NAL lengths.
fn write_avcc(out: &mut Vec<u8>, sps: &[u8], pps: &[u8], video: Option<&VideoInfo>) {
    let profile = sps.get(1..4).unwrap_or(&[0, 0, 0]);
    out.push(1);
    out.extend_from_slice(profile);
    out.push(0xfc | 3); // lengthSizeMinusOne
    out.push(0xe0 | 1);
    put_u16_prefixed(out, sps);
    out.push(1);
    put_u16_prefixed(out, pps);
    if let (Some(v), 100 | 110 | 122 | 144) = (video, profile[0]) {
        out.push(0xfc | v.chroma_format_idc);
        out.push(0xf8 | v.bit_depth_luma_minus8);
        out.push(0xf8 | v.bit_depth_chroma_minus8);
        out.push(0); // numOfSequenceParameterSetExt
    }
}

/// HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1) with 4-byte NAL lengths and
/// complete VPS/SPS/PPS arrays, as `hvc1` requires.
fn write_hvcc(out: &mut Vec<u8>, vps: &[u8], sps: &[u8], pps: &[u8], video: Option<&VideoInfo>) {
    let fallback;
    let v = match video {
        Some(v) => v,
        None => {
            fallback = VideoInfo {
                width: 0,
                height: 0,
                chroma_format_idc: 1,
                bit_depth_luma_minus8: 0,
                bit_depth_chroma_minus8: 0,
                hevc_ptl: [0; 12],
                temporal_layers: 1,
                temporal_id_nested: false,
            };
            &fallback
        }
    };
    out.push(1);
    out.extend_from_slice(&v.hevc_ptl);
    out.extend_from_slice(&0xf000u16.to_be_bytes()); // min_spatial_segmentation_idc 0
    out.push(0xfc); // parallelismType unknown
    out.push(0xfc | v.chroma_format_idc);
    out.push(0xf8 | v.bit_depth_luma_minus8);
    out.push(0xf8 | v.bit_depth_chroma_minus8);
    out.extend_from_slice(&[0, 0]); // avgFrameRate unknown
    out.push(((v.temporal_layers & 7) << 3) | (u8::from(v.temporal_id_nested) << 2) | 3);
    out.push(3);
    for (nal_type, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        out.push(0x80 | nal_type); // array_completeness
        out.extend_from_slice(&1u16.to_be_bytes());
        put_u16_prefixed(out, nal);
    }
}

/// Elementary stream descriptor (ISO/IEC 14496-1 7.2.6.5) around the AudioSpecificConfig.
fn write_esds(out: &mut Vec<u8>, asc: &[u8]) {
    write_full_box(out, b"esds", 0, 0, |out| {
        let mut decoder_specific = Vec::new();
        put_descriptor(&mut decoder_specific, 0x05, asc);
        let mut decoder_config = vec![
            0x40, // Audio ISO/IEC 14496-3
            0x15, // AudioStream, upstream 0, reserved 1
            0, 0, 0, // bufferSizeDB
            0, 0, 0, 0, // maxBitrate
            0, 0, 0, 0, // avgBitrate
        ];
        decoder_config.extend_from_slice(&decoder_specific);
        let mut es = vec![0, 0, 0]; // ES_ID, flags
        put_descriptor(&mut es, 0x04, &decoder_config);
        put_descriptor(&mut es, 0x06, &[0x02]); // SLConfig: predefined for MP4
        put_descriptor(out, 0x03, &es);
    });
}

/// A descriptor with its length in the four-byte form decoders all accept.
fn put_descriptor(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    let len = body.len().min((1 << 28) - 1) as u32;
    out.push(tag);
    out.extend_from_slice(&[
        0x80 | (len >> 21) as u8 & 0x7f,
        0x80 | (len >> 14) as u8 & 0x7f,
        0x80 | (len >> 7) as u8 & 0x7f,
        len as u8 & 0x7f,
    ]);
    out.extend_from_slice(&body[..len as usize]);
}

/// A parameter set with its 16-bit length; one longer than that is cut (it is garbage).
fn put_u16_prefixed(out: &mut Vec<u8>, data: &[u8]) {
    let data = &data[..data.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn write_box(out: &mut Vec<u8>, name: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(name);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn write_full_box(
    out: &mut Vec<u8>,
    name: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    write_box(out, name, |out| {
        put_u32(out, (u32::from(version) << 24) | (flags & 0x00ff_ffff));
        body(out);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::test_support::*;

    const CONTAINERS: [&[u8; 4]; 11] = [
        b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"mvex", b"moof", b"traf", b"edts",
        b"udta",
    ];

    /// The boxes in `data` as (type, body); asserts that their sizes tile it exactly and
    /// checks containers (and sample entries) recursively.
    fn boxes(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            assert!(rest.len() >= 8, "box header cut: {rest:?}");
            let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            assert!(size >= 8 && size <= rest.len(), "bad box size {size}");
            let name: [u8; 4] = rest[4..8].try_into().unwrap();
            let body = &rest[8..size];
            if CONTAINERS.contains(&&name) {
                boxes(body);
            }
            out.push((name, body));
            rest = &rest[size..];
        }
        out
    }

    fn child<'a>(data: &'a [u8], name: &[u8; 4]) -> &'a [u8] {
        let found: Vec<_> = boxes(data).into_iter().filter(|(n, _)| n == name).collect();
        assert_eq!(found.len(), 1, "{}", String::from_utf8_lossy(name));
        found[0].1
    }

    fn path<'a>(data: &'a [u8], names: &[&[u8; 4]]) -> &'a [u8] {
        names.iter().fold(data, |d, n| child(d, n))
    }

    fn u32_at(d: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(d[at..at + 4].try_into().unwrap())
    }

    /// The one sample entry of a trak: (format, children after the fixed fields).
    fn sample_entry(trak: &[u8]) -> ([u8; 4], &[u8]) {
        let stsd = path(trak, &[b"mdia", b"minf", b"stbl", b"stsd"]);
        assert_eq!(u32_at(stsd, 4), 1);
        let entries = boxes(&stsd[8..]);
        assert_eq!(entries.len(), 1);
        let (name, body) = entries[0];
        let fixed = if [b"mp4a", b"Opus", b"fLaC"].contains(&&name) {
            28
        } else {
            78
        };
        (name, &body[fixed..])
    }

    #[test]
    fn init_segment_structure() {
        let (_, configs) = demo_av_frames();
        let (_, sps, pps) = h264_units();
        let mux = LiveFmp4::new(configs);
        assert_eq!(mux.codecs(), "avc1.4D401E,mp4a.40.2");
        let init = mux.init();
        let top = boxes(&init);
        let names: Vec<_> = top.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [b"ftyp", b"moov"]);
        let moov = top[1].1;
        let names: Vec<[u8; 4]> = boxes(moov).iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [*b"mvhd", *b"trak", *b"trak", *b"mvex"]);
        assert_eq!(u32_at(child(moov, b"mvhd"), 96), 3); // next_track_ID

        let traks: Vec<&[u8]> = boxes(moov)
            .into_iter()
            .filter(|(n, _)| n == b"trak")
            .map(|(_, b)| b)
            .collect();
        let tkhd = child(traks[0], b"tkhd");
        assert_eq!(u32_at(tkhd, 12), 1);
        assert_eq!((u32_at(tkhd, 76), u32_at(tkhd, 80)), (640 << 16, 360 << 16));
        assert_eq!(u32_at(path(traks[0], &[b"mdia", b"mdhd"]), 12), 90_000);
        assert_eq!(&path(traks[0], &[b"mdia", b"hdlr"])[8..12], b"vide");
        let (format, children) = sample_entry(traks[0]);
        assert_eq!(&format, b"avc1");
        let avcc = child(children, b"avcC");
        let mut want = vec![1, 0x4d, 0x40, 0x1e, 0xff, 0xe1];
        want.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        want.extend_from_slice(&sps);
        want.push(1);
        want.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        want.extend_from_slice(&pps);
        assert_eq!(avcc, &want[..]);

        assert_eq!(u32_at(child(traks[1], b"tkhd"), 12), 2);
        assert_eq!(u32_at(path(traks[1], &[b"mdia", b"mdhd"]), 12), 48_000);
        let (format, children) = sample_entry(traks[1]);
        assert_eq!(&format, b"mp4a");
        let esds = child(children, b"esds");
        // ... DecoderSpecificInfo tag, four-byte length 2, then the config.
        assert!(esds.ends_with(&[5, 0x80, 0x80, 0x80, 2, 0x11, 0x88, 6, 0x80, 0x80, 0x80, 1, 2]));

        let trex: Vec<u32> = boxes(child(moov, b"mvex"))
            .iter()
            .map(|(n, b)| {
                assert_eq!(n, b"trex");
                u32_at(b, 4)
            })
            .collect();
        assert_eq!(trex, [1, 2]);
    }

    #[test]
    fn hevc_sample_entry() {
        let (_, config) = h265_frames(DEMO_H265);
        let mux = LiveFmp4::new(vec![(2, config.clone())]);
        assert_eq!(mux.codecs(), config.codec_string());
        let init = mux.init();
        let trak = path(&init, &[b"moov", b"trak"]);
        let (format, children) = sample_entry(trak);
        assert_eq!(&format, b"hvc1");
        let hvcc = child(children, b"hvcC");
        assert_eq!(hvcc[0], 1);
        assert_eq!(hvcc[21] & 3, 3); // 4-byte lengths
        assert_eq!(hvcc[22], 3);
        let TrackConfig::H265 { vps, sps, pps } = config else {
            unreachable!()
        };
        let mut at = 23;
        for (t, nal) in [(32, vps), (33, sps), (34, pps)] {
            assert_eq!(hvcc[at], 0x80 | t);
            assert_eq!(&hvcc[at + 1..at + 3], &[0, 1]);
            let len = usize::from(u16::from_be_bytes([hvcc[at + 3], hvcc[at + 4]]));
            assert_eq!(&hvcc[at + 5..at + 5 + len], &nal[..]);
            at += 5 + len;
        }
        assert_eq!(at, hvcc.len());
    }

    fn audio_frame(track: usize, timestamp: u64, payload: &[u8]) -> Frame {
        Frame {
            track,
            timestamp,
            arrival: timestamp * 125,
            keyframe: true,
            units: vec![Bytes::copy_from_slice(payload)],
        }
    }

    #[test]
    fn opus_sample_entry_and_samples() {
        let mut mux = LiveFmp4::new(vec![(1, TrackConfig::Opus { channels: 2 })]);
        assert_eq!(mux.codecs(), "opus");
        let init = mux.init();
        let trak = path(&init, &[b"moov", b"trak"]);
        assert_eq!(u32_at(path(trak, &[b"mdia", b"mdhd"]), 12), 48_000);
        assert_eq!(&path(trak, &[b"mdia", b"hdlr"])[8..12], b"soun");
        let stsd = path(trak, &[b"mdia", b"minf", b"stbl", b"stsd"]);
        let (_, entry) = boxes(&stsd[8..])[0];
        // channelcount 2, samplesize 16, samplerate 48000 in 16.16.
        assert_eq!(&entry[16..20], &[0, 2, 0, 16]);
        assert_eq!(u32_at(entry, 24), 48_000 << 16);
        let (format, children) = sample_entry(trak);
        assert_eq!(&format, b"Opus");
        let dops = child(children, b"dOps");
        assert_eq!(dops, &[0, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        let mut out = Vec::new();
        for i in 0..3u64 {
            mux.push(audio_frame(1, 960 * i, &[0xfc, i as u8]), &mut out);
        }
        mux.flush(&mut out);
        assert_eq!(out.len(), 3);
        for (i, f) in out.iter().enumerate() {
            let p = parse_fragment(&f.data);
            assert!(f.keyframe && p.sync);
            assert_eq!((p.decode_time, p.duration), (960 * i as u64, 960));
            assert_eq!(p.sample, [0xfc, i as u8]);
        }
    }

    #[test]
    fn pcm_becomes_flac() {
        let config = TrackConfig::Flac {
            pcm: crate::mux::Pcm::Alaw,
            sample_rate: 8000,
            channels: 1,
        };
        let mut mux = LiveFmp4::new(vec![(0, config)]);
        assert_eq!(mux.codecs(), "flac");
        let init = mux.init();
        let trak = path(&init, &[b"moov", b"trak"]);
        assert_eq!(u32_at(path(trak, &[b"mdia", b"mdhd"]), 12), 8000);
        let (format, children) = sample_entry(trak);
        assert_eq!(&format, b"fLaC");
        let dfla = child(children, b"dfLa");
        assert_eq!(&dfla[..4], &[0, 0, 0, 0], "full box v0");
        assert_eq!(&dfla[4..], &flac::streaminfo_block(8000, 1)[..]);
        let mut out = Vec::new();
        let alaw = [0xd5u8; 160];
        for i in 0..3u64 {
            mux.push(audio_frame(0, 160 * i, &alaw), &mut out);
        }
        // An odd-sized L16 payload would lose its partial sample; an empty one gives nothing.
        mux.push(audio_frame(0, 480, &[]), &mut out);
        mux.flush(&mut out);
        assert_eq!(out.len(), 3);
        for (i, f) in out.iter().enumerate() {
            let p = parse_fragment(&f.data);
            assert_eq!((p.decode_time, p.duration), (160 * i as u64, 160));
            let frame = &p.sample;
            assert_eq!(&frame[..2], &[0xff, 0xf9]);
            assert_eq!(
                flac::crc16(frame),
                0,
                "CRC-16 over the frame and its footer"
            );
            // Sample number: 0, 160, 320 (two-byte coding from 128 on).
            let header_len = if i == 0 { 7 } else { 8 };
            assert_eq!(flac::crc8(&frame[..header_len]), frame[header_len]);
            // A-law 0xd5 is +8: every verbatim sample.
            let body = &frame[header_len + 2..frame.len() - 2];
            assert_eq!(body.len(), 320);
            assert!(body.chunks(2).all(|s| s == [0, 8]));
        }
    }

    #[test]
    fn l16_stereo_flac() {
        let config = TrackConfig::Flac {
            pcm: crate::mux::Pcm::L16,
            sample_rate: 16000,
            channels: 2,
        };
        let mut mux = LiveFmp4::new(vec![(0, config)]);
        let mut out = Vec::new();
        // Two instants of (L, R) = (1, -1), then a stray byte.
        mux.push(
            audio_frame(0, 0, &[0, 1, 0xff, 0xff, 0, 1, 0xff, 0xff, 7]),
            &mut out,
        );
        mux.flush(&mut out);
        let frame = parse_fragment(&out[0].data).sample;
        assert_eq!(frame[3], 0x18, "two independent channels, 16 bits");
        assert_eq!(&frame[5..7], &[0, 1], "block size 2");
        let body = &frame[8..frame.len() - 2];
        assert_eq!(body, &[2, 0, 1, 0, 1, 2, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(flac::crc16(&frame), 0);
    }

    struct Parsed {
        sequence: u32,
        track: u32,
        decode_time: u64,
        duration: u32,
        sync: bool,
        sample: Vec<u8>,
    }

    fn parse_fragment(data: &[u8]) -> Parsed {
        let top = boxes(data);
        assert_eq!(top.len(), 2);
        let ((moof_name, moof), (mdat_name, mdat)) = (top[0], top[1]);
        assert_eq!((&moof_name, &mdat_name), (b"moof", b"mdat"));
        let mfhd = child(moof, b"mfhd");
        let traf = child(moof, b"traf");
        let tfhd = child(traf, b"tfhd");
        assert_eq!(u32_at(tfhd, 0), TFHD_DEFAULT_BASE_IS_MOOF);
        let tfdt = child(traf, b"tfdt");
        assert_eq!(tfdt[0], 1);
        let trun = child(traf, b"trun");
        assert_eq!(u32_at(trun, 0), TRUN_FLAGS);
        assert_eq!(u32_at(trun, 4), 1, "one sample");
        assert_eq!(u32_at(trun, 8) as usize, moof.len() + 16, "data offset");
        assert_eq!(u32_at(trun, 16) as usize, mdat.len(), "sample size");
        let flags = u32_at(trun, 20);
        assert!(flags == SYNC_SAMPLE_FLAGS || flags == NON_SYNC_SAMPLE_FLAGS);
        Parsed {
            sequence: u32_at(mfhd, 4),
            track: u32_at(tfhd, 4),
            decode_time: u64::from_be_bytes(tfdt[4..12].try_into().unwrap()),
            duration: u32_at(trun, 12),
            sync: flags == SYNC_SAMPLE_FLAGS,
            sample: mdat.to_vec(),
        }
    }

    /// Length-prefixed NAL units of an AVCC sample; asserts the lengths tile it.
    fn avcc_units(mut sample: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !sample.is_empty() {
            let len = u32_at(sample, 0) as usize;
            out.push(sample[4..4 + len].to_vec());
            sample = &sample[4 + len..];
        }
        out
    }

    #[test]
    fn demo_fragments() {
        let (frames, configs) = demo_av_frames();
        let (aus, _, _) = h264_units();
        let (raw, _) = aac_frames();
        let mut mux = LiveFmp4::new(configs);
        let mut out = Vec::new();
        for frame in frames {
            mux.push(frame, &mut out);
        }
        assert_eq!(out.len(), 199 + 375);
        mux.flush(&mut out);
        assert_eq!(out.len(), 200 + 376);
        let parsed: Vec<Parsed> = out.iter().map(|f| parse_fragment(&f.data)).collect();
        for (n, p) in parsed.iter().enumerate() {
            assert_eq!(p.sequence, n as u32 + 1);
        }
        for (track, count) in [(1, 200), (2, 376)] {
            let samples: Vec<(&Parsed, &Fragment)> = parsed
                .iter()
                .zip(&out)
                .filter(|(p, _)| p.track == track)
                .collect();
            assert_eq!(samples.len(), count);
            for w in samples.windows(2) {
                // Each sample ends where the next begins.
                assert_eq!(
                    w[0].0.decode_time + u64::from(w[0].0.duration),
                    w[1].0.decode_time
                );
            }
            for (n, (p, fragment)) in samples.iter().enumerate() {
                if track == 1 {
                    assert_eq!(p.decode_time, n as u64 * 3600);
                    assert_eq!(p.duration, if n == 199 { 3000 } else { 3600 });
                    assert_eq!((p.sync, fragment.keyframe), (n % 25 == 0, n % 25 == 0));
                    let want: Vec<Vec<u8>> = aus[n]
                        .iter()
                        .filter(|u| !matches!(u[0] & 0x1f, 7..=9))
                        .map(|u| u.to_vec())
                        .collect();
                    assert_eq!(avcc_units(&p.sample), want, "sample {n}");
                } else {
                    // Audio starts 3 ms after the video: 144 ticks at 48 kHz.
                    assert_eq!(p.decode_time, 144 + n as u64 * 1024);
                    assert_eq!(p.duration, 1024);
                    assert!(p.sync && !fragment.keyframe);
                    assert_eq!(p.sample, raw[n]);
                }
            }
        }
    }

    #[test]
    fn waits_for_a_keyframe_and_ignores_other_tracks() {
        let (frames, configs) = demo_av_frames();
        let mut mux = LiveFmp4::new(configs[..1].to_vec());
        let mut out = Vec::new();
        let video: Vec<Frame> = frames.into_iter().filter(|f| f.track == 0).collect();
        for frame in video[3..30].iter().cloned() {
            mux.push(frame, &mut out);
        }
        // Audio frames (track 1) are not ours; an empty frame is skipped.
        let mut stray = video[30].clone();
        stray.track = 1;
        mux.push(stray, &mut out);
        let mut empty = video[30].clone();
        empty.units = vec![Bytes::new(), Bytes::from_static(&[0x09, 0xf0])];
        mux.push(empty, &mut out);
        mux.flush(&mut out);
        assert_eq!(out.len(), 5); // frames 25..30
        assert!(out[0].keyframe && out[1..].iter().all(|f| !f.keyframe));
        let first = parse_fragment(&out[0].data);
        // The first frame taken fixes the origin: decode time 0.
        assert_eq!((first.decode_time, first.sync), (0, true));
        let mut again = Vec::new();
        mux.flush(&mut again);
        assert!(again.is_empty());
    }

    #[test]
    fn audio_only_fragments_are_all_keyframes() {
        let (frames, configs) = demo_av_frames();
        let mut mux = LiveFmp4::new(configs[1..].to_vec());
        let mut out = Vec::new();
        for frame in frames.into_iter().filter(|f| f.track == 1).take(10) {
            mux.push(frame, &mut out);
        }
        mux.flush(&mut out);
        assert_eq!(out.len(), 10);
        assert!(out.iter().all(|f| f.keyframe));
        let parsed: Vec<Parsed> = out.iter().map(|f| parse_fragment(&f.data)).collect();
        assert_eq!(parsed[0].decode_time, 0);
        assert_eq!(parsed[9].duration, 1024);
    }

    #[test]
    fn garbage_configs_still_make_boxes() {
        let configs = vec![
            (
                0,
                TrackConfig::H264 {
                    sps: Bytes::new(),
                    pps: Bytes::new(),
                },
            ),
            (
                1,
                TrackConfig::H265 {
                    vps: Bytes::new(),
                    sps: Bytes::from_static(&[0x42]),
                    pps: Bytes::from(vec![0x44; 70_000]),
                },
            ),
            (
                2,
                TrackConfig::Aac {
                    config: Bytes::new(),
                    sample_rate: 96_000,
                    channels: 9,
                },
            ),
        ];
        let mux = LiveFmp4::new(configs);
        assert_eq!(mux.codecs(), "avc1,hvc1,mp4a.40.2");
        let init = mux.init();
        let moov = child(&init, b"moov");
        assert_eq!(boxes(moov).len(), 5);
    }
}
