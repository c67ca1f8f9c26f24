//! Vectored, non-blocking socket writes: one `sendmsg` for a whole batch of interleave
//! headers and shared payloads (no payload copy), and `sendmmsg` for UDP batches.
//!
//! glommio's stream API writes one buffer per call, so the fast path goes to the socket
//! directly with `MSG_DONTWAIT`; only when the socket is full do we fall back to glommio's
//! async write, which parks the task on io_uring until the socket drains.

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;

/// One non-blocking write of `iov`: `sendto` when it is a single buffer (every gathered
/// inline write), else `sendmsg`; returns bytes written, or `WouldBlock`. (Public for
/// `benches/egress_submit.rs`, which compares it with one io_uring submission per tick.)
pub fn try_sendmsg(fd: i32, iov: &[libc::iovec]) -> io::Result<usize> {
    match iov {
        // `sendto` skips copying and checking a `msghdr` and an iovec array: 2-4 % less
        // per write on loopback (BENCHMARKS.md, "One buffer, one sendto").
        [one] if sendto_allowed() => {
            // SAFETY: the caller keeps `one`'s memory alive for the call.
            syscall_result(unsafe {
                libc::syscall(
                    libc::SYS_sendto,
                    libc::c_long::from(fd),
                    one.iov_base,
                    one.iov_len,
                    libc::c_long::from(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL),
                    std::ptr::null::<libc::sockaddr>(),
                    0 as libc::c_long,
                )
            })
        }
        _ => try_sendmsg_vectored(fd, iov),
    }
}

/// One `sendmsg(MSG_DONTWAIT)` of `iov`, however many buffers it has. (Public for the
/// bench's one-buffer `sendmsg` against `sendto`.)
pub fn try_sendmsg_vectored(fd: i32, iov: &[libc::iovec]) -> io::Result<usize> {
    // SAFETY: `msg` points at `iov`, which outlives the call; every iovec points into
    // memory the caller keeps alive for the duration of the call.
    syscall_result(unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len().min(libc::UIO_MAXIOV as usize) as _;
        // The raw syscall, not libc's `sendmsg`: that one is a thread-cancellation point
        // and wraps every call in an atomic enable/disable of async cancellation, ~1 % of
        // a server writing 2,000 viewers. corecast never cancels threads.
        libc::syscall(
            libc::SYS_sendmsg,
            libc::c_long::from(fd),
            &msg as *const libc::msghdr,
            libc::c_long::from(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL),
        )
    })
}

/// A byte count, or the call's `errno`.
fn syscall_result(n: libc::c_long) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

ab_switch! {
    /// One-buffer writes by `sendto`; `CORECAST_NO_SENDTO=1` sends them by `sendmsg`
    /// (A/B measurement).
    fn sendto_allowed = "CORECAST_NO_SENDTO"
}

/// Moves `start` past the `n` bytes a write took from `iov[start..]` (trimming a partly
/// written iovec in place); returns the new start.
fn advance(iov: &mut [libc::iovec], mut start: usize, mut n: usize) -> usize {
    while n > 0 && start < iov.len() {
        let v = &mut iov[start];
        if n >= v.iov_len {
            n -= v.iov_len;
            start += 1;
        } else {
            // SAFETY: advancing within the same buffer, n < iov_len.
            v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut _;
            v.iov_len -= n;
            n = 0;
        }
    }
    while start < iov.len() && iov[start].iov_len == 0 {
        start += 1;
    }
    start
}

