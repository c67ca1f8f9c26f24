//! `ffmpeg:` sources: go2rtc's templates turned into an ffmpeg argument list.
//!
//! `ffmpeg:INPUT#video=h264#audio=opus#width=640...`: INPUT is a file, a URL, or the name of
//! another stream (read back from our own RTSP server). The output publishes to our RTSP
//! server under the stream's own name (`{output}`), so it flows like any publisher.
//!
//! The arguments follow go2rtc's `internal/ffmpeg/ffmpeg.go` `parseArgs`,
//! `pkg/ffmpeg/ffmpeg.go` `Args.String` and `internal/ffmpeg/hardware` `MakeHardware` (the
//! unit tests compare with go2rtc's own expectations). Differences: the output publishes
//! over RTSP except for a lone MJPEG track, which comes on stdout as in go2rtc (go2rtc also
//! pipes a lone AAC or PCM track; RTSP carries those as well); `pcml` (little-endian PCM),
//! which ffmpeg cannot send over RTSP, is refused; a `#video=`/`#audio=` value must name a
//! template (go2rtc also takes raw arguments there).

/// Built-in templates (go2rtc's `defaults`). The `ffmpeg:` config section overrides or adds
/// to them by name.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("global", "-hide_banner"),
    // Seconds, for `{timeout}` in the RTSP input templates (`#timeout=N` overrides).
    ("timeout", "5"),
    // inputs
    ("file", "-re -i {input}"),
    ("http", "-fflags nobuffer -flags low_delay -i {input}"),
    (
        "rtsp",
        "-fflags nobuffer -flags low_delay -timeout {timeout} -user_agent corecast/ffmpeg -rtsp_flags prefer_tcp -i {input}",
    ),
    (
        "rtsp/udp",
        "-fflags nobuffer -flags low_delay -timeout {timeout} -user_agent corecast/ffmpeg -i {input}",
    ),
    // output
    (
        "output",
        "-user_agent ffmpeg/corecast -rtsp_transport tcp -f rtsp {output}",
    ),
    // A lone MJPEG track comes on stdout (go2rtc's pipe).
    ("output/mjpeg", "-f mjpeg -"),
    // video
    (
        "h264",
        "-c:v libx264 -g 50 -profile:v high -level:v 4.1 -preset:v superfast -tune:v zerolatency -pix_fmt:v yuv420p",
    ),
    (
        "h265",
        "-c:v libx265 -g 50 -profile:v main -x265-params level=5.1:high-tier=0 -preset:v superfast -tune:v zerolatency -pix_fmt:v yuv420p",
    ),
    // go2rtc has `-c:v mjpeg`; corecast carries JPEG as RTP (RFC 2435), which takes only
    // the standard Huffman tables (ffmpeg's default is optimised ones).
    ("mjpeg", "-c:v mjpeg -huffman:v default"),
    ("raw", "-c:v rawvideo"),
    ("raw/gray8", "-c:v rawvideo -pix_fmt:v gray8"),
    ("raw/yuv420p", "-c:v rawvideo -pix_fmt:v yuv420p"),
    ("raw/yuv422p", "-c:v rawvideo -pix_fmt:v yuv422p"),
    ("raw/yuv444p", "-c:v rawvideo -pix_fmt:v yuv444p"),
    // audio
    ("opus", "-c:a libopus -application:a lowdelay -min_comp 0"),
    (
        "opus/16000",
        "-c:a libopus -application:a lowdelay -min_comp 0 -ar:a 16000 -ac:a 1",
    ),
    ("pcmu", "-c:a pcm_mulaw -ar:a 8000 -ac:a 1"),
    ("pcmu/8000", "-c:a pcm_mulaw -ar:a 8000 -ac:a 1"),
    ("pcmu/16000", "-c:a pcm_mulaw -ar:a 16000 -ac:a 1"),
    ("pcmu/48000", "-c:a pcm_mulaw -ar:a 48000 -ac:a 1"),
    ("pcma", "-c:a pcm_alaw -ar:a 8000 -ac:a 1"),
    ("pcma/8000", "-c:a pcm_alaw -ar:a 8000 -ac:a 1"),
    ("pcma/16000", "-c:a pcm_alaw -ar:a 16000 -ac:a 1"),
    ("pcma/48000", "-c:a pcm_alaw -ar:a 48000 -ac:a 1"),
    ("aac", "-c:a aac"),
    ("aac/16000", "-c:a aac -ar:a 16000 -ac:a 1"),
    ("mp3", "-c:a libmp3lame -q:a 8"),
    ("pcm", "-c:a pcm_s16be -ar:a 8000 -ac:a 1"),
    ("pcm/8000", "-c:a pcm_s16be -ar:a 8000 -ac:a 1"),
    ("pcm/16000", "-c:a pcm_s16be -ar:a 16000 -ac:a 1"),
    ("pcm/48000", "-c:a pcm_s16be -ar:a 48000 -ac:a 1"),
    ("pcml", "-c:a pcm_s16le -ar:a 8000 -ac:a 1"),
    ("pcml/8000", "-c:a pcm_s16le -ar:a 8000 -ac:a 1"),
    ("pcml/16000", "-c:a pcm_s16le -ar:a 16000 -ac:a 1"),
    ("pcml/44100", "-c:a pcm_s16le -ar:a 44100 -ac:a 1"),
    // hardware Intel and AMD on Linux (`-bf 0`: no B-frames, which live viewers need)
    (
        "h264/vaapi",
        "-c:v h264_vaapi -g 50 -bf 0 -profile:v high -level:v 4.1 -sei:v 0",
    ),
    (
        "h265/vaapi",
        "-c:v hevc_vaapi -g 50 -bf 0 -profile:v main -level:v 5.1 -sei:v 0",
    ),
    ("mjpeg/vaapi", "-c:v mjpeg_vaapi"),
    // hardware Raspberry Pi
    ("h264/v4l2m2m", "-c:v h264_v4l2m2m -g 50 -bf 0"),
    ("h265/v4l2m2m", "-c:v hevc_v4l2m2m -g 50 -bf 0"),
    // hardware Rockchip
    (
        "h264/rkmpp",
        "-c:v h264_rkmpp -g 50 -bf 0 -profile:v high -level:v 4.1",
    ),
    (
        "h265/rkmpp",
        "-c:v hevc_rkmpp -g 50 -bf 0 -profile:v main -level:v 5.1",
    ),
    ("mjpeg/rkmpp", "-c:v mjpeg_rkmpp"),
    // hardware NVIDIA
    (
        "h264/cuda",
        "-c:v h264_nvenc -g 50 -bf 0 -profile:v high -level:v auto -preset:v p2 -tune:v ll",
    ),
    (
        "h265/cuda",
        "-c:v hevc_nvenc -g 50 -bf 0 -profile:v main -level:v auto",
    ),
    // hardware Intel on Windows
    (
        "h264/dxva2",
        "-c:v h264_qsv -g 50 -bf 0 -profile:v high -level:v 4.1 -async_depth:v 1",
    ),
    (
        "h265/dxva2",
        "-c:v hevc_qsv -g 50 -bf 0 -profile:v main -level:v 5.1 -async_depth:v 1",
    ),
    ("mjpeg/dxva2", "-c:v mjpeg_qsv"),
    // hardware macOS
    (
        "h264/videotoolbox",
        "-c:v h264_videotoolbox -g 50 -bf 0 -profile:v high -level:v 4.1",
    ),
    (
        "h265/videotoolbox",
        "-c:v hevc_videotoolbox -g 50 -bf 0 -profile:v main -level:v 5.1",
    ),
];

