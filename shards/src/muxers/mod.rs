//! Muxed outputs for HTTP and WebSocket viewers (fMP4, MPEG-TS, ADTS), assembled once per
//! stream and variant for all viewers.
//!
//! A muxer runs on the stream's owner shard as one more reader of the stream's ring. Its
//! output fragments go into an output stream keyed `{stream, variant}` (`OutputKey`, in the
//! registry's own map of outputs, owned by the same shard), so they reach viewers on other
//! shards through the ordinary relay: one hop per fragment per interested shard, the
//! fragment bytes shared by reference count. A muxer stops a few seconds after the last
//! viewer of its variant leaves (an idle timer armed by viewer events).

use crate::core::hub::{LocalStream, RoomMsg, Shard};
pub use crate::core::registry::Variant;
use crate::core::registry::{MuxInfo, OutputKey, ProducerInfo, ProducerStats};
use bytes::{Bytes, BytesMut};
use corecast::codec::CodecKind;
use corecast::fanout;
use corecast::filter::{Filter, Kind, Want};
use corecast::mux::{self, Fragment, Frame, FrameAssembler, LiveFmp4, LiveTs, TrackConfig};
use corecast::packet::Packet;
use corecast::ring::{Cursor, Next};
use corecast::sdp::Sdp;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

pub mod snapshot;

/// A muxer with no viewer of its variant for this long stops.
const IDLE_STOP: Duration = Duration::from_secs(3);
/// How long a muxer waits for in-band parameter sets the SDP lacks.
const CONFIG_WAIT: Duration = Duration::from_secs(6);
/// Frames held while waiting for parameter sets.
const MAX_PENDING_FRAMES: usize = 2_000;
/// How long the fragments of an audio track may wait for the next video fragment (see
/// `run_muxer`): a viewer is then written once per video frame, not once per audio frame
/// too (25 writes a second instead of ~72 for 25 fps video with 48 kHz AAC). Bounds the
/// audio's added delay when the video is slow or stalls.
const AUDIO_HOLD_US: u64 = 100_000;
/// How long a viewer waits for the muxer to produce its init segment.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a muxed output or a snapshot could not be had; `status` is the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    #[error("stream not found")]
    NotFound,
    #[error("stream is not live")]
    NotLive,
    #[error("stream has no SDP")]
    NoSdp,
    #[error("stream has no track {variant} can carry ({supported})")]
    NoTrack {
        variant: &'static str,
        supported: &'static str,
    },
    #[error("stream has no video track")]
    NoVideo,
    #[error("not a video track")]
    NotVideo,
    #[error("no parameter sets in the SDP or in-band")]
    NoParameterSets,
    #[error("no parameter sets for the keyframe")]
    NoKeyframeParameterSets,
    #[error("stream ended")]
    Ended,
    #[error("no keyframe within 10 s")]
    NoKeyframe,
    #[error("no {0} output within {1:?}")]
    NoOutput(&'static str, Duration),
    #[error("too many snapshots in progress")]
    Busy,
    #[error("muxer output already claimed")]
    OutputTaken,
    #[error("{0}")]
    Track(&'static str),
    /// The snapshot's ffmpeg, in its words.
    #[error("{0}")]
    Transcode(String),
}

impl MuxError {
    pub fn status(&self) -> u16 {
        match self {
            MuxError::NotFound | MuxError::NotLive | MuxError::Ended => 404,
            MuxError::NoTrack { .. } | MuxError::NoVideo | MuxError::NotVideo => 415,
            MuxError::NoOutput(..) | MuxError::NoKeyframe => 504,
            MuxError::Busy => 503,
            _ => 500,
        }
    }
}

/// What a variant can carry, for the error that says it cannot.
fn supported(v: Variant) -> &'static str {
    match v {
        Variant::Mp4 | Variant::Ts => "H.264, H.265, AAC",
        Variant::Mp4Tracks { .. } => MP4_CARRIES,
        Variant::Aac => "AAC",
        Variant::Mjpeg => "JPEG; use frame.jpeg for H.264/H.265",
    }
}

/// Consumers' `format_name`s that read a variant (keep its muxer alive).
trait Formats {
    fn formats(self) -> &'static [&'static str];
}

impl Formats for Variant {
    fn formats(self) -> &'static [&'static str] {
        match self {
            Variant::Mp4 | Variant::Mp4Tracks { .. } => &["mp4", "mse"],
            Variant::Ts => &["ts"],
            Variant::Aac => &["aac"],
            Variant::Mjpeg => &["mjpeg"],
        }
    }
}

/// The output a muxer of `name` in format `v` publishes to.
pub fn output_key(name: &str, v: Variant) -> OutputKey {
    OutputKey {
        stream: name.to_string(),
        variant: v,
    }
}

/// The tracks of `sdp` a variant carries: (SDP media index, codec). At most one video
/// (H.264/H.265) and one audio (AAC) track, the first of each.
pub fn select_tracks(sdp: &Sdp, v: Variant) -> Vec<(usize, CodecKind)> {
    let mut video = None;
    let mut audio = None;
    let mut jpeg = None;
    for (i, m) in sdp.medias.iter().enumerate() {
        match m.codec().map(|(k, _)| k) {
            Some(k @ (CodecKind::H264 | CodecKind::H265)) if video.is_none() => {
                video = Some((i, k))
            }
            Some(CodecKind::Aac) if audio.is_none() => audio = Some((i, CodecKind::Aac)),
            Some(CodecKind::Mjpeg) if jpeg.is_none() => jpeg = Some((i, CodecKind::Mjpeg)),
            _ => {}
        }
    }
    match v {
        Variant::Mp4 | Variant::Ts => video.into_iter().chain(audio).collect(),
        Variant::Mp4Tracks { video, audio, .. } => [video, audio]
            .into_iter()
            .flatten()
            .filter_map(|i| {
                let i = usize::from(i);
                Some((i, sdp.medias.get(i)?.codec()?.0))
            })
            .collect(),
        Variant::Aac => audio.into_iter().collect(),
        Variant::Mjpeg => jpeg.into_iter().collect(),
    }
}

