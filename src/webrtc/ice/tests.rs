use super::*;
use crate::webrtc::stun::{integrity_key, TransactionId};
use ring::rand::SystemRandom;

const SEC: u64 = 1_000_000;

fn creds() -> Credentials {
    Credentials {
        ufrag: "LoCa".into(),
        pwd: "localpasswordlocalpassword".into(),
    }
}

fn agent(now: u64) -> IceLite {
    IceLite::new(creds(), "ReMo", "remotepasswordremotepass", now)
}

struct Check<'a> {
    username: &'a [u8],
    pwd: &'a [u8],
    use_candidate: bool,
    controlled: bool,
    extra: Option<u16>,
    tid: TransactionId,
}

impl Default for Check<'_> {
    fn default() -> Self {
        Check {
            username: b"LoCa:ReMo",
            pwd: b"localpasswordlocalpassword",
            use_candidate: false,
            controlled: false,
            extra: None,
            tid: [7; 12],
        }
    }
}

impl Check<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = Builder::new(&mut out, Class::Request, METHOD_BINDING, &self.tid);
        b.username(self.username).priority(0x6e7f_1eff);
        if self.controlled {
            b.ice_controlled(1);
        } else {
            b.ice_controlling(0x1234);
        }
        if self.use_candidate {
            b.use_candidate();
        }
        if let Some(t) = self.extra {
            b.attribute(t, &[1, 2, 3, 4]);
        }
        b.integrity(&integrity_key(self.pwd)).fingerprint();
        out
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn error_code(reply: &[u8]) -> Option<u16> {
    Message::parse(reply).unwrap().error_code.map(|e| e.code)
}

#[test]
fn valid_check_gets_signed_response_with_mapped_address() {
    let mut a = agent(0);
    assert_eq!(a.poll(0), IceState::Checking);
    let from = addr("192.168.1.50:50123");
    let reply = a.handle_stun(from, &Check::default().bytes(), SEC).unwrap();
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.class, Class::Success);
    assert_eq!(m.transaction_id, [7; 12]);
    assert_eq!(m.xor_mapped_address, Some(from));
    assert!(m.has_fingerprint);
    assert!(m.verify_integrity(&integrity_key(creds().pwd.as_bytes())));
    assert_eq!(a.selected(), Some(Remote::udp(from)));
    assert!(a.is_valid_remote(Remote::udp(from), SEC));
    assert!(!a.is_valid_remote(Remote::tcp(from), SEC));
    assert_eq!(a.poll(SEC), IceState::Connected);
    assert_eq!(a.stats().valid_checks, 1);
}

#[test]
fn nomination_selects_and_sticks() {
    let mut a = agent(0);
    let (x, y, z) = (
        addr("10.0.0.1:1000"),
        addr("[2001:db8::1]:2000"),
        addr("10.0.0.3:3000"),
    );
    a.handle_stun(x, &Check::default().bytes(), 1).unwrap();
    assert_eq!(a.selected(), Some(Remote::udp(x)));
    // Latest valid before nomination.
    a.handle_stun(Remote::tcp(y), &Check::default().bytes(), 2)
        .unwrap();
    assert_eq!(a.selected(), Some(Remote::tcp(y)));
    // Nominated.
    let nominate = Check {
        use_candidate: true,
        ..Check::default()
    }
    .bytes();
    a.handle_stun(x, &nominate, 3).unwrap();
    assert_eq!(a.selected(), Some(Remote::udp(x)));
    // A later plain check elsewhere does not move media away from a nominated pair.
    a.handle_stun(z, &Check::default().bytes(), 4).unwrap();
    assert_eq!(a.selected(), Some(Remote::udp(x)));
    // A later nomination does (renomination, network change).
    a.handle_stun(z, &nominate, 5).unwrap();
    assert_eq!(a.selected(), Some(Remote::udp(z)));
    let nominated: Vec<_> = a.remotes().filter(|r| r.1).map(|r| r.0).collect();
    assert_eq!(nominated, vec![Remote::udp(x), Remote::udp(z)]);
    assert!(a.remotes().all(|r| r.2 == 0x6e7f_1eff));
}

