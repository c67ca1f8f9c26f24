//! Strict, minimal RTSP 1.0 message parser and writer (RFC 2326).
//!
//! The parser is stateless: [`parse`] looks at the front of a growing buffer and either takes
//! one complete message off it or asks for more bytes. Re-scanning is bounded by
//! [`MAX_HEAD_BYTES`], so feeding a peer's bytes one at a time stays linear in practice.

use crate::packet::CopyChunk;
use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

/// Maximum size of the start line plus headers, including the terminating blank line.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Maximum number of header lines in one message.
pub const MAX_HEADERS: usize = 64;
/// Maximum accepted `Content-Length`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// RTSP method. Methods are case-sensitive (RFC 2326 §6.1), so `options` is `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Options,
    Describe,
    Announce,
    Setup,
    Play,
    Record,
    Pause,
    Teardown,
    GetParameter,
    SetParameter,
    Redirect,
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Options => "OPTIONS",
            Method::Describe => "DESCRIBE",
            Method::Announce => "ANNOUNCE",
            Method::Setup => "SETUP",
            Method::Play => "PLAY",
            Method::Record => "RECORD",
            Method::Pause => "PAUSE",
            Method::Teardown => "TEARDOWN",
            Method::GetParameter => "GET_PARAMETER",
            Method::SetParameter => "SET_PARAMETER",
            Method::Redirect => "REDIRECT",
            Method::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> Method {
        match s {
            "OPTIONS" => Method::Options,
            "DESCRIBE" => Method::Describe,
            "ANNOUNCE" => Method::Announce,
            "SETUP" => Method::Setup,
            "PLAY" => Method::Play,
            "RECORD" => Method::Record,
            "PAUSE" => Method::Pause,
            "TEARDOWN" => Method::Teardown,
            "GET_PARAMETER" => Method::GetParameter,
            "SET_PARAMETER" => Method::SetParameter,
            "REDIRECT" => Method::Redirect,
            other => Method::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ordered header list; lookups are case-insensitive, names keep the case they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// First value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`: the first occurrence is replaced in place (keeping header order),
    /// later duplicates are removed; appended if absent.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self
            .0
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(&name))
        {
            Some(i) => {
                let mut idx = 0;
                self.0.retain(|(k, _)| {
                    let keep = idx <= i || !k.eq_ignore_ascii_case(&name);
                    idx += 1;
                    keep
                });
                self.0[i] = (name, value);
            }
            None => self.0.push((name, value)),
        }
    }

    /// Adds a header even if one with the same name exists.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Removes every header called `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn cseq(&self) -> Option<u32> {
        let v = self.get("CSeq")?;
        parse_decimal(v).and_then(|n| u32::try_from(n).ok())
    }

    fn has_content_length(&self) -> bool {
        self.get("Content-Length").is_some()
    }
}

/// An RTSP request. `body` is empty unless `Content-Length` said otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// An RTSP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// Anything that can arrive on an RTSP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
    /// RFC 2326 §10.12 embedded binary data (`$`, channel, 16-bit length, payload).
    Interleaved {
        channel: u8,
        payload: Bytes,
    },
}

impl Request {
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        Request {
            method,
            uri: uri.into(),
            headers: Headers::default(),
            body: Bytes::new(),
        }
    }

    /// Builder form of `headers.insert`.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the body with its `Content-Type` and `Content-Length`.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.headers.insert("Content-Type", content_type);
        self.headers
            .insert("Content-Length", self.body.len().to_string());
        self
    }

    /// `CSeq` as a plain decimal, if present and valid.
    pub fn cseq(&self) -> Option<u32> {
        self.headers.cseq()
    }

    /// Appends the wire form. CR/LF inside fields are replaced by spaces so that values taken
    /// from elsewhere can never inject header lines.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        put_field(out, self.method.as_str());
        out.push(b' ');
        put_field(out, &self.uri);
        out.extend_from_slice(b" RTSP/1.0\r\n");
        write_headers_and_body(&self.headers, &self.body, out);
    }
}

impl Response {
    /// A response with the standard reason phrase for `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            reason: reason_phrase(status).to_owned(),
            headers: Headers::default(),
            body: Bytes::new(),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the body with its `Content-Type` and `Content-Length`.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.headers.insert("Content-Type", content_type);
        self.headers
            .insert("Content-Length", self.body.len().to_string());
        self
    }

    pub fn cseq(&self) -> Option<u32> {
        self.headers.cseq()
    }

    /// Appends the wire form; see [`Request::write_to`].
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"RTSP/1.0 ");
        // Statuses outside 100..=999 cannot be expressed as 3DIGIT; clamp rather than emit junk.
        let status = if (100..=999).contains(&self.status) {
            self.status
        } else {
            500
        };
        out.extend_from_slice(status.to_string().as_bytes());
        out.push(b' ');
        put_field(out, &self.reason);
        out.extend_from_slice(b"\r\n");
        write_headers_and_body(&self.headers, &self.body, out);
    }
}

/// The 4-byte prefix of an interleaved frame carrying `len` payload bytes on `channel`.
pub fn write_interleaved_header(channel: u8, len: u16) -> [u8; 4] {
    let [hi, lo] = len.to_be_bytes();
    [b'$', channel, hi, lo]
}

