//! Strict HTTP/1.0 and HTTP/1.1 request parsing (RFC 9112) on top of `httparse`.
//!
//! [`parse_request`] is stateless: it looks at the front of a growing buffer and either returns
//! one complete request (head plus `Content-Length` body) with the number of bytes it used, or
//! asks for more. Every scan is bounded by [`Limits::max_head`], so re-parsing a buffer that
//! grows a few bytes at a time stays cheap, and nothing is allocated beyond the limits.
//!
//! What is refused, and why:
//! - `Transfer-Encoding` on a request (501): we never take chunked uploads, and refusing it
//!   removes every `Transfer-Encoding`/`Content-Length` smuggling ambiguity.
//! - duplicate (even identical) or non-decimal `Content-Length` (400).
//! - obsolete line folding, bare CR, control characters and whatever else `httparse` rejects
//!   in its default (strict) configuration (400). `httparse` accepts a bare LF as a line end.
//! - a request target that is not origin-form (`/…`), except `*` for `OPTIONS` (400).
//! - header values that are not UTF-8, and a path that decodes to a control character such as
//!   NUL (400).

use bytes::Bytes;

/// Size limits applied while parsing; see [`parse_request`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line plus headers plus the blank line (and any CR/LF before the request line).
    pub max_head: usize,
    /// Number of header lines.
    pub max_headers: usize,
    /// Length of the raw request target.
    pub max_target: usize,
    /// Largest accepted `Content-Length`.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 64,
            max_target: 8 * 1024,
            max_body: 1024 * 1024,
        }
    }
}

/// Why a request was refused. [`HttpError::status`] is the status to answer with before
/// closing the connection (message boundaries are lost after any of these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Syntax error in the request line or a header; the text says which.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request head exceeds the size limit")]
    HeadTooLarge,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("request target exceeds the length limit")]
    TargetTooLong,
    #[error("Content-Length exceeds the body size limit")]
    BodyTooLarge,
    #[error("Transfer-Encoding is not accepted on requests")]
    UnsupportedTransferEncoding,
    #[error("HTTP version not supported")]
    BadVersion,
    #[error("invalid or duplicate Content-Length")]
    BadContentLength,
}

impl HttpError {
    /// The status to answer with: 400, 413 (body), 414 (target), 431 (head or header count),
    /// 501 (Transfer-Encoding), 505 (a version other than HTTP/1.0 and HTTP/1.1).
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) | HttpError::BadContentLength => 400,
            HttpError::BodyTooLarge => 413,
            HttpError::TargetTooLong => 414,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::BadVersion => 505,
        }
    }
}

/// One parsed request. `body` is empty unless `Content-Length` said otherwise.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method token as sent (methods are case-sensitive).
    pub method: String,
    /// Raw request target as sent ("/api/streams?src=a%20b").
    pub target: String,
    /// Path part, percent-decoded; must start with '/' (or is "*" for `OPTIONS *`).
    /// Unlike the query, a '+' in the path stays a '+'.
    pub path: String,
    /// Query pairs, percent-decoded ('+' is a space), in order; a key without '=' has value "".
    /// Empty pieces (`a=1&&b=2`) are skipped.
    pub query: Vec<(String, String)>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header names keep the case they were sent in; values are trimmed of spaces and tabs.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Request {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// First value of query parameter `key` (exact, case-sensitive match on the decoded key).
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `key`, in order (go2rtc allows repeated `src=`).
    pub fn query_all(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// HTTP/1.1: true unless `Connection: close`; HTTP/1.0: only with `Connection: keep-alive`
    /// (and no `close`). Every `Connection` header counts; tokens are case-insensitive.
    pub fn keep_alive(&self) -> bool {
        if self.has_token("Connection", "close") {
            return false;
        }
        self.version >= 1 || self.has_token("Connection", "keep-alive")
    }

    /// The `Sec-WebSocket-Key` of a valid RFC 6455 §4.2.1 opening handshake: an HTTP/1.1 `GET`
    /// whose `Connection` contains `upgrade`, whose `Upgrade` contains `websocket`, with
    /// `Sec-WebSocket-Version: 13` and exactly one key that is base64 of 16 bytes.
    /// `None` for anything else (including HTTP/1.0, which RFC 6455 does not allow).
    pub fn websocket_key(&self) -> Option<&str> {
        use base64::Engine as _;
        if self.method != "GET"
            || self.version != 1
            || !self.has_token("Connection", "upgrade")
            || !self.has_token("Upgrade", "websocket")
        {
            return None;
        }
        let mut versions = self.headers_all("Sec-WebSocket-Version");
        if versions.next() != Some("13") || versions.next().is_some() {
            return None;
        }
        let mut keys = self.headers_all("Sec-WebSocket-Key");
        let key = keys.next()?;
        if keys.next().is_some() || key.len() != 24 {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(key).ok()?;
        (raw.len() == 16).then_some(key)
    }

    /// Whether any `name` header holds `token` in its comma-separated list (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers_all(name).any(|v| {
            v.split(',')
                .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
        })
    }
}

