//! `corecast`: the camera streaming server binary.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

use corecast_shards::{api, runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Camera streaming server: RTSP in, RTSP out, on thread-per-core shards.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Config file (go2rtc-compatible YAML). Default: ./corecast.yaml if present,
    /// else the embedded defaults.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Number of shards (overrides `shards:`).
    #[arg(long)]
    shards: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let path = args.config.clone().or_else(|| {
        let p = PathBuf::from("corecast.yaml");
        p.exists().then_some(p)
    });
    let mut config = match &path {
        Some(p) => {
            let text = match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("corecast: cannot read config {}: {e}", p.display());
                    return ExitCode::from(2);
                }
            };
            match corecast::config::parse(&text, &p.display().to_string()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("corecast: invalid config: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        None => corecast::config::Config::default(),
    };
    // API config writes go to the file we started from (go2rtc: its config path).
    api::set_config_path(
        path.clone()
            .unwrap_or_else(|| PathBuf::from("corecast.yaml")),
    );
    if let Some(n) = args.shards {
        config.shards = Some(n);
    }
    let directives = config.log.filter_directives();
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::try_new(&directives)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
