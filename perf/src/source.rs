//! What publishers send: synthetic RTP carrying its send time, or H.264 (and AAC) from a
//! clip, both as timed bursts of RTP packets.

use bytes::Bytes;
use corecast::codec::{aac, h264};
use corecast::rtp;

static DEMO_VIDEO: &[u8] = include_bytes!("../../shards/assets/demo.h264");
static DEMO_AUDIO: &[u8] = include_bytes!("../../shards/assets/demo.aac");

/// Synthetic payload layout (after the 12-byte RTP header):
///
/// ```text
/// byte 0      H.264 NAL header: 0x65 (IDR slice) on the first packet of a GOP, else 0x41,
///             so servers that look for keyframes find them
/// bytes 1..8  magic "CCPERF1"
/// bytes 8..16 send time, CLOCK_MONOTONIC ns, big-endian (stamped right before the write)
/// bytes 16..  zero filler up to the packet size
/// ```
pub const MAGIC: &[u8; 7] = b"CCPERF1";
pub const SYNTH_MIN_PAYLOAD: usize = 16;
const STAMP_OFFSET: usize = 8;

/// The send time of a synthetic packet, if `packet` (a whole RTP packet) is one.
#[inline]
pub fn send_time(packet: &[u8]) -> Option<u64> {
    let b0 = *packet.first()?;
    let mut off = rtp::HEADER_LEN + 4 * (b0 & 0x0f) as usize;
    if b0 & 0x10 != 0 {
        let ext = packet.get(off + 2..off + 4)?;
        off += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    let p = packet.get(off..off + SYNTH_MIN_PAYLOAD)?;
    if &p[1..8] != MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(p[8..16].try_into().ok()?))
}

/// Writes `t` into a synthetic packet built by [`SynthSource`] (fixed 12-byte header).
#[inline]
pub fn stamp(packet: &mut [u8], t: u64) {
    let at = rtp::HEADER_LEN + STAMP_OFFSET;
    if packet.len() >= at + 8 {
        packet[at..at + 8].copy_from_slice(&t.to_be_bytes());
    }
}

/// Packets of one track due at one instant.
#[derive(Debug, Default)]
pub struct Burst {
    /// Due time relative to the source's start, ns.
    pub due_ns: u64,
    pub track: usize,
    pub packets: Vec<Vec<u8>>,
    /// Synthetic: stamp the send time into every packet right before sending.
    pub stamp: bool,
}

pub trait Source: Send {
    /// SDP for ANNOUNCE.
    fn sdp(&self) -> String;
    /// Fills `out` with the next burst (never empty).
    fn next_burst(&mut self, out: &mut Burst);
    /// Nominal bytes per second (RTP packets, headers included).
    fn nominal_bps(&self) -> f64;
}

/// What to publish.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    Synthetic {
        bitrate: u64,
        packet_size: usize,
        fps: u32,
        gop: u32,
    },
    /// The repo's demo clip (H.264 + AAC), looped; `audio: false` sends video only.
    Demo { audio: bool, packet_size: usize },
    /// An Annex-B H.264 file, looped at `fps`.
    File {
        path: String,
        fps: u32,
        packet_size: usize,
    },
}

impl SourceSpec {
    pub fn build(&self, seed: u64) -> Result<Box<dyn Source>, String> {
        match self {
            SourceSpec::Synthetic {
                bitrate,
                packet_size,
                fps,
                gop,
            } => Ok(Box::new(SynthSource::new(
                *bitrate,
                *packet_size,
                *fps,
                *gop,
                seed,
            )?)),
            SourceSpec::Demo { audio, packet_size } => Ok(Box::new(ClipSource::new(
                Bytes::from_static(DEMO_VIDEO),
                audio.then(|| Bytes::from_static(DEMO_AUDIO)),
                25,
                *packet_size,
                seed,
            )?)),
            SourceSpec::File {
                path,
                fps,
                packet_size,
            } => {
                let data = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
                Ok(Box::new(ClipSource::new(
                    Bytes::from(data),
                    None,
                    *fps,
                    *packet_size,
                    seed,
                )?))
            }
        }
    }

    /// Only the first (video) track; raw-UDP peers take one track.
    pub fn video_only(&self) -> SourceSpec {
        match self {
            SourceSpec::Demo { packet_size, .. } => SourceSpec::Demo {
                audio: false,
                packet_size: *packet_size,
            },
            other => other.clone(),
        }
    }
}

/// Synthetic video-like stream: `fps` bursts per second, packets spread evenly over the
/// frames so that the byte rate is `bitrate`, a "keyframe" every `gop` frames.
pub struct SynthSource {
    packet_size: usize,
    fps: u32,
    gop: u32,
    packets_per_sec: f64,
    frame: u64,
    seq: u16,
    ts0: u32,
    ssrc: u32,
}

