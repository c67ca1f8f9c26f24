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

/// One `sendmsg(MSG_DONTWAIT)`; returns bytes written, or `WouldBlock`. (Public for
/// `benches/egress_submit.rs`, which compares it with one io_uring submission per tick.)
pub fn try_sendmsg(fd: i32, iov: &[libc::iovec]) -> io::Result<usize> {
    // SAFETY: `msg` points at `iov`, which outlives the call; every iovec points into
    // memory the caller keeps alive for the duration of the call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len().min(libc::UIO_MAXIOV as usize) as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
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
            Ok(mut n) => {
                total += n;
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
pub struct UdpBatch {
    iov: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<libc::socklen_t>,
    hdrs: Vec<libc::mmsghdr>,
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
    }

    /// Queues one datagram; `data` must stay alive until `send` returns.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) {
        let (storage, len) = sockaddr(to);
        self.iov.push(iovec(data));
        self.addrs.push(storage);
        self.lens.push(len);
    }

    /// Sends everything queued with as few syscalls as possible; returns datagrams sent.
    pub fn send(&mut self, fd: i32) -> usize {
        self.hdrs.clear();
        for i in 0..self.iov.len() {
            // SAFETY: zeroed mmsghdr is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_namelen = self.lens[i];
            self.hdrs.push(h);
        }
        let mut sent = 0;
        while sent < self.hdrs.len() {
            let rest = &mut self.hdrs[sent..];
            // SAFETY: every header points at iovecs/addresses owned by self, alive here.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    rest.as_mut_ptr(),
                    rest.len().min(1024) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
            sent += n as usize;
        }
        self.clear();
        sent
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