/// `#hardware=` engines (go2rtc's names); `software` keeps the software encoders.
pub const ENGINES: &[&str] = &[
    "software",
    "vaapi",
    "cuda",
    "v4l2m2m",
    "dxva2",
    "videotoolbox",
    "rkmpp",
];

/// Why an `ffmpeg:` source cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FfmpegError {
    #[error("empty input")]
    EmptyInput,
    #[error("unknown template `{0}` (not built in and not in the ffmpeg: config section)")]
    UnknownTemplate(String),
    #[error("bad parameter `{0}`")]
    BadParam(String),
    #[error("input `{0}` is not supported (go2rtc's device/virtual/tts inputs are not)")]
    UnsupportedInput(String),
}

/// Looks up a template: config first, then built-ins.
fn template<'a>(name: &str, custom: &'a [(String, String)]) -> Option<&'a str> {
    custom
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .or_else(|| TEMPLATES.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
}

/// go2rtc's `configTemplate`: a template's text when `v` names one, else `v` itself.
fn config_template<'a>(v: &'a str, custom: &'a [(String, String)]) -> &'a str {
    template(v, custom).filter(|t| !t.is_empty()).unwrap_or(v)
}

/// One hardware check of the probe: an encode of a test picture with one engine's encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HwCheck {
    pub engine: &'static str,
    /// go2rtc's codec name: `h264`, `h265` or `mjpeg`.
    pub codec: &'static str,
    /// ffmpeg arguments (without the binary), go2rtc's `Probe*` commands.
    pub args: &'static str,
}

/// go2rtc's Linux probes on x86 (`hardware_unix.go`), in the order of its API's answer.
pub const HW_CHECKS_X86: &[HwCheck] = &[
    HwCheck { engine: "vaapi", codec: "h264", args: "-init_hw_device vaapi -f lavfi -i testsrc2 -t 1 -vf format=nv12,hwupload -c h264_vaapi -f null -" },
    HwCheck { engine: "vaapi", codec: "h265", args: "-init_hw_device vaapi -f lavfi -i testsrc2 -t 1 -vf format=nv12,hwupload -c hevc_vaapi -f null -" },
    HwCheck { engine: "vaapi", codec: "mjpeg", args: "-init_hw_device vaapi -f lavfi -i testsrc2 -t 1 -vf format=nv12,hwupload -c mjpeg_vaapi -f null -" },
    HwCheck { engine: "cuda", codec: "h264", args: "-init_hw_device cuda -f lavfi -i testsrc2 -t 1 -c h264_nvenc -f null -" },
    HwCheck { engine: "cuda", codec: "h265", args: "-init_hw_device cuda -f lavfi -i testsrc2 -t 1 -c hevc_nvenc -f null -" },
];

/// go2rtc's Linux probes on ARM (Raspberry Pi, Rockchip).
pub const HW_CHECKS_ARM: &[HwCheck] = &[
    HwCheck {
        engine: "v4l2m2m",
        codec: "h264",
        args: "-f lavfi -i testsrc2 -t 1 -c h264_v4l2m2m -f null -",
    },
    HwCheck {
        engine: "v4l2m2m",
        codec: "h265",
        args: "-f lavfi -i testsrc2 -t 1 -c hevc_v4l2m2m -f null -",
    },
    HwCheck {
        engine: "rkmpp",
        codec: "h264",
        args: "-f lavfi -i testsrc2 -t 1 -c h264_rkmpp -f null -",
    },
    HwCheck {
        engine: "rkmpp",
        codec: "h265",
        args: "-f lavfi -i testsrc2 -t 1 -c hevc_rkmpp -f null -",
    },
    HwCheck {
        engine: "rkmpp",
        codec: "mjpeg",
        args: "-f lavfi -i testsrc2 -t 1 -c mjpeg_rkmpp -f null -",
    },
];

/// The checks for this machine's architecture.
pub fn hw_checks() -> &'static [HwCheck] {
    if cfg!(any(target_arch = "arm", target_arch = "aarch64")) {
        HW_CHECKS_ARM
    } else {
        HW_CHECKS_X86
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwResult {
    pub engine: &'static str,
    pub codec: &'static str,
    /// None when the encode worked; else why not (ffmpeg's last error line, or a timeout).
    pub error: Option<String>,
}

impl HwResult {
    /// go2rtc's `/api/ffmpeg/hardware` entry: `name` is "OK" or the error, `url` the source
    /// suffix that uses this engine.
    pub fn api_name(&self) -> &str {
        self.error.as_deref().unwrap_or("OK")
    }

    pub fn api_url(&self) -> String {
        format!("ffmpeg:...#video={}#hardware={}", self.codec, self.engine)
    }
}

/// go2rtc's automatic choice (`ProbeHardware`): the first engine of its preference order
/// whose check for `codec` worked, or why none did.
pub fn auto_engine(results: &[HwResult], codec: &str) -> Result<&'static str, String> {
    let order: &[&str] = if cfg!(any(target_arch = "arm", target_arch = "aarch64")) {
        &["v4l2m2m", "rkmpp"]
    } else {
        &["cuda", "vaapi"]
    };
    let mut why = Vec::new();
    for engine in order {
        if let Some(r) = results
            .iter()
            .find(|r| r.engine == *engine && r.codec == codec)
        {
            match &r.error {
                None => return Ok(r.engine),
                Some(e) => why.push(format!("{engine}: {e}")),
            }
        }
    }
    if why.is_empty() {
        why.push(format!("no accelerator is known for {codec}"));
    }
    Err(why.join(", "))
}

/// True when `source` (after `ffmpeg:`) asks for an automatic hardware engine, so the
/// caller must run (or reuse) the hardware probe before `build`.
pub fn wants_hardware_probe(source: &str) -> bool {
    params(source)
        .iter()
        .any(|(k, v)| *k == "hardware" && v.is_empty())
}

/// What `build` needs from its surroundings.
pub struct Env<'a> {
    /// The `ffmpeg:` config section's templates.
    pub templates: &'a [(String, String)],
    /// The RTSP URL of another stream when INPUT names one.
    pub stream_url: &'a dyn Fn(&str) -> Option<String>,
    /// Where ffmpeg publishes (`{output}`).
    pub output: &'a str,
    /// The hardware probe, for `#hardware` without an engine (None: not probed).
    pub hardware: Option<&'a [HwResult]>,
    /// Whether the caller reads ffmpeg's stdout (go2rtc's pipe outputs); else every output
    /// publishes to `output`.
    pub stdout_ok: bool,
}

