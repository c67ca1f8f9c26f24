//! What an `exec:` source writes to stdout — MPEG-TS, Annex-B H.264/H.265 or MJPEG — turned
//! into RTP packets and an SDP for the normal RTSP fan-out.
//!
//! Sans-IO like the rest of the crate: [`detect`] sniffs the first bytes,
//! [`StdoutSource::push`] takes bytes with their arrival time, [`StdoutSource::sdp`] says
//! what the tracks are once every track's parameters are known, and
//! [`StdoutSource::poll_packet`] hands out RTP packets. Formats that carry no time of their
//! own (Annex-B, MJPEG) are stamped with arrival time at 90 kHz; MPEG-TS keeps its PTS.
//!
//! Memory is bounded whatever the input: at most [`MAX_PENDING`] bytes wait for reassembly
//! (beyond that `push` fails), and frames waiting for the SDP are capped too.

mod annexb;
mod detect;
mod jpeg;
mod mjpeg;
mod rtpize;
mod ts;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::codec::h264;
use crate::sdp::Sdp;
use annexb::{AnnexBSplitter, VideoCodec};
pub use detect::{detect, DETECT_LIMIT};
pub use jpeg::JpegError;
use mjpeg::MjpegSplitter;
use rtpize::{Frame, Payload, Track, TrackCodec};
use ts::{TsDemuxer, TsEvent};

/// Most bytes buffered for reassembly (partial PES packets, access unit, JPEG frame).
pub const MAX_PENDING: usize = 8 << 20;
/// How long (µs of arrival time after the first frame) the SDP waits for every stream of an
/// MPEG-TS program. After that, streams whose parameters are still unknown — a PMT that lists
/// an audio stream no packet ever carries, as cameras with the microphone off do — are left
/// out of the SDP and the source goes on without them (logged).
pub const PROBE_TIMEOUT_US: u64 = 5_000_000;
/// Frames arriving before the SDP is complete are held, not lost, so the first keyframe
/// survives; beyond these bounds the oldest are dropped.
const HOLD_MAX_BYTES: usize = 4 << 20;
const HOLD_MAX_FRAMES: usize = 512;

/// What a stdout stream turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// 188-byte MPEG-TS packets carrying H.264, H.265 and/or ADTS AAC.
    MpegTs,
    AnnexBH264,
    AnnexBH265,
    /// JPEGs back to back, or as multipart/x-mixed-replace parts.
    Mjpeg,
}

/// Why a stdout stream cannot be (or can no longer be) turned into RTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DemuxError {
    #[error("stdout is not MPEG-TS, Annex-B H.264/H.265 or MJPEG (starts with {head})")]
    Unrecognized {
        /// The first bytes in hex.
        head: String,
    },
    #[error("stdout is multipart, but its parts are {content_type:?} rather than image/jpeg")]
    NotJpegMultipart { content_type: String },
    #[error(
        "the MPEG-TS program has no H.264 (0x1b), H.265 (0x24) or ADTS AAC (0x0f) stream; \
         stream types: {stream_types}"
    )]
    NoSupportedStreams { stream_types: String },
    #[error(
        "{pending} bytes buffered at stream byte {offset} without a complete {unit} \
         (limit {MAX_PENDING}); buffers dropped"
    )]
    TooMuchPending {
        pending: usize,
        offset: u64,
        unit: &'static str,
    },
    #[error("JPEG frame at stream byte {offset} cannot be sent over RTP (RFC 2435): {reason}")]
    UnsupportedJpeg { offset: u64, reason: JpegError },
}

/// What a source repaired or threw away so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DemuxStats {
    /// MPEG-TS sync byte missing; sync was found again further on.
    pub sync_losses: u64,
    /// MPEG-TS continuity counter jumps.
    pub cc_errors: u64,
    /// MPEG-TS packets with the error flag, scrambling or a malformed adaptation field.
    pub bad_packets: u64,
    /// PES packets or JPEG frames dropped as cut short, malformed or oversize.
    pub dropped_units: u64,
    /// Frames dropped while waiting for the SDP because too many were held.
    pub held_dropped: u64,
}

/// An `exec:` source's stdout in, RTP packets out. See the module docs.
#[derive(Debug)]
pub struct StdoutSource {
    format: Format,
    input: Input,
    tracks: Vec<SourceTrack>,
    sdp: Option<String>,
    /// Frames (track index, frame) waiting for the SDP, in arrival order.
    held: VecDeque<(usize, Frame)>,
    held_bytes: usize,
    first_frame_at: Option<u64>,
    queue: VecDeque<(usize, Bytes)>,
    clock: ArrivalClock,
    /// Bytes pushed so far.
    offset: u64,
    seed: u64,
    ts_base: u64,
    held_dropped: u64,
    program_change_logged: bool,
    scratch: Vec<Bytes>,
}

