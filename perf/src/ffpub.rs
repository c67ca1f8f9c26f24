//! Real publishers: ffmpeg sending a camera-like clip packet by packet (`-re -c copy -f
//! rtsp`), the way cameras and most relays do, instead of our synthetic per-frame bursts.
//!
//! The clip (H.264 + AAC, testsrc2 + sine, fixed GOP, no B-frames) is encoded once per
//! parameter set into a cache directory and looped by each publisher. Every ffmpeg child
//! gets `PR_SET_PDEATHSIG(SIGKILL)` and stays in our process group, so neither an error,
//! a panic, a ctrl-c nor a SIGKILL of the harness leaves publishers behind; `Drop` kills
//! and reaps them on the normal paths.

use serde::Serialize;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Shape of the generated clip.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSpec {
    /// Video bit/s (x264 `-b:v`, `-maxrate`, `-bufsize`: a camera-like CBR-ish stream).
    pub bitrate: u64,
    pub fps: u32,
    /// Keyframe every `gop` frames (`-g`, `-keyint_min`, no scene-cut keyframes).
    pub gop: u32,
    pub width: u32,
    pub height: u32,
    /// Clip length before it loops, seconds.
    pub secs: u32,
    /// Where clips are cached (created if missing).
    pub dir: PathBuf,
}

impl ClipSpec {
    pub fn file_name(&self) -> String {
        format!(
            "clip-{}x{}-{}fps-g{}-{}bps-{}s.mp4",
            self.width, self.height, self.fps, self.gop, self.bitrate, self.secs
        )
    }

    pub fn describe(&self) -> String {
        format!(
            "ffmpeg -re -c copy: H.264 {}x{} {} kbit/s {} fps GOP {:.1} s + AAC 64 kbit/s",
            self.width,
            self.height,
            self.bitrate / 1000,
            self.fps,
            self.gop as f64 / self.fps.max(1) as f64
        )
    }

    /// Path of the clip, encoding it first if the cache does not have it.
    pub fn ensure(&self) -> Result<PathBuf, String> {
        let path = self.dir.join(self.file_name());
        if path.exists() {
            return Ok(path);
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("clip dir {}: {e}", self.dir.display()))?;
        // Encode to a private name and rename: concurrent runs never see half a file.
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp.mp4",
            self.file_name(),
            std::process::id()
        ));
        let rate = self.bitrate.to_string();
        let out = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg(format!(
                "testsrc2=size={}x{}:rate={}",
                self.width, self.height, self.fps
            ))
            .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
            .args(["-t", &self.secs.to_string()])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-b:v", &rate])
            .args(["-maxrate", &rate, "-bufsize", &rate])
            .args([
                "-g",
                &self.gop.to_string(),
                "-keyint_min",
                &self.gop.to_string(),
            ])
            .args(["-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p"])
            .args(["-c:a", "aac", "-b:a", "64k", "-ac", "2"])
            .arg(&tmp)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ffmpeg to make the clip: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "ffmpeg could not make the clip {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::rename(&tmp, &path).map_err(|e| format!("clip {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// Counters of all ffmpeg publishers, from their `-progress` files.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct FfStats {
    /// Video frames sent (ffmpeg's `frame=`, summed over publishers).
    pub frames: u64,
    /// Bytes written to the muxer (`total_size=`, summed).
    pub bytes: u64,
    /// Publishers whose ffmpeg is still running.
    pub alive: usize,
}

struct FfChild {
    child: Child,
    progress: PathBuf,
    log: PathBuf,
    url: String,
}

/// N ffmpeg processes, one per URL, looping the same clip.
pub struct FfPublishers {
    children: Vec<FfChild>,
    clip: PathBuf,
    log_dir: PathBuf,
    /// Frames and bytes of publishers replaced by `restart_all` (their counters are gone).
    retired: (u64, u64),
    restarts: u64,
}

/// `-stats_period`: how often ffmpeg rewrites its progress (the resolution of the
/// frames-sent figure of a window).
const STATS_PERIOD: &str = "0.2";

