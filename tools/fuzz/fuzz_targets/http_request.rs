//! Arbitrary bytes into the HTTP request parser. Pipelined requests are taken off the front
//! one by one; each must consume bytes, stay within the limits, and a strict prefix of it
//! (cut where the first byte says) must only ask for more. Odd first bytes use tiny limits so
//! every limit is reached with short inputs.
#![no_main]

use corecast::http::{parse_request, Limits, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let limits = if first & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_head: 256,
            max_headers: 4,
            max_target: 64,
            max_body: 128,
        }
    };
    let mut rest = input;
    loop {
        match parse_request(rest, &limits) {
            Ok(Some((req, consumed))) => {
                assert!(consumed > 0, "a request must consume bytes");
                assert!(consumed <= rest.len());
                check_request(&req, consumed, &limits);
                // The request alone, without what is pipelined after it, parses the same.
                let (again, n) = parse_request(&rest[..consumed], &limits)
                    .expect("same bytes, same answer")
                    .expect("complete");
                assert_eq!(n, consumed);
                assert_eq!(again.target, req.target);
                assert_eq!(again.body, req.body);
                // A strict prefix of a valid request is never an error.
                let cut = usize::from(first) * consumed / 256;
                let prefix = parse_request(&rest[..cut], &limits);
                assert!(
                    matches!(prefix, Ok(None)),
                    "prefix {cut}/{consumed}: {prefix:?}"
                );
                rest = &rest[consumed..];
            }
            Ok(None) => {
                // Waiting is only allowed for a head within max_head or a body within max_body.
                assert!(rest.len() < limits.max_head + limits.max_body);
                break;
            }
            Err(e) => {
                assert!(
                    matches!(e.status(), 400 | 413 | 414 | 431 | 501 | 505),
                    "{e:?}"
                );
                break;
            }
        }
    }
});

fn check_request(req: &Request, consumed: usize, limits: &Limits) {
    assert!(req.version <= 1);
    assert!(req.target.len() <= limits.max_target);
    assert!(req.headers.len() <= limits.max_headers);
    assert!(req.body.len() <= limits.max_body);
    assert!(req.body.len() < consumed);
    assert!(
        req.path.starts_with('/') || (req.path == "*" && req.method == "OPTIONS"),
        "{req:?}"
    );
    assert!(!req.path.chars().any(char::is_control));
    assert!(!req
        .target
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' '));
    assert!(req.header("Transfer-Encoding").is_none());
    let lengths: Vec<_> = req
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .collect();
    match lengths.as_slice() {
        [] => assert!(req.body.is_empty()),
        [(_, v)] => assert_eq!(v.parse::<usize>().ok(), Some(req.body.len())),
        more => panic!("{} Content-Length headers accepted", more.len()),
    }
    for (k, _) in &req.query {
        let _ = req.query(k);
        let _ = req.query_all(k);
    }
    let _ = req.keep_alive();
    if let Some(key) = req.websocket_key() {
        assert_eq!(key.len(), 24);
        let _ = corecast::http::response::websocket_accept(key, &[]);
    }
}
