//! The control plane shared by all shards: which streams exist, who owns them, who
//! publishes and who reads. Touched on connect, describe, disconnect and by the API —
//! never per packet — so a mutex is fine here. Per-viewer counters are atomics updated
//! once per write batch.

use corecast::sdp::Sdp;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

/// Stable owner of a stream name: FNV-1a over the name, modulo the shard count, so every
/// shard computes the same answer without asking. A muxer's output belongs to the owner
/// of its stream (the muxer reads the stream's ring there).
pub fn owner_of(name: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// A stream's identity in the registry: a stream deleted and created again is another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// One producer's tenure of a stream (kept when a new producer resumes it). Globally
/// unique, so a late message about an old tenure can never touch a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Generation(pub u64);

/// Why a producer could not take a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Another producer holds it (MediaMTX's default; go2rtc's too for RTSP publishers).
    #[error("the stream already has a producer")]
    Taken,
}

impl ClaimError {
    /// The RTSP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            ClaimError::Taken => 403,
        }
    }
}

/// Why a viewer could not attach to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error("no such stream")]
    NotFound,
    #[error("the stream has no producer")]
    NotLive,
}

impl AttachError {
    /// The RTSP/HTTP status of the refusal.
    pub fn status(self) -> u16 {
        404
    }
}

/// Counters of one consumer (a reader connection), read by the API.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub bytes: AtomicU64,
    pub packets: AtomicU64,
    /// Times the reader fell behind and was moved to the next keyframe.
    pub skips: AtomicU64,
    /// Packets it did not get because of those skips.
    pub skipped_packets: AtomicU64,
}

#[derive(Debug)]
pub struct ConsumerInfo {
    pub id: u64,
    pub shard: usize,
    /// What the consumer receives: `rtsp`, or a muxed variant (`mp4`, `mse`, `ts`, ...).
    pub format_name: &'static str,
    pub protocol: &'static str,
    pub remote_addr: String,
    pub user_agent: String,
    pub tracks: Vec<usize>,
    pub stats: ConsumerStats,
}

#[derive(Debug, Default)]
pub struct ProducerStats {
    pub bytes: AtomicU64,
    pub packets: AtomicU64,
}

#[derive(Debug)]
pub struct ProducerInfo {
    pub id: u64,
    pub protocol: &'static str,
    pub remote_addr: String,
    pub url: String,
    pub user_agent: String,
    pub stats: ProducerStats,
}

/// A producer's RTP clock anchored to Unix time: RTP timestamp `rtp` was at `unix_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub unix_us: u64,
    pub rtp: u32,
}

/// What the registry knows of one stream.
#[derive(Debug)]
pub struct StreamEntry {
    pub id: StreamId,
    pub owner: usize,
    /// Sources from the config (`streams:`); empty = publish-only.
    pub sources: Vec<String>,
    /// Bumped whenever a new producer takes the stream (unless it resumes it); readers of
    /// an older generation stop.
    pub generation: Generation,
    /// The producer's SDP (as announced), present while a producer is active.
    pub sdp: Option<Sdp>,
    /// Per media: an exact wall-clock anchor of the producer's RTP clock, for sources that
    /// know it (internal ones), so readers' sender reports carry the true A/V relation.
    pub anchors: Vec<Option<Anchor>>,
    /// Without anchors, may readers' sender reports be derived from arrival times? False
    /// for sources whose packets arrive in bursts (stdout demux): better no report than a
    /// wrong one.
    pub arrival_sync: bool,
    /// Parameter sets learned from the stream, per media index: `sprop-parameter-sets`.
    pub learned_sprop: Vec<(usize, String)>,
    pub producer: Option<Arc<ProducerInfo>>,
    pub consumers: Vec<Arc<ConsumerInfo>>,
    /// Why the stream's source last failed (cleared when it works again or stops).
    pub error: Option<String>,
    /// Every later source has been dialled: readers stop waiting for more tracks.
    pub sources_exhausted: bool,
    /// Kept when the name comes from config or is built in; removed when the last
    /// producer and consumer of a dynamic stream are gone.
    pub persistent: bool,
    /// go2rtc `preload`: the source runs with no reader; the value is the filter query.
    pub preload: Option<String>,
    /// A pulled camera's ONVIF backchannel medias (cleared when the sources change) (go2rtc's codec words, "PCMA/8000"):
    /// reported by the API as `audio, sendonly, ...`, never set up.
    pub backchannel: Vec<String>,
    /// A muxer's output stream (`NAME\0VARIANT`): its init segment and codecs.
    pub mux: Option<MuxInfo>,
    /// A helper stream the engine made for the named stream (a later `ffmpeg:`/`exec`
    /// source publishes there and is pulled from there): never listed by the API.
    pub helper_of: Option<String>,
    /// While the stream waits for a new producer after one left (its viewers stay): the
    /// old producer's SDP, which a new one must match to take the stream over.
    pub resume_sdp: Option<Sdp>,
    /// Totals of consumers that have left (metrics counters stay monotonic).
    pub closed_bytes_out: u64,
    pub closed_skipped: u64,
}

