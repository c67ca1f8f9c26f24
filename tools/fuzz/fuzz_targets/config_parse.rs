//! Arbitrary text through the config parser: it must never panic, and whatever it accepts
//! must respect the limits validation promises.
#![no_main]

use corecast::config;
use libfuzzer_sys::fuzz_target;

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = match config::parse(&text, "fuzz") {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(c.streams.len() <= config::MAX_STREAMS);
    let mut names = std::collections::HashSet::new();
    for s in &c.streams {
        assert!(!s.name.is_empty());
        assert!(
            names.insert(s.name.as_str()),
            "duplicate stream {:?}",
            s.name
        );
        assert!(s.sources.iter().all(|src| !src.is_empty()));
    }
    assert!(c
        .shards
        .is_none_or(|n| (1..=config::MAX_SHARDS).contains(&n)));
    assert!((config::MIN_RING_PACKETS..=config::MAX_RING_PACKETS).contains(&c.rtsp.ring_packets));
    assert!(c.rtsp.udp_rtp_port % 2 == 0 && c.rtsp.udp_rtp_port != 0);
    assert!(LEVELS.contains(&c.log.level.as_str()));
    for (module, level) in &c.log.modules {
        assert!(module
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        assert!(LEVELS.contains(&level.as_str()));
    }
    let _ = c.log.filter_directives();
});
