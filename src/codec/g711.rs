//! G.711 A-law and µ-law (ITU-T G.711) to 16-bit linear PCM, for muxers that carry PCM
//! (FLAC in fMP4). Decoding is a table lookup; the tables are built at compile time from the
//! standard expansion formulas.

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
}
