//! The Producer API: every ingest path (RTSP publish over TCP and UDP, RTSP pull, `exec:`
//! stdout, the demo) hands what it receives to a [`Producer`], which parses each packet once,
//! keeps the producer's statistics and the parameter sets it learns, and pushes into the
//! stream's ring.
//!
//! A producer that takes over a stream that already has viewers (a camera that reconnected,
//! a publisher that came back, a restarted `exec:`/`ffmpeg:` source) is made with
//! [`Producer::resuming`]: nothing is pushed before its first keyframe, its RTP numbering
//! continues the previous producer's, and the stream's producer epoch moves on so that
//! viewers that span packets (the muxers' frame assemblers) start over cleanly.

use crate::core::hub::{LocalStream, Shard};
use crate::core::registry::ProducerInfo;
use bytes::Bytes;
use corecast::ingest::{Ingest, TrackTail};
use corecast::packet::Packet;
use corecast::ring::Ring;
use corecast::sdp::Sdp;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tracing::warn;

/// How far back in the ring the previous producer's last packets are looked for.
const TAIL_SCAN: u64 = 4096;

pub struct Producer {
    pub stream: Rc<LocalStream>,
    ingest: Ingest,
    pub info: Arc<ProducerInfo>,
    bad: u64,
    /// Nothing is pushed before the first keyframe (after a reconnect).
    waiting_keyframe: bool,
    /// A later source adding tracks: the stream track of its first track. Its packets are
    /// never start points (the primary's keyframes are).
    secondary: Option<usize>,
}

impl Producer {
    /// A producer of `stream`, whose packets follow `sdp`'s media order.
    /// Each packet is stored as a right-sized copy (network receive buffers are larger
    /// than one packet); see [`payloads_owned`](Self::payloads_owned).
    pub fn new(stream: Rc<LocalStream>, sdp: &Sdp, info: Arc<ProducerInfo>) -> Producer {
        let mut ingest = Ingest::new(sdp);
        ingest.copy_payloads(true);
        Producer {
            stream,
            ingest,
            info,
            bad: 0,
            waiting_keyframe: false,
            secondary: None,
        }
    }

    /// This producer takes over from a previous one whose viewers stayed (see the module).
    pub fn resuming(mut self) -> Producer {
        let base = self.secondary.unwrap_or(0);
        let tails = tails(&self.stream.ring.borrow(), base, self.ingest.track_count());
        self.ingest.continue_from(&tails);
        self.waiting_keyframe = self.secondary.is_none();
        if self.secondary.is_none() {
            self.stream.next_producer_epoch();
        }
        self
    }

    /// The caller's packets are already right-sized allocations of their own (packetized
    /// from demuxed frames, generated): stored as given, without the ingest copy.
    pub fn payloads_owned(mut self) -> Producer {
        self.ingest.copy_payloads(false);
        self
    }

    /// Nothing is pushed before this producer's first keyframe (a camera connection may
    /// start mid-GOP).
    pub fn at_keyframe(mut self) -> Producer {
        self.waiting_keyframe = self.secondary.is_none();
        self
    }

    /// Makes this a later source whose first track is stream track `base`.
    pub fn secondary(mut self, base: usize) -> Producer {
        self.secondary = Some(base);
        self
    }

    /// One received RTP packet of this producer's `track`: parsed once, counted, pushed.
    pub fn packet(&mut self, shard: &Shard, track: usize, data: Bytes) {
        let len = data.len() as u64;
        match self.ingest.packet(track, data, shard.clock.now()) {
            Ok((mut pkt, learned)) => {
                if let Some(base) = self.secondary {
                    pkt.track = (base + pkt.track as usize) as u8;
                    pkt.keyframe = false;
                } else if self.waiting_keyframe {
                    if !pkt.keyframe {
                        self.ingest.dropped(track);
                        return;
                    }
                    self.waiting_keyframe = false;
                }
                self.info.stats.bytes.fetch_add(len, Relaxed);
                self.info.stats.packets.fetch_add(1, Relaxed);
                if let Some(l) = learned {
                    shard.registry.learn_sprop(
                        &self.stream.name,
                        self.stream.generation,
                        self.secondary.unwrap_or(0) + l.track,
                        l.fmtp_param,
                    );
                }
                self.stream.push(pkt);
            }
            Err(e) => {
                self.bad += 1;
                if self.bad.is_power_of_two() {
                    warn!(stream = %self.stream.name, producer = %self.info.url, error = %e, count = self.bad, "dropping bad packet from producer");
                }
            }
        }
    }

    /// Ends a receive turn: viewers are woken and other shards get the batch.
    pub fn flush(&self, shard: &Shard) {
        shard.flush(&self.stream);
    }
}

/// Where each of tracks `base..base + n` of the ring last left off.
fn tails(ring: &Ring<Rc<Packet>>, base: usize, n: usize) -> Vec<Option<TrackTail>> {
    let mut out = vec![None; n];
    let mut missing = n;
    let mut pos = ring.head();
    let floor = ring.head().saturating_sub(TAIL_SCAN).max(ring.tail());
    while pos > floor && missing > 0 {
        pos -= 1;
        let Some(p) = ring.get(pos) else { break };
        let Some(i) = (p.track as usize).checked_sub(base).filter(|i| *i < n) else {
            continue;
        };
        if out[i].is_none() {
            out[i] = TrackTail::of(p);
            missing -= 1;
        }
    }
    out
}
