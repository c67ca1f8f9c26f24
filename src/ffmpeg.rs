//! `ffmpeg:` sources: go2rtc's templates turned into an ffmpeg argument list.
//!
//! `ffmpeg:INPUT#video=h264#audio=opus#width=640...`: INPUT is a file, a URL, or the name of
//! another stream (read back from our own RTSP server). The output publishes to our RTSP
//! server under the stream's own name (`{output}`), so it flows like any publisher.

/// Built-in templates (go2rtc's defaults, `internal/ffmpeg`). The `ffmpeg:` config section
/// overrides or adds to them by name.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("global", "-hide_banner"),
    ("file", "-re -i {input}"),
    ("http", "-fflags nobuffer -flags low_delay -i {input}"),
    (
        "rtsp",
        "-fflags nobuffer -flags low_delay -timeout 5000000 -user_agent corecast/ffmpeg -rtsp_flags prefer_tcp -i {input}",
    ),
    (
        "rtsp/udp",
        "-fflags nobuffer -flags low_delay -timeout 5000000 -user_agent corecast/ffmpeg -i {input}",
    ),
    (
        "output",
        "-user_agent ffmpeg/corecast -rtsp_transport tcp -f rtsp {output}",
    ),
    (
        "h264",
        "-c:v libx264 -g 50 -profile:v high -level:v 4.1 -preset:v superfast -tune:v zerolatency -pix_fmt:v yuv420p",
    ),
    (
        "h265",
        "-c:v libx265 -g 50 -profile:v main -level:v 5.1 -preset:v superfast -tune:v zerolatency",
    ),
    ("mjpeg", "-c:v mjpeg"),
    ("opus", "-c:a libopus -application:a lowdelay -min_comp 0"),
    (
        "opus/16000",
        "-c:a libopus -application:a lowdelay -min_comp 0 -ar:a 16000 -ac:a 1",
    ),
    ("pcmu", "-c:a pcm_mulaw -ar:a 8000 -ac:a 1"),
    ("pcmu/16000", "-c:a pcm_mulaw -ar:a 16000 -ac:a 1"),
    ("pcma", "-c:a pcm_alaw -ar:a 8000 -ac:a 1"),
    ("pcma/16000", "-c:a pcm_alaw -ar:a 16000 -ac:a 1"),
    ("aac", "-c:a aac"),
    ("aac/16000", "-c:a aac -ar:a 16000 -ac:a 1"),
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
}

/// Looks up a template: config first, then built-ins.
fn template<'a>(name: &str, custom: &'a [(String, String)]) -> Option<&'a str> {
    custom
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .or_else(|| TEMPLATES.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
}