/// An argument list and what the caller should log about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// ffmpeg's arguments, without the binary.
    pub args: Vec<String>,
    /// Why `#hardware` fell back to software, if it did.
    pub hardware_note: Option<String>,
    /// ffmpeg writes its output to stdout (MJPEG) instead of publishing it.
    pub stdout: bool,
}

/// The `#key=value` parameters after INPUT, go2rtc's `ParseQuery` (a key without `=` has
/// an empty value).
fn params(source: &str) -> Vec<(&str, &str)> {
    source
        .split('#')
        .skip(1)
        .take(32)
        .map(|p| match p.find('=') {
            Some(i) if i > 0 => (&p[..i], &p[i + 1..]),
            _ => (p, ""),
        })
        .collect()
}

/// go2rtc's `ffmpeg.Args`: argument groups kept as text until the end, because the
/// hardware and multi-track rules rewrite them as text.
struct Args {
    input: Vec<String>,
    codecs: Vec<String>,
    filters: Vec<String>,
    video: usize,
    audio: usize,
}

impl Args {
    fn has_filters(&self, prefixes: &[&str]) -> bool {
        self.filters
            .iter()
            .any(|f| prefixes.iter().any(|p| f.starts_with(p)))
    }

    fn prepend_input(&mut self, words: &str) {
        let mut w: Vec<String> = words.split(' ').map(str::to_string).collect();
        w.append(&mut self.input);
        self.input = w;
    }
}

/// Arguments (without the binary) that read an `http(s)://` or `rtmp(s)://` URL with the
/// `global` and `http` templates (config overrides apply) and remux it, streams copied, to
/// MPEG-TS on stdout: a camera go2rtc reads natively, read here by ffmpeg.
pub fn copy_to_stdout(url: &str, custom: &[(String, String)]) -> Result<Vec<String>, FfmpegError> {
    let mut out = split_command(template("global", custom).unwrap_or(""))?;
    // ffmpeg's default 5 s of probing would outlast a reader's wait for the source.
    out.extend(
        [
            "-loglevel",
            "error",
            "-analyzeduration",
            "1000000",
            "-probesize",
            "500000",
        ]
        .map(String::from),
    );
    let input =
        template("http", custom).ok_or_else(|| FfmpegError::UnknownTemplate("http".into()))?;
    out.extend(
        split_command(input)?
            .into_iter()
            .map(|w| w.replacen("{input}", url, 1)),
    );
    out.extend(["-c", "copy", "-f", "mpegts", "-"].map(String::from));
    Ok(out)
}

/// Builds the argument list (without the binary) for `ffmpeg:` source text (after the
/// `ffmpeg:` prefix) without a hardware probe. See `build`.
pub fn build_args(
    source: &str,
    custom: &[(String, String)],
    stream_url: &dyn Fn(&str) -> Option<String>,
    output: &str,
) -> Result<Vec<String>, FfmpegError> {
    let env = Env {
        templates: custom,
        stream_url,
        output,
        hardware: None,
        stdout_ok: false,
    };
    build(source, &env).map(|b| b.args)
}

/// Builds the argument list (without the binary) for `ffmpeg:` source text (after the
/// `ffmpeg:` prefix), as go2rtc's `parseArgs`.
pub fn build(source: &str, env: &Env) -> Result<Built, FfmpegError> {
    let custom = env.templates;
    let input = source.split('#').next().unwrap_or("").trim();
    if input.is_empty() {
        return Err(FfmpegError::EmptyInput);
    }
    let query = params(source);
    let all = |key: &str| -> Vec<&str> {
        query
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    };
    let first = |key: &str| all(key).first().copied();
    let video = all("video");
    let audio = all("audio");
    let mut a = Args {
        input: Vec::new(),
        codecs: Vec::new(),
        filters: Vec::new(),
        video: video.len(),
        audio: audio.len(),
    };

    // The input template with {timeout} and {input} filled in; `#input=` picks another
    // template by name, or is one itself.
    let timeout = match first("timeout") {
        Some(t) => num(t, "timeout")?,
        None => template("timeout", custom).unwrap_or("5").to_string(),
    };
    let input_words = |name: &str, url: &str| -> Result<Vec<String>, FfmpegError> {
        let t = match first("input") {
            Some(i) => config_template(i, custom),
            None => {
                template(name, custom).ok_or_else(|| FfmpegError::UnknownTemplate(name.into()))?
            }
        };
        let t = t.replacen("{timeout}", &format!("{timeout}000000"), 1);
        Ok(split_command(&t)?
            .into_iter()
            .map(|w| w.replacen("{input}", url, 1))
            .collect())
    };
    if let Some(scheme) = input.find("://").filter(|&i| i > 0).map(|i| &input[..i]) {
        match scheme {
            "http" | "https" | "rtmp" => a.input = input_words("http", input)?,
            "rtsp" | "rtsps" => {
                // Only ask the camera for the kinds of tracks used.
                let types = match (a.video > 0, a.audio > 0) {
                    (true, false) => "video",
                    (false, true) => "audio",
                    _ => "video+audio",
                };
                a.input = vec!["-allowed_media_types".into(), types.into()];
                a.input.extend(input_words("rtsp", input)?);
            }
            _ => a.input = vec!["-i".into(), input.into()],
        }
    } else if let Some(base) = (env.stream_url)(input) {
        let mut url = base;
        url.push_str(match (a.video > 0, a.audio > 0) {
            (true, false) => "?video",
            (false, true) => "?audio",
            _ => "?video&audio",
        });
        for q in all("query") {
            url.push('&');
            url.push_str(q);
        }
        a.input = input_words("rtsp", &url)?;
    } else if let Some((kind @ ("device" | "virtual" | "tts"), _)) = input.split_once('?') {
        return Err(FfmpegError::UnsupportedInput(kind.into()));
    } else {
        a.input = input_words("file", input)?;
    }
    if first("async").is_some() {
        a.prepend_input("-use_wallclock_as_timestamps 1 -async 1");
    }

    for raw in all("raw") {
        a.codecs.push(config_template(raw, custom).to_string());
    }
    let (width, height) = (first("width"), first("height"));
    if width.is_some() || height.is_some() {
        a.filters.push(format!(
            "scale={}:{}",
            width.map(|w| size(w, "width")).transpose()?.unwrap_or("-1"),
            height
                .map(|h| size(h, "height"))
                .transpose()?
                .unwrap_or("-1"),
        ));
    }
    if let Some(r) = first("rotate") {
        a.filters.push(
            match r {
                "90" => "transpose=1",
                "180" => "transpose=1,transpose=1",
                "-90" | "270" => "transpose=2",
                _ => return Err(FfmpegError::BadParam(format!("rotate={r}"))),
            }
            .to_string(),
        );
    }
    for d in all("drawtext") {
        let mut d = config_template(d, custom).to_string();
        if !d.contains("text=") {
            // go2rtc's default text: the local date and time.
            d.push_str(r":text='%{localtime\:%Y-%m-%d %X}'");
        }
        a.filters.push(format!("drawtext={d}"));
    }
    for v in &video {
        a.codecs.push(codec("v", v, custom)?);
    }
    if let Some(b) = first("bitrate") {
        let b = bitrate(b)?;
        a.codecs.push(format!("-b:v {b} -maxrate {b} -bufsize {b}"));
    }
    for v in &audio {
        a.codecs.push(codec("a", v, custom)?);
    }
    let mut hardware_note = None;
    if let Some(engine) = first("hardware") {
        if !engine.is_empty() && !ENGINES.contains(&engine) {
            return Err(FfmpegError::BadParam(format!(
                "hardware={engine} (known: {})",
                ENGINES.join(", ")
            )));
        }
        hardware_note = make_hardware(&mut a, engine, custom, env.hardware);
    }
    match (a.video, a.audio) {
        (0, 0) => a.codecs.push("-c copy".into()),
        (0, _) => a.codecs.push("-vn".into()),
        (_, 0) => a.codecs.push("-an".into()),
        _ => {}
    }

    // go2rtc's `Args.String`.
    let mut args =
        split_command(template("global", custom).unwrap_or("")).or_else(|e| match e {
            FfmpegError::EmptyInput => Ok(Vec::new()),
            e => Err(e),
        })?;
    args.append(&mut a.input);
    // Several video or audio outputs: each takes the first input track of its kind, with
    // its own stream index on every per-stream option.
    let multi = a.video > 1 || a.audio > 1;
    let (mut iv, mut ia) = (0, 0);
    for c in &a.codecs {
        let c = if multi && c.starts_with("-c:v ") {
            iv += 1;
            format!(
                "-map 0:v:0? {}",
                c.replace(":v ", &format!(":v:{} ", iv - 1))
            )
        } else if multi && c.starts_with("-c:a ") {
            ia += 1;
            format!(
                "-map 0:a:0? {}",
                c.replace(":a ", &format!(":a:{} ", ia - 1))
            )
        } else {
            c.clone()
        };
        if c.trim().is_empty() {
            continue;
        }
        args.extend(split_command(&c)?);
    }
    if !a.filters.is_empty() {
        args.extend(["-vf".into(), a.filters.join(",")]);
    }
    // go2rtc's pipe output for a lone MJPEG track.
    let stdout = env.stdout_ok
        && a.video == 1
        && a.audio == 0
        && video[0].split('/').next() == Some("mjpeg");
    let out_name = if stdout { "output/mjpeg" } else { "output" };
    let out =
        template(out_name, custom).ok_or_else(|| FfmpegError::UnknownTemplate(out_name.into()))?;
    args.extend(
        split_command(out)?
            .into_iter()
            .map(|w| w.replace("{output}", env.output)),
    );
    Ok(Built {
        args,
        hardware_note,
        stdout,
    })
}