/// Writes `iov` without waiting: true when all of it went; false when the socket filled,
/// with what did not go copied into `rest` (for the connection's task to write once the
/// socket drains). Clears `iov`.
pub fn try_write_all(fd: i32, iov: &mut Vec<libc::iovec>, rest: &mut Vec<u8>) -> io::Result<bool> {
    let mut start = 0;
    let done = loop {
        if start >= iov.len() {
            break true;
        }
        match try_sendmsg(fd, &iov[start..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => start = advance(iov, start, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                for v in &iov[start..] {
                    // SAFETY: the iovec describes live memory held by the caller (see
                    // `iovec`).
                    rest.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
                    });
                }
                break false;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    iov.clear();
    Ok(done)
}

/// Largest write gathered into one buffer (`Gathered`); a larger one goes as its iovecs.
pub const GATHER_MAX: usize = 128 * 1024;

/// An inline write's iovecs gathered into one buffer, and what they were gathered from.
///
/// The kernel takes a write of one iovec for less than the same bytes as a header and a
/// payload per packet (`benches/egress_submit.rs`, `egress_gather`; the floor writes its
/// frames contiguously too), and the caught-up viewers of a stream, which one notify
/// writes one after another, are sent the same packets with the same framing: the bytes
/// are gathered once for all of them. The key holds the packets weakly: no address in it
/// is reused while it is kept, and a packet the ring dropped is freed (its bytes are in
/// `buf`); `tag` is the framing (a channel, a format).
pub struct Gathered<T> {
    buf: Vec<u8>,
    of: Vec<(std::rc::Weak<T>, u8)>,
}

impl<T> Default for Gathered<T> {
    fn default() -> Self {
        Gathered {
            buf: Vec::new(),
            of: Vec::new(),
        }
    }
}

impl<T> Gathered<T> {
    /// When `key` names the packets and tags last gathered, in order, replaces `iov` by
    /// one iovec over those bytes and returns true (the caller need not frame them).
    pub fn reuse<'a>(
        &self,
        iov: &mut Vec<libc::iovec>,
        key: impl Iterator<Item = (&'a std::rc::Rc<T>, u8)>,
    ) -> bool
    where
        T: 'a,
    {
        let mut n = 0;
        for (p, tag) in key {
            match self.of.get(n) {
                Some((q, t)) if *t == tag && std::ptr::eq(std::rc::Rc::as_ptr(p), q.as_ptr()) => {
                    n += 1
                }
                _ => return false,
            }
        }
        if n == 0 || n != self.of.len() {
            return false;
        }
        iov.clear();
        iov.push(iovec(&self.buf));
        true
    }

    /// Replaces `iov` by one iovec over its bytes. `key` names the packets and tags `iov`
    /// was framed from, in order (None: bytes of this viewer's own, such as a sender
    /// report, not to be reused): when it is the last gathered one, the bytes are reused
    /// without a copy. A write larger than `GATHER_MAX` is left as it is. The iovec points
    /// into `self`: write it before the next call.
    pub fn gather<'a>(
        &mut self,
        iov: &mut Vec<libc::iovec>,
        key: Option<impl Iterator<Item = (&'a std::rc::Rc<T>, u8)> + Clone>,
    ) where
        T: 'a,
    {
        if iov.len() < 2 {
            return;
        }
        if let Some(k) = &key {
            if self.reuse(iov, k.clone()) {
                return;
            }
        }
        self.of.clear();
        let total: usize = iov.iter().map(|v| v.iov_len).sum();
        if total > GATHER_MAX {
            return;
        }
        self.buf.clear();
        for v in iov.iter() {
            // SAFETY: the iovec describes live memory held by the caller (see `iovec`).
            self.buf.extend_from_slice(unsafe {
                std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
            });
        }
        if let Some(k) = key {
            self.of
                .extend(k.map(|(p, tag)| (std::rc::Rc::downgrade(p), tag)));
        }
        iov.clear();
        iov.push(iovec(&self.buf));
    }
}

/// Asks the CPU to load `len` bytes from `p` into the cache, without waiting for them. At
/// 2,000 parked viewers each viewer's state is cold when its turn comes (the writes in
/// between evict it): loaded ahead, the misses overlap the previous viewer's `sendmsg`
/// instead of adding to it.
#[inline]
pub fn prefetch_bytes(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut off = 0;
        while off < len {
            // SAFETY: SSE is part of x86_64's baseline, and a prefetch is a hint: it never
            // faults and reads nothing, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off) as *const i8) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Builds an iovec for a slice. The slice must stay alive while the iovec is used.
pub fn iovec(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    }
}

/// A stream `write_all_vectored` can write: with a socket fd for the `sendmsg` fast path,
/// or without one (glommio's Unix streams hide theirs), one slice at a time.
pub trait Sink: futures_lite::AsyncWrite + Unpin {
    fn send_fd(&self) -> Option<i32>;
}

impl Sink for TcpStream {
    fn send_fd(&self) -> Option<i32> {
        Some(self.as_raw_fd())
    }
}

/// Writes every byte the iovecs describe. `iov` is consumed (advanced in place).
pub async fn write_all_vectored<S: Sink>(
    stream: &mut S,
    iov: &mut Vec<libc::iovec>,
) -> io::Result<usize> {
    let Some(fd) = stream.send_fd() else {
        let mut total = 0;
        for v in iov.iter() {
            // SAFETY: the iovec describes live memory held by the caller (see `iovec`).
            let slice = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
            stream.write_all(slice).await?;
            total += v.iov_len;
        }
        iov.clear();
        return Ok(total);
    };
    let mut total = 0;
    let mut start = 0;
    while start < iov.len() {
        match try_sendmsg(fd, &iov[start..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                total += n;
                start = advance(iov, start, n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Socket full: let glommio wait for space and send part of the next slice.
                let v = iov[start];
                // SAFETY: the iovec describes live memory held by the caller (see `iovec`).
                let slice =
                    unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
                let n = stream.write(slice).await?;
                total += n;
                let v = &mut iov[start];
                if n >= v.iov_len {
                    start += 1;
                } else {
                    // SAFETY: n < iov_len, still inside the buffer.
                    v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut _;
                    v.iov_len -= n;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    iov.clear();
    Ok(total)
}

/// A batch of UDP datagrams for `sendmmsg`. Datagrams that do not fit in the socket buffer
/// are dropped (UDP semantics; the reader sees a sequence gap).
///
/// Consecutive datagrams to one address of one size (the last of a run may be shorter) go
/// as one UDP GSO message (`UDP_SEGMENT`): a frame's FU-A fragments to one viewer cross the
/// IP stack once and are cut by the kernel (or the NIC). Where the kernel or the device
/// refuses GSO the first refusal turns it off for that shard (thread) and the rest of the
/// batch goes datagram by datagram; `CORECAST_NO_GSO=1` turns it off from the start (A/B runs).
pub struct UdpBatch {
    iov: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<libc::socklen_t>,
    hdrs: Vec<libc::mmsghdr>,
    /// Per header: (first datagram, datagrams) it carries.
    runs: Vec<(usize, usize)>,
    /// One control buffer per header (only GSO headers use theirs).
    cmsgs: Vec<GsoCmsg>,
}

/// Room for one `cmsghdr` carrying a u16 (`CMSG_SPACE(2)` = 24 on 64-bit Linux), aligned
/// as a `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct GsoCmsg([u8; 24]);

/// Most segments the kernel takes in one GSO send (`UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send (an IP datagram's limit, with room for headers).
const GSO_MAX_BYTES: usize = 65_000;
/// `UDP_SEGMENT` (linux/udp.h); not in every libc release.
const UDP_SEGMENT: libc::c_int = 103;

thread_local! {
    /// Whether this thread still tries GSO (cleared on the first refusal).
    static GSO: std::cell::Cell<bool> =
        std::cell::Cell::new(std::env::var_os("CORECAST_NO_GSO").is_none_or(|v| v == "0"));
}

/// Whether UDP GSO is in use on this thread (tests, metrics).
pub fn gso_enabled() -> bool {
    GSO.with(|g| g.get())
}

impl Default for UdpBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl UdpBatch {
    pub fn new() -> Self {
        UdpBatch {
            iov: Vec::new(),
            addrs: Vec::new(),
            lens: Vec::new(),
            hdrs: Vec::new(),
            runs: Vec::new(),
            cmsgs: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.iov.is_empty()
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.iov.clear();
        self.addrs.clear();
        self.lens.clear();
        self.hdrs.clear();
        self.runs.clear();
    }

    /// Queues one datagram; `data` must stay alive until `send` returns.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) {
        let (storage, len) = sockaddr(to);
        self.iov.push(iovec(data));
        self.addrs.push(storage);
        self.lens.push(len);
    }

    fn same_addr(&self, a: usize, b: usize) -> bool {
        let n = self.lens[a] as usize;
        n == self.lens[b] as usize && {
            // SAFETY: both storages are plain bytes of at least `n` (≤ their size).
            let (x, y) = unsafe {
                (
                    std::slice::from_raw_parts(&self.addrs[a] as *const _ as *const u8, n),
                    std::slice::from_raw_parts(&self.addrs[b] as *const _ as *const u8, n),
                )
            };
            x == y
        }
    }

    /// Splits the queue into messages: runs for GSO when `gso`, else one per datagram.
    fn plan(&mut self, gso: bool) {
        self.runs.clear();
        let n = self.iov.len();
        let mut i = 0;
        while i < n {
            let size = self.iov[i].iov_len;
            let mut j = i + 1;
            if gso && size > 0 {
                let mut bytes = size;
                // Same address, same size; a shorter one ends the run (it may be last).
                while j < n
                    && j - i < GSO_MAX_SEGMENTS
                    && bytes + self.iov[j].iov_len <= GSO_MAX_BYTES
                    && self.iov[j].iov_len <= size
                    && self.iov[j].iov_len > 0
                    && self.same_addr(i, j)
                {
                    bytes += self.iov[j].iov_len;
                    j += 1;
                    if self.iov[j - 1].iov_len < size {
                        break;
                    }
                }
            }
            self.runs.push((i, j - i));
            i = j;
        }
        if self.cmsgs.len() < self.runs.len() {
            self.cmsgs.resize(self.runs.len(), GsoCmsg([0; 24]));
        }
        self.hdrs.clear();
        for (k, &(first, count)) in self.runs.iter().enumerate() {
            // SAFETY: zeroed mmsghdr is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut self.iov[first];
            h.msg_hdr.msg_iovlen = count as _;
            h.msg_hdr.msg_name = &mut self.addrs[first] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_namelen = self.lens[first];
            if count > 1 {
                let buf = &mut self.cmsgs[k];
                // SAFETY: the buffer is CMSG_SPACE(2) bytes, aligned for cmsghdr; the
                // header and its u16 are written inside it.
                unsafe {
                    let space = libc::CMSG_SPACE(2) as usize;
                    debug_assert!(space <= buf.0.len());
                    h.msg_hdr.msg_control = buf.0.as_mut_ptr() as *mut libc::c_void;
                    h.msg_hdr.msg_controllen = space as _;
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                    let seg = self.iov[first].iov_len as u16;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
                }
            }
            self.hdrs.push(h);
        }
    }

    /// Sends everything queued with as few syscalls as possible; returns datagrams sent.
    pub fn send(&mut self, fd: i32) -> usize {
        let mut gso = gso_enabled();
        self.plan(gso);
        let mut sent = 0; // headers
        let mut datagrams = 0;
        while sent < self.hdrs.len() {
            let rest = &mut self.hdrs[sent..];
            // SAFETY: every header points at iovecs/addresses/control buffers owned by
            // self, alive here.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    rest.as_mut_ptr(),
                    rest.len().min(1024) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                let err = io::Error::last_os_error().raw_os_error();
                let refused = matches!(err, Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT));
                if gso && refused && self.runs[sent].1 > 1 {
                    // The kernel or device cannot segment: datagram by datagram from here.
                    tracing::warn!(
                        error = ?io::Error::from_raw_os_error(err.unwrap_or(0)),
                        "UDP GSO refused; sending datagrams one by one from now on"
                    );
                    GSO.with(|g| g.set(false));
                    gso = false;
                    let from = self.runs[sent].0;
                    self.iov.drain(..from);
                    self.addrs.drain(..from);
                    self.lens.drain(..from);
                    self.plan(false);
                    sent = 0;
                    continue;
                }
                break;
            }
            for &(_, count) in &self.runs[sent..sent + n as usize] {
                datagrams += count;
            }
            sent += n as usize;
        }
        self.clear();
        datagrams
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let s = socket2::SockAddr::from(addr);
    // SAFETY: SockAddr holds a valid sockaddr_storage of `len` bytes.
    let storage = unsafe { *(s.as_ptr() as *const libc::sockaddr_storage) };
    (storage, s.len())
}

/// One non-blocking `recvfrom`: Some((len, from)) when a datagram was waiting. Lets a
/// receive loop drain a burst before one flush per tick.
pub fn try_recv_from(fd: i32, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    // SAFETY: zeroed sockaddr_storage is valid; recvfrom writes at most `buf.len()` bytes
    // into `buf` and at most `len` bytes into `storage`.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let n = libc::recvfrom(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT,
            &mut storage as *mut _ as *mut libc::sockaddr,
            &mut len,
        );
        if n < 0 {
            return None;
        }
        let addr = socket2::SockAddr::new(storage, len).as_socket()?;
        Some((n as usize, addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn receive_all(sock: &UdpSocket, want: usize) -> Vec<Vec<u8>> {
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        while out.len() < want {
            let n = sock.recv(&mut buf).expect("datagram");
            out.push(buf[..n].to_vec());
        }
        out
    }

    /// Runs of equal sizes to one address (GSO when the kernel has it), a shorter last
    /// one, a size change and a second address: every datagram arrives whole, in order,
    /// as its own datagram.
    fn batch_round_trip(gso: bool) {
        GSO.with(|g| g.set(gso));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sizes_a = [1200usize, 1200, 1200, 700, 1200, 1200, 40, 1300];
        let payload =
            |i: usize, n: usize| -> Vec<u8> { (0..n).map(|k| (i * 31 + k) as u8).collect() };
        let data_a: Vec<Vec<u8>> = sizes_a
            .iter()
            .enumerate()
            .map(|(i, &n)| payload(i, n))
            .collect();
        let data_b: Vec<Vec<u8>> = (0..70).map(|i| payload(100 + i, 1000)).collect();
        let mut batch = UdpBatch::new();
        for d in &data_a[..3] {
            batch.push(d, a.local_addr().unwrap());
        }
        // 70 equal datagrams: more than one GSO message can carry.
        for d in &data_b {
            batch.push(d, b.local_addr().unwrap());
        }
        for d in &data_a[3..] {
            batch.push(d, a.local_addr().unwrap());
        }
        let sent = batch.send(tx.as_raw_fd());
        assert_eq!(sent, sizes_a.len() + data_b.len());
        assert_eq!(receive_all(&a, sizes_a.len()), data_a);
        assert_eq!(receive_all(&b, data_b.len()), data_b);
        assert!(batch.is_empty());
    }

    #[test]
    fn udp_batch_with_gso() {
        batch_round_trip(true);
        eprintln!("UDP GSO in use after the batch: {}", gso_enabled());
        // Either the kernel took GSO, or the first refusal turned it off and the batch
        // went datagram by datagram: both deliver everything (checked above).
    }

    #[test]
    fn udp_batch_without_gso() {
        batch_round_trip(false);
    }

    #[test]
    fn gso_runs_split_by_size_address_and_limits() {
        let mut batch = UdpBatch::new();
        let x: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let y: SocketAddr = "127.0.0.1:10".parse().unwrap();
        let big = vec![0u8; 1200];
        let small = vec![0u8; 100];
        for _ in 0..3 {
            batch.push(&big, x);
        }
        batch.push(&small, x); // ends the run (shorter last)
        batch.push(&big, x);
        batch.push(&big, y); // other address; the smaller ones after it end its run
        for _ in 0..GSO_MAX_SEGMENTS + 2 {
            batch.push(&small, y);
        }
        batch.plan(true);
        assert_eq!(
            batch.runs,
            vec![
                (0, 4),
                (4, 1),
                (5, 2),
                (7, GSO_MAX_SEGMENTS),
                (7 + GSO_MAX_SEGMENTS, 1)
            ]
        );
        batch.plan(false);
        assert_eq!(batch.runs.len(), batch.iov.len());
        batch.clear();
    }

    /// `Gathered`: one buffer of the iovecs' bytes, reused for the next write only when it
    /// is framed from the same packets with the same tags.
    #[test]
    fn gathered_bytes_are_the_iovecs_and_reused_only_for_the_same_key() {
        use std::rc::Rc;
        fn bytes(iov: &[libc::iovec]) -> Vec<u8> {
            iov.iter()
                // SAFETY: the test's iovecs point at live buffers.
                .flat_map(|v| unsafe {
                    std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len).to_vec()
                })
                .collect()
        }
        let (a, b) = (Rc::new(vec![1u8; 10]), Rc::new(vec![2u8; 20]));
        let head = [9u8; 4];
        let frame = |p: &[u8]| vec![iovec(&head), iovec(p)];
        let mut g: Gathered<Vec<u8>> = Gathered::default();
        let key = [(&a, 0u8), (&b, 0u8)];
        let mut iov = [frame(&a), frame(&b)].concat();
        let want = bytes(&iov);
        g.gather(&mut iov, Some(key.iter().copied()));
        assert_eq!(iov.len(), 1);
        assert_eq!(bytes(&iov), want);
        let first = iov[0].iov_base;
        let mut reused = Vec::new();
        assert!(g.reuse(&mut reused, key.iter().copied()));
        assert_eq!((reused.len(), reused[0].iov_base), (1, first));
        assert!(!g.reuse(&mut reused, key[..1].iter().copied()));
        // The same packets and tags: the same buffer, whatever the iovecs say.
        let mut iov = vec![iovec(&head), iovec(&head)];
        g.gather(&mut iov, Some(key.iter().copied()));
        assert_eq!((iov.len(), iov[0].iov_base), (1, first));
        assert_eq!(bytes(&iov), want);
        // Another tag, fewer packets, or no key: gathered anew.
        for k in [vec![(&a, 0u8), (&b, 1u8)], vec![(&a, 0u8)]] {
            let mut iov = frame(&b);
            let want = bytes(&iov);
            g.gather(&mut iov, Some(k.iter().copied()));
            assert_eq!(bytes(&iov), want);
        }
        let mut iov = [frame(&a), frame(&b)].concat();
        g.gather(&mut iov, None::<std::iter::Empty<(&Rc<Vec<u8>>, u8)>>);
        let mut iov = vec![iovec(&head), iovec(&a)];
        let want = bytes(&iov);
        g.gather(&mut iov, Some(key.iter().copied()));
        assert_eq!(bytes(&iov), want, "a write without a key is never reused");
        // The key does not keep its packets: the ring's drop frees them.
        let c = Rc::new(vec![3u8; 5]);
        let mut iov = vec![iovec(&head), iovec(&c)];
        g.gather(&mut iov, Some([(&c, 0u8)].into_iter()));
        let w = Rc::downgrade(&c);
        drop(c);
        assert!(w.upgrade().is_none());
        // Too large to gather: left as iovecs.
        let big = vec![7u8; GATHER_MAX];
        let mut iov = vec![iovec(&head), iovec(&big)];
        g.gather(&mut iov, Some([(&b, 5u8)].into_iter()));
        assert_eq!(iov.len(), 2);
    }

    /// An inline write into a socket that fills: what went plus what was spilled is the
    /// whole input, in order, and the iovecs are consumed.
    #[test]
    fn try_write_all_spills_the_rest_in_order() {
        use std::io::Read;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let parts: Vec<Vec<u8>> = (0..64)
            .map(|i| (0..8192).map(|k| (i * 7 + k) as u8).collect())
            .collect();
        let mut iov: Vec<libc::iovec> = parts.iter().map(|p| iovec(p)).collect();
        let mut rest = Vec::new();
        let all = try_write_all(a.as_raw_fd(), &mut iov, &mut rest).unwrap();
        assert!(!all, "512 KiB should not fit a socket pair's buffer");
        assert!(iov.is_empty());
        assert!(!rest.is_empty());
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        got.extend_from_slice(&rest);
        assert_eq!(got, parts.concat());
        // Everything fits: nothing spilled.
        let (c, _d) = std::os::unix::net::UnixStream::pair().unwrap();
        let small = [1u8; 100];
        let mut iov = vec![iovec(&small)];
        let mut rest = Vec::new();
        assert!(try_write_all(c.as_raw_fd(), &mut iov, &mut rest).unwrap());
        assert!(rest.is_empty());
        // One buffer (the `sendto` path) that does not fit: a partial write, then the
        // rest spilled, in order.
        let (e, mut f) = std::os::unix::net::UnixStream::pair().unwrap();
        e.set_nonblocking(true).unwrap();
        let big = parts.concat();
        let mut iov = vec![iovec(&big)];
        let mut rest = Vec::new();
        assert!(!try_write_all(e.as_raw_fd(), &mut iov, &mut rest).unwrap());
        assert!(!rest.is_empty() && rest.len() < big.len());
        drop(e);
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        got.extend_from_slice(&rest);
        assert_eq!(got, big);
    }
}