#[test]
fn consent_expires_after_30s_without_valid_checks() {
    let mut a = agent(0);
    let from = addr("10.0.0.1:1000");
    // Never checked: ends 30 s after creation.
    let mut b = agent(0);
    assert_eq!(b.poll(CONSENT_TIMEOUT - 1), IceState::Checking);
    assert_eq!(b.next_timeout(), Some(CONSENT_TIMEOUT));
    assert_eq!(b.poll(CONSENT_TIMEOUT), IceState::Closed);
    assert_eq!(b.next_timeout(), None);

    for t in (1..=10).map(|i| i * 5 * SEC) {
        a.handle_stun(from, &Check::default().bytes(), t).unwrap();
        assert_eq!(a.poll(t + 29 * SEC), IceState::Connected);
    }
    let last = 50 * SEC;
    // Bad checks do not renew consent.
    let bad = Check {
        pwd: b"wrong",
        ..Check::default()
    }
    .bytes();
    a.handle_stun(from, &bad, last + 10 * SEC).unwrap();
    assert_eq!(a.next_timeout(), Some(last + CONSENT_TIMEOUT));
    assert_eq!(a.poll(last + CONSENT_TIMEOUT - 1), IceState::Connected);
    assert_eq!(a.poll(last + CONSENT_TIMEOUT), IceState::Closed);
    assert_eq!(a.selected(), None);
    assert!(!a.is_valid_remote(Remote::udp(from), last + CONSENT_TIMEOUT));
    // Closed stays closed; checks are not answered.
    assert_eq!(
        a.handle_stun(from, &Check::default().bytes(), last + 31 * SEC),
        None
    );
    assert_eq!(a.poll(last + 31 * SEC), IceState::Closed);
}

#[test]
fn stale_selected_pair_falls_back_to_a_fresh_one() {
    let mut a = agent(0);
    let (x, y) = (addr("10.0.0.1:1000"), addr("10.0.0.2:2000"));
    let nominate = Check {
        use_candidate: true,
        ..Check::default()
    }
    .bytes();
    a.handle_stun(x, &nominate, SEC).unwrap();
    a.handle_stun(y, &Check::default().bytes(), 20 * SEC)
        .unwrap();
    assert_eq!(a.selected(), Some(Remote::udp(x)));
    assert_eq!(a.next_timeout(), Some(SEC + CONSENT_TIMEOUT));
    assert_eq!(a.poll(SEC + CONSENT_TIMEOUT), IceState::Connected);
    assert_eq!(a.selected(), Some(Remote::udp(y)));
}

#[test]
fn authentication_failures_are_answered_unsigned() {
    let mut a = agent(0);
    let from = addr("10.0.0.1:1000");
    let cases: [(Check, u16); 3] = [
        (
            Check {
                username: b"LoCa:Other",
                ..Check::default()
            },
            401,
        ),
        (
            Check {
                username: b"Nope:ReMo",
                ..Check::default()
            },
            401,
        ),
        (
            Check {
                pwd: b"remotepasswordremotepass",
                ..Check::default()
            },
            401,
        ),
    ];
    for (check, code) in cases {
        let reply = a.handle_stun(from, &check.bytes(), 1).unwrap();
        assert_eq!(error_code(&reply), Some(code));
        assert!(!Message::parse(&reply).unwrap().has_integrity());
        // Short standard phrase: an answer to a spoofed source stays small.
        assert_eq!(reply.len(), 52);
    }
    // No USERNAME / no MESSAGE-INTEGRITY: 400.
    let mut out = Vec::new();
    Builder::new(&mut out, Class::Request, METHOD_BINDING, &[1; 12]).fingerprint();
    assert_eq!(
        error_code(&a.handle_stun(from, &out, 1).unwrap()),
        Some(400)
    );
    let mut out = Vec::new();
    Builder::new(&mut out, Class::Request, METHOD_BINDING, &[1; 12]).username(b"LoCa:ReMo");
    assert_eq!(
        error_code(&a.handle_stun(from, &out, 1).unwrap()),
        Some(400)
    );
    // Other methods: 400.
    let mut out = Vec::new();
    Builder::new(&mut out, Class::Request, 0x003, &[1; 12]).username(b"LoCa:ReMo");
    assert_eq!(
        error_code(&a.handle_stun(from, &out, 1).unwrap()),
        Some(400)
    );
    assert_eq!(a.selected(), None);
    assert_eq!(a.stats().rejected, 6);
    assert_eq!(a.poll(1), IceState::Checking);
}

