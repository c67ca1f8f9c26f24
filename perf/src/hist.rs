//! A log-linear latency histogram (HDR-style): exact below 128, then 64 sub-buckets per
//! power of two, so any recorded value is known to within 1/64 (1.6 %). Fixed size, no
//! allocation when recording, mergeable across threads.

const EXACT: u64 = 128;
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for the whole u64 range.
const BUCKETS: usize = EXACT as usize + (64 - 7) * SUB as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

fn index(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= 7
    let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
    EXACT as usize + (e as usize - 7) * SUB as usize + sub as usize
}

/// Inclusive value range of a bucket.
fn bounds(i: usize) -> (u64, u64) {
    if (i as u64) < EXACT {
        return (i as u64, i as u64);
    }
    let j = i - EXACT as usize;
    let e = (j / SUB as usize) as u32 + 7;
    let sub = (j % SUB as usize) as u64;
    let width = 1u64 << (e - SUB_BITS);
    let lo = (SUB + sub) << (e - SUB_BITS);
    (lo, lo + (width - 1))
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.count += 1;
        self.sum += v as u128;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn reset(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.count = 0;
        self.sum = 0;
        self.min = u64::MAX;
        self.max = 0;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value at percentile `p` (0..=100): the upper bound of the bucket holding the
    /// ceil(p% · count)-th smallest value, clamped to the observed min/max. So a reported
    /// p99 is never below the true p99, and at most 1.6 % above it.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if p <= 0.0 {
            return Some(self.min);
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bounds(i).1.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_contiguously() {
        let mut prev_hi = None;
        for i in 0..BUCKETS {
            let (lo, hi) = bounds(i);
            assert!(lo <= hi);
            if let Some(p) = prev_hi {
                assert_eq!(lo, p + 1, "bucket {i}");
            }
            prev_hi = Some(hi);
            assert_eq!(index(lo), i);
            assert_eq!(index(hi), i);
        }
        assert_eq!(prev_hi, Some(u64::MAX));
        for v in [0, 1, 127, 128, 129, 1000, 123_456, u64::MAX / 3, u64::MAX] {
            let (lo, hi) = bounds(index(v));
            assert!(lo <= v && v <= hi, "{v}");
        }
    }

    #[test]
    fn percentiles_of_uniform_values() {
        let mut h = Histogram::new();
        // 1..=10_000 µs in ns.
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.min(), Some(1000));
        assert_eq!(h.max(), Some(10_000_000));
        for (p, exact) in [
            (50.0, 5_000_000f64),
            (90.0, 9_000_000.0),
            (99.0, 9_900_000.0),
        ] {
            let got = h.percentile(p).unwrap() as f64;
            assert!(got >= exact, "p{p}: {got} < {exact}");
            assert!(
                got <= exact * (1.0 + 1.0 / 64.0),
                "p{p}: {got} too far above {exact}"
            );
        }
        assert_eq!(h.percentile(100.0), Some(10_000_000));
        assert_eq!(h.percentile(0.0), Some(1000));
        assert!((h.mean().unwrap() - 5_000_500.0).abs() < 1.0);
    }

    #[test]
    fn small_values_are_exact_and_tail_is_seen() {
        let mut h = Histogram::new();
        for _ in 0..990 {
            h.record(50);
        }
        for _ in 0..10 {
            h.record(100_000);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(99.0), Some(50));
        assert_eq!(h.percentile(99.1), Some(100_000));
        assert_eq!(h.max(), Some(100_000));
    }

    #[test]
    fn merge_and_reset() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10);
        b.record(1_000_000);
        b.record(20);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.min(), Some(10));
        assert_eq!(a.max(), Some(1_000_000));
        assert_eq!(a.percentile(50.0), Some(20));
        a.reset();
        assert_eq!(a.count(), 0);
        assert_eq!(a.percentile(50.0), None);
        let empty = Histogram::new();
        a.merge(&empty);
        assert_eq!(a.max(), None);
    }
}
