//! What a request from the network may change: sources and config sections that run
//! programs are the config file's business, not the HTTP API's.
//!
//! go2rtc's rules, kept: a source from the API must not contain whitespace, and
//! `exec: allow_paths` limits which programs a source may run at all. corecast adds one:
//! sources that run programs (`exec:`, `echo:`, `expr:`, and `ffmpeg:` with `#raw=`,
//! `#input=` or `#drawtext=`, whose text reaches ffmpeg's arguments or filter graph, with
//! which ffmpeg can read or write any file) and the `exec:` /
//! `ffmpeg:` sections are refused from the API unless the file sets `api: allow_exec: true`.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::config::Config;

/// Schemes whose sources run a program named in the source itself.
const PROGRAM_SCHEMES: &[&str] = &["exec", "echo", "expr"];
/// `ffmpeg:` options whose values become ffmpeg arguments as written.
const RAW_FFMPEG_OPTIONS: &[&str] = &["raw", "input", "drawtext"];

/// Why a source or config from the API was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// go2rtc's check: no whitespace or control characters in a dynamic source.
    #[error("invalid source `{src}`: it contains whitespace or a control character")]
    Whitespace { src: String },
    /// A source that would run a program, while `api.allow_exec` is off.
    #[error(
        "source `{src}` runs a program ({what}); sources like this can only be set in the \
         config file, or through the API when the file sets `api: allow_exec: true`"
    )]
    RunsProgram { src: String, what: &'static str },
    /// A change to a section that decides which programs run.
    #[error(
        "`{key}` decides which programs run and can only be changed in the config file, or \
         through the API when the file sets `api: allow_exec: true`"
    )]
    Section { key: &'static str },
}

impl Refused {
    /// The HTTP status to answer with: 400 for a malformed source (as go2rtc), 403 for one
    /// that is well formed but not allowed from the API.
    pub fn status(&self) -> u16 {
        match self {
            Refused::Whitespace { .. } => 400,
            Refused::RunsProgram { .. } | Refused::Section { .. } => 403,
        }
    }
}

fn scheme(src: &str) -> &str {
    src.split_once(':').map(|(s, _)| s).unwrap_or("")
}

/// What in `src` runs a program chosen by whoever wrote the source, if anything.
pub fn runs_program(src: &str) -> Option<&'static str> {
    let scheme = scheme(src);
    if let Some(s) = PROGRAM_SCHEMES
        .iter()
        .find(|s| scheme.eq_ignore_ascii_case(s))
    {
        return Some(match *s {
            "exec" => "exec:",
            "echo" => "echo:",
            _ => "expr:",
        });
    }
    if scheme.eq_ignore_ascii_case("ffmpeg") {
        for part in src.split('#').skip(1) {
            let key = part.split_once('=').map(|(k, _)| k).unwrap_or(part);
            if RAW_FFMPEG_OPTIONS
                .iter()
                .any(|o| key.trim().eq_ignore_ascii_case(o))
            {
                let key = key.trim().to_ascii_lowercase();
                return Some(match key.as_str() {
                    "raw" => "ffmpeg: with #raw=",
                    "input" => "ffmpeg: with #input=",
                    _ => "ffmpeg: with #drawtext=",
                });
            }
        }
    }
    None
}

/// Checks one source that arrives through the API (`PUT`/`PATCH /api/streams`, or new in a
/// config sent to `/api/config`).
pub fn check_api_source(src: &str, allow_exec: bool) -> Result<(), Refused> {
    if src.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Refused::Whitespace {
            src: src.escape_debug().to_string(),
        });
    }
    if !allow_exec {
        if let Some(what) = runs_program(src) {
            return Err(Refused::RunsProgram {
                src: src.to_owned(),
                what,
            });
        }
    }
    Ok(())
}