#[test]
fn role_conflict_and_unknown_attribute_are_signed_errors() {
    let mut a = agent(0);
    let from = addr("10.0.0.1:1000");
    let reply = a
        .handle_stun(
            from,
            &Check {
                controlled: true,
                ..Check::default()
            }
            .bytes(),
            1,
        )
        .unwrap();
    assert_eq!(error_code(&reply), Some(487));
    assert!(Message::parse(&reply)
        .unwrap()
        .verify_integrity(&integrity_key(creds().pwd.as_bytes())));

    let reply = a
        .handle_stun(
            from,
            &Check {
                extra: Some(0x0042),
                ..Check::default()
            }
            .bytes(),
            1,
        )
        .unwrap();
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.error_code.map(|e| e.code), Some(420));
    assert_eq!(m.unknown_attributes.as_slice(), &[0x0042]);
    assert_eq!(a.selected(), None);
}

#[test]
fn responses_indications_and_garbage_are_dropped() {
    let mut a = agent(0);
    let from = addr("10.0.0.1:1000");
    for class in [Class::Indication, Class::Success, Class::Error] {
        let mut out = Vec::new();
        Builder::new(&mut out, class, METHOD_BINDING, &[1; 12]).fingerprint();
        assert_eq!(a.handle_stun(from, &out, 1), None);
    }
    assert_eq!(a.handle_stun(from, &[], 1), None);
    assert_eq!(a.handle_stun(from, &[0x16, 0xfe, 0xfd, 0, 0], 1), None);
    let mut good = Check::default().bytes();
    good[HEADER_OFFSET_IN_USERNAME] ^= 0x20; // corrupt: fingerprint fails
    assert_eq!(a.handle_stun(from, &good, 1), None);
    assert_eq!(a.stats().ignored, 3);
    assert_eq!(a.stats().malformed, 3);
}

const HEADER_OFFSET_IN_USERNAME: usize = 24;

#[test]
fn remotes_are_bounded() {
    let mut a = agent(0);
    let nominate = Check {
        use_candidate: true,
        ..Check::default()
    }
    .bytes();
    a.handle_stun(addr("10.0.0.1:1"), &nominate, 1).unwrap();
    for port in 2..200u16 {
        let from = SocketAddr::new("10.0.0.2".parse().unwrap(), port);
        a.handle_stun(from, &Check::default().bytes(), u64::from(port))
            .unwrap();
    }
    assert_eq!(a.remotes().count(), MAX_REMOTES);
    assert_eq!(a.stats().evicted, 198 - (MAX_REMOTES as u64 - 1));
    // The nominated, selected pair survived.
    assert_eq!(a.selected(), Some(Remote::udp(addr("10.0.0.1:1"))));
    assert!(a.is_valid_remote(Remote::udp(addr("10.0.0.1:1")), 300));
}

#[test]
fn ufrag_routing_without_state() {
    assert_eq!(ufrag_of(&Check::default().bytes()), Some("LoCa"));
    let only_local = Check {
        username: b"LoCa",
        ..Check::default()
    }
    .bytes();
    assert_eq!(ufrag_of(&only_local), Some("LoCa"));
    let empty = Check {
        username: b":x",
        ..Check::default()
    }
    .bytes();
    assert_eq!(ufrag_of(&empty), None);
    let not_utf8 = Check {
        username: b"\xff\xfe:x",
        ..Check::default()
    }
    .bytes();
    assert_eq!(ufrag_of(&not_utf8), None);
    assert_eq!(ufrag_of(b"\x80\x60rtp"), None);
}

