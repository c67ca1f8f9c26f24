//! Issue #10, (c): does a thread napping in `nanosleep` get woken by io_uring completing the
//! polls it has armed? A shard's nap (hub.rs, `Nap`) sleeps while its sockets fill; glommio
//! arms a poll on each socket after every read. This reproduces that outside glommio: a
//! thread arms one POLL_ADD per socket on a ring, naps 1.7 ms per 2 ms tick, then reaps
//! completions, reads and re-arms, while another thread writes to random sockets. It counts
//! the napping thread's voluntary context switches per nap, for a ring set up as glommio's
//! (no flags), for one with `SINGLE_ISSUER | DEFER_TASKRUN` (task work held until the
//! thread enters the ring to wait), and for what corecast does since (`io/ready.rs`): the
//! sockets in an edge-triggered epoll set, and one poll armed on the set's descriptor in a
//! ring with no flags.
//!
//! Not a criterion bench (it measures the kernel's wake-ups, not time):
//! `cargo bench -p corecast-shards --bench nap_wakeups`

use io_uring::{opcode, types, IoUring};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const SOCKETS: usize = 250;
const RUN: Duration = Duration::from_secs(3);
const NAP: Duration = Duration::from_micros(1700);
/// One write per this interval over all sockets (about what 250 cameras send a shard).
const WRITE_EVERY: Duration = Duration::from_micros(100);

fn voluntary_switches() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a plain getrusage on this thread into a zeroed struct.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_nvcsw
}

#[derive(Clone, Copy)]
enum Mode {
    /// A poll per socket, ring without flags (glommio 0.9).
    Plain,
    /// A poll per socket, `SINGLE_ISSUER | DEFER_TASKRUN`.
    Defer,
    /// The sockets in an epoll set, one poll on the set, ring without flags.
    EpollSet,
}

fn run(mode: Mode) -> std::io::Result<(u64, u64, i64)> {
    let defer = matches!(mode, Mode::Defer);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..SOCKETS {
        clients.push(TcpStream::connect(addr)?);
        let (s, _) = listener.accept()?;
        s.set_nonblocking(true)?;
        servers.push(s);
    }
    let mut builder = IoUring::builder();
    if defer {
        builder.setup_single_issuer().setup_defer_taskrun();
    }
    let mut ring = builder.build(1024)?;
    let arm = |ring: &mut IoUring, i: usize| {
        let e = opcode::PollAdd::new(types::Fd(servers[i].as_raw_fd()), libc::POLLIN as _)
            .build()
            .user_data(i as u64);
        // SAFETY: the fd outlives the ring's use of it (both live until run() returns).
        unsafe { ring.submission().push(&e).expect("queue has room") };
    };
    // SAFETY: epoll_create1 takes no pointers.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let set = matches!(mode, Mode::EpollSet);
    let arm_set = |ring: &mut IoUring| {
        let e = opcode::PollAdd::new(types::Fd(epfd), libc::POLLIN as _)
            .build()
            .user_data(u64::MAX);
        // SAFETY: the epoll fd outlives the ring's use of it.
        unsafe { ring.submission().push(&e).expect("queue has room") };
    };
    if set {
        for (i, s) in servers.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                u64: i as u64,
            };
            // SAFETY: `ev` lives across the call.
            unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
        }
        arm_set(&mut ring);
    } else {
        for i in 0..SOCKETS {
            arm(&mut ring, i);
        }
    }
    ring.submit()?;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; SOCKETS];

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x: u32 = 12345;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let _ = clients[x as usize % SOCKETS].write_all(&[0u8; 200]);
                std::thread::sleep(WRITE_EVERY);
            }
        })
    };

    let (mut naps, mut completions) = (0u64, 0u64);
    let mut scratch = [0u8; 4096];
    let sw0 = voluntary_switches();
    let t0 = Instant::now();
    while t0.elapsed() < RUN {
        std::thread::sleep(NAP);
        naps += 1;
        // Enter with GETEVENTS (wait for none): with DEFER_TASKRUN this is where the held
        // task work runs and the completions are posted.
        // SAFETY: no submission is passed; GETEVENTS with min_complete 0 does not block.
        unsafe {
            ring.submitter()
                .enter::<libc::sigset_t>(0, 0, 1 /* IORING_ENTER_GETEVENTS */, None)?
        };
        let done: Vec<u64> = ring.completion().map(|c| c.user_data()).collect();
        for d in done {
            let ready: Vec<usize> = if d == u64::MAX {
                // SAFETY: `events` is writable for its length; timeout 0 never blocks.
                let n =
                    unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, 0) };
                events[..n.max(0) as usize]
                    .iter()
                    .map(|e| e.u64 as usize)
                    .collect()
            } else {
                vec![d as usize]
            };
            for i in ready {
                completions += 1;
                while let Ok(n) = (&servers[i]).read(&mut scratch) {
                    if n == 0 {
                        break;
                    }
                }
                if !set {
                    arm(&mut ring, i);
                }
            }
            if d == u64::MAX {
                arm_set(&mut ring);
            }
        }
        ring.submit()?;
    }
    let switches = voluntary_switches() - sw0;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.join();
    // SAFETY: closing the epoll fd created above, used by nothing else now.
    unsafe { libc::close(epfd) };
    Ok((naps, completions, switches))
}

fn main() {
    for (name, mode) in [
        ("no flags (glommio 0.9)", Mode::Plain),
        ("SINGLE_ISSUER|DEFER_TASKRUN", Mode::Defer),
        ("epoll set, one poll", Mode::EpollSet),
    ] {
        match run(mode) {
            Ok((naps, completions, switches)) => println!(
                "{name:<28} naps {naps:>5}  sockets read {completions:>6}  \
                 voluntary switches {switches:>6}  per nap {:.2}",
                switches as f64 / naps.max(1) as f64
            ),
            Err(e) => println!("{name:<28} not available here: {e}"),
        }
    }
}
