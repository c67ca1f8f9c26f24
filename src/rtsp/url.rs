//! Helpers for RTSP request URIs.
//!
//! Only what the server needs to route a request: the path (to find the stream) and the
//! query. No percent-decoding is applied; stream names are compared as sent.

/// Splits an RTSP URI into `(path, query)`.
///
/// `"rtsp://h:1/a/b?x=1"` → `("a/b", Some("x=1"))`, `"/a"` → `("a", None)`, `"*"` → `("", None)`.
/// The path has no leading or trailing `/`. The authority (including any userinfo) is ignored;
/// a fragment is dropped; an empty query (`"/a?"`) is `None`.
pub fn path_and_query(uri: &str) -> (&str, Option<&str>) {
    let rest = match scheme_end(uri) {
        // Authority runs to the first '/', '?' or '#' (RFC 3986 §3.2).
        Some(after) => {
            let rest = &uri[after..];
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            &rest[end..]
        }
        None => uri,
    };
    let rest = rest.split('#').next().unwrap_or("");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, (!q.is_empty()).then_some(q)),
        None => (rest, None),
    };
    let path = if path == "*" {
        ""
    } else {
        path.trim_matches('/')
    };
    (path, query)
}

/// Index just past `scheme://` if `uri` is absolute.
fn scheme_end(uri: &str) -> Option<usize> {
    let (scheme, _) = uri.split_once("://")?;
    let mut bytes = scheme.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (first_ok && rest_ok).then_some(scheme.len() + 3)
}

/// If the last path segment is a per-track control URL, returns `(stream_path, Some(n))`.
///
/// Recognised (case-insensitive): `trackID=N` (MediaMTX, ffmpeg), `streamid=N` (ffmpeg
/// publishing), `stream=N` (GStreamer rtsp-server), `track=N`, `trackN` (live555).
/// Otherwise returns `(path, None)`. Since a stream may legitimately be called `track1`,
/// callers should look up the full path first.
pub fn split_track(path: &str) -> (&str, Option<u32>) {
    let (stream, last) = match path.rfind('/') {
        Some(i) => (path[..i].trim_end_matches('/'), &path[i + 1..]),
        None => ("", path),
    };
    const PREFIXES: [&str; 5] = ["trackid=", "streamid=", "stream=", "track=", "track"];
    let n = PREFIXES.iter().find_map(|p| {
        let head = last.get(..p.len())?;
        if head.eq_ignore_ascii_case(p) {
            parse_u32(&last[p.len()..])
        } else {
            None
        }
    });
    match n {
        Some(n) => (stream, Some(n)),
        None => (path, None),
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_query_examples() {
        assert_eq!(path_and_query("rtsp://h:1/a/b?x=1"), ("a/b", Some("x=1")));
        assert_eq!(path_and_query("/a"), ("a", None));
        assert_eq!(path_and_query("*"), ("", None));
        assert_eq!(path_and_query(""), ("", None));
        assert_eq!(path_and_query("rtsp://h"), ("", None));
        assert_eq!(path_and_query("rtsp://h/"), ("", None));
        assert_eq!(path_and_query("rtsp://h:8554"), ("", None));
        assert_eq!(path_and_query("rtsp://h?x"), ("", Some("x")));
        assert_eq!(path_and_query("rtsp://h/a?"), ("a", None));
        assert_eq!(path_and_query("a/b/"), ("a/b", None));
    }

    #[test]
    fn path_and_query_real_uris() {
        assert_eq!(
            path_and_query("rtsp://user:pass@127.0.0.1:8554/cam/trackID=1"),
            ("cam/trackID=1", None)
        );
        assert_eq!(
            path_and_query("rtsp://h/cam?video&audio"),
            ("cam", Some("video&audio"))
        );
        // VLC sends the aggregate PLAY URI with a trailing slash.
        assert_eq!(
            path_and_query("rtsp://192.168.1.10:8554/cam/"),
            ("cam", None)
        );
        assert_eq!(path_and_query("RTSP://H/Cam"), ("Cam", None));
        assert_eq!(path_and_query("rtsps://[::1]:322/x/y"), ("x/y", None));
        // An unencoded '@' in a password still lands in the ignored authority.
        assert_eq!(
            path_and_query("rtsp://admin:p@ss@10.0.0.2/live"),
            ("live", None)
        );
        assert_eq!(path_and_query("rtsp://h/a%20b#frag"), ("a%20b", None));
        assert_eq!(path_and_query("rtsp://h/a?x=1#frag"), ("a", Some("x=1")));
    }

    #[test]
    fn split_track_forms() {
        assert_eq!(split_track("cam/trackID=1"), ("cam", Some(1)));
        assert_eq!(split_track("cam/trackid=0"), ("cam", Some(0)));
        assert_eq!(split_track("live/streamid=2"), ("live", Some(2)));
        assert_eq!(split_track("live/stream=3"), ("live", Some(3)));
        assert_eq!(split_track("a/b/track=4"), ("a/b", Some(4)));
        assert_eq!(split_track("cam/track1"), ("cam", Some(1)));
        assert_eq!(split_track("trackID=7"), ("", Some(7)));
        assert_eq!(split_track("cam"), ("cam", None));
        assert_eq!(split_track("cam/track"), ("cam/track", None));
        assert_eq!(split_track("cam/tracks"), ("cam/tracks", None));
        assert_eq!(split_track("cam/trackID="), ("cam/trackID=", None));
        assert_eq!(split_track("cam/trackID=-1"), ("cam/trackID=-1", None));
        assert_eq!(
            split_track("cam/trackID=99999999999"),
            ("cam/trackID=99999999999", None)
        );
        assert_eq!(split_track(""), ("", None));
        assert_eq!(split_track("cam/trackÄ"), ("cam/trackÄ", None));
    }

    #[test]
    fn full_uri_to_track() {
        let (path, _) = path_and_query("rtsp://user:pass@127.0.0.1:8554/cam/trackID=1");
        assert_eq!(split_track(path), ("cam", Some(1)));
    }
}
