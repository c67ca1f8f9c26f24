//! `corecast`: the camera streaming server binary.
//!
//! The command line is go2rtc's (tools that start go2rtc start corecast the same way):
//! `-c`/`-config`/`--config` with `=` or a space, repeatable, each a file, inline YAML/JSON
//! or `key.sub=value`; `-v` prints the version. Go's flag syntax takes one or two dashes.

use std::path::PathBuf;
use std::process::ExitCode;

use corecast::config::{self, ConfigArg};
use corecast_shards::{api, logging, runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "Usage of corecast:

  -c, --config   Path to config file or config string as YAML or JSON, support multiple
                 (also `key.sub=value`); merged in order, API writes go to the first file.
                 Default: ./corecast.yaml, else ./go2rtc.yaml, else the embedded defaults.
  -v, --version  Print version and exit
      --shards N Number of shards (overrides `shards:`)
  -d, --daemon   Not supported: run corecast under systemd, Docker or s6 instead
";

#[derive(Debug, Default, PartialEq)]
struct Args {
    configs: Vec<String>,
    shards: Option<usize>,
    version: bool,
    daemon: bool,
    help: bool,
}

/// Go's `flag` rules: `-name`, `--name`, `-name=value`, `-name value`; boolean flags take
/// no separate value; parsing stops at `--` or the first non-flag argument (refused here:
/// corecast takes no positional arguments).
fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = argv
                .get(i)
                .cloned()
                .ok_or_else(|| format!("flag needs an argument: -{name} ({what})"))?;
            i += 1;
            Ok(v)
        };
        let boolean = |v: &Option<String>| -> Result<bool, String> {
            match v.as_deref() {
                None | Some("true") | Some("1") => Ok(true),
                Some("false") | Some("0") => Ok(false),
                Some(o) => Err(format!("invalid boolean value {o:?} for -{name}")),
            }
        };
        match name {
            "c" | "config" => a.configs.push(value("a file, YAML/JSON or key=value")?),
            "shards" => {
                let v = value("a number")?;
                a.shards = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or_else(|| format!("invalid value {v:?} for -shards: 1 to 1024"))?,
                );
            }
            "v" | "version" => a.version = boolean(&inline)?,
            "d" | "daemon" => a.daemon = boolean(&inline)?,
            "h" | "help" => a.help = true,
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
    }
    if let Some(extra) = argv.get(i) {
        return Err(format!("unexpected argument {extra:?}"));
    }
    Ok(a)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!(
            "corecast version {} (go2rtc API {}) {}/{}",
            env!("CARGO_PKG_VERSION"),
            api::GO2RTC_API_VERSION,
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        return ExitCode::SUCCESS;
    }
    if args.daemon {
        eprintln!(
            "corecast: daemon mode (-d) is not supported; run it under systemd, Docker or s6"
        );
        return ExitCode::from(1);
    }
    let config_args: Vec<ConfigArg> = if args.configs.is_empty() {
        // go2rtc's default is ./go2rtc.yaml: take it when ours is absent.
        let ours = PathBuf::from("corecast.yaml");
        let theirs = PathBuf::from("go2rtc.yaml");
        let pick = if !ours.exists() && theirs.exists() {
            theirs
        } else {
            ours
        };
        vec![ConfigArg::File(pick)]
    } else {
        args.configs
            .iter()
            .map(|s| ConfigArg::classify(s))
            .collect()
    };
    let read = |p: &std::path::Path| match std::fs::read_to_string(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let loaded = match config::load(&config_args, &read) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("corecast: invalid config: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = loaded.config;
    // API config writes go to the first file (go2rtc: its config path).
    api::set_config_path(
        loaded
            .write_path
            .clone()
            .unwrap_or_else(|| PathBuf::from("corecast.yaml")),
    );
    if let Some(n) = args.shards {
        config.shards = Some(n);
    }
    logging::init(&config.log);
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        go2rtc_api = %api::GO2RTC_API_VERSION,
        platform = %format_args!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        "corecast"
    );
    if let Some(p) = &loaded.write_path {
        tracing::info!(path = %p.display(), "config");
    }
    // A named file that is absent is skipped (go2rtc); only the default one stays quiet.
    if !args.configs.is_empty() {
        for m in &loaded.missing {
            tracing::warn!(path = %m.display(), "config: file not found (skipped)");
        }
    }
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    for w in corecast::policy::startup_warnings(&config) {
        tracing::warn!("security: {w}");
    }
    match runtime::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("corecast: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn frigate_and_home_assistant_command_lines() {
        let a = p(&[
            "-config=/config/go2rtc_homekit.yml",
            "-config=/dev/shm/go2rtc.yaml",
        ])
        .unwrap();
        assert_eq!(
            a.configs,
            ["/config/go2rtc_homekit.yml", "/dev/shm/go2rtc.yaml"]
        );
        let a = p(&["-c", "/tmp/x.yaml"]).unwrap();
        assert_eq!(a.configs, ["/tmp/x.yaml"]);
        let a = p(&[
            "--config",
            "a",
            "-c=b",
            "--config=c",
            "-config",
            "{log: {level: debug}}",
        ])
        .unwrap();
        assert_eq!(a.configs, ["a", "b", "c", "{log: {level: debug}}"]);
    }

    #[test]
    fn version_daemon_shards_and_errors() {
        assert!(p(&["-v"]).unwrap().version);
        assert!(p(&["--version"]).unwrap().version);
        assert!(p(&["-d"]).unwrap().daemon);
        assert_eq!(p(&["--shards", "2"]).unwrap().shards, Some(2));
        assert_eq!(p(&["-shards=3"]).unwrap().shards, Some(3));
        assert!(p(&["-shards=0"]).is_err());
        assert!(p(&["-c"]).is_err());
        assert!(p(&["-x"]).unwrap_err().contains("not defined: -x"));
        assert!(p(&["file.yaml"]).is_err());
        assert!(p(&["-v=maybe"]).is_err());
    }
}
