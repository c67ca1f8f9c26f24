//! The per-stream fan-out ring: one writer, many readers holding cursors.
//!
//! The writer never waits for readers. A reader that falls more than its allowed lag behind
//! (or whose items were evicted) resynchronises at the next keyframe, and the skip is
//! counted.
//!
//! What the ring holds is bounded by time and bytes, not by a packet count (see [`Bounds`]):
//! items older than the lag bound go, except the latest keyframe and what follows it (where
//! a joining reader starts); and whatever the age, the held bytes and the item count never
//! exceed their caps. The store grows and shrinks with what it holds, so a quiet stream
//! costs what it carries, not a fixed number of slots.

use std::collections::VecDeque;

/// What a [`Ring`] may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Items older than this (µs, by their arrival, against the newest item) are evicted
    /// once a later keyframe is held. `u64::MAX`: no time bound.
    pub max_age_us: u64,
    /// The held bytes (as given to [`Ring::push_held`]) never exceed this, whatever the
    /// keyframes (the newest item always stays).
    pub max_bytes: usize,
    /// The item count never exceeds this (bounds memory for tiny items).
    pub max_items: usize,
}

impl Bounds {
    /// Only a count bound (items pushed with [`Ring::push`]).
    pub fn items(n: usize) -> Bounds {
        Bounds {
            max_age_us: u64::MAX,
            max_bytes: usize::MAX,
            max_items: n.max(1),
        }
    }
}

#[derive(Debug)]
struct Slot<T> {
    item: T,
    keyframe: bool,
    /// What the item counts against `max_bytes`.
    bytes: u32,
    /// Arrival (µs).
    at: u64,
}

/// Least deque capacity kept when shrinking (not worth giving back below this).
const MIN_SLOTS: usize = 32;

/// A bounded ring of recent items with one writer. Positions are absolute `u64`s that only
/// grow, so a reader can always tell whether its item was evicted.
#[derive(Debug)]
pub struct Ring<T> {
    slots: VecDeque<Slot<T>>,
    /// Absolute position of `slots[0]`.
    tail: u64,
    /// Sum of the held items' `bytes`.
    bytes: usize,
    bounds: Bounds,
    /// Absolute position of the most recent keyframe written.
    last_keyframe: Option<u64>,
}

impl<T> Ring<T> {
    /// A ring holding at most `capacity` items (no time or byte bound).
    pub fn new(capacity: usize) -> Self {
        Self::bounded(Bounds::items(capacity))
    }

    /// A ring with the given bounds; nothing is allocated until items arrive.
    pub fn bounded(bounds: Bounds) -> Self {
        Ring {
            slots: VecDeque::new(),
            tail: 0,
            bytes: 0,
            bounds: Bounds {
                max_items: bounds.max_items.max(1),
                ..bounds
            },
            last_keyframe: None,
        }
    }