impl FfPublishers {
    /// Starts one publisher per URL and waits until each has sent its first frames (its
    /// RECORD was accepted), or fails with the publisher's log.
    pub fn start(
        urls: &[String],
        clip: &Path,
        log_dir: &Path,
        timeout: Duration,
    ) -> Result<FfPublishers, String> {
        std::fs::create_dir_all(log_dir).map_err(|e| e.to_string())?;
        let mut me = FfPublishers {
            children: Vec::with_capacity(urls.len()),
            clip: clip.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            retired: (0, 0),
            restarts: 0,
        };
        let tag = format!(
            "{}-{}",
            std::process::id(),
            crate::util::now_ns() % 1_000_000
        );
        for (i, url) in urls.iter().enumerate() {
            let c = spawn(i, url, clip, log_dir, &tag)?;
            me.children.push(c);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = 0;
            for (i, c) in me.children.iter_mut().enumerate() {
                if let Ok(Some(st)) = c.child.try_wait() {
                    return Err(format!(
                        "publisher {i} ({}): ffmpeg exited ({st}): {}",
                        c.url,
                        tail(&c.log)
                    ));
                }
                if last_value(&c.progress, "frame=").unwrap_or(0) == 0 {
                    waiting += 1;
                }
            }
            if waiting == 0 {
                return Ok(me);
            }
            if Instant::now() > deadline {
                let c = me
                    .children
                    .iter()
                    .find(|c| last_value(&c.progress, "frame=").unwrap_or(0) == 0);
                return Err(format!(
                    "{waiting} of {} ffmpeg publishers sent nothing in {:?} (first: {}: {})",
                    me.children.len(),
                    timeout,
                    c.map_or("", |c| c.url.as_str()),
                    c.map_or(String::new(), |c| tail(&c.log))
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn count(&self) -> usize {
        self.children.len()
    }

    /// How many times `restart_all` ran.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Stops every publisher (SIGINT: ffmpeg sends TEARDOWN, as a camera that reboots
    /// would not, but the server sees the producer leave either way) and starts a new one
    /// on the same URL: the soak's "publisher restarts every N minutes".
    pub fn restart_all(&mut self) -> Result<(), String> {
        let urls: Vec<String> = self.children.iter().map(|c| c.url.clone()).collect();
        let s = self.stats();
        self.retired = (s.frames, s.bytes);
        self.stop_children();
        self.restarts += 1;
        let tag = format!("{}-r{}", std::process::id(), self.restarts);
        for (i, url) in urls.iter().enumerate() {
            let c = spawn(i, url, &self.clip, &self.log_dir, &tag)?;
            self.children.push(c);
        }
        Ok(())
    }

    pub fn stats(&mut self) -> FfStats {
        let mut s = FfStats {
            frames: self.retired.0,
            bytes: self.retired.1,
            alive: 0,
        };
        for c in self.children.iter_mut() {
            s.frames += last_value(&c.progress, "frame=").unwrap_or(0);
            s.bytes += last_value(&c.progress, "total_size=").unwrap_or(0);
            if matches!(c.child.try_wait(), Ok(None)) {
                s.alive += 1;
            }
        }
        s
    }

    pub fn stop(&mut self) {
        self.stop_children();
    }

    fn stop_children(&mut self) {
        for c in self.children.iter_mut() {
            // SAFETY: signalling our own child by pid; SIGINT lets ffmpeg send TEARDOWN.
            unsafe { libc::kill(c.child.id() as i32, libc::SIGINT) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for c in self.children.iter_mut() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.child.kill();
            let _ = c.child.wait();
            let _ = std::fs::remove_file(&c.progress);
        }
        self.children.clear();
    }
}

impl Drop for FfPublishers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts one looping ffmpeg publisher to `url`.
fn spawn(i: usize, url: &str, clip: &Path, log_dir: &Path, tag: &str) -> Result<FfChild, String> {
    let progress = log_dir.join(format!("ffpub-{tag}-{i}.progress"));
    let log = log_dir.join(format!("ffpub-{tag}-{i}.log"));
    let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
        .args(["-re", "-stream_loop", "-1", "-i"])
        .arg(clip)
        .args(["-map", "0", "-c", "copy"])
        .args(["-stats_period", STATS_PERIOD, "-progress"])
        .arg(&progress)
        .args(["-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(logf));
    kill_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| format!("publisher {i} ({url}): cannot start ffmpeg: {e}"))?;
    Ok(FfChild {
        child,
        progress,
        log,
        url: url.to_string(),
    })
}

/// The child gets SIGKILL when the thread that spawned it exits (so: spawn from a thread
/// that lives as long as the run; ours are spawned by the main thread).
pub fn kill_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
}

/// Last `key=N` value in an ffmpeg `-progress` file (it appends a block per period).
fn last_value(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_last_value() {
        let dir = std::env::temp_dir().join(format!("ffpub-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("p");
        std::fs::write(
            &p,
            "frame=10\ntotal_size=100\nprogress=continue\nframe=25\ntotal_size=N/A\nprogress=continue\n",
        )
        .unwrap();
        assert_eq!(last_value(&p, "frame="), Some(25));
        // N/A is not a number: the last one that parses is not searched for (stays None).
        assert_eq!(last_value(&p, "total_size="), None);
        assert_eq!(last_value(&dir.join("missing"), "frame="), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clip_name_keys_every_parameter() {
        let a = ClipSpec {
            bitrate: 1_000_000,
            fps: 25,
            gop: 50,
            width: 640,
            height: 360,
            secs: 20,
            dir: PathBuf::from("/tmp"),
        };
        let mut b = a.clone();
        b.gop = 25;
        assert_ne!(a.file_name(), b.file_name());
        assert_eq!(a.file_name(), "clip-640x360-25fps-g50-1000000bps-20s.mp4");
    }
}
