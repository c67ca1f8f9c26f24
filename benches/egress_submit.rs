//! Issue #10, "where one io_uring submission for all of a tick's writes beats a `sendmsg`
//! per viewer, use it (measure both)": one egress tick writes the same batch (two RTSP
//! interleaved packets: 4-byte header + 1,200-byte payload each, by iovec, as the RTSP
//! writer does) to N loopback TCP viewers,
//! - `sendmsg`: the real `io::sendv::try_sendmsg`, one non-blocking call per viewer (what
//!   the writers do today);
//! - `io_uring`: one SENDMSG entry per viewer, all submitted with one `io_uring_enter`
//!   (`submit_and_wait(N)`), completions reaped.
//!
//! Only the writes are timed; the receivers are drained between ticks, untimed.
//!
//! `egress_frame`: one `stream.mp4` fragment per viewer (a 20 KB video frame of a 4 Mbit/s
//! camera at 25 fps, chunk-framed as the HTTP writer does) to 1,000 viewers, by
//! - `sendmsg`: the real `try_sendmsg`, one call per viewer;
//! - `sendfile`: the fragment written once into a memfd, then `sendfile` per viewer, whose
//!   pages the socket references instead of copying them (the memfd's pages are punched
//!   out afterwards, never rewritten in place while a socket may still hold them).
//!
//! - `sendmsg_one_buffer` / `sendto_one_buffer`: the chunk-framed fragment as one buffer, by
//!   `try_sendmsg_vectored` (`sendmsg` of one iovec) and by the real `try_sendmsg` (which
//!   sends one buffer with `sendto`).
//!
//! This separates what a write costs per call from what it costs per byte (issue #10 (d)).
//!
//! `egress_gather`: one video frame as RTSP interleaved packets (five 1,200-byte packets,
//! each behind its 4-byte `$` header) to 1,000 viewers, by
//! - `iovecs`: `try_sendmsg` of ten iovecs, header and payload apart, per viewer;
//! - `gathered`: the real `io::sendv::Gathered` as the inline writers use it: the ten
//!   gathered into one buffer at the first viewer, reused for the rest (same packets, same
//!   channels), then `try_sendmsg` of one iovec.
//!
//! Run: `cargo bench -p corecast-shards --bench egress_submit`.

use corecast_shards::io::sendv::{iovec, try_sendmsg, try_sendmsg_vectored, Gathered};
use criterion::{criterion_group, criterion_main, Bencher, BenchmarkId, Criterion, Throughput};
use io_uring::{opcode, types, IoUring};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 1200;

struct Viewers {
    tx: Vec<TcpStream>,
    rx: Vec<TcpStream>,
}

fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn viewers(n: usize) -> Viewers {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (mut tx, mut rx) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let c = TcpStream::connect(addr).expect("connect");
        let (s, _) = l.accept().expect("accept");
        s.set_nonblocking(true).expect("nonblocking");
        s.set_nodelay(true).expect("nodelay");
        c.set_nonblocking(true).expect("nonblocking");
        tx.push(s);
        rx.push(c);
    }
    Viewers { tx, rx }
}

fn drain(rx: &mut [TcpStream], buf: &mut [u8]) {
    for r in rx {
        while let Ok(n) = r.read(buf) {
            if n == 0 {
                break;
            }
        }
    }
}

/// Times `tick` (one egress tick's writes to every viewer), draining the receivers untimed
/// after each.
fn ticks(b: &mut Bencher, rx: &mut [TcpStream], buf: &mut [u8], mut tick: impl FnMut()) {
    b.iter_custom(|iters| {
        let mut spent = Duration::ZERO;
        for _ in 0..iters {
            let t = Instant::now();
            tick();
            spent += t.elapsed();
            drain(rx, buf);
        }
        spent
    })
}

/// One `try_sendmsg` of `iov` per viewer, each taking all of it.
fn sendmsg_each(fds: &[i32], iov: &[libc::iovec], total: usize) {
    for &fd in fds {
        assert_eq!(try_sendmsg(fd, iov).expect("sendmsg"), total);
    }
}

fn bench(c: &mut Criterion) {
    raise_nofile();
    let heads = [[b'$', 0, (PAYLOAD >> 8) as u8, PAYLOAD as u8]; 2];
    let payloads = [vec![0x5au8; PAYLOAD], vec![0xa5u8; PAYLOAD]];
    let iov = [
        iovec(&heads[0]),
        iovec(&payloads[0]),
        iovec(&heads[1]),
        iovec(&payloads[1]),
    ];
    let total = 2 * (4 + PAYLOAD);
    let mut buf = vec![0u8; 1 << 16];
    let mut g = c.benchmark_group("egress_submit");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    for n in [100usize, 1000] {
        let mut v = viewers(n);
        let fds: Vec<i32> = v.tx.iter().map(|s| s.as_raw_fd()).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("sendmsg_per_viewer", n), &n, |b, _| {
            ticks(b, &mut v.rx, &mut buf, || sendmsg_each(&fds, &iov, total))
        });
        let mut ring = IoUring::new(n.next_power_of_two() as u32).expect("io_uring");
        // One msghdr per viewer (the kernel reads it during the submit); all share the
        // tick's iovecs, as the viewers share the packets.
        let msgs: Vec<libc::msghdr> = (0..n)
            .map(|_| {
                // SAFETY: an all-zero msghdr is valid; iov fields are set next.
                let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
                m.msg_iov = iov.as_ptr() as *mut libc::iovec;
                m.msg_iovlen = iov.len() as _;
                m
            })
            .collect();
        g.bench_with_input(BenchmarkId::new("io_uring_one_submit", n), &n, |b, _| {
            ticks(b, &mut v.rx, &mut buf, || {
                {
                    let mut sq = ring.submission();
                    for (i, (&fd, m)) in fds.iter().zip(&msgs).enumerate() {
                        let e = opcode::SendMsg::new(types::Fd(fd), m)
                            .flags((libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32)
                            .build()
                            .user_data(i as u64);
                        // SAFETY: `m` and the iovecs/buffers it points at outlive the
                        // submission (completions are reaped below, in this tick).
                        unsafe { sq.push(&e).expect("sq full") };
                    }
                }
                ring.submit_and_wait(n).expect("submit");
                let mut done = 0;
                for cqe in ring.completion() {
                    assert_eq!(cqe.result(), total as i32);
                    done += 1;
                }
                assert_eq!(done, n);
            })
        });
    }
    g.finish();
    frame(c, &mut buf);
    gather(c, &mut buf);
}

