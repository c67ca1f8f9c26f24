//! The per-stream fan-out ring: one writer, many readers holding cursors.
//!
//! The writer never waits for readers. A reader that falls more than its allowed lag behind
//! (or whose slots were overwritten) resynchronises at the next keyframe, and the skip is
//! counted. Nothing here allocates after construction.

/// A bounded ring of recent items with one writer. Positions are absolute `u64`s that only
/// grow, so a reader can always tell whether its slot was overwritten.
#[derive(Debug)]
pub struct Ring<T> {
    slots: Vec<Option<(T, bool)>>,
    mask: u64,
    /// Absolute position of the next write.
    head: u64,
    /// Absolute position of the most recent keyframe written.
    last_keyframe: Option<u64>,
}

impl<T> Ring<T> {
    /// A ring holding `capacity` items (rounded up to a power of two, at least 2).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.max(2).next_power_of_two();
        let mut slots = Vec::with_capacity(cap);
        slots.resize_with(cap, || None);
        Ring {
            slots,
            mask: cap as u64 - 1,
            head: 0,
            last_keyframe: None,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Absolute position the next push will take.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Oldest position still held.
    pub fn tail(&self) -> u64 {
        self.head.saturating_sub(self.slots.len() as u64)
    }

    /// Appends an item; `keyframe` marks a position where a reader may start.
    pub fn push(&mut self, item: T, keyframe: bool) {
        let idx = (self.head & self.mask) as usize;
        self.slots[idx] = Some((item, keyframe));
        if keyframe {
            self.last_keyframe = Some(self.head);
        }
        self.head += 1;
    }

    /// The item at an absolute position, if it is still held.
    pub fn get(&self, pos: u64) -> Option<&T> {
        self.entry(pos).map(|(t, _)| t)
    }

    fn entry(&self, pos: u64) -> Option<&(T, bool)> {
        if pos >= self.head || pos < self.tail() {
            return None;
        }
        self.slots[(pos & self.mask) as usize].as_ref()
    }

    /// The most recent keyframe still held.
    pub fn last_keyframe(&self) -> Option<u64> {
        self.last_keyframe.filter(|&k| k >= self.tail())
    }

    /// The first keyframe at or after `from` that is still held.
    pub fn next_keyframe(&self, from: u64) -> Option<u64> {
        let start = from.max(self.tail());
        (start..self.head).find(|&p| matches!(self.entry(p), Some((_, true))))
    }

    /// Drops every item (a new publisher starts a new sequence space).
    pub fn clear(&mut self) {
        for s in &mut self.slots {
            *s = None;
        }
        self.tail_to_head();
    }

    fn tail_to_head(&mut self) {
        // Keep positions monotonic so existing cursors see the gap and resync.
        self.head += self.slots.len() as u64;
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
    /// Items passed over because of those jumps.
    pub skipped: u64,
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
            },
            None => Cursor {
                pos: ring.head(),
                waiting_keyframe: true,
                skips: 0,
                skipped: 0,
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
    /// whose next slot was overwritten, skips to the next keyframe (counted in `skips`).
    pub fn next<'a, T>(&mut self, ring: &'a Ring<T>, max_lag: u64) -> Next<'a, T> {
        if self.pos < ring.tail() || ring.head().saturating_sub(self.pos) > max_lag {
            self.resync(ring, max_lag);
        }
        while self.pos < ring.head() {
            let Some((item, key)) = ring.entry(self.pos) else {
                // A hole can only come from `clear`; treat it like falling behind.
                self.resync(ring, max_lag);
                continue;
            };
            self.pos += 1;
            if self.waiting_keyframe {
                if !*key {
                    self.skipped += 1;
                    continue;
                }
                self.waiting_keyframe = false;
            }
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
    fn capacity_rounds_up() {
        assert_eq!(Ring::<u8>::new(10).capacity(), 16);
        assert_eq!(Ring::<u8>::new(0).capacity(), 2);
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
        assert_eq!(c.skipped, 1);
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