fn write_headers_and_body(headers: &Headers, body: &[u8], out: &mut Vec<u8>) {
    for (k, v) in headers.iter() {
        put_field(out, k);
        out.extend_from_slice(b": ");
        put_field(out, v);
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() && !headers.has_content_length() {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

fn put_field(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

/// Reason phrases from RFC 2326 §7.1.1 (plus 431 from RFC 6585).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        250 => "Low on Storage Space",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        451 => "Parameter Not Understood",
        452 => "Conference Not Found",
        453 => "Not Enough Bandwidth",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        456 => "Header Field Not Valid for Resource",
        457 => "Invalid Range",
        458 => "Parameter Is Read-Only",
        459 => "Aggregate Operation Not Allowed",
        460 => "Only Aggregate Operation Allowed",
        461 => "Unsupported Transport",
        462 => "Destination Unreachable",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "RTSP Version Not Supported",
        551 => "Option Not Supported",
        _ => "Unknown",
    }
}

/// Why a message was rejected and where (byte offset from the start of the buffer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {pos}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub pos: usize,
}

#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("message head exceeds {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error("body exceeds {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("malformed start line")]
    BadStartLine,
    #[error("unsupported protocol version")]
    BadVersion,
    #[error("malformed header line")]
    BadHeader,
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("invalid status code")]
    BadStatus,
}

impl ParseError {
    fn new(kind: ParseErrorKind, pos: usize) -> Self {
        ParseError { kind, pos }
    }

    /// The RTSP status a server should answer with before closing the connection.
    pub fn status(&self) -> u16 {
        match self.kind {
            ParseErrorKind::HeadTooLarge | ParseErrorKind::TooManyHeaders => 431,
            ParseErrorKind::BodyTooLarge => 413,
            ParseErrorKind::BadVersion => 505,
            _ => 400,
        }
    }
}

/// Parses one message from the front of `buf`. On success removes its bytes from `buf` and
/// returns it. `Ok(None)` means more bytes are needed; nothing is consumed then (stray CR/LF
/// before a message are only dropped together with the message that follows them).
///
/// Interleaved frame payloads are split off `buf` without copying. The body length comes from
/// `Content-Length` (absent = no body). On error nothing is consumed; the connection is
/// unrecoverable because message boundaries are lost.
pub fn parse(buf: &mut BytesMut) -> Result<Option<Message>, ParseError> {
    parse_with(buf, None)
}

/// As [`parse`], but interleaved payloads are copied into `chunk` (a producer's own packed
/// copies, see [`CopyChunk`]) instead of split off `buf`: for a receive path that would
/// copy each packet anyway, the copy is made here, once, and `buf` is never shared.
pub fn parse_copying(
    buf: &mut BytesMut,
    chunk: &mut CopyChunk,
) -> Result<Option<Message>, ParseError> {
    parse_with(buf, Some(chunk))
}

fn parse_with(
    buf: &mut BytesMut,
    chunk: Option<&mut CopyChunk>,
) -> Result<Option<Message>, ParseError> {
    // Bounded so a flood of blank lines can't make every call walk the whole buffer.
    let skip = buf
        .iter()
        .take(MAX_HEAD_BYTES + 1)
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if skip > MAX_HEAD_BYTES {
        return Err(ParseError::new(
            ParseErrorKind::HeadTooLarge,
            MAX_HEAD_BYTES,
        ));
    }
    if skip == buf.len() {
        return Ok(None);
    }
    if buf[skip] == b'$' {
        return Ok(parse_interleaved(buf, skip, chunk));
    }
    let Some((head_len, body_len)) =
        scan_head(&buf[skip..]).map_err(|(kind, pos)| ParseError::new(kind, skip + pos))?
    else {
        return Ok(None);
    };
    if buf.len() - skip - head_len < body_len {
        return Ok(None);
    }
    let head = build_head(&buf[skip..skip + head_len])
        .map_err(|(kind, pos)| ParseError::new(kind, skip + pos))?;
    buf.advance(skip + head_len);
    let body = buf.split_to(body_len).freeze();
    Ok(Some(match head {
        Head::Request {
            method,
            uri,
            headers,
        } => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        Head::Response {
            status,
            reason,
            headers,
        } => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    }))
}

fn parse_interleaved(
    buf: &mut BytesMut,
    skip: usize,
    chunk: Option<&mut CopyChunk>,
) -> Option<Message> {
    let frame = &buf[skip..];
    let &[_, channel, hi, lo, ..] = frame else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if frame.len() - 4 < len {
        return None;
    }
    let payload = match chunk {
        Some(chunk) => {
            let p = chunk.copy(&frame[4..4 + len]).freeze();
            buf.advance(skip + 4 + len);
            p
        }
        None => {
            buf.advance(skip + 4);
            buf.split_to(len).freeze()
        }
    };
    Some(Message::Interleaved { channel, payload })
}

type KindAt = (ParseErrorKind, usize);

/// Finds the end of the head and validates it without allocating.
/// Returns `(head_len, body_len)` once the blank line is seen.
fn scan_head(data: &[u8]) -> Result<Option<(usize, usize)>, KindAt> {
    let window = &data[..data.len().min(MAX_HEAD_BYTES)];
    let mut line_start = 0;
    let mut lines = 0usize;
    let mut content_length: Option<usize> = None;
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\n' => {
                let line = strip_cr(&window[line_start..i]);
                if line.is_empty() {
                    // The caller skipped leading CR/LF, so the start line is never empty.
                    return Ok(Some((i + 1, content_length.unwrap_or(0))));
                }
                if lines == 0 {
                    parse_start_line(line).map_err(|k| (k, line_start))?;
                } else {
                    if lines > MAX_HEADERS {
                        return Err((ParseErrorKind::TooManyHeaders, line_start));
                    }
                    let (name, value) = parse_header_line(line).map_err(|k| (k, line_start))?;
                    if name.eq_ignore_ascii_case("Content-Length") {
                        let n = parse_content_length(value).map_err(|k| (k, line_start))?;
                        if content_length.is_some_and(|prev| prev != n) {
                            return Err((ParseErrorKind::BadContentLength, line_start));
                        }
                        content_length = Some(n);
                    }
                }
                lines += 1;
                line_start = i + 1;
            }
            // A CR is only a line terminator; a lone CR would let peers disagree on framing.
            b'\r' if window.get(i + 1).is_some_and(|&n| n != b'\n') => {
                return Err((line_error(lines), i));
            }
            b'\r' | b'\t' => {}
            0..=0x1f | 0x7f => return Err((line_error(lines), i)),
            _ => {}
        }
    }
    // Incomplete: reject obviously bad partial lines now instead of waiting for 16 KiB of junk.
    // A trailing CR may be waiting for its LF.
    let partial = strip_cr(&window[line_start..]);
    if lines == 0 {
        check_start_prefix(partial).map_err(|k| (k, line_start))?;
    } else {
        check_header_prefix(partial).map_err(|k| (k, line_start))?;
    }
    if data.len() >= MAX_HEAD_BYTES {
        return Err((ParseErrorKind::HeadTooLarge, MAX_HEAD_BYTES));
    }
    Ok(None)
}

