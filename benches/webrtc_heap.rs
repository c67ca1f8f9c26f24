//! Heap held by one WebRTC session's sans-IO parts (DTLS association before and after
//! `retire`, SRTP contexts, ICE agent), measured with a counting allocator: live bytes
//! after N sessions, / N.
//! Issue #12's memory target; BENCHMARKS.md "WebRTC" has the breakdown this prints.
//!
//! `cargo bench -p corecast --bench webrtc_heap` (prints a table; not a criterion bench)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use corecast::webrtc::dtls::{DtlsEvent, DtlsSession, Identity, SrtpKeys};
use corecast::webrtc::ice::{Credentials, IceLite};
use corecast::webrtc::srtp::Role;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let v = LIVE.fetch_add(l.size() as isize, Relaxed) + l.size() as isize;
        PEAK.fetch_max(v, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let v = LIVE.fetch_add(n as isize - l.size() as isize, Relaxed) + n as isize
            - l.size() as isize;
        PEAK.fetch_max(v, Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Relaxed)
}

/// Client and server in memory until both report keys; returns the server's half.
fn connect(server_id: &Identity, client_id: &Identity) -> (DtlsSession, Box<SrtpKeys>) {
    let mut now = Instant::now();
    let mut server = DtlsSession::new(server_id, Role::Server, client_id.fingerprint(), now);
    let mut client = DtlsSession::new(client_id, Role::Client, server_id.fingerprint(), now);
    let (mut sk, mut ck) = (None, None);
    for _ in 0..100 {
        let (mut to_s, mut to_c) = (Vec::new(), Vec::new());
        match client.poll(&mut |p| to_s.push(p.to_vec())) {
            Ok(Some(DtlsEvent::Connected(k))) => ck = Some(k),
            Ok(_) => {}
            Err(e) => panic!("client: {e}"),
        }
        match server.poll(&mut |p| to_c.push(p.to_vec())) {
            Ok(Some(DtlsEvent::Connected(k))) => sk = Some(k),
            Ok(_) => {}
            Err(e) => panic!("server: {e}"),
        }
        if sk.is_some() && ck.is_some() && to_s.is_empty() && to_c.is_empty() {
            break;
        }
        now += Duration::from_millis(20);
        for p in to_s {
            server.handle_datagram(&p, now).expect("server datagram");
        }
        for p in to_c {
            client.handle_datagram(&p, now).expect("client datagram");
        }
        for s in [&mut server, &mut client] {
            if s.next_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now).expect("timeout");
            }
        }
    }
    (server, sk.expect("server connected"))
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let server_id = Identity::generate().unwrap();
    let client_id = Identity::generate().unwrap();
    // Warm lazy statics (dimpl's provider, ring's CPU features).
    drop(connect(&server_id, &client_id));

    let per = |before: isize| (live() - before) as f64 / n as f64;

    let b = live();
    PEAK.store(b, Relaxed);
    let a0 = ALLOCS.load(Relaxed);
    let one = connect(&server_id, &client_id);
    println!(
        "one handshake (both sides): peak {} B above the start, {} allocations, {} B left",
        PEAK.load(Relaxed) - b,
        ALLOCS.load(Relaxed) - a0,
        live() - b
    );
    drop(one);
    let b = live();
    let fresh: Vec<DtlsSession> = (0..n)
        .map(|_| {
            DtlsSession::new(
                &server_id,
                Role::Server,
                client_id.fingerprint(),
                Instant::now(),
            )
        })
        .collect();
    println!("DtlsSession::new (before the handshake): {:8.0} B", per(b));
    drop(fresh);

    let b = live();
    let mut done: Vec<(DtlsSession, Box<SrtpKeys>)> =
        (0..n).map(|_| connect(&server_id, &client_id)).collect();
    println!("DtlsSession + SrtpKeys, connected:      {:8.0} B", per(b));
    let b3 = live();
    for (d, _) in done.iter_mut() {
        d.retire();
    }
    println!(
        "  retire() frees:                       {:8.0} B",
        (b3 - live()) as f64 / n as f64
    );
    let b2 = live();
    let keys: Vec<Box<SrtpKeys>> = done.drain(..).map(|(_, k)| k).collect();
    println!(
        "  left in the retired DtlsSession:     {:8.0} B",
        -(live() - b2) as f64 / n as f64
    );
    println!(
        "  SrtpKeys (send + recv contexts):      {:8.0} B (size_of {} B)",
        per(b),
        std::mem::size_of::<SrtpKeys>()
    );
    drop(keys);

    let b = live();
    let ices: Vec<IceLite> = (0..n)
        .map(|i| {
            let c = Credentials {
                ufrag: format!("00{i:06}"),
                pwd: "0123456789abcdef0123456789".into(),
            };
            IceLite::new(c, "remoteufrag", "remotepassword0123456789", 0)
        })
        .collect();
    println!(
        "IceLite::new:                           {:8.0} B (size_of {} B)",
        per(b),
        std::mem::size_of::<IceLite>()
    );
    drop(ices);
    println!(
        "size_of DtlsSession {} B",
        std::mem::size_of::<DtlsSession>()
    );
}