/// `egress_gather` (see the top).
fn gather(c: &mut Criterion, buf: &mut [u8]) {
    const N: usize = 1000;
    let heads: Vec<[u8; 4]> = (0..5)
        .map(|_| [b'$', 0, (PAYLOAD >> 8) as u8, PAYLOAD as u8])
        .collect();
    let payloads: Vec<std::rc::Rc<Vec<u8>>> = (0..5u8)
        .map(|i| std::rc::Rc::new(vec![i; PAYLOAD]))
        .collect();
    let iov: Vec<libc::iovec> = heads
        .iter()
        .zip(&payloads)
        .flat_map(|(h, p)| [iovec(h), iovec(p)])
        .collect();
    let total = 5 * (4 + PAYLOAD);
    let mut g = c.benchmark_group("egress_gather");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(N as u64));
    let mut v = viewers(N);
    let fds: Vec<i32> = v.tx.iter().map(|s| s.as_raw_fd()).collect();
    g.bench_function(BenchmarkId::new("iovecs", N), |b| {
        ticks(b, &mut v.rx, buf, || sendmsg_each(&fds, &iov, total))
    });
    let mut gathered: Gathered<Vec<u8>> = Gathered::default();
    let mut one: Vec<libc::iovec> = Vec::new();
    g.bench_function(BenchmarkId::new("gathered", N), |b| {
        ticks(b, &mut v.rx, buf, || {
            for &fd in &fds {
                // As a writer does: its iovecs framed, then gathered (or reused).
                one.clear();
                one.extend_from_slice(&iov);
                gathered.gather(&mut one, Some(payloads.iter().map(|p| (p, 0u8))));
                assert_eq!(try_sendmsg(fd, &one).expect("sendmsg"), total);
            }
        })
    });
    g.finish();
}

/// `egress_frame` (see the top).
fn frame(c: &mut Criterion, buf: &mut [u8]) {
    const FRAME: usize = 20_000;
    const N: usize = 1000;
    let fragment = vec![0x3cu8; FRAME];
    let head = format!("{FRAME:x}\r\n");
    let iov = [iovec(head.as_bytes()), iovec(&fragment), iovec(b"\r\n")];
    let total = head.len() + FRAME + 2;
    let mut framed = Vec::with_capacity(total);
    framed.extend_from_slice(head.as_bytes());
    framed.extend_from_slice(&fragment);
    framed.extend_from_slice(b"\r\n");
    let mut g = c.benchmark_group("egress_frame");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes((N * total) as u64));
    let mut v = viewers(N);
    let fds: Vec<i32> = v.tx.iter().map(|s| s.as_raw_fd()).collect();
    g.bench_function(BenchmarkId::new("sendmsg_per_viewer", N), |b| {
        ticks(b, &mut v.rx, buf, || sendmsg_each(&fds, &iov, total))
    });
    let one = [iovec(&framed)];
    g.bench_function(BenchmarkId::new("sendmsg_one_buffer", N), |b| {
        ticks(b, &mut v.rx, buf, || {
            for &fd in &fds {
                assert_eq!(try_sendmsg_vectored(fd, &one).expect("sendmsg"), total);
            }
        })
    });
    g.bench_function(BenchmarkId::new("sendto_one_buffer", N), |b| {
        ticks(b, &mut v.rx, buf, || sendmsg_each(&fds, &one, total))
    });
    // SAFETY: plain memfd_create with a NUL-terminated name.
    let mfd = unsafe { libc::memfd_create(c"egress_frame".as_ptr(), 0) };
    assert!(mfd >= 0, "memfd_create");
    let span = total.next_multiple_of(4096) as libc::off_t;
    g.bench_function(BenchmarkId::new("sendfile_from_memfd", N), |b| {
        // SAFETY: plain syscalls on our own descriptors and buffer.
        ticks(b, &mut v.rx, buf, || unsafe {
            let w = libc::pwrite(mfd, framed.as_ptr().cast(), total, 0);
            assert_eq!(w, total as isize);
            for &fd in &fds {
                let mut off: libc::off_t = 0;
                let w = libc::sendfile(fd, mfd, &mut off, total);
                assert_eq!(w, total as isize);
            }
            let r = libc::fallocate(
                mfd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                span,
            );
            assert_eq!(r, 0);
        })
    });
    // SAFETY: our own descriptor.
    unsafe { libc::close(mfd) };
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
