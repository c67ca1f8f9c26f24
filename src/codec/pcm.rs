//! PCM audio to 8 kHz mono G.711 for WebRTC, which takes PCMA/PCMU at 8 kHz only: cameras
//! also send G.711 at 16 kHz and more, and L16. As go2rtc (pkg/pcm): decode to linear,
//! average the channels, decimate by averaging the input samples that fall into each output
//! sample (a box filter: cheap, and it removes most of what would alias), encode.
//! Done once per stream on a shard, not per viewer.

use super::g711;
use crate::mux::Pcm;

/// Output rate.
pub const RATE: u32 = 8000;
/// Highest input rate taken (PCM in RTP goes up to 192 kHz in practice).
pub const MAX_RATE: u32 = 192_000;
/// Most channels taken.
pub const MAX_CHANNELS: u8 = 8;

/// One stream's PCM → 8 kHz mono G.711 converter; keeps the partial output sample between
/// packets so packet boundaries add no clicks.
#[derive(Debug, Clone)]
pub struct To8k {
    input: Pcm,
    rate: u32,
    channels: usize,
    /// A-law out (else µ-law).
    alaw: bool,
    /// Input samples summed for the output sample in progress, their count, and how far
    /// (in units of 1 / rate seconds × RATE) it has got.
    sum: i64,
    count: u32,
    phase: u32,
    scratch: Vec<i16>,
}

impl To8k {
    /// None when there is nothing to do (G.711 at 8 kHz mono) or the input cannot be taken
    /// (below 8 kHz, above [`MAX_RATE`], no or too many channels).
    pub fn new(input: Pcm, rate: u32, channels: u8, alaw: bool) -> Option<To8k> {
        let same = matches!((input, alaw), (Pcm::Alaw, true) | (Pcm::Ulaw, false));
        if (same && rate == RATE && channels == 1)
            || !(RATE..=MAX_RATE).contains(&rate)
            || channels == 0
            || channels > MAX_CHANNELS
        {
            return None;
        }
        Some(To8k {
            input,
            rate,
            channels: usize::from(channels),
            alaw,
            sum: 0,
            count: 0,
            phase: 0,
            scratch: Vec::new(),
        })
    }

    /// The input clock rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Converts one payload, appending G.711 bytes to `out`. A trailing partial sample
    /// frame (a channel short, half an L16 sample) is dropped.
    pub fn push(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.scratch.clear();
        self.input.decode(payload, &mut self.scratch);
        let ch = self.channels;
        for frame in self.scratch.chunks_exact(ch) {
            let mono: i32 = frame.iter().map(|&s| i32::from(s)).sum::<i32>() / ch as i32;
            self.sum += i64::from(mono);
            self.count += 1;
            // Each input sample moves RATE/rate of an output sample.
            self.phase += RATE;
            if self.phase >= self.rate {
                self.phase -= self.rate;
                let s = (self.sum / i64::from(self.count)) as i16;
                out.push(if self.alaw {
                    g711::linear_to_alaw(s)
                } else {
                    g711::linear_to_ulaw(s)
                });
                self.sum = 0;
                self.count = 0;
            }
        }
    }

    /// An input timestamp (input clock) in the 8 kHz clock.
    pub fn timestamp(&self, ts: u64) -> u32 {
        (u128::from(ts) * u128::from(RATE) / u128::from(self.rate)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn alaw(x: &[i16]) -> Vec<u8> {
        x.iter().map(|&s| g711::linear_to_alaw(s)).collect()
    }

    fn decode_alaw(x: &[u8]) -> Vec<i16> {
        x.iter().map(|&b| g711::alaw_to_linear(b)).collect()
    }

    /// 16 kHz A-law in 20 ms packets: 160 output bytes per packet, a 1 kHz tone keeps its
    /// level and a 7 kHz tone (would alias to 1 kHz) is attenuated.
    #[test]
    fn alaw_16k_to_8k() {
        let mut t = To8k::new(Pcm::Alaw, 16_000, 1, true).unwrap();
        let mut out = Vec::new();
        let low = alaw(&tone(1000.0, 16_000, 16_000, 10_000.0));
        for p in low.chunks(320) {
            let before = out.len();
            t.push(p, &mut out);
            assert_eq!(out.len() - before, 160);
        }
        let got = decode_alaw(&out);
        let level = rms(&got[800..]);
        assert!((level - 7071.0).abs() < 500.0, "{level}");
        // Same 1 kHz: zero crossings per second stay 2000.
        let crossings = got.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((1990..=2010).contains(&crossings), "{crossings}");

        let mut t = To8k::new(Pcm::Alaw, 16_000, 1, true).unwrap();
        let mut out = Vec::new();
        t.push(&alaw(&tone(7000.0, 16_000, 16_000, 10_000.0)), &mut out);
        let high = rms(&decode_alaw(&out));
        assert!(high < 0.25 * 7071.0, "{high}");
    }

    /// L16 stereo 48 kHz (big-endian) to µ-law: channels averaged, 6:1, odd-sized tails
    /// dropped; 44.1 kHz gives 8000 samples a second in total over uneven packets.
    #[test]
    fn l16_stereo_and_fractional_rates() {
        let mono = tone(440.0, 48_000, 48_000, 8000.0);
        let mut be = Vec::new();
        for s in &mono {
            // Left and right opposite halves of the same tone: the average is half.
            be.extend_from_slice(&(s / 2).to_be_bytes());
            be.extend_from_slice(&(s - s / 2).to_be_bytes());
        }
        let mut t = To8k::new(Pcm::L16, 48_000, 2, false).unwrap();
        let mut out = Vec::new();
        for p in be.chunks(1922) {
            t.push(p, &mut out);
        }
        // Chunks of 1922 bytes end a channel short (dropped): close to but under 8000.
        assert!((7900..=8000).contains(&out.len()), "{}", out.len());
        let got: Vec<i16> = out.iter().map(|&b| g711::ulaw_to_linear(b)).collect();
        let level = rms(&got[100..]);
        assert!((level - 2828.0).abs() < 300.0, "{level}");

        let mut t = To8k::new(Pcm::Ulaw, 44_100, 1, false).unwrap();
        let mut out = Vec::new();
        let x: Vec<u8> = vec![0xff; 44_100];
        for p in x.chunks(333) {
            t.push(p, &mut out);
        }
        assert_eq!(out.len(), 8000);
        assert!(out.iter().all(|&b| b == 0xff));
        assert_eq!(t.timestamp(44_100), 8000);
        assert_eq!(t.timestamp(u64::from(u32::MAX) * 2), 1_558_264_778);
    }

    #[test]
    fn what_is_taken() {
        assert!(To8k::new(Pcm::Alaw, 8000, 1, true).is_none());
        assert!(To8k::new(Pcm::Ulaw, 8000, 1, false).is_none());
        // Other law at 8 kHz: recoded.
        assert!(To8k::new(Pcm::Ulaw, 8000, 1, true).is_some());
        assert!(To8k::new(Pcm::Alaw, 8000, 2, true).is_some());
        assert!(To8k::new(Pcm::Alaw, 4000, 1, true).is_none());
        assert!(To8k::new(Pcm::Alaw, 384_000, 1, true).is_none());
        assert!(To8k::new(Pcm::L16, 16_000, 0, true).is_none());
        assert!(To8k::new(Pcm::L16, 16_000, 9, true).is_none());
        // Garbage in, bounded output: at most one byte per input sample.
        let mut t = To8k::new(Pcm::L16, 8000, 1, true).unwrap();
        let mut out = Vec::new();
        t.push(&[0xab; 1001], &mut out);
        assert_eq!(out.len(), 500);
    }
}
