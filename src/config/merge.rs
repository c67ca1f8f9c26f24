//! Several configs on the command line, merged as go2rtc merges them.
//!
//! go2rtc takes `-c`/`-config` many times; each value is a file, inline YAML/JSON (`{...}`)
//! or `key.sub=value`. Every config is read over the previous ones: mappings merge key by
//! key (so `streams:` from two files add up), anything else is replaced. API writes go to
//! the first file. A file that does not exist is skipped (Frigate always passes
//! `/config/go2rtc_homekit.yml`, which usually does not exist).

use super::{parse, Config, ConfigError};
use serde_yaml_ng::{Mapping, Value};
use std::path::{Path, PathBuf};

/// One `-c` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigArg {
    File(PathBuf),
    /// YAML or JSON text (`{log: {level: debug}}`, or built from `log.level=debug`).
    Inline(String),
}

impl ConfigArg {
    /// go2rtc's rule (`internal/app/config.go`): `{` starts inline YAML/JSON; `a.b=value`
    /// (a dotted key before the first `=`) is a single setting; anything else is a path.
    pub fn classify(s: &str) -> ConfigArg {
        if s.starts_with('{') {
            return ConfigArg::Inline(s.to_owned());
        }
        if let Some((key, value)) = s.split_once('=') {
            let items: Vec<&str> = key.split('.').collect();
            if items.len() >= 2 && items.iter().all(|i| !i.is_empty()) {
                // Built as a value, not as text, so the value needs no quoting.
                let mut v = yaml_scalar(value);
                for item in items.iter().rev() {
                    let mut m = Mapping::new();
                    m.insert(Value::String((*item).to_owned()), v);
                    v = Value::Mapping(m);
                }
                let text = serde_yaml_ng::to_string(&v).unwrap_or_default();
                return ConfigArg::Inline(text);
            }
        }
        ConfigArg::File(PathBuf::from(s))
    }
}

/// `level=trace` → the string "trace", `shards=2` → the number 2 (as YAML would read it).
fn yaml_scalar(s: &str) -> Value {
    match serde_yaml_ng::from_str::<Value>(s) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
        _ => Value::String(s.to_owned()),
    }
}

/// What `load` made of the arguments.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Where API writes go: the first file argument (absolute), whether or not it exists.
    pub write_path: Option<PathBuf>,
    /// Files named but absent (skipped, as go2rtc does); the caller logs them.
    pub missing: Vec<PathBuf>,
}

/// Reads and merges the configs in order. `read` reads a file (`Ok(None)` if it does not
/// exist). Each config is validated on its own first so an error names its own file and
/// line; the merged result is then validated as a whole.
pub fn load(
    args: &[ConfigArg],
    read: &dyn Fn(&Path) -> std::io::Result<Option<String>>,
) -> Result<Loaded, ConfigError> {
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut write_path = None;
    let mut missing = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        match arg {
            ConfigArg::Inline(text) => {
                texts.push((format!("command-line config {}", i + 1), text.clone()))
            }
            ConfigArg::File(path) => {
                if write_path.is_none() {
                    write_path = Some(absolute(path));
                }
                let origin = path.display().to_string();
                match read(path) {
                    Ok(Some(text)) => texts.push((origin, text)),
                    Ok(None) => missing.push(path.clone()),
                    Err(e) => {
                        return Err(ConfigError {
                            origin,
                            line: 0,
                            key: "(root)".into(),
                            message: format!("cannot read the file: {e}"),
                        })
                    }
                }
            }
        }
    }
    let config = match texts.as_slice() {
        [] => Config::default(),
        [(origin, text)] => parse(text, origin)?,
        many => {
            let mut warnings = Vec::new();
            let mut merged = Value::Null;
            for (origin, text) in many {
                let one = parse(text, origin)?;
                warnings.extend(one.warnings.into_iter().map(|w| format!("{origin}: {w}")));
                // parse() accepted it, so it is YAML.
                let value: Value = serde_yaml_ng::from_str(text).unwrap_or(Value::Null);
                merge_value(&mut merged, value);
            }
            let text = serde_yaml_ng::to_string(&merged).map_err(|e| ConfigError {
                origin: "merged config".into(),
                line: 0,
                key: "(root)".into(),
                message: e.to_string(),
            })?;
            let names: Vec<&str> = many.iter().map(|(o, _)| o.as_str()).collect();
            let mut config = parse(&text, &format!("merged config ({})", names.join(" + ")))?;
            // The merged text's line numbers mean nothing to the user: keep each file's own.
            config.warnings = warnings;
            config
        }
    };
    Ok(Loaded {
        config,
        write_path,
        missing,
    })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// go2rtc unmarshals every config into the same structs: a mapping merges key by key, any