/// What a viewer of a muxed variant needs before the first fragment.
#[derive(Debug, Clone)]
pub struct MuxInfo {
    /// fMP4 init segment (empty for formats without one).
    pub init: bytes::Bytes,
    /// RFC 6381 codecs of the tracks, comma-separated (MSE's `codecs=`).
    pub codecs: String,
}

/// What a viewer of a muxed output receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// Fragmented MP4 (init segment + moof/mdat): `stream.mp4` and MSE.
    Mp4,
    /// Fragmented MP4 of the tracks one viewer's query or browser codecs chose (SDP media
    /// indexes): viewers that chose alike share its muxer.
    Mp4Tracks {
        video: Option<u16>,
        audio: Option<u16>,
        /// Published once per `fanout: progressive_interval_ms` for `stream.mp4` viewers,
        /// when that differs from MSE's `mux_interval_ms` (else they share MSE's muxer).
        paced: bool,
    },
    /// MPEG-TS: `stream.ts`.
    Ts,
    /// ADTS AAC: `stream.aac`.
    Aac,
    /// multipart/x-mixed-replace JPEG: `stream.mjpeg` (streams with a JPEG track).
    Mjpeg,
}

impl Variant {
    pub fn tag(self) -> &'static str {
        match self {
            Variant::Mp4 | Variant::Mp4Tracks { .. } => "mp4",
            Variant::Ts => "ts",
            Variant::Aac => "aac",
            Variant::Mjpeg => "mjpeg",
        }
    }
}

/// A muxer's output: which stream, which format. Outputs have their own map in the
/// registry, so they never mix with the streams users name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputKey {
    pub stream: String,
    pub variant: Variant,
}

#[derive(Debug, Default)]
pub struct ShardStats {
    pub viewers: AtomicUsize,
    pub streams_owned: AtomicUsize,
    pub relayed_packets: AtomicU64,
    pub relay_dropped: AtomicU64,
    pub connections: AtomicUsize,
    /// Muxers (fMP4/TS/ADTS outputs) running on the shard.
    pub muxers: AtomicUsize,
    /// HTTP connections open (WebSocket ones counted in `ws_connections` instead).
    pub http_connections: AtomicUsize,
    pub ws_connections: AtomicUsize,
    /// Share of the last second the shard's loop was busy, in thousandths.
    pub loop_permille: AtomicU64,
}

#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    pub shards: Vec<ShardStats>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub streams: BTreeMap<String, StreamEntry>,
    /// Muxers' outputs (see `OutputKey`): id, owner, generation, producer, `mux`.
    pub outputs: BTreeMap<OutputKey, StreamEntry>,
}

impl StreamEntry {
    fn new(id: StreamId, owner: usize, sources: Vec<String>, persistent: bool) -> StreamEntry {
        StreamEntry {
            id,
            owner,
            sources,
            generation: Generation(0),
            sdp: None,
            anchors: Vec::new(),
            arrival_sync: true,
            learned_sprop: Vec::new(),
            producer: None,
            consumers: Vec::new(),
            error: None,
            sources_exhausted: false,
            persistent,
            preload: None,
            backchannel: Vec::new(),
            mux: None,
            resume_sdp: None,
            helper_of: None,
            closed_bytes_out: 0,
            closed_skipped: 0,
        }
    }
}

