//! RTSP authentication: HTTP Basic and Digest (RFC 2617, MD5 and MD5-sess, with and without
//! `qop=auth`; RFC 7616 for the parts RTSP cameras use).
//!
//! Client side: [`parse_challenges`] reads a 401's `WWW-Authenticate` headers and
//! [`authorization`] answers the best one. Server side: [`ServerAuth`] issues a challenge and
//! checks what clients send back. The hash is RustCrypto's `md-5`; nothing here is hand-written
//! cryptography. Parsing is lenient about spacing and separators (cameras vary) but a header
//! that cannot be tokenised yields no challenge; nothing here panics on peer input.

use base64::Engine as _;
use md5::{Digest as _, Md5};

/// Longest `realm`, `nonce` or `opaque` accepted in a challenge (cameras use well under 100
/// bytes); longer ones are skipped.
pub const MAX_PARAM_LEN: usize = 1024;

/// A user name and password, as given in a source URL or configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    /// Keeps passwords out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Digest hash variant. Anything other than MD5 is not offered by RTSP cameras in practice
/// (RFC 7616's SHA-256 challenges are skipped, and a camera that offers it also offers MD5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Md5Sess,
}

/// A Digest challenge the client can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// `None` when the challenge had no `algorithm=` (MD5 is implied and the answer then
    /// omits the parameter too, as RFC 2617's example does).
    pub algorithm: Option<DigestAlgorithm>,
    /// `qop` offered `auth`: answers carry `qop=auth`, `nc` and `cnonce`.
    pub qop_auth: bool,
    /// `stale=true`: the password was right but the nonce expired; retry with the new one.
    pub stale: bool,
}

/// One `WWW-Authenticate` challenge the client can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic { realm: String },
    Digest(DigestChallenge),
}

impl Challenge {
    /// Preference order: Digest MD5, Digest MD5-sess, Basic (which sends the password).
    fn rank(&self) -> u8 {
        match self {
            Challenge::Digest(d) if d.algorithm == Some(DigestAlgorithm::Md5Sess) => 1,
            Challenge::Digest(_) => 0,
            Challenge::Basic { .. } => 2,
        }
    }

    /// True for a Digest challenge marked `stale=true`.
    pub fn is_stale(&self) -> bool {
        matches!(self, Challenge::Digest(d) if d.stale)
    }
}

/// Parses every `WWW-Authenticate` value of a response (cameras send several, and one value
/// may also hold several challenges) into the challenges we can answer, best first: Digest
/// before Basic. Unknown schemes, unsupported Digest algorithms, Digest without `realm` or
/// `nonce`, and values that do not tokenise are skipped.
pub fn parse_challenges<'a>(
    www_authenticate_values: impl Iterator<Item = &'a str>,
) -> Vec<Challenge> {
    let mut out = Vec::new();
    for value in www_authenticate_values {
        let Some(items) = parse_auth_items(value) else {
            continue;
        };
        out.extend(items.into_iter().filter_map(challenge_from_item));
    }
    out.sort_by_key(Challenge::rank);
    out
}

fn challenge_from_item(item: AuthItem) -> Option<Challenge> {
    if item.scheme.eq_ignore_ascii_case("Basic") {
        let realm = item.param("realm").unwrap_or("");
        if realm.len() > MAX_PARAM_LEN {
            return None;
        }
        return Some(Challenge::Basic {
            realm: realm.to_owned(),
        });
    }
    if !item.scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let algorithm = match item.param("algorithm") {
        None => None,
        Some(a) if a.eq_ignore_ascii_case("MD5") => Some(DigestAlgorithm::Md5),
        Some(a) if a.eq_ignore_ascii_case("MD5-sess") => Some(DigestAlgorithm::Md5Sess),
        Some(_) => return None,
    };
    let qop_auth = match item.param("qop") {
        None => false,
        Some(list) => {
            // Only `auth-int` (or something unknown) offered: we can't comply.
            if !list
                .split(',')
                .any(|q| q.trim().eq_ignore_ascii_case("auth"))
            {
                return None;
            }
            true
        }
    };
    // MD5-sess needs a cnonce, which RFC 2617 only sends with qop.
    if algorithm == Some(DigestAlgorithm::Md5Sess) && !qop_auth {
        return None;
    }
    // Echoed in every request: keep them small enough not to blow the request head limit.
    let too_long = ["realm", "nonce", "opaque"]
        .iter()
        .any(|k| item.param(k).is_some_and(|v| v.len() > MAX_PARAM_LEN));
    if too_long {
        return None;
    }
    Some(Challenge::Digest(DigestChallenge {
        realm: item.param("realm")?.to_owned(),
        nonce: item.param("nonce").filter(|n| !n.is_empty())?.to_owned(),
        opaque: item.param("opaque").map(str::to_owned),
        algorithm,
        qop_auth,
        stale: item
            .param("stale")
            .is_some_and(|s| s.eq_ignore_ascii_case("true")),
    }))
}

