//! go2rtc's `frame.jpeg`: one keyframe as a JPEG, decoded (and scaled / rotated) by an
//! ffmpeg child process, with go2rtc's query: `width`/`w`, `height`/`h` (one alone keeps the
//! aspect ratio), `rotate=90|180|270|-90`, `cache=<duration>` (a JPEG younger than that is
//! answered again instead of transcoding), `hardware`/`hw` (accepted and ignored: the
//! snapshot decodes on the CPU).
//!
//! Transcodes run a few at a time per shard; more wait in a bounded queue for a slot, a few
//! seconds at most, before the answer is 503.

use super::{keyframe, MuxError};
use crate::core::hub::Shard;
use bytes::Bytes;
use corecast::codec::CodecKind;
use corecast::mux::{Frame, TrackConfig};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use tracing::debug;

/// Concurrent transcodes per shard (each is an ffmpeg process).
const MAX_RUNNING: usize = 2;
/// Requests waiting for a slot per shard; more get 503 at once.
const MAX_WAITING: usize = 64;
/// How long a request waits for a slot before 503.
const SLOT_WAIT: Duration = Duration::from_secs(8);
/// Largest `width`/`height` asked for (ffmpeg would try to allocate it).
const MAX_DIMENSION: i32 = 8192;
/// Cached JPEGs kept (by stream and picture options); the oldest goes first.
const CACHE_ENTRIES: usize = 64;
/// Larger JPEGs are not cached.
const CACHE_MAX_BYTES: usize = 4 << 20;
/// Longest `cache=` honoured; longer ones are clamped (a stale picture for hours is a bug).
const CACHE_MAX_AGE: Duration = Duration::from_secs(3600);

/// Rotation, clockwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rotate {
    None,
    Cw90,
    Cw180,
    Ccw90,
}

/// What a `frame.jpeg` request asks for, besides the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpegQuery {
    /// ffmpeg `scale` sizes; -1 (or -2) keeps the aspect ratio, None leaves the size.
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub rotate: Rotate,
    /// `cache=`: the age below which a cached JPEG answers.
    pub cache: Option<Duration>,
    /// `hardware`/`hw` was asked for (ignored: snapshots decode on the CPU).
    pub hardware: bool,
}

impl JpegQuery {
    /// From the request's query parameters (`get` returns the first value of one). Errors
    /// name the parameter and its value.
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<JpegQuery, String> {
        let size = |keys: [&str; 2]| -> Result<Option<i32>, String> {
            let Some((key, v)) = keys.iter().find_map(|k| get(k).map(|v| (*k, v))) else {
                return Ok(None);
            };
            match v.parse::<i32>() {
                // go2rtc: 0 (or empty) means "not given".
                Ok(0) => Ok(None),
                Ok(n @ (-2 | -1 | 1..=MAX_DIMENSION)) => Ok(Some(n)),
                _ if v.is_empty() => Ok(None),
                _ => Err(format!(
                    "invalid `{key}={v}`: expected a size from 1 to {MAX_DIMENSION} pixels"
                )),
            }
        };
        let width = size(["width", "w"])?;
        let height = size(["height", "h"])?;
        let rotate = match get("rotate") {
            None | Some("") | Some("0") => Rotate::None,
            Some("90") => Rotate::Cw90,
            Some("180") => Rotate::Cw180,
            Some("270" | "-90") => Rotate::Ccw90,
            Some(v) => {
                return Err(format!(
                    "invalid `rotate={v}`: expected 90, 180, 270 or -90"
                ))
            }
        };
        let cache = match get("cache") {
            None | Some("") => None,
            Some(v) => match parse_go_duration(v) {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d.min(CACHE_MAX_AGE)),
                None => {
                    return Err(format!(
                        "invalid `cache={v}`: expected a duration such as 5s, 500ms or 1m"
                    ))
                }
            },
        };
        Ok(JpegQuery {
            width,
            height,
            rotate,
            cache,
            hardware: get("hardware").or_else(|| get("hw")).is_some(),
        })
    }

    /// The ffmpeg `-vf` chain (go2rtc's: scale first, then transpose); None for none.
    pub fn filters(&self) -> Option<String> {
        let mut f = Vec::new();
        // One side alone: the other is -1, keeping the aspect ratio (go2rtc's).
        if self.width.is_some() || self.height.is_some() {
            f.push(format!(
                "scale={}:{}",
                self.width.unwrap_or(-1),
                self.height.unwrap_or(-1)
            ));
        }
        match self.rotate {
            Rotate::None => {}
            Rotate::Cw90 => f.push("transpose=1".into()),
            Rotate::Cw180 => f.push("transpose=1,transpose=1".into()),
            Rotate::Ccw90 => f.push("transpose=2".into()),
        }
        (!f.is_empty()).then(|| f.join(","))
    }

    fn cache_key(&self, src: &str) -> CacheKey {
        CacheKey {
            src: src.to_string(),
            width: self.width,
            height: self.height,
            rotate: self.rotate,
        }
    }
}