#[derive(Debug)]
enum Input {
    Ts(TsDemuxer),
    AnnexB(AnnexBSplitter),
    Mjpeg(MjpegSplitter),
}

#[derive(Debug)]
struct SourceTrack {
    /// MPEG-TS PID; 0 for the single stream of the other formats.
    pid: u16,
    track: Track,
    /// Index of the m= line once the SDP is out; None before, or if left out of it.
    mline: Option<usize>,
    /// Frames of this track are being held: one a decoder can start from was seen.
    holding: bool,
}

impl StdoutSource {
    /// `ssrc_seed` should be random: SSRCs, initial sequence numbers and the timestamp
    /// offset are derived from it.
    pub fn new(format: Format, ssrc_seed: u32) -> Self {
        let seed = splitmix64(u64::from(ssrc_seed));
        let (input, codec) = match format {
            Format::MpegTs => (Input::Ts(TsDemuxer::new()), None),
            Format::AnnexBH264 => (
                Input::AnnexB(AnnexBSplitter::new(VideoCodec::H264)),
                Some(TrackCodec::H264),
            ),
            Format::AnnexBH265 => (
                Input::AnnexB(AnnexBSplitter::new(VideoCodec::H265)),
                Some(TrackCodec::H265),
            ),
            Format::Mjpeg => (Input::Mjpeg(MjpegSplitter::new()), Some(TrackCodec::Jpeg)),
        };
        let mut source = StdoutSource {
            format,
            input,
            tracks: Vec::new(),
            sdp: None,
            held: VecDeque::new(),
            held_bytes: 0,
            first_frame_at: None,
            queue: VecDeque::new(),
            clock: ArrivalClock::default(),
            offset: 0,
            seed,
            ts_base: splitmix64(seed ^ 0x7473_6261_7365) & 0xffff_ffff,
            held_dropped: 0,
            program_change_logged: false,
            scratch: Vec::new(),
        };
        if let Some(codec) = codec {
            source.tracks.push(SourceTrack {
                pid: 0,
                track: source.new_track(0, codec),
                mline: None,
                holding: false,
            });
        }
        source
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Feed bytes read from stdout at time `now` (µs). Errors: more than [`MAX_PENDING`]
    /// bytes without a complete unit (the buffers are dropped), a JPEG that RFC 2435 cannot
    /// carry, or an MPEG-TS program with nothing we can send. Packets already produced by this
    /// call stay available; a caller normally ends the source on error.
    pub fn push(&mut self, data: &[u8], now: u64) -> Result<(), DemuxError> {
        self.offset += data.len() as u64;
        let result = match &mut self.input {
            Input::Ts(demuxer) => {
                let mut events = Vec::new();
                demuxer.push(data, &mut events);
                self.on_ts_events(events, now)
            }
            Input::AnnexB(splitter) => {
                let mut units = Vec::new();
                splitter.push(data, now, &mut units);
                self.on_access_units(units, now);
                Ok(())
            }
            Input::Mjpeg(splitter) => {
                let mut frames = Vec::new();
                splitter.push(data, now, &mut frames);
                self.on_jpegs(frames, now)
            }
        };
        self.check_probe_timeout(now);
        result.and(self.check_pending())
    }

    /// End of the stream: hand on what only the end of input completes (the last access unit
    /// of Annex-B, the last unbounded PES of MPEG-TS).
    pub fn finish(&mut self, now: u64) {
        match &mut self.input {
            Input::Ts(demuxer) => {
                let mut events = Vec::new();
                demuxer.finish(&mut events);
                // finish() only completes PES packets; a program change cannot come out.
                let _ = self.on_ts_events(events, now);
            }
            Input::AnnexB(splitter) => {
                let mut units = Vec::new();
                splitter.finish(&mut units);
                self.on_access_units(units, now);
            }
            Input::Mjpeg(_) => {}
        }
    }

    /// The SDP (one m= per track, `a=control:trackID=N`), once every track's parameters are
    /// known: H.264 SPS and PPS, H.265 VPS, SPS and PPS, AAC its first ADTS header, MJPEG its
    /// first frame (MPEG-TS: for each supported stream of the PMT, or for those known after
    /// [`PROBE_TIMEOUT_US`]). None until then.
    pub fn sdp(&self) -> Option<&str> {
        self.sdp.as_deref()
    }

    /// Next RTP packet (header included) and the index of its m= line. Nothing comes out
    /// before [`sdp`](Self::sdp) is Some; frames arriving earlier are held (for video from
    /// the first keyframe on, within a bound) and come out once it is. Drain after each
    /// `push`: this queue is the caller's to empty and is not bounded here.
    #[must_use]
    pub fn poll_packet(&mut self) -> Option<(usize, Bytes)> {
        self.queue.pop_front()
    }

    pub fn stats(&self) -> DemuxStats {
        let mut stats = DemuxStats {
            held_dropped: self.held_dropped,
            ..DemuxStats::default()
        };
        match &self.input {
            Input::Ts(d) => {
                stats.sync_losses = d.stats.sync_losses;
                stats.cc_errors = d.stats.cc_errors;
                stats.bad_packets = d.stats.bad_packets;
                stats.dropped_units = d.stats.dropped_pes;
            }
            Input::AnnexB(_) => {}
            Input::Mjpeg(s) => stats.dropped_units = s.dropped,
        }
        stats
    }

    fn new_track(&self, index: usize, codec: TrackCodec) -> Track {
        let bits = splitmix64(self.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Track::new(codec, index, bits as u32, (bits >> 32) as u16, self.ts_base)
    }

    fn on_ts_events(&mut self, events: Vec<TsEvent>, now: u64) -> Result<(), DemuxError> {
        let mut result = Ok(());
        for event in events {
            match event {
                TsEvent::Program(streams) => {
                    if let Err(e) = self.on_program(&streams) {
                        result = result.and(Err(e));
                    }
                }
                TsEvent::Pes { pid, pts, payload } => {
                    let Some(index) = self.tracks.iter().position(|t| t.pid == pid) else {
                        continue;
                    };
                    let payload = match self.tracks[index].track.codec() {
                        TrackCodec::H264 => Payload::Nals(split_nals(&payload, VideoCodec::H264)),
                        TrackCodec::H265 => Payload::Nals(split_nals(&payload, VideoCodec::H265)),
                        TrackCodec::Aac => Payload::Adts(payload),
                        TrackCodec::Jpeg => continue,
                    };
                    self.accept(
                        index,
                        Frame {
                            ts90k: pts,
                            payload,
                        },
                        now,
                    );
                }
            }
        }
        result
    }

    fn on_program(&mut self, streams: &[ts::EsInfo]) -> Result<(), DemuxError> {
        let supported: Vec<(u16, TrackCodec)> = streams
            .iter()
            .filter_map(|es| {
                let codec = match es.stream_type {
                    ts::STREAM_TYPE_H264 => TrackCodec::H264,
                    ts::STREAM_TYPE_H265 => TrackCodec::H265,
                    ts::STREAM_TYPE_AAC_ADTS => TrackCodec::Aac,
                    other => {
                        tracing::info!(
                            pid = es.pid,
                            stream_type = other,
                            "mpeg-ts: stream type not supported, ignored"
                        );
                        return None;
                    }
                };
                Some((es.pid, codec))
            })
            .collect();
        let current: Vec<(u16, TrackCodec)> = self
            .tracks
            .iter()
            .map(|t| (t.pid, t.track.codec()))
            .collect();
        if supported == current && !supported.is_empty() {
            return Ok(());
        }
        if self.sdp.is_some() {
            // The SDP is out and readers rely on it: keep the tracks (PES on PIDs it does not
            // list are ignored).
            if !self.program_change_logged {
                tracing::warn!("mpeg-ts: program changed after the SDP was published; keeping the original streams");
                self.program_change_logged = true;
            }
            return Ok(());
        }
        if supported.is_empty() {
            self.tracks.clear();
            let stream_types = streams
                .iter()
                .map(|es| format!("0x{:02x}", es.stream_type))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(DemuxError::NoSupportedStreams { stream_types });
        }
        self.tracks = supported
            .iter()
            .enumerate()
            .map(|(index, &(pid, codec))| SourceTrack {
                pid,
                track: self.new_track(index, codec),
                mline: None,
                holding: false,
            })
            .collect();
        self.held.clear();
        self.held_bytes = 0;
        self.first_frame_at = None;
        Ok(())
    }

    fn on_access_units(&mut self, units: Vec<annexb::AccessUnit>, now: u64) {
        for unit in units {
            let ts90k = self.clock.stamp(unit.time);
            let frame = Frame {
                ts90k: Some(ts90k),
                payload: Payload::Nals(unit.nals),
            };
            self.accept(0, frame, now);
        }
    }

    fn on_jpegs(&mut self, frames: Vec<mjpeg::JpegFrame>, now: u64) -> Result<(), DemuxError> {
        let mut result = Ok(());
        for f in frames {
            match jpeg::parse(&f.data) {
                Ok(info) => {
                    let ts90k = self.clock.stamp(f.time);
                    let payload = Payload::Jpeg { data: f.data, info };
                    self.accept(
                        0,
                        Frame {
                            ts90k: Some(ts90k),
                            payload,
                        },
                        now,
                    );
                }
                Err(reason) => {
                    result = result.and(Err(DemuxError::UnsupportedJpeg {
                        offset: f.offset,
                        reason,
                    }));
                }
            }
        }
        result
    }

    fn accept(&mut self, index: usize, frame: Frame, now: u64) {
        self.tracks[index].track.observe(&frame);
        if self.sdp.is_none() {
            self.first_frame_at.get_or_insert(now);
            if !self.tracks.iter().all(|t| t.track.ready()) {
                return self.hold(index, frame);
            }
            self.publish();
        }
        self.send(index, frame);
    }

    fn hold(&mut self, index: usize, frame: Frame) {
        // Pictures before the first keyframe could not be decoded once sent.
        let track = &mut self.tracks[index];
        track.holding |= track.track.is_random_access(&frame);
        if !track.holding {
            return;
        }
        self.held_bytes += frame.len();
        self.held.push_back((index, frame));
        while self.held_bytes > HOLD_MAX_BYTES || self.held.len() > HOLD_MAX_FRAMES {
            let Some((_, old)) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= old.len();
            self.held_dropped += 1;
        }
    }

    fn send(&mut self, index: usize, frame: Frame) {
        let track = &mut self.tracks[index];
        let Some(mline) = track.mline else {
            return;
        };
        track.track.packetize(frame, &mut self.scratch);
        self.queue
            .extend(self.scratch.drain(..).map(|p| (mline, p)));
    }

    /// Write the SDP for the tracks that are ready, then send what was held.
    fn publish(&mut self) {
        let mut medias = Vec::new();
        for t in &mut self.tracks {
            if t.track.ready() {
                t.mline = Some(medias.len());
                medias.push(t.track.media(medias.len()));
            } else {
                tracing::warn!(pid = t.pid, codec = ?t.track.codec(), "stream parameters still unknown, left out of the SDP");
            }
        }
        let sdp = Sdp {
            session: [
                "v=0",
                "o=- 0 0 IN IP4 127.0.0.1",
                "s=corecast",
                "c=IN IP4 0.0.0.0",
                "t=0 0",
            ]
            .map(str::to_owned)
            .to_vec(),
            session_control: Some("*".to_owned()),
            medias,
        };
        self.sdp = Some(sdp.write());
        self.held_bytes = 0;
        for (index, frame) in std::mem::take(&mut self.held) {
            self.send(index, frame);
        }
    }

    fn check_probe_timeout(&mut self, now: u64) {
        let expired = self
            .first_frame_at
            .is_some_and(|t| now.saturating_sub(t) >= PROBE_TIMEOUT_US);
        if self.sdp.is_none() && expired && self.tracks.iter().any(|t| t.track.ready()) {
            self.publish();
        }
    }

    fn check_pending(&mut self) -> Result<(), DemuxError> {
        let (pending, unit) = match &self.input {
            Input::Ts(d) => (d.pending(), "MPEG-TS PES packet"),
            Input::AnnexB(s) => (s.pending(), "access unit"),
            Input::Mjpeg(s) => (s.pending(), "JPEG frame"),
        };
        if pending <= MAX_PENDING {
            return Ok(());
        }
        match &mut self.input {
            Input::Ts(d) => d.reset_buffers(),
            Input::AnnexB(s) => s.reset_buffers(),
            Input::Mjpeg(s) => s.reset_buffers(),
        }
        Err(DemuxError::TooMuchPending {
            pending,
            offset: self.offset,
            unit,
        })
    }
}

/// NAL units of an Annex-B access unit, without the ones RTP does not carry.
fn split_nals(access_unit: &Bytes, codec: VideoCodec) -> Vec<Bytes> {
    let mut nals = h264::nal_units(access_unit);
    nals.retain(|nal| !codec.is_droppable(nal));
    nals
}

/// Arrival time in µs → 90 kHz, strictly increasing so two frames never share a timestamp.
#[derive(Debug, Default)]
struct ArrivalClock {
    last: Option<u64>,
}

impl ArrivalClock {
    fn stamp(&mut self, now_us: u64) -> u64 {
        let ts = (u128::from(now_us) * 9 / 100) as u64;
        let ts = match self.last {
            Some(last) if ts <= last => last + 1,
            _ => ts,
        };
        self.last = Some(ts);
        ts
    }
}

/// SplitMix64: spreads a seed into independent-looking values.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