/// Header slots kept on the stack; larger `max_headers` limits use the heap.
const STACK_HEADERS: usize = 64;

/// Parses one request (head + `Content-Length` body) from the start of `buf`.
///
/// - `Ok(Some((request, consumed)))`: `consumed` bytes (leading CR/LF, head and body) make up
///   the request; pipelined bytes after them are left untouched.
/// - `Ok(None)`: more bytes are needed. That stops being an answer once `buf` holds more than
///   `max_head` bytes without a complete head ([`HttpError::HeadTooLarge`]), and a too large
///   `Content-Length` is refused as soon as the head is complete, before the body arrives.
/// - `Err(e)`: refuse with `e.status()` and close.
///
/// Never panics; allocates only the request it returns (head and body within the limits).
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HttpError> {
    let window = &buf[..buf.len().min(limits.max_head)];
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        // A header line takes at least 3 bytes ("a:\n"), so more slots than this could never
        // be filled from `window`; the cap keeps a huge `max_headers` from allocating.
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers.min(limits.max_head / 3 + 1)];
        &mut heap
    };
    let mut parsed = httparse::Request::new(slots);
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if partial_target_len(window) > limits.max_target {
                return Err(HttpError::TargetTooLong);
            }
            if buf.len() > limits.max_head {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(e) => return Err(map_httparse_error(e, window)),
    };
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        // httparse fills all three before it reports a complete head.
        return Err(HttpError::Malformed("incomplete request line"));
    };
    if target.len() > limits.max_target {
        return Err(HttpError::TargetTooLong);
    }
    check_target(method, target)?;

    let mut headers = Vec::with_capacity(parsed.headers.len());
    let mut content_length: Option<u64> = None;
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::Malformed("header value is not UTF-8"))?;
        if h.name.eq_ignore_ascii_case("Transfer-Encoding") {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        if h.name.eq_ignore_ascii_case("Content-Length") {
            if content_length.is_some() {
                return Err(HttpError::BadContentLength);
            }
            content_length = Some(parse_decimal(value).ok_or(HttpError::BadContentLength)?);
        }
        headers.push((h.name.to_owned(), value.to_owned()));
    }
    let body_len = match content_length {
        None => 0,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= limits.max_body)
            .ok_or(HttpError::BodyTooLarge)?,
    };
    // head_len <= window.len() <= buf.len(), and body_len <= max_body, so no overflow unless
    // the limits themselves are absurd; checked anyway.
    let Some(total) = head_len.checked_add(body_len) else {
        return Err(HttpError::BodyTooLarge);
    };
    let Some(body) = buf.get(head_len..total) else {
        return Ok(None);
    };

    let (path, query) = split_target(target)?;
    Ok(Some((
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            path,
            query,
            version,
            headers,
            body: Bytes::copy_from_slice(body),
        },
        total,
    )))
}

/// Maps an `httparse` error; a well-formed but unsupported `HTTP/x.y` version is a 505, any
/// other version garbage a 400.
fn map_httparse_error(e: httparse::Error, window: &[u8]) -> HttpError {
    match e {
        httparse::Error::Version if is_other_http_version(window) => HttpError::BadVersion,
        httparse::Error::Version => HttpError::Malformed("bad HTTP version"),
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
        httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
        httparse::Error::Token => HttpError::Malformed("invalid method or request target"),
        httparse::Error::Status => HttpError::Malformed("invalid request line"),
    }
}