/// A `#video=`/`#audio=` value as codec arguments: `copy` (or nothing) copies.
fn codec(kind: &str, v: &str, custom: &[(String, String)]) -> Result<String, FfmpegError> {
    if v.is_empty() || v == "copy" {
        return Ok(format!("-c:{kind} copy"));
    }
    if v.starts_with("pcml") && !custom.iter().any(|(k, _)| k == v) {
        // ffmpeg's RTP muxer sends it without a payload format (no rtpmap): no reader can
        // tell what it is. go2rtc pipes it as WAV, which corecast does not read.
        return Err(FfmpegError::BadParam(format!(
            "{kind}={v}: ffmpeg cannot send little-endian PCM over RTSP; use pcm (big-endian)"
        )));
    }
    template(v, custom)
        .map(str::to_string)
        .ok_or_else(|| FfmpegError::UnknownTemplate(v.into()))
}

/// go2rtc's `MakeHardware`: software encoders swapped for an engine's, with its decoder
/// options on the input and its filters. Returns why an automatic choice stayed in
/// software, if it did.
fn make_hardware(
    a: &mut Args,
    requested: &str,
    custom: &[(String, String)],
    probe: Option<&[HwResult]>,
) -> Option<String> {
    let mut engine = requested;
    let mut note = None;
    for i in 0..a.codecs.len() {
        let codec = &a.codecs[i];
        if codec.len() < 10 {
            continue; // `-c:v copy` and the like
        }
        let name = match codec.split(' ').nth(1) {
            Some("libx264") => "h264",
            Some("libx265") => "h265",
            Some("mjpeg") => "mjpeg",
            _ => continue,
        };
        if engine.is_empty() {
            // go2rtc does not choose automatically for H.265.
            let chosen = if name == "h265" {
                Err("no automatic choice for H.265 (as go2rtc); name an engine".to_string())
            } else {
                match probe {
                    Some(p) => auto_engine(p, name),
                    None => Err("the hardware probe did not run".to_string()),
                }
            };
            match chosen {
                Ok(e) => engine = e,
                Err(why) => {
                    note = Some(format!(
                        "#hardware: no accelerator works for {name} ({why}), using software"
                    ));
                    if name == "h265" {
                        continue;
                    }
                    engine = "software";
                }
            }
        }
        let Some(hw) = template(&format!("{name}/{engine}"), custom) else {
            // No encoder of this engine for this codec (e.g. MJPEG on CUDA).
            if engine != "software" {
                note = Some(format!(
                    "#hardware={engine}: no {name} encoder for it, using software"
                ));
            }
            continue;
        };
        a.codecs[i] = hw.to_string();
        match engine {
            "vaapi" => {
                if !a.has_filters(&["drawtext="]) {
                    a.prepend_input(
                        "-hwaccel vaapi -hwaccel_output_format vaapi -hwaccel_flags allow_profile_mismatch",
                    );
                    if name == "h264" {
                        fix_pixel_format(a);
                    }
                    for f in &mut a.filters {
                        if let Some(rest) = f.strip_prefix("scale=") {
                            *f = format!("scale_vaapi={rest}");
                        } else if f == "transpose=1,transpose=1" {
                            *f = "transpose_vaapi=4".into(); // a half turn
                        } else if let Some(rest) = f.strip_prefix("transpose=") {
                            *f = format!("transpose_vaapi={rest}");
                        }
                    }
                    // Frames decoded in software are uploaded; hardware ones pass.
                    a.filters.insert(0, "format=vaapi|nv12,hwupload".into());
                } else {
                    // drawtext needs frames in memory: decode to nv12, upload at the end.
                    a.prepend_input(
                        "-hwaccel vaapi -hwaccel_output_format nv12 -hwaccel_flags allow_profile_mismatch",
                    );
                    a.filters.push("hwupload".into());
                }
            }
            "cuda" => {
                // CUDA has no hardware transpose.
                if !a.has_filters(&["drawtext=", "transpose="]) {
                    a.prepend_input("-hwaccel cuda -hwaccel_output_format cuda");
                    for f in &mut a.filters {
                        if let Some(rest) = f.strip_prefix("scale=") {
                            *f = format!("scale_cuda={rest}");
                        }
                    }
                } else {
                    a.prepend_input("-hwaccel cuda -hwaccel_output_format nv12");
                    a.filters.push("hwupload".into());
                }
            }
            "dxva2" => {
                a.prepend_input("-hwaccel dxva2 -hwaccel_output_format dxva2_vld");
                for f in &mut a.filters {
                    if let Some(rest) = f.strip_prefix("scale=") {
                        *f = format!("scale_qsv={rest}");
                    }
                }
                a.filters
                    .insert(0, "hwmap=derive_device=qsv,format=qsv".into());
            }
            "videotoolbox" => {
                a.prepend_input("-hwaccel videotoolbox -hwaccel_output_format videotoolbox_vld");
            }
            "rkmpp" => {
                if !a.has_filters(&["drawtext="]) {
                    a.prepend_input("-hwaccel rkmpp -hwaccel_output_format drm_prime -afbc rga");
                    for f in &mut a.filters {
                        if let Some(rest) = f.strip_prefix("scale=") {
                            *f = format!("scale_rkrga={rest}:force_original_aspect_ratio=0");
                        } else if f == "transpose=1,transpose=1" {
                            *f = "vpp_rkrga=transpose=4".into();
                        } else if let Some(rest) = f.strip_prefix("transpose=") {
                            *f = format!("vpp_rkrga=transpose={rest}");
                        }
                    }
                    if !a.filters.is_empty() {
                        a.filters.insert(0, "format=drm_prime|nv12,hwupload".into());
                    }
                } else {
                    a.prepend_input("-hwaccel rkmpp -hwaccel_output_format nv12 -afbc rga");
                    a.filters.push("hwupload".into());
                }
            }
            // v4l2m2m: the encoder only.
            _ => {}
        }
    }
    note
}