#[test]
fn random_credentials_use_ice_chars() {
    let rng = SystemRandom::new();
    let a = Credentials::random(&rng).unwrap();
    let b = Credentials::random(&rng).unwrap();
    assert_eq!((a.ufrag.len(), a.pwd.len()), (UFRAG_LEN, PWD_LEN));
    assert!(a
        .ufrag
        .bytes()
        .chain(a.pwd.bytes())
        .all(|c| ICE_CHARS.contains(&c)));
    assert_ne!(a, b);
    assert!(!format!("{a:?}").contains(&a.pwd));
    let c = Credentials::random_with_prefix(&rng, "s3:é").unwrap();
    assert_eq!(&c.ufrag[..2], "s3");
    assert_eq!((c.ufrag.len(), c.pwd.len()), (2 + UFRAG_LEN, PWD_LEN));
}

#[test]
fn per_session_size() {
    // Memory per WebRTC viewer is budgeted (issue #12: <= 32 KiB); this shows growth.
    let a = agent(0);
    let heap = a.expected_username.capacity()
        + a.remote_ufrag.capacity()
        + a.remote_pwd.capacity()
        + a.local.ufrag.capacity()
        + a.local.pwd.capacity()
        + MAX_REMOTES * std::mem::size_of::<Pair>();
    eprintln!(
        "IceLite: {} bytes inline, <= {heap} bytes on the heap",
        std::mem::size_of::<IceLite>()
    );
    assert!(std::mem::size_of::<IceLite>() + heap < 2048);
}

#[test]
fn mutated_checks_never_panic() {
    let mut a = agent(0);
    let seeds = [
        Check::default().bytes(),
        Check {
            use_candidate: true,
            ..Check::default()
        }
        .bytes(),
    ];
    let mut x = 0x1234_5678u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for round in 0..5_000u64 {
        let mut buf = seeds[round as usize % 2].clone();
        let i = next() as usize % buf.len();
        buf[i] = next() as u8;
        let port = (next() % 40) as u16 + 1;
        let _ = a.handle_stun(addr("10.0.0.9:1"), &buf, round);
        let _ = a.handle_stun(
            SocketAddr::new("10.0.0.8".parse().unwrap(), port),
            &seeds[0],
            round,
        );
        let _ = a.poll(round);
    }
    assert!(a.remotes().count() <= MAX_REMOTES);
}