/// The request line of `window` (after leading CR/LF, up to CR, LF or the end).
fn request_line(window: &[u8]) -> &[u8] {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let rest = &window[start..];
    let end = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Whether the request line's version (possibly still incomplete) is `HTTP/` followed by
/// digits and at most one dot: "HTTP/2.0", "HTTP/1.2", "HTTP/3".
fn is_other_http_version(window: &[u8]) -> bool {
    let mut parts = request_line(window).splitn(3, |&b| b == b' ');
    let version = parts.nth(2).unwrap_or(&[]);
    let Some(num) = version.strip_prefix(b"HTTP/") else {
        return false;
    };
    let (major, minor) = match num.iter().position(|&b| b == b'.') {
        Some(dot) => (&num[..dot], &num[dot + 1..]),
        None => (num, &[][..]),
    };
    !major.is_empty()
        && major.iter().all(u8::is_ascii_digit)
        && minor.iter().all(u8::is_ascii_digit)
}

/// Length of the (possibly incomplete) request target in an incomplete head; 0 before the
/// method is complete.
fn partial_target_len(window: &[u8]) -> usize {
    let line = request_line(window);
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return 0;
    };
    let rest = &line[sp + 1..];
    rest.iter().position(|&b| b == b' ').unwrap_or(rest.len())
}

fn check_target(method: &str, target: &str) -> Result<(), HttpError> {
    if target.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        // httparse already refuses these; kept so the invariant does not rest on it alone.
        return Err(HttpError::Malformed("control character in request target"));
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(())
        } else {
            Err(HttpError::Malformed("'*' target is only valid for OPTIONS"))
        };
    }
    if !target.starts_with('/') {
        return Err(HttpError::Malformed(
            "request target is not an absolute path",
        ));
    }
    Ok(())
}