impl SynthSource {
    pub fn new(
        bitrate: u64,
        packet_size: usize,
        fps: u32,
        gop: u32,
        seed: u64,
    ) -> Result<Self, String> {
        let min = rtp::HEADER_LEN + SYNTH_MIN_PAYLOAD;
        if packet_size < min || packet_size > 65_000 {
            return Err(format!("packet size must be in {min}..=65000"));
        }
        if bitrate == 0 || fps == 0 {
            return Err("bitrate and fps must be positive".into());
        }
        let mut rng = crate::util::Rng::new(seed);
        Ok(SynthSource {
            packet_size,
            fps,
            gop: gop.max(1),
            packets_per_sec: bitrate as f64 / 8.0 / packet_size as f64,
            frame: 0,
            seq: rng.next_u64() as u16,
            ts0: rng.next_u64() as u32,
            ssrc: rng.next_u64() as u32,
        })
    }

    fn packets_in_frame(&self, k: u64) -> u64 {
        let at = |k: u64| (k as f64 * self.packets_per_sec / self.fps as f64).floor() as u64;
        at(k + 1) - at(k)
    }
}

impl Source for SynthSource {
    fn sdp(&self) -> String {
        String::from(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=corecast-perf synthetic\r\nt=0 0\r\n\
a=tool:corecast-perf synthetic CCPERF1\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n",
        )
    }

    fn next_burst(&mut self, out: &mut Burst) {
        // Skip frames that get no packet at very low rates.
        let mut n = self.packets_in_frame(self.frame);
        while n == 0 {
            self.frame += 1;
            n = self.packets_in_frame(self.frame);
        }
        let k = self.frame;
        out.due_ns = k * 1_000_000_000 / self.fps as u64;
        out.track = 0;
        out.stamp = true;
        out.packets.resize_with(n as usize, Vec::new);
        let ts = self.ts0.wrapping_add((k * 90_000 / self.fps as u64) as u32);
        for (i, p) in out.packets.iter_mut().enumerate() {
            p.clear();
            let last = i as u64 == n - 1;
            rtp::write_header(p, 96, last, self.seq, ts, self.ssrc);
            self.seq = self.seq.wrapping_add(1);
            p.push(if k.is_multiple_of(self.gop as u64) && i == 0 {
                0x65
            } else {
                0x41
            });
            p.extend_from_slice(MAGIC);
            p.resize(self.packet_size, 0);
        }
        self.frame += 1;
    }

    fn nominal_bps(&self) -> f64 {
        self.packets_per_sec * self.packet_size as f64
    }
}

/// Splits Annex-B H.264 into access units (NAL lists), as the server's demo does.
pub fn access_units(data: &Bytes) -> (Vec<Vec<Bytes>>, Option<Bytes>, Option<Bytes>) {
    h264::access_units(data)
}

const AUDIO_FRAME: u64 = 1024;

/// A looped H.264 clip (and optional AAC track) with continuous timestamps.
pub struct ClipSource {
    video: Vec<Vec<Bytes>>,
    audio: Vec<Bytes>,
    audio_rate: u64,
    fps: u64,
    sdp: String,
    vpk: h264::Packetizer,
    vts0: u32,
    aseq: u16,
    ats0: u32,
    assrc: u32,
    vi: u64,
    ai: u64,
    out: Vec<Bytes>,
    bytes_per_loop: u64,
}

impl ClipSource {
    pub fn new(
        video: Bytes,
        audio: Option<Bytes>,
        fps: u32,
        packet_size: usize,
        seed: u64,
    ) -> Result<Self, String> {
        let (aus, sps, pps) = access_units(&video);
        if aus.is_empty() {
            return Err("no H.264 access units found (is it Annex-B?)".into());
        }
        let fps = fps.max(1) as u64;
        let mut rng = crate::util::Rng::new(seed);
        let mut fmtp = "packetization-mode=1".to_string();
        if let (Some(s), Some(p)) = (&sps, &pps) {
            if let Some(pl) = h264::profile_level_id(s) {
                fmtp.push_str(&format!(";profile-level-id={pl}"));
            }
            fmtp.push_str(&format!(
                ";sprop-parameter-sets={}",
                h264::sprop_parameter_sets(s, p)
            ));
        }
        let mut sdp = format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=corecast-perf clip\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 {fmtp}\r\na=control:trackID=0\r\n"
        );
        let mut audio_frames = Vec::new();
        let mut audio_rate = 48_000;
        if let Some(a) = audio {
            let frames = aac::adts_frames(&a);
            let Some(hdr) = frames.first().map(|(h, _)| *h) else {
                return Err("no AAC frames in the audio clip".into());
            };
            audio_rate = hdr.sample_rate as u64;
            let cfg = aac::audio_specific_config(&hdr);
            let video_us = aus.len() as u64 * 1_000_000 / fps;
            let n = (video_us * audio_rate / 1_000_000 / AUDIO_FRAME) as usize;
            audio_frames = frames.into_iter().take(n).map(|(_, f)| f).collect();
            sdp.push_str(&format!(
                "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/{}/{}\r\na=fmtp:97 {}\r\na=control:trackID=1\r\n",
                hdr.sample_rate,
                hdr.channels,
                aac::fmtp_for(&cfg)
            ));
        }
        let mut vpk = h264::Packetizer::new(96, rng.next_u64() as u32, rng.next_u64() as u16);
        vpk.mtu = packet_size.max(64);
        let video_bytes: u64 = aus.iter().flatten().map(|n| n.len() as u64).sum();
        let audio_bytes: u64 = audio_frames.iter().map(|f| f.len() as u64 + 16).sum();
        Ok(ClipSource {
            bytes_per_loop: video_bytes + audio_bytes,
            video: aus,
            audio: audio_frames,
            audio_rate,
            fps,
            sdp,
            vpk,
            vts0: rng.next_u64() as u32,
            aseq: rng.next_u64() as u16,
            ats0: rng.next_u64() as u32,
            assrc: rng.next_u64() as u32,
            vi: 0,
            ai: 0,
            out: Vec::new(),
        })
    }
}