impl Registry {
    pub fn new(shards: usize) -> Arc<Registry> {
        Arc::new(Registry {
            inner: Mutex::new(Inner::default()),
            shards: (0..shards).map(|_| ShardStats::default()).collect(),
            next_id: AtomicU64::new(1),
        })
    }

    pub fn nshards(&self) -> usize {
        self.shards.len()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    fn next_stream_id(&self) -> StreamId {
        StreamId(self.next_id())
    }

    fn next_generation(&self) -> Generation {
        Generation(self.next_id())
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug already reported; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares a stream (config or built-in); idempotent.
    pub fn declare(&self, name: &str, sources: Vec<String>) {
        let owner = owner_of(name, self.nshards());
        let id = self.next_stream_id();
        let mut g = self.lock();
        g.streams
            .entry(name.to_string())
            .and_modify(|e| {
                if e.sources != sources {
                    e.backchannel.clear();
                }
                e.sources = sources.clone();
                e.persistent = true;
            })
            .or_insert_with(|| StreamEntry::new(id, owner, sources, true));
    }

    /// Declares `name` as a helper stream of `of` (see `StreamEntry::helper_of`) before its
    /// producer connects, so it is never listed, not even for a moment.
    pub fn declare_helper(&self, name: &str, of: &str) {
        let owner = owner_of(name, self.nshards());
        let id = self.next_stream_id();
        let mut g = self.lock();
        let e = g
            .streams
            .entry(name.to_string())
            .or_insert_with(|| StreamEntry::new(id, owner, Vec::new(), false));
        e.helper_of = Some(of.to_string());
    }

    /// Claims a muxer's output (one producer, the muxer): (id, generation).
    pub fn claim_output(
        &self,
        key: &OutputKey,
        producer: Arc<ProducerInfo>,
        mux: MuxInfo,
    ) -> Result<(StreamId, Generation), ClaimError> {
        let owner = owner_of(&key.stream, self.nshards());
        let id = self.next_stream_id();
        let generation = self.next_generation();
        let mut g = self.lock();
        if g.outputs.get(key).is_some_and(|e| e.producer.is_some()) {
            return Err(ClaimError::Taken);
        }
        let mut e = StreamEntry::new(id, owner, Vec::new(), false);
        e.generation = generation;
        e.producer = Some(producer);
        e.mux = Some(mux);
        g.outputs.insert(key.clone(), e);
        Ok((id, generation))
    }

    /// Removes a muxer's output if it is still generation `generation`.
    pub fn release_output(&self, key: &OutputKey, generation: Generation) {
        let mut g = self.lock();
        if g.outputs
            .get(key)
            .is_some_and(|e| e.generation == generation)
        {
            g.outputs.remove(key);
        }
    }

    /// Claims `name` for a new producer; fails when another producer holds it (MediaMTX's
    /// default; go2rtc's too for RTSP publishers). A stream waiting for a new producer (see
    /// [`orphan`](Self::orphan)) is taken over with its generation when `sdp` has the same
    /// tracks (then the third value is true).
    pub fn claim_resuming(
        &self,
        name: &str,
        sdp: Sdp,
        producer: Arc<ProducerInfo>,
    ) -> Result<(StreamId, Generation, bool), ClaimError> {
        let owner = owner_of(name, self.nshards());
        let new_id = self.next_stream_id();
        let mut g = self.lock();
        let e = g
            .streams
            .entry(name.to_string())
            .or_insert_with(|| StreamEntry::new(new_id, owner, Vec::new(), false));
        if e.producer.is_some() {
            return Err(ClaimError::Taken);
        }
        if let Some(old) = e.resume_sdp.take() {
            if same_tracks(&old, &sdp) {
                e.error = None;
                e.anchors = vec![None; sdp.medias.len()];
                e.arrival_sync = true;
                e.sdp = Some(sdp);
                e.learned_sprop.clear();
                e.producer = Some(producer);
                return Ok((e.id, e.generation, true));
            }
        }
        // Globally unique: a stream deleted and re-created never reuses a generation, so a
        // late release by the old producer cannot touch the new one.
        e.generation = self.next_generation();
        e.error = None;
        e.anchors = vec![None; sdp.medias.len()];
        e.arrival_sync = true;
        e.sdp = Some(sdp);
        e.learned_sprop.clear();
        e.mux = None;
        e.producer = Some(producer);
        Ok((e.id, e.generation, false))
    }

    /// The producer of generation `generation` left but its viewers stay: the stream waits
    /// for a new producer with the same tracks (see `Shard::leave_owned`).
    /// Returns false when `name` is no longer that generation (deleted and claimed
    /// again meanwhile): then nothing waits, and the caller ends the stream.
    pub fn orphan(&self, name: &str, generation: Generation) -> bool {
        match self.lock().streams.get_mut(name) {
            Some(e) if e.generation == generation => {
                e.producer = None;
                e.resume_sdp = e.sdp.take();
                true
            }
            _ => false,
        }
    }

    /// Releases the producer of `name` if it is still generation `generation`.
    pub fn release(&self, name: &str, generation: Generation) {
        let mut g = self.lock();
        let mut remove = false;
        if let Some(e) = g.streams.get_mut(name) {
            if e.generation == generation {
                e.producer = None;
                e.sdp = None;
                e.resume_sdp = None;
                remove = !e.persistent && e.consumers.is_empty();
            }
        }
        if remove {
            g.streams.remove(name);
        }
    }

    /// Removes a stream (API `DELETE`): its source's watcher sees it gone and stops.
    /// Returns whether it existed.
    pub fn remove(&self, name: &str) -> bool {
        self.lock().streams.remove(name).is_some()
    }

    /// The SDP served to readers of `name`: the producer's, with parameter sets learned
    /// in-band added, so a reader that joins at a keyframe without them can still decode.
    pub fn reader_sdp(&self, name: &str) -> Option<Sdp> {
        let g = self.lock();
        let e = g.streams.get(name)?;
        // While the stream waits for a new producer, readers get the tracks it waits for.
        let mut out = e.sdp.clone().or_else(|| e.resume_sdp.clone())?;
        for (media, param) in &e.learned_sprop {
            if let Some(m) = out.medias.get_mut(*media) {
                if let Some(pt) = m.payload_type() {
                    let base = m.fmtp_for(pt).unwrap_or("packetization-mode=1").to_string();
                    let kept: Vec<&str> = base
                        .split(';')
                        .map(str::trim)
                        .filter(|p| {
                            let replaced = p.starts_with("sprop-")
                                || (param.contains("profile-level-id")
                                    && p.starts_with("profile-level-id"));
                            !p.is_empty() && !replaced
                        })
                        .collect();
                    let mut v = kept.join(";");
                    if !v.is_empty() {
                        v.push(';');
                    }
                    v.push_str(param);
                    m.set_fmtp(pt, v);
                }
            }
        }
        Some(out)
    }

    /// Sets or clears a stream's preload; false when the stream does not exist.
    pub fn set_preload(&self, name: &str, query: Option<String>) -> bool {
        match self.lock().streams.get_mut(name) {
            Some(e) => {
                e.preload = query;
                true
            }
            None => false,
        }
    }

    pub fn add_consumer(&self, name: &str, c: Arc<ConsumerInfo>) {
        if let Some(e) = self.lock().streams.get_mut(name) {
            e.consumers.push(c);
        }
    }

    pub fn remove_consumer(&self, name: &str, id: u64) {
        let mut g = self.lock();
        let mut remove = false;
        if let Some(e) = g.streams.get_mut(name) {
            if let Some(c) = e.consumers.iter().find(|c| c.id == id) {
                e.closed_bytes_out += c.stats.bytes.load(Relaxed);
                e.closed_skipped += c.stats.skipped_packets.load(Relaxed);
            }
            e.consumers.retain(|c| c.id != id);
            remove = !e.persistent && e.consumers.is_empty() && e.producer.is_none();
        }
        if remove {
            g.streams.remove(name);
        }
    }

    /// Appends medias from a secondary source to a live stream's SDP; returns the index of
    /// the first one (existing readers keep their tracks; new readers see all).
    pub fn append_medias(
        &self,
        name: &str,
        generation: Generation,
        medias: Vec<corecast::sdp::Media>,
    ) -> Option<usize> {
        let mut g = self.lock();
        let e = g.streams.get_mut(name)?;
        if e.generation != generation {
            return None;
        }
        let sdp = e.sdp.as_mut()?;
        let base = sdp.medias.len();
        // Track numbers travel in a u8.
        if base + medias.len() > u8::MAX as usize {
            return None;
        }
        e.anchors.extend(medias.iter().map(|_| None));
        sdp.medias.extend(medias);
        Some(base)
    }

    /// Records a producer's clock anchor for one media.
    pub fn set_anchor(&self, name: &str, generation: Generation, media: usize, anchor: Anchor) {
        if let Some(e) = self.lock().streams.get_mut(name) {
            if e.generation == generation {
                if let Some(a) = e.anchors.get_mut(media) {
                    *a = Some(anchor);
                }
            }
        }
    }

    /// The anchor of one media and whether arrival-based sync is allowed.
    pub fn sync_of(&self, name: &str, media: usize) -> (Option<Anchor>, bool) {
        match self.lock().streams.get(name) {
            Some(e) => (e.anchors.get(media).copied().flatten(), e.arrival_sync),
            None => (None, false),
        }
    }

    pub fn set_arrival_sync(&self, name: &str, allowed: bool) {
        if let Some(e) = self.lock().streams.get_mut(name) {
            e.arrival_sync = allowed;
        }
    }

    /// Records parameter sets learned in-band so later DESCRIBEs carry them.
    pub fn learn_sprop(&self, name: &str, generation: Generation, media: usize, sprop: String) {
        if let Some(e) = self.lock().streams.get_mut(name) {
            if e.generation == generation {
                e.learned_sprop.retain(|(m, _)| *m != media);
                e.learned_sprop.push((media, sprop));
            }
        }
    }
}

/// Can a new producer with `new` take over viewers set up for `old`? Same medias in the
/// same order, each with the same kind, codec, clock rate, payload type and format
/// parameters (H.264/H.265 parameter sets, AAC config): the RTSP readers' SDP and the
/// muxers' init segments stay valid. Otherwise the viewers end and the next ones get the
/// new parameters.
pub fn same_tracks(old: &Sdp, new: &Sdp) -> bool {
    old.medias.len() == new.medias.len()
        && old.medias.iter().zip(&new.medias).all(|(a, b)| {
            let pt = a.payload_type();
            a.kind == b.kind
                && pt == b.payload_type()
                && a.codec() == b.codec()
                && a.clock_rate() == b.clock_rate()
                && pt.map(|pt| a.fmtp_for(pt)) == pt.map(|pt| b.fmtp_for(pt))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(fmtp: &str) -> Sdp {
        corecast::sdp::parse(&format!(
            "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
             m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 {fmtp}\r\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_stream_resumes_only_with_the_same_tracks() {
        let a = sdp("packetization-mode=1;sprop-parameter-sets=Z0LAHtkA,aMuDyyA=");
        assert!(same_tracks(&a, &a.clone()));
        let b = sdp("packetization-mode=1;sprop-parameter-sets=Z0LAKNkA,aMuDyyA=");
        assert!(!same_tracks(&a, &b));
        let reg = Registry::new(1);
        let info = || {
            Arc::new(ProducerInfo {
                id: 1,
                protocol: "rtsp",
                remote_addr: String::new(),
                url: String::new(),
                user_agent: String::new(),
                stats: ProducerStats::default(),
            })
        };
        let (id, g, resumed) = reg.claim_resuming("cam", a.clone(), info()).unwrap();
        assert!(!resumed);
        assert_eq!(
            reg.claim_resuming("cam", a.clone(), info()),
            Err(ClaimError::Taken)
        );
        assert!(reg.orphan("cam", g));
        assert_eq!(
            reg.claim_resuming("cam", a.clone(), info()),
            Ok((id, g, true))
        );
        assert!(reg.orphan("cam", g));
        let (_, g2, resumed) = reg.claim_resuming("cam", b, info()).unwrap();
        assert!(!resumed && g2 != g);
        // A stale generation cannot leave the stream waiting.
        assert!(!reg.orphan("cam", g));
    }

    #[test]
    fn owner_is_stable_and_spread() {
        assert_eq!(owner_of("demo", 4), owner_of("demo", 4));
        assert_eq!(owner_of("x", 1), 0);
        let mut seen = [0usize; 2];
        for i in 0..100 {
            seen[owner_of(&format!("cam{i}"), 2)] += 1;
        }
        assert!(seen[0] > 20 && seen[1] > 20, "{seen:?}");
    }
}
