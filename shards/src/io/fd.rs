//! Sockets and child processes below what glommio and std offer: duplicating a socket
//! into a second owner, shutting one down, buffer sizes, process groups, CPU affinity.
//! Every `unsafe` line of these lives here, each with its reason.

use glommio::net::TcpStream;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd};

/// A second owner of `stream`'s socket (for a writer task beside the reader), or None when
/// the process is out of descriptors.
pub fn dup_stream(stream: &TcpStream) -> Option<TcpStream> {
    dup_owned(stream).ok().map(stream_from)
}

/// A duplicate of `stream`'s descriptor, owned: dropped unused, it closes.
pub fn dup_owned(stream: &TcpStream) -> std::io::Result<OwnedFd> {
    // SAFETY: the raw fd is `stream`'s open socket, borrowed only for the dup.
    unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()
}

/// Makes an owned socket descriptor (a dup, or one handed over by another shard) a stream.
pub fn stream_from(fd: OwnedFd) -> TcpStream {
    // SAFETY: an OwnedFd is open and ours alone; into_raw_fd hands that ownership over.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

/// shutdown(2): `SHUT_WR` to half-close, `SHUT_RDWR` to wake a pending read.
pub fn shutdown(stream: &TcpStream, how: libc::c_int) {
    // SAFETY: shutdown on an open socket fd; no memory involved.
    unsafe { libc::shutdown(stream.as_raw_fd(), how) };
}

/// shutdown(2) on a raw descriptor (an inline writer holds only the number; its task keeps
/// the descriptor open while it is parked).
pub fn shutdown_fd(fd: i32, how: libc::c_int) {
    // SAFETY: shutdown on a descriptor number; no memory involved, and a stale number only
    // fails (the caller's task keeps it open while it may be used).
    unsafe { libc::shutdown(fd, how) };
}

/// SO_SNDBUF of a socket.
pub fn set_sndbuf(fd: i32, size: usize) {
    let v = size as libc::c_int;
    // SAFETY: plain setsockopt on a valid fd with a correctly sized int.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// O_NONBLOCK on a descriptor we own (a child's pipe).
pub fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on an fd we own; no memory involved.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// SIGKILL to a whole process group we created (`process_group(0)`): `exec:sh -c "..."`
/// must not leave its children behind.
pub fn kill_group(pid: u32) {
    // SAFETY: kill(2) on a process group id; no memory involved.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
}

/// Lets a child run on every core: shard threads are pinned and children inherit that.
pub fn unpin_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (sched_setaffinity) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for i in 0..libc::CPU_SETSIZE as usize {
                libc::CPU_SET(i, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
}
