//! RTSP over TLS for pull sources (`rtsps://`, and go2rtc's `rtspx://` = TLS without a
//! certificate check), with rustls driven by hand over a glommio socket: rustls is sans-IO,
//! so this is the same read → handle → write loop as everything else.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// A client connection, plain or TLS.
pub enum Io {
    Plain(TcpStream),
    /// A plain socket read through the shard's epoll set (`ready`): pulled cameras, so that
    /// their arrivals do not each wake the shard. The registration drops first.
    Polled(super::ready::Registration, TcpStream),
    Tls(Box<TlsIo>),
}

pub struct TlsIo {
    sock: TcpStream,
    conn: ClientConnection,
    scratch: Vec<u8>,
}

impl Io {
    /// Wraps `sock` in TLS and completes the handshake. `verify`: check the certificate
    /// against the webpki roots (rtsps), or accept any (rtspx).
    pub async fn tls(sock: TcpStream, host: &str, verify: bool) -> Result<Io, String> {
        let config = client_config(verify);
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("`{host}` is not a valid TLS server name"))?;
        let conn = ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
        let mut t = TlsIo {
            sock,
            conn,
            scratch: vec![0; 16 * 1024],
        };
        while t.conn.is_handshaking() {
            t.flush().await.map_err(|e| format!("TLS handshake: {e}"))?;
            if t.conn.is_handshaking()
                && t.fill().await.map_err(|e| format!("TLS handshake: {e}"))? == 0
            {
                return Err("TLS handshake: connection closed".into());
            }
        }
        t.flush().await.map_err(|e| format!("TLS: {e}"))?;
        Ok(Io::Tls(Box::new(t)))
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Polled(r, _) => r.read(buf).await,
            Io::Tls(t) => loop {
                match t.conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                // Only the socket read awaits here, so a timeout around `read` loses
                // nothing; what rustls wants to send goes out with the next write.
                if t.fill().await? == 0 {
                    return Ok(0);
                }
            },
        }
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Io::Plain(s) | Io::Polled(_, s) => s.write_all(data).await,
            Io::Tls(t) => {
                t.conn.writer().write_all(data)?;
                t.flush().await
            }
        }
    }
}

impl TlsIo {
    /// Reads ciphertext from the socket into rustls; returns bytes read (0 = EOF).
    async fn fill(&mut self) -> io::Result<usize> {
        let n = self.sock.read(&mut self.scratch).await?;
        if n == 0 {
            return Ok(0);
        }
        let mut rd = &self.scratch[..n];
        while !rd.is_empty() {
            self.conn.read_tls(&mut rd)?;
            self.conn
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        }
        Ok(n)
    }

    /// Sends whatever rustls wants to send.
    async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut out = Vec::new();
            self.conn.write_tls(&mut out)?;
            self.sock.write_all(&out).await?;
        }
        Ok(())
    }
}

fn client_config(verify: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let config = if verify {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    };
    Arc::new(config)
}

/// go2rtc's `rtspx://`: TLS for privacy on a LAN where cameras have self-signed
/// certificates; the certificate is not checked (signatures still are).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
