//! Listening sockets in go2rtc's (Go's) address forms: ":PORT" is every address, IPv6 and
//! IPv4 on one socket (`[::]:PORT` with IPV6_V6ONLY off; IPv4 peers show as
//! `::ffff:a.b.c.d`), falling back to `0.0.0.0:PORT` where the host has no IPv6;
//! "0.0.0.0:PORT" is IPv4 only; "[::]:PORT" and "[::1]:PORT" are IPv6 only (V6ONLY on, whatever
//! `net.ipv6.bindv6only` says); "127.0.0.1:PORT" is as written.
//!
//! TCP listeners set SO_REUSEPORT (every shard binds the same port and the kernel spreads
//! connections); the RTP/RTCP UDP ports do not (see `udp_bind`).

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::unix::io::{FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use tracing::warn;

/// Binds a socket of type `ty` for `addr` (`dual_stack`: the config said ":PORT"). `setup`
/// runs before the bind. Returns the socket and the address it is bound to.
fn bind(
    addr: SocketAddr,
    dual_stack: bool,
    ty: Type,
    setup: &dyn Fn(&Socket) -> io::Result<()>,
) -> io::Result<(Socket, SocketAddr)> {
    if dual_stack {
        let any6 = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), addr.port());
        match bind_one(any6, false, ty, setup) {
            Err(e) if no_ipv6(&e) => {
                static WARNED: AtomicBool = AtomicBool::new(false);
                if !WARNED.swap(true, Relaxed) {
                    warn!(port = addr.port(), error = %e, "IPv6 unavailable; listening on IPv4 only");
                }
            }
            r => return r.map(|s| (s, any6)),
        }
        let any4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
        return bind_one(any4, false, ty, setup).map(|s| (s, any4));
    }
    bind_one(addr, addr.is_ipv6(), ty, setup).map(|s| (s, addr))
}

fn bind_one(
    addr: SocketAddr,
    v6_only: bool,
    ty: Type,
    setup: &dyn Fn(&Socket) -> io::Result<()>,
) -> io::Result<Socket> {
    let proto = if ty == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let sock = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        sock.set_only_v6(v6_only)?;
    }
    setup(&sock)?;
    sock.bind(&SockAddr::from(addr))?;
    Ok(sock)
}

/// The errors of a host without IPv6 (module not loaded, or disabled by sysctl).
fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

/// A TCP listener, SO_REUSEPORT, on the executor of the calling thread.
pub fn tcp(addr: SocketAddr, dual_stack: bool) -> io::Result<glommio::net::TcpListener> {
    let (sock, _) = bind(addr, dual_stack, Type::STREAM, &|s| s.set_reuse_port(true))?;
    sock.listen(1024)?;
    // SAFETY: into_raw_fd gives up ownership of a bound, listening TCP socket; the glommio
    // listener becomes its only owner.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(sock.into_raw_fd()) })
}

/// A UDP socket ours alone (no SO_REUSEPORT or SO_REUSEADDR): a taken port is `AddrInUse`.
pub fn udp_exclusive(addr: SocketAddr, dual_stack: bool) -> io::Result<glommio::net::UdpSocket> {
    let (sock, _) = bind(addr, dual_stack, Type::DGRAM, &|_| Ok(()))?;
    // SAFETY: into_raw_fd gives up ownership of a freshly bound UDP socket; the glommio
    // socket becomes its only owner.
    Ok(unsafe { glommio::net::UdpSocket::from_raw_fd(sock.into_raw_fd()) })
}

/// A UDP socket with SO_REUSEPORT: every shard binds the same WebRTC port, and the kernel
/// spreads remote addresses over the shards' sockets by a hash of the 4-tuple (a given
/// remote address always reaches the same shard). Returns the socket and its address.
pub fn udp_shared(
    addr: SocketAddr,
    dual_stack: bool,
) -> io::Result<(glommio::net::UdpSocket, SocketAddr)> {
    let (sock, at) = bind(addr, dual_stack, Type::DGRAM, &|s| s.set_reuse_port(true))?;
    let at = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(at);
    // SAFETY: into_raw_fd gives up ownership of a freshly bound UDP socket; the glommio
    // socket becomes its only owner.
    Ok((
        unsafe { glommio::net::UdpSocket::from_raw_fd(sock.into_raw_fd()) },
        at,
    ))
}