/// go2rtc's duration syntax (Go's `time.ParseDuration`): decimal numbers with a unit each,
/// `300ms`, `1.5h`, `2h45m`, `-1s`; `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`. A negative one
/// reads as zero (go2rtc: never fresh). None when it is not a duration.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() || rest.len() > 64 {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    if neg {
        return Some(Duration::ZERO);
    }
    Duration::try_from_secs_f64(total).ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    src: String,
    width: Option<i32>,
    height: Option<i32>,
    rotate: Rotate,
}

/// Cached JPEGs, shared by the shards: a client's repeated requests may land on any shard.
static CACHE: Mutex<Option<HashMap<CacheKey, (Instant, Bytes)>>> = Mutex::new(None);
/// ffmpeg transcodes run and cached answers given (for `/metrics`).
static TRANSCODES: AtomicU64 = AtomicU64::new(0);
static CACHE_HITS: AtomicU64 = AtomicU64::new(0);

fn cache_get(key: &CacheKey, max_age: Duration) -> Option<Bytes> {
    let g = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let (at, jpeg) = g.as_ref()?.get(key)?;
    (at.elapsed() < max_age).then(|| jpeg.clone())
}

fn cache_put(key: CacheKey, jpeg: Bytes) {
    if jpeg.len() > CACHE_MAX_BYTES {
        return;
    }
    let mut g = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    if map.len() >= CACHE_ENTRIES && !map.contains_key(&key) {
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, (at, _))| *at)
            .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    map.insert(key, (Instant::now(), jpeg));
}

/// Prometheus lines for the snapshot counters, appended to `/metrics`.
pub fn metrics(out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "# HELP corecast_snapshot_transcodes_total frame.jpeg pictures made by ffmpeg.\n\
         # TYPE corecast_snapshot_transcodes_total counter\n\
         corecast_snapshot_transcodes_total {}\n\
         # HELP corecast_snapshot_cache_hits_total frame.jpeg answers from the cache (cache=).\n\
         # TYPE corecast_snapshot_cache_hits_total counter\n\
         corecast_snapshot_cache_hits_total {}\n",
        TRANSCODES.load(Relaxed),
        CACHE_HITS.load(Relaxed)
    );
}

/// The cached answer to `q` for stream `name`, if `q` asks for one (`cache=`) and one is
/// young enough. Checked before the stream's source is started, as go2rtc does.
pub fn cached(name: &str, q: &JpegQuery) -> Option<Bytes> {
    let jpeg = cache_get(&q.cache_key(name), q.cache?)?;
    CACHE_HITS.fetch_add(1, Relaxed);
    Some(jpeg)
}

/// `frame.jpeg` of stream `name` (already started): the JPEG track's picture as is, or a
/// keyframe through ffmpeg; kept in the cache when `q` asks for `cache=`.
pub async fn frame_jpeg(shard: &Rc<Shard>, name: &str, q: &JpegQuery) -> Result<Bytes, MuxError> {
    if q.hardware {
        debug!(stream = %name, "frame.jpeg: `hardware` ignored; snapshots decode on the CPU");
    }
    let key = q.cache_key(name);
    let (cfg, frame, kind) = keyframe(shard, name).await?;
    let filters = q.filters();
    let jpeg = match (kind, cfg) {
        // A JPEG track's picture needs ffmpeg only to change it.
        (CodecKind::Mjpeg, _) if filters.is_none() => Bytes::from(
            frame
                .units
                .iter()
                .flat_map(|u| u.iter().copied())
                .collect::<Vec<_>>(),
        ),
        (CodecKind::Mjpeg, _) => {
            let input = frame.units.iter().flat_map(|u| u.iter().copied()).collect();
            transcode(shard, name, "mjpeg", input, filters).await?
        }
        (_, Some(cfg)) => {
            let (fmt, input) = annex_b(&cfg, &frame)?;
            transcode(shard, name, fmt, input, filters).await?
        }
        (_, None) => return Err(MuxError::NoKeyframeParameterSets),
    };
    if q.cache.is_some() {
        cache_put(key, jpeg.clone());
    }
    Ok(jpeg)
}

