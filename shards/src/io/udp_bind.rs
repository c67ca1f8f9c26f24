//! UDP sockets whose port must be ours alone.
//!
//! glommio's `UdpSocket::bind` always sets `SO_REUSEPORT`: two sockets (two pulled cameras
//! picking the same "random" port, or a second server on the RTP port) could then bind the
//! same port and the kernel would split their datagrams between them. These are bound
//! without it, so a taken port is an `AddrInUse` error and the caller tries another.

use glommio::net::UdpSocket;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::os::unix::io::{FromRawFd, IntoRawFd};

/// Binds `addr` without `SO_REUSEPORT` (or `SO_REUSEADDR`).
pub fn bind_exclusive(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.bind(&addr.into())?;
    // SAFETY: into_raw_fd gives up ownership of a freshly bound UDP socket; the glommio
    // socket becomes its only owner.
    Ok(unsafe { UdpSocket::from_raw_fd(sock.into_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;
    use std::os::unix::io::AsRawFd;

    fn on_executor(f: impl FnOnce() + Send + 'static) {
        LocalExecutorBuilder::default()
            .spawn(move || async move { f() })
            .expect("executor")
            .join()
            .expect("test body");
    }

    #[test]
    fn a_bound_port_is_not_shared() {
        on_executor(|| {
            let a = bind_exclusive("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = a.local_addr().unwrap();
            let again = bind_exclusive(addr).unwrap_err();
            assert_eq!(again.kind(), std::io::ErrorKind::AddrInUse);
            // glommio's own bind (SO_REUSEPORT) cannot join it either.
            assert!(UdpSocket::bind(addr).is_err());
            let mut on: libc::c_int = 1;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt into a local int of the right size.
            let rc = unsafe {
                libc::getsockopt(
                    a.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_REUSEPORT,
                    &mut on as *mut _ as *mut libc::c_void,
                    &mut len,
                )
            };
            assert_eq!((rc, on), (0, 0));
        });
    }
}
