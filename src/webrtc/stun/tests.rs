use super::*;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| b.is_ascii_hexdigit())
        .map(|b| (b as char).to_digit(16).unwrap() as u8)
        .collect();
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

const TID: TransactionId = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// RFC 5769 §2.1: sample request, short-term credentials.
fn rfc5769_request() -> Vec<u8> {
    hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
         00 24 00 04 6e 00 01 ff
         80 29 00 08 93 2f f9 b1 51 26 3b 36
         00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
         00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
         80 28 00 04 e5 7a 3b cf")
}

/// RFC 5769 §2.2: sample IPv4 response.
fn rfc5769_response_v4() -> Vec<u8> {
    hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 08 00 01 a1 47 e1 12 a6 43
         00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
         80 28 00 04 c0 7d 4c 96")
}

/// RFC 5769 §2.3: sample IPv6 response.
fn rfc5769_response_v6() -> Vec<u8> {
    hex("01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
         00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
         80 28 00 04 c8 fb 0b 4c")
}

const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

#[test]
fn rfc5769_request_parses_and_verifies() {
    let buf = rfc5769_request();
    let m = Message::parse(&buf).unwrap();
    assert_eq!(m.class, Class::Request);
    assert_eq!(m.method, METHOD_BINDING);
    assert_eq!(m.transaction_id, TID);
    assert_eq!(m.software, Some(&b"STUN test client"[..]));
    assert_eq!(m.priority, Some(0x6e00_01ff));
    assert_eq!(m.ice_controlled, Some(0x932f_f9b1_5126_3b36));
    assert_eq!(m.ice_controlling, None);
    assert_eq!(m.username, Some(&b"evtj:h6vY"[..]));
    assert!(m.has_fingerprint && m.has_integrity());
    assert!(m.unknown_required.is_empty());
    assert!(m.verify_integrity(&integrity_key(PASSWORD)));
    assert!(!m.verify_integrity(&integrity_key(b"VOkJxbRl1RmTxUk/WvJxBu")));
    assert_eq!(username_of(&buf), Some(&b"evtj:h6vY"[..]));
}

#[test]
fn rfc5769_request_built_byte_for_byte() {
    let mut out = vec![0xaa]; // the builder appends after what is there
    Builder::new(&mut out, Class::Request, METHOD_BINDING, &TID)
        .padding(b' ')
        .software(b"STUN test client")
        .priority(0x6e00_01ff)
        .ice_controlled(0x932f_f9b1_5126_3b36)
        .username(b"evtj:h6vY")
        .integrity(&integrity_key(PASSWORD))
        .fingerprint();
    assert_eq!(out[0], 0xaa);
    assert_eq!(&out[1..], &rfc5769_request()[..]);
}

#[test]
fn rfc5769_responses_parse_and_build_byte_for_byte() {
    let v4: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    let v6: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    for (bytes, addr) in [(rfc5769_response_v4(), v4), (rfc5769_response_v6(), v6)] {
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.class, Class::Success);
        assert_eq!(m.method, METHOD_BINDING);
        assert_eq!(m.software, Some(&b"test vector"[..]));
        assert_eq!(m.xor_mapped_address, Some(addr));
        assert!(m.has_fingerprint);
        assert!(m.verify_integrity(&integrity_key(PASSWORD)));

        let mut out = Vec::new();
        Builder::new(&mut out, Class::Success, METHOD_BINDING, &TID)
            .padding(b' ')
            .software(b"test vector")
            .xor_mapped_address(addr)
            .integrity(&integrity_key(PASSWORD))
            .fingerprint();
        assert_eq!(out, bytes, "{addr}");
    }
}

#[test]
fn crc32_check_value() {
    assert_eq!(Crc32::checksum(b"123456789"), 0xcbf4_3926);
    assert_eq!(Crc32::checksum(b""), 0);
}

