//! Arbitrary bytes into the compound RTCP parser: it must not panic, every iterator it hands
//! out must end within the packet's size, and the sequence numbers of a NACK must survive
//! being written again with `write_nack`.
#![no_main]

use corecast::rtp::rtcp::{self, RtcpPacket, MAX_NACK_ENTRIES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut total = 0usize;
    for p in rtcp::parse_compound(data) {
        total += 1;
        assert!(total <= data.len() / 4 + 1);
        let Ok(p) = p else { continue };
        match p {
            RtcpPacket::SenderReport { reports, .. } | RtcpPacket::ReceiverReport { reports, .. } => {
                assert!(reports.count() <= 31);
            }
            RtcpPacket::Sdes(chunks) => {
                for (_, cname) in chunks {
                    assert!(cname.is_none_or(|c| c.len() <= 255));
                }
            }
            RtcpPacket::Bye { ssrcs, reason } => {
                assert!(ssrcs.count() <= 31);
                assert!(reason.is_none_or(|r| r.len() <= 255));
            }
            RtcpPacket::Fir { entries, .. } => assert!(entries.count() <= data.len() / 8),
            RtcpPacket::Nack {
                sender_ssrc,
                media_ssrc,
                seqs,
            } => {
                let got: Vec<u16> = seqs.collect();
                assert!(!got.is_empty() && got.len() <= 17 * (data.len() / 4));
                let mut out = Vec::new();
                rtcp::write_nack(&mut out, sender_ssrc, media_ssrc, &got);
                let Some(Ok(RtcpPacket::Nack { seqs: again, .. })) =
                    rtcp::parse_compound(&out).next()
                else {
                    panic!("written NACK does not parse");
                };
                let mut again: Vec<u16> = again.collect();
                let mut want = got;
                if (out.len() - 12) / 4 < MAX_NACK_ENTRIES {
                    want.sort_unstable();
                    want.dedup();
                    again.sort_unstable();
                    again.dedup();
                    assert_eq!(again, want);
                } else {
                    assert!(again.iter().all(|s| want.contains(s)));
                }
            }
            _ => {}
        }
    }
    let _ = rtcp::parse_sender_report(data);
});