/// The `Authorization` header value answering `ch` for one request. `uri` is the request
/// URI exactly as written on the request line; `nc` counts requests made with this nonce
/// (starting at 1) and with `cnonce` is used only when the challenge offered `qop=auth`.
pub fn authorization(
    ch: &Challenge,
    creds: &Credentials,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    match ch {
        Challenge::Basic { .. } => basic_value(creds),
        Challenge::Digest(d) => {
            let qop = d.qop_auth.then(|| (format!("{nc:08x}"), cnonce));
            let response = digest_response(
                d.algorithm.unwrap_or(DigestAlgorithm::Md5),
                &creds.username,
                &d.realm,
                &creds.password,
                &d.nonce,
                method,
                uri,
                qop.as_ref().map(|(nc, cnonce)| (nc.as_str(), *cnonce)),
            );
            let mut v = format!(
                "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\"",
                quote(&creds.username),
                quote(&d.realm),
                quote(&d.nonce),
                quote(uri),
            );
            match d.algorithm {
                Some(DigestAlgorithm::Md5) => v.push_str(", algorithm=MD5"),
                Some(DigestAlgorithm::Md5Sess) => v.push_str(", algorithm=MD5-sess"),
                None => {}
            }
            if let Some(opaque) = &d.opaque {
                v.push_str(", opaque=");
                v.push_str(&quote(opaque));
            }
            if let Some((nc, cnonce)) = qop {
                v.push_str(&format!(", qop=auth, nc={nc}, cnonce={}", quote(cnonce)));
            }
            v
        }
    }
}