#[test]
fn host_candidate_lines() {
    let v4: IpAddr = "192.168.1.10".parse().unwrap();
    let v6: IpAddr = "2001:db8::10".parse().unwrap();
    let both = Ports {
        udp: Some(8555),
        tcp: Some(8555),
    };
    let lines = candidate_lines(&[
        (v4, both),
        (
            v6,
            Ports {
                udp: Some(9000),
                tcp: None,
            },
        ),
    ]);
    assert_eq!(lines.len(), 3);
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
    assert!(lines[0].starts_with("a=candidate:"));
    assert_eq!(
        fields[0][1..],
        [
            "1",
            "udp",
            "2130706431",
            "192.168.1.10",
            "8555",
            "typ",
            "host"
        ]
    );
    assert_eq!(
        fields[1][1..],
        [
            "1",
            "tcp",
            &(126u32 << 24 | ((4 << 13) | 0x1fff) << 8 | 255).to_string(),
            "192.168.1.10",
            "8555",
            "typ",
            "host",
            "tcptype",
            "passive"
        ]
    );
    assert_eq!(fields[2][4..6], ["2001:db8::10", "9000"]);
    let prio = |l: &Vec<&str>| l[3].parse::<u32>().unwrap();
    // Earlier higher; UDP above TCP.
    assert!(prio(&fields[0]) > prio(&fields[2]));
    assert!(prio(&fields[2]) > prio(&fields[1]));
    // Foundations differ by address and transport, and are stable.
    assert_ne!(fields[0][0], fields[1][0]);
    assert_eq!(candidate_lines(&[(v4, both)])[0], lines[0]);
    // Many entries keep distinct, decreasing priorities.
    let ps: Vec<u32> = (0..100).map(|i| host_priority(Transport::Udp, i)).collect();
    assert!(ps.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(
        host_priority(Transport::Tcp, 100_000),
        host_priority(Transport::Tcp, 0x1fff)
    );
}

fn iface(name: &str, ip: &str, loopback: bool) -> InterfaceAddr {
    InterfaceAddr {
        name: name.into(),
        ip: ip.parse().unwrap(),
        up: true,
        loopback,
    }
}

#[test]
fn filters_as_go2rtc() {
    let ifaces = [
        iface("lo", "127.0.0.1", true),
        iface("eno1", "192.168.1.10", false),
        iface("eno1", "fe80::1", false),
        iface("eno1", "2001:db8::10", false),
        iface("docker0", "172.17.0.1", false),
        iface("hassio", "172.30.32.1", false),
        iface("wg0", "10.8.0.1", false),
        InterfaceAddr {
            up: false,
            ..iface("eth9", "10.9.9.9", false)
        },
    ];
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let none = Filters::default();
    assert_eq!(
        host_ips(&ifaces, &none),
        [ip("192.168.1.10"), ip("2001:db8::10"), ip("10.8.0.1")]
    );
    let f = Filters {
        loopback: true,
        interfaces: Some(vec!["lo".into(), "eno1".into()]),
        ..Filters::default()
    };
    assert_eq!(
        host_ips(&ifaces, &f),
        [ip("127.0.0.1"), ip("192.168.1.10"), ip("2001:db8::10")]
    );
    let f = Filters {
        ips: Some(vec!["2001:db8:0::10".into()]),
        ..Filters::default()
    };
    assert_eq!(host_ips(&ifaces, &f), [ip("2001:db8::10")]);

    // networks and candidates apply to gathered candidates.
    let listen = Ports {
        udp: Some(8555),
        tcp: Some(8555),
    };
    let f = Filters {
        networks: Some(vec!["udp4".into(), "tcp6".into()]),
        ..Filters::default()
    };
    let lines = gather(&[], &host_ips(&ifaces, &none), listen, &f);
    let kinds: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[2], f[4])
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("udp", "192.168.1.10"),
            ("tcp", "2001:db8::10"),
            ("udp", "10.8.0.1")
        ]
    );
    let f = Filters {
        candidates: Some(vec!["10.8.0.1".into()]),
        ..Filters::default()
    };
    let configured = [
        (
            ip("203.0.113.5"),
            Ports {
                udp: Some(18555),
                tcp: Some(18555),
            },
        ),
        (ip("172.20.0.2"), listen),
    ];
    let lines = gather(&configured, &host_ips(&ifaces, &none), listen, &f);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].contains(" 203.0.113.5 18555 "));
    assert!(lines[2].contains(" 10.8.0.1 8555 "));
    assert!(!lines.iter().any(|l| l.contains("172.20.")));
    // Docker range edges.
    assert!(is_docker_range(ip("172.16.0.0")) && is_docker_range(ip("172.31.255.255")));
    assert!(!is_docker_range(ip("172.15.255.255")) && !is_docker_range(ip("172.32.0.0")));

    assert_eq!(
        Filters {
            udp_ports: Some(vec![50000, 50100]),
            ..Filters::default()
        }
        .udp_port_range(),
        Some(50000..=50100)
    );
    for bad in [vec![], vec![1], vec![5, 4], vec![0, 10], vec![1, 2, 3]] {
        let f = Filters {
            udp_ports: Some(bad),
            ..Filters::default()
        };
        assert_eq!(f.udp_port_range(), None);
    }
}

#[test]
fn filters_deserialize_from_go2rtc_yaml() {
    let f: Filters = serde_yaml_ng::from_str(
        "candidates: [ 192.168.1.123 ]\nloopback: true\nnetworks: [ udp4, udp6, tcp4, tcp6 ]\ninterfaces: [ eno1 ]\nips: [ 192.168.1.123 ]\nudp_ports: [ 50000, 50100 ]\n",
    )
    .unwrap();
    assert!(f.loopback);
    assert_eq!(f.interfaces.as_deref(), Some(&["eno1".to_string()][..]));
    assert_eq!(f.udp_port_range(), Some(50000..=50100));
    let empty: Filters = serde_yaml_ng::from_str("candidates: []").unwrap();
    assert_eq!(empty.candidates, Some(vec![]));
    assert!(!empty.allows_candidate("192.168.1.2".parse().unwrap(), Transport::Udp));
}
