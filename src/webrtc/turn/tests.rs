use super::*;

const SERVER: &str = "192.0.2.1:3478";
const RELAYED: &str = "192.0.2.1:50000";
const MAPPED: &str = "198.51.100.7:40000";
const REALM: &[u8] = b"corecast";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn key() -> hmac::Key {
    stun::long_term_key(b"user", REALM, b"pass")
}

/// A server answer to `req` with `fill` adding attributes; signed when `sign`.
fn answer(req: &[u8], class: Class, sign: bool, fill: impl FnOnce(&mut Builder)) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut out = Vec::new();
    let mut b = Builder::new(&mut out, class, m.method, &m.transaction_id);
    fill(&mut b);
    if sign {
        b.integrity(&key());
    }
    out
}

/// A client taken through 401 to an allocation.
fn allocated() -> Client {
    let mut c = Client::new(addr(SERVER), "user", "pass", 0);
    let req = c.poll_transmit().unwrap();
    let m = Message::parse(&req).unwrap();
    assert_eq!((m.class, m.method), (Class::Request, METHOD_ALLOCATE));
    assert_eq!(m.requested_transport, Some(17));
    assert!(!m.has_integrity() && m.username.is_none());
    let r401 = answer(&req, Class::Error, false, |b| {
        b.error_code(401, b"Unauthorized").realm(REALM).nonce(b"n1");
    });
    assert_eq!(c.handle(&r401, 1000).unwrap(), None);
    let req = c.poll_transmit().unwrap();
    let m = Message::parse(&req).unwrap();
    assert_eq!(m.method, METHOD_ALLOCATE);
    assert_eq!(m.username, Some(&b"user"[..]));
    assert_eq!((m.realm, m.nonce), (Some(REALM), Some(&b"n1"[..])));
    assert!(
        m.verify_integrity(&key()),
        "MESSAGE-INTEGRITY with MD5(user:realm:pass)"
    );
    assert!(m.has_fingerprint);
    let ok = answer(&req, Class::Success, true, |b| {
        b.xor_relayed_address(addr(RELAYED))
            .xor_mapped_address(addr(MAPPED))
            .lifetime(600);
    });
    assert_eq!(c.handle(&ok, 2000).unwrap(), None);
    assert_eq!(
        *c.state(),
        State::Allocated {
            relayed: addr(RELAYED),
            mapped: Some(addr(MAPPED))
        }
    );
    assert!(c.poll_transmit().is_none());
    c
}

#[test]
fn long_term_key_matches_python() {
    // hashlib.md5(b"user:corecast:pass"); hmac.new(key, bytes(range(40)), sha1)
    let msg: Vec<u8> = (0..40).collect();
    let tag = hmac::sign(&key(), &msg);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "679f35e9fedb939026e64b183eefeb3a00f27ce2");
}

#[test]
fn allocate_with_401_then_refresh() {
    let mut c = allocated();
    assert_eq!(c.relayed(), Some(addr(RELAYED)));
    assert_eq!(c.mapped(), Some(addr(MAPPED)));
    // Refresh before the 600 s lifetime ends (60 s margin).
    let t = c.next_timeout().unwrap();
    assert!(t > 2000 && t <= 2000 + 540_000_000, "{t}");
    c.handle_timeout(t);
    let req = c.poll_transmit().unwrap();
    let m = Message::parse(&req).unwrap();
    assert_eq!(m.method, METHOD_REFRESH);
    assert_eq!(m.lifetime, Some(600));
    assert!(m.verify_integrity(&key()));
    let ok = answer(&req, Class::Success, true, |b| {
        b.lifetime(600);
    });
    c.handle(&ok, t + 10).unwrap();
    assert!(c.next_timeout().unwrap() > t + 500_000_000);
}

