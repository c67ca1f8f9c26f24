//! Low-level IO helpers: vectored sends with their iovec lifetimes (`sendv`), UDP sockets
//! bound without SO_REUSEPORT (`udp_bind`), TLS over a glommio socket (`tls`), listeners in
//! go2rtc's address forms (`listen`).

pub mod clock;
pub mod conn;
pub mod fd;
pub mod listen;
pub mod ready;
pub mod sendv;
pub mod tls;
pub mod udp_bind;