fn line_error(lines_before: usize) -> ParseErrorKind {
    if lines_before == 0 {
        ParseErrorKind::BadStartLine
    } else {
        ParseErrorKind::BadHeader
    }
}

enum Head {
    Request {
        method: Method,
        uri: String,
        headers: Headers,
    },
    Response {
        status: u16,
        reason: String,
        headers: Headers,
    },
}

/// Builds the owned head from bytes `scan_head` already accepted (errors are re-reported
/// rather than assumed impossible).
fn build_head(head: &[u8]) -> Result<Head, KindAt> {
    let mut lines = LineIter { data: head, pos: 0 };
    let (start_pos, start) = lines.next().ok_or((ParseErrorKind::BadStartLine, 0))?;
    let start = parse_start_line(start).map_err(|k| (k, start_pos))?;
    let mut headers = Headers(Vec::new());
    for (pos, line) in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = parse_header_line(line).map_err(|k| (k, pos))?;
        headers.append(name, value);
    }
    Ok(match start {
        StartLine::Request { method, uri } => Head::Request {
            method: Method::parse(method),
            uri: uri.to_owned(),
            headers,
        },
        StartLine::Response { status, reason } => Head::Response {
            status,
            reason: reason.to_owned(),
            headers,
        },
    })
}

/// Yields `(offset, line without terminator)` for each LF-terminated line.
struct LineIter<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for LineIter<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..)?;
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let start = self.pos;
        self.pos += nl + 1;
        Some((start, strip_cr(&rest[..nl])))
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

enum StartLine<'a> {
    Request { method: &'a str, uri: &'a str },
    Response { status: u16, reason: &'a str },
}

fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, ParseErrorKind> {
    use ParseErrorKind::*;
    let s = std::str::from_utf8(line).map_err(|_| BadStartLine)?;
    if s.bytes().any(|b| b.is_ascii_control()) {
        return Err(BadStartLine);
    }
    if s.starts_with("RTSP/") {
        let (version, rest) = s.split_once(' ').ok_or(BadStartLine)?;
        check_version(version)?;
        let (code, reason) = match rest.split_once(' ') {
            Some((code, reason)) => (code, reason),
            // Some servers omit the reason phrase entirely.
            None => (rest, ""),
        };
        let status = match code.as_bytes() {
            &[a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(BadStatus),
        };
        if status < 100 {
            return Err(BadStatus);
        }
        return Ok(StartLine::Response { status, reason });
    }
    let mut parts = s.splitn(3, ' ');
    let method = parts.next().unwrap_or("");
    let uri = parts.next().ok_or(BadStartLine)?;
    let version = parts.next().ok_or(BadStartLine)?;
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(BadStartLine);
    }
    if uri.is_empty() || version.contains(' ') {
        return Err(BadStartLine);
    }
    check_version(version)?;
    Ok(StartLine::Request { method, uri })
}

/// `RTSP/1.0` is the only accepted version; other well-formed `NAME/x.y` versions (including
/// RTSP/2.0 and HTTP/1.1) get 505, anything else is simply malformed.
fn check_version(v: &str) -> Result<(), ParseErrorKind> {
    if v == "RTSP/1.0" {
        return Ok(());
    }
    let well_formed = v.split_once('/').is_some_and(|(proto, num)| {
        !proto.is_empty()
            && proto.bytes().all(|b| b.is_ascii_alphabetic())
            && num.split_once('.').is_some_and(|(maj, min)| {
                !maj.is_empty()
                    && !min.is_empty()
                    && maj.bytes().all(|b| b.is_ascii_digit())
                    && min.bytes().all(|b| b.is_ascii_digit())
            })
    });
    Err(if well_formed {
        ParseErrorKind::BadVersion
    } else {
        ParseErrorKind::BadStartLine
    })
}

/// Checks an incomplete first line could still become a valid start line.
fn check_start_prefix(partial: &[u8]) -> Result<(), ParseErrorKind> {
    let looks_like_response = if partial.len() < 5 {
        b"RTSP/".starts_with(partial)
    } else {
        partial.starts_with(b"RTSP/")
    };
    if looks_like_response {
        return Ok(());
    }
    let method = partial.split(|&b| b == b' ').next().unwrap_or(&[]);
    if !method.is_empty() && method.iter().all(|&b| is_tchar(b)) {
        Ok(())
    } else {
        Err(ParseErrorKind::BadStartLine)
    }
}

/// Checks an incomplete header line could still become a valid header.
fn check_header_prefix(partial: &[u8]) -> Result<(), ParseErrorKind> {
    let name = partial.split(|&b| b == b':').next().unwrap_or(&[]);
    if matches!(partial.first(), Some(b' ' | b'\t')) || !name.iter().all(|&b| is_tchar(b)) {
        // A leading space is obsolete line folding (RFC 7230 §3.2.4), which we don't support.
        Err(ParseErrorKind::BadHeader)
    } else {
        Ok(())
    }
}

fn parse_header_line(line: &[u8]) -> Result<(&str, &str), ParseErrorKind> {
    use ParseErrorKind::BadHeader;
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(BadHeader);
    }
    let s = std::str::from_utf8(line).map_err(|_| BadHeader)?;
    let (name, value) = s.split_once(':').ok_or(BadHeader)?;
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(BadHeader);
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| b != b'\t' && b.is_ascii_control()) {
        return Err(BadHeader);
    }
    Ok((name, value))
}

