//! The consumer policy every viewer follows, whatever its protocol: where it starts, when it
//! skips to a keyframe, when it publishes statistics, and what a new producer means.
//!
//! Sans-IO: the ring is passed in and time is an argument (`now`, microseconds on the
//! server's monotonic clock, the same base as [`Packet::arrival`](crate::packet::Packet)).
//! The RTSP writer, the muxers and the HTTP/WebSocket viewers all drive a [`Consumer`].
//!
//! - **Start**: at the newest keyframe the ring holds, unless it is already beyond the lag
//!   bound (then at the next keyframe).
//! - **Lag bound**: one bound, [`Policy::max_lag_us`]. A viewer whose next item arrived
//!   more than that before `now` (its socket drains too slowly) jumps to the newest
//!   keyframe; one that fell out of the ring (or more than half of it behind) skips to the
//!   next keyframe. Both count as skips, with the items passed over.
//! - **Statistics**: delivered items and bytes accumulate locally and are handed out at
//!   most every [`Policy::stats_interval_us`] (or at once when a skip happened), so shared
//!   counters are touched a few times a second, not per packet.
//! - **New producer**: a stream resumed by a new producer (a publisher that reconnected, a
//!   restarted `exec:`/`ffmpeg:` source) keeps its viewers; each continues at the new
//!   producer's first keyframe ([`Consumer::observe_epoch`]). A stream that ends is the
//!   caller's to notice (its ring closes); the policy has nothing to decide there.

use crate::packet::Packet;
use crate::ring::{Cursor, Next, Ring};
use std::rc::Rc;

/// Default lag bound: a viewer more than this far behind live jumps ahead.
pub const DEFAULT_MAX_LAG_US: u64 = 2_000_000;
/// Default cadence of statistics.
pub const DEFAULT_STATS_INTERVAL_US: u64 = 250_000;

/// Items that carry their arrival time.
pub trait Timed {
    fn arrival_us(&self) -> u64;
}

impl Timed for Packet {
    fn arrival_us(&self) -> u64 {
        self.arrival
    }
}

impl<T: Timed> Timed for Rc<T> {
    fn arrival_us(&self) -> u64 {
        (**self).arrival_us()
    }
}

/// The knobs of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The lag bound (µs).
    pub max_lag_us: u64,
    /// Least time between two statistics updates (µs).
    pub stats_interval_us: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_lag_us: DEFAULT_MAX_LAG_US,
            stats_interval_us: DEFAULT_STATS_INTERVAL_US,
        }
    }
}

/// Statistics a viewer publishes: deltas of items and bytes since the last update, and its
/// skip totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub items: u64,
    pub bytes: u64,
    pub skips: u64,
    pub skipped: u64,
}

/// One viewer's position and bookkeeping in a stream's ring.
#[derive(Debug, Clone)]
pub struct Consumer {
    cursor: Cursor,
    policy: Policy,
    /// Slots behind the writer that force a skip: half the ring, so the writer never laps
    /// a reader that is still reading.
    max_slots: u64,
    /// The producer epoch last seen (see [`observe_epoch`](Self::observe_epoch)).
    epoch: u64,
    stats_at: u64,
    pending_items: u64,
    pending_bytes: u64,
    published_skips: u64,
}

impl Consumer {
    /// A viewer joining `ring` at `now`, while the stream's producer epoch is `epoch`.
    pub fn join<T: Timed>(ring: &Ring<T>, policy: Policy, epoch: u64, now: u64) -> Consumer {
        let max_slots = (ring.capacity() / 2) as u64;
        let mut cursor = Cursor::join_within(ring, max_slots);
        // A keyframe older than the lag bound would be skipped on the first read: start
        // at the next one instead.
        if let Some(p) = cursor.peek(ring) {
            if now.saturating_sub(p.arrival_us()) > policy.max_lag_us {
                cursor = Cursor::at_next_keyframe(ring);
            }
        }
        Consumer {
            cursor,
            policy,
            max_slots,
            epoch,
            stats_at: now,
            pending_items: 0,
            pending_bytes: 0,
            published_skips: 0,
        }
    }

    /// Absolute ring position of the next item this viewer looks at (to wait on).
    pub fn position(&self) -> u64 {
        self.cursor.position()
    }

