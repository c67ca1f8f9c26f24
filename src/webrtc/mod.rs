//! WebRTC building blocks, sans-IO: STUN and the ICE-lite agent, RFC 4571 framing for
//! ICE-TCP (and, beside them, DTLS, SRTP and SDP). The shard drivers own the sockets.

pub mod dtls;
pub mod ice;
pub mod sdp;
pub mod srtp;
pub mod stun;
pub mod tcp_framing;
pub mod turn;

/// What a datagram on the shared WebRTC port is, by its first byte (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demux {
    Stun,
    Dtls,
    /// RTP or RTCP (SRTP/SRTCP); `crate::rtp::is_rtcp` tells them apart.
    Rtp,
    /// ZRTP, TURN channels and anything else: dropped.
    Other,
}

/// Classify a datagram received on the shared port.
pub fn demux(datagram: &[u8]) -> Demux {
    match datagram.first() {
        Some(0..=3) => Demux::Stun,
        Some(20..=63) => Demux::Dtls,
        Some(128..=191) => Demux::Rtp,
        _ => Demux::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_ranges() {
        assert_eq!(demux(&[]), Demux::Other);
        assert_eq!(demux(&[0]), Demux::Stun);
        assert_eq!(demux(&[3]), Demux::Stun);
        assert_eq!(demux(&[4]), Demux::Other);
        assert_eq!(demux(&[22, 0xfe, 0xfd]), Demux::Dtls);
        assert_eq!(demux(&[64]), Demux::Other);
        assert_eq!(demux(&[0x80, 96]), Demux::Rtp);
        assert_eq!(demux(&[0xbf]), Demux::Rtp);
        assert_eq!(demux(&[0xc0]), Demux::Other);
    }
}