fn parse_content_length(value: &str) -> Result<usize, ParseErrorKind> {
    let n = parse_decimal(value).ok_or(ParseErrorKind::BadContentLength)?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_BODY_BYTES)
        .ok_or(ParseErrorKind::BodyTooLarge)
}

/// Plain ASCII decimal (no sign, no spaces); saturates instead of overflowing.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// RFC 7230 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(m: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        match m {
            Message::Request(r) => r.write_to(&mut out),
            Message::Response(r) => r.write_to(&mut out),
            Message::Interleaved { channel, payload } => {
                let len = u16::try_from(payload.len()).unwrap();
                out.extend_from_slice(&write_interleaved_header(*channel, len));
                out.extend_from_slice(payload);
            }
        }
        out
    }

    /// Parses everything in `chunks`, fed one chunk at a time; panics on error or leftovers.
    fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Message> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(m) = parse(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert!(buf.is_empty(), "leftover {:?}", &buf[..]);
        out
    }

    /// Checks `wire` parses to `expected` however it is split.
    fn assert_parses_split_anywhere(wire: &[u8], expected: &[Message]) {
        assert_eq!(parse_chunks([wire]), expected, "whole");
        for at in 0..=wire.len() {
            let (a, b) = wire.split_at(at);
            assert_eq!(parse_chunks([a, b]), expected, "split at {at}");
        }
        assert_eq!(parse_chunks(wire.chunks(1)), expected, "byte by byte");
    }

    fn one(wire: &[u8]) -> Message {
        let msgs = parse_chunks([wire]);
        assert_eq!(msgs.len(), 1);
        msgs.into_iter().next().unwrap()
    }

    fn request(wire: &str) -> Request {
        match one(wire.as_bytes()) {
            Message::Request(r) => r,
            m => panic!("not a request: {m:?}"),
        }
    }

    fn err(wire: &[u8]) -> ParseError {
        let mut buf = BytesMut::from(wire);
        let e = parse(&mut buf).expect_err("should fail");
        assert_eq!(&buf[..], wire, "nothing consumed on error");
        e
    }

    #[test]
    fn round_trip_request() {
        let req = Request::new(Method::Setup, "rtsp://127.0.0.1:8554/cam/trackID=0")
            .with_header("CSeq", "3")
            .with_header("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")
            .with_header("User-Agent", "Lavf61.7.100");
        let m = Message::Request(req);
        let wire = write(&m);
        assert_eq!(
            wire,
            b"SETUP rtsp://127.0.0.1:8554/cam/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nUser-Agent: Lavf61.7.100\r\n\r\n"
        );
        assert_parses_split_anywhere(&wire, &[m]);
    }

    #[test]
    fn round_trip_response_with_body() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
        let resp = Response::new(200)
            .with_header("CSeq", "2")
            .with_header("Content-Base", "rtsp://127.0.0.1:8554/cam/")
            .with_body("application/sdp", sdp);
        assert_eq!(resp.reason, "OK");
        assert_eq!(
            resp.headers.get("content-length"),
            Some(sdp.len().to_string().as_str())
        );
        let m = Message::Response(resp);
        assert_parses_split_anywhere(&write(&m), &[m]);
    }

    #[test]
    fn round_trip_interleaved() {
        for len in [0usize, 1, 4, 1400] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let m = Message::Interleaved {
                channel: 1,
                payload: Bytes::from(payload),
            };
            assert_parses_split_anywhere(&write(&m), &[m]);
        }
        // Payloads that look like RTSP text or frame markers are still opaque.
        let m = Message::Interleaved {
            channel: 255,
            payload: Bytes::from_static(b"$\0\0\x05RTSP/1.0 200 OK\r\n\r\n"),
        };
        assert_parses_split_anywhere(&write(&m), &[m]);
    }

    #[test]
    fn back_to_back_mixed_stream() {
        let msgs = vec![
            Message::Response(
                Response::new(200)
                    .with_header("CSeq", "5")
                    .with_header("Session", "12345678;timeout=60"),
            ),
            Message::Interleaved {
                channel: 0,
                payload: Bytes::from_static(&[
                    0x80, 0x60, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0x65,
                ]),
            },
            Message::Interleaved {
                channel: 1,
                payload: Bytes::from_static(&[0x80, 0xc8, 0, 6]),
            },
            Message::Request(
                Request::new(Method::GetParameter, "rtsp://h/cam/")
                    .with_header("CSeq", "6")
                    .with_header("Session", "12345678"),
            ),
            Message::Interleaved {
                channel: 0,
                payload: Bytes::new(),
            },
            Message::Response(Response::new(454).with_header("CSeq", "7")),
            Message::Request(
                Request::new(Method::SetParameter, "rtsp://h/cam")
                    .with_header("CSeq", "8")
                    .with_body("text/parameters", "barparam: barstuff\r\n"),
            ),
            Message::Interleaved {
                channel: 2,
                payload: Bytes::from(vec![0xAA; 300]),
            },
        ];
        let wire: Vec<u8> = msgs.iter().flat_map(write).collect();
        assert_parses_split_anywhere(&wire, &msgs);
    }

    #[test]
    fn interleaved_payload_is_zero_copy() {
        let mut buf = BytesMut::from(&b"$\x01\x00\x03abc"[..]);
        let base = buf.as_ptr() as usize;
        let Some(Message::Interleaved { channel, payload }) = parse(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(channel, 1);
        assert_eq!(&payload[..], b"abc");
        assert_eq!(payload.as_ptr() as usize, base + 4);
    }

    #[test]
    fn copying_parse_packs_payloads_and_leaves_the_rest_alone() {
        let wire =
            b"$\x00\x00\x03abc\r\n$\x01\x00\x02deRTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n$\x00\x00\x05fg";
        let mut buf = BytesMut::from(&wire[..]);
        let (lo, hi) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
        let mut chunk = CopyChunk::default();
        let mut got = Vec::new();
        while let Some(m) = parse_copying(&mut buf, &mut chunk).unwrap() {
            got.push(m);
        }
        assert_eq!(got.len(), 3, "{got:?}");
        let Message::Interleaved { channel, payload } = &got[0] else {
            panic!()
        };
        let Message::Interleaved {
            payload: second, ..
        } = &got[1]
        else {
            panic!()
        };
        assert_eq!(
            (*channel, &payload[..], &second[..]),
            (0, &b"abc"[..], &b"de"[..])
        );
        // Copies, not slices of the read buffer, packed one after the other.
        let at = payload.as_ptr() as usize;
        assert!(!(lo..hi).contains(&at));
        assert_eq!(second.as_ptr() as usize, at + 3);
        assert!(matches!(&got[2], Message::Response(r) if r.status == 200));
        // The incomplete frame stays, whole, for the next read.
        assert_eq!(&buf[..], b"$\x00\x00\x05fg");
        // Same messages as the zero-copy parse, split anywhere.
        assert_eq!(got, parse_chunks([&wire[..wire.len() - 6]]));
    }

    #[test]
    fn stray_line_breaks_between_messages() {
        let wire = b"\r\n\r\nOPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n\r\n\n$\x00\x00\x01x\r\nOPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n";
        let msgs = parse_chunks([&wire[..]]);
        assert_eq!(msgs.len(), 3);
        assert_eq!(
            msgs[1],
            Message::Interleaved {
                channel: 0,
                payload: Bytes::from_static(b"x")
            }
        );
        for at in 0..=wire.len() {
            let (a, b) = wire.split_at(at);
            assert_eq!(parse_chunks([a, b]), msgs);
        }
        // Blank lines alone are not a message; nothing is consumed while waiting.
        let mut buf = BytesMut::from(&b"\r\n\r\n\n"[..]);
        assert_eq!(parse(&mut buf), Ok(None));
        assert_eq!(buf.len(), 5);
    }

    #[test]
    fn bare_lf_accepted() {
        let r = request("DESCRIBE rtsp://h/cam RTSP/1.0\nCSeq: 2\nAccept: application/sdp\n\n");
        assert_eq!(r.method, Method::Describe);
        assert_eq!(r.cseq(), Some(2));
        assert_eq!(r.headers.get("accept"), Some("application/sdp"));
        let r = request("OPTIONS * RTSP/1.0\r\nCSeq: 1\n\r\n");
        assert_eq!(r.uri, "*");
    }

    const LAVF: &str = "Lavf61.7.100";

    #[test]
    fn ffmpeg_play_session() {
        let r = request(&format!(
            "OPTIONS rtsp://127.0.0.1:8554/cam RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: {LAVF}\r\n\r\n"
        ));
        assert_eq!((r.method.clone(), r.cseq()), (Method::Options, Some(1)));
        assert_eq!(r.headers.get("user-agent"), Some(LAVF));
        assert!(r.body.is_empty());

        let r = request(&format!("DESCRIBE rtsp://127.0.0.1:8554/cam RTSP/1.0\r\nAccept: application/sdp\r\nCSeq: 2\r\nUser-Agent: {LAVF}\r\n\r\n"));
        assert_eq!(r.method, Method::Describe);
        assert_eq!(r.uri, "rtsp://127.0.0.1:8554/cam");

        let r = request(&format!("SETUP rtsp://127.0.0.1:8554/cam/trackID=0 RTSP/1.0\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nCSeq: 3\r\nUser-Agent: {LAVF}\r\n\r\n"));
        let t = crate::rtsp::transport::parse(r.headers.get("Transport").unwrap()).unwrap();
        assert_eq!(t[0].interleaved, Some((0, 1)));

        let r = request(&format!("SETUP rtsp://127.0.0.1:8554/cam/trackID=1 RTSP/1.0\r\nTransport: RTP/AVP/UDP;unicast;client_port=5000-5001\r\nCSeq: 4\r\nUser-Agent: {LAVF}\r\nSession: 5a3bc91f\r\n\r\n"));
        let t = crate::rtsp::transport::parse(r.headers.get("Transport").unwrap()).unwrap();
        assert_eq!(t[0].client_port, Some((5000, 5001)));
        assert_eq!(r.headers.get("session"), Some("5a3bc91f"));

        let r = request(&format!("PLAY rtsp://127.0.0.1:8554/cam/ RTSP/1.0\r\nRange: npt=0.000-\r\nCSeq: 5\r\nUser-Agent: {LAVF}\r\nSession: 5a3bc91f\r\n\r\n"));
        assert_eq!(r.method, Method::Play);
        assert_eq!(r.headers.get("Range"), Some("npt=0.000-"));
    }

    #[test]
    fn ffmpeg_publish_session() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 61.7.100\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAH6zZQFAFuhAAAAMAEAAAAwPA8YMZYA==,aOvjyyLA; profile-level-id=64001F\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1190\r\na=control:streamid=1\r\n";
        let announce = format!(
            "ANNOUNCE rtsp://127.0.0.1:8554/live RTSP/1.0\r\nContent-Type: application/sdp\r\nCSeq: 2\r\nUser-Agent: {LAVF}\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let setup = format!("SETUP rtsp://127.0.0.1:8554/live/streamid=0 RTSP/1.0\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\nCSeq: 3\r\nUser-Agent: {LAVF}\r\n\r\n");
        let record = format!("RECORD rtsp://127.0.0.1:8554/live RTSP/1.0\r\nRange: npt=0.000-\r\nCSeq: 5\r\nUser-Agent: {LAVF}\r\nSession: 5a3bc91f\r\n\r\n");
        // After RECORD ffmpeg immediately streams interleaved RTP on the same connection.
        let rtp = b"$\x00\x00\x0c\x80\x60\x00\x01\x00\x00\x00\x00\x11\x22\x33\x44";
        let wire = [
            announce.as_bytes(),
            setup.as_bytes(),
            record.as_bytes(),
            rtp,
        ]
        .concat();
        let msgs = parse_chunks([&wire[..]]);
        assert_eq!(msgs.len(), 4);
        let Message::Request(a) = &msgs[0] else {
            panic!()
        };
        assert_eq!(a.method, Method::Announce);
        assert_eq!(a.headers.get("content-type"), Some("application/sdp"));
        assert_eq!(&a.body[..], sdp.as_bytes());
        let Message::Request(s) = &msgs[1] else {
            panic!()
        };
        let t = crate::rtsp::transport::parse(s.headers.get("Transport").unwrap()).unwrap();
        assert!(t[0].mode_record);
        let Message::Request(r) = &msgs[2] else {
            panic!()
        };
        assert_eq!(r.method, Method::Record);
        assert_eq!(
            msgs[3],
            Message::Interleaved {
                channel: 0,
                payload: Bytes::copy_from_slice(&rtp[4..])
            }
        );
        assert_parses_split_anywhere(&wire, &msgs);
    }

    #[test]
    fn gstreamer_setup() {
        let r = request(
            "SETUP rtsp://192.168.1.10:8554/cam/trackID=0 RTSP/1.0\r\n\
             CSeq: 3\r\n\
             User-Agent: GStreamer/1.22.0\r\n\
             Transport: RTP/AVP;unicast;client_port=41378-41379;mode=\"PLAY\",RTP/AVP/TCP;unicast;interleaved=0-1;mode=\"PLAY\"\r\n\
             x-Dynamic-Rate: 0\r\n\
             Date: Tue, 14 May 2024 09:12:44 GMT\r\n\
             \r\n",
        );
        let t = crate::rtsp::transport::parse(r.headers.get("transport").unwrap()).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].client_port, Some((41378, 41379)));
        assert!(t[1].tcp);
        assert_eq!(r.headers.get("date"), Some("Tue, 14 May 2024 09:12:44 GMT"));
        assert_eq!(r.headers.len(), 5);
    }

    #[test]
    fn vlc_session() {
        let ua = "LibVLC/3.0.20 (LIVE555 Streaming Media v2016.11.28)";
        let wire = format!(
            "OPTIONS rtsp://192.168.1.10:8554/cam RTSP/1.0\r\nCSeq: 2\r\nUser-Agent: {ua}\r\n\r\n\
             DESCRIBE rtsp://192.168.1.10:8554/cam RTSP/1.0\r\nCSeq: 3\r\nUser-Agent: {ua}\r\nAccept: application/sdp\r\n\r\n\
             SETUP rtsp://192.168.1.10:8554/cam/trackID=0 RTSP/1.0\r\nCSeq: 4\r\nUser-Agent: {ua}\r\nTransport: RTP/AVP;unicast;client_port=54436-54437\r\n\r\n\
             PLAY rtsp://192.168.1.10:8554/cam/ RTSP/1.0\r\nCSeq: 5\r\nUser-Agent: {ua}\r\nSession: 7A3C1F2E\r\nRange: npt=0.000-\r\n\r\n\
             GET_PARAMETER rtsp://192.168.1.10:8554/cam/ RTSP/1.0\r\nCSeq: 6\r\nUser-Agent: {ua}\r\nSession: 7A3C1F2E\r\n\r\n\
             TEARDOWN rtsp://192.168.1.10:8554/cam/ RTSP/1.0\r\nCSeq: 7\r\nUser-Agent: {ua}\r\nSession: 7A3C1F2E\r\n\r\n"
        );
        let msgs = parse_chunks([wire.as_bytes()]);
        let methods: Vec<Method> = msgs
            .iter()
            .map(|m| match m {
                Message::Request(r) => {
                    assert_eq!(r.headers.get("User-Agent"), Some(ua));
                    r.method.clone()
                }
                _ => panic!(),
            })
            .collect();
        use Method::*;
        assert_eq!(
            methods,
            [Options, Describe, Setup, Play, GetParameter, Teardown]
        );
        assert_parses_split_anywhere(wire.as_bytes(), &msgs);
    }

    #[test]
    fn server_responses() {
        let sdp = "v=0\r\no=- 1715677964 1 IN IP4 192.168.1.10\r\ns=Session streamed by \"testOnDemandRTSPServer\"\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=control:track1\r\n";
        let wire = format!(
            "RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\nWWW-Authenticate: Digest realm=\"IP Camera\", nonce=\"a1b2c3\"\r\nWWW-Authenticate: Basic realm=\"IP Camera\"\r\n\r\n\
             RTSP/1.0 200 OK\r\nCSeq: 3\r\nDate: Tue, May 14 2024 09:12:44 GMT\r\nContent-Base: rtsp://192.168.1.10:8554/cam/\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}\
             RTSP/1.0 461 Unsupported transport\r\nCSeq: 4\r\n\r\n\
             RTSP/1.0 200\r\nCSeq: 5\r\n\r\n",
            sdp.len()
        );
        let msgs = parse_chunks([wire.as_bytes()]);
        let resps: Vec<&Response> = msgs
            .iter()
            .map(|m| match m {
                Message::Response(r) => r,
                _ => panic!(),
            })
            .collect();
        assert_eq!(resps[0].status, 401);
        assert_eq!(resps[0].headers.get_all("www-authenticate").count(), 2);
        assert_eq!(&resps[1].body[..], sdp.as_bytes());
        assert_eq!(resps[1].cseq(), Some(3));
        assert_eq!(resps[2].reason, "Unsupported transport");
        assert_eq!((resps[3].status, resps[3].reason.as_str()), (200, ""));
        assert_parses_split_anywhere(wire.as_bytes(), &msgs);
        // Re-serialising the reason-less response keeps it parseable.
        let again = write(&msgs[3]);
        assert_eq!(one(&again), msgs[3]);
    }

    #[test]
    fn other_methods_and_header_details() {
        let r = request("FLUSH rtsp://h/x RTSP/1.0\r\nCSeq:7\r\nX-Empty:\r\nX-Pad: \t padded value \t\r\nX-Utf8: Caméra\r\n\r\n");
        assert_eq!(r.method, Method::Other("FLUSH".into()));
        assert_eq!(r.method.as_str(), "FLUSH");
        assert_eq!(r.cseq(), Some(7));
        assert_eq!(r.headers.get("x-empty"), Some(""));
        assert_eq!(r.headers.get("X-PAD"), Some("padded value"));
        assert_eq!(r.headers.get("x-utf8"), Some("Caméra"));
        // Methods are case-sensitive.
        assert_eq!(Method::parse("options"), Method::Other("options".into()));
        for m in [
            "OPTIONS",
            "DESCRIBE",
            "ANNOUNCE",
            "SETUP",
            "PLAY",
            "RECORD",
            "PAUSE",
            "TEARDOWN",
            "GET_PARAMETER",
            "SET_PARAMETER",
            "REDIRECT",
        ] {
            let parsed = Method::parse(m);
            assert!(!matches!(parsed, Method::Other(_)), "{m}");
            assert_eq!(parsed.as_str(), m);
            assert_eq!(parsed.to_string(), m);
        }
        // CSeq must be a plain u32.
        assert_eq!(
            request("OPTIONS * RTSP/1.0\r\nCSeq: +1\r\n\r\n").cseq(),
            None
        );
        assert_eq!(
            request("OPTIONS * RTSP/1.0\r\nCSeq: 4294967296\r\n\r\n").cseq(),
            None
        );
        assert_eq!(request("OPTIONS * RTSP/1.0\r\n\r\n").cseq(), None);
    }

    #[test]
    fn headers_api() {
        let mut h = Headers::default();
        assert!(h.is_empty());
        h.append("A", "1");
        h.append("B", "2");
        h.append("a", "3");
        assert_eq!(h.get_all("A").collect::<Vec<_>>(), ["1", "3"]);
        h.insert("a", "9");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("a", "9"), ("B", "2")]);
        h.insert("C", "4");
        assert_eq!(h.len(), 3);
        h.remove("b");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("a", "9"), ("C", "4")]);
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn writer_details() {
        // Content-Length is added for a body only when missing.
        let mut r = Request::new(Method::SetParameter, "rtsp://h/x");
        r.headers.insert("CSeq", "1");
        r.body = Bytes::from_static(b"k: v\r\n");
        let mut out = Vec::new();
        r.write_to(&mut out);
        assert_eq!(
            out,
            b"SET_PARAMETER rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 6\r\n\r\nk: v\r\n"
        );
        let resp = Response::new(200).with_body("text/plain", "hi");
        let mut out = Vec::new();
        resp.write_to(&mut out);
        assert_eq!(
            out,
            b"RTSP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
        // Line breaks in values can't smuggle headers.
        let resp = Response::new(200).with_header("X", "a\r\nInjected: 1");
        let mut out = Vec::new();
        resp.write_to(&mut out);
        let Message::Response(back) = one(&out) else {
            panic!()
        };
        assert_eq!(back.headers.len(), 1);
        assert_eq!(write_interleaved_header(3, 0x1234), [b'$', 3, 0x12, 0x34]);
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(454), "Session Not Found");
        assert_eq!(reason_phrase(455), "Method Not Valid in This State");
        assert_eq!(reason_phrase(461), "Unsupported Transport");
        assert_eq!(reason_phrase(505), "RTSP Version Not Supported");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(299), "Unknown");
        assert_eq!(Response::new(404).reason, "Not Found");
    }

    #[test]
    fn bad_versions() {
        for wire in [
            &b"OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n\r\n"[..],
            b"OPTIONS * RTSP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"RTSP/2.0 200 OK\r\nCSeq: 1\r\n\r\n",
        ] {
            let e = err(wire);
            assert_eq!(
                e.kind,
                ParseErrorKind::BadVersion,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
            assert_eq!(e.status(), 505);
        }
        for wire in [
            &b"OPTIONS * RTSP\r\n\r\n"[..],
            b"OPTIONS * rtsp/1.0\r\n\r\n",
            b"OPTIONS * RTSP/1.0 \r\n\r\n",
            b"OPTIONS *\r\n\r\n",
            b"OPTIONS  * RTSP/1.0\r\n\r\n",
        ] {
            let e = err(wire);
            assert!(
                matches!(
                    e.kind,
                    ParseErrorKind::BadStartLine | ParseErrorKind::BadVersion
                ),
                "{e:?}"
            );
            assert_eq!(
                e.status() / 100,
                4 + (e.kind == ParseErrorKind::BadVersion) as u16
            );
        }
    }

    #[test]
    fn bad_status_lines() {
        for wire in [
            &b"RTSP/1.0 20 OK\r\n\r\n"[..],
            b"RTSP/1.0 2000 OK\r\n\r\n",
            b"RTSP/1.0 abc OK\r\n\r\n",
            b"RTSP/1.0 099 Low\r\n\r\n",
            b"RTSP/1.0  200 OK\r\n\r\n",
        ] {
            let e = err(wire);
            assert_eq!(
                e.kind,
                ParseErrorKind::BadStatus,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
            assert_eq!(e.status(), 400);
        }
        assert_eq!(err(b"RTSP/1.0\r\n\r\n").kind, ParseErrorKind::BadStartLine);
    }

    #[test]
    fn bad_headers() {
        let cases: &[&[u8]] = &[
            b"OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n folded\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\tfolded\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\nCSeq : 1\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\n: 1\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\nX-Bin: \xff\xfe\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\nX: a\rb\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\nX: a\0b\r\n\r\n",
        ];
        for wire in cases {
            let e = err(wire);
            assert_eq!(
                e.kind,
                ParseErrorKind::BadHeader,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
            assert_eq!(e.status(), 400);
            assert!(e.pos >= 20, "error points into the headers: {e}");
        }
        // Detected before the head is complete.
        let e = err(b"OPTIONS * RTSP/1.0\r\nCSeq 1");
        assert_eq!(e.kind, ParseErrorKind::BadHeader);
        let e = err(b"OPTIONS * RTSP/1.0\r\n fold");
        assert_eq!(e.kind, ParseErrorKind::BadHeader);
    }

    #[test]
    fn head_too_large() {
        let mut wire = b"DESCRIBE rtsp://h/cam RTSP/1.0\r\nX-Big: ".to_vec();
        wire.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        let e = err(&wire);
        assert_eq!(e.kind, ParseErrorKind::HeadTooLarge);
        assert_eq!(e.status(), 431);
        // Also when the terminator would arrive later: we don't wait past the limit.
        wire.extend_from_slice(b"\r\n\r\n");
        assert_eq!(err(&wire).kind, ParseErrorKind::HeadTooLarge);
        // Huge URI.
        let mut wire = b"DESCRIBE rtsp://h/".to_vec();
        wire.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        assert_eq!(err(&wire).kind, ParseErrorKind::HeadTooLarge);
        // Exactly at the limit is fine.
        let prefix = b"OPTIONS * RTSP/1.0\r\nX: ";
        let pad = MAX_HEAD_BYTES - prefix.len() - 4;
        let mut wire = prefix.to_vec();
        wire.extend(std::iter::repeat_n(b'a', pad));
        wire.extend_from_slice(b"\r\n\r\n");
        assert_eq!(wire.len(), MAX_HEAD_BYTES);
        assert!(matches!(one(&wire), Message::Request(_)));
        // Only blank lines, beyond the limit.
        let e = err(&b"\r\n".repeat(MAX_HEAD_BYTES));
        assert_eq!(e.kind, ParseErrorKind::HeadTooLarge);
    }

    #[test]
    fn header_count_limit() {
        let mut wire = b"OPTIONS * RTSP/1.0\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            wire.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = wire.clone();
        ok.extend_from_slice(b"\r\n");
        let Message::Request(r) = one(&ok) else {
            panic!()
        };
        assert_eq!(r.headers.len(), MAX_HEADERS);
        wire.extend_from_slice(b"X-65: v\r\n");
        let e = err(&wire);
        assert_eq!(e.kind, ParseErrorKind::TooManyHeaders);
        assert_eq!(e.status(), 431);
    }

    #[test]
    fn content_length_errors() {
        use ParseErrorKind::*;
        let cases: &[(&str, ParseErrorKind, u16)] = &[
            ("Content-Length: 65537", BodyTooLarge, 413),
            (
                "Content-Length: 99999999999999999999999999",
                BodyTooLarge,
                413,
            ),
            ("Content-Length: abc", BadContentLength, 400),
            ("Content-Length: -1", BadContentLength, 400),
            ("Content-Length: +1", BadContentLength, 400),
            ("Content-Length: 1 2", BadContentLength, 400),
            ("Content-Length: 0x10", BadContentLength, 400),
            ("Content-Length:", BadContentLength, 400),
            (
                "Content-Length: 4\r\ncontent-length: 5",
                BadContentLength,
                400,
            ),
        ];
        for (h, kind, status) in cases {
            let wire = format!("ANNOUNCE rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\n{h}\r\n\r\nv=0\n");
            let e = err(wire.as_bytes());
            assert_eq!(&e.kind, kind, "{h}");
            assert_eq!(e.status(), *status, "{h}");
        }
        // Agreeing duplicates and the exact maximum are fine.
        let r = request(
            "ANNOUNCE rtsp://h/x RTSP/1.0\r\nContent-Length: 4\r\nContent-Length: 004\r\n\r\nv=0\n",
        );
        assert_eq!(&r.body[..], b"v=0\n");
        let body = vec![b'x'; MAX_BODY_BYTES];
        let mut wire =
            format!("ANNOUNCE rtsp://h/x RTSP/1.0\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n")
                .into_bytes();
        wire.extend_from_slice(&body);
        let Message::Request(r) = one(&wire) else {
            panic!()
        };
        assert_eq!(r.body.len(), MAX_BODY_BYTES);
    }

    #[test]
    fn garbage() {
        let cases: &[&[u8]] = &[
            b"\x00\x01\x02\x03",
            b"\xff\xd8\xff\xe0",
            b" OPTIONS * RTSP/1.0\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"<html>",
            b"{\"a\":1}",
            b"OPT\x00IONS",
            b"OPTIONS\t* RTSP/1.0\r\n\r\n",
            b"\r\n\r\n\x80",
            b"OPTIONS * RTSP/1.0\rX",
            b"OPTIONS * RT\xffSP/1.0\r\n\r\n",
        ];
        for wire in cases {
            let e = err(wire);
            assert_eq!(
                e.kind,
                ParseErrorKind::BadStartLine,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn incomplete_input_waits() {
        for wire in [
            &b"$"[..],
            b"$\x00",
            b"$\x00\x01",
            b"$\x00\x00\x05abcd",
            b"OPTIONS",
            b"RTS",
            b"RTSP/1.0 200 OK\r\nCSeq: 1\r",
            b"ANNOUNCE rtsp://h/x RTSP/1.0\r\nContent-Length: 10\r\n\r\nv=0",
        ] {
            let mut buf = BytesMut::from(wire);
            assert_eq!(
                parse(&mut buf),
                Ok(None),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
            assert_eq!(&buf[..], wire);
        }
    }

    #[test]
    fn error_display() {
        let e = err(b"OPTIONS * RTSP/1.0\r\nbad\r\n\r\n");
        assert_eq!(e.to_string(), "malformed header line at byte 20");
    }
}