/// What fMP4 viewers can get, for messages.
pub const MP4_CARRIES: &str = "H.264, H.265, AAC, Opus, PCMA/PCMU/L16 as FLAC";

/// Codecs (go2rtc's names) the fMP4 muxer carries, in the order a viewer accepting several
/// gets them: H.264 before H.265; AAC first, then Opus (both as they are), then PCM (which
/// costs a FLAC encode).
const MP4_VIDEO: [&str; 2] = ["h264", "h265"];
const MP4_AUDIO: [&str; 5] = ["aac", "opus", "pcma", "pcmu", "pcm"];

fn want(kind: Kind, codecs: &[&str]) -> Want {
    Want {
        kind,
        codecs: codecs.iter().map(|c| c.to_string()).collect(),
        all: false,
    }
}

/// go2rtc's default for MP4 viewers: H.264/H.265 and AAC.
fn mp4_default() -> Filter {
    Filter {
        wants: vec![
            want(Kind::Video, &MP4_VIDEO),
            want(Kind::Audio, &MP4_AUDIO[..1]),
        ],
    }
}

/// What a `stream.mp4` viewer accepts, from its query as go2rtc reads it: `mp4` is H.264 or
/// H.265 and AAC, `mp4=flac` adds PCMA/PCMU/L16 (sent as FLAC), any other `mp4=` value
/// (`all`) adds Opus too; without `mp4`, `video=`/`audio=` filters as on RTSP; else the
/// default.
pub fn mp4_accept(query: &[(String, String)]) -> Filter {
    if let Some((_, v)) = query.iter().find(|(k, _)| k == "mp4") {
        let mut f = mp4_default();
        let audio = match v.as_str() {
            "" => &MP4_AUDIO[..1],
            "flac" => &["aac", "pcma", "pcmu", "pcm"][..],
            _ => &MP4_AUDIO[..],
        };
        f.wants[1] = want(Kind::Audio, audio);
        return f;
    }
    let raw: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "video" || k == "audio")
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    if raw.is_empty() {
        return mp4_default();
    }
    Filter::parse(Some(&raw.join("&")), None)
}