#[test]
fn stale_nonce_is_retried_with_the_new_one() {
    let mut c = allocated();
    c.permit("203.0.113.5".parse().unwrap(), 3000);
    let req = c.poll_transmit().unwrap();
    let m = Message::parse(&req).unwrap();
    assert_eq!(m.method, METHOD_CREATE_PERMISSION);
    assert_eq!(
        m.xor_peer_address.unwrap().ip(),
        "203.0.113.5".parse::<IpAddr>().unwrap()
    );
    let stale = answer(&req, Class::Error, false, |b| {
        b.error_code(438, b"Stale Nonce").realm(REALM).nonce(b"n2");
    });
    c.handle(&stale, 4000).unwrap();
    let req2 = c.poll_transmit().unwrap();
    let m2 = Message::parse(&req2).unwrap();
    assert_eq!(m2.method, METHOD_CREATE_PERMISSION);
    assert_eq!(m2.nonce, Some(&b"n2"[..]));
    assert_ne!(m2.transaction_id, m.transaction_id);
    assert!(m2.verify_integrity(&key()));
    let ok = answer(&req2, Class::Success, true, |_| {});
    c.handle(&ok, 5000).unwrap();
    assert!(c.permitted("203.0.113.5".parse().unwrap()));
    // Refreshed every 4 minutes while used; dropped once released and expired.
    c.handle_timeout(5000 + PERMISSION_REFRESH);
    let req = c.poll_transmit().unwrap();
    assert_eq!(
        Message::parse(&req).unwrap().method,
        METHOD_CREATE_PERMISSION
    );
    c.handle(
        &answer(&req, Class::Success, true, |_| {}),
        5000 + PERMISSION_REFRESH + 1,
    )
    .unwrap();
    c.release("203.0.113.5".parse().unwrap());
    c.handle_timeout(5000 + 2 * PERMISSION_REFRESH + 2);
    assert!(!c.permitted("203.0.113.5".parse().unwrap()));
    let left: Vec<_> = std::iter::from_fn(|| c.poll_transmit())
        .filter(|r| Message::parse(r).unwrap().method == METHOD_CREATE_PERMISSION)
        .collect();
    assert!(left.is_empty());
}

#[test]
fn wrong_password_fails() {
    let mut c = Client::new(addr(SERVER), "user", "wrong", 0);
    let req = c.poll_transmit().unwrap();
    let r401 = answer(&req, Class::Error, false, |b| {
        b.error_code(401, b"Unauthorized").realm(REALM).nonce(b"n1");
    });
    c.handle(&r401, 1).unwrap();
    let req = c.poll_transmit().unwrap();
    let again = answer(&req, Class::Error, false, |b| {
        b.error_code(401, b"Unauthorized").realm(REALM).nonce(b"n1");
    });
    c.handle(&again, 2).unwrap();
    let State::Failed(why) = c.state() else {
        panic!("{:?}", c.state())
    };
    assert!(why.contains("401"), "{why}");
    assert!(!why.contains("wrong"), "the password never shows: {why}");
    assert!(!format!("{c:?}").contains("wrong"));
    assert_eq!(c.next_timeout(), None);
}

#[test]
fn no_answer_gives_up_after_seven_sends() {
    let mut c = Client::new(addr(SERVER), "user", "pass", 0);
    let mut sends = 0;
    let mut now = 0;
    while let Some(t) = c.next_timeout() {
        while c.poll_transmit().is_some() {
            sends += 1;
        }
        now = t;
        c.handle_timeout(now);
        assert!(now < 100_000_000);
    }
    while c.poll_transmit().is_some() {
        sends += 1;
    }
    assert_eq!(sends, 7);
    assert!(matches!(c.state(), State::Failed(w) if w.contains("no answer")));
    assert!(now >= 31_500_000);
}

#[test]
fn forged_success_is_refused() {
    let mut c = Client::new(addr(SERVER), "user", "pass", 0);
    let req = c.poll_transmit().unwrap();
    c.handle(
        &answer(&req, Class::Error, false, |b| {
            b.error_code(401, b"").realm(REALM).nonce(b"n");
        }),
        1,
    )
    .unwrap();
    let req = c.poll_transmit().unwrap();
    // Unsigned, and signed with another key.
    let unsigned = answer(&req, Class::Success, false, |b| {
        b.xor_relayed_address(addr(RELAYED));
    });
    assert_eq!(c.handle(&unsigned, 2), Err(TurnError::BadIntegrity));
    let m = Message::parse(&req).unwrap();
    let mut other = Vec::new();
    Builder::new(
        &mut other,
        Class::Success,
        METHOD_ALLOCATE,
        &m.transaction_id,
    )
    .xor_relayed_address(addr(RELAYED))
    .integrity(&stun::long_term_key(b"user", REALM, b"other"));
    assert_eq!(c.handle(&other, 2), Err(TurnError::BadIntegrity));
    // Another transaction.
    let mut stray = Vec::new();
    Builder::new(&mut stray, Class::Success, METHOD_ALLOCATE, &[9; 12]);
    assert_eq!(c.handle(&stray, 2), Err(TurnError::UnknownTransaction));
    assert_eq!(*c.state(), State::Allocating);
}

