//! The ffmpeg hardware probe (go2rtc's `internal/ffmpeg/hardware`): one short encode of a
//! test picture per accelerator, run on a blocking thread (never on a shard's executor),
//! once per process and ffmpeg binary; concurrent callers wait for the same run. It serves
//! `#hardware` without an engine and `GET /api/ffmpeg/hardware`.

use crate::api::Reply;
use corecast::config::Config;
use corecast::ffmpeg::{hw_checks, HwCheck, HwResult};
use serde::Serialize;
use std::collections::HashSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Longest one check may run: the encode is 1 s of video; a stuck driver must not hold
/// the probe (and the sources waiting for it) for long.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest error text kept from ffmpeg.
const MAX_REASON: usize = 200;

/// The probe's result for one binary. Holding the lock while probing makes concurrent
/// callers share one run.
static PROBE: Mutex<Option<(String, Arc<Vec<HwResult>>)>> = Mutex::new(None);

/// (stream, note) pairs already logged, so a restarting source does not repeat itself.
static LOGGED: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

/// The probe's results for the configured ffmpeg, running it off the executor the first
/// time. A binary that `exec.allow_paths` does not admit is not run.
pub async fn probe(config: &Config) -> Arc<Vec<HwResult>> {
    let bin = config.ffmpeg.bin.as_str();
    if !config.exec.allows(bin) {
        let why = format!("ffmpeg binary `{bin}` is not in exec.allow_paths; nothing was run");
        return Arc::new(
            hw_checks()
                .iter()
                .map(|c| HwResult {
                    engine: c.engine,
                    codec: c.codec,
                    error: Some(why.clone()),
                })
                .collect(),
        );
    }
    // Cached: no thread hop. `try_lock` keeps the executor from waiting on a running probe.
    if let Ok(g) = PROBE.try_lock() {
        if let Some((b, r)) = &*g {
            if b == bin {
                return r.clone();
            }
        }
    }
    let bin = bin.to_string();
    glommio::executor()
        .spawn_blocking(move || probe_blocking(&bin))
        .await
}

fn probe_blocking(bin: &str) -> Arc<Vec<HwResult>> {
    let mut g = PROBE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((b, r)) = &*g {
        if b == bin {
            return r.clone();
        }
    }
    let started = Instant::now();
    let results: Vec<HwResult> = std::thread::scope(|s| {
        let handles: Vec<_> = hw_checks()
            .iter()
            .map(|c| s.spawn(move || run_check(bin, c, CHECK_TIMEOUT)))
            .collect();
        handles
            .into_iter()
            .zip(hw_checks())
            .map(|(h, c)| HwResult {
                engine: c.engine,
                codec: c.codec,
                error: h
                    .join()
                    .unwrap_or_else(|_| Some("the check panicked".into())),
            })
            .collect()
    });
    let summary: Vec<String> = results
        .iter()
        .map(|r| format!("{}/{}: {}", r.codec, r.engine, r.api_name()))
        .collect();
    info!(bin, took_ms = started.elapsed().as_millis() as u64, results = %summary.join("; "), "ffmpeg hardware probe");
    let r = Arc::new(results);
    *g = Some((bin.to_string(), r.clone()));
    r
}

/// Runs one check; None when it encoded, else why not.
fn run_check(bin: &str, c: &HwCheck, timeout: Duration) -> Option<String> {
    let mut child = match Command::new(bin)
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(c.args.split(' '))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot run `{bin}`: {e}")),
    };
    let until = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Some(format!("no answer within {timeout:?} (killed)"));
            }
            Err(e) => return Some(format!("cannot wait for `{bin}`: {e}")),
        }
    };
    if status.success() {
        return None;
    }
    // `-v error` keeps stderr to a few lines, well under a pipe's buffer.
    let mut err = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.by_ref().take(64 * 1024).read_to_end(&mut err);
    }
    let text = String::from_utf8_lossy(&err);
    // ffmpeg's last line for a failed device ("Error parsing global options: ...") says
    // less than the one before it ("Failed to set value 'vaapi' for option ...").
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Error parsing global options"))
        .or_else(|| text.lines().map(str::trim).rfind(|l| !l.is_empty()));
    Some(match last {
        Some(l) => l.chars().take(MAX_REASON).collect(),
        None => format!("ffmpeg exited with {status}"),
    })
}

/// Logs why `#hardware` stayed in software, once per stream and reason.
pub fn log_note(stream: &str, note: &str) {
    let mut g = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    let set = g.get_or_insert_with(HashSet::new);
    // Bounded: a stream list is bounded by the config, but API-made streams come and go.
    if set.len() > 4096 {
        set.clear();
    }
    if set.insert((stream.to_string(), note.to_string())) {
        warn!(stream, "ffmpeg: stream {stream}: {note}");
    }
}

/// go2rtc's `api.Source` (only the fields this answer uses).
#[derive(Serialize)]
struct Source {
    name: String,
    url: String,
}

#[derive(Serialize)]
struct Sources {
    sources: Vec<Source>,
}

/// `GET /api/ffmpeg/hardware`: go2rtc's answer, `{"sources":[{"name":"OK" or the error,
/// "url":"ffmpeg:...#video=h264#hardware=vaapi"}, ...]}`.
pub async fn api(config: &Config) -> Reply {
    let results = probe(config).await;
    let body = Sources {
        sources: results
            .iter()
            .map(|r| Source {
                name: r.api_name().to_string(),
                url: r.api_url(),
            })
            .collect(),
    };
    match simd_json::to_vec(&body) {
        Ok(body) => Reply {
            status: 200,
            ctype: "application/json",
            body,
        },
        Err(e) => Reply::text(500, format!("json: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const CHECK: HwCheck = HwCheck {
        engine: "vaapi",
        codec: "h264",
        args: "-f lavfi -i testsrc2 -t 1 -c h264_vaapi -f null -",
    };

    fn script(name: &str, body: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("corecast-hw-{}-{name}", std::process::id()));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn a_check_reports_the_telling_line_a_timeout_or_a_missing_binary() {
        let fail = script(
            "fail",
            "echo 'Failed to set value vaapi for option init_hw_device: No device' >&2\n\
             echo 'Error parsing global options: No device' >&2\nexit 1",
        );
        let e = run_check(fail.to_str().unwrap(), &CHECK, Duration::from_secs(5));
        assert_eq!(
            e.as_deref(),
            Some("Failed to set value vaapi for option init_hw_device: No device")
        );
        let hang = script("hang", "exec sleep 30");
        let started = Instant::now();
        let e = run_check(hang.to_str().unwrap(), &CHECK, Duration::from_millis(200)).unwrap();
        assert!(
            e.contains("killed") && started.elapsed() < Duration::from_secs(5),
            "{e}"
        );
        let ok = script("ok", "exit 0");
        assert_eq!(
            run_check(ok.to_str().unwrap(), &CHECK, Duration::from_secs(5)),
            None
        );
        let e = run_check("/nonexistent/ffmpeg", &CHECK, Duration::from_secs(1)).unwrap();
        assert!(e.starts_with("cannot run `/nonexistent/ffmpeg`"), "{e}");
        for p in [fail, hang, ok] {
            let _ = std::fs::remove_file(p);
        }
    }
}
