//! HTTP/1.1 response heads, chunked framing, Basic auth checks and the WebSocket 101.
//!
//! The writers never emit a header line that could split the response: a header whose name
//! is not a token, or whose value holds CR, LF or another control character (tab excepted),
//! is dropped rather than written.

use super::HeadSlot;
use base64::Engine as _;

/// Ends one chunk after its data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk and the end of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Reason phrase for the statuses this server sends; "Unknown" otherwise.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Status line + headers + blank line.
///
/// `body_len`: `Some(n)` writes `Content-Length: n`, `None` writes
/// `Transfer-Encoding: chunked` (follow with [`chunk_header`] / data / [`CHUNK_END`] per chunk
/// and [`LAST_CHUNK`]). Neither is written for 1xx and 204 responses, and no
/// `Transfer-Encoding` for 304 (RFC 9110 §8.6, RFC 9112 §6.1). Chunked framing needs an
/// HTTP/1.1 client; see [`head_close_delimited`] for streaming to HTTP/1.0.
///
/// Then `Connection: keep-alive` or `Connection: close`. `headers` are written as given
/// (the caller adds Content-Type, CORS, ...), minus unsafe ones (see the module docs).
/// A status outside 100..=999 is written as 500.
pub fn head(
    status: u16,
    headers: &[(&str, &str)],
    body_len: Option<usize>,
    keep_alive: bool,
) -> Vec<u8> {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let mut out = Vec::with_capacity(128);
    put_status_line(&mut out, status);
    put_headers(&mut out, headers);
    let no_body = (100..200).contains(&status) || status == 204;
    match body_len {
        _ if no_body => {}
        Some(n) => put_header(&mut out, "Content-Length", &n.to_string()),
        None if status == 304 => {}
        None => put_header(&mut out, "Transfer-Encoding", "chunked"),
    }
    put_header(
        &mut out,
        "Connection",
        if keep_alive { "keep-alive" } else { "close" },
    );
    out.extend_from_slice(b"\r\n");
    out
}

/// Like [`head`] for a body that ends when the connection closes (HTTP/1.0 clients, which
/// cannot take chunked framing): no length, no `Transfer-Encoding`, `Connection: close`.
pub fn head_close_delimited(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let mut out = Vec::with_capacity(128);
    put_status_line(&mut out, status);
    put_headers(&mut out, headers);
    put_header(&mut out, "Connection", "close");
    out.extend_from_slice(b"\r\n");
    out
}