/// The host's interface addresses (getifaddrs), for WebRTC host candidates.
pub fn interfaces() -> Vec<corecast::webrtc::ice::InterfaceAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below; every node is read only
    // while the list is alive, and null pointers are checked.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut p = head;
        while !p.is_null() && out.len() < 256 {
            let ifa = &*p;
            p = ifa.ifa_next;
            if ifa.ifa_addr.is_null() {
                continue;
            }
            let family = i32::from((*ifa.ifa_addr).sa_family);
            let len = match family {
                libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
                libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
                _ => continue,
            };
            let mut storage: libc::sockaddr_storage = std::mem::zeroed();
            std::ptr::copy_nonoverlapping(
                ifa.ifa_addr as *const u8,
                &mut storage as *mut _ as *mut u8,
                len,
            );
            let Some(sa) = SockAddr::new(storage, len as libc::socklen_t).as_socket() else {
                continue;
            };
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let flags = ifa.ifa_flags;
            out.push(corecast::webrtc::ice::InterfaceAddr {
                name,
                ip: sa.ip(),
                up: flags & libc::IFF_UP as u32 != 0,
                loopback: flags & libc::IFF_LOOPBACK as u32 != 0,
            });
        }
        libc::freeifaddrs(head);
    }
    out
}

/// A peer as go2rtc (Go) shows it: an IPv4 client of a dual-stack socket is `a.b.c.d:port`,
/// not `[::ffff:a.b.c.d]:port`.
pub fn peer_text(peer: SocketAddr) -> String {
    match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()).to_string(),
            None => peer.to_string(),
        },
        SocketAddr::V4(_) => peer.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener as StdListener, TcpStream};
    use std::time::Duration;

    fn free_port() -> u16 {
        StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn connects(to: &str) -> bool {
        TcpStream::connect_timeout(&to.parse().unwrap(), Duration::from_secs(2)).is_ok()
    }

    fn ipv6() -> bool {
        StdListener::bind("[::1]:0").is_ok()
    }

    #[test]
    fn peers_show_as_go2rtc() {
        let t = |s: &str| peer_text(s.parse().unwrap());
        assert_eq!(t("[::ffff:10.0.0.2]:5000"), "10.0.0.2:5000");
        assert_eq!(t("[::1]:5000"), "[::1]:5000");
        assert_eq!(t("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn forms_reach_the_families_they_name() {
        let port = free_port();
        let (s, at) = bind(
            format!("0.0.0.0:{port}").parse().unwrap(),
            true,
            Type::STREAM,
            &|s| s.set_reuse_port(true),
        )
        .unwrap();
        s.listen(8).unwrap();
        assert!(connects(&format!("127.0.0.1:{port}")));
        if ipv6() {
            assert_eq!(at, format!("[::]:{port}").parse().unwrap());
            assert!(connects(&format!("[::1]:{port}")), "dual stack");
        }
        drop(s);

        let port = free_port();
        let (s, _) = bind(
            format!("0.0.0.0:{port}").parse().unwrap(),
            false,
            Type::STREAM,
            &|_| Ok(()),
        )
        .unwrap();
        s.listen(8).unwrap();
        assert!(connects(&format!("127.0.0.1:{port}")));
        assert!(!connects(&format!("[::1]:{port}")), "IPv4 only");
        drop(s);

        if ipv6() {
            let port = free_port();
            let (s, _) = bind(
                format!("[::]:{port}").parse().unwrap(),
                false,
                Type::STREAM,
                &|_| Ok(()),
            )
            .unwrap();
            s.listen(8).unwrap();
            assert!(connects(&format!("[::1]:{port}")));
            assert!(!connects(&format!("127.0.0.1:{port}")), "IPv6 only");
            assert!(s.only_v6().unwrap());
        }
    }
}