    /// (skips, items skipped) so far.
    pub fn skips(&self) -> (u64, u64) {
        (self.cursor.skips, self.cursor.skipped)
    }

    /// True while the viewer discards items until a keyframe.
    pub fn is_waiting_keyframe(&self) -> bool {
        self.cursor.is_waiting_keyframe()
    }

    /// Tells the viewer the stream's producer epoch. When it changed (a new producer
    /// resumed the stream), the viewer continues at the next keyframe; returns true then,
    /// so the caller can reset state that spans items (a half-assembled frame).
    pub fn observe_epoch(&mut self, epoch: u64) -> bool {
        if epoch == self.epoch {
            return false;
        }
        self.epoch = epoch;
        self.cursor.wait_for_keyframe();
        true
    }

    /// Appends up to `limit` items to deliver to `out`, applying the lag bound at `now`.
    /// Returns how many were appended (0: caught up, wait past [`position`](Self::position)).
    pub fn fill<T: Timed + Clone>(
        &mut self,
        ring: &Ring<T>,
        now: u64,
        out: &mut Vec<T>,
        limit: usize,
    ) -> usize {
        self.catch_up(ring, now);
        let start = out.len();
        while out.len() - start < limit {
            match self.cursor.next(ring, self.max_slots) {
                Next::Item(p) => out.push(p.clone()),
                Next::Empty => break,
            }
        }
        out.len() - start
    }