#[test]
fn data_indication_and_send_then_channel() {
    let mut c = allocated();
    let peer = addr("203.0.113.9:5000");
    // Data indication from the server.
    let mut ind = Vec::new();
    Builder::new(&mut ind, Class::Indication, METHOD_DATA, &[1; 12])
        .xor_peer_address(peer)
        .data(b"hello");
    assert_eq!(
        c.handle(&ind, 10).unwrap(),
        Some(PeerData {
            peer,
            data: b"hello"
        })
    );
    // First send: a Send indication, and a ChannelBind starts.
    let mut out = Vec::new();
    assert!(c.send(peer, b"world", &mut out, 20));
    let m = Message::parse(&out).unwrap();
    assert_eq!((m.class, m.method), (Class::Indication, METHOD_SEND));
    assert_eq!(
        (m.xor_peer_address, m.data),
        (Some(peer), Some(&b"world"[..]))
    );
    let bind = c.poll_transmit().unwrap();
    let bm = Message::parse(&bind).unwrap();
    assert_eq!(bm.method, METHOD_CHANNEL_BIND);
    assert_eq!(bm.channel_number, Some(0x4000));
    assert_eq!(bm.xor_peer_address, Some(peer));
    assert!(bm.verify_integrity(&key()));
    c.handle(&answer(&bind, Class::Success, true, |_| {}), 30)
        .unwrap();
    // Then ChannelData, both ways.
    assert!(c.send(peer, b"abcde", &mut out, 40));
    assert_eq!(&out[..4], &[0x40, 0x00, 0, 5]);
    assert_eq!(&out[4..9], b"abcde");
    assert_eq!(out.len(), 12);
    let got = c.handle(&out, 50).unwrap().unwrap();
    assert_eq!((got.peer, got.data), (peer, &b"abcde"[..]));
    // Unpadded ChannelData is accepted too.
    assert_eq!(c.handle(&out[..9], 50).unwrap().unwrap().data, b"abcde");
    // Re-bound before the 10 minutes run out.
    c.handle_timeout(30 + CHANNEL_REFRESH);
    let mut rebound = false;
    while let Some(r) = c.poll_transmit() {
        rebound |= Message::parse(&r).unwrap().method == METHOD_CHANNEL_BIND;
    }
    assert!(rebound);
}

#[test]
fn malformed_input_is_an_error() {
    let mut c = allocated();
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x40],
        vec![0x40, 0x00, 0x00, 0x09, 1, 2],
        vec![0x4f, 0xff, 0x00, 0x00],
        vec![0, 1, 0, 0],
        vec![0xff; 40],
    ];
    for d in &cases {
        assert!(c.handle(d, 100).is_err(), "{d:?}");
    }
    // Data indication without DATA.
    let mut ind = Vec::new();
    Builder::new(&mut ind, Class::Indication, METHOD_DATA, &[1; 12])
        .xor_peer_address(addr("203.0.113.9:5000"));
    assert_eq!(c.handle(&ind, 100), Err(TurnError::BadIndication));
    // Bad attribute values.
    for (ty, v) in [
        (stun::attr::LIFETIME, &[0u8, 1][..]),
        (
            stun::attr::XOR_RELAYED_ADDRESS,
            &[0, 3, 0, 0, 1, 2, 3, 4][..],
        ),
        (stun::attr::CHANNEL_NUMBER, &[0x30, 0, 0, 0][..]),
        (stun::attr::REQUESTED_TRANSPORT, &[17, 1, 0, 0][..]),
    ] {
        let mut m = Vec::new();
        Builder::new(&mut m, Class::Success, METHOD_ALLOCATE, &[2; 12]).attribute(ty, v);
        assert_eq!(
            c.handle(&m, 100),
            Err(TurnError::Stun(stun::StunError::BadAttribute(ty)))
        );
    }
    // Arbitrary bytes never panic.
    let mut x = 0x1234_5678u32;
    for n in 0..2000 {
        let len = n % 80;
        let d: Vec<u8> = (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i == 0 && n % 3 == 0 {
                    0x40
                } else {
                    x as u8
                }
            })
            .collect();
        let _ = c.handle(&d, 100);
    }
    assert!(c.relayed().is_some());
}

