//! An HTTP connection: TCP, or the API's Unix socket (`api: unix_listen`).

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpStream, UnixStream};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

pub enum HttpConn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl HttpConn {
    pub async fn close(self) {
        use futures_lite::AsyncWriteExt;
        let _ = match self {
            HttpConn::Tcp(mut s) => s.close().await,
            HttpConn::Unix(mut s) => s.close().await,
        };
    }

    /// Reads, giving up after `idle` without data: TCP through its socket read timeout
    /// (set by the caller), a Unix socket (no timeouts in glommio) through a timer.
    pub async fn read_idle(
        &mut self,
        buf: &mut [u8],
        idle: std::time::Duration,
    ) -> io::Result<usize> {
        use futures_lite::AsyncReadExt;
        match self {
            HttpConn::Tcp(s) => s.read(buf).await,
            HttpConn::Unix(s) => {
                futures_lite::future::or(s.read(buf), async {
                    glommio::timer::sleep(idle).await;
                    Err(io::ErrorKind::TimedOut.into())
                })
                .await
            }
        }
    }

    /// Only TCP sockets have timeouts in glommio; Unix peers are local processes.
    pub fn set_read_timeout(&self, d: Option<std::time::Duration>) {
        if let HttpConn::Tcp(s) = self {
            let _ = s.set_read_timeout(d);
        }
    }

    pub fn set_write_timeout(&self, d: Option<std::time::Duration>) {
        if let HttpConn::Tcp(s) = self {
            let _ = s.set_write_timeout(d);
        }
    }
}

impl super::sendv::Sink for HttpConn {
    fn send_fd(&self) -> Option<i32> {
        match self {
            HttpConn::Tcp(s) => s.send_fd(),
            HttpConn::Unix(_) => None,
        }
    }
}

impl AsyncRead for HttpConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HttpConn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            HttpConn::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for HttpConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HttpConn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            HttpConn::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpConn::Tcp(s) => Pin::new(s).poll_flush(cx),
            HttpConn::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpConn::Tcp(s) => Pin::new(s).poll_close(cx),
            HttpConn::Unix(s) => Pin::new(s).poll_close(cx),
        }
    }
}
