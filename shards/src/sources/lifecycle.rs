//! Pull sources (`streams:` entries): started on the stream's owner shard when the first
//! reader arrives, stopped a while after the last one leaves (go2rtc behaviour; `preload:`
//! keeps them on), restarted with capped backoff when they fail. The failure reason is kept
//! in the registry so `/api/streams` shows it.
//!
//! Kinds: `rtsp://`, `rtsps://`/`rtspx://` (see `pull`), `exec:CMD` (a program that either
//! publishes to us over RTSP via `{output}` or writes MPEG-TS / Annex-B / MJPEG to stdout),
//! and `ffmpeg:INPUT#params` (an exec built from go2rtc's templates).

use crate::core::hub::{CtlMsg, RoomMsg, Shard};
use crate::sources::pull::{Role, SecondaryState};
use crate::sources::SourceError;
use corecast::ffmpeg::HwResult;
use corecast::filter::Filter;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How often a source task looks at its stop flag while it sleeps between attempts.
const CHECK: Duration = Duration::from_millis(250);
/// A source is not stopped for idleness during its first seconds: the reader that asked for
/// it is still between DESCRIBE and PLAY.
const START_GRACE: Duration = Duration::from_secs(3);
/// How long a reader waits for a source to come up.
const ENSURE_TIMEOUT: Duration = Duration::from_secs(15);

thread_local! {
    /// Sources running on this shard (one shard per thread), by stream name.
    static RUNNING: RefCell<HashMap<String, Rc<Running>>> = RefCell::new(HashMap::new());
}

fn running_of(name: &str) -> Option<Rc<Running>> {
    RUNNING.with(|r| r.borrow().get(name).cloned())
}

/// Shared between a source's task and its watcher.
pub struct Running {
    /// Set when the source must stop (idle, removed).
    pub stop: Cell<bool>,
    /// Registry id of the stream it feeds: a stream deleted and re-created is another one.
    stream_id: crate::core::registry::StreamId,
    started: Instant,
    sources: Vec<String>,
    /// Which of the stream's sources have been dialled (index 0 is the primary).
    dialled: RefCell<Vec<bool>>,
    extending: Cell<bool>,
    /// Since when no reader wants the source (None while one does).
    idle_since: Cell<Option<Instant>>,
    /// An idle timer is armed.
    idle_timer: Cell<bool>,
}

impl Running {
    pub fn stopped(&self) -> bool {
        self.stop.get()
    }
}

/// Makes sure the stream's source is running before a reader DESCRIBEs it. Returns at once
/// for streams without sources or with a live producer.
pub async fn ensure(
    shard: &Rc<Shard>,
    name: &str,
    query: Option<&str>,
    user_agent: &str,
) -> Result<(), SourceError> {
    start_primary(shard, name).await?;
    // Our own ffmpeg reading this stream (an `ffmpeg:NAME#...` source) takes what is there.
    if user_agent == INTERNAL_UA {
        return Ok(());
    }
    let filter = Filter::parse(query, shard.config.rtsp.default_query.as_deref());
    let (owner, more, unsatisfied) = {
        let g = shard.registry.lock();
        match g.streams.get(name) {
            Some(e) => (
                e.owner,
                e.sources.len() > 1,
                e.sdp.as_ref().is_some_and(|sdp| filter.unsatisfied(sdp)),
            ),
            None => return Ok(()),
        }
    };
    if !more || !unsatisfied {
        return Ok(());
    }
    // go2rtc: later sources are dialled only when a reader wants what earlier ones lack.
    let q = query.map(str::to_string);
    if owner == shard.id {
        extend(shard, name, q);
    } else {
        shard.send_ctl(
            owner,
            CtlMsg::Room(RoomMsg::ExtendSource {
                name: name.into(),
                query: q,
            }),
        );
    }
    let deadline = Instant::now() + EXTEND_TIMEOUT;
    while Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(100)).await;
        let done = {
            let g = shard.registry.lock();
            g.streams.get(name).is_none_or(|e| {
                e.sources_exhausted || e.sdp.as_ref().is_none_or(|sdp| !filter.unsatisfied(sdp))
            })
        };
        if done {
            break;
        }
    }
    Ok(())
}