#[test]
fn message_type_encoding_for_every_class() {
    for (class, ty) in [
        (Class::Request, 0x0001u16),
        (Class::Indication, 0x0011),
        (Class::Success, 0x0101),
        (Class::Error, 0x0111),
    ] {
        let mut out = Vec::new();
        Builder::new(&mut out, class, METHOD_BINDING, &TID);
        assert_eq!(u16::from_be_bytes([out[0], out[1]]), ty);
        let m = Message::parse(&out).unwrap();
        assert_eq!((m.class, m.method), (class, METHOD_BINDING));
    }
    // All 12 method bits survive.
    let mut out = Vec::new();
    Builder::new(&mut out, Class::Error, 0x0fff, &TID);
    let m = Message::parse(&out).unwrap();
    assert_eq!((m.class, m.method), (Class::Error, 0x0fff));
}

#[test]
fn error_response_with_unknown_attributes() {
    let mut out = Vec::new();
    Builder::new(&mut out, Class::Error, METHOD_BINDING, &TID)
        .error_code(420, b"Unknown Attribute")
        .unknown_attributes(&[0x0042, 0x7fff, 0x0003])
        .fingerprint();
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.class, Class::Error);
    let e = m.error_code.unwrap();
    assert_eq!((e.code, e.reason), (420, &b"Unknown Attribute"[..]));
    assert_eq!(m.unknown_attributes.as_slice(), &[0x0042, 0x7fff, 0x0003]);
    assert_eq!(out.len() % 4, 0);
}

#[test]
fn unknown_attributes_skipped_or_reported() {
    let mut out = Vec::new();
    {
        let mut b = Builder::new(&mut out, Class::Request, METHOD_BINDING, &TID);
        b.attribute(0xc057, &[0, 1, 0, 0]); // GOOG-NETWORK-INFO: optional, skipped
        b.attribute(0x0042, b"x"); // comprehension-required, unknown
        b.attribute(0x0042, b"y"); // reported once
        b.username(b"a:b");
        for t in 0x0100..0x0110 {
            b.attribute(t, &[]);
        }
    }
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.username, Some(&b"a:b"[..]));
    assert_eq!(m.unknown_required.as_slice()[..2], [0x0042, 0x0100]);
    assert_eq!(m.unknown_required.as_slice().len(), MAX_UNKNOWN);
    assert!(m.unknown_required.overflow);
}

#[test]
fn first_occurrence_wins_and_attributes_after_integrity_are_ignored() {
    let key = integrity_key(b"pwd");
    let mut out = Vec::new();
    {
        let mut b = Builder::new(&mut out, Class::Request, METHOD_BINDING, &TID);
        b.username(b"first").username(b"second").integrity(&key);
        b.priority(7).use_candidate().fingerprint();
    }
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.username, Some(&b"first"[..]));
    assert_eq!((m.priority, m.use_candidate), (None, false));
    assert!(m.verify_integrity(&key));
}

