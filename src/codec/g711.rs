//! G.711 A-law and µ-law (ITU-T G.711) to 16-bit linear PCM, for muxers that carry PCM
//! (FLAC in fMP4), and back (WebRTC takes G.711 at 8 kHz only, so other rates are decoded,
//! resampled and encoded again). Decoding is a table lookup; the tables are built at compile
//! time from the standard expansion formulas. Encoding is the standard segment search.

/// One A-law byte to a linear sample (13-bit magnitude scaled to 16 bits).
const fn alaw_expand(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mantissa = ((a & 0x0f) as i16) << 4;
    let segment = (a & 0x70) >> 4;
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        s => (mantissa + 0x108) << (s - 1),
    };
    if a & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// One µ-law byte to a linear sample (14-bit magnitude scaled to 16 bits).
const fn ulaw_expand(u: u8) -> i16 {
    let u = !u;
    let t = ((((u & 0x0f) as i16) << 3) + 0x84) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        0x84 - t
    } else {
        t - 0x84
    }
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_expand(i as u8)
        } else {
            ulaw_expand(i as u8)
        };
        i += 1;
    }
    t
}

static ALAW: [i16; 256] = table(true);
static ULAW: [i16; 256] = table(false);

/// A-law byte to linear PCM.
pub fn alaw_to_linear(a: u8) -> i16 {
    ALAW[usize::from(a)]
}

/// µ-law byte to linear PCM.
pub fn ulaw_to_linear(u: u8) -> i16 {
    ULAW[usize::from(u)]
}

/// Linear PCM to A-law (G.711 compression: 13-bit magnitude, segment and mantissa, even
/// bits inverted).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let v = i32::from(sample) >> 3;
    let (mask, v) = if v >= 0 { (0xd5, v) } else { (0x55, -v - 1) };
    // Segment: where the magnitude's highest bit sits (segments 0 and 1 share one step).
    let seg = (32 - (v as u32 >> 5).leading_zeros()) as i32;
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let mantissa = if seg < 2 { v >> 1 } else { v >> seg } & 0x0f;
    ((seg << 4) as u8 | mantissa as u8) ^ mask
}

/// Linear PCM to µ-law (G.711 compression: biased 14-bit magnitude, inverted).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84 >> 2;
    const CLIP: i32 = 8159;
    let v = i32::from(sample) >> 2;
    let (mask, v) = if v < 0 { (0x7f, -v) } else { (0xff, v) };
    let v = v.min(CLIP) + BIAS;
    let seg = (32 - (v as u32 >> 6).leading_zeros()) as i32;
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    (((seg << 4) | ((v >> (seg + 1)) & 0x0f)) as u8) ^ mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alaw_known_values() {
        // Smallest and largest magnitudes of each sign, and a mid-range code (G.711 table 1a).
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(alaw_to_linear(0xfa), 1008); // segment 2, mantissa 15
                                                // Monotonic in each sign half once the even-bit inversion is undone.
        let positive: Vec<i16> = (0..128u8)
            .map(|c| alaw_to_linear((c | 0x80) ^ 0x55))
            .collect();
        assert!(positive.windows(2).all(|w| w[0] < w[1]));
        for c in 0..=255u8 {
            assert_eq!(alaw_to_linear(c), -alaw_to_linear(c ^ 0x80));
        }
    }

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xfe), 8);
        assert_eq!(ulaw_to_linear(0xef), 132); // segment 1, mantissa 0
        let positive: Vec<i16> = (0..128u8).rev().map(|c| ulaw_to_linear(c | 0x80)).collect();
        assert!(positive.windows(2).all(|w| w[0] < w[1]));
    }

    /// Encoding a decoded code gives the code back (µ-law's negative zero becomes the
    /// positive one), and encoding is monotonic over the whole 16-bit range.
    #[test]
    fn encode_round_trip() {
        for c in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "alaw {c:#x}");
            let back = linear_to_ulaw(ulaw_to_linear(c));
            assert_eq!(back, if c == 0x7f { 0xff } else { c }, "ulaw {c:#x}");
        }
        let mut prev = (i16::MIN, i16::MIN);
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let a = alaw_to_linear(linear_to_alaw(s));
            let u = ulaw_to_linear(linear_to_ulaw(s));
            assert!(a >= prev.0 && u >= prev.1, "{s}");
            // Quantisation error within the segment's step.
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= 1024,
                "alaw {s} -> {a}"
            );
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= 1100,
                "ulaw {s} -> {u}"
            );
            prev = (a, u);
        }
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }
}