    /// The most items the ring may hold (its count bound).
    pub fn capacity(&self) -> usize {
        self.bounds.max_items
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Items held now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes held now (the sum given to [`push_held`](Self::push_held)).
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Slots the store has allocated (follows what is held; for tests and statistics).
    pub fn allocated_slots(&self) -> usize {
        self.slots.capacity()
    }

    /// Absolute position the next push will take.
    pub fn head(&self) -> u64 {
        self.tail + self.slots.len() as u64
    }

    /// Oldest position still held.
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// Appends an item that counts no bytes and no time (only the count bound applies);
    /// `keyframe` marks a position where a reader may start.
    pub fn push(&mut self, item: T, keyframe: bool) {
        self.push_held(item, keyframe, 0, 0);
    }

    /// Appends an item of `bytes` bytes that arrived at `at` (µs), then evicts what the
    /// bounds no longer allow.
    pub fn push_held(&mut self, item: T, keyframe: bool, bytes: usize, at: u64) {
        if keyframe {
            self.last_keyframe = Some(self.head());
        }
        let bytes = bytes.min(u32::MAX as usize) as u32;
        self.slots.push_back(Slot {
            item,
            keyframe,
            bytes,
            at,
        });
        self.bytes += bytes as usize;
        self.evict(at);
    }

    fn evict(&mut self, now: u64) {
        let b = self.bounds;
        while let Some(front) = self.slots.front() {
            let over_items = self.slots.len() > b.max_items;
            // The newest item always stays, however large.
            let over_bytes = self.bytes > b.max_bytes && self.slots.len() > 1;
            // Old, and not needed by a joiner: the latest keyframe and what follows stay.
            // Without a keyframe held nobody could start there anyway.
            let expired = now.saturating_sub(front.at) > b.max_age_us
                && self.last_keyframe.is_none_or(|k| self.tail < k);
            if !(over_items || over_bytes || expired) {
                break;
            }
            self.bytes -= front.bytes as usize;
            self.slots.pop_front();
            self.tail += 1;
        }
        if self.last_keyframe.is_some_and(|k| k < self.tail) {
            self.last_keyframe = None;
        }
        self.shrink();
    }

    /// Gives back store a burst left behind: a quarter used means half of it is returned,
    /// so a stream's memory follows what it holds (amortised O(1) per push).
    fn shrink(&mut self) {
        let cap = self.slots.capacity();
        if cap > MIN_SLOTS && self.slots.len() * 4 < cap {
            self.slots.shrink_to((self.slots.len() * 2).max(MIN_SLOTS));
        }
    }

    /// The item at an absolute position, if it is still held.
    pub fn get(&self, pos: u64) -> Option<&T> {
        self.entry(pos).map(|(t, _)| t)
    }

    fn entry(&self, pos: u64) -> Option<(&T, bool)> {
        let i = pos.checked_sub(self.tail)?;
        self.slots
            .get(usize::try_from(i).ok()?)
            .map(|s| (&s.item, s.keyframe))
    }

    /// The most recent keyframe still held.
    pub fn last_keyframe(&self) -> Option<u64> {
        self.last_keyframe.filter(|&k| k >= self.tail)
    }

    /// The first keyframe at or after `from` that is still held.
    pub fn next_keyframe(&self, from: u64) -> Option<u64> {
        let start = from.max(self.tail);
        (start..self.head()).find(|&p| matches!(self.entry(p), Some((_, true))))
    }

    /// Drops every item (a new publisher starts a new sequence space).
    pub fn clear(&mut self) {
        // Keep positions monotonic, with a gap, so existing cursors (even one caught up at
        // the head) see that they fell out and resync at a keyframe.
        self.tail = self.head() + 1;
        self.slots.clear();
        self.slots.shrink_to(0);
        self.bytes = 0;
        self.last_keyframe = None;
    }
}

/// What a cursor yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a, T> {
    /// The next item to deliver.
    Item(&'a T),
    /// Caught up: nothing to deliver until the writer pushes again.
    Empty,
}

/// A reader's position in a [`Ring`], with its skip accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pos: u64,
    waiting_keyframe: bool,
    /// Times this reader fell behind and jumped to a keyframe.
    pub skips: u64,
    /// Items passed over because of those jumps (and, once it has delivered something,
    /// while it waited for a keyframe).
    pub skipped: u64,
    /// An item was delivered: what a joiner passes over before its first keyframe was
    /// never its to lose, and is not counted as skipped.
    started: bool,
}

impl Cursor {
    /// A new reader starts at the most recent keyframe still held, or waits for the next.
    pub fn join<T>(ring: &Ring<T>) -> Cursor {
        match ring.last_keyframe() {
            Some(k) => Cursor {
                pos: k,
                waiting_keyframe: false,
                skips: 0,
                skipped: 0,
                started: false,
            },
            None => Cursor {
                pos: ring.head(),
                waiting_keyframe: true,
                skips: 0,
                skipped: 0,
                started: false,
            },
        }
    }