    /// Like [`fill`](Self::fill), one item at a time, for callers that consume in place.
    pub fn next<'a, T: Timed>(&mut self, ring: &'a Ring<T>) -> Option<&'a T> {
        match self.cursor.next(ring, self.max_slots) {
            Next::Item(p) => Some(p),
            Next::Empty => None,
        }
    }

    /// The time half of the lag bound, checked once per batch: late in time (not only in
    /// slots) means a jump to the newest keyframe.
    pub fn catch_up<T: Timed>(&mut self, ring: &Ring<T>, now: u64) {
        if let Some(p) = self.cursor.peek(ring) {
            if now.saturating_sub(p.arrival_us()) > self.policy.max_lag_us {
                self.cursor.jump_to_last_keyframe(ring);
            }
        }
    }

    /// Records what was delivered; returns the statistics to publish when they are due (at
    /// most every `stats_interval_us`, or at once after a skip).
    pub fn delivered(&mut self, items: u64, bytes: u64, now: u64) -> Option<Stats> {
        self.pending_items += items;
        self.pending_bytes += bytes;
        let skipped_now = self.cursor.skips != self.published_skips;
        if !skipped_now && now.saturating_sub(self.stats_at) < self.policy.stats_interval_us {
            return None;
        }
        Some(self.take_stats(now))
    }

    /// Everything not yet published (a viewer leaving flushes its last counts).
    pub fn take_stats(&mut self, now: u64) -> Stats {
        self.stats_at = now;
        self.published_skips = self.cursor.skips;
        Stats {
            items: std::mem::take(&mut self.pending_items),
            bytes: std::mem::take(&mut self.pending_bytes),
            skips: self.cursor.skips,
            skipped: self.cursor.skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item {
        n: u64,
        at: u64,
    }

    impl Timed for Item {
        fn arrival_us(&self) -> u64 {
            self.at
        }
    }

    const FRAME_US: u64 = 40_000; // 25 fps
    const GOP: u64 = 25; // a keyframe every second

    /// A simulated producer: one item per frame, a keyframe every GOP frames.
    struct Sim {
        ring: Ring<Item>,
        n: u64,
        now: u64,
    }

    impl Sim {
        fn new(capacity: usize) -> Sim {
            Sim {
                ring: Ring::new(capacity),
                n: 0,
                now: 0,
            }
        }
        fn produce(&mut self, frames: u64) {
            for _ in 0..frames {
                self.now += FRAME_US;
                let key = self.n.is_multiple_of(GOP);
                self.ring.push(
                    Item {
                        n: self.n,
                        at: self.now,
                    },
                    key,
                );
                self.n += 1;
            }
        }
    }

    fn drain(c: &mut Consumer, sim: &Sim) -> Vec<u64> {
        let mut out = Vec::new();
        c.fill(&sim.ring, sim.now, &mut out, usize::MAX);
        out.into_iter().map(|i| i.n).collect()
    }

    #[test]
    fn joining_between_keyframes_starts_at_the_last_one() {
        let mut sim = Sim::new(4096);
        sim.produce(37); // keyframes at 0 and 25; the viewer joins at frame 37
        let mut c = Consumer::join(&sim.ring, Policy::default(), 0, sim.now);
        assert_eq!(drain(&mut c, &sim), (25..37).collect::<Vec<_>>());
        sim.produce(3);
        assert_eq!(drain(&mut c, &sim), vec![37, 38, 39]);
        assert_eq!(c.skips(), (0, 0));
    }

    #[test]
    fn a_keyframe_older_than_the_lag_bound_is_not_a_start() {
        let mut sim = Sim::new(4096);
        sim.produce(26); // keyframe 25 is fresh, 0 is not
        let policy = Policy {
            max_lag_us: 500_000,
            ..Policy::default()
        };
        // Frames 0..24 are 1 s of GOP; a 0.5 s bound would skip a start at frame 0.
        sim.produce(24); // last keyframe 25 is now 0.96 s old
        let mut c = Consumer::join(&sim.ring, policy, 0, sim.now);
        assert!(c.is_waiting_keyframe());
        assert_eq!(drain(&mut c, &sim), Vec::<u64>::new());
        sim.produce(2); // frame 50 is a keyframe
        assert_eq!(drain(&mut c, &sim), vec![50, 51]);
    }

    #[test]
    fn a_slow_viewer_jumps_to_the_newest_keyframe_and_counts_it() {
        let mut sim = Sim::new(4096);
        sim.produce(1);
        let mut c = Consumer::join(&sim.ring, Policy::default(), 0, sim.now);
        assert_eq!(drain(&mut c, &sim), vec![0]);
        // The viewer's socket stalls for 3 s (75 frames) while the producer goes on.
        sim.produce(75);
        let got = drain(&mut c, &sim);
        assert_eq!(got.first(), Some(&75), "jumped to the newest keyframe");
        assert_eq!(c.skips(), (1, 74));
        // Statistics are due at once after a skip.
        let s = c
            .delivered(got.len() as u64, 100, sim.now)
            .expect("stats after a skip");
        assert_eq!((s.skips, s.skipped, s.items), (1, 74, 1));
    }

    #[test]
    fn a_viewer_lapped_by_the_ring_resyncs() {
        let mut sim = Sim::new(64);
        sim.produce(1);
        let mut c = Consumer::join(&sim.ring, Policy::default(), 0, sim.now);
        drain(&mut c, &sim);
        // A burst of 40 packets (more than half the ring) within the time bound, keyframe
        // at the 20th.
        for i in 0..40u64 {
            sim.ring.push(
                Item {
                    n: 100 + i,
                    at: sim.now,
                },
                i == 20,
            );
        }
        let got = drain(&mut c, &sim);
        assert_eq!(c.skips().0, 1);
        assert_eq!(got.first(), Some(&120), "{got:?}");
    }

    #[test]
    fn a_new_producer_epoch_continues_at_its_first_keyframe() {
        let mut sim = Sim::new(4096);
        sim.produce(10);
        let mut c = Consumer::join(&sim.ring, Policy::default(), 7, sim.now);
        assert_eq!(drain(&mut c, &sim).len(), 10);
        assert!(!c.observe_epoch(7));
        // The publisher dies mid-GOP; the viewer has not read its last frames yet.
        sim.produce(5);
        assert!(c.observe_epoch(8));
        // The new producer starts with a keyframe (the producer API waits for one).
        sim.n = 0;
        sim.produce(3);
        assert_eq!(drain(&mut c, &sim), vec![0, 1, 2]);
        assert_eq!(c.skips(), (0, 5));
    }

    #[test]
    fn statistics_follow_the_cadence() {
        let mut sim = Sim::new(4096);
        sim.produce(1);
        let policy = Policy::default();
        let mut c = Consumer::join(&sim.ring, policy, 0, 0);
        assert_eq!(c.delivered(1, 10, 100_000), None);
        assert_eq!(c.delivered(2, 20, 200_000), None);
        let s = c.delivered(1, 5, 250_000).expect("due");
        assert_eq!((s.items, s.bytes), (4, 35));
        assert_eq!(c.delivered(1, 1, 300_000), None);
        assert_eq!(c.take_stats(310_000).items, 1);
    }
}