/// go2rtc's `fixPixelFormat`: VAAPI H.264 wants limited-range BT.709 NV12, whatever the
/// source's range (JPEG cameras give full range).
fn fix_pixel_format(a: &mut Args) {
    const FIX: &str = "out_color_matrix=bt709:out_range=tv:format=nv12";
    for f in &mut a.filters {
        if f.starts_with("scale=") {
            f.push(':');
            f.push_str(FIX);
            return;
        }
    }
    a.filters.push(format!("scale={FIX}"));
}

fn num(v: &str, key: &str) -> Result<String, FfmpegError> {
    if !v.is_empty() && v.len() <= 5 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(v.to_string())
    } else {
        Err(FfmpegError::BadParam(format!("{key}={v}")))
    }
}

/// A scale dimension: pixels, or ffmpeg's -1/-2 (keep the aspect ratio).
fn size<'a>(v: &'a str, key: &str) -> Result<&'a str, FfmpegError> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(v)
    } else {
        Err(FfmpegError::BadParam(format!("{key}={v}")))
    }
}

/// A bitrate as ffmpeg takes it: digits with an optional k/M suffix (`2M`, `500k`).
fn bitrate(v: &str) -> Result<&str, FfmpegError> {
    let digits = v.trim_end_matches(['k', 'K', 'm', 'M']);
    let ok = !digits.is_empty()
        && v.len() - digits.len() <= 1
        && v.len() <= 12
        && digits.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(v)
    } else {
        Err(FfmpegError::BadParam(format!("bitrate={v}")))
    }
}