/// other value (scalar, list, null) replaces what was there.
pub(crate) fn merge_value(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) => merge_value(slot, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        // An empty document (`Null`) leaves the rest alone.
        (_, Value::Null) => {}
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(
        files: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&Path) -> std::io::Result<Option<String>> {
        move |p| {
            Ok(files
                .iter()
                .find(|(n, _)| Path::new(n) == p)
                .map(|(_, t)| (*t).to_owned()))
        }
    }

    #[test]
    fn classify_like_go2rtc() {
        assert_eq!(
            ConfigArg::classify("/config/go2rtc.yaml"),
            ConfigArg::File("/config/go2rtc.yaml".into())
        );
        assert_eq!(
            ConfigArg::classify("{log: {level: debug}}"),
            ConfigArg::Inline("{log: {level: debug}}".into())
        );
        let ConfigArg::Inline(t) = ConfigArg::classify("log.level=trace") else {
            panic!("not inline")
        };
        let v: Value = serde_yaml_ng::from_str(&t).unwrap();
        assert_eq!(v["log"]["level"], Value::String("trace".into()));
        // No dot before `=`: a file name that happens to contain `=`.
        assert_eq!(
            ConfigArg::classify("a=b.yaml"),
            ConfigArg::File("a=b.yaml".into())
        );
    }

    #[test]
    fn frigate_two_files_merge_and_first_takes_writes() {
        let read = reader(&[
            ("/config/a.yml", "streams:\n  one: rtsp://a/1\napi:\n  origin: \"*\"\n"),
            (
                "/dev/shm/b.yaml",
                "streams:\n  two: [rtsp://b/2, \"ffmpeg:two#audio=opus\"]\napi:\n  listen: \":1985\"\nlog:\n  format: text\n",
            ),
        ]);
        let args = [
            ConfigArg::classify("/config/a.yml"),
            ConfigArg::classify("/dev/shm/b.yaml"),
            ConfigArg::classify("log.level=debug"),
        ];
        let l = load(&args, &read).unwrap();
        let names: Vec<&str> = l.config.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["one", "two"]);
        assert_eq!(l.config.streams[1].sources.len(), 2);
        assert_eq!(l.config.api.origin.as_deref(), Some("*"));
        assert_eq!(l.config.api.listen.map(|a| a.port()), Some(1985));
        assert_eq!(l.config.log.format, "text");
        assert_eq!(l.config.log.level, "debug");
        assert_eq!(l.write_path.as_deref(), Some(Path::new("/config/a.yml")));
    }

    #[test]
    fn missing_file_is_skipped_but_still_takes_writes() {
        let read = reader(&[("/dev/shm/b.yaml", "streams:\n  two: rtsp://b/2\n")]);
        let args = [
            ConfigArg::classify("/config/go2rtc_homekit.yml"),
            ConfigArg::classify("/dev/shm/b.yaml"),
        ];
        let l = load(&args, &read).unwrap();
        assert_eq!(l.config.streams.len(), 1);
        assert_eq!(l.missing, [PathBuf::from("/config/go2rtc_homekit.yml")]);
        assert_eq!(
            l.write_path.as_deref(),
            Some(Path::new("/config/go2rtc_homekit.yml"))
        );
    }

    #[test]
    fn an_error_names_its_own_file_and_line() {
        let read = reader(&[
            ("/a.yaml", "streams:\n  one: rtsp://a/1\n"),
            ("/b.yaml", "rtsp:\n  listen: \"nonsense\"\n"),
        ]);
        let args = [
            ConfigArg::classify("/a.yaml"),
            ConfigArg::classify("/b.yaml"),
        ];
        let e = load(&args, &read).unwrap_err();
        assert_eq!(e.origin, "/b.yaml");
        assert_eq!(e.line, 2);
        assert_eq!(e.key, "rtsp.listen");
    }

    #[test]
    fn later_scalars_and_lists_replace() {
        let mut a: Value = serde_yaml_ng::from_str("x: {a: 1, l: [1, 2]}\n").unwrap();
        merge_value(
            &mut a,
            serde_yaml_ng::from_str("x: {b: 2, l: [3]}\n").unwrap(),
        );
        let want: Value = serde_yaml_ng::from_str("x: {a: 1, l: [3], b: 2}\n").unwrap();
        assert_eq!(a, want);
    }
}