#[test]
fn malformed_messages_are_errors() {
    let good = rfc5769_request();
    assert_eq!(Message::parse(&[]), Err(StunError::TooShort));
    assert_eq!(Message::parse(&good[..19]), Err(StunError::TooShort));
    let mut b = good.clone();
    b[0] |= 0x80;
    assert_eq!(Message::parse(&b), Err(StunError::NotStun));
    let mut b = good.clone();
    b[4] = 0;
    assert_eq!(Message::parse(&b), Err(StunError::BadCookie));
    // Datagram longer or shorter than the header says.
    let mut b = good.clone();
    b.extend_from_slice(&[0; 4]);
    assert!(matches!(Message::parse(&b), Err(StunError::BadLength(_))));
    assert!(matches!(
        Message::parse(&good[..good.len() - 4]),
        Err(StunError::BadLength(_))
    ));
    // A flipped bit anywhere before the fingerprint breaks it.
    let mut b = good.clone();
    b[30] ^= 1;
    assert_eq!(Message::parse(&b), Err(StunError::BadFingerprint));
    // A flipped bit in the signed part, fingerprint recomputed: integrity fails.
    let mut out = Vec::new();
    Builder::new(&mut out, Class::Request, METHOD_BINDING, &TID)
        .username(b"evtj:h6vY")
        .integrity(&integrity_key(PASSWORD));
    out[HEADER_LEN + 5] ^= 1;
    let m = Message::parse(&out).unwrap();
    assert!(!m.verify_integrity(&integrity_key(PASSWORD)));
    // Attribute running past the end.
    let mut b =
        hex("00 01 00 08 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae 00 06 00 09 65 76 74 6a");
    assert_eq!(
        Message::parse(&b),
        Err(StunError::TruncatedAttribute(attr::USERNAME))
    );
    b[23] = 4;
    assert!(Message::parse(&b).is_ok());
    // Wrong value lengths of fixed-size attributes.
    for (ty, value) in [
        (attr::PRIORITY, &[1u8, 2, 3][..]),
        (attr::USE_CANDIDATE, &[0, 0, 0, 0]),
        (attr::ICE_CONTROLLING, &[0; 4]),
        (attr::MESSAGE_INTEGRITY, &[0; 16]),
        (attr::XOR_MAPPED_ADDRESS, &[0, 3, 0, 0, 1, 2, 3, 4]),
        (attr::XOR_MAPPED_ADDRESS, &[0, 1, 0, 0, 1, 2, 3]),
        (attr::ERROR_CODE, &[0, 0, 7, 0]),
        (attr::ERROR_CODE, &[0, 0, 4, 100]),
        (attr::ERROR_CODE, &[0, 0, 4]),
        (attr::UNKNOWN_ATTRIBUTES, &[0, 1, 2]),
        (attr::FINGERPRINT, &[0; 8]),
    ] {
        let mut out = Vec::new();
        Builder::new(&mut out, Class::Request, METHOD_BINDING, &TID).attribute(ty, value);
        assert_eq!(
            Message::parse(&out),
            Err(StunError::BadAttribute(ty)),
            "{ty:#x}"
        );
    }
    // Anything after FINGERPRINT.
    let mut out = Vec::new();
    Builder::new(&mut out, Class::Request, METHOD_BINDING, &TID)
        .fingerprint()
        .priority(1);
    assert_eq!(
        Message::parse(&out),
        Err(StunError::AfterFingerprint(attr::PRIORITY))
    );
    // Oversized USERNAME.
    let mut out = Vec::new();
    Builder::new(&mut out, Class::Request, METHOD_BINDING, &TID)
        .attribute(attr::USERNAME, &[b'a'; MAX_USERNAME + 1]);
    assert!(Message::parse(&out).is_err());
    assert_eq!(username_of(&out), None);
}

#[test]
fn builder_cuts_long_text() {
    let mut out = Vec::new();
    let long = "é".repeat(500); // 1000 bytes
    Builder::new(&mut out, Class::Error, METHOD_BINDING, &TID)
        .software(long.as_bytes())
        .error_code(401, long.as_bytes())
        .username(&[b'u'; 600]);
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.software.unwrap().len(), 762);
    assert!(std::str::from_utf8(m.software.unwrap()).is_ok());
    assert_eq!(m.error_code.unwrap().reason.len(), 762);
    assert_eq!(m.username.unwrap().len(), MAX_USERNAME);
}

#[test]
fn username_of_without_state() {
    assert_eq!(username_of(&rfc5769_response_v4()), None);
    assert_eq!(username_of(b"\x16\xfe\xfd garbage"), None);
    assert_eq!(username_of(&[]), None);
    // USERNAME after MESSAGE-INTEGRITY does not count.
    let mut out = Vec::new();
    Builder::new(&mut out, Class::Request, METHOD_BINDING, &TID)
        .integrity(&integrity_key(b"k"))
        .username(b"late:x");
    assert_eq!(username_of(&out), None);
}

#[test]
fn demux_first_byte() {
    assert!(is_stun(&rfc5769_request()));
    assert!(!is_stun(&[]));
    for b in 0..=255u8 {
        assert_eq!(is_stun(&[b]), b <= 3, "{b}");
    }
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut x = 0x2545_f491u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let seeds = [
        rfc5769_request(),
        rfc5769_response_v4(),
        rfc5769_response_v6(),
    ];
    let key = integrity_key(PASSWORD);
    for round in 0..20_000 {
        let mut buf = seeds[round % 3].clone();
        for _ in 0..(next() % 4 + 1) {
            let i = next() as usize % buf.len();
            buf[i] = next() as u8;
        }
        if round % 7 == 0 {
            buf.truncate(next() as usize % buf.len());
        }
        if let Ok(m) = Message::parse(&buf) {
            let _ = m.verify_integrity(&key);
        }
        let _ = username_of(&buf);
    }
}
