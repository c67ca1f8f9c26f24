//! The NVR scenario: N cameras, each read by K consumers, against corecast and the raw
//! floor in turns.
//!
//! Cameras are either published (one ffmpeg per camera, `-re -c copy -f rtsp`, straight
//! into the server under test) or pulled: corecast is configured with N streams
//! `camI: rtsp://FARM/camI` and pulls them from a camera farm when their first consumer
//! arrives (or at start with `--preload`). The farm is our raw floor (`floor --alias
//! src:F`) fed by F ffmpeg publishers: any `camI` it is asked for is served from `src{I %
//! F}`. That costs the farm one read per publisher packet and one write per camera pull,
//! packet by packet as ffmpeg sends them (so the server under test sees a camera's
//! pacing), without encoding N live streams on a 2-core machine; the farm is a separate
//! process, so its CPU is not in the server's figure (it is reported in a note).
//!
//! For the floor's turn of a pulled-camera run, the floor pulls the same N cameras from the
//! same farm (`floor --pull`) and serves them to the N x K viewers: the least it costs to
//! ingest N cameras and deliver their bytes, as corecast must. (Until 2026-12-03 the
//! viewers read the farm itself, so the floor ingested F streams against corecast's N.)

use crate::compare::{self, CompareResult};
use crate::ffpub::FfPublishers;
use crate::peers::{self, PeerKind, PeerOpts};
use crate::procstat;
use crate::swarm::{self, Pubs, SwarmParams, SwarmResult};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CameraKind {
    /// corecast pulls N RTSP cameras from a farm.
    Pull,
    /// N ffmpeg publishers push into the server under test.
    Publish,
}

#[derive(Debug, Clone)]
pub struct NvrParams {
    pub cameras: usize,
    pub kind: CameraKind,
    /// ffmpeg publishers feeding the farm (pull).
    pub farm_sources: usize,
    pub preload: bool,
}

pub fn run(
    peers_list: &[PeerKind],
    opts: &PeerOpts,
    base: &SwarmParams,
    nvr: &NvrParams,
    rounds: usize,
    mut progress: impl FnMut(&SwarmResult),
) -> CompareResult {
    let mut p = base.clone();
    p.publishers = nvr.cameras;
    p.stream_prefix = "cam".into();
    p.external_sources = nvr.kind == CameraKind::Pull;
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    for round in 0..rounds.max(1) {
        for &k in peers_list {
            let r = match nvr.kind {
                CameraKind::Publish => {
                    peers::start(k, opts, &p.stream_names()).and_then(|mut server| {
                        let r = swarm::run(&server, &p);
                        server.stop();
                        r
                    })
                }
                CameraKind::Pull => pull_turn(k, opts, &p, nvr),
            };
            match r {
                Ok(mut r) => {
                    r.kind = "nvr";
                    progress(&r);
                    runs.push(r);
                }
                Err(e) => errors.push(format!("round {} {}: {e}", round + 1, k.name())),
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    let mut c = compare::summarize(peers_list, &p, rounds, runs, errors);
    c.floor_tick_ms = opts.floor_tick_ms;
    c.kind = "nvr";
    c
}

fn pull_turn(
    k: PeerKind,
    opts: &PeerOpts,
    p: &SwarmParams,
    nvr: &NvrParams,
) -> Result<SwarmResult, String> {
    let clip = p
        .ffmpeg_clip
        .as_ref()
        .ok_or("nvr needs the ffmpeg clip")?
        .ensure()?;
    let f = nvr.farm_sources.clamp(1, nvr.cameras.max(1));
    let mut farm_opts = opts.clone();
    farm_opts.alias = Some(("src".into(), f));
    farm_opts.threads = 1;
    // As a camera source the farm forwards each publisher read at once (a camera's pacing).
    farm_opts.floor_tick_ms = 0;
    let mut farm = peers::start(PeerKind::Floor, &farm_opts, &[])?;
    let urls: Vec<String> = (0..f).map(|i| farm.url(&format!("src{i}"))).collect();
    let mut pubs = Pubs::Ffmpeg(FfPublishers::start(
        &urls,
        &clip,
        &p.log_dir,
        Duration::from_secs(20),
    )?);
    let names = p.stream_names();
    let result = match k {
        PeerKind::Corecast => {
            let mut o = opts.clone();
            o.pull_streams = names.iter().map(|n| (n.clone(), farm.url(n))).collect();
            o.preload = nvr.preload;
            let f0 = procstat::sample(farm.pid);
            let r = peers::start(PeerKind::Corecast, &o, &names).and_then(|mut server| {
                let r = swarm::run_with(&server, p, Some(&mut pubs));
                server.stop();
                r
            });
            let f1 = procstat::sample(farm.pid);
            r.map(|mut r| {
                if let (Some(a), Some(b)) = (f0, f1) {
                    r.notes.push(format!(
                        "camera farm (raw floor, {f} ffmpeg sources, not in the server's figures): {:.2} CPU-s over the whole turn",
                        b.cpu_s() - a.cpu_s()
                    ));
                }
                r
            })
        }
        PeerKind::Floor => {
            let mut o = opts.clone();
            o.floor_pull = Some((format!("rtsp://{}", farm.rtsp), "cam".into(), nvr.cameras));
            peers::start(PeerKind::Floor, &o, &names).and_then(|mut server| {
                let r = swarm::run_with(&server, p, Some(&mut pubs));
                server.stop();
                r
            })
        }
        PeerKind::Gst => Err("nvr compares corecast and floor".into()),
    };
    if let Pubs::Ffmpeg(f) = &mut pubs {
        f.stop();
    }
    farm.stop();
    result.map(|mut r| {
        r.source = format!("{} (pulled: {f} farm sources)", r.source);
        r
    })
}
