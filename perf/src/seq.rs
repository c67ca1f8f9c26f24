//! Loss accounting from 16-bit RTP sequence numbers: wraparound, reordering and
//! duplicates handled with a sliding window of recently seen numbers.

/// How far back (in packets) a late packet can still fill its gap.
const WINDOW: u16 = 128;
/// Consecutive packets from far outside the window before we assume the sender restarted
/// its sequence space (new publisher, new SSRC) and resynchronise.
const RESYNC_AFTER: u32 = 8;

/// Per-stream (per SSRC/track) sequence tracker.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    highest: Option<u16>,
    /// Bit i set: `highest - i` was received.
    window: u128,
    /// Distinct sequence numbers the sender sent, from the first we saw to the highest.
    pub expected: u64,
    /// Distinct packets received (duplicates not counted).
    pub received: u64,
    pub duplicates: u64,
    /// Packets that arrived after a higher number (and filled a gap).
    pub reordered: u64,
    /// Forward jumps: times one or more packets were missing.
    pub gaps: u64,
    /// Packets older than the window: counted neither as received nor as duplicates.
    pub too_late: u64,
    pub resyncs: u64,
    far_run: u32,
}

impl SeqTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Packets missing so far (gaps not filled by late arrivals).
    #[cfg(test)]
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    pub fn push(&mut self, seq: u16) {
        let Some(high) = self.highest else {
            self.restart(seq);
            return;
        };
        let delta = seq.wrapping_sub(high) as i16;
        if delta > 0 {
            self.far_run = 0;
            let d = delta as u32;
            self.window = if d >= 128 { 0 } else { self.window << d };
            self.window |= 1;
            self.highest = Some(seq);
            self.expected += d as u64;
            self.received += 1;
            if d > 1 {
                self.gaps += 1;
            }
        } else if delta == 0 {
            self.far_run = 0;
            self.duplicates += 1;
        } else {
            let back = delta.unsigned_abs();
            if back < WINDOW {
                self.far_run = 0;
                let bit = 1u128 << back;
                if self.window & bit != 0 {
                    self.duplicates += 1;
                } else {
                    self.window |= bit;
                    self.received += 1;
                    self.reordered += 1;
                }
            } else {
                self.too_late += 1;
                self.far_run += 1;
                if self.far_run >= RESYNC_AFTER {
                    self.resyncs += 1;
                    self.restart(seq);
                }
            }
        }
    }

    fn restart(&mut self, seq: u16) {
        self.highest = Some(seq);
        self.window = 1;
        self.expected += 1;
        self.received += 1;
        self.far_run = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: impl IntoIterator<Item = u16>) -> SeqTracker {
        let mut t = SeqTracker::new();
        for s in seqs {
            t.push(s);
        }
        t
    }

    #[test]
    fn in_order_across_wraparound_is_lossless() {
        let t = feed((0..3000u32).map(|i| (65_000 + i) as u16));
        assert_eq!(t.expected, 3000);
        assert_eq!(t.received, 3000);
        assert_eq!(t.lost(), 0);
        assert_eq!(t.gaps, 0);
    }

    #[test]
    fn gaps_across_wraparound() {
        // 65534, 65535, [0 missing], 1, [2, 3 missing], 4
        let t = feed([65_534, 65_535, 1, 4]);
        assert_eq!(t.expected, 7);
        assert_eq!(t.received, 4);
        assert_eq!(t.lost(), 3);
        assert_eq!(t.gaps, 2);
    }

    #[test]
    fn reordering_across_wraparound_fills_the_gap() {
        let t = feed([65_533, 65_535, 0, 65_534, 1]);
        assert_eq!(t.lost(), 0);
        assert_eq!(t.received, 5);
        assert_eq!(t.reordered, 1);
        // The gap was seen when it opened, even though it was filled later.
        assert_eq!(t.gaps, 1);
    }

    #[test]
    fn duplicates_are_not_received_twice() {
        let t = feed([65_535, 0, 0, 65_535, 1, 1, 2]);
        assert_eq!(t.received, 4);
        assert_eq!(t.duplicates, 3);
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn late_beyond_window_stays_lost() {
        let mut t = feed(0..10);
        t.push(200); // 190 missing
        t.push(5); // a duplicate, but outside the window now
        assert_eq!(t.lost(), 190);
        assert_eq!(t.too_late, 1);
        assert_eq!(t.resyncs, 0);
    }

    #[test]
    fn a_restarted_sender_resynchronises() {
        let mut t = feed(40_000..40_010);
        // New sequence space 30_000 below: "far in the past" for i16 arithmetic.
        for s in 10_000..10_020u16 {
            t.push(s);
        }
        assert_eq!(t.resyncs, 1);
        // The first 8 of the new space were counted too late, the rest are fine.
        assert_eq!(t.lost(), 0);
        assert_eq!(t.received, 10 + 13);
    }

    #[test]
    fn long_run_with_many_wraps() {
        let mut t = SeqTracker::new();
        let mut s: u16 = 12_345;
        let mut sent = 0u64;
        let mut dropped = 0u64;
        for i in 0..300_000u32 {
            if i % 1000 == 999 {
                dropped += 1;
            } else {
                t.push(s);
            }
            sent += 1;
            s = s.wrapping_add(1);
        }
        // The last packet was dropped: a loss at the very end is invisible.
        assert_eq!(t.expected, sent - 1);
        assert_eq!(t.lost(), dropped - 1);
        assert_eq!(t.gaps, dropped - 1);
    }
}