impl Source for ClipSource {
    fn sdp(&self) -> String {
        self.sdp.clone()
    }

    fn next_burst(&mut self, out: &mut Burst) {
        out.stamp = false;
        out.packets.clear();
        let v_due = self.vi * 1_000_000_000 / self.fps;
        let a_due = if self.audio.is_empty() {
            u64::MAX
        } else {
            self.ai * AUDIO_FRAME * 1_000_000_000 / self.audio_rate
        };
        if v_due <= a_due {
            let au = &self.video[(self.vi % self.video.len() as u64) as usize];
            let ts = self.vts0.wrapping_add((self.vi * 90_000 / self.fps) as u32);
            self.out.clear();
            self.vpk.packetize(au, ts, &mut self.out);
            out.packets.extend(self.out.drain(..).map(|b| b.to_vec()));
            out.due_ns = v_due;
            out.track = 0;
            self.vi += 1;
        } else {
            let frame = &self.audio[(self.ai % self.audio.len() as u64) as usize];
            let ts = self.ats0.wrapping_add((self.ai * AUDIO_FRAME) as u32);
            let mut p = Vec::with_capacity(16 + frame.len());
            rtp::write_header(&mut p, 97, true, self.aseq, ts, self.assrc);
            if aac::packetize_rfc3640(frame, &mut p).is_ok() {
                self.aseq = self.aseq.wrapping_add(1);
                out.packets.push(p);
            }
            out.due_ns = a_due;
            out.track = 1;
            self.ai += 1;
        }
    }

    fn nominal_bps(&self) -> f64 {
        let loop_secs = self.video.len() as f64 / self.fps as f64;
        self.bytes_per_loop as f64 / loop_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_rate_and_layout() {
        let mut s = SynthSource::new(1_000_000, 1200, 25, 25, 7).unwrap();
        let mut b = Burst::default();
        let mut packets = 0;
        let mut bytes = 0;
        let mut keyframes = 0;
        for _ in 0..250 {
            s.next_burst(&mut b);
            assert!(!b.packets.is_empty());
            let n = b.packets.len();
            packets += n;
            for (i, p) in b.packets.iter_mut().enumerate() {
                assert_eq!(p.len(), 1200);
                let v = rtp::view(p).unwrap();
                assert_eq!(v.marker, i == n - 1);
                if p[12] == 0x65 {
                    keyframes += 1;
                }
                stamp(p, 123_456_789);
                assert_eq!(send_time(p), Some(123_456_789));
                bytes += p.len();
            }
        }
        // 10 s at 1 Mbit/s in 1200-byte packets: 1041 or 1042 packets.
        assert!((1040..=1042).contains(&packets), "{packets}");
        assert!((bytes as f64 - 1_250_000.0).abs() < 2400.0);
        assert_eq!(keyframes, 10);
        assert_eq!(b.due_ns, 249 * 40_000_000);
    }

    #[test]
    fn non_synthetic_packets_have_no_send_time() {
        let mut p = Vec::new();
        rtp::write_header(&mut p, 96, false, 1, 2, 3);
        p.extend_from_slice(&[0x65; 40]);
        assert_eq!(send_time(&p), None);
        assert_eq!(send_time(&p[..5]), None);
    }

    #[test]
    fn demo_clip_loops_with_audio() {
        let spec = SourceSpec::Demo {
            audio: true,
            packet_size: 1200,
        };
        let mut s = spec.build(1).unwrap();
        assert!(s.sdp().contains("MPEG4-GENERIC"));
        let mut b = Burst::default();
        let mut last_due = 0;
        let mut tracks = [0usize; 2];
        for _ in 0..2000 {
            s.next_burst(&mut b);
            assert!(b.due_ns >= last_due);
            last_due = b.due_ns;
            tracks[b.track] += 1;
            assert!(b.packets.iter().all(|p| p.len() <= 1200));
        }
        assert!(tracks[0] > 500 && tracks[1] > 500, "{tracks:?}");
        assert!(s.nominal_bps() > 10_000.0);
    }
}