#[test]
fn tables_are_bounded() {
    let mut c = allocated();
    for i in 0..1000u32 {
        let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
        c.permit(ip, 10);
        let mut out = Vec::new();
        c.send(SocketAddr::new(ip, 1000), b"x", &mut out, 10);
    }
    assert!(c.permissions.len() <= MAX_PERMISSIONS);
    assert!(c.channels.len() <= MAX_CHANNELS);
    assert!(c.pending.len() <= MAX_PENDING);
    assert!(c.out.len() <= MAX_QUEUED);
}

#[test]
fn close_sends_refresh_zero() {
    let mut c = allocated();
    c.close(10);
    let req = c.poll_transmit().unwrap();
    let m = Message::parse(&req).unwrap();
    assert_eq!((m.method, m.lifetime), (METHOD_REFRESH, Some(0)));
    assert_eq!(*c.state(), State::Closed);
    assert_eq!(c.next_timeout(), None);
}

#[test]
fn relay_candidate() {
    let l = relay_candidate_line(addr(RELAYED), Some(addr(MAPPED)), 0);
    assert!(
        l.ends_with(" 1 udp 16777215 192.0.2.1 50000 typ relay raddr 198.51.100.7 rport 40000"),
        "{l}"
    );
    assert!(l.starts_with("candidate:"));
}

#[test]
fn binding_round_trip() {
    let tid = [7; 12];
    let req = binding_request(&tid);
    let m = Message::parse(&req).unwrap();
    assert_eq!((m.class, m.method), (Class::Request, stun::METHOD_BINDING));
    let mut resp = Vec::new();
    Builder::new(&mut resp, Class::Success, stun::METHOD_BINDING, &tid)
        .xor_mapped_address(addr(MAPPED));
    assert_eq!(binding_mapped(&resp, &tid), Some(addr(MAPPED)));
    assert_eq!(binding_mapped(&resp, &[8; 12]), None);
    assert_eq!(binding_mapped(&resp[..10], &tid), None);
}

#[test]
fn unused_channel_expires_and_its_number_rests() {
    let mut c = allocated();
    let peer = addr("203.0.113.9:5000");
    let mut out = Vec::new();
    c.send(peer, b"x", &mut out, 10);
    let bind = c.poll_transmit().unwrap();
    c.handle(&answer(&bind, Class::Success, true, |_| {}), 20)
        .unwrap();
    // Nothing more is sent: no re-bind at 5 minutes, gone at 10.
    assert_ne!(c.next_timeout(), Some(20 + CHANNEL_REFRESH));
    c.handle_timeout(20 + CHANNEL_REFRESH);
    while let Some(r) = c.poll_transmit() {
        assert_ne!(Message::parse(&r).unwrap().method, METHOD_CHANNEL_BIND);
    }
    c.handle_timeout(20 + CHANNEL_LIFETIME);
    assert!(c.channels.is_empty() && c.by_number.is_empty());
    // A new peer gets another number while 0x4000 rests.
    c.send(
        addr("203.0.113.10:5000"),
        b"x",
        &mut out,
        20 + CHANNEL_LIFETIME + 1,
    );
    let bind = std::iter::from_fn(|| c.poll_transmit())
        .find(|r| Message::parse(r).unwrap().method == METHOD_CHANNEL_BIND)
        .unwrap();
    assert_eq!(Message::parse(&bind).unwrap().channel_number, Some(0x4001));
}

#[test]
fn refused_permission_is_retried_later_not_at_once() {
    let mut c = allocated();
    let ip: IpAddr = "2001:db8::1".parse().unwrap();
    c.permit(ip, 100);
    let req = c.poll_transmit().unwrap();
    c.handle(
        &answer(&req, Class::Error, true, |b| {
            b.error_code(443, b"Peer Address Family Mismatch");
        }),
        200,
    )
    .unwrap();
    assert!(!c.permitted(ip));
    let t = c.next_timeout().unwrap();
    assert!(t >= 200 + PERMISSION_RETRY, "{t}");
    c.handle_timeout(300);
    assert!(c.poll_transmit().is_none());
    c.handle_timeout(200 + PERMISSION_RETRY);
    let again = c.poll_transmit().unwrap();
    assert_eq!(
        Message::parse(&again).unwrap().method,
        METHOD_CREATE_PERMISSION
    );
}

#[test]
fn timers_never_in_the_past_while_work_is_in_flight() {
    let mut c = allocated();
    let t = c.next_timeout().unwrap();
    c.handle_timeout(t);
    assert!(c.poll_transmit().is_some(), "a Refresh");
    // Its answer is late: the next timer is its retransmission, not the refresh time.
    let next = c.next_timeout().unwrap();
    assert!(next > t, "{next} <= {t}");
}
