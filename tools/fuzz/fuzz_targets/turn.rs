//! Arbitrary bytes into the TURN client, as if the server had sent them, in every state
//! the client can be in (allocating, allocated with a channel): none may panic, the
//! client's tables stay bounded, and peer data always lies within the datagram.
#![no_main]

use corecast::webrtc::stun::{long_term_key, Builder, Class, Message};
use corecast::webrtc::turn::{self, Client};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fn server() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 3478))
}

/// A client allocated through a well-formed 401 and success, with one channel bound.
fn allocated() -> Client {
    let key = long_term_key(b"u", b"r", b"p");
    let mut c = Client::new(server(), "u", "p", 0);
    let req = c.poll_transmit().expect("an Allocate");
    let m = Message::parse(&req).expect("our own request parses");
    let mut out = Vec::new();
    Builder::new(&mut out, Class::Error, m.method, &m.transaction_id)
        .error_code(401, b"")
        .realm(b"r")
        .nonce(b"n");
    let _ = c.handle(&out, 1);
    let req = c.poll_transmit().expect("an authenticated Allocate");
    let m = Message::parse(&req).expect("our own request parses");
    out.clear();
    Builder::new(&mut out, Class::Success, m.method, &m.transaction_id)
        .xor_relayed_address(SocketAddr::from(([192, 0, 2, 1], 50000)))
        .lifetime(600)
        .integrity(&key);
    let _ = c.handle(&out, 2);
    let peer = SocketAddr::from(([203, 0, 113, 1], 9));
    let mut buf = Vec::new();
    c.send(peer, b"x", &mut buf, 3);
    if let Some(req) = c.poll_transmit() {
        if let Ok(m) = Message::parse(&req) {
            out.clear();
            Builder::new(&mut out, Class::Success, m.method, &m.transaction_id).integrity(&key);
            let _ = c.handle(&out, 4);
        }
    }
    c
}

fuzz_target!(|data: &[u8]| {
    let _ = turn::binding_mapped(data, &[0; 12]);
    for mut c in [Client::new(server(), "u", "p", 0), allocated()] {
        for (i, chunk) in std::iter::once(data).chain(data.chunks(48)).enumerate() {
            let now = 10 + i as u64 * 1_000_000;
            if let Ok(Some(d)) = c.handle(chunk, now) {
                let range = chunk.as_ptr_range();
                assert!(range.contains(&d.data.as_ptr()) || d.data.is_empty());
            }
            c.handle_timeout(now);
            while c.poll_transmit().is_some() {}
        }
        let _ = c.next_timeout();
    }
});