    /// Like [`join`](Self::join), but never starts more than `max_lag` items behind (a
    /// keyframe that far back would be skipped at once): then it waits for the next one.
    pub fn join_within<T>(ring: &Ring<T>, max_lag: u64) -> Cursor {
        let c = Cursor::join(ring);
        if c.lag(ring) > max_lag {
            Cursor {
                pos: ring.head(),
                waiting_keyframe: true,
                skips: 0,
                skipped: 0,
                started: false,
            }
        } else {
            c
        }
    }

    /// A reader that starts at the next keyframe the writer pushes.
    pub fn at_next_keyframe<T>(ring: &Ring<T>) -> Cursor {
        Cursor {
            pos: ring.head(),
            waiting_keyframe: true,
            skips: 0,
            skipped: 0,
            started: false,
        }
    }

    /// Discards items until the next keyframe (a new producer took over the stream).
    pub fn wait_for_keyframe(&mut self) {
        self.waiting_keyframe = true;
    }

    /// Absolute position of the next item this cursor will look at.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Items between this cursor and the writer.
    pub fn lag<T>(&self, ring: &Ring<T>) -> u64 {
        ring.head().saturating_sub(self.pos)
    }

    /// True while the cursor discards items until a keyframe.
    pub fn is_waiting_keyframe(&self) -> bool {
        self.waiting_keyframe
    }

