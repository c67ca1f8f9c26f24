//! Arbitrary bytes into the STUN parser, the ICE-lite agent and the RFC 4571 deframer: none
//! may panic. A message that parses is rebuilt from its parsed fields and must parse back to
//! the same fields (unknown attributes aside, which are not re-emitted); its integrity, when
//! it had one, is re-signed and must verify.
#![no_main]

use corecast::webrtc::ice::{self, Credentials, IceLite, Remote, MAX_REMOTES};
use corecast::webrtc::stun::{integrity_key, Builder, Message};
use corecast::webrtc::tcp_framing::Deframer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = integrity_key(b"fuzzpasswordfuzzpassword");
    let _ = ice::ufrag_of(data);
    if let Ok(m) = Message::parse(data) {
        let _ = m.verify_integrity(&key);
        let mut out = Vec::new();
        {
            let mut b = Builder::new(&mut out, m.class, m.method, &m.transaction_id);
            if let Some(u) = m.username {
                b.username(u);
            }
            if let Some(s) = m.software {
                b.software(s);
            }
            if let Some(a) = m.xor_mapped_address {
                b.xor_mapped_address(a);
            }
            if let Some(p) = m.priority {
                b.priority(p);
            }
            if m.use_candidate {
                b.use_candidate();
            }
            if let Some(t) = m.ice_controlling {
                b.ice_controlling(t);
            }
            if let Some(t) = m.ice_controlled {
                b.ice_controlled(t);
            }
            if let Some(e) = m.error_code {
                b.error_code(e.code, e.reason);
            }
            if let Some(a) = m.xor_relayed_address {
                b.xor_relayed_address(a);
            }
            if let Some(a) = m.xor_peer_address {
                b.xor_peer_address(a);
            }
            if let Some(d) = m.data {
                b.data(d);
            }
            if let Some(l) = m.lifetime {
                b.lifetime(l);
            }
            if let Some(t) = m.requested_transport {
                b.requested_transport(t);
            }
            if let Some(r) = m.realm {
                b.realm(r);
            }
            if let Some(n) = m.nonce {
                b.nonce(n);
            }
            if let Some(c) = m.channel_number {
                b.channel_number(c);
            }
            if !m.unknown_attributes.as_slice().is_empty() {
                b.unknown_attributes(m.unknown_attributes.as_slice());
            }
            if m.has_integrity() {
                b.integrity(&key);
            }
            if m.has_fingerprint {
                b.fingerprint();
            }
        }
        let r = Message::parse(&out).expect("a rebuilt message parses");
        assert_eq!(
            (r.class, r.method, r.transaction_id),
            (m.class, m.method, m.transaction_id)
        );
        assert_eq!((r.username, r.software), (m.username, m.software));
        assert_eq!(r.xor_mapped_address, m.xor_mapped_address);
        assert_eq!((r.priority, r.use_candidate), (m.priority, m.use_candidate));
        assert_eq!(
            (r.ice_controlling, r.ice_controlled),
            (m.ice_controlling, m.ice_controlled)
        );
        assert_eq!(r.error_code, m.error_code);
        assert_eq!(
            (r.xor_relayed_address, r.xor_peer_address, r.data),
            (m.xor_relayed_address, m.xor_peer_address, m.data)
        );
        assert_eq!(
            (r.lifetime, r.requested_transport, r.channel_number),
            (m.lifetime, m.requested_transport, m.channel_number)
        );
        assert_eq!((r.realm, r.nonce), (m.realm, m.nonce));
        assert_eq!(
            r.unknown_attributes.as_slice(),
            m.unknown_attributes.as_slice()
        );
        assert!(r.unknown_required.is_empty());
        assert_eq!(r.has_fingerprint, m.has_fingerprint);
        assert_eq!(r.has_integrity(), m.has_integrity());
        if m.has_integrity() {
            assert!(r.verify_integrity(&key));
        }
    }

    // The agent, with the datagram from a few addresses and over time.
    let creds = Credentials {
        ufrag: "fuzz".into(),
        pwd: "fuzzpasswordfuzzpassword".into(),
    };
    let mut agent = IceLite::new(creds, "peer", "peerpasswordpeerpassword", 0);
    for (i, chunk) in data.chunks(64).enumerate() {
        let port = 1000 + (i % 20) as u16;
        let from = Remote::udp(std::net::SocketAddr::from(([10, 0, 0, 1], port)));
        let _ = agent.handle_stun(from, data, i as u64 * 1_000_000);
        let _ = agent.handle_stun(from, chunk, i as u64 * 1_000_000);
        let _ = agent.poll(i as u64 * 7_000_000);
        assert!(agent.remotes().count() <= MAX_REMOTES);
    }

    // ICE-TCP framing, fed in chunks sized by the data.
    let mut d = Deframer::new(1500);
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let r = d.push(&tail[..n], |f| assert!(!f.is_empty() && f.len() <= 1500));
        assert!(d.buffered() <= 1502);
        if r.is_err() {
            break;
        }
        rest = &tail[n..];
    }
});