/// Checks a config sent to `/api/config` (`new`, already validated by the parser) against
/// the file it replaces (`current`): every source that is not already in the file is
/// checked as an API source, and unless `allow_exec` the `exec:` and `ffmpeg:` sections and
/// `api.allow_exec` must stay as they are. Hand-written sources already in the file pass,
/// so a config editor can send the whole file back.
pub fn check_api_config(current: &Config, new: &Config, allow_exec: bool) -> Result<(), Refused> {
    let known: HashSet<&str> = current
        .streams
        .iter()
        .flat_map(|s| s.sources.iter().map(String::as_str))
        .collect();
    for s in &new.streams {
        for src in &s.sources {
            if !known.contains(src.as_str()) {
                check_api_source(src, allow_exec)?;
            }
        }
    }
    if !allow_exec {
        if new.exec != current.exec {
            return Err(Refused::Section { key: "exec" });
        }
        if new.ffmpeg != current.ffmpeg {
            return Err(Refused::Section { key: "ffmpeg" });
        }
        if new.api.allow_exec != current.api.allow_exec {
            return Err(Refused::Section {
                key: "api.allow_exec",
            });
        }
        // The socket path is replaced at start (go2rtc unlinks it): from the API it would
        // delete any file the server may delete.
        if new.api.unix_listen != current.api.unix_listen {
            return Err(Refused::Section {
                key: "api.unix_listen",
            });
        }
    }
    Ok(())
}

/// The program a source runs, as `exec.allow_paths` sees it: the first word of an `exec:`
/// command line, `ffmpeg.bin` for `ffmpeg:`. None for sources that run nothing (or whose
/// command line does not parse: those fail before anything runs).
pub fn source_program(src: &str, ffmpeg_bin: &str) -> Option<String> {
    let scheme = scheme(src);
    if scheme.eq_ignore_ascii_case("ffmpeg") {
        return Some(ffmpeg_bin.to_owned());
    }
    // Read through ffmpeg (`shards` sources): http(s):// and rtmp(s):// cameras.
    if ["http", "https", "rtmp", "rtmps"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return Some(ffmpeg_bin.to_owned());
    }
    if PROGRAM_SCHEMES
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return crate::ffmpeg::split_command(&src[scheme.len() + 1..])
            .ok()
            .and_then(|w| w.into_iter().next());
    }
    None
}

