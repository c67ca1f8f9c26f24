//! The control plane shared by all shards: which streams exist, who owns them, who
//! publishes and who reads. Touched on connect, describe, disconnect and by the API —
//! never per packet — so a mutex is fine here. Per-viewer counters are atomics updated
//! once per write batch.

use corecast::sdp::Sdp;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

/// Stable owner of a stream name: FNV-1a over the name, modulo the shard count, so every
/// shard computes the same answer without asking.
pub fn owner_of(name: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % shards.max(1) as u64) as usize
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
    pub id: u64,
    pub owner: usize,
    /// Sources from the config (`streams:`); empty = publish-only.
    pub sources: Vec<String>,
    /// Bumped whenever a new producer takes the stream; readers of an older generation stop.
    pub generation: u64,
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
}

#[derive(Debug, Default)]
pub struct ShardStats {
    pub viewers: AtomicUsize,
    pub streams_owned: AtomicUsize,
    pub relayed_packets: AtomicU64,
    pub relay_dropped: AtomicU64,
    pub connections: AtomicUsize,
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

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug already reported; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares a stream (config or built-in); idempotent.
    pub fn declare(&self, name: &str, sources: Vec<String>) {
        let owner = owner_of(name, self.nshards());
        let id = self.next_id();
        let mut g = self.lock();
        g.streams
            .entry(name.to_string())
            .and_modify(|e| {
                e.sources = sources.clone();
                e.persistent = true;
            })
            .or_insert_with(|| StreamEntry {
                id,
                owner,
                sources,
                generation: 0,
                sdp: None,
                anchors: Vec::new(),
                arrival_sync: true,
                learned_sprop: Vec::new(),
                producer: None,
                consumers: Vec::new(),
                error: None,
                sources_exhausted: false,
                persistent: true,
            });
    }

    /// Claims `name` for a new producer. Fails with 403 when another producer holds it
    /// (MediaMTX's default; go2rtc's too for RTSP publishers). Returns (stream id, generation).
    pub fn claim(
        &self,
        name: &str,
        sdp: Sdp,
        producer: Arc<ProducerInfo>,
    ) -> Result<(u64, u64), u16> {
        let owner = owner_of(name, self.nshards());
        let new_id = self.next_id();
        let mut g = self.lock();
        let e = g
            .streams
            .entry(name.to_string())
            .or_insert_with(|| StreamEntry {
                id: new_id,
                owner,
                sources: Vec::new(),
                generation: 0,
                sdp: None,
                anchors: Vec::new(),
                arrival_sync: true,
                learned_sprop: Vec::new(),
                producer: None,
                consumers: Vec::new(),
                error: None,
                sources_exhausted: false,
                persistent: false,
            });
        if e.producer.is_some() {
            return Err(403);
        }
        e.generation += 1;
        e.error = None;
        e.anchors = vec![None; sdp.medias.len()];
        e.arrival_sync = true;
        e.sdp = Some(sdp);
        e.learned_sprop.clear();
        e.producer = Some(producer);
        Ok((e.id, e.generation))
    }

    /// Releases the producer of `name` if it is still generation `generation`.
    pub fn release(&self, name: &str, generation: u64) {
        let mut g = self.lock();
        let mut remove = false;
        if let Some(e) = g.streams.get_mut(name) {
            if e.generation == generation {
                e.producer = None;
                e.sdp = None;
                remove = !e.persistent && e.consumers.is_empty();
            }
        }
        if remove {
            g.streams.remove(name);
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
        generation: u64,
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
    pub fn set_anchor(&self, name: &str, generation: u64, media: usize, anchor: Anchor) {
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
    pub fn learn_sprop(&self, name: &str, generation: u64, media: usize, sprop: String) {
        if let Some(e) = self.lock().streams.get_mut(name) {
            if e.generation == generation {
                e.learned_sprop.retain(|(m, _)| *m != media);
                e.learned_sprop.push((media, sprop));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
