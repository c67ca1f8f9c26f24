//! Track selection for readers, with go2rtc's query syntax.
//!
//! `?video`, `?audio`, `?video=h264,h265`, `?audio=all`, `?video=all&audio=all`, `?mp4`
//! (H.264, H.265 and AAC only). Without a query a reader gets the first video and the
//! first audio track (go2rtc's default), or what `rtsp: default_query` says.

use crate::sdp::{Media, Sdp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

/// One request of a reader: a kind, optionally restricted to codecs, first match or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub kind: Kind,
    /// Lower-case go2rtc codec names (`h264`, `aac`, ...); empty = any codec.
    pub codecs: Vec<String>,
    pub all: bool,
}

/// What a reader asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub wants: Vec<Want>,
}

/// The query used when a reader gives none.
pub const DEFAULT_QUERY: &str = "video&audio";

impl Filter {
    /// Parses a reader's query; parameters that are not track filters are ignored (other
    /// features use them). A query without any track parameter falls back to `default`.
    pub fn parse(query: Option<&str>, default: Option<&str>) -> Filter {
        let f = Self::parse_one(query.unwrap_or(""));
        if !f.wants.is_empty() {
            return f;
        }
        let d = Self::parse_one(default.unwrap_or(DEFAULT_QUERY));
        if d.wants.is_empty() {
            Self::parse_one(DEFAULT_QUERY)
        } else {
            d
        }
    }

    fn parse_one(query: &str) -> Filter {
        let mut wants = Vec::new();
        for kv in query.split('&').take(32) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let kind = match k.to_ascii_lowercase().as_str() {
                "video" => Kind::Video,
                "audio" => Kind::Audio,
                "mp4" => {
                    for (kind, codecs) in [
                        (Kind::Video, vec!["h264".to_string(), "h265".to_string()]),
                        (Kind::Audio, vec!["aac".to_string()]),
                    ] {
                        wants.push(Want {
                            kind,
                            codecs,
                            all: false,
                        });
                    }
                    continue;
                }
                _ => continue,
            };
            let v = v.to_ascii_lowercase();
            let names: Vec<&str> = v.split(',').map(str::trim).take(16).collect();
            let all = names.contains(&"all");
            // go2rtc (pkg/core/media.go): `copy` or an empty name means any codec, so
            // Frigate's `?video=copy&audio=aac` gets the first video whatever its codec.
            let any = names.iter().any(|c| c.is_empty() || *c == "copy");
            let codecs = if any {
                Vec::new()
            } else {
                names
                    .iter()
                    .filter(|c| **c != "all")
                    .map(|c| match *c {
                        // go2rtc's aliases for the same codecs.
                        "mjpeg" | "jpeg" => "mjpeg".to_string(),
                        "mpa" => "mp3".to_string(),
                        c => c.to_string(),
                    })
                    .collect()
            };
            wants.push(Want { kind, codecs, all });
        }
        Filter { wants }
    }

    /// Indexes of the medias of `sdp` this reader gets, in SDP order. Each want takes the
    /// first matching media not taken yet (or all of them with `all`).
    pub fn select(&self, sdp: &Sdp) -> Vec<usize> {
        let mut taken = vec![false; sdp.medias.len()];
        for w in &self.wants {
            for (i, m) in sdp.medias.iter().enumerate() {
                if !taken[i] && matches(w, m) {
                    taken[i] = true;
                    if !w.all {
                        break;
                    }
                }
            }
        }
        (0..sdp.medias.len()).filter(|&i| taken[i]).collect()
    }

    /// The wants that no media of `sdp` matches: what another source should provide.
    pub fn missing(&self, sdp: &Sdp) -> Filter {
        Filter {
            wants: self
                .wants
                .iter()
                .filter(|w| !sdp.medias.iter().any(|m| matches(w, m)))
                .cloned()
                .collect(),
        }
    }

    /// True when some want matches no media of `sdp`: another source may provide it.
    pub fn unsatisfied(&self, sdp: &Sdp) -> bool {
        self.wants
            .iter()
            .any(|w| !sdp.medias.iter().any(|m| matches(w, m)))
    }
}

/// go2rtc's codec name for a media (`h264`, `h265`, `aac`, `opus`, `pcma`, ...).
pub fn codec_name(m: &Media) -> String {
    let enc = m
        .codec()
        .map(|(_, r)| r.encoding.to_ascii_uppercase())
        .unwrap_or_default();
    match enc.as_str() {
        "H264" => "h264",
        "H265" | "HEVC" => "h265",
        "MPEG4-GENERIC" | "MP4A-LATM" => "aac",
        "OPUS" => "opus",
        "PCMA" => "pcma",
        "PCMU" => "pcmu",
        "JPEG" => "mjpeg",
        "L16" => "pcm",
        "MPA" => "mp3",
        "G722" => "g722",
        "VP8" => "vp8",
        "VP9" => "vp9",
        "AV1" => "av1",
        _ => return enc.to_ascii_lowercase(),
    }
    .to_string()
}