/// Builds the argument list (without the binary) for `ffmpeg:` source text (after the
/// `ffmpeg:` prefix). `stream_url(name)` resolves INPUT when it names another stream;
/// `output` is where ffmpeg publishes.
pub fn build_args(
    source: &str,
    custom: &[(String, String)],
    stream_url: &dyn Fn(&str) -> Option<String>,
    output: &str,
) -> Result<Vec<String>, FfmpegError> {
    let mut parts = source.split('#');
    let input = parts.next().unwrap_or("").trim();
    if input.is_empty() {
        return Err(FfmpegError::EmptyInput);
    }
    let mut video: Vec<String> = Vec::new();
    let mut audio: Vec<String> = Vec::new();
    let mut input_tpl: Option<String> = None;
    let mut raw: Vec<String> = Vec::new();
    let mut filters: Vec<String> = Vec::new();
    let (mut width, mut height) = (None::<String>, None::<String>);
    for p in parts.take(32) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k {
            "video" => video.push(v.to_string()),
            "audio" => audio.push(v.to_string()),
            "input" => input_tpl = Some(v.to_string()),
            "raw" => raw.extend(v.split_whitespace().map(str::to_string)),
            "width" => width = Some(num(v, p)?),
            "height" => height = Some(num(v, p)?),
            "rotate" => filters.push(match v {
                "90" => "transpose=1".to_string(),
                "180" => "transpose=1,transpose=1".to_string(),
                "-90" | "270" => "transpose=2".to_string(),
                _ => return Err(FfmpegError::BadParam(p.to_string())),
            }),
            // Options of other layers (e.g. go2rtc's #backchannel) are not ffmpeg's business.
            _ => {}
        }
    }
    if width.is_some() || height.is_some() {
        filters.insert(
            0,
            format!(
                "scale={}:{}",
                width.as_deref().unwrap_or("-1"),
                height.as_deref().unwrap_or("-1")
            ),
        );
    }

    let (input_url, kind) = if let Some(url) = stream_url(input) {
        (url, "rtsp")
    } else if input.starts_with("rtsp://") || input.starts_with("rtsps://") {
        (input.to_string(), "rtsp")
    } else if input.starts_with("http://") || input.starts_with("https://") {
        (input.to_string(), "http")
    } else {
        (input.to_string(), "file")
    };
    let input_name = input_tpl.as_deref().unwrap_or(kind);
    let mut args: Vec<String> = Vec::new();
    let tpl = |args: &mut Vec<String>, name: &str| -> Result<(), FfmpegError> {
        let t = template(name, custom).ok_or_else(|| FfmpegError::UnknownTemplate(name.into()))?;
        for w in t.split_whitespace() {
            args.push(w.replace("{input}", &input_url).replace("{output}", output));
        }
        Ok(())
    };
    tpl(&mut args, "global")?;
    tpl(&mut args, input_name)?;
    args.extend(raw);

    if video.is_empty() && audio.is_empty() {
        // go2rtc: no codec parameters means copy everything.
        args.extend(["-c".into(), "copy".into()]);
    } else {
        for (kind, codecs) in [("v", &video), ("a", &audio)] {
            for (i, codec) in codecs.iter().enumerate() {
                args.extend(["-map".into(), format!("0:{kind}:{i}?")]);
                match codec.as_str() {
                    "" | "copy" => args.extend([format!("-c:{kind}"), "copy".into()]),
                    name => tpl(&mut args, name)?,
                }
            }
        }
        if video.is_empty() {
            args.push("-vn".into());
        }
        if audio.is_empty() {
            args.push("-an".into());
        }
    }
    if !filters.is_empty() {
        args.extend(["-vf".into(), filters.join(",")]);
    }
    tpl(&mut args, "output")?;
    Ok(args)
}

fn num(v: &str, p: &str) -> Result<String, FfmpegError> {
    if !v.is_empty() && v.len() <= 5 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(v.to_string())
    } else {
        Err(FfmpegError::BadParam(p.to_string()))
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
    fn file_to_h264() {
        let a = build_args("/media/clip.mp4#video=h264", &[], &no_stream, "rtsp://o/x").unwrap();
        let s = a.join(" ");
        assert!(
            s.starts_with("-hide_banner -re -i /media/clip.mp4 -map 0:v:0? -c:v libx264"),
            "{s}"
        );
        assert!(s.contains("-an"), "{s}");
        assert!(s.ends_with("-rtsp_transport tcp -f rtsp rtsp://o/x"), "{s}");
    }

    #[test]
    fn stream_input_and_audio() {
        let url = |n: &str| (n == "cam1").then(|| "rtsp://127.0.0.1:8554/cam1".to_string());
        let a = build_args("cam1#video=copy#audio=opus", &[], &url, "OUT").unwrap();
        let s = a.join(" ");
        assert!(s.contains("-i rtsp://127.0.0.1:8554/cam1"), "{s}");
        assert!(
            s.contains("-map 0:v:0? -c:v copy -map 0:a:0? -c:a libopus"),
            "{s}"
        );
    }

    #[test]
    fn copy_all_scale_rotate_raw() {
        let s = build_args("rtsp://cam/x#raw=-an", &[], &no_stream, "OUT")
            .unwrap()
            .join(" ");
        assert!(
            s.contains("-rtsp_flags prefer_tcp -i rtsp://cam/x -an -c copy"),
            "{s}"
        );
        let s = build_args("f.mp4#video=h264#width=320#rotate=90", &[], &no_stream, "O")
            .unwrap()
            .join(" ");
        assert!(s.contains("-vf scale=320:-1,transpose=1"), "{s}");
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
