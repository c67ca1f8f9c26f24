//! The same swarm against several servers, in turns (A B C A B C ...), and the ratios.

use crate::peers::{self, PeerKind, PeerOpts};
use crate::swarm::{self, SwarmParams, SwarmResult};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Default)]
pub struct PeerSummary {
    pub runs: usize,
    pub delivered_mbps: f64,
    pub loss_pct: f64,
    pub server_cpu_pct: f64,
    pub server_cpu_s_per_gbit: f64,
    pub rss_per_viewer_kib: f64,
    pub rss_per_stream_kib: f64,
    pub rss_per_viewer_released_kib: Option<f64>,
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    pub latency_max_us: Option<f64>,
    pub connect_failures: u64,
    pub gen_cpu_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareResult {
    pub kind: &'static str,
    pub peers: Vec<String>,
    pub rounds: usize,
    /// `synthetic` or `ffmpeg` (real publishers), the same for every peer.
    pub publisher_kind: &'static str,
    pub source: String,
    /// The floor's write tick (0 = once per read from the publisher).
    pub floor_tick_ms: u64,
    pub summary: BTreeMap<String, PeerSummary>,
    /// "corecast/<peer>" → metric → ratio (of medians).
    pub ratios: BTreeMap<String, BTreeMap<String, Option<f64>>>,
    pub runs: Vec<SwarmResult>,
    pub errors: Vec<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_opt(v: Vec<Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.into_iter().flatten().collect();
    (!v.is_empty()).then(|| median(v))
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn run(
    peers_list: &[PeerKind],
    opts: &PeerOpts,
    p: &SwarmParams,
    rounds: usize,
    mut progress: impl FnMut(&SwarmResult),
) -> CompareResult {
    let mut runs: Vec<SwarmResult> = Vec::new();
    let mut errors = Vec::new();
    for round in 0..rounds.max(1) {
        for &k in peers_list {
            let names = p.stream_names();
            let result = peers::start(k, opts, &names).and_then(|mut server| {
                let r = swarm::run(&server, p);
                server.stop();
                r
            });
            match result {
                Ok(r) => {
                    progress(&r);
                    runs.push(r);
                }
                Err(e) => errors.push(format!("round {} {}: {e}", round + 1, k.name())),
            }
            // Let TIME_WAIT sockets and the previous server's memory go.
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    }
    let mut c = summarize(peers_list, p, rounds, runs, errors);
    c.floor_tick_ms = opts.floor_tick_ms;
    c
}

/// Per-peer medians and corecast/peer ratios of runs made in turns.
pub fn summarize(
    peers_list: &[PeerKind],
    p: &SwarmParams,
    rounds: usize,
    runs: Vec<SwarmResult>,
    errors: Vec<String>,
) -> CompareResult {
    let mut summary = BTreeMap::new();
    for &k in peers_list {
        let rs: Vec<&SwarmResult> = runs.iter().filter(|r| r.server == k.name()).collect();
        if rs.is_empty() {
            continue;
        }
        let m = |f: &dyn Fn(&SwarmResult) -> f64| median(rs.iter().map(|r| f(r)).collect());
        summary.insert(
            k.name().to_string(),
            PeerSummary {
                runs: rs.len(),
                delivered_mbps: r3(m(&|r| r.delivered_mbps)),
                loss_pct: r3(m(&|r| r.loss_pct)),
                server_cpu_pct: r3(m(&|r| r.server_cpu_pct)),
                server_cpu_s_per_gbit: r3(m(&|r| r.server_cpu_s_per_gbit)),
                rss_per_viewer_kib: r3(m(&|r| r.rss_per_viewer_kib)),
                rss_per_stream_kib: r3(m(&|r| r.rss_per_stream_kib)),
                rss_per_viewer_released_kib: median_opt(
                    rs.iter().map(|r| r.rss_per_viewer_released_kib).collect(),
                ),
                latency_p50_us: median_opt(rs.iter().map(|r| r.latency_us.p50).collect()),
                latency_p99_us: median_opt(rs.iter().map(|r| r.latency_us.p99).collect()),
                latency_max_us: median_opt(rs.iter().map(|r| r.latency_us.max).collect()),
                connect_failures: rs.iter().map(|r| r.connect_failures).sum(),
                gen_cpu_pct: r3(m(&|r| r.gen_cpu_pct)),
            },
        );
    }
    let mut ratios = BTreeMap::new();
    if let Some(cc) = summary.get(PeerKind::Corecast.name()) {
        for (name, s) in &summary {
            if name == PeerKind::Corecast.name() {
                continue;
            }
            let ratio = |a: f64, b: f64| (b > 0.0).then(|| r3(a / b));
            let ratio_o = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => Some(r3(a / b)),
                _ => None,
            };
            let mut m = BTreeMap::new();
            m.insert(
                "server_cpu_s_per_gbit".to_string(),
                ratio(cc.server_cpu_s_per_gbit, s.server_cpu_s_per_gbit),
            );
            m.insert(
                "server_cpu_pct".to_string(),
                ratio(cc.server_cpu_pct, s.server_cpu_pct),
            );
            m.insert(
                "rss_per_viewer_kib".to_string(),
                ratio(cc.rss_per_viewer_kib, s.rss_per_viewer_kib),
            );
            m.insert(
                "rss_per_viewer_released_kib".to_string(),
                ratio_o(
                    cc.rss_per_viewer_released_kib,
                    s.rss_per_viewer_released_kib,
                ),
            );
            m.insert(
                "latency_p99_us".to_string(),
                ratio_o(cc.latency_p99_us, s.latency_p99_us),
            );
            ratios.insert(format!("corecast/{name}"), m);
        }
    }
    CompareResult {
        kind: "compare",
        peers: peers_list.iter().map(|k| k.name().to_string()).collect(),
        rounds,
        publisher_kind: p.publisher_kind(),
        source: runs.first().map(|r| r.source.clone()).unwrap_or_default(),
        floor_tick_ms: 0,
        summary,
        ratios,
        runs,
        errors,
    }
}

pub fn table(c: &CompareResult) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "  publishers: {} ({}); floor writes {}\n",
        c.publisher_kind,
        c.source,
        if c.floor_tick_ms == 0 {
            "once per read from the publisher".to_string()
        } else {
            format!("each viewer once per {} ms", c.floor_tick_ms)
        }
    ));
    s.push_str(&format!(
        "  {:<16} {:>5} {:>9} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>7}\n",
        "server",
        "run",
        "Mbit/s",
        "loss%",
        "srvCPU%",
        "CPU-s/Gbit",
        "KiB/view",
        "KiB/strm",
        "p50 us",
        "p99 us",
        "fails",
        "genCPU%"
    ));
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let o = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.0}"));
    for r in &c.runs {
        let n = counts.entry(r.server.as_str()).or_default();
        *n += 1;
        s.push_str(&format!(
            "  {:<16} {:>5} {:>9.2} {:>8.4} {:>8.1} {:>10.4} {:>9.2} {:>9.0} {:>9} {:>9} {:>6} {:>7.1}\n",
            r.server,
            n,
            r.delivered_mbps,
            r.loss_pct,
            r.server_cpu_pct,
            r.server_cpu_s_per_gbit,
            r.rss_per_viewer_kib,
            r.rss_per_stream_kib,
            o(r.latency_us.p50),
            o(r.latency_us.p99),
            r.connect_failures,
            r.gen_cpu_pct
        ));
    }
    s.push_str("  medians:\n");
    for (name, m) in &c.summary {
        s.push_str(&format!(
            "  {:<16} {:>5} {:>9.2} {:>8.4} {:>8.1} {:>10.4} {:>9.2} {:>9.0} {:>9} {:>9} {:>6} {:>7.1}\n",
            name,
            m.runs,
            m.delivered_mbps,
            m.loss_pct,
            m.server_cpu_pct,
            m.server_cpu_s_per_gbit,
            m.rss_per_viewer_kib,
            m.rss_per_stream_kib,
            o(m.latency_p50_us),
            o(m.latency_p99_us),
            m.connect_failures,
            m.gen_cpu_pct
        ));
    }
    s.push_str("  ratios (corecast / peer, medians; < 1 means corecast is cheaper/faster):\n");
    for (name, m) in &c.ratios {
        let f = |k: &str| {
            m.get(k)
                .copied()
                .flatten()
                .map_or("-".into(), |x| format!("{x:.3}"))
        };
        s.push_str(&format!(
            "  {:<34} CPU/Gbit {}  CPU% {}  RSS/viewer {}  p99 latency {}\n",
            name,
            f("server_cpu_s_per_gbit"),
            f("server_cpu_pct"),
            f("rss_per_viewer_kib"),
            f("latency_p99_us")
        ));
    }
    for e in &c.errors {
        s.push_str(&format!("  error: {e}\n"));
    }
    s
}
