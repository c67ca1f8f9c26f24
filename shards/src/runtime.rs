//! Start-up: one pinned glommio executor per shard, the cross-shard mesh wired once, the
//! listeners bound on every shard with SO_REUSEPORT. Any shard that cannot start fails the
//! whole start-up with a message — it never hangs.

use crate::core::hub::{Clock, Shard, ShardMsg};
use crate::core::registry::Registry;
use corecast::config::Config;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info};

/// Messages per ordered shard pair before a sender sees "full" (then drops and counts).
const MESH_CAPACITY: usize = 1024;
/// How long shards may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(15);

pub fn run(mut config: Config) -> Result<(), String> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let nshards = config.shards.unwrap_or(cores).max(1);
    let registry = Registry::new(nshards);
    for s in &config.streams {
        registry.declare(&s.name, s.sources.clone());
    }
    let demo = !config
        .streams
        .iter()
        .any(|s| s.name == crate::sources::demo::NAME);
    if demo {
        registry.declare(crate::sources::demo::NAME, vec!["internal:demo".into()]);
    }
    for (name, query) in &config.preload {
        let q = query.clone().unwrap_or_else(|| "video&audio".into());
        if !registry.set_preload(name, Some(q)) {
            tracing::warn!(stream = %name, "preload: no such stream in `streams:`");
        }
    }
    // `webrtc: listen: ""`: one random port, the same on every shard (each binds it with
    // SO_REUSEPORT), chosen here.
    if let Some(a) = config.webrtc.listen.as_mut().filter(|a| a.port() == 0) {
        let probe = std::net::UdpSocket::bind((a.ip(), 0))
            .map_err(|e| format!("cannot pick a WebRTC UDP port: {e}"))?;
        a.set_port(probe.local_addr().map_err(|e| e.to_string())?.port());
    }
    let config = Arc::new(config);
    let clock = Clock::new();
    let mesh = MeshBuilder::<ShardMsg, _>::full(nshards, MESH_CAPACITY);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();

    let mut handles = Vec::new();
    for i in 0..nshards {
        let (registry, config, mesh, ready) = (
            registry.clone(),
            config.clone(),
            mesh.clone(),
            ready_tx.clone(),
        );
        let builder = |placement| {
            LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{i}"))
                // We do no storage IO: keep the registered buffer small so the default
                // memlock limit suffices.
                .io_memory(512 << 10)
                .ring_depth(256)
                // Blocking work (snapshot transcodes, config writes, the hardware probe)
                // gets a few unpinned threads: glommio's default is one per shard, so a
                // 10 s transcode would queue a config write behind it.
                .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(4))
        };
        let (registry2, config2, mesh2, ready2) = (
            registry.clone(),
            config.clone(),
            mesh.clone(),
            ready.clone(),
        );
        let spawned = builder(Placement::Fixed(i % cores))
            .spawn(move || shard_main(registry, config, clock, mesh, ready, demo))
            .or_else(|e| {
                // Pinning can be refused in restricted cpusets; run unpinned rather than not at all.
                tracing::warn!(shard = i, error = %e, "pinning failed; starting unpinned");
                builder(Placement::Unbound)
                    .spawn(move || shard_main(registry2, config2, clock, mesh2, ready2, demo))
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                return Err(format!(
                    "shard {i} could not start its executor: {e} (glommio needs io_uring and at least 512 KiB of locked memory: check `ulimit -l`)"
                ))
            }
        }
    }
    // A watcher per shard turns "the executor thread ended" (at start-up: io_uring or
    // memlock refused; later: a crash) into a message, so start-up never hangs.
    for (i, h) in handles.into_iter().enumerate() {
        let tx = ready_tx.clone();
        std::thread::spawn(move || {
            let why = match h.join() {
                Ok(()) => "stopped".to_string(),
                Err(e) => format!("could not run: {e} (glommio needs io_uring and at least 512 KiB of locked memory: check `ulimit -l`)"),
            };
            let _ = tx.send(Err(format!("shard {i} {why}")));
        });
    }
    drop(ready_tx);

    let deadline = Instant::now() + START_TIMEOUT;
    let mut up = 0;
    while up < nshards {
        let left = deadline.saturating_duration_since(Instant::now());
        match ready_rx.recv_timeout(left) {
            Ok(Ok(_)) => up += 1,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(format!(
                    "only {up} of {nshards} shards started within {START_TIMEOUT:?}"
                ))
            }
        }
    }
    // go2rtc's boot lines, printed once every shard serves: tools wait for them (Home
    // Assistant reads stdout until `INF [api] listen addr=`).
    // `:PORT` (dual-stack) is printed as written, as go2rtc does.
    let shown = |a: std::net::SocketAddr, dual: bool| {
        if dual {
            format!(":{}", a.port())
        } else {
            a.to_string()
        }
    };
    if let Some(a) = config.api.listen {
        info!(addr = %shown(a, config.api.dual_stack), "[api] listen");
    }
    if let Some(p) = &config.api.unix_listen {
        info!(addr = %p, "[api] listen");
    }
    if let Some(a) = config.rtsp.listen {
        info!(addr = %shown(a, config.rtsp.dual_stack), "[rtsp] listen");
    }
    info!(shards = nshards, "corecast started");
    // Shards run until the process ends; any that stops takes the server down loudly
    // rather than leaving its streams unserved.
    match ready_rx.recv() {
        Ok(Err(e)) => {
            error!("{e}");
            Err(e)
        }
        _ => Err("shard supervisor channel closed".into()),
    }
}