/// Annex-B: parameter sets first (a keyframe may not carry them), then the frame.
fn annex_b(cfg: &TrackConfig, frame: &Frame) -> Result<(&'static str, Vec<u8>), MuxError> {
    let (fmt, sets): (&str, Vec<Bytes>) = match cfg {
        TrackConfig::H264 { sps, pps } => ("h264", vec![sps.clone(), pps.clone()]),
        TrackConfig::H265 { vps, sps, pps } => {
            ("hevc", vec![vps.clone(), sps.clone(), pps.clone()])
        }
        _ => return Err(MuxError::NotVideo),
    };
    let mut input = Vec::new();
    for nal in sets.iter().chain(frame.units.iter()) {
        input.extend_from_slice(&[0, 0, 0, 1]);
        input.extend_from_slice(nal);
    }
    Ok((fmt, input))
}

/// Runs one transcode once a slot of this shard is free.
async fn transcode(
    shard: &Rc<Shard>,
    name: &str,
    fmt: &'static str,
    input: Vec<u8>,
    filters: Option<String>,
) -> Result<Bytes, MuxError> {
    let _slot = SLOTS.with(|s| s.clone()).acquire().await?;
    let bin = shard.config.ffmpeg.bin.clone();
    let started = Instant::now();
    TRANSCODES.fetch_add(1, Relaxed);
    let r = glommio::executor()
        .spawn_blocking(move || transcode_jpeg(&bin, fmt, input, filters.as_deref()))
        .await;
    debug!(stream = %name, elapsed = ?started.elapsed(), "snapshot transcoded");
    r.map(Bytes::from).map_err(MuxError::Transcode)
}

thread_local! {
    /// This shard's transcode slots (one shard per thread).
    static SLOTS: Rc<Slots> = Rc::new(Slots::default());
}

/// A counting semaphore with a bounded queue and a wait limit. Released slots wake every
/// waiter (at most `MAX_WAITING`), so a waiter that gave up can never swallow a wake-up.
#[derive(Default)]
struct Slots {
    running: Cell<usize>,
    waiting: Cell<usize>,
    wakers: RefCell<Vec<Waker>>,
}

struct SlotGuard(Rc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.running.set(self.0.running.get() - 1);
        for w in self.0.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

struct Waiting<'a>(&'a Slots);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.set(self.0.waiting.get() - 1);
    }
}