fn matches(w: &Want, m: &Media) -> bool {
    let kind_ok = match w.kind {
        Kind::Video => m.kind == "video",
        Kind::Audio => m.kind == "audio",
    };
    if !kind_ok || is_sendonly_backchannel(m) {
        return false;
    }
    w.codecs.is_empty() || w.codecs.iter().any(|c| *c == codec_name(m))
}

/// An ONVIF backchannel is a media the camera receives (a=sendonly from its side); it is
/// never offered to readers.
fn is_sendonly_backchannel(m: &Media) -> bool {
    m.lines.iter().any(|l| l.trim() == "a=sendonly")
}

/// The SDP for a reader: only the selected medias, in order (the caller renumbers
/// controls with `Sdp::for_readers`).
pub fn filtered(sdp: &Sdp, selected: &[usize]) -> Sdp {
    let mut out = sdp.clone();
    out.medias = selected
        .iter()
        .filter_map(|&i| sdp.medias.get(i).cloned())
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAM: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n\
m=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\na=control:trackID=1\r\n\
m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=control:trackID=2\r\n\
m=audio 0 RTP/AVP 98\r\na=rtpmap:98 MPEG4-GENERIC/16000/1\r\na=control:trackID=3\r\n\
m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\na=control:trackID=4\r\n\
m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\na=control:trackID=5\r\n";

    fn sel(q: Option<&str>) -> Vec<usize> {
        Filter::parse(q, None).select(&crate::sdp::parse(CAM).unwrap())
    }

    #[test]
    fn go2rtc_queries() {
        assert_eq!(sel(None), vec![0, 2], "default: first video + first audio");
        assert_eq!(sel(Some("video")), vec![0]);
        assert_eq!(sel(Some("audio")), vec![2]);
        assert_eq!(sel(Some("video=h265")), vec![1]);
        assert_eq!(sel(Some("video=h264,h265")), vec![0]);
        assert_eq!(sel(Some("video=all")), vec![0, 1]);
        assert_eq!(
            sel(Some("audio=all")),
            vec![2, 3],
            "backchannel never offered"
        );
        assert_eq!(sel(Some("video=all&audio=all")), vec![0, 1, 2, 3]);
        assert_eq!(sel(Some("mp4")), vec![0, 3], "PCMA dropped, AAC kept");
        assert_eq!(sel(Some("audio=opus")), Vec::<usize>::new());
        assert_eq!(
            sel(Some("video&video")),
            vec![0, 1],
            "two wants take two tracks"
        );
        assert_eq!(sel(Some("video=copy")), vec![0], "copy: any video");
        assert_eq!(
            sel(Some("video=copy&audio=aac")),
            vec![0, 3],
            "Frigate's query"
        );
        assert_eq!(sel(Some("video=&audio=")), vec![0, 2], "empty: any codec");
        assert_eq!(sel(Some("video=h265,copy")), vec![0], "copy in a list: any");
        assert_eq!(sel(Some("video=copy,all")), vec![0, 1], "copy with all");
        assert_eq!(
            sel(Some("foo=bar")),
            vec![0, 2],
            "unrelated params: default"
        );
    }

    #[test]
    fn default_query_from_config() {
        let sdp = crate::sdp::parse(CAM).unwrap();
        assert_eq!(Filter::parse(None, Some("video")).select(&sdp), vec![0]);
        assert_eq!(
            Filter::parse(Some("audio"), Some("video")).select(&sdp),
            vec![2]
        );
        assert_eq!(
            Filter::parse(None, Some("nonsense")).select(&sdp),
            vec![0, 2]
        );
    }

    #[test]
    fn unsatisfied_wants() {
        let sdp = crate::sdp::parse(CAM).unwrap();
        assert!(Filter::parse(Some("audio=opus"), None).unsatisfied(&sdp));
        assert!(!Filter::parse(None, None).unsatisfied(&sdp));
    }

    #[test]
    fn missing_wants_pick_from_another_source() {
        let video_only =
            crate::sdp::parse("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n").unwrap();
        let f = Filter::parse(None, None);
        let missing = f.missing(&video_only);
        assert_eq!(missing.wants.len(), 1);
        assert_eq!(missing.wants[0].kind, Kind::Audio);
        let cam = crate::sdp::parse(CAM).unwrap();
        assert_eq!(missing.select(&cam), vec![2]);
        assert!(f.missing(&cam).wants.is_empty());
    }

    #[test]
    fn filtered_sdp_keeps_only_selected() {
        let sdp = crate::sdp::parse(CAM).unwrap();
        let f = filtered(&sdp, &[3, 0]);
        assert_eq!(f.medias.len(), 2);
        assert_eq!(codec_name(&f.medias[0]), "aac");
        let text = f.for_readers().write();
        assert!(
            text.contains("a=control:trackID=1") && !text.contains("PCMA"),
            "{text}"
        );
    }
}