async fn shard_main(
    registry: Arc<Registry>,
    config: Arc<Config>,
    clock: Clock,
    mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    ready: mpsc::Sender<Result<usize, String>>,
    demo: bool,
) {
    let (tx, rx) = match mesh.join().await {
        Ok(v) => v,
        Err(_) => {
            let _ = ready.send(Err("joining the shard mesh failed".into()));
            return;
        }
    };
    let id = tx.peer_id();
    let shard = Shard::new(id, registry, config.clone(), clock, tx);
    shard.set_rooms(Rc::new(rooms));
    shard.spawn_mesh_receivers(rx);

    if let Err(e) = start_listeners(&shard, &config) {
        let _ = ready.send(Err(format!("shard {id}: {e}")));
        return;
    }
    if demo && shard.owner_of(crate::sources::demo::NAME) == id {
        let sh = shard.clone();
        glommio::spawn_local(crate::sources::demo::run(sh)).detach();
    }
    glommio::spawn_local(crate::api::sample_loop_utilization(shard.clone())).detach();
    if config.fanout.egress_tick_us > 0 {
        let tick = Duration::from_micros(config.fanout.egress_tick_us);
        glommio::spawn_local(shard.clone().egress_loop(tick)).detach();
    }
    // go2rtc `preload:` sources run from the start, on their owner.
    let preloaded: Vec<String> = {
        let g = shard.registry.lock();
        g.streams
            .iter()
            .filter(|(n, e)| e.preload.is_some() && shard.owner_of(n) == id)
            .map(|(n, _)| n.clone())
            .collect()
    };
    for name in preloaded {
        crate::sources::lifecycle::start(&shard, &name);
    }
    let _ = ready.send(Ok(id));
    // Shards run until the process ends.
    futures_lite::future::pending::<()>().await;
}

fn start_listeners(shard: &Rc<Shard>, config: &Config) -> Result<(), String> {
    if let Some(addr) = config.rtsp.listen {
        let l = crate::io::listen::tcp(addr, config.rtsp.dual_stack)
            .map_err(|e| format!("cannot listen for RTSP on {addr}: {e}"))?;
        glommio::spawn_local(crate::egress::rtsp::serve(shard.clone(), l)).detach();
        let port = config.rtsp.udp_rtp_port as u32 + 2 * shard.id as u32;
        if port < u16::MAX as u32 && config.rtsp.udp_rtp_port != 0 {
            let bound =
                crate::egress::udp::UdpPair::bind(addr.ip(), port as u16, config.rtsp.dual_stack);
            match bound {
                Ok(pair) => {
                    let pair = Rc::new(pair);
                    crate::egress::udp::PAIR.with(|p| *p.borrow_mut() = Some(pair.clone()));
                    crate::egress::udp::spawn(shard.clone(), pair);
                }
                Err(e) => {
                    // RTSP over TCP still works; UDP SETUPs get 461.
                    tracing::warn!(shard = shard.id, port, error = %e, "RTP/UDP ports unavailable; RTSP over UDP disabled on this shard");
                }
            }
        }
    }
    if let Some(addr) = config.api.listen {
        let l = crate::io::listen::tcp(addr, config.api.dual_stack)
            .map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?;
        glommio::spawn_local(crate::egress::http::serve(shard.clone(), l)).detach();
    }
    // WebRTC is on by default (go2rtc's :8555): a taken port costs WebRTC, not the server.
    if let Err(e) = crate::egress::webrtc::start(shard) {
        if shard.id == 0 {
            tracing::error!("{e}; WebRTC disabled");
        }
    }
    // One shard serves the Unix socket (local control traffic: Home Assistant's API calls).
    if let (Some(path), 0) = (&config.api.unix_listen, shard.id) {
        // go2rtc removes a stale socket file first; we remove only a socket, never
        // another kind of file that happens to be at that path.
        use std::os::unix::fs::FileTypeExt;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(path);
        }
        let l = glommio::net::UnixListener::bind(path)
            .map_err(|e| format!("cannot listen for HTTP on unix socket {path}: {e}"))?;
        glommio::spawn_local(crate::egress::http::serve_unix(shard.clone(), l)).detach();
    }
    Ok(())
}

/// Dispatches the core's room messages to the rooms (the core imports none of them).
fn rooms(shard: &Rc<Shard>, msg: crate::core::hub::RoomMsg) {
    use crate::core::hub::RoomMsg;
    match msg {
        RoomMsg::StartSource { name } => crate::sources::lifecycle::start(shard, &name),
        RoomMsg::ExtendSource { name, query } => {
            crate::sources::lifecycle::extend(shard, &name, query)
        }
        RoomMsg::StartMuxer { output } => crate::muxers::start_muxer(shard, &output),
        RoomMsg::Wanted { name } => {
            crate::sources::lifecycle::reevaluate(shard, &name);
            crate::muxers::reevaluate(shard, &name);
        }
        RoomMsg::Handoff {
            fd,
            peer,
            buffered,
            authenticated,
        } => crate::egress::rtsp::take_handoff(shard, fd, peer, buffered, authenticated),
        RoomMsg::WebRtcDatagram { data, from } => crate::egress::webrtc::on_datagram(
            shard,
            &data,
            corecast::webrtc::ice::Remote::udp(from),
            true,
        ),
        RoomMsg::WebRtcTcp { fd, peer, buffered } => {
            crate::egress::webrtc::take_tcp(shard, fd, peer, buffered)
        }
        RoomMsg::WebRtcClose { id } => {
            crate::egress::webrtc::close_local(&id);
        }
        RoomMsg::Call(f) => f(shard),
    }
}