impl Slots {
    async fn acquire(self: Rc<Self>) -> Result<SlotGuard, MuxError> {
        if self.running.get() < MAX_RUNNING {
            self.running.set(self.running.get() + 1);
            return Ok(SlotGuard(self));
        }
        if self.waiting.get() >= MAX_WAITING {
            return Err(MuxError::Busy);
        }
        self.waiting.set(self.waiting.get() + 1);
        let _w = Waiting(&self);
        let free = futures_lite::future::poll_fn(|cx| {
            if self.running.get() < MAX_RUNNING {
                self.running.set(self.running.get() + 1);
                Poll::Ready(true)
            } else {
                self.wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        });
        let timeout = async {
            glommio::timer::sleep(SLOT_WAIT).await;
            false
        };
        if futures_lite::future::or(free, timeout).await {
            Ok(SlotGuard(self.clone()))
        } else {
            Err(MuxError::Busy)
        }
    }
}

/// Runs `ffmpeg -f FMT -i - [-vf FILTERS] -frames:v 1 -f image2 -c:v mjpeg -`, bounded in
/// time.
fn transcode_jpeg(
    bin: &str,
    fmt: &str,
    input: Vec<u8>,
    filters: Option<&str>,
) -> Result<Vec<u8>, String> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(bin);
    // Let ffmpeg use every core rather than the shard's.
    crate::io::fd::unpin_child(&mut cmd);
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        fmt,
        "-i",
        "pipe:0",
    ]);
    if let Some(f) = filters {
        cmd.args(["-vf", f]);
    }
    let mut child = cmd
        .args(["-frames:v", "1", "-f", "image2", "-c:v", "mjpeg", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{bin}`: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    // A watchdog: a stuck ffmpeg must not hold the snapshot slot forever. It signals only
    // through the shared child, so never a pid that was reaped and perhaps reused.
    let child = Watched::new(child);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (d, dog) = (done.clone(), child.clone());
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if d.load(Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        dog.kill_if_running();
    });
    let mut jpeg = Vec::new();
    let r = stdout
        .by_ref()
        .take(32 << 20)
        .read_to_end(&mut jpeg)
        .map_err(|e| e.to_string());
    let mut err = String::new();
    let _ = stderr.by_ref().take(4096).read_to_string(&mut err);
    let status = child.wait().map_err(|e| e.to_string());
    done.store(true, Relaxed);
    let _ = writer.join();
    r?;
    let status = status?;
    if !status.success() || jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] {
        return Err(format!(
            "ffmpeg could not decode the keyframe ({status}): {}",
            err.trim()
        ));
    }
    Ok(jpeg)
}

/// A child shared between its waiter and a watchdog. Both go through the lock, and the
/// child remembers once it was reaped, so a kill after the wait sends no signal (the pid may
/// already belong to another process).
#[derive(Clone)]
struct Watched(Arc<std::sync::Mutex<std::process::Child>>);

impl Watched {
    fn new(child: std::process::Child) -> Self {
        Watched(Arc::new(std::sync::Mutex::new(child)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::process::Child> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SIGKILL if the child is still running (and not yet reaped); true if it was signalled.
    fn kill_if_running(&self) -> bool {
        let mut c = self.lock();
        match c.try_wait() {
            Ok(None) => c.kill().is_ok(),
            _ => false,
        }
    }

    /// Reaps the child, polling so that the lock is never held while it runs.
    fn wait(&self) -> std::io::Result<std::process::ExitStatus> {
        loop {
            if let Some(status) = self.lock().try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn q(s: &str) -> Result<JpegQuery, String> {
        let pairs: Vec<(&str, &str)> = s
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        JpegQuery::parse(|k| pairs.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v))
    }

    #[test]
    fn query_to_filters_as_go2rtc() {
        assert_eq!(q("").unwrap().filters(), None);
        assert_eq!(q("width=320").unwrap().filters().unwrap(), "scale=320:-1");
        assert_eq!(q("h=120").unwrap().filters().unwrap(), "scale=-1:120");
        assert_eq!(
            q("w=640&height=360&rotate=90").unwrap().filters().unwrap(),
            "scale=640:360,transpose=1"
        );
        assert_eq!(
            q("rotate=180").unwrap().filters().unwrap(),
            "transpose=1,transpose=1"
        );
        assert_eq!(q("rotate=-90").unwrap().filters().unwrap(), "transpose=2");
        assert_eq!(q("rotate=270").unwrap().rotate, Rotate::Ccw90);
        // go2rtc: 0 means not given; hardware is accepted and ignored.
        assert_eq!(q("width=0&hw=vaapi&hardware").unwrap().filters(), None);
        // `width` wins over `w` (go2rtc reads both; the map order is random there).
        assert_eq!(q("width=10&w=20").unwrap().width, Some(10));
    }

    #[test]
    fn bad_query_values_are_named() {
        assert!(q("width=abc").unwrap_err().contains("`width=abc`"));
        assert!(q("h=99999").unwrap_err().contains("`h=99999`"));
        assert!(q("width=-5").is_err());
        assert!(q("rotate=45").unwrap_err().contains("`rotate=45`"));
        assert!(q("cache=5").unwrap_err().contains("`cache=5`"));
    }

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("5s"), Some(Duration::from_secs(5)));
        assert_eq!(d("1m"), Some(Duration::from_secs(60)));
        assert_eq!(d("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(d("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(d("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(d("10us"), Some(Duration::from_micros(10)));
        assert_eq!(d("10µs"), Some(Duration::from_micros(10)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        assert_eq!(d("-1s"), Some(Duration::ZERO));
        for bad in ["", "5", "s", "5x", "1..5s", ".s", "5s5", "-", "1e3s"] {
            assert_eq!(d(bad), None, "{bad}");
        }
        assert_eq!(q("cache=2h").unwrap().cache, Some(CACHE_MAX_AGE), "clamped");
    }

    #[test]
    fn cache_answers_within_its_age_and_stays_bounded() {
        let key = |i: usize| {
            JpegQuery::parse(|_| None)
                .unwrap()
                .cache_key(&format!("t{i}"))
        };
        cache_put(key(0), Bytes::from_static(b"jpeg"));
        assert_eq!(cache_get(&key(0), Duration::from_secs(5)).unwrap(), "jpeg");
        assert!(cache_get(&key(0), Duration::ZERO).is_none());
        for i in 1..=CACHE_ENTRIES + 5 {
            cache_put(key(i), Bytes::from_static(b"x"));
        }
        let n = CACHE.lock().unwrap().as_ref().unwrap().len();
        assert!(n <= CACHE_ENTRIES, "{n}");
    }

    #[test]
    fn slots_queue_and_time_out() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let slots = Rc::new(Slots::default());
                let a = slots.clone().acquire().await.unwrap();
                let _b = slots.clone().acquire().await.unwrap();
                // A third waits and gets the slot the first gives back.
                let s = slots.clone();
                let third = glommio::spawn_local(async move { s.acquire().await.is_ok() });
                glommio::yield_if_needed().await;
                drop(a);
                assert!(third.await);
                assert_eq!(slots.waiting.get(), 0);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn watchdog_never_signals_a_reaped_child() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let w = Watched::new(child);
        assert!(w.wait().unwrap().success());
        // The pid is free for reuse now: the watchdog must not send anything.
        assert!(!w.kill_if_running());
    }

    #[test]
    fn watchdog_kills_a_stuck_child() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let w = Watched::new(child);
        assert!(w.kill_if_running());
        assert_eq!(w.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(!w.kill_if_running());
    }
}