/// What a browser accepts from its MSE codec list (`isTypeSupported` results, go2rtc's
/// player sends e.g. `avc1.640029,hvc1.1.6.L153.B0,mp4a.40.2,flac,opus`): `flac` stands for
/// the PCM codecs we re-encode. An empty list gets the MP4 default (as in go2rtc).
pub fn mse_accept(codecs: &str) -> Filter {
    if codecs.trim().is_empty() {
        return mp4_default();
    }
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    for c in codecs.split(',').take(64) {
        let c = c.trim().to_ascii_lowercase();
        let family = c.split('.').next().unwrap_or("");
        match family {
            "avc1" | "avc3" => video.push("h264"),
            "hvc1" | "hev1" => video.push("h265"),
            "mp4a" if c.starts_with("mp4a.40.") => audio.push("aac"),
            "opus" => audio.push("opus"),
            "flac" => audio.extend(["pcma", "pcmu", "pcm"]),
            _ => {}
        }
    }
    let ordered = |all: &[&'static str], have: &[&str]| -> Vec<&'static str> {
        all.iter().copied().filter(|c| have.contains(c)).collect()
    };
    let mut wants = Vec::new();
    for (kind, all, have) in [
        (Kind::Video, &MP4_VIDEO[..], video),
        (Kind::Audio, &MP4_AUDIO[..], audio),
    ] {
        let codecs = ordered(all, &have);
        if !codecs.is_empty() {
            wants.push(want(kind, &codecs));
        }
    }
    Filter { wants }
}

/// The accepted codecs as a reader query (`video=h264,h265&audio=aac`), which is how the
/// source lifecycle learns what a viewer needs from later sources. A want without codecs
/// means the ones fMP4 carries.
pub fn accept_query(f: &Filter) -> String {
    f.wants
        .iter()
        .map(|w| {
            let (k, all) = match w.kind {
                Kind::Video => ("video", &MP4_VIDEO[..]),
                Kind::Audio => ("audio", &MP4_AUDIO[..]),
            };
            let codecs: Vec<&str> = if w.codecs.is_empty() {
                all.to_vec()
            } else {
                w.codecs.iter().map(String::as_str).collect()
            };
            format!("{k}={}", codecs.join(","))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The fMP4 tracks for a viewer: for its first video want and its first audio want, the
/// first codec in the want's order that the stream has (its first such track) and fMP4
/// carries. None when nothing matches.
pub fn choose_mp4(sdp: &Sdp, accept: &Filter) -> Option<Variant> {
    let pick = |kind: Kind| -> Option<u16> {
        let w = accept.wants.iter().find(|w| w.kind == kind)?;
        let carried: &[&str] = match kind {
            Kind::Video => &MP4_VIDEO,
            Kind::Audio => &MP4_AUDIO,
        };
        let codecs: Vec<&str> = if w.codecs.is_empty() {
            carried.to_vec()
        } else {
            w.codecs
                .iter()
                .map(String::as_str)
                .filter(|c| carried.contains(c))
                .collect()
        };
        codecs.iter().find_map(|c| {
            let one = Filter {
                wants: vec![want(kind, &[c])],
            };
            // A PCM track the FLAC encoder cannot take (say, 9 channels) is skipped.
            one.select(sdp)
                .into_iter()
                .find(|&i| TrackConfig::from_media(&sdp.medias[i]).is_some() || kind == Kind::Video)
                .and_then(|i| u16::try_from(i).ok())
        })
    };
    let (video, audio) = (pick(Kind::Video), pick(Kind::Audio));
    (video.is_some() || audio.is_some()).then_some(Variant::Mp4Tracks {
        video,
        audio,
        paced: false,
    })
}

/// The stream's codecs by go2rtc name, for messages (`h264, pcma`).
pub fn stream_codecs(sdp: &Sdp) -> String {
    sdp.medias
        .iter()
        .map(corecast::filter::codec_name)
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

thread_local! {
    /// Muxers running on this shard (one shard per thread), by output.
    static MUXERS: RefCell<HashMap<OutputKey, Rc<MuxCtl>>> = RefCell::new(HashMap::new());
}

/// A running muxer's stop control, driven by events (see `reevaluate`).
pub struct MuxCtl {
    variant: Variant,
    /// Since when no viewer reads the variant (None while one does).
    idle_since: Cell<Option<Instant>>,
    idle_timer: Cell<bool>,
    stop: Cell<bool>,
}

/// Who wants `name` changed: muxers of it without viewers stop after `IDLE_STOP`.
pub fn reevaluate(shard: &Rc<Shard>, name: &str) {
    let ctls: Vec<Rc<MuxCtl>> = MUXERS.with(|m| {
        m.borrow()
            .iter()
            .filter(|(k, _)| k.stream == name)
            .map(|(_, c)| c.clone())
            .collect()
    });
    for ctl in ctls {
        if viewers_of(shard, name, ctl.variant) > 0 {
            ctl.idle_since.set(None);
        } else {
            if ctl.idle_since.get().is_none() {
                ctl.idle_since.set(Some(Instant::now()));
            }
            arm_idle_timer(shard, name, &ctl);
        }
    }
}

fn arm_idle_timer(shard: &Rc<Shard>, name: &str, ctl: &Rc<MuxCtl>) {
    if ctl.idle_timer.replace(true) {
        return;
    }
    let (sh, n, c) = (shard.clone(), name.to_string(), ctl.clone());
    glommio::spawn_local(async move {
        while !c.stop.get() {
            let Some(since) = c.idle_since.get() else {
                break;
            };
            let due = since + IDLE_STOP;
            let now = Instant::now();
            if now < due {
                glommio::timer::sleep(due - now).await;
                continue;
            }
            if viewers_of(&sh, &n, c.variant) == 0 {
                debug!(stream = %n, variant = c.variant.tag(), "muxer idle: stopping");
                c.stop.set(true);
            } else {
                c.idle_since.set(None);
            }
            break;
        }
        c.idle_timer.set(false);
    })
    .detach();
}

/// Starts the muxer of `key` on this shard, its stream's owner, unless it runs.
pub fn start_muxer(shard: &Rc<Shard>, key: &OutputKey) {
    if MUXERS.with(|m| m.borrow().contains_key(key)) {
        return;
    }
    let (name, v) = (key.stream.as_str(), key.variant);
    // Idle from the start: the viewer that asked registers right after, and one that
    // never does lets it stop by itself.
    let ctl = Rc::new(MuxCtl {
        variant: v,
        idle_since: Cell::new(Some(Instant::now())),
        idle_timer: Cell::new(false),
        stop: Cell::new(false),
    });
    MUXERS.with(|m| m.borrow_mut().insert(key.clone(), ctl.clone()));
    arm_idle_timer(shard, name, &ctl);
    let (sh, n, key) = (shard.clone(), name.to_string(), key.clone());
    glommio::spawn_local(async move {
        if let Err(e) = run_muxer(&sh, &n, &key, v, &ctl).await {
            warn!(stream = %n, variant = v.tag(), error = %e, "muxer stopped");
        }
        MUXERS.with(|m| m.borrow_mut().remove(&key));
        sh.registry.shards[sh.id]
            .muxers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    })
    .detach();
    shard.registry.shards[shard.id]
        .muxers
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

enum Muxer {
    Mp4(LiveFmp4),
    Ts(Box<LiveTs>),
    Aac { track: usize, config: Bytes },
    Mjpeg { track: usize },
}

impl Muxer {
    fn push(&mut self, f: Frame, out: &mut Vec<Fragment>) {
        match self {
            Muxer::Mp4(m) => m.push(f, out),
            Muxer::Ts(m) => m.push(f, out),
            Muxer::Aac { track, config } => {
                if f.track != *track {
                    return;
                }
                let len: usize = f.units.iter().map(Bytes::len).sum();
                if let Some(h) = mux::adts_header(config, len) {
                    let mut b = BytesMut::with_capacity(7 + len);
                    b.extend_from_slice(&h);
                    for u in &f.units {
                        b.extend_from_slice(u);
                    }
                    out.push(Fragment {
                        data: b.freeze(),
                        keyframe: true,
                    });
                }
            }
            Muxer::Mjpeg { track } => {
                if f.track != *track {
                    return;
                }
                // One multipart part per picture (go2rtc's boundary name).
                let len: usize = f.units.iter().map(Bytes::len).sum();
                let head =
                    format!("--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len}\r\n\r\n");
                let mut b = BytesMut::with_capacity(head.len() + len + 2);
                b.extend_from_slice(head.as_bytes());
                for u in &f.units {
                    b.extend_from_slice(u);
                }
                b.extend_from_slice(b"\r\n");
                out.push(Fragment {
                    data: b.freeze(),
                    keyframe: true,
                });
            }
        }
    }
}

/// Releases a local reader when dropped, however the task ends.
struct ReaderGuard(Rc<Shard>, Rc<LocalStream>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.detach_reader(&self.1);
    }
}

/// Closes the muxer's output when dropped.
struct OwnedGuard(Rc<Shard>, Rc<LocalStream>);

impl Drop for OwnedGuard {
    fn drop(&mut self) {
        self.0.close_owned(&self.1);
    }
}

fn viewers_of(shard: &Shard, name: &str, v: Variant) -> usize {
    // Viewers of chosen tracks register them (`mp4_consumer_tracks`): each such muxer
    // counts only its own.
    let tracks = match v {
        Variant::Mp4Tracks { .. } => Some(mp4_consumer_tracks(v)),
        _ => None,
    };
    // Of `stream.mp4` and MSE viewers, those whose muxer this is (see `paced`).
    let own = |format: &str| match v {
        Variant::Mp4Tracks { paced, .. } => match format {
            "mse" => !paced,
            _ => paced == paced_progressive(shard),
        },
        _ => true,
    };
    let g = shard.registry.lock();
    g.streams.get(name).map_or(0, |e| {
        e.consumers
            .iter()
            .filter(|c| v.formats().contains(&c.format_name) && own(c.format_name))
            .filter(|c| tracks.as_ref().is_none_or(|t| c.tracks == *t))
            .count()
    })
}

/// Whether `stream.mp4` viewers get their own muxer, published once per
/// `fanout: progressive_interval_ms` (it differs from MSE's `mux_interval_ms`).
pub fn paced_progressive(shard: &Shard) -> bool {
    let f = &shard.config.fanout;
    f.progressive_ms() != f.mux_interval_ms
}

/// The interval (microseconds) a muxer of `v` publishes at: HTTP progressive outputs at
/// `fanout: progressive_interval_ms`, MSE at `mux_interval_ms`, other formats at once.
fn interval_us(f: &corecast::config::FanoutConfig, v: Variant) -> u64 {
    let ms = match v {
        Variant::Ts | Variant::Mp4Tracks { paced: true, .. } => f.progressive_ms(),
        Variant::Mp4 | Variant::Mp4Tracks { .. } => f.mux_interval_ms,
        Variant::Aac | Variant::Mjpeg => 0,
    };
    ms.saturating_mul(1000)
}

/// The SDP media indexes a viewer of `v` receives, as its consumer entry records them.
pub fn mp4_consumer_tracks(v: Variant) -> Vec<usize> {
    match v {
        Variant::Mp4Tracks { video, audio, .. } => [video, audio]
            .into_iter()
            .flatten()
            .map(usize::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// Waits for data past `pos` in `s`, or `limit`.
async fn wait_data(s: &LocalStream, pos: u64, registered: &Cell<u64>, limit: Duration) {
    let data = futures_lite::future::poll_fn(|cx| match s.poll_data(pos, registered, cx) {
        Poll::Ready(()) => Poll::Ready(()),
        Poll::Pending => Poll::Pending,
    });
    futures_lite::future::or(data, glommio::timer::sleep(limit)).await;
}

/// Most frames a feed keeps; like a stream's ring it keeps from the latest keyframe or the
/// lag bound, whichever is older, within `fanout: ring_bytes`.
const FRAME_RING: usize = 1024;
/// What holding a frame costs besides its units (Rc, struct, unit list, slot).
const FRAME_OVERHEAD: usize = 128;
/// The feed's lag bound: it is internal and fast; the viewers apply the real one.
const FEED_MAX_LAG_US: u64 = 10_000_000;

thread_local! {
    /// Frame feeds on this shard, by stream (alive while a muxer or snapshot holds one).
    static FEEDS: RefCell<HashMap<String, std::rc::Weak<FrameFeed>>> = RefCell::new(HashMap::new());
}

/// The frames of one stream on this shard, assembled once for every muxer (fMP4, TS, ADTS,
/// MJPEG) and snapshot of it. Whoever reads first assembles what arrived (`pump`): one
/// thread, so no task of its own is needed.
pub struct FrameFeed {
    src: Rc<LocalStream>,
    _reader: ReaderGuard,
    pub(crate) sdp: Sdp,
    asm: RefCell<FrameAssembler>,
    fan: RefCell<fanout::Consumer>,
    pub(crate) ring: RefCell<corecast::ring::Ring<Rc<Frame>>>,
    /// Bumped when a new producer resumed the stream (the assembler started over).
    pub(crate) epoch: Cell<u64>,
    /// The first video track: its keyframes are where frame readers start.
    sync_track: Option<usize>,
    scratch: RefCell<Vec<Frame>>,
}

impl FrameFeed {
    /// The feed of `name` on this shard, made on first use.
    pub fn of(shard: &Rc<Shard>, name: &str) -> Result<Rc<FrameFeed>, MuxError> {
        if let Some(f) = FEEDS.with(|m| m.borrow().get(name).and_then(std::rc::Weak::upgrade)) {
            // A later source may have added tracks since: then a new feed (with a new
            // assembler) serves the new muxer; older muxers keep theirs.
            let medias = {
                let g = shard.registry.lock();
                g.streams
                    .get(name)
                    .and_then(|e| e.sdp.as_ref())
                    .map_or(0, |s| s.medias.len())
            };
            if !f.src.is_closed() && f.sdp.medias.len() >= medias {
                return Ok(f);
            }
        }
        let src = shard.attach_reader(name).map_err(|_| MuxError::NotLive)?;
        let reader = ReaderGuard(shard.clone(), src.clone());
        let sdp = shard.registry.reader_sdp(name).ok_or(MuxError::NoSdp)?;
        let sync_track = sdp
            .medias
            .iter()
            .position(|m| m.codec().is_some_and(|(k, _)| k.is_video()));
        let policy = fanout::Policy {
            max_lag_us: FEED_MAX_LAG_US,
            ..shard.fanout_policy()
        };
        let fan = fanout::Consumer::join(
            &src.ring.borrow(),
            policy,
            src.producer_epoch(),
            shard.clock.now(),
        );
        let feed = Rc::new(FrameFeed {
            asm: RefCell::new(FrameAssembler::new(&sdp)),
            fan: RefCell::new(fan),
            ring: RefCell::new(corecast::ring::Ring::bounded(corecast::ring::Bounds {
                max_items: FRAME_RING,
                ..shard.ring_bounds(true)
            })),
            epoch: Cell::new(0),
            sync_track,
            scratch: RefCell::new(Vec::new()),
            src,
            _reader: reader,
            sdp,
        });
        FEEDS.with(|m| {
            m.borrow_mut()
                .insert(name.to_string(), Rc::downgrade(&feed))
        });
        Ok(feed)
    }

    /// Assembles what arrived since anyone last looked.
    pub fn pump(&self) {
        let mut fan = self.fan.borrow_mut();
        if fan.observe_epoch(self.src.producer_epoch()) {
            // A half-assembled frame of the old producer is dropped; the new one starts at
            // a keyframe.
            *self.asm.borrow_mut() = FrameAssembler::new(&self.sdp);
            self.epoch.set(self.epoch.get() + 1);
        }
        let mut scratch = self.scratch.borrow_mut();
        {
            let ring = self.src.ring.borrow();
            fan.catch_up(&*ring, self.src.tick());
            let mut asm = self.asm.borrow_mut();
            while let Some(p) = fan.next(&ring) {
                asm.push(p, &mut scratch);
            }
        }
        let mut frames = self.ring.borrow_mut();
        for f in scratch.drain(..) {
            let key = f.keyframe && self.sync_track.is_none_or(|t| t == f.track);
            let bytes = f.units.iter().map(|u| u.len()).sum::<usize>() + FRAME_OVERHEAD;
            let at = f.arrival;
            frames.push_held(Rc::new(f), key, bytes, at);
        }
    }

    /// Waits for the source to move past what the feed has assembled, or `limit`.
    pub(crate) async fn wait(&self, registered: &Cell<u64>, limit: Duration) {
        let pos = self.fan.borrow().position();
        wait_data(&self.src, pos, registered, limit).await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.src.is_closed()
    }
}

async fn run_muxer(
    shard: &Rc<Shard>,
    name: &str,
    key: &OutputKey,
    v: Variant,
    ctl: &MuxCtl,
) -> Result<(), MuxError> {
    let feed = FrameFeed::of(shard, name)?;
    let sdp = feed.sdp.clone();
    let wanted = select_tracks(&sdp, v);
    if wanted.is_empty() {
        return Err(MuxError::NoTrack {
            variant: v.tag(),
            supported: supported(v),
        });
    }
    // JPEG needs no codec configuration.
    let mut configs: Vec<(usize, Option<TrackConfig>)> = wanted
        .iter()
        .filter(|(_, k)| *k != CodecKind::Mjpeg)
        .map(|(i, _)| (*i, TrackConfig::from_media(&sdp.medias[*i])))
        .collect();
    feed.pump();
    let mut cursor = Cursor::join(&feed.ring.borrow());
    let max_lag = (FRAME_RING / 2) as u64;
    let mut seen_epoch = feed.epoch.get();
    // After a new producer resumed the stream: compare its first keyframe's parameter
    // sets with the ones the output was started with.
    let mut recheck = false;
    let registered = Cell::new(0);
    let started = Instant::now();
    let mut last_check = Instant::now();
    let mut frames = Vec::new();
    let mut pending: Vec<Frame> = Vec::new();
    let mut muxer: Option<Muxer> = None;
    let mut out: Option<(Rc<LocalStream>, OwnedGuard)> = None;
    let mut frags = Vec::new();
    let mut seq: u64 = 0;
    // Audio fragments wait for the next video fragment (or `AUDIO_HOLD_US`) so that each
    // viewer is woken and written once per video frame: the writes, not the bytes, are what
    // a viewer costs (issue #10). Outputs of one track kind publish at once.
    let hold_audio = matches!(v, Variant::Mp4 | Variant::Mp4Tracks { .. } | Variant::Ts)
        && wanted.iter().any(|(_, k)| k.is_video())
        && wanted.iter().any(|(_, k)| !k.is_video());
    let video_track = |t: usize| wanted.iter().any(|(i, k)| *i == t && k.is_video());
    // A video frame reached the muxer since the last publish (its push emits the previous
    // video sample), and when the oldest unpublished fragment was made.
    let mut video_pushed = false;
    let mut held_since: Option<u64> = None;
    // `fanout: mux_interval_ms` / `progressive_interval_ms`: fragments (one per video
    // frame) are published at most once per interval, so each viewer is written once per
    // interval.
    let hold = Hold {
        interval_us: interval_us(&shard.config.fanout, v),
    };
    let mut published_at: Option<u64> = None;
    loop {
        // Stopped by its idle timer (see `reevaluate`): a flag, no registry lock.
        if ctl.stop.get() {
            return Ok(());
        }
        if last_check.elapsed() >= Duration::from_millis(250) {
            last_check = Instant::now();
            if muxer.is_none() && started.elapsed() > CONFIG_WAIT {
                return Err(MuxError::NoParameterSets);
            }
        }
        if feed.is_closed() {
            return Ok(());
        }
        feed.pump();
        if feed.epoch.get() != seen_epoch {
            seen_epoch = feed.epoch.get();
            recheck = muxer.is_some();
            debug!(
                stream = name,
                variant = v.tag(),
                "new producer: muxer continues"
            );
        }
        {
            let ring = feed.ring.borrow();
            while let Next::Item(f) = cursor.next(&ring, max_lag) {
                frames.push(Frame::clone(f));
                if frames.len() >= 256 {
                    break;
                }
            }
        }
        if frames.is_empty() {
            match held_since {
                Some(t) => {
                    let due = hold.due(t, hold_audio && !video_pushed, published_at);
                    let now = shard.clock.now();
                    // Held fragments whose time is up: published below.
                    if now < due {
                        feed.wait(&registered, Duration::from_micros(due - now))
                            .await;
                        continue;
                    }
                }
                None => {
                    feed.wait(&registered, Duration::from_millis(250)).await;
                    continue;
                }
            }
        }
        for f in frames.drain(..) {
            if muxer.is_none() {
                // Learn parameter sets in-band from keyframes when the SDP lacks them.
                if let Some(c) = configs
                    .iter_mut()
                    .find(|(i, c)| *i == f.track && c.is_none())
                {
                    if f.keyframe {
                        let h265 = wanted
                            .iter()
                            .any(|(i, k)| *i == f.track && *k == CodecKind::H265);
                        c.1 = TrackConfig::from_nals(h265, &f.units);
                    }
                }
                if pending.len() < MAX_PENDING_FRAMES {
                    pending.push(f);
                }
                if configs.iter().all(|(_, c)| c.is_some()) {
                    let tracks: Vec<(usize, TrackConfig)> = configs
                        .iter()
                        .filter_map(|(i, c)| c.clone().map(|c| (*i, c)))
                        .collect();
                    let (m, info) = match v {
                        Variant::Mp4 | Variant::Mp4Tracks { .. } => {
                            let mut m = LiveFmp4::new(tracks);
                            for (i, _) in &wanted {
                                m.set_clock_rate(*i, sdp.medias[*i].clock_rate());
                            }
                            let info = MuxInfo {
                                init: m.init(),
                                codecs: m.codecs(),
                            };
                            (Muxer::Mp4(m), info)
                        }
                        Variant::Ts => {
                            let codecs = tracks
                                .iter()
                                .map(|(_, c)| c.codec_string())
                                .collect::<Vec<_>>()
                                .join(",");
                            let mut m = LiveTs::new(tracks);
                            for (i, _) in &wanted {
                                m.set_clock_rate(*i, sdp.medias[*i].clock_rate());
                            }
                            (
                                Muxer::Ts(Box::new(m)),
                                MuxInfo {
                                    init: Bytes::new(),
                                    codecs,
                                },
                            )
                        }
                        Variant::Mjpeg => (
                            Muxer::Mjpeg { track: wanted[0].0 },
                            MuxInfo {
                                init: Bytes::new(),
                                codecs: "jpeg".into(),
                            },
                        ),
                        Variant::Aac => {
                            let (track, cfg) = tracks
                                .into_iter()
                                .next()
                                .ok_or(MuxError::Track("no AAC track"))?;
                            let TrackConfig::Aac { config, .. } = &cfg else {
                                return Err(MuxError::Track("AAC variant of a non-AAC track"));
                            };
                            (
                                Muxer::Aac {
                                    track,
                                    config: config.clone(),
                                },
                                MuxInfo {
                                    init: Bytes::new(),
                                    codecs: cfg.codec_string(),
                                },
                            )
                        }
                    };
                    out = Some(open_output(shard, name, key, info)?);
                    muxer = Some(m);
                    info!(stream = name, variant = v.tag(), "muxer started");
                    let mut m = muxer.take();
                    for f in pending.drain(..) {
                        if let Some(m) = m.as_mut() {
                            m.push(f, &mut frags);
                        }
                    }
                    muxer = m;
                }
                continue;
            }
            if recheck && f.keyframe {
                if let Some((i, Some(old))) = configs.iter().find(|(i, _)| *i == f.track) {
                    recheck = false;
                    let h265 = wanted
                        .iter()
                        .any(|(t, k)| *t == *i && *k == CodecKind::H265);
                    if TrackConfig::from_nals(h265, &f.units).is_some_and(|new| new != *old) {
                        // Viewers cannot switch codec configuration mid-file: end this
                        // output (its viewers' responses end); the next viewer starts a
                        // muxer with the new parameters.
                        info!(
                            stream = name,
                            variant = v.tag(),
                            "codec parameters changed with the new producer; muxed output restarts"
                        );
                        return Ok(());
                    }
                }
            }
            if let Some(m) = muxer.as_mut() {
                video_pushed |= video_track(f.track);
                m.push(f, &mut frags);
            }
        }
        if let Some((o, _)) = &out {
            if !frags.is_empty() {
                let now = shard.clock.now();
                let held = *held_since.get_or_insert(now);
                if now < hold.due(held, hold_audio && !video_pushed, published_at) {
                    continue;
                }
                video_pushed = false;
                held_since = None;
                published_at = Some(now);
                for f in frags.drain(..) {
                    seq += 1;
                    o.push(Packet {
                        data: f.data,
                        track: 0,
                        seq,
                        timestamp: 0,
                        marker: true,
                        keyframe: f.keyframe,
                        arrival: now,
                        payload_offset: 0,
                    });
                }
                shard.flush(o);
            }
        }
    }
}

/// When a muxer publishes the fragments it holds (clock microseconds).
#[derive(Clone, Copy, Debug)]
struct Hold {
    /// `fanout: mux_interval_ms` or `progressive_interval_ms`, in microseconds (0: none).
    interval_us: u64,
}

impl Hold {
    /// The time the fragments held since `held` are due: audio alone waits for the next
    /// video fragment up to `AUDIO_HOLD_US`; everything waits out the interval since the
    /// last publish.
    fn due(self, held: u64, audio_only: bool, published_at: Option<u64>) -> u64 {
        let audio = if audio_only {
            held.saturating_add(AUDIO_HOLD_US)
        } else {
            held
        };
        let interval = published_at.map_or(0, |p| p.saturating_add(self.interval_us));
        audio.max(interval)
    }
}

/// Publishes the muxer's output: claim it with its init segment, open it on this shard.
fn open_output(
    shard: &Rc<Shard>,
    name: &str,
    key: &OutputKey,
    info: MuxInfo,
) -> Result<(Rc<LocalStream>, OwnedGuard), MuxError> {
    let producer = Arc::new(ProducerInfo {
        id: shard.registry.next_id(),
        protocol: "mux",
        remote_addr: String::new(),
        url: name.to_string(),
        user_agent: String::new(),
        stats: ProducerStats::default(),
    });
    let (id, generation) = shard
        .registry
        .claim_output(key, producer, info)
        .map_err(|_| MuxError::OutputTaken)?;
    let s = shard.open_output(id, key, generation);
    Ok((s.clone(), OwnedGuard(shard.clone(), s)))
}

/// What [`MuxReader::try_batch`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// Fragments were appended.
    Data,
    /// Nothing new yet.
    Empty,
    /// The output ended.
    Closed,
}

/// A viewer's handle on a muxed variant: its ring cursor and the init segment.
pub struct MuxReader {
    shard: Rc<Shard>,
    pub stream: Rc<LocalStream>,
    fanout: fanout::Consumer,
    registered: Cell<u64>,
    pub info: MuxInfo,
}

impl Drop for MuxReader {
    fn drop(&mut self) {
        self.shard.detach_reader(&self.stream);
    }
}

impl MuxReader {
    /// Ready when there is something to read or the output ended. No timer: the output's
    /// end (`close`) wakes its viewers as data does, and a timer per wait would cost a
    /// viewer an allocation per fragment.
    pub fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.stream
            .poll_data(self.fanout.position(), &self.registered, cx)
    }

    /// Fragments since the last call (appended to `out`), without waiting (see
    /// [`MuxReader::poll_ready`] for the wait).
    pub fn try_batch(&mut self, out: &mut Vec<Rc<Packet>>, limit: usize) -> Batch {
        {
            let ring = self.stream.ring.borrow();
            self.fanout.fill(&ring, self.stream.tick(), out, limit);
        }
        if !out.is_empty() {
            Batch::Data
        } else if self.stream.is_closed() {
            Batch::Closed
        } else {
            Batch::Empty
        }
    }

    /// Nothing left to read (and the output still open).
    pub fn caught_up(&self) -> bool {
        !self.stream.has_data(self.fanout.position())
    }

    /// Records a delivered batch; the statistics to publish when they are due.
    pub fn delivered(&mut self, fragments: u64, bytes: u64) -> Option<fanout::Stats> {
        self.fanout.delivered(fragments, bytes, self.stream.tick())
    }

    /// What was delivered and not yet published (the viewer is leaving).
    pub fn take_stats(&mut self) -> fanout::Stats {
        self.fanout.take_stats(self.stream.tick())
    }
}

/// Attaches a viewer to the (`name`, `v`) output, starting its muxer on the owner shard if
/// needed. The caller has registered its consumer under `name` first (that keeps the
/// muxer from stopping while this waits).
pub async fn attach(shard: &Rc<Shard>, name: &str, v: Variant) -> Result<MuxReader, MuxError> {
    let key = output_key(name, v);
    let owner = shard.owner_of(name);
    let deadline = Instant::now() + ATTACH_TIMEOUT;
    let mut asked: Option<Instant> = None;
    loop {
        let (tracks_ok, info) = {
            let g = shard.registry.lock();
            let Some(e) = g.streams.get(name) else {
                return Err(MuxError::NotFound);
            };
            let Some(sdp) = e.sdp.as_ref() else {
                return Err(MuxError::NotLive);
            };
            let ok = !select_tracks(sdp, v).is_empty();
            let info = g
                .outputs
                .get(&key)
                .filter(|d| d.producer.is_some())
                .and_then(|d| d.mux.clone());
            (ok, info)
        };
        if !tracks_ok {
            return Err(MuxError::NoTrack {
                variant: v.tag(),
                supported: supported(v),
            });
        }
        // The output may be closing (its source ended) as we look: then wait for the next.
        if let Some((info, stream)) =
            info.and_then(|i| shard.attach_output(&key).ok().map(|s| (i, s)))
        {
            let fanout = fanout::Consumer::join(
                &stream.ring.borrow(),
                shard.fanout_policy(),
                stream.producer_epoch(),
                shard.clock.now(),
            );
            return Ok(MuxReader {
                shard: shard.clone(),
                stream,
                fanout,
                registered: Cell::new(0),
                info,
            });
        }
        // Ask (again, if a muxer stopped in between) for the muxer.
        if asked.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
            asked = Some(Instant::now());
            shard.send_room(
                owner,
                RoomMsg::StartMuxer {
                    output: key.clone(),
                },
            );
        }
        if Instant::now() > deadline {
            return Err(MuxError::NoOutput(v.tag(), ATTACH_TIMEOUT));
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// One keyframe of the stream's first video track, with its codec configuration (none for
/// JPEG).
pub async fn keyframe(
    shard: &Rc<Shard>,
    name: &str,
) -> Result<(Option<TrackConfig>, Frame, CodecKind), MuxError> {
    let sdp = shard.registry.reader_sdp(name).ok_or(MuxError::NotLive)?;
    let (track, kind) = sdp
        .medias
        .iter()
        .enumerate()
        .find_map(|(i, m)| match m.codec().map(|(k, _)| k) {
            Some(k @ (CodecKind::H264 | CodecKind::H265 | CodecKind::Mjpeg)) => Some((i, k)),
            _ => None,
        })
        .ok_or(MuxError::NoVideo)?;
    let from_sdp = TrackConfig::from_media(&sdp.medias[track]);
    // The stream's frame feed (shared with its muxers): the newest keyframe it holds is
    // the answer at once; else the next one.
    let feed = FrameFeed::of(shard, name)?;
    let registered = Cell::new(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        feed.pump();
        let found = {
            let ring = feed.ring.borrow();
            (ring.tail()..ring.head())
                .rev()
                .filter_map(|pos| ring.get(pos))
                .find(|f| f.keyframe && f.track == track)
                .map(|f| Frame::clone(f))
        };
        if let Some(f) = found {
            // JPEG frames need no configuration.
            if kind == CodecKind::Mjpeg {
                return Ok((None, f, kind));
            }
            return TrackConfig::from_nals(kind == CodecKind::H265, &f.units)
                .or_else(|| from_sdp.clone())
                .map(|c| (Some(c), f, kind))
                .ok_or(MuxError::NoKeyframeParameterSets);
        }
        if feed.is_closed() {
            return Err(MuxError::Ended);
        }
        if Instant::now() > deadline {
            return Err(MuxError::NoKeyframe);
        }
        feed.wait(&registered, Duration::from_millis(500)).await;
    }
}

/// One keyframe as a complete MP4 (init segment + one fragment), go2rtc's `frame.mp4`.
pub fn frame_mp4(cfg: TrackConfig, frame: Frame) -> Bytes {
    let mut m = LiveFmp4::new(vec![(frame.track, cfg)]);
    let mut out = Vec::new();
    m.push(frame, &mut out);
    m.flush(&mut out);
    let init = m.init();
    let mut b =
        BytesMut::with_capacity(init.len() + out.iter().map(|f| f.data.len()).sum::<usize>());
    b.extend_from_slice(&init);
    for f in out {
        b.extend_from_slice(&f.data);
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::{interval_us, Hold, Variant, AUDIO_HOLD_US};
    use corecast::config::FanoutConfig;

    #[test]
    fn hold_without_interval_publishes_video_at_once_and_audio_within_its_bound() {
        let h = Hold { interval_us: 0 };
        assert_eq!(h.due(1_000, false, None), 1_000);
        assert_eq!(h.due(1_000, false, Some(900)), 1_000);
        assert_eq!(h.due(1_000, true, Some(900)), 1_000 + AUDIO_HOLD_US);
    }

    #[test]
    fn hold_with_interval_waits_it_out_after_each_publish() {
        let h = Hold {
            interval_us: 200_000,
        };
        // The first fragments go at once (a joiner's init and keyframe are not held).
        assert_eq!(h.due(5_000, false, None), 5_000);
        // Later ones wait for the interval since the last publish...
        assert_eq!(h.due(50_000, false, Some(10_000)), 210_000);
        // ...or for longer held audio.
        assert_eq!(h.due(500_000, true, Some(10_000)), 500_000 + AUDIO_HOLD_US);
        // A frame held after a long pause goes at once.
        assert_eq!(h.due(900_000, false, Some(10_000)), 900_000);
        assert_eq!(h.due(u64::MAX - 1, true, Some(u64::MAX)), u64::MAX);
    }

    #[test]
    fn progressive_outputs_publish_at_their_interval_and_mse_at_its_own() {
        let tracks = |paced| Variant::Mp4Tracks {
            video: Some(0),
            audio: Some(1),
            paced,
        };
        let f = FanoutConfig::default();
        assert_eq!(interval_us(&f, tracks(true)), 80_000);
        assert_eq!(interval_us(&f, Variant::Ts), 80_000);
        assert_eq!(interval_us(&f, tracks(false)), 0);
        assert_eq!(interval_us(&f, Variant::Aac), 0);
        // The larger of the two applies to progressive outputs.
        let f = FanoutConfig {
            mux_interval_ms: 200,
            ..FanoutConfig::default()
        };
        assert_eq!(interval_us(&f, tracks(true)), 200_000);
        assert_eq!(interval_us(&f, tracks(false)), 200_000);
        assert_eq!(interval_us(&f, Variant::Mjpeg), 0);
    }
}
