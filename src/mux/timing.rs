//! Decode times for the muxers, shared by fMP4 and TS.
//!
//! The first frame accepted (any track) fixes the origin at its arrival. A track's first frame
//! starts at its own arrival relative to that origin, so tracks that start late stay in sync;
//! from then on the track follows its RTP timestamps, which are smoother than arrival times.

/// Longest believable gap between two frames of one track.
const MAX_STEP_SECONDS: i128 = 10;

/// Decode-time state of one track.
#[derive(Debug, Clone)]
pub(crate) struct TrackClock {
    /// Units of the decode times this clock hands out.
    timescale: u32,
    /// Units of the RTP timestamps it is fed.
    clock_rate: u32,
    /// Step used when the timestamps are unusable, in `timescale` units.
    default_step: u64,
    /// An RTP timestamp and the decode time it maps to.
    anchor: Option<(u64, u64)>,
    /// The previous frame's RTP timestamp and decode time.
    last: (u64, u64),
}

impl TrackClock {
    pub(crate) fn new(timescale: u32, clock_rate: u32, default_step: u64) -> Self {
        TrackClock {
            timescale: timescale.max(1),
            clock_rate: clock_rate.max(1),
            default_step: default_step.max(1),
            anchor: None,
            last: (0, 0),
        }
    }

    pub(crate) fn set_clock_rate(&mut self, clock_rate: u32) {
        self.clock_rate = clock_rate.max(1);
    }

    pub(crate) fn default_step(&self) -> u64 {
        self.default_step
    }

    /// Decode time of a frame, in `timescale` units; strictly increasing per track.
    ///
    /// A step that is not positive or over 10 s becomes the default step. When the timestamp
    /// itself jumped (a camera restarting its RTP clock), the track is re-anchored there so
    /// the frames after it keep their spacing; a repeated timestamp does not re-anchor.
    pub(crate) fn decode_time(&mut self, origin: u64, timestamp: u64, arrival: u64) -> u64 {
        let Some((anchor_ts, anchor_time)) = self.anchor else {
            let since_origin = u128::from(arrival.saturating_sub(origin));
            let time = (since_origin * u128::from(self.timescale) / 1_000_000) as u64;
            self.anchor = Some((timestamp, time));
            self.last = (timestamp, time);
            return time;
        };
        let (last_ts, last_time) = self.last;
        let ticks = i128::from(timestamp) - i128::from(anchor_ts);
        let candidate = i128::from(anchor_time)
            + ticks * i128::from(self.timescale) / i128::from(self.clock_rate);
        let step = candidate - i128::from(last_time);
        let time = if step > 0 && step <= MAX_STEP_SECONDS * i128::from(self.timescale) {
            candidate as u64
        } else {
            let time = last_time.saturating_add(self.default_step);
            if timestamp != last_ts {
                tracing::debug!(
                    timestamp,
                    last_ts,
                    "mux: timestamp jump, re-anchoring track"
                );
                self.anchor = Some((timestamp, time));
            }
            time
        };
        self.last = (timestamp, time);
        time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_timestamps_from_arrival() {
        let mut c = TrackClock::new(90_000, 90_000, 3000);
        // Starts 0.5 s after the origin, RTP timestamps near the 32-bit wrap (extended).
        let base = u64::from(u32::MAX) - 1000;
        assert_eq!(c.decode_time(1_000_000, base, 1_500_000), 45_000);
        assert_eq!(c.decode_time(1_000_000, base + 3600, 9_999_999), 48_600);
        assert_eq!(c.decode_time(1_000_000, base + 7200, 0), 52_200);
        // Repeated and backwards timestamps: default step, no re-anchor on the repeat.
        assert_eq!(c.decode_time(0, base + 7200, 0), 55_200);
        assert_eq!(c.decode_time(0, base + 10_800, 0), 55_800);
        // A jump of an hour: default step, then spacing resumes from there.
        assert_eq!(c.decode_time(0, base + 10_800 + 324_000_000, 0), 58_800);
        assert_eq!(c.decode_time(0, base + 14_400 + 324_000_000, 0), 62_400);
        // Backwards by a minute: same.
        assert_eq!(c.decode_time(0, base, 0), 65_400);
        assert_eq!(c.decode_time(0, base + 3600, 0), 69_000);
    }

    #[test]
    fn converts_clock_rates() {
        // AAC at 48 kHz into a 90 kHz TS clock, and a 16 kHz RTP clock into a 48 kHz MP4.
        let mut c = TrackClock::new(90_000, 48_000, 1920);
        assert_eq!(c.decode_time(0, 0, 0), 0);
        assert_eq!(c.decode_time(0, 1024, 0), 1920);
        let mut c = TrackClock::new(48_000, 48_000, 1024);
        c.set_clock_rate(16_000);
        assert_eq!(c.decode_time(10, 5, 20), 0);
        assert_eq!(c.decode_time(10, 5 + 1024, 20), 3072);
        assert_eq!(c.default_step(), 1024);
    }
}