    /// Advances to the next deliverable item. A reader more than `max_lag` items behind, or
    /// whose next item was evicted, skips to the next keyframe (counted in `skips`).
    pub fn next<'a, T>(&mut self, ring: &'a Ring<T>, max_lag: u64) -> Next<'a, T> {
        if self.pos < ring.tail() || ring.head().saturating_sub(self.pos) > max_lag {
            self.resync(ring, max_lag);
        }
        while self.pos < ring.head() {
            let Some((item, key)) = ring.entry(self.pos) else {
                // Every position in tail..head is held; should that ever not be so, the
                // reader resyncs like one that fell behind (lands at a held item or head).
                self.resync(ring, max_lag);
                continue;
            };
            self.pos += 1;
            if self.waiting_keyframe {
                if !key {
                    self.skipped += self.started as u64;
                    continue;
                }
                self.waiting_keyframe = false;
            }
            self.started = true;
            return Next::Item(item);
        }
        Next::Empty
    }

    /// Moves a reader that is late in time (not only in slots) to the most recent keyframe,
    /// if that keyframe is ahead of it. Returns whether it jumped (counted as a skip).
    pub fn jump_to_last_keyframe<T>(&mut self, ring: &Ring<T>) -> bool {
        match ring.last_keyframe() {
            Some(k) if k > self.pos => {
                self.skips += 1;
                self.skipped += k - self.pos;
                self.pos = k;
                self.waiting_keyframe = false;
                true
            }
            _ => false,
        }
    }

    /// Peeks at the next item without consuming it (no lag handling).
    pub fn peek<'a, T>(&self, ring: &'a Ring<T>) -> Option<&'a T> {
        ring.get(self.pos)
    }

    fn resync<T>(&mut self, ring: &Ring<T>, max_lag: u64) {
        self.skips += 1;
        // Prefer the newest keyframe within the allowed lag, so the reader lands close to
        // live; otherwise wait at the head for the next one.
        let floor = ring.head().saturating_sub(max_lag).max(ring.tail());
        // Only the last keyframe can be ahead of both the floor and the cursor; when it is
        // not, no keyframe is, and the reader waits at the head.
        let target = match ring.last_keyframe() {
            Some(k) if k >= floor && k >= self.pos => Some(k),
            _ => None,
        };
        let new_pos = match target {
            Some(k) => {
                self.waiting_keyframe = false;
                k
            }
            None => {
                self.waiting_keyframe = true;
                ring.head()
            }
        };
        self.skipped += new_pos.saturating_sub(self.pos);
        self.pos = new_pos;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: u64, key_every: u64) -> Ring<u64> {
        let mut r = Ring::new(16);
        for i in 0..n {
            r.push(i, i % key_every == 0);
        }
        r
    }

    fn drain(c: &mut Cursor, r: &Ring<u64>, max_lag: u64) -> Vec<u64> {
        let mut out = vec![];
        while let Next::Item(v) = c.next(r, max_lag) {
            out.push(*v);
        }
        out
    }

    #[test]
    fn capacity_is_the_count_bound() {
        assert_eq!(Ring::<u8>::new(10).capacity(), 10);
        assert_eq!(Ring::<u8>::new(0).capacity(), 1);
        let mut r = Ring::new(10);
        for i in 0..25u8 {
            r.push(i, false);
        }
        assert_eq!((r.tail(), r.head(), r.len()), (15, 25, 10));
    }

    const MS: u64 = 1000;

    /// Time and byte bounds as a stream uses them: 2 s, `max_bytes`, many items.
    fn timed(max_bytes: usize) -> Ring<u64> {
        Ring::bounded(Bounds {
            max_age_us: 2000 * MS,
            max_bytes,
            max_items: 1 << 20,
        })
    }

    /// A 25 fps stream, one 1000-byte item per frame (`n` = frame number), a keyframe
    /// every `gop` frames, pushed up to (not including) frame `to`.
    fn feed(r: &mut Ring<u64>, from: u64, to: u64, gop: u64) {
        for n in from..to {
            r.push_held(n, n % gop == 0, 1000, n * 40 * MS);
        }
    }

    fn oldest(r: &Ring<u64>) -> u64 {
        *r.get(r.tail()).unwrap()
    }

    #[test]
    fn evicts_by_time_once_a_later_keyframe_is_held() {
        // 1 s GOP, 2 s bound: what is held spans the lag bound, no more.
        let mut r = timed(usize::MAX);
        feed(&mut r, 0, 250, 25);
        // Newest is frame 249 at 9.96 s: frames older than 7.96 s (before frame 199) go.
        assert_eq!(oldest(&r), 199);
        assert_eq!(r.len(), 51);
        assert_eq!(r.held_bytes(), 51_000);
        assert_eq!(r.last_keyframe(), Some(225));
    }

    #[test]
    fn keeps_the_latest_gop_even_past_the_lag_bound() {
        // 4 s GOP with a 2 s bound: the GOP a joiner needs stays whole.
        let mut r = timed(usize::MAX);
        feed(&mut r, 0, 199, 100); // keyframes at 0 and 100; newest 198 at 7.92 s
        assert_eq!(oldest(&r), 100, "from the latest keyframe on, however old");
        let c = Cursor::join(&r);
        assert_eq!(c.position(), r.last_keyframe().unwrap());
        assert_eq!(*r.get(c.position()).unwrap(), 100);
        // The next keyframe lets the old GOP go down to the lag bound.
        feed(&mut r, 199, 201, 100); // keyframe 200 at 8 s
        assert_eq!(oldest(&r), 150);
        // A stream without keyframes (nothing a joiner could start at) keeps only time.
        let mut none = timed(usize::MAX);
        for n in 0..200u64 {
            none.push_held(n, false, 1000, n * 40 * MS);
        }
        assert_eq!(oldest(&none), 149);
    }

    #[test]
    fn byte_cap_wins_over_the_gop() {
        let mut r = timed(30_000);
        feed(&mut r, 0, 100, 100); // one keyframe at 0, then 99 frames within... 3.96 s
        assert_eq!(r.len(), 30);
        assert_eq!(r.held_bytes(), 30_000);
        assert_eq!(oldest(&r), 70);
        assert_eq!(r.last_keyframe(), None, "the keyframe was evicted");
        // A joiner waits for the next keyframe.
        let mut c = Cursor::join(&r);
        assert!(c.is_waiting_keyframe());
        feed(&mut r, 100, 103, 100);
        assert_eq!(c.next(&r, u64::MAX), Next::Item(&100));
        // The newest item stays even alone above the cap.
        r.push_held(999, false, 100_000, 103 * 40 * MS);
        assert_eq!((r.len(), r.held_bytes()), (1, 100_000));
    }

    #[test]
    fn slow_reader_whose_items_were_evicted_resyncs_at_a_keyframe() {
        let mut r = timed(usize::MAX);
        feed(&mut r, 0, 10, 25);
        let mut c = Cursor::join(&r);
        assert_eq!(c.next(&r, u64::MAX), Next::Item(&0));
        // The reader stalls for 4 s: its position (1) falls out.
        feed(&mut r, 10, 110, 25);
        assert!(c.position() < r.tail());
        let got = drain(&mut c, &r, u64::MAX);
        assert_eq!(got.first(), Some(&100), "the newest keyframe");
        assert_eq!(got.last(), Some(&109));
        assert_eq!(c.skips, 1);
        assert_eq!(c.skipped, 99);
    }

    #[test]
    fn memory_follows_what_is_held_after_a_burst() {
        let mut r = timed(usize::MAX);
        assert_eq!(r.allocated_slots(), 0, "nothing allocated up front");
        // A burst: 20,000 small items within one millisecond (all younger than the bound).
        for n in 0..20_000u64 {
            r.push_held(n, n == 0, 10, 0);
        }
        assert_eq!(r.len(), 20_000);
        let burst = r.allocated_slots();
        assert!(burst >= 20_000);
        // Then a steady 25 fps with 1 s GOPs: the store shrinks to about 2 s of frames.
        feed(&mut r, 20_000, 20_500, 25);
        assert_eq!(r.len(), 51);
        assert!(r.allocated_slots() <= 4 * 51, "{}", r.allocated_slots());
        assert!(r.allocated_slots() < burst / 64);
        // And the count bound holds for tiny items whatever their rate.
        let mut tiny = Ring::bounded(Bounds {
            max_items: 100,
            ..r.bounds()
        });
        for n in 0..1000u64 {
            tiny.push_held(n, n % 10 == 0, 1, 0);
        }
        assert_eq!(tiny.len(), 100);
        assert!(tiny.allocated_slots() <= 256);
    }

    #[test]
    fn joins_at_last_keyframe() {
        let r = filled(10, 4); // keyframes at 0, 4, 8
        let mut c = Cursor::join(&r);
        assert_eq!(drain(&mut c, &r, 100), vec![8, 9]);
        assert_eq!(c.skips, 0);
    }

    #[test]
    fn join_without_keyframe_waits() {
        let mut r = Ring::new(16);
        r.push(1u64, false);
        let mut c = Cursor::join(&r);
        assert!(c.is_waiting_keyframe());
        r.push(2, false);
        r.push(3, true);
        r.push(4, false);
        assert_eq!(drain(&mut c, &r, 100), vec![3, 4]);
        // Not counted: a joiner had nothing to lose before its first keyframe.
        assert_eq!(c.skipped, 0);
    }

    #[test]
    fn overwritten_reader_resyncs_at_keyframe_and_counts() {
        let mut r = filled(2, 4);
        let mut c = Cursor::join(&r);
        assert_eq!(drain(&mut c, &r, 1000), vec![0, 1]);
        for i in 2..40 {
            r.push(i, i % 4 == 0);
        }
        // Ring holds 24..40; cursor at 2 was overwritten.
        let got = drain(&mut c, &r, 1000);
        assert_eq!(got.first(), Some(&36), "lands on the newest keyframe");
        assert_eq!(c.skips, 1);
        assert_eq!(got, (36..40).collect::<Vec<_>>());
    }

    #[test]
    fn lag_bound_forces_skip_before_overwrite() {
        let mut r = Ring::new(64);
        for i in 0..10u64 {
            r.push(i, i % 5 == 0);
        }
        let mut c = Cursor::join(&r); // at 5
        for i in 10..30u64 {
            r.push(i, i % 5 == 0);
        }
        // 25 behind with max_lag 8: jump to the newest keyframe within 8 (25).
        let got = drain(&mut c, &r, 8);
        assert_eq!(got, (25..30).collect::<Vec<_>>());
        assert_eq!(c.skips, 1);
        assert_eq!(c.skipped, 20);
    }

    #[test]
    fn lag_without_keyframe_waits_for_next() {
        let mut r = Ring::new(16);
        r.push(0u64, true);
        let mut c = Cursor::join(&r);
        for i in 1..14u64 {
            r.push(i, false);
        }
        assert_eq!(drain(&mut c, &r, 4), Vec::<u64>::new());
        assert!(c.is_waiting_keyframe());
        r.push(14, false);
        r.push(15, true);
        assert_eq!(drain(&mut c, &r, 4), vec![15]);
    }

    #[test]
    fn jump_to_last_keyframe_only_forward() {
        let mut r = Ring::new(16);
        r.push(0u64, true);
        let mut c = Cursor::join(&r);
        r.push(1, false);
        assert!(!c.jump_to_last_keyframe(&r), "keyframe is not ahead");
        r.push(2, true);
        r.push(3, false);
        assert!(c.jump_to_last_keyframe(&r));
        assert_eq!(drain(&mut c, &r, 100), vec![2, 3]);
        assert_eq!((c.skips, c.skipped), (1, 2));
    }

    #[test]
    fn a_joiner_waiting_for_its_first_keyframe_skips_nothing() {
        let mut r = Ring::new(16);
        let mut c = Cursor::at_next_keyframe(&r);
        r.push(0u64, false);
        r.push(1, false);
        r.push(2, true);
        assert_eq!(drain(&mut c, &r, 100), vec![2]);
        assert_eq!(
            c.skipped, 0,
            "packets before a joiner's first keyframe were never its"
        );
        // Once it has delivered, waiting for a keyframe (a new producer) passes items over.
        c.wait_for_keyframe();
        r.push(3, false);
        r.push(4, true);
        assert_eq!(drain(&mut c, &r, 100), vec![4]);
        assert_eq!(c.skipped, 1);
    }

    #[test]
    fn join_within_refuses_a_keyframe_too_far_back() {
        let mut r = Ring::new(64);
        r.push(0u64, true);
        for i in 1..40u64 {
            r.push(i, false);
        }
        let c = Cursor::join_within(&r, 16);
        assert!(c.is_waiting_keyframe());
        assert_eq!(c.position(), 40);
        let c = Cursor::join_within(&r, 64);
        assert_eq!(c.position(), 0);
    }

    #[test]
    fn clear_makes_readers_resync() {
        let mut r = filled(6, 3);
        let mut c = Cursor::join(&r);
        drain(&mut c, &r, 100);
        r.clear();
        assert_eq!(c.next(&r, 100), Next::Empty);
        r.push(100, false);
        r.push(101, true);
        assert_eq!(drain(&mut c, &r, 100), vec![101]);
    }

    #[test]
    fn slow_reader_does_not_affect_fast_reader() {
        let mut r = Ring::new(16);
        let mut fast = Cursor::join(&r);
        let mut slow = Cursor::join(&r);
        let mut fast_got = vec![];
        for i in 0..100u64 {
            r.push(i, i % 10 == 0);
            fast_got.extend(drain(&mut fast, &r, 12));
        }
        assert_eq!(fast_got, (0..100).collect::<Vec<_>>());
        assert_eq!(fast.skips, 0);
        let slow_got = drain(&mut slow, &r, 12);
        assert_eq!(slow_got, vec![90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);
        assert_eq!(slow.skips, 1);
    }
}