/// Splits an `exec:` command line into words: whitespace-separated, with double or single
/// quotes grouping (no shell is involved; `{output}` is substituted by the caller).
pub fn split_command(cmd: &str) -> Result<Vec<String>, FfmpegError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in cmd.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(FfmpegError::BadParam("unbalanced quote".into()));
    }
    if in_word {
        out.push(cur);
    }
    if out.is_empty() {
        return Err(FfmpegError::EmptyInput);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_stream(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn copy_to_stdout_uses_the_templates() {
        let args = copy_to_stdout("http://cam/video.ts", &[]).unwrap();
        assert_eq!(
            args.join(" "),
            "-hide_banner -loglevel error -analyzeduration 1000000 -probesize 500000 \
             -fflags nobuffer -flags low_delay -i http://cam/video.ts -c copy -f mpegts -"
        );
        // A config override of the `http` input template applies, as for `ffmpeg:` sources.
        let custom = [(
            "http".to_string(),
            "-rw_timeout 5000000 -i {input}".to_string(),
        )];
        let args = copy_to_stdout("rtmp://cam/live", &custom).unwrap();
        assert!(args
            .join(" ")
            .contains("-rw_timeout 5000000 -i rtmp://cam/live -c copy"));
    }

    /// go2rtc's `shell.QuoteSplit`, to read its expected command lines as argument lists.
    fn quote_split(mut s: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(c) = s.chars().next() {
            match c {
                ' ' | '\t' | '\n' | '\r' => s = &s[1..],
                '"' | '\'' => {
                    let i = s[1..].find(c).expect("balanced quotes") + 1;
                    out.push(s[1..i].to_string());
                    s = &s[i + 1..];
                }
                _ => {
                    let i = s.find([' ', '\t', '\n', '\r']).unwrap_or(s.len());
                    out.push(s[..i].to_string());
                    s = &s[i..];
                }
            }
        }
        out
    }

    /// Our arguments for `source` with `probe`, as one go2rtc-style command line.
    fn ours_with(source: &str, probe: Option<&[HwResult]>) -> Vec<String> {
        let env = Env {
            templates: &[],
            stream_url: &no_stream,
            output: "{output}",
            hardware: probe,
            stdout_ok: true,
        };
        let mut v = vec!["ffmpeg".to_string()];
        v.extend(
            build(source, &env)
                .unwrap_or_else(|e| panic!("{source}: {e}"))
                .args,
        );
        v
    }

    /// Asserts our arguments equal go2rtc's expectation (its user agents renamed).
    #[track_caller]
    fn same_as_go2rtc(source: &str, expect: &str) {
        let expect = expect
            .replace("go2rtc/ffmpeg", "corecast/ffmpeg")
            .replace("ffmpeg/go2rtc", "ffmpeg/corecast");
        assert_eq!(ours_with(source, None), quote_split(&expect), "{source}");
    }

    /// Cases from go2rtc's internal/ffmpeg/ffmpeg_test.go (file, HTTP, RTSP, audio), with
    /// the RTSP output for lone AAC/PCM tracks (go2rtc pipes those to stdout).
    #[test]
    fn go2rtc_parse_args() {
        const OUT: &str = "-user_agent ffmpeg/go2rtc -rtsp_transport tcp -f rtsp {output}";
        const X264: &str = "-c:v libx264 -g 50 -profile:v high -level:v 4.1 -preset:v superfast -tune:v zerolatency -pix_fmt:v yuv420p";
        const RTSP_IN: &str = "-fflags nobuffer -flags low_delay -timeout 5000000 -user_agent go2rtc/ffmpeg -rtsp_flags prefer_tcp -i rtsp://example.com";
        let cases: Vec<(&str, String)> = vec![
            ("/media/bbb.mp4", format!("ffmpeg -hide_banner -re -i /media/bbb.mp4 -c copy {OUT}")),
            ("/media/bbb.mp4#video=h264", format!("ffmpeg -hide_banner -re -i /media/bbb.mp4 {X264} -an {OUT}")),
            ("/media/bbb.mp4#video=copy#audio=pcmu", format!("ffmpeg -hide_banner -re -i /media/bbb.mp4 -c:v copy -c:a pcm_mulaw -ar:a 8000 -ac:a 1 {OUT}")),
            ("/media/bbb.mp4#video=h265#rotate=-90", format!("ffmpeg -hide_banner -re -i /media/bbb.mp4 -c:v libx265 -g 50 -profile:v main -x265-params level=5.1:high-tier=0 -preset:v superfast -tune:v zerolatency -pix_fmt:v yuv420p -an -vf \"transpose=2\" {OUT}")),
            ("/media/bbb.mp4#video=mjpeg", "ffmpeg -hide_banner -re -i /media/bbb.mp4 -c:v mjpeg -huffman:v default -an -f mjpeg -".into()),
            ("ffmpeg:test.mp4#raw=-ss 00:00:20", format!("ffmpeg -hide_banner -re -i ffmpeg:test.mp4 -ss 00:00:20 -c copy {OUT}")),
            ("http://example.com", format!("ffmpeg -hide_banner -fflags nobuffer -flags low_delay -i http://example.com -c copy {OUT}")),
            ("http://example.com#video=h264", format!("ffmpeg -hide_banner -fflags nobuffer -flags low_delay -i http://example.com {X264} -an {OUT}")),
            ("https://example.com#video=copy", format!("ffmpeg -hide_banner -fflags nobuffer -flags low_delay -i https://example.com -c:v copy -an {OUT}")),
            ("rtsp://example.com", format!("ffmpeg -hide_banner -allowed_media_types video+audio {RTSP_IN} -c copy {OUT}")),
            ("rtsp://example.com#video=h265#width=1280#height=720", format!("ffmpeg -hide_banner -allowed_media_types video {RTSP_IN} -c:v libx265 -g 50 -profile:v main -x265-params level=5.1:high-tier=0 -preset:v superfast -tune:v zerolatency -pix_fmt:v yuv420p -an -vf \"scale=1280:720\" {OUT}")),
            ("rtsp://example.com#input=rtsp/udp", format!("ffmpeg -hide_banner -allowed_media_types video+audio -fflags nobuffer -flags low_delay -timeout 5000000 -user_agent go2rtc/ffmpeg -i rtsp://example.com -c copy {OUT}")),
            ("rtmp://example.com#input=rtsp/udp", format!("ffmpeg -hide_banner -fflags nobuffer -flags low_delay -timeout 5000000 -user_agent go2rtc/ffmpeg -i rtmp://example.com -c copy {OUT}")),
            ("rtsp://example.com#timeout=10", format!("ffmpeg -hide_banner -allowed_media_types video+audio -fflags nobuffer -flags low_delay -timeout 10000000 -user_agent go2rtc/ffmpeg -rtsp_flags prefer_tcp -i rtsp://example.com -c copy {OUT}")),
            ("rtsp://example.com#audio=aac", format!("ffmpeg -hide_banner -allowed_media_types audio {RTSP_IN} -c:a aac -vn {OUT}")),
            ("rtsp://example.com#audio=aac/16000", format!("ffmpeg -hide_banner -allowed_media_types audio {RTSP_IN} -c:a aac -ar:a 16000 -ac:a 1 -vn {OUT}")),
            ("rtsp://example.com#audio=opus", format!("ffmpeg -hide_banner -allowed_media_types audio {RTSP_IN} -c:a libopus -application:a lowdelay -min_comp 0 -vn {OUT}")),
            ("rtsp://example.com#audio=pcmu/48000", format!("ffmpeg -hide_banner -allowed_media_types audio {RTSP_IN} -c:a pcm_mulaw -ar:a 48000 -ac:a 1 -vn {OUT}")),
            ("rtsp://example.com#audio=pcma/16000", format!("ffmpeg -hide_banner -allowed_media_types audio {RTSP_IN} -c:a pcm_alaw -ar:a 16000 -ac:a 1 -vn {OUT}")),
            // drawtext (go2rtc's TestDrawText)
            ("http:///example.com#video=h264#drawtext=fontsize=12", format!("ffmpeg -hide_banner -fflags nobuffer -flags low_delay -i http:///example.com {X264} -an -vf \"drawtext=fontsize=12:text='%{{localtime\\:%Y-%m-%d %X}}'\" {OUT}")),
            ("http:///example.com#video=h264#width=640#drawtext=fontsize=12", format!("ffmpeg -hide_banner -fflags nobuffer -flags low_delay -i http:///example.com {X264} -an -vf \"scale=640:-1,drawtext=fontsize=12:text='%{{localtime\\:%Y-%m-%d %X}}'\" {OUT}")),
        ];
        for (source, expect) in &cases {
            same_as_go2rtc(source, expect);
        }
    }

    /// go2rtc's hardware cases (TestParseArgsHwVaapi, TestParseArgsHwRKMPP, TestDeckLink,
    /// TestDrawText, and its disabled CUDA/DXVA2/VideoToolbox/V4L2 cases as its current
    /// code builds them).
    #[test]
    fn go2rtc_hardware_args() {
        const OUT: &str = "-user_agent ffmpeg/go2rtc -rtsp_transport tcp -f rtsp {output}";
        const VAAPI: &str =
            "-hwaccel vaapi -hwaccel_output_format vaapi -hwaccel_flags allow_profile_mismatch";
        const RTSP_IN: &str = "-fflags nobuffer -flags low_delay -timeout 5000000 -user_agent go2rtc/ffmpeg -rtsp_flags prefer_tcp -i rtsp://example.com";
        const H264_VAAPI: &str =
            "-c:v h264_vaapi -g 50 -bf 0 -profile:v high -level:v 4.1 -sei:v 0";
        const RK: &str = "-hwaccel rkmpp -hwaccel_output_format drm_prime -afbc rga -re -i bbb.mp4 -c:v h264_rkmpp -g 50 -bf 0 -profile:v high -level:v 4.1 -an";
        let cases: Vec<(&str, String)> = vec![
            ("http:///example.com#video=h264#hardware=vaapi", format!("ffmpeg -hide_banner {VAAPI} -fflags nobuffer -flags low_delay -i http:///example.com {H264_VAAPI} -an -vf \"format=vaapi|nv12,hwupload,scale_vaapi=out_color_matrix=bt709:out_range=tv:format=nv12\" {OUT}")),
            ("rtsp://example.com#video=h264#rotate=180#hardware=vaapi", format!("ffmpeg -hide_banner {VAAPI} -allowed_media_types video {RTSP_IN} {H264_VAAPI} -an -vf \"format=vaapi|nv12,hwupload,transpose_vaapi=4,scale_vaapi=out_color_matrix=bt709:out_range=tv:format=nv12\" {OUT}")),
            ("rtsp://example.com#video=h265#width=1280#height=720#hardware=vaapi", format!("ffmpeg -hide_banner {VAAPI} -allowed_media_types video {RTSP_IN} -c:v hevc_vaapi -g 50 -bf 0 -profile:v main -level:v 5.1 -sei:v 0 -an -vf \"format=vaapi|nv12,hwupload,scale_vaapi=1280:720\" {OUT}")),
            ("/media/bbb.mp4#video=mjpeg#hardware=vaapi", format!("ffmpeg -hide_banner {VAAPI} -re -i /media/bbb.mp4 -c:v mjpeg_vaapi -an -vf \"format=vaapi|nv12,hwupload\" -f mjpeg -")),
            ("bbb.mp4#video=h264#hardware=rkmpp", format!("ffmpeg -hide_banner {RK} {OUT}")),
            ("bbb.mp4#video=h264#rotate=180#hardware=rkmpp", format!("ffmpeg -hide_banner {RK} -vf \"format=drm_prime|nv12,hwupload,vpp_rkrga=transpose=4\" {OUT}")),
            ("bbb.mp4#video=h264#height=320#hardware=rkmpp", format!("ffmpeg -hide_banner {RK} -vf \"format=drm_prime|nv12,hwupload,scale_rkrga=-1:320:force_original_aspect_ratio=0\" {OUT}")),
            (r#"DeckLink SDI (2)#video=h264#hardware=vaapi#input=-format_code Hp29 -f decklink -i "{input}""#, format!("ffmpeg -hide_banner {VAAPI} -format_code Hp29 -f decklink -i \"DeckLink SDI (2)\" {H264_VAAPI} -an -vf \"format=vaapi|nv12,hwupload,scale_vaapi=out_color_matrix=bt709:out_range=tv:format=nv12\" {OUT}")),
            ("http:///example.com#video=h264#width=640#drawtext=fontsize=12#hardware=vaapi", format!("ffmpeg -hide_banner -hwaccel vaapi -hwaccel_output_format nv12 -hwaccel_flags allow_profile_mismatch -fflags nobuffer -flags low_delay -i http:///example.com {H264_VAAPI} -an -vf \"scale=640:-1,drawtext=fontsize=12:text='%{{localtime\\:%Y-%m-%d %X}}',hwupload\" {OUT}")),
            ("http:///example.com#video=h264#hardware=cuda", format!("ffmpeg -hide_banner -hwaccel cuda -hwaccel_output_format cuda -fflags nobuffer -flags low_delay -i http:///example.com -c:v h264_nvenc -g 50 -bf 0 -profile:v high -level:v auto -preset:v p2 -tune:v ll -an {OUT}")),
            ("rtsp://example.com#video=h264#rotate=180#hardware=cuda", format!("ffmpeg -hide_banner -hwaccel cuda -hwaccel_output_format nv12 -allowed_media_types video {RTSP_IN} -c:v h264_nvenc -g 50 -bf 0 -profile:v high -level:v auto -preset:v p2 -tune:v ll -an -vf \"transpose=1,transpose=1,hwupload\" {OUT}")),
            ("rtsp://example.com#video=h265#width=1280#height=720#hardware=cuda", format!("ffmpeg -hide_banner -hwaccel cuda -hwaccel_output_format cuda -allowed_media_types video {RTSP_IN} -c:v hevc_nvenc -g 50 -bf 0 -profile:v main -level:v auto -an -vf \"scale_cuda=1280:720\" {OUT}")),
            ("rtsp://example.com#video=h264#rotate=180#hardware=dxva2", format!("ffmpeg -hide_banner -hwaccel dxva2 -hwaccel_output_format dxva2_vld -allowed_media_types video {RTSP_IN} -c:v h264_qsv -g 50 -bf 0 -profile:v high -level:v 4.1 -async_depth:v 1 -an -vf \"hwmap=derive_device=qsv,format=qsv,transpose=1,transpose=1\" {OUT}")),
            ("rtsp://example.com#video=h265#width=1280#height=720#hardware=videotoolbox", format!("ffmpeg -hide_banner -hwaccel videotoolbox -hwaccel_output_format videotoolbox_vld -allowed_media_types video {RTSP_IN} -c:v hevc_videotoolbox -g 50 -bf 0 -profile:v main -level:v 5.1 -an -vf \"scale=1280:720\" {OUT}")),
            ("rtsp://example.com#video=h264#rotate=180#hardware=v4l2m2m", format!("ffmpeg -hide_banner -allowed_media_types video {RTSP_IN} -c:v h264_v4l2m2m -g 50 -bf 0 -an -vf \"transpose=1,transpose=1\" {OUT}")),
        ];
        for (source, expect) in &cases {
            same_as_go2rtc(source, expect);
        }
    }

    /// Repeated `#video=`/`#audio=`: one output each, mapping the first input track of the
    /// kind, with per-stream options renumbered (go2rtc's `Args.String` multimode).
    #[test]
    fn repeated_codecs_are_separate_outputs() {
        let url = |n: &str| (n == "cam").then(|| "rtsp://127.0.0.1:8554/cam".to_string());
        let s = build_args(
            "cam#video=copy#audio=copy#audio=opus/16000",
            &[],
            &url,
            "OUT",
        )
        .unwrap()
        .join(" ");
        assert_eq!(
            s,
            "-hide_banner -fflags nobuffer -flags low_delay -timeout 5000000 -user_agent \
             corecast/ffmpeg -rtsp_flags prefer_tcp -i rtsp://127.0.0.1:8554/cam?video&audio \
             -map 0:v:0? -c:v:0 copy -map 0:a:0? -c:a:0 copy -map 0:a:0? -c:a:1 libopus \
             -application:a:1 lowdelay -min_comp 0 -ar:a:1 16000 -ac:a:1 1 \
             -user_agent ffmpeg/corecast -rtsp_transport tcp -f rtsp OUT"
        );
        let s = build_args("f.mp4#video=h264#video=copy", &[], &no_stream, "O")
            .unwrap()
            .join(" ");
        assert!(
            s.contains("-map 0:v:0? -c:v:0 libx264 -g 50 -profile:v:0 high -level:v:0 4.1")
                && s.contains("-map 0:v:0? -c:v:1 copy -an"),
            "{s}"
        );
    }

    #[test]
    fn stream_input_asks_for_the_kinds_used() {
        let url = |n: &str| (n == "cam1").then(|| "rtsp://127.0.0.1:8554/cam1".to_string());
        let s = build_args("cam1#audio=opus#query=audio=all", &[], &url, "O")
            .unwrap()
            .join(" ");
        assert!(
            s.contains("-i rtsp://127.0.0.1:8554/cam1?audio&audio=all -c:a libopus"),
            "{s}"
        );
        let s = build_args("cam1#video=h264", &[], &url, "O")
            .unwrap()
            .join(" ");
        assert!(s.contains("/cam1?video -c:v libx264"), "{s}");
    }

    #[test]
    fn every_go2rtc_template_is_built_in() {
        for name in [
            "copy",
            "h264",
            "h265",
            "mjpeg",
            "raw",
            "raw/yuv420p",
            "opus",
            "opus/16000",
            "pcmu",
            "pcmu/8000",
            "pcmu/16000",
            "pcmu/48000",
            "pcma",
            "pcma/8000",
            "pcma/16000",
            "pcma/48000",
            "aac",
            "aac/16000",
            "mp3",
            "pcm",
            "pcm/8000",
            "pcm/16000",
            "pcm/48000",
        ] {
            let kind = if ["h264", "h265", "mjpeg", "raw", "copy"]
                .contains(&name.split('/').next().unwrap())
            {
                "video"
            } else {
                "audio"
            };
            build_args(&format!("f.mp4#{kind}={name}"), &[], &no_stream, "O")
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let s = build_args("f#audio=mp3", &[], &no_stream, "O")
            .unwrap()
            .join(" ");
        assert!(s.contains("-c:a libmp3lame -q:a 8 -vn"), "{s}");
        for name in ["pcml", "pcml/8000", "pcml/16000", "pcml/44100"] {
            assert!(template(name, &[]).is_some_and(|t| t.contains("pcm_s16le")));
            let e = build_args(&format!("f#audio={name}"), &[], &no_stream, "O").unwrap_err();
            assert!(e.to_string().contains("little-endian"), "{e}");
        }
        // Over RTSP unless the caller reads a lone MJPEG track from stdout.
        let s = build_args("f#video=mjpeg", &[], &no_stream, "O")
            .unwrap()
            .join(" ");
        assert!(s.ends_with("-f rtsp O"), "{s}");
    }

    #[test]
    fn raw_keeps_quoting_and_bitrate_follows_video() {
        let s = build_args(
            r##"f.mp4#video=h264#raw=-metadata title="a b"#bitrate=2M"##,
            &[],
            &no_stream,
            "O",
        )
        .unwrap();
        let i = s
            .iter()
            .position(|w| w == "title=a b")
            .expect("quoted word kept");
        assert_eq!(s[i - 1], "-metadata");
        let j = s.iter().position(|w| w == "-b:v").unwrap();
        assert_eq!(
            s[j..j + 6],
            ["-b:v", "2M", "-maxrate", "2M", "-bufsize", "2M"]
        );
        assert!(j > s.iter().position(|w| w == "libx264").unwrap());
        assert!(build_args("f#video=h264#bitrate=2M;x", &[], &no_stream, "O").is_err());
        assert!(build_args("f#raw=-x \"open", &[], &no_stream, "O").is_err());
    }

    #[test]
    fn input_templates_by_name_or_raw() {
        let custom = vec![(
            "myin".to_string(),
            "-rtsp_transport udp -i {input}".to_string(),
        )];
        let s = build_args("rtsp://cam/x#input=myin", &custom, &no_stream, "O")
            .unwrap()
            .join(" ");
        assert!(
            s.contains("video+audio -rtsp_transport udp -i rtsp://cam/x -c copy"),
            "{s}"
        );
        let s = build_args(
            "my file.mp4#input=-stream_loop -1 -i {input}",
            &[],
            &no_stream,
            "O",
        )
        .unwrap();
        assert!(s.windows(2).any(|w| w == ["-i", "my file.mp4"]), "{s:?}");
    }

    #[test]
    fn automatic_hardware_uses_the_probe() {
        let probe = |vaapi: bool| -> Vec<HwResult> {
            hw_checks()
                .iter()
                .map(|c| HwResult {
                    engine: c.engine,
                    codec: c.codec,
                    error: (!(vaapi && c.engine == "vaapi"))
                        .then(|| format!("{} failed", c.engine)),
                })
                .collect()
        };
        let env = |p: Option<&'static [HwResult]>| Env {
            templates: &[],
            stream_url: &no_stream,
            output: "O",
            hardware: p,
            stdout_ok: false,
        };
        assert!(wants_hardware_probe("f.mp4#video=h264#hardware"));
        assert!(!wants_hardware_probe("f.mp4#video=h264#hardware=vaapi"));
        let none: &'static [HwResult] = Box::leak(probe(false).into_boxed_slice());
        let b = build("f.mp4#video=h264#hardware", &env(Some(none))).unwrap();
        assert!(b.args.join(" ").contains("-c:v libx264"), "{:?}", b.args);
        let note = b.hardware_note.expect("a reason");
        assert!(
            note.starts_with("#hardware: no accelerator works for h264 ("),
            "{note}"
        );
        assert!(note.ends_with("), using software"), "{note}");
        let b = build("f.mp4#video=h264#hardware", &env(None)).unwrap();
        assert!(b.hardware_note.is_some());
        let b = build("f.mp4#audio=opus#hardware", &env(Some(none))).unwrap();
        assert_eq!(b.hardware_note, None, "nothing to accelerate");
        if !cfg!(any(target_arch = "arm", target_arch = "aarch64")) {
            assert!(none[0].api_name().contains("failed"));
            assert_eq!(none[0].api_url(), "ffmpeg:...#video=h264#hardware=vaapi");
            let vaapi: &'static [HwResult] = Box::leak(probe(true).into_boxed_slice());
            assert_eq!(auto_engine(vaapi, "h264"), Ok("vaapi"));
            assert_eq!(vaapi[0].api_name(), "OK");
            let b = build("f.mp4#video=h264#hardware", &env(Some(vaapi))).unwrap();
            assert_eq!(b.hardware_note, None);
            assert!(b.args.join(" ").contains("-c:v h264_vaapi"), "{:?}", b.args);
            let e = auto_engine(none, "h264").unwrap_err();
            assert_eq!(e, "cuda: cuda failed, vaapi: vaapi failed");
        }
        assert!(build("f#video=h264#hardware=quantum", &env(None)).is_err());
    }

    #[test]
    fn custom_templates_and_errors() {
        let custom = vec![
            ("h264".to_string(), "-c:v h264_vaapi".to_string()),
            ("mine".to_string(), "-c:v libx264 -crf 30".to_string()),
        ];
        let s = build_args("f.mp4#video=h264", &custom, &no_stream, "O")
            .unwrap()
            .join(" ");
        assert!(s.contains("-c:v h264_vaapi"), "{s}");
        let s = build_args("f.mp4#video=mine", &custom, &no_stream, "O")
            .unwrap()
            .join(" ");
        assert!(s.contains("-crf 30"), "{s}");
        assert_eq!(
            build_args("f.mp4#video=nope", &[], &no_stream, "O"),
            Err(FfmpegError::UnknownTemplate("nope".into()))
        );
        assert_eq!(
            build_args("#video=h264", &[], &no_stream, "O"),
            Err(FfmpegError::EmptyInput)
        );
        assert!(build_args("f#width=abc", &[], &no_stream, "O").is_err());
        assert!(build_args("f#rotate=45", &[], &no_stream, "O").is_err());
        assert!(build_args("f#timeout=1;x", &[], &no_stream, "O").is_err());
        assert!(build_args("device?video=0", &[], &no_stream, "O").is_err());
        let s = build_args("f#video=h264#width=-2#height=480", &[], &no_stream, "O")
            .unwrap()
            .join(" ");
        assert!(s.contains("-vf scale=-2:480"), "{s}");
    }

    #[test]
    fn command_splitting() {
        assert_eq!(
            split_command(r#"ffmpeg -i "my file.mp4" -f 'mpegts' -"#).unwrap(),
            vec!["ffmpeg", "-i", "my file.mp4", "-f", "mpegts", "-"]
        );
        assert!(split_command("a \"b").is_err());
        assert!(split_command("   ").is_err());
        assert_eq!(split_command("x \"\" y").unwrap(), vec!["x", "", "y"]);
    }
}