/// The user agent of our own ffmpeg when it reads a stream of ours (see the templates).
pub const INTERNAL_UA: &str = "corecast/ffmpeg";
/// How long a reader waits for later sources to add what it asked for.
const EXTEND_TIMEOUT: Duration = Duration::from_secs(8);

/// Dials the stream's later sources, in order, until `query`'s wants are met.
pub fn extend(shard: &Rc<Shard>, name: &str, query: Option<String>) {
    let Some(running) = running_of(name) else {
        return;
    };
    if running.extending.replace(true) {
        return;
    }
    let (sh, n) = (shard.clone(), name.to_string());
    glommio::spawn_local(async move {
        let filter = Filter::parse(query.as_deref(), sh.config.rtsp.default_query.as_deref());
        for i in 1..running.sources.len() {
            if running.stopped() {
                break;
            }
            if running.dialled.borrow()[i] {
                continue;
            }
            let satisfied = {
                let g = sh.registry.lock();
                g.streams
                    .get(&n)
                    .and_then(|e| e.sdp.as_ref())
                    .is_none_or(|sdp| !filter.unsatisfied(sdp))
            };
            if satisfied {
                break;
            }
            running.dialled.borrow_mut()[i] = true;
            let state = Rc::new(Cell::new(SecondaryState::Connecting));
            let (sh2, n2, r2, st2, f2) = (
                sh.clone(),
                n.clone(),
                running.clone(),
                state.clone(),
                filter.clone(),
            );
            glommio::spawn_local(async move { secondary(sh2, n2, i, r2, f2, st2).await }).detach();
            let until = Instant::now() + EXTEND_TIMEOUT;
            while state.get() == SecondaryState::Connecting && Instant::now() < until {
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
        if running.dialled.borrow().iter().all(|d| *d) {
            if let Some(e) = sh.registry.lock().streams.get_mut(&n) {
                e.sources_exhausted = true;
            }
        }
        running.extending.set(false);
    })
    .detach();
}

/// A later source feeding extra tracks into the stream, reconnecting until stopped.
async fn secondary(
    shard: Rc<Shard>,
    name: String,
    index: usize,
    running: Rc<Running>,
    wants: Filter,
    state: Rc<Cell<SecondaryState>>,
) {
    let src = running.sources[index].clone();
    info!(stream = %name, source = %redact(&src), "dialling a later source for missing tracks");
    // Programs that publish (ffmpeg:, exec with {output}) publish to a hidden stream that
    // we then pull like a camera.
    let mut child: Option<ChildGuard> = None;
    let hw = hardware_probe(&shard, &src).await;
    let url = match publisher_command(&shard, &name, &src, index, hw.as_deref().map(Vec::as_slice))
    {
        Ok(Some((words, url))) => match spawn_quiet(&shard, &name, &words) {
            Ok(c) => {
                child = Some(c);
                url
            }
            Err(e) => {
                warn!(stream = %name, error = %e, "later source failed to start");
                state.set(SecondaryState::Useless);
                return;
            }
        },
        Ok(None) => src.clone(),
        Err(e) => {
            warn!(stream = %name, error = %e, "later source unusable");
            state.set(SecondaryState::Useless);
            return;
        }
    };
    let added = Cell::new(None);
    let mut backoff = Duration::from_millis(300);
    while !running.stopped() {
        let role = Role::Secondary {
            wants: &wants,
            added: &added,
            state: &state,
        };
        let r = crate::sources::pull::run_feed(&shard, &name, &url, &running, role).await;
        if state.get() == SecondaryState::Useless || running.stopped() {
            break;
        }
        if let Err(e) = r {
            debug!(stream = %name, source = %redact(&src), error = %e, "later source retry");
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    drop(child);
}

/// For `ffmpeg:` and `exec:` sources that publish: the command publishing to a hidden
/// stream and the URL to pull it from. None for other sources.
fn publisher_command(
    shard: &Shard,
    name: &str,
    src: &str,
    index: usize,
    hardware: Option<&[HwResult]>,
) -> Result<Option<(Vec<String>, String)>, SourceError> {
    let hidden = helper_name(name, index);
    if matches!(scheme(src), "ffmpeg") || (scheme(src) == "exec" && src.contains("{output}")) {
        shard.registry.declare_helper(&hidden, name);
    }
    match scheme(src) {
        "ffmpeg" => {
            // go2rtc's idiom `cam: [rtsp://..., ffmpeg:cam#audio=opus]`: a later source may
            // read its own stream (the earlier sources' tracks).
            let (mut words, _) =
                ffmpeg_command(shard, name, &src["ffmpeg:".len()..], hardware, true)?;
            let url = output_url(shard, &hidden)?;
            let own = output_url(shard, name)?;
            if let Some(last) = words.last_mut() {
                if *last == own {
                    *last = url.clone();
                }
            }
            Ok(Some((words, url)))
        }
        "exec" if src.contains("{output}") => {
            let url = output_url(shard, &hidden)?;
            let words = corecast::ffmpeg::split_command(&src["exec:".len()..])
                .map_err(|e| SourceError::Command(e.to_string()))?
                .into_iter()
                .map(|w| w.replace("{output}", &url))
                .collect();
            Ok(Some((words, url)))
        }
        "exec" => Err(SourceError::LaterSource),
        _ => Ok(None),
    }
}

/// `exec.allow_paths`: the one gate every source program passes before it is spawned.
fn check_allowed(shard: &Shard, name: &str, bin: &str) -> Result<(), SourceError> {
    if shard.config.exec.allows(bin) {
        return Ok(());
    }
    Err(SourceError::NotAllowed {
        stream: name.to_string(),
        program: bin.to_string(),
        allowed: shard
            .config
            .exec
            .allow_paths
            .as_deref()
            .unwrap_or_default()
            .join(", "),
    })
}

/// The helper stream a later publishing source of `name` (its `index`th) publishes to.
fn helper_name(name: &str, index: usize) -> String {
    format!("{name}~{index}")
}

fn spawn_quiet(shard: &Shard, name: &str, words: &[String]) -> Result<ChildGuard, SourceError> {
    let (bin, args) = words
        .split_first()
        .ok_or_else(|| SourceError::Command("empty command".into()))?;
    check_allowed(shard, name, bin)?;
    Command::new(bin)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(ChildGuard)
        .map_err(|e| SourceError::Spawn {
            program: bin.clone(),
            reason: e.to_string(),
        })
}

/// Makes the stream's first source produce (a no-op when it already does).
async fn start_primary(shard: &Rc<Shard>, name: &str) -> Result<(), SourceError> {
    let (owner, needs) = {
        let g = shard.registry.lock();
        match g.streams.get(name) {
            Some(e) => (e.owner, !e.sources.is_empty() && e.producer.is_none()),
            None => return Ok(()),
        }
    };
    if !needs {
        return Ok(());
    }
    if owner == shard.id {
        start(shard, name);
    } else {
        shard.send_ctl(
            owner,
            CtlMsg::Room(RoomMsg::StartSource { name: name.into() }),
        );
    }
    let deadline = Instant::now() + ENSURE_TIMEOUT;
    let mut error_seen_at: Option<Instant> = None;
    loop {
        glommio::timer::sleep(Duration::from_millis(50)).await;
        let (live, error) = {
            let g = shard.registry.lock();
            match g.streams.get(name) {
                Some(e) => (e.producer.is_some() && e.sdp.is_some(), e.error.clone()),
                None => return Err(SourceError::Removed),
            }
        };
        if live {
            return Ok(());
        }
        // A source that already failed gets a short while to recover (a reconnect), then
        // the reader is told why.
        if let Some(err) = error {
            let at = *error_seen_at.get_or_insert_with(Instant::now);
            if at.elapsed() > Duration::from_secs(3) {
                return Err(SourceError::Earlier(err));
            }
        }
        if Instant::now() > deadline {
            return Err(SourceError::StartTimeout);
        }
    }
}

/// Starts the source of `name` on this (owner) shard if it is not running.
pub fn start(shard: &Rc<Shard>, name: &str) {
    if running_of(name).is_some() {
        return;
    }
    let (sources, stream_id) = {
        let g = shard.registry.lock();
        match g.streams.get(name) {
            // Built-in streams (the demo) run on their own.
            Some(e) if !e.sources.is_empty() && !e.sources[0].starts_with("internal:") => {
                (e.sources.clone(), e.id)
            }
            _ => return,
        }
    };
    let mut dialled = vec![false; sources.len()];
    dialled[0] = true;
    let running = Rc::new(Running {
        stop: Cell::new(false),
        stream_id,
        started: Instant::now(),
        sources: sources.clone(),
        dialled: RefCell::new(dialled),
        extending: Cell::new(false),
        idle_since: Cell::new(Some(Instant::now())),
        idle_timer: Cell::new(false),
    });
    RUNNING.with(|r| r.borrow_mut().insert(name.to_string(), running.clone()));
    info!(stream = name, source = %redact(&sources[0]), "starting source");
    // The reader that asked is between DESCRIBE and PLAY: the idle timer gives it
    // START_GRACE; if it never plays, the source stops by itself.
    arm_idle_timer(shard, name, &running);
    let (sh, n) = (shard.clone(), name.to_string());
    glommio::spawn_local(async move { run(sh, n, sources, running).await }).detach();
}

/// Whether a running source is still wanted, read once from the registry.
enum Wanted {
    Yes,
    No,
    /// Removed, or its sources replaced through the API: the next reader starts the new.
    Gone,
}

fn wanted(shard: &Shard, name: &str, running: &Running) -> Wanted {
    let g = shard.registry.lock();
    match g.streams.get(name) {
        Some(e) if e.sources == running.sources && e.id == running.stream_id => {
            // Our own ffmpeg reading this stream does not keep it alive.
            let readers = e
                .consumers
                .iter()
                .filter(|c| c.user_agent != INTERNAL_UA)
                .count();
            if readers > 0 || e.preload.is_some() {
                Wanted::Yes
            } else {
                Wanted::No
            }
        }
        _ => Wanted::Gone,
    }
}

/// Who wants the stream changed (see `Shard::wanted_changed`): a source no reader wants
/// any more stops after `sources.idle_timeout`; one whose stream went away stops now.
pub fn reevaluate(shard: &Rc<Shard>, name: &str) {
    let Some(running) = running_of(name) else {
        return;
    };
    match wanted(shard, name, &running) {
        Wanted::Gone => {
            info!(stream = %name, "stream removed or its sources changed: stopping source");
            running.stop.set(true);
        }
        Wanted::Yes => running.idle_since.set(None),
        Wanted::No => {
            if running.idle_since.get().is_none() {
                running.idle_since.set(Some(Instant::now()));
            }
            arm_idle_timer(shard, name, &running);
        }
    }
}

/// One timer per idle period: it sleeps until the idle timeout would expire, then looks
/// once more (a reader may have come and gone meanwhile).
fn arm_idle_timer(shard: &Rc<Shard>, name: &str, running: &Rc<Running>) {
    if running.idle_timer.replace(true) {
        return;
    }
    let idle_timeout = Duration::from_secs(shard.config.sources.idle_timeout_secs);
    let (sh, n, r) = (shard.clone(), name.to_string(), running.clone());
    glommio::spawn_local(async move {
        while !r.stopped() {
            let Some(since) = r.idle_since.get() else {
                break;
            };
            let due = (since + idle_timeout).max(r.started + START_GRACE);
            let now = Instant::now();
            if now < due {
                glommio::timer::sleep(due - now).await;
                continue;
            }
            match wanted(&sh, &n, &r) {
                Wanted::Yes => r.idle_since.set(None),
                Wanted::No => {
                    info!(stream = %n, "no readers: stopping source");
                    r.stop.set(true);
                }
                Wanted::Gone => {
                    info!(stream = %n, "stream removed or its sources changed: stopping source");
                    r.stop.set(true);
                }
            }
            break;
        }
        r.idle_timer.set(false);
    })
    .detach();
}

/// Runs a source until it is stopped, reconnecting with capped backoff.
async fn run(shard: Rc<Shard>, name: String, sources: Vec<String>, running: Rc<Running>) {
    let cap = Duration::from_secs(shard.config.sources.reconnect_max_secs);
    let mut backoff = Duration::from_millis(500);
    let mut attempt: usize = 0;
    while !running.stopped() {
        // The first source is the primary; later ones add tracks on demand (`extend`).
        // When the primary keeps failing, RTSP ones take over in turn (failover).
        let candidates: Vec<&String> = std::iter::once(&sources[0])
            .chain(
                sources[1..]
                    .iter()
                    .filter(|s| scheme(s).starts_with("rtsp")),
            )
            .collect();
        let src = candidates[attempt % candidates.len()];
        let started = Instant::now();
        let result = match scheme(src) {
            "rtsp" | "rtsps" | "rtspx" => {
                crate::sources::pull::run(&shard, &name, src, &running).await
            }
            "exec" => run_exec(&shard, &name, &src["exec:".len()..], &running).await,
            "ffmpeg" => {
                let hw = hardware_probe(&shard, src).await;
                let spec = &src["ffmpeg:".len()..];
                match ffmpeg_command(&shard, &name, spec, hw.as_deref().map(Vec::as_slice), false) {
                    Ok((cmd, stdout)) => run_process(&shard, &name, cmd, &running, !stdout).await,
                    Err(e) => Err(e),
                }
            }
            // go2rtc reads these natively; we read them through ffmpeg, streams copied
            // (Home Assistant hands over cameras whose source is an http(s) or rtmp URL).
            // ffmpeg remuxes to MPEG-TS on stdout, which our demuxer reads like an `exec:`
            // source's: copied streams need no RTSP-ready headers (ADTS AAC has none).
            "http" | "https" | "rtmp" | "rtmps" => {
                match corecast::ffmpeg::copy_to_stdout(src, &shard.config.ffmpeg.templates) {
                    Ok(args) => {
                        let mut words = vec![shard.config.ffmpeg.bin.clone()];
                        words.extend(args);
                        run_process(&shard, &name, words, &running, false).await
                    }
                    Err(e) => Err(SourceError::Command(e.to_string())),
                }
            }
            other => Err(SourceError::Scheme(other.to_string())),
        };
        if running.stopped() {
            break;
        }
        let reason = match result {
            Ok(()) => "source ended".to_string(),
            Err(e) => e.to_string(),
        };
        warn!(stream = %name, source = %redact(src), error = %reason, retry_in = ?backoff, "source failed; will retry");
        set_error(&shard, &name, Some(reason));
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(500);
        }
        attempt += 1;
        // Sleep in small steps so a stop is honoured quickly.
        let until = Instant::now() + backoff;
        while Instant::now() < until && !running.stopped() {
            glommio::timer::sleep(CHECK.min(until - Instant::now())).await;
        }
        backoff = (backoff * 2).min(cap);
    }
    RUNNING.with(|r| r.borrow_mut().remove(&name));
    if let Some(e) = shard.registry.lock().streams.get_mut(&name) {
        e.sources_exhausted = false;
    }
    crate::sources::pull::close(&shard, &name);
    set_error(&shard, &name, None);
    debug!(stream = %name, "source task ended");
}

pub fn set_error(shard: &Shard, name: &str, error: Option<String>) {
    if let Some(e) = shard.registry.lock().streams.get_mut(name) {
        e.error = error;
    }
}

fn scheme(src: &str) -> &str {
    src.split_once(':').map(|(s, _)| s).unwrap_or("")
}

/// The URL without its password, for logs.
pub fn redact(src: &str) -> String {
    let secrets = url_secrets(src);
    if let Some((scheme, rest)) = src.split_once("://") {
        // The last `@` before the path ends the userinfo (a password may contain `@`).
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
            let user = userinfo.split(':').next().unwrap_or("");
            return mask(&format!("{scheme}://{user}:***@{host}"), &secrets);
        }
    }
    mask(src, &secrets)
}

/// Secrets a URL carries: the userinfo's password, and query values whose key names one
/// (`?user=admin&pwd=...`, common on HTTP cameras).
pub fn url_secrets(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in src.split_whitespace() {
        let Some((_, rest)) = word.split_once("://") else {
            continue;
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some((_, pass)) = rest[..at].split_once(':') {
                out.push(pass.to_string());
            }
        }
        if let Some((_, query)) = rest.split_once('?') {
            for pair in query.split(['&', '#']) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let k = k.to_ascii_lowercase();
                if ["pass", "pwd", "token", "secret", "key", "auth"]
                    .iter()
                    .any(|s| k.contains(s))
                {
                    out.push(v.to_string());
                }
            }
        }
    }
    // Very short values would mask unrelated text; they are not secrets worth the name.
    out.retain(|s| s.len() >= 3);
    out
}

/// `text` with every secret replaced by `***`.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// Where an `{output}` program publishes: this stream on our own RTSP server.
pub(crate) fn output_url(shard: &Shard, name: &str) -> Result<String, SourceError> {
    let addr = shard.config.rtsp.listen.ok_or(SourceError::NoRtspServer)?;
    let ip = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    // Our own children authenticate like anyone else when `local_auth` is on.
    let cred = match (&shard.config.rtsp.username, &shard.config.rtsp.password) {
        (Some(u), p) if shard.config.rtsp.local_auth => {
            format!("{}:{}@", pct(u), pct(p.as_deref().unwrap_or("")))
        }
        _ => String::new(),
    };
    Ok(format!("rtsp://{cred}{ip}:{}/{}", addr.port(), pct(name)))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The hardware probe when an `ffmpeg:` source asks for an automatic `#hardware` engine
/// (it runs off the executor, once per process).
async fn hardware_probe(shard: &Shard, src: &str) -> Option<Arc<Vec<HwResult>>> {
    let spec = src.strip_prefix("ffmpeg:")?;
    if !corecast::ffmpeg::wants_hardware_probe(spec) {
        return None;
    }
    Some(crate::sources::hardware::probe(&shard.config).await)
}

/// The command of an `ffmpeg:` source, and whether its media comes on stdout (a lone MJPEG
/// track, as go2rtc) rather than published to us. `later`: a later source of the stream,
/// which may read the stream itself and must publish.
fn ffmpeg_command(
    shard: &Shard,
    name: &str,
    spec: &str,
    hardware: Option<&[HwResult]>,
    later: bool,
) -> Result<(Vec<String>, bool), SourceError> {
    let output = output_url(shard, name)?;
    let base = output.rsplit_once('/').map(|(b, _)| b.to_string());
    let known = |n: &str| -> Option<String> {
        let g = shard.registry.lock();
        ((later || n != name) && g.streams.contains_key(n))
            .then(|| base.as_ref().map(|b| format!("{b}/{n}")))
            .flatten()
    };
    let env = corecast::ffmpeg::Env {
        templates: &shard.config.ffmpeg.templates,
        stream_url: &known,
        output: &output,
        hardware,
        // A later source is pulled from where it publishes; a primary may use stdout.
        stdout_ok: !later,
    };
    let built =
        corecast::ffmpeg::build(spec, &env).map_err(|e| SourceError::Ffmpeg(e.to_string()))?;
    if let Some(note) = &built.hardware_note {
        crate::sources::hardware::log_note(name, note);
    }
    let mut cmd = vec![shard.config.ffmpeg.bin.clone()];
    cmd.extend(built.args);
    Ok((cmd, built.stdout))
}

async fn run_exec(
    shard: &Rc<Shard>,
    name: &str,
    spec: &str,
    running: &Rc<Running>,
) -> Result<(), SourceError> {
    let mut words =
        corecast::ffmpeg::split_command(spec).map_err(|e| SourceError::Command(e.to_string()))?;
    let publishes = words.iter().any(|w| w.contains("{output}"));
    if publishes {
        let out = output_url(shard, name)?;
        for w in &mut words {
            *w = w.replace("{output}", &out);
        }
    }
    run_process(shard, name, words, running, publishes).await
}

/// A child process, killed and reaped when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // The whole process group: `exec:sh -c "ffmpeg ..."` must not leave ffmpeg behind.
        crate::io::fd::kill_group(self.0.id());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use crate::io::fd::set_nonblocking;

/// Runs a program until it exits or the source is stopped. `publishes`: it sends its media
/// to our RTSP server itself; otherwise its stdout is demuxed here.
async fn run_process(
    shard: &Rc<Shard>,
    name: &str,
    words: Vec<String>,
    running: &Rc<Running>,
    publishes: bool,
) -> Result<(), SourceError> {
    let (bin, args) = words
        .split_first()
        .ok_or_else(|| SourceError::Command("empty command".into()))?;
    check_allowed(shard, name, bin)?;
    // Passwords in the command (source URLs, our own RTSP credentials) stay out of logs,
    // `/api/log` and the stream's error, which ffmpeg's messages may end up in.
    let secrets: Vec<String> = words.iter().flat_map(|w| url_secrets(w)).collect();
    debug!(stream = name, command = %mask(&words.join(" "), &secrets), "spawning");
    let child = Command::new(bin)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(if publishes {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SourceError::Spawn {
            program: bin.clone(),
            reason: e.to_string(),
        })?;
    let mut child = ChildGuard(child);
    let mut stderr = child.0.stderr.take();
    let mut stdout = child.0.stdout.take();
    if let Some(e) = &stderr {
        set_nonblocking(e.as_raw_fd());
    }
    if let Some(o) = &stdout {
        set_nonblocking(o.as_raw_fd());
    }
    let mut demux = if publishes {
        None
    } else {
        Some(crate::sources::pull::StdoutIngest::new(name))
    };
    let mut err_line = Vec::new();
    let mut last_err = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if running.stopped() {
            return Ok(());
        }
        let mut progressed = false;
        if let (Some(out), Some(d)) = (stdout.as_mut(), demux.as_mut()) {
            match out.read(&mut buf) {
                Ok(0) => stdout = None,
                Ok(n) => {
                    progressed = true;
                    d.push(shard, &buf[..n])
                        .map_err(|e| SourceError::Output(format!("exec output: {e}")))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(SourceError::Output(format!("exec stdout: {e}"))),
            }
        }
        if let Some(err) = stderr.as_mut() {
            match err.read(&mut buf) {
                Ok(0) => stderr = None,
                Ok(n) => {
                    progressed = true;
                    for &b in &buf[..n] {
                        if b == b'\n' || err_line.len() > 4096 {
                            let line = mask(String::from_utf8_lossy(&err_line).trim(), &secrets);
                            if !line.is_empty() {
                                debug!(stream = name, "{line}");
                                last_err = line;
                            }
                            err_line.clear();
                        } else {
                            err_line.push(b);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => stderr = None,
            }
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            if let (Some(d), Some(out)) = (demux.as_mut(), stdout.as_mut()) {
                // Drain what is left in the pipe (bounded: a grandchild may hold it open).
                for _ in 0..64 {
                    match out.read(&mut buf) {
                        Ok(n) if n > 0 => {
                            let _ = d.push(shard, &buf[..n]);
                        }
                        _ => break,
                    }
                }
            }
            let tail = if last_err.is_empty() {
                String::new()
            } else {
                format!(": {last_err}")
            };
            return Err(SourceError::Exited {
                program: bin.clone(),
                status: status.to_string(),
                tail,
            });
        }
        if progressed {
            // A chatty program must not starve the shard's other tasks.
            glommio::yield_if_needed().await;
        } else {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{mask, redact, url_secrets};

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("rtsp://admin:pw@cam/x"), "rtsp://admin:***@cam/x");
        assert_eq!(redact("rtsp://cam/x"), "rtsp://cam/x");
        assert_eq!(redact("exec:ffmpeg -i x"), "exec:ffmpeg -i x");
        // A password with `@`, and passwords in the query (HTTP cameras).
        assert_eq!(redact("rtsp://admin:p@ss@cam/x"), "rtsp://admin:***@cam/x");
        assert_eq!(
            redact("http://cam/snap.cgi?user=admin&pwd=hunter2&ch=1"),
            "http://cam/snap.cgi?user=admin&pwd=***&ch=1"
        );
        let secrets = url_secrets("ffmpeg -i http://u:s3cret@cam/x?token=abcdef -f rtsp x");
        assert_eq!(secrets, ["s3cret", "abcdef"]);
        assert_eq!(
            mask("cam/x?token=abcdef: 401 Unauthorized (s3cret)", &secrets),
            "cam/x?token=***: 401 Unauthorized (***)"
        );
    }
}