/// Whether a peer counts as local for the auth exemption that RTSP and HTTP share (go2rtc's
/// `local_auth: false`): all of 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6.
pub fn is_local_peer(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Warnings for the start-up log about who can change what through the API.
pub fn startup_warnings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let Some(addr) = cfg.api.listen else {
        return out;
    };
    let open = cfg.api.username.is_none() || cfg.api.password.is_none();
    if open && !addr.ip().is_loopback() {
        // `:PORT` is both IPv4 and IPv6: say it as written.
        let shown = if cfg.api.dual_stack {
            format!(":{}", addr.port())
        } else {
            addr.to_string()
        };
        out.push(format!(
            "the HTTP API listens on {shown} without `api: username/password`: anyone who can \
             reach this port can change streams and the config{}",
            if cfg.api.allow_exec {
                ", and with `api: allow_exec: true` run programs on this machine"
            } else {
                ""
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn api_sources() {
        assert!(check_api_source("rtsp://cam/x", false).is_ok());
        assert!(check_api_source("ffmpeg:cam#audio=opus", false).is_ok());
        for bad in [
            "exec:touch /tmp/pwned",
            "rtsp://a b",
            "rtsp://a\nb",
            "rtsp://a\u{0}",
            "rtsp://a\tb",
        ] {
            let e = check_api_source(bad, true).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}");
        }
        for bad in [
            "exec:/usr/bin/reboot",
            "EXEC:/usr/bin/reboot",
            "echo:/bin/x",
            "expr:1",
            "ffmpeg:cam#raw=-y",
            "ffmpeg:cam#video=h264#Input=file",
            "ffmpeg:cam#raw",
            "ffmpeg:cam#video=h264#drawtext=textfile=/etc/passwd",
        ] {
            let e = check_api_source(bad, false).unwrap_err();
            assert_eq!(e.status(), 403, "{bad:?}");
            assert!(check_api_source(bad, true).is_ok(), "{bad:?}");
        }
    }

    #[test]
    fn api_config_keeps_hand_written_sources_and_sections() {
        let current = parse(
            "streams:\n  a: exec:ffmpeg -re -i x -f rtsp {output}\nffmpeg:\n  bin: ffmpeg\n",
            "t",
        )
        .unwrap();
        // The whole file sent back with a new RTSP stream: fine.
        let new = parse(
            "streams:\n  a: exec:ffmpeg -re -i x -f rtsp {output}\n  b: rtsp://cam/x\nffmpeg:\n  bin: ffmpeg\n",
            "t",
        )
        .unwrap();
        assert!(check_api_config(&current, &new, false).is_ok());
        let added = parse("streams:\n  b: exec:/bin/true\n", "t").unwrap();
        assert_eq!(
            check_api_config(&current, &added, false)
                .unwrap_err()
                .status(),
            403
        );
        assert!(check_api_config(&current, &added, true).is_ok());
        let spaced = parse("streams:\n  b: exec:touch /tmp/x\n", "t").unwrap();
        assert_eq!(
            check_api_config(&current, &spaced, true)
                .unwrap_err()
                .status(),
            400
        );
        for section in [
            "ffmpeg:\n  bin: /bin/sh\n",
            "ffmpeg:\n  h264: \"-y /tmp/x\"\n",
            "exec:\n  allow_paths: [sh]\n",
            "api:\n  allow_exec: true\n",
            "api:\n  unix_listen: /etc/passwd\n",
        ] {
            let text = format!("streams:\n  a: exec:ffmpeg -re -i x -f rtsp {{output}}\n{section}");
            let new = parse(&text, "t").unwrap();
            let e = check_api_config(&current, &new, false).unwrap_err();
            assert!(matches!(e, Refused::Section { .. }), "{section}: {e}");
        }
    }

    #[test]
    fn local_peers() {
        for ip in [
            "127.0.0.1",
            "127.0.0.2",
            "127.255.255.254",
            "::1",
            "::ffff:127.0.0.2",
        ] {
            assert!(is_local_peer(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "::ffff:10.0.0.1",
            "128.0.0.1",
            "::2",
        ] {
            assert!(!is_local_peer(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn open_api_is_warned_about() {
        let open = parse("api:\n  listen: \":1984\"\n", "t").unwrap();
        assert_eq!(startup_warnings(&open).len(), 1);
        let local = parse("api:\n  listen: \"127.0.0.1:1984\"\n", "t").unwrap();
        assert!(startup_warnings(&local).is_empty());
        let v6 = parse("api:\n  listen: \"[::1]:1984\"\n", "t").unwrap();
        assert!(startup_warnings(&v6).is_empty());
        let authed = parse("api:\n  username: a\n  password: b\n", "t").unwrap();
        assert!(startup_warnings(&authed).is_empty());
        let exec = parse("api:\n  allow_exec: true\n", "t").unwrap();
        assert!(startup_warnings(&exec)[0].contains("run programs"));
    }

    #[test]
    fn programs() {
        assert_eq!(
            source_program("exec:ffmpeg -i x", "ff").as_deref(),
            Some("ffmpeg")
        );
        assert_eq!(
            source_program("exec:'/opt/my prog' -x", "ff").as_deref(),
            Some("/opt/my prog")
        );
        assert_eq!(
            source_program("ffmpeg:cam#video=h264", "/usr/bin/ffmpeg").as_deref(),
            Some("/usr/bin/ffmpeg")
        );
        assert_eq!(source_program("rtsp://cam", "ff"), None);
        assert_eq!(source_program("http://cam/x", "ff").as_deref(), Some("ff"));
        assert_eq!(source_program("exec:", "ff"), None);
        let cfg = parse("exec:\n  allow_paths: [ffmpeg]\n", "t").unwrap();
        assert!(cfg.exec.allows("ffmpeg"));
        assert!(!cfg.exec.allows("/tmp/x/ffmpeg"));
        assert!(!cfg.exec.allows("touch"));
        assert!(Config::default().exec.allows("touch"));
    }
}