fn basic_value(creds: &Credentials) -> String {
    let raw = format!("{}:{}", creds.username, creds.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// RFC 2617 §3.2.2.1 `request-digest`, lowercase hex. `qop` is `(nc, cnonce)` for qop=auth.
#[allow(clippy::too_many_arguments)]
fn digest_response(
    algorithm: DigestAlgorithm,
    username: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let mut ha1 = md5_hex(format!("{username}:{realm}:{password}").as_bytes());
    if algorithm == DigestAlgorithm::Md5Sess {
        let cnonce = qop.map_or("", |(_, c)| c);
        ha1 = md5_hex(format!("{ha1}:{nonce}:{cnonce}").as_bytes());
    }
    let ha2 = md5_hex(format!("{method}:{uri}").as_bytes());
    match qop {
        Some((nc, cnonce)) => md5_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes()),
        None => md5_hex(format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    }
}

/// Lowercase hex MD5 of `data`.
pub(crate) fn md5_hex(data: &[u8]) -> String {
    let digest = Md5::digest(data);
    let mut s = String::with_capacity(32);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A quoted-string with `"` and `\` escaped (RFC 7230 §3.2.6).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Equality whose running time depends on the length only, not on where bytes differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server side: one realm, one account, one nonce (the driver draws the nonce and may
/// rotate it).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerAuth {
    pub realm: String,
    pub username: String,
    pub password: String,
    pub nonce: String,
}

impl std::fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAuth")
            .field("realm", &self.realm)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("nonce", &self.nonce)
            .finish()
    }
}

impl ServerAuth {
    /// `WWW-Authenticate` values for a 401: one Digest (no qop: live555-based clients such as
    /// VLC don't implement it), then one Basic.
    pub fn challenge_headers(&self) -> Vec<String> {
        vec![
            format!(
                "Digest realm={}, nonce={}, algorithm=MD5",
                quote(&self.realm),
                quote(&self.nonce)
            ),
            format!("Basic realm={}", quote(&self.realm)),
        ]
    }

    /// Does this `Authorization` value prove the account? Accepts Basic and Digest (MD5 or
    /// MD5-sess, with or without qop=auth). The Digest response is checked against the `uri=`
    /// the client put in the header (clients differ on which URI they hash), with `method`.
    pub fn check(&self, method: &str, authorization: Option<&str>) -> bool {
        let Some(value) = authorization.map(str::trim) else {
            return false;
        };
        let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("Basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
                return false;
            };
            let expected = format!("{}:{}", self.username, self.password);
            return ct_eq(&decoded, expected.as_bytes());
        }
        if !scheme.eq_ignore_ascii_case("Digest") {
            return false;
        }
        let Some(mut items) = parse_auth_items(value) else {
            return false;
        };
        if items.len() != 1 {
            return false;
        }
        let item = items.remove(0);
        self.check_digest(method, &item).unwrap_or(false)
    }

    fn check_digest(&self, method: &str, item: &AuthItem) -> Option<bool> {
        let username = item.param("username")?;
        let realm = item.param("realm")?;
        let nonce = item.param("nonce")?;
        let uri = item.param("uri")?;
        let response = item.param("response")?;
        let algorithm = match item.param("algorithm") {
            None => DigestAlgorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5") => DigestAlgorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5-sess") => DigestAlgorithm::Md5Sess,
            Some(_) => return Some(false),
        };
        let qop = match item.param("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = item.param("nc")?;
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Some(false);
                }
                Some((nc, item.param("cnonce")?))
            }
            Some(_) => return Some(false),
        };
        if algorithm == DigestAlgorithm::Md5Sess && qop.is_none() {
            return Some(false);
        }
        // Realm and nonce are public; the account name and response are compared in
        // constant time.
        if realm != self.realm || nonce != self.nonce {
            return Some(false);
        }
        let expected = digest_response(
            algorithm,
            &self.username,
            &self.realm,
            &self.password,
            &self.nonce,
            method,
            uri,
            qop,
        );
        let user_ok = ct_eq(username.as_bytes(), self.username.as_bytes());
        let response_ok = ct_eq(
            response.to_ascii_lowercase().as_bytes(),
            expected.as_bytes(),
        );
        Some(user_ok & response_ok)
    }
}

/// One `scheme param=value, ...` item of an authentication header.
#[derive(Debug)]
struct AuthItem {
    scheme: String,
    params: Vec<(String, String)>,
}

impl AuthItem {
    /// First value of a parameter, by case-insensitive name.
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `Scheme a=b, c="d", Scheme2 e=f` into items (RFC 7235 §4.1 challenge lists).
/// Commas and whitespace both separate parameters (some cameras omit the commas). `None` if
/// the value does not tokenise: a bad character, an unterminated quote, a lone `=`.
/// Token68 forms (`Basic dXNlcg==`) are not handled here.
fn parse_auth_items(value: &str) -> Option<Vec<AuthItem>> {
    let mut cur = Cursor { s: value, pos: 0 };
    let mut items = Vec::new();
    loop {
        cur.skip_separators();
        if cur.at_end() {
            return Some(items);
        }
        let scheme = cur.token()?;
        let mut item = AuthItem {
            scheme: scheme.to_owned(),
            params: Vec::new(),
        };
        loop {
            cur.skip_separators();
            if cur.at_end() {
                break;
            }
            let start = cur.pos;
            let name = cur.token()?;
            cur.skip_ws();
            if cur.peek() != Some(b'=') {
                // A bare token: the next challenge's scheme.
                cur.pos = start;
                break;
            }
            cur.pos += 1;
            cur.skip_ws();
            let value = if cur.peek() == Some(b'"') {
                cur.quoted()?
            } else {
                cur.bare_value().to_owned()
            };
            item.params.push((name.to_owned(), value));
        }
        items.push(item);
    }
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    /// RFC 7230 `token` (1*tchar).
    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        // `pos` only advanced over ASCII bytes, so both ends are char boundaries.
        (self.pos > start).then(|| &self.s[start..self.pos])
    }

    /// An unquoted parameter value: up to whitespace or a comma (may be empty).
    fn bare_value(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'\t' | b',' | b'"') {
                break;
            }
            self.pos += 1;
        }
        // Stops only at ASCII bytes or the end: char boundaries.
        &self.s[start..self.pos]
    }

    /// A quoted-string starting at the current `"`; `None` if unterminated.
    fn quoted(&mut self) -> Option<String> {
        let rest = self.s.get(self.pos + 1..)?;
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += 1 + i + 1;
                    return Some(out);
                }
                '\\' => out.push(chars.next()?.1),
                c => out.push(c),
            }
        }
        None
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    fn digest(ch: &[Challenge]) -> &DigestChallenge {
        match ch.first() {
            Some(Challenge::Digest(d)) => d,
            other => panic!("expected digest first, got {other:?}"),
        }
    }

    /// RFC 2617 §3.5, the worked example (qop=auth, opaque).
    #[test]
    fn rfc2617_example() {
        let ch = parse_challenges(
            [r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#]
                .into_iter(),
        );
        assert_eq!(ch.len(), 1);
        let d = digest(&ch);
        assert!(d.qop_auth && !d.stale);
        assert_eq!(d.algorithm, None);
        let v = authorization(
            &ch[0],
            &creds("Mufasa", "Circle Of Life"),
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert_eq!(
            v,
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
             response=\"6629fae49393a05397450978507c4ef1\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", qop=auth, nc=00000001, cnonce=\"0a4f113b\""
        );
        // And the server side agrees.
        let server = ServerAuth {
            realm: "testrealm@host.com".into(),
            username: "Mufasa".into(),
            password: "Circle Of Life".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
        };
        assert!(server.check("GET", Some(&v)));
        assert!(!server.check("POST", Some(&v)));
    }

    /// RFC 2069-style (no qop): response = MD5(HA1:nonce:HA2). Values checked by hand with
    /// `md5sum` on the intermediate strings.
    #[test]
    fn digest_without_qop() {
        let ha1 = md5_hex(b"Mufasa:testrealm@host.com:Circle Of Life");
        assert_eq!(ha1, "939e7578ed9e3c518a452acee763bce9");
        let ha2 = md5_hex(b"GET:/dir/index.html");
        assert_eq!(ha2, "39aff3a2bab6126f332b942af96d3366");
        let expected =
            md5_hex(format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{ha2}").as_bytes());
        let ch = parse_challenges(
            [r#"Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#]
                .into_iter(),
        );
        let v = authorization(
            &ch[0],
            &creds("Mufasa", "Circle Of Life"),
            "GET",
            "/dir/index.html",
            7,
            "ignored",
        );
        assert!(v.contains(&format!("response=\"{expected}\"")), "{v}");
        assert!(!v.contains("qop") && !v.contains("nc=") && !v.contains("opaque"));
    }

    /// A Hikvision DS-2CD2xxx 401 (firmware V5.x): Digest with `stale="FALSE"` plus Basic.
    #[test]
    fn hikvision_401() {
        let headers = [
            r#"Digest realm="IP Camera(C2358)", nonce="b8c4dcd2e3a6e8de7c2a0b6ce9f4a1d7", stale="FALSE""#,
            r#"Basic realm="IP Camera(C2358)""#,
        ];
        // Basic listed first must still lose to Digest.
        let ch = parse_challenges(headers.iter().rev().copied());
        assert_eq!(ch.len(), 2);
        let d = digest(&ch);
        assert_eq!(d.realm, "IP Camera(C2358)");
        assert_eq!(d.nonce, "b8c4dcd2e3a6e8de7c2a0b6ce9f4a1d7");
        assert!(!d.stale && !d.qop_auth && d.opaque.is_none());
        assert_eq!(
            ch[1],
            Challenge::Basic {
                realm: "IP Camera(C2358)".into()
            }
        );
        let uri = "rtsp://192.168.1.64:554/Streaming/Channels/101";
        let v = authorization(&ch[0], &creds("admin", "12345abc"), "DESCRIBE", uri, 1, "x");
        let server = ServerAuth {
            realm: d.realm.clone(),
            username: "admin".into(),
            password: "12345abc".into(),
            nonce: d.nonce.clone(),
        };
        assert!(server.check("DESCRIBE", Some(&v)));
        assert!(!server.check("SETUP", Some(&v)));
        let wrong = authorization(&ch[0], &creds("admin", "12345abd"), "DESCRIBE", uri, 1, "x");
        assert!(!server.check("DESCRIBE", Some(&wrong)));
        // Basic from the same challenge list.
        let basic = authorization(&ch[1], &creds("admin", "12345abc"), "DESCRIBE", uri, 1, "x");
        assert_eq!(basic, "Basic YWRtaW46MTIzNDVhYmM=");
        assert!(server.check("DESCRIBE", Some(&basic)));
    }

    /// Axis cameras offer `qop="auth"`; one header may carry two challenges.
    #[test]
    fn several_challenges_in_one_value() {
        let ch = parse_challenges(
            [r#"Basic realm="AXIS_ACCC8E012345", Digest realm="AXIS_ACCC8E012345", nonce="0024e47aY398109708de9ccd8056c58a068a59540a99d3", qop="auth", algorithm=MD5"#]
                .into_iter(),
        );
        assert_eq!(ch.len(), 2);
        let d = digest(&ch);
        assert!(d.qop_auth);
        assert_eq!(d.algorithm, Some(DigestAlgorithm::Md5));
        let v = authorization(
            &ch[0],
            &creds("root", "pass"),
            "OPTIONS",
            "rtsp://h/x",
            2,
            "abcdef01",
        );
        assert!(
            v.contains("algorithm=MD5") && v.contains("nc=00000002"),
            "{v}"
        );
    }

    #[test]
    fn md5_sess_round_trip() {
        let ch = parse_challenges(
            [r#"Digest realm="r", nonce="n1", qop=auth, algorithm=MD5-sess, opaque="o""#]
                .into_iter(),
        );
        assert_eq!(digest(&ch).algorithm, Some(DigestAlgorithm::Md5Sess));
        let server = ServerAuth {
            realm: "r".into(),
            username: "u\"q".into(),
            password: "p".into(),
            nonce: "n1".into(),
        };
        let v = authorization(&ch[0], &creds("u\"q", "p"), "PLAY", "rtsp://h/x/", 3, "c1");
        assert!(v.contains(r#"username="u\"q""#), "{v}");
        assert!(server.check("PLAY", Some(&v)));
        // MD5-sess without qop has no cnonce to hash: not answerable.
        assert!(parse_challenges(
            [r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#].into_iter()
        )
        .is_empty());
    }

    #[test]
    fn unsupported_and_stale() {
        let ch = parse_challenges(
            [
                r#"Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth""#,
                r#"Digest realm="r", nonce="n", qop="auth-int""#,
                "Negotiate",
                r#"NTLM"#,
                r#"Digest realm="r", nonce="fresh", stale=TRUE"#,
            ]
            .into_iter(),
        );
        assert_eq!(ch.len(), 1);
        assert!(ch[0].is_stale());
        assert_eq!(digest(&ch).nonce, "fresh");
    }

    #[test]
    fn lenient_spacing() {
        // No commas, unquoted values, odd spacing.
        let ch =
            parse_challenges([r#"Digest   realm = "R"  nonce=abc/def==  stale=false"#].into_iter());
        let d = digest(&ch);
        assert_eq!((d.realm.as_str(), d.nonce.as_str()), ("R", "abc/def=="));
        // Escapes inside quoted strings.
        let ch = parse_challenges([r#"Digest realm="a\"b\\c", nonce="n""#].into_iter());
        assert_eq!(digest(&ch).realm, "a\"b\\c");
        // Basic without realm.
        assert_eq!(
            parse_challenges(["Basic"].into_iter()),
            vec![Challenge::Basic {
                realm: String::new()
            }]
        );
    }

    #[test]
    fn malformed_challenges() {
        let cases = [
            "",
            "   ",
            ",,,",
            "Digest",
            r#"Digest realm="r""#,
            r#"Digest nonce="n""#,
            r#"Digest realm="r", nonce="""#,
            r#"Digest realm="unterminated, nonce="n"#,
            r#"Digest realm="r", nonce="n", ="x""#,
            r#"Digest realm="r", nonce="n" @"#,
            "\u{0}\u{1}",
            "Dígest realm=\"r\", nonce=\"n\"",
            r#"Digest realm="r", nonce="n\"#,
            "=",
            "Digest =",
        ];
        for c in cases {
            assert!(parse_challenges([c].into_iter()).is_empty(), "{c:?}");
        }
        // Oversized values are refused.
        let long = "n".repeat(MAX_PARAM_LEN + 1);
        assert!(parse_challenges(
            [format!("Digest realm=\"r\", nonce=\"{long}\"").as_str()].into_iter()
        )
        .is_empty());
        assert!(
            parse_challenges([format!("Basic realm=\"{long}\"").as_str()].into_iter()).is_empty()
        );
        // A bad header doesn't spoil a good one.
        let ch = parse_challenges([r#"Digest realm="x"#, r#"Basic realm="ok""#].into_iter());
        assert_eq!(ch, vec![Challenge::Basic { realm: "ok".into() }]);
    }

    #[test]
    fn no_panic_on_any_prefix() {
        let full = r#"Digest realm="IP Camera(C2358)", nonce="b8c4", qop="auth", opaque="ø✓", stale="FALSE", Basic realm="x""#;
        for (i, _) in full.char_indices() {
            let _ = parse_challenges([&full[..i]].into_iter());
            let server = ServerAuth {
                realm: "r".into(),
                username: "u".into(),
                password: "p".into(),
                nonce: "n".into(),
            };
            assert!(!server.check("DESCRIBE", Some(&full[..i])));
        }
    }

    #[test]
    fn server_challenge_and_checks() {
        let server = ServerAuth {
            realm: "corecast".into(),
            username: "viewer".into(),
            password: "s3cret:with:colons".into(),
            nonce: "7d3f0a1b2c".into(),
        };
        let headers = server.challenge_headers();
        assert_eq!(headers.len(), 2);
        assert!(headers[0].starts_with("Digest ") && headers[1].starts_with("Basic "));
        let ch = parse_challenges(headers.iter().map(String::as_str));
        assert_eq!(ch.len(), 2);
        let c = creds("viewer", "s3cret:with:colons");
        let uri = "rtsp://127.0.0.1:8554/cam";
        for challenge in &ch {
            let v = authorization(challenge, &c, "DESCRIBE", uri, 1, "0011aabb");
            assert!(server.check("DESCRIBE", Some(&v)), "{v}");
        }
        // Uppercase hex responses are accepted (some clients).
        let v = authorization(&ch[0], &c, "DESCRIBE", uri, 1, "0011aabb");
        let upper = v.replace(
            v.split("response=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap(),
            &v.split("response=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_ascii_uppercase(),
        );
        assert!(server.check("DESCRIBE", Some(&upper)));
        // Rejections.
        let other_nonce = v.replace("7d3f0a1b2c", "ffffffffff");
        let rejects = [
            None,
            Some(""),
            Some("Basic"),
            Some("Basic !!!notbase64"),
            Some("Basic dmlld2VyOndyb25n"), // viewer:wrong
            Some("Bearer abc"),
            Some("Digest"),
            Some(r#"Digest username="viewer""#),
            Some(other_nonce.as_str()),
            Some(
                r#"Digest username="viewer", realm="corecast", nonce="7d3f0a1b2c", uri="x", response="00", qop=auth-int, nc=00000001, cnonce="a""#,
            ),
            Some(
                r#"Digest username="viewer", realm="corecast", nonce="7d3f0a1b2c", uri="x", response="00", qop=auth, nc=1, cnonce="a""#,
            ),
            Some(
                r#"Digest username="viewer", realm="corecast", nonce="7d3f0a1b2c", uri="x", response="00", algorithm=SHA-256"#,
            ),
        ];
        for r in rejects {
            assert!(!server.check("DESCRIBE", r), "{r:?}");
        }
        // A different user with a valid-looking response for them.
        let mallory = authorization(
            &ch[0],
            &creds("mallory", "s3cret:with:colons"),
            "DESCRIBE",
            uri,
            1,
            "x",
        );
        assert!(!server.check("DESCRIBE", Some(&mallory)));
        // Debug output hides passwords.
        assert!(!format!("{server:?}{c:?}").contains("s3cret"));
    }

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