fn split_target(target: &str) -> Result<(String, Vec<(String, String)>), HttpError> {
    let (raw_path, raw_query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = decode(raw_path, false);
    if path.chars().any(char::is_control) {
        return Err(HttpError::Malformed("path decodes to a control character"));
    }
    let query = raw_query
        .map(|q| {
            q.split('&')
                .filter(|piece| !piece.is_empty())
                .map(|piece| {
                    let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((path, query))
}

/// Decodes `%XX` escapes and `+` (as a space), as in query strings and
/// `application/x-www-form-urlencoded` bodies. Invalid escapes are kept literally; bytes that
/// do not form UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Plain ASCII decimal (no sign, no spaces, no list); saturates instead of overflowing.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
        parse_request(buf, &Limits::default())
    }

    /// Parses a complete request that must use all of `buf`.
    fn parse_all(buf: &[u8]) -> Request {
        let (req, n) = parse(buf).unwrap().expect("complete request");
        assert_eq!(n, buf.len());
        req
    }

    fn err(buf: &[u8]) -> HttpError {
        match parse(buf) {
            Err(e) => e,
            other => panic!(
                "expected an error for {:?}, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    fn status(buf: &[u8]) -> u16 {
        err(buf).status()
    }

    #[test]
    fn simple_get() {
        let req = parse_all(
            b"GET /api/streams?src=a%20b&x HTTP/1.1\r\nHost: example\r\nAccept:  */* \r\n\r\n",
        );
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/api/streams?src=a%20b&x");
        assert_eq!(req.path, "/api/streams");
        assert_eq!(
            req.query,
            vec![("src".into(), "a b".into()), ("x".into(), String::new())]
        );
        assert_eq!(req.version, 1);
        assert_eq!(
            req.headers,
            vec![
                ("Host".into(), "example".into()),
                ("Accept".into(), "*/*".into())
            ]
        );
        assert_eq!(req.header("host"), Some("example"));
        assert_eq!(req.header("ACCEPT"), Some("*/*"));
        assert_eq!(req.header("Missing"), None);
        assert!(req.body.is_empty());
        assert!(req.keep_alive());
    }

    #[test]
    fn post_with_body_and_pipelining() {
        let first = b"POST /api/streams HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world";
        let second = b"GET /two HTTP/1.1\r\n\r\n";
        let mut buf = first.to_vec();
        buf.extend_from_slice(second);
        buf.extend_from_slice(b"GET /thr"); // incomplete third request
        let (req, n) = parse(&buf).unwrap().unwrap();
        assert_eq!(n, first.len());
        assert_eq!(req.method, "POST");
        assert_eq!(&req.body[..], b"hello world");
        let (req, m) = parse(&buf[n..]).unwrap().unwrap();
        assert_eq!(m, second.len());
        assert_eq!(req.path, "/two");
        assert!(parse(&buf[n + m..]).unwrap().is_none());
    }

    #[test]
    fn leading_blank_lines_are_consumed() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let (req, n) = parse(buf).unwrap().unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(req.path, "/");
        assert!(parse(b"\r\n\r\n").unwrap().is_none());
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let req = parse_all(b"GET /x HTTP/1.1\nHost: a\n\n");
        assert_eq!(req.header("Host"), Some("a"));
    }

    #[test]
    fn every_prefix_needs_more() {
        let first: &[u8] =
            b"POST /api/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Y: z\r\n\r\nabcde";
        let mut buf = first.to_vec();
        buf.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        for k in 0..first.len() {
            assert!(
                parse(&buf[..k]).unwrap().is_none(),
                "prefix of {k} bytes: {:?}",
                String::from_utf8_lossy(&buf[..k])
            );
        }
        for k in first.len()..=buf.len() {
            let (req, n) = parse(&buf[..k]).unwrap().unwrap();
            assert_eq!(n, first.len());
            assert_eq!(&req.body[..], b"abcde");
        }
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &str| parse_all(s.as_bytes()).keep_alive();
        assert!(ka("GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(ka(
            "GET / HTTP/1.0\r\nConnection: foo ,\tkeep-alive\r\n\r\n"
        ));
        assert!(!ka(
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\nConnection: keep-alive-ish\r\n\r\n"));
        assert_eq!(parse_all(b"GET / HTTP/1.0\r\n\r\n").version, 0);
    }

    #[test]
    fn bad_request_lines_are_400() {
        for buf in [
            &b"GET/ HTTP/1.1\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b"G\x01T / HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"GET / HTTX/1.1\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET / HTTP/1.1\rX: y\r\n\r\n",
            b" GET / HTTP/1.1\r\n\r\n",
            b"GET http://example.com/ HTTP/1.1\r\n\r\n",
            b"GET example.com:80 HTTP/1.1\r\n\r\n",
            b"GET * HTTP/1.1\r\n\r\n",
            b"GET /a%00b HTTP/1.1\r\n\r\n",
            b"GET /a%0d%0a HTTP/1.1\r\n\r\n",
        ] {
            let e = err(buf);
            assert!(
                matches!(e, HttpError::Malformed(_)),
                "{:?}: {e:?}",
                String::from_utf8_lossy(buf)
            );
            assert_eq!(e.status(), 400);
        }
        // Detected before the line is complete.
        assert_eq!(status(b"G\x01"), 400);
        assert_eq!(status(b"GET /\x00"), 400);
    }

    #[test]
    fn options_star() {
        let req = parse_all(b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(req.path, "*");
        assert!(req.query.is_empty());
    }

    #[test]
    fn bad_headers_are_400() {
        for buf in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n  folded\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
            b"GET / HTTP/1.1\r\n: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n\r\r\n",
        ] {
            let e = err(buf);
            assert!(
                matches!(e, HttpError::Malformed(_)),
                "{:?}: {e:?}",
                String::from_utf8_lossy(buf)
            );
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn head_size_limit_is_431() {
        let limits = Limits::default();
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(limits.max_head, b'a');
        assert!(parse(&buf).unwrap().is_none());
        buf.push(b'a');
        assert_eq!(err(&buf), HttpError::HeadTooLarge);
        assert_eq!(err(&buf).status(), 431);
        // A complete head of exactly max_head bytes is fine.
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(limits.max_head - 4, b'a');
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(buf.len(), limits.max_head);
        parse_all(&buf);
        // A flood of blank lines counts against the head too.
        assert_eq!(
            err(&vec![b'\n'; limits.max_head + 1]),
            HttpError::HeadTooLarge
        );
    }

    #[test]
    fn header_count_limit_is_431() {
        let with_headers = |n: usize| {
            let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
            for i in 0..n {
                buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            }
            buf.extend_from_slice(b"\r\n");
            buf
        };
        assert_eq!(parse_all(&with_headers(64)).headers.len(), 64);
        assert_eq!(err(&with_headers(65)), HttpError::TooManyHeaders);
        assert_eq!(err(&with_headers(65)).status(), 431);
        // Larger limits than the stack array work too.
        let limits = Limits {
            max_headers: 100,
            ..Limits::default()
        };
        let (req, _) = parse_request(&with_headers(100), &limits).unwrap().unwrap();
        assert_eq!(req.headers.len(), 100);
        assert_eq!(
            parse_request(&with_headers(101), &limits).unwrap_err(),
            HttpError::TooManyHeaders
        );
        let none = Limits {
            max_headers: 0,
            ..Limits::default()
        };
        assert!(parse_request(&with_headers(0), &none).unwrap().is_some());
        assert_eq!(
            parse_request(&with_headers(1), &none).unwrap_err(),
            HttpError::TooManyHeaders
        );
    }

    #[test]
    fn target_length_limit_is_414() {
        let limits = Limits::default();
        let target = format!("/{}", "a".repeat(limits.max_target - 1));
        let ok = format!("GET {target} HTTP/1.1\r\n\r\n");
        assert_eq!(parse_all(ok.as_bytes()).path.len(), limits.max_target);
        let long = format!("GET {target}a HTTP/1.1\r\n\r\n");
        assert_eq!(err(long.as_bytes()), HttpError::TargetTooLong);
        assert_eq!(err(long.as_bytes()).status(), 414);
        // Refused while the target is still arriving, without waiting for max_head bytes.
        let partial = format!("GET {target}a");
        assert_eq!(err(partial.as_bytes()), HttpError::TargetTooLong);
        assert!(parse(&partial.as_bytes()[..partial.len() - 1])
            .unwrap()
            .is_none());
    }

    #[test]
    fn body_limit_is_413_before_the_body_arrives() {
        let limits = Limits::default();
        let head = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            limits.max_body + 1
        );
        assert_eq!(err(head.as_bytes()), HttpError::BodyTooLarge);
        assert_eq!(err(head.as_bytes()).status(), 413);
        let huge = b"POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n";
        assert_eq!(err(huge), HttpError::BodyTooLarge);
        // Exactly max_body is accepted once the body is there.
        let head = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            limits.max_body
        );
        assert!(parse(head.as_bytes()).unwrap().is_none());
        let mut buf = head.into_bytes();
        buf.resize(buf.len() + limits.max_body, b'z');
        assert_eq!(parse_all(&buf).body.len(), limits.max_body);
    }

    #[test]
    fn transfer_encoding_is_501() {
        for te in ["chunked", "identity", "gzip, chunked"] {
            let buf = format!("POST /x HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(err(buf.as_bytes()), HttpError::UnsupportedTransferEncoding);
            assert_eq!(err(buf.as_bytes()).status(), 501);
        }
        let both = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(status(both), 501);
    }

    #[test]
    fn other_versions_are_505() {
        for buf in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\n\r\n",
            b"GET / HTTP/0.9\r\n\r\n",
            b"GET / HTTP/3\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/2",
        ] {
            let e = err(buf);
            assert_eq!(
                e,
                HttpError::BadVersion,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
            assert_eq!(e.status(), 505);
        }
        assert_eq!(status(b"GET / HTTP/1.1x\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/x.1\r\n\r\n"), 400);
    }

    #[test]
    fn content_length_must_be_single_and_decimal() {
        for cl in [
            "Content-Length: 3\r\nContent-Length: 4",
            "Content-Length: 3\r\ncontent-length: 3",
            "Content-Length: 3, 3",
            "Content-Length: +3",
            "Content-Length: -1",
            "Content-Length: 0x3",
            "Content-Length: 3 3",
            "Content-Length:",
        ] {
            let buf = format!("POST /x HTTP/1.1\r\n{cl}\r\n\r\nabcd");
            assert_eq!(err(buf.as_bytes()), HttpError::BadContentLength, "{cl}");
            assert_eq!(err(buf.as_bytes()).status(), 400);
        }
        let req = parse_all(b"POST /x HTTP/1.1\r\nContent-Length: 003\r\n\r\nabc");
        assert_eq!(&req.body[..], b"abc");
        let req = parse_all(b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(req.body.is_empty());
    }

    #[test]
    fn every_error_has_its_status() {
        let table = [
            (HttpError::Malformed("x"), 400),
            (HttpError::BadContentLength, 400),
            (HttpError::BodyTooLarge, 413),
            (HttpError::TargetTooLong, 414),
            (HttpError::HeadTooLarge, 431),
            (HttpError::TooManyHeaders, 431),
            (HttpError::UnsupportedTransferEncoding, 501),
            (HttpError::BadVersion, 505),
        ];
        for (e, s) in table {
            assert_eq!(e.status(), s, "{e}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("%2B"), "+");
        assert_eq!(percent_decode("%4a%4A"), "JJ");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%2"), "%2");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%g1"), "%g1");
        assert_eq!(percent_decode("%%41"), "%A");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
        assert_eq!(percent_decode("€"), "€");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("%e2%82"), "\u{fffd}");
        assert_eq!(percent_decode("%e2%82%"), "\u{fffd}%");
        assert_eq!(percent_decode(""), "");
        assert_eq!(percent_decode("%00"), "\0");
    }

    #[test]
    fn path_is_decoded_without_plus() {
        let req = parse_all(b"GET /a+b/c%20d/%2F?q=a+b HTTP/1.1\r\n\r\n");
        assert_eq!(req.path, "/a+b/c d//");
        assert_eq!(req.query("q"), Some("a b"));
    }

    #[test]
    fn query_parsing() {
        let req = parse_all(
            b"GET /api/ws?src=cam1&src=cam%202&&flag&empty=&=v&k=a=b&%73rc=c HTTP/1.1\r\n\r\n",
        );
        assert_eq!(req.query("src"), Some("cam1"));
        assert_eq!(req.query_all("src"), vec!["cam1", "cam 2", "c"]);
        assert_eq!(req.query("flag"), Some(""));
        assert_eq!(req.query("empty"), Some(""));
        assert_eq!(req.query(""), Some("v"));
        assert_eq!(req.query("k"), Some("a=b"));
        assert_eq!(req.query("missing"), None);
        assert!(req.query_all("missing").is_empty());
        assert_eq!(req.query.len(), 7);
        assert!(parse_all(b"GET /? HTTP/1.1\r\n\r\n").query.is_empty());
        assert!(parse_all(b"GET /?& HTTP/1.1\r\n\r\n").query.is_empty());
        let req = parse_all(b"GET /x?a?b=c HTTP/1.1\r\n\r\n");
        assert_eq!(req.path, "/x");
        assert_eq!(req.query("a?b"), Some("c"));
    }

    const WS_HEAD: &str = "GET /api/ws?src=cam HTTP/1.1\r\nHost: server.example.com\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    fn ws_key_of(extra: &str, replace: (&str, &str)) -> Option<String> {
        let head = format!("{}{extra}\r\n", WS_HEAD.replace(replace.0, replace.1));
        parse_all(head.as_bytes())
            .websocket_key()
            .map(str::to_owned)
    }

    #[test]
    fn websocket_upgrade_detection() {
        let ok = Some("dGhlIHNhbXBsZSBub25jZQ==".to_owned());
        assert_eq!(ws_key_of("", ("", "")), ok);
        assert_eq!(
            ws_key_of(
                "",
                ("Connection: Upgrade", "Connection: keep-alive, Upgrade")
            ),
            ok
        );
        assert_eq!(
            ws_key_of("", ("Upgrade: websocket", "Upgrade: WebSocket")),
            ok
        );
        assert_eq!(ws_key_of("", ("GET", "POST")), None);
        assert_eq!(ws_key_of("", ("HTTP/1.1", "HTTP/1.0")), None);
        assert_eq!(
            ws_key_of("", ("Connection: Upgrade", "Connection: keep-alive")),
            None
        );
        assert_eq!(ws_key_of("", ("Upgrade: websocket", "Upgrade: h2c")), None);
        assert_eq!(ws_key_of("", ("Version: 13", "Version: 8")), None);
        assert_eq!(ws_key_of("Sec-WebSocket-Version: 13\r\n", ("", "")), None);
        assert_eq!(
            ws_key_of("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n", ("", "")),
            None
        );
        // Not base64 of 16 bytes.
        assert_eq!(
            ws_key_of("", ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ")),
            None
        );
        assert_eq!(
            ws_key_of("", ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZ===")),
            None
        );
        assert_eq!(
            ws_key_of("", ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j")),
            None
        );
        assert_eq!(
            ws_key_of("", ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ!!")),
            None
        );
        assert_eq!(ws_key_of("", ("Sec-WebSocket-Key", "X-Key")), None);
    }

    #[test]
    fn byte_limits_are_respected_with_small_limits() {
        let limits = Limits {
            max_head: 32,
            max_headers: 2,
            max_target: 8,
            max_body: 4,
        };
        let p = |b: &[u8]| parse_request(b, &limits);
        assert!(p(b"GET /1234567 HTTP/1.1\r\nA: b\r\n\r\n")
            .unwrap()
            .is_some());
        assert_eq!(
            p(b"GET /12345678 HTTP/1.1\r\n\r\n").unwrap_err(),
            HttpError::TargetTooLong
        );
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nA: bcdefghijklmnopqrstuvwxyz\r\n\r\n").unwrap_err(),
            HttpError::HeadTooLarge
        );
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n").unwrap_err(),
            HttpError::HeadTooLarge
        );
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nA:\r\nB:\r\nC:\r\n\r\n").unwrap_err(),
            HttpError::TooManyHeaders
        );
    }
}
