//! The shard's RTP/RTCP UDP port pair: receives publishers' media (routed by source
//! address to their session) and readers' RTCP; readers' media leaves from the same
//! sockets (see `rtsp::writer`).

use crate::core::hub::Shard;
use bytes::BytesMut;
use glommio::net::UdpSocket;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use tracing::{debug, warn};

/// Where a UDP datagram from a publisher goes.
pub struct UdpRoute {
    pub publish: crate::egress::rtsp::PublishSlot,
    pub track: u8,
    /// Last time the publisher was heard from (keeps its RTSP session alive).
    pub activity: Rc<Cell<u64>>,
}

thread_local! {
    /// This shard's RTP/RTCP port pair, once bound (one shard per thread).
    pub static PAIR: RefCell<Option<Rc<UdpPair>>> = const { RefCell::new(None) };
    /// UDP publishers by source address.
    pub static ROUTES: RefCell<HashMap<SocketAddr, UdpRoute>> = RefCell::new(HashMap::new());
}

/// This shard's port pair, if bound.
pub fn pair() -> Option<Rc<UdpPair>> {
    PAIR.with(|p| p.borrow().clone())
}

pub struct UdpPair {
    pub ports: (u16, u16),
    pub rtp_fd: i32,
    pub rtcp_fd: i32,
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl UdpPair {
    /// Binds `ip:port` and `ip:port+1`, ours alone (a second server on the same ports
    /// fails to bind rather than taking half of our datagrams).
    /// `dual_stack`: IPv6 and IPv4, as the RTSP listener (`io::listen`).
    pub fn bind(ip: IpAddr, port: u16, dual_stack: bool) -> std::io::Result<UdpPair> {
        let rtp = crate::io::listen::udp_exclusive(SocketAddr::new(ip, port), dual_stack)?;
        let rtcp = crate::io::listen::udp_exclusive(SocketAddr::new(ip, port + 1), dual_stack)?;
        Ok(UdpPair {
            ports: (port, port + 1),
            rtp_fd: rtp.as_raw_fd(),
            rtcp_fd: rtcp.as_raw_fd(),
            rtp,
            rtcp,
        })
    }
}

/// Receive loops for both sockets; runs for the life of the shard.
pub fn spawn(shard: Rc<Shard>, pair: Rc<UdpPair>) {
    let (sh, p) = (shard.clone(), pair.clone());
    glommio::spawn_local(async move { rtp_loop(sh, p).await }).detach();
    glommio::spawn_local(async move { rtcp_loop(shard, pair).await }).detach();
}

async fn rtp_loop(shard: Rc<Shard>, pair: Rc<UdpPair>) {
    use crate::sources::pull::MAX_DATAGRAM;
    // Datagrams land in `scratch` (zeroed once) and are copied into `buf`, whose slices
    // they become: zeroing a receive window per datagram (`resize`) cost more than the
    // copy of the datagram itself.
    let mut scratch = vec![0u8; MAX_DATAGRAM];
    let mut buf = BytesMut::new();
    let mut unknown: u64 = 0;
    loop {
        let (n, from) = match pair.rtp.recv_from(&mut scratch).await {
            Ok(v) => v,
            Err(e) => {
                warn!(shard = shard.id, error = %e, "udp rtp receive failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Then whatever else is already waiting, with one flush per publisher at the end:
        // a producer tick, not a wake-up of every viewer per datagram.
        let mut touched: Vec<crate::egress::rtsp::PublishSlot> = Vec::new();
        let mut next = Some((n, from));
        let mut budget = 64;
        while let Some((n, from)) = next {
            // Datagrams of MAX_DATAGRAM bytes or more may be truncated: dropped.
            if n < MAX_DATAGRAM {
                // The datagram becomes a slice of one large buffer, shared on.
                if buf.capacity() < n {
                    buf = BytesMut::with_capacity(256 * 1024);
                }
                buf.extend_from_slice(&scratch[..n]);
                let data = buf.split().freeze();
                let route = ROUTES.with(|r| {
                    r.borrow()
                        .get(&from)
                        .map(|r| (r.publish.clone(), r.track, r.activity.clone()))
                });
                match route {
                    Some((slot, track, activity)) => {
                        activity.set(shard.clock.now());
                        crate::egress::rtsp::ingest_udp(&shard, &slot, track, data);
                        if !touched.iter().any(|t| Rc::ptr_eq(t, &slot)) {
                            touched.push(slot);
                        }
                    }
                    None => {
                        unknown += 1;
                        if unknown.is_power_of_two() {
                            debug!(shard = shard.id, %from, count = unknown, "udp packet from unknown source dropped");
                        }
                    }
                }
            }
            budget -= 1;
            if budget == 0 {
                break;
            }
            next = crate::io::sendv::try_recv_from(pair.rtp_fd, &mut scratch);
        }
        for slot in &touched {
            crate::egress::rtsp::flush_udp(&shard, slot);
        }
    }
}

async fn rtcp_loop(shard: Rc<Shard>, pair: Rc<UdpPair>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match pair.rtcp.recv_from(&mut buf).await {
            Ok((_, from)) => {
                // Receiver reports keep a UDP session alive; publishers' RTCP routes by
                // their RTP port (RTCP port − 1).
                let rtp_from = SocketAddr::new(from.ip(), from.port().wrapping_sub(1));
                let activity =
                    ROUTES.with(|r| r.borrow().get(&rtp_from).map(|r| r.activity.clone()));
                if let Some(a) = activity {
                    a.set(shard.clock.now());
                }
            }
            Err(e) => {
                warn!(shard = shard.id, error = %e, "udp rtcp receive failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