/// `"{len:x}\r\n"`: the header of one chunk of `len` bytes; the caller writes the data and
/// then [`CHUNK_END`]. `len` must be > 0 (a zero-size chunk ends the body): for 0 this returns
/// an empty header, and the caller must skip the chunk altogether. No allocation.
pub fn chunk_head(len: usize) -> HeadSlot {
    debug_assert!(len > 0, "an empty chunk would end the chunked body");
    let mut h = HeadSlot::default();
    if len == 0 {
        return h;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4) as usize;
    let mut hex = [0u8; 16];
    for (i, d) in hex[..digits].iter_mut().enumerate() {
        *d = HEX[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    h.push(&hex[..digits]);
    h.push(b"\r\n");
    h
}

/// [`chunk_head`] as a `Vec` (for one-off writes).
pub fn chunk_header(len: usize) -> Vec<u8> {
    chunk_head(len).to_vec()
}

/// Basic auth (RFC 7617): true when `authorization` is `Basic base64(user:pass)` for exactly
/// this user and password. The scheme is case-insensitive; the base64 must be canonical
/// (padded). Both sides are hashed and the digests compared without early exit, so timing
/// reveals neither content nor length of the secret.
pub fn basic_auth_ok(authorization: Option<&str>, user: &str, pass: &str) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("Basic") {
        return false;
    }
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(token.trim_start()) else {
        return false;
    };
    let expected = format!("{user}:{pass}");
    let a = ::ring::digest::digest(&::ring::digest::SHA256, &given);
    let b = ::ring::digest::digest(&::ring::digest::SHA256, expected.as_bytes());
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The `101 Switching Protocols` answer to a WebSocket handshake whose key came from
/// [`super::Request::websocket_key`]: `Upgrade`, `Connection` and `Sec-WebSocket-Accept`,
/// then `extra` (e.g. `Sec-WebSocket-Protocol`), then the blank line.
pub fn websocket_accept(key: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    put_status_line(&mut out, 101);
    put_header(&mut out, "Upgrade", "websocket");
    put_header(&mut out, "Connection", "Upgrade");
    put_header(
        &mut out,
        "Sec-WebSocket-Accept",
        &super::ws::accept_key(key),
    );
    put_headers(&mut out, extra);
    out.extend_from_slice(b"\r\n");
    out
}

fn put_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn put_headers(out: &mut Vec<u8>, headers: &[(&str, &str)]) {
    for &(name, value) in headers {
        put_header(out, name, value);
    }
}

fn put_header(out: &mut Vec<u8>, name: &str, value: &str) {
    if !is_safe_name(name) || !is_safe_value(value) {
        tracing::debug!(
            name,
            "dropping an HTTP response header that would break framing"
        );
        return;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// RFC 9110 token.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_safe_value(value: &str) -> bool {
    !value.bytes().any(|b| b != b'\t' && b.is_ascii_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn reasons() {
        assert_eq!(reason(200), "OK");
        assert_eq!(reason(101), "Switching Protocols");
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(505), "HTTP Version Not Supported");
        assert_eq!(reason(299), "Unknown");
        for s in [
            101, 200, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409, 411, 413, 414,
            415, 429, 431, 500, 501, 502, 503, 504, 505,
        ] {
            assert_ne!(reason(s), "Unknown", "{s}");
        }
    }

    #[test]
    fn head_with_length() {
        let h = head(
            200,
            &[
                ("Content-Type", "application/json"),
                ("Access-Control-Allow-Origin", "*"),
            ],
            Some(42),
            true,
        );
        assert_eq!(
            text(h),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Access-Control-Allow-Origin: *\r\nContent-Length: 42\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn head_chunked_and_close() {
        let h = head(404, &[], None, false);
        assert_eq!(
            text(h),
            "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn head_without_body_framing() {
        assert_eq!(
            text(head(204, &[], Some(0), true)),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            text(head(304, &[], None, true)),
            "HTTP/1.1 304 Not Modified\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            text(head(304, &[], Some(10), true)),
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            text(head(42, &[], Some(0), false)),
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            text(head_close_delimited(200, &[("Content-Type", "video/mp4")])),
            "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn unsafe_headers_are_dropped() {
        let h = text(head(
            200,
            &[
                ("X-Good", "a\tb"),
                ("X-Bad", "a\r\nSet-Cookie: evil"),
                ("X-Lf", "a\nb"),
                ("X-Cr", "a\rb"),
                ("X-Nul", "a\0b"),
                ("Bad Name", "v"),
                ("Bad:Name", "v"),
                ("", "v"),
                ("X-Empty", ""),
            ],
            Some(0),
            true,
        ));
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nX-Good: a\tb\r\nX-Empty: \r\nContent-Length: 0\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn chunks() {
        assert_eq!(chunk_header(1), b"1\r\n");
        assert_eq!(chunk_header(255), b"ff\r\n");
        assert_eq!(chunk_header(4096), b"1000\r\n");
        // The in-place header matches `format!` over the whole range, up to 16 digits.
        for len in [1usize, 15, 16, 17, 0xfff, 0x1000, 123_456_789, usize::MAX] {
            assert_eq!(
                chunk_head(len).as_bytes(),
                format!("{len:x}\r\n").as_bytes()
            );
        }
        let mut body = chunk_header(5);
        body.extend_from_slice(b"hello");
        body.extend_from_slice(CHUNK_END);
        body.extend_from_slice(LAST_CHUNK);
        assert_eq!(body, b"5\r\nhello\r\n0\r\n\r\n");
    }

    #[test]
    fn basic_auth() {
        // "admin:secret"
        let good = "Basic YWRtaW46c2VjcmV0";
        assert!(basic_auth_ok(Some(good), "admin", "secret"));
        assert!(basic_auth_ok(
            Some("basic YWRtaW46c2VjcmV0"),
            "admin",
            "secret"
        ));
        assert!(basic_auth_ok(
            Some("BASIC  YWRtaW46c2VjcmV0 "),
            "admin",
            "secret"
        ));
        assert!(!basic_auth_ok(Some(good), "admin", "secreT"));
        assert!(!basic_auth_ok(Some(good), "admin", "secret2"));
        assert!(!basic_auth_ok(Some(good), "admi", "secret"));
        assert!(!basic_auth_ok(Some(good), "admin:secret", ""));
        assert!(!basic_auth_ok(None, "admin", "secret"));
        assert!(!basic_auth_ok(Some(""), "admin", "secret"));
        assert!(!basic_auth_ok(Some("Basic"), "admin", "secret"));
        assert!(!basic_auth_ok(
            Some("Bearer YWRtaW46c2VjcmV0"),
            "admin",
            "secret"
        ));
        assert!(!basic_auth_ok(
            Some("Basic YWRtaW46c2VjcmV0!"),
            "admin",
            "secret"
        ));
        assert!(!basic_auth_ok(Some("YWRtaW46c2VjcmV0"), "admin", "secret"));
        // Password containing ':' — only the first colon separates user from password.
        let colon = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p:q")
        );
        assert!(basic_auth_ok(Some(&colon), "u", "p:q"));
        // Empty credentials are just ":".
        assert!(basic_auth_ok(Some("Basic Og=="), "", ""));
    }

    #[test]
    fn websocket_101() {
        let h = text(websocket_accept(
            "dGhlIHNhbXBsZSBub25jZQ==",
            &[("Sec-WebSocket-Protocol", "chat"), ("X-Bad", "a\r\n")],
        ));
        assert_eq!(
            h,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }
}
