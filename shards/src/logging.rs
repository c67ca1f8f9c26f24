//! Logs as go2rtc prints them, with `tracing` underneath.
//!
//! Tools wait for go2rtc's console lines: Home Assistant reads stdout until a line contains
//! `INF [api] listen addr=`. So the console format is zerolog's:
//! `15:04:05.000 INF [api] listen addr=:1984` (colour only on a terminal, unless
//! `log.format: text`), on stdout by default (`log.output`). Every event also goes, as a
//! JSON line, into a bounded in-memory buffer that `GET /api/log` serves and
//! `DELETE /api/log` clears (go2rtc's `MemoryLog`).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// go2rtc's buffer: 16 chunks of 64 KiB; the oldest chunk goes when all are full.
const CHUNKS: usize = 16;
const CHUNK: usize = 64 << 10;

/// The in-memory log (`/api/log`).
pub struct MemoryLog {
    inner: Mutex<Chunks>,
}

struct Chunks {
    chunks: std::collections::VecDeque<Vec<u8>>,
}

pub static MEMORY_LOG: MemoryLog = MemoryLog {
    inner: Mutex::new(Chunks {
        chunks: std::collections::VecDeque::new(),
    }),
};

impl MemoryLog {
    fn write(&self, line: &[u8]) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let need_new = match g.chunks.back() {
            Some(last) => last.len() + line.len() > CHUNK,
            None => true,
        };
        if need_new {
            if g.chunks.len() == CHUNKS {
                g.chunks.pop_front();
            }
            g.chunks
                .push_back(Vec::with_capacity(CHUNK.min(line.len().max(4096))));
        }
        if let Some(last) = g.chunks.back_mut() {
            // A single event larger than a chunk is cut (bounded memory either way).
            last.extend_from_slice(&line[..line.len().min(CHUNK)]);
        }
    }

    /// Everything buffered, oldest first (JSON lines).
    pub fn contents(&self) -> Vec<u8> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.chunks.iter().flatten().copied().collect()
    }

    pub fn clear(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.chunks.clear();
    }
}

/// zerolog's three-letter level names.
fn level_word(l: &Level) -> &'static str {
    match *l {
        Level::TRACE => "TRC",
        Level::DEBUG => "DBG",
        Level::INFO => "INF",
        Level::WARN => "WRN",
        Level::ERROR => "ERR",
    }
}

fn level_color(l: &Level) -> &'static str {
    match *l {
        Level::TRACE => "\x1b[35m",
        Level::DEBUG => "\x1b[33m",
        Level::INFO => "\x1b[32m",
        Level::WARN => "\x1b[31m",
        Level::ERROR => "\x1b[1m\x1b[31m",
    }
}

/// The console format: `HH:MM:SS.mmm LVL message key=value ...`.
pub struct GoFormat {
    pub color: bool,
    pub time: bool,
}

impl<S, N> FormatEvent<S, N> for GoFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = event.metadata().level();
        if self.time {
            let (h, m, s, ms) = crate::io::clock::local_time_of_day();
            if self.color {
                write!(w, "\x1b[90m{h:02}:{m:02}:{s:02}.{ms:03}\x1b[0m ")?;
            } else {
                write!(w, "{h:02}:{m:02}:{s:02}.{ms:03} ")?;
            }
        }
        if self.color {
            write!(w, "{}{}\x1b[0m ", level_color(level), level_word(level))?;
        } else {
            write!(w, "{} ", level_word(level))?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Collects an event's fields for the JSON line.
#[derive(Default)]
struct JsonFields {
    message: String,
    rest: String,
}

fn json_escape(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.rest.push(',');
            json_escape(&mut self.rest, field.name());
            self.rest.push(':');
            json_escape(&mut self.rest, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// The JSON line zerolog would write: `{"level":"info","addr":":1984","time":..,"message":..}`.
pub fn json_line(event: &Event<'_>) -> String {
    let mut f = JsonFields::default();
    event.record(&mut f);
    let level = match *event.metadata().level() {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    };
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut out = String::with_capacity(64 + f.message.len() + f.rest.len());
    let _ = write!(out, "{{\"level\":\"{level}\"");
    out.push_str(&f.rest);
    let _ = write!(out, ",\"time\":{ms},\"message\":");
    json_escape(&mut out, &f.message);
    out.push_str("}\n");
    out
}

/// Feeds every event that passes the filter into [`MEMORY_LOG`].
pub struct MemoryLayer;

impl<S: Subscriber> Layer<S> for MemoryLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        MEMORY_LOG.write(json_line(event).as_bytes());
    }
}

/// Writes JSON lines to the console (`log.format: json`).
pub struct JsonConsole {
    pub stderr: bool,
}

impl<S: Subscriber> Layer<S> for JsonConsole {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        use std::io::Write;
        let line = json_line(event);
        let _ = if self.stderr {
            std::io::stderr().lock().write_all(line.as_bytes())
        } else {
            std::io::stdout().lock().write_all(line.as_bytes())
        };
    }
}

/// Installs the global subscriber from `log:` (or `RUST_LOG`, which wins when valid).
pub fn init(cfg: &corecast::config::LogConfig) {
    use tracing_subscriber::prelude::*;
    let directives = cfg.filter_directives();
    let filter = || {
        std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
            .unwrap_or_else(|| {
                tracing_subscriber::EnvFilter::try_new(&directives)
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
            })
    };
    let stderr = cfg.output == "stderr";
    let console_on = !cfg.output.is_empty();
    let is_tty = if stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let color = match cfg.format.as_str() {
        "color" => true,
        "text" | "json" => false,
        _ => is_tty,
    };
    let fmt_layer = (console_on && cfg.format != "json").then(|| {
        let l = tracing_subscriber::fmt::layer()
            .event_format(GoFormat {
                color,
                time: cfg.time,
            })
            .with_ansi(color);
        if stderr {
            l.with_writer(std::io::stderr).boxed()
        } else {
            l.with_writer(std::io::stdout).boxed()
        }
    });
    let json_layer = (console_on && cfg.format == "json").then_some(JsonConsole { stderr });
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter()))
        .with(json_layer.with_filter(filter()))
        .with(MemoryLayer.with_filter(filter()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_log_is_bounded_and_keeps_the_newest() {
        let log = MemoryLog {
            inner: Mutex::new(Chunks {
                chunks: Default::default(),
            }),
        };
        let line = vec![b'x'; 1000];
        for _ in 0..(CHUNKS * CHUNK / 1000 + 500) {
            log.write(&line);
        }
        log.write(b"last\n");
        let all = log.contents();
        assert!(all.len() <= CHUNKS * CHUNK);
        assert!(all.ends_with(b"last\n"));
        log.clear();
        assert!(log.contents().is_empty());
    }

    #[test]
    fn json_escaping() {
        let mut s = String::new();
        json_escape(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
