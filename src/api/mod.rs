//! The HTTP API's answers as pure functions over a snapshot: the runtime copies what it
//! needs out of its registry (under its lock, briefly) into these plain types, and the
//! JSON is built here, with go2rtc's shapes (what Frigate's and Home Assistant's clients
//! read); corecast's extras are additional keys.

use crate::sdp::Sdp;
use serde::Serialize;
use std::collections::BTreeMap;

/// One stream as the API sees it.
#[derive(Debug, Clone, Default)]
pub struct StreamSnapshot {
    pub name: String,
    pub owner_shard: usize,
    /// Configured sources, in order.
    pub sources: Vec<String>,
    pub preload: Option<String>,
    /// Why the source last failed, while it is failing.
    pub error: Option<String>,
    /// The connected producer and the SDP it announced.
    pub producer: Option<(ProducerSnapshot, Option<Sdp>)>,
    /// The camera's backchannel medias ("PCMA/8000"), listed with the producer's.
    pub backchannel: Vec<String>,
    pub consumers: Vec<ConsumerSnapshot>,
}

#[derive(Debug, Clone, Default)]
pub struct ProducerSnapshot {
    pub id: u64,
    pub protocol: &'static str,
    pub remote_addr: String,
    pub url: String,
    pub user_agent: String,
    pub bytes: u64,
    pub packets: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerSnapshot {
    pub id: u64,
    pub format_name: &'static str,
    pub protocol: &'static str,
    pub remote_addr: String,
    pub user_agent: String,
    pub shard: usize,
    pub tracks: Vec<usize>,
    pub bytes: u64,
    pub packets: u64,
    pub skips: u64,
    pub skipped: u64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Codec {
    pub codec_name: String,
    pub codec_type: String,
}

#[derive(Serialize, Debug)]
pub struct ProducerJson {
    pub id: u64,
    pub format_name: &'static str,
    pub protocol: &'static str,
    pub remote_addr: String,
    pub url: String,
    pub user_agent: String,
    pub medias: Vec<String>,
    pub codecs: Vec<Codec>,
    pub bytes_recv: u64,
    pub packets_recv: u64,
}

#[derive(Serialize, Debug)]
pub struct ConsumerJson {
    pub id: u64,
    pub format_name: &'static str,
    pub protocol: &'static str,
    pub remote_addr: String,
    pub user_agent: String,
    pub shard: usize,
    pub tracks: Vec<usize>,
    pub bytes_send: u64,
    pub packets_send: u64,
    pub skips: u64,
    pub skipped_packets: u64,
}

/// go2rtc lists every configured source as a producer; one not connected is only its URL
/// (Home Assistant matches its camera's source against these URLs).
#[derive(Serialize, Debug)]
#[serde(untagged)]
pub enum ProducerOut {
    Live(ProducerJson),
    Idle { url: String },
}

#[derive(Serialize, Debug)]
pub struct StreamJson {
    pub producers: Vec<ProducerOut>,
    /// corecast extra: a producer is connected.
    pub online: bool,
    pub consumers: Option<Vec<ConsumerJson>>,
    /// corecast extras: owning shard, configured sources, preload query.
    pub owner_shard: usize,
    pub sources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `GET /api` reports of one shard.
#[derive(Serialize, Debug, Clone, Default)]
pub struct ShardReport {
    pub id: usize,
    pub viewers: usize,
    pub streams_owned: usize,
    pub connections: usize,
    pub relayed_packets: u64,
    pub relay_dropped: u64,
    pub muxers: usize,
}

/// What `GET /api` needs, copied out of the runtime.
#[derive(Debug, Clone, Default)]
pub struct InfoSnapshot {
    /// The go2rtc API level answered as (Home Assistant's client checks it).
    pub version: &'static str,
    pub corecast_version: &'static str,
    pub config_path: String,
    /// The request's Host header.
    pub host: String,
    pub rtsp_listen: Option<std::net::SocketAddr>,
    pub default_query: Option<String>,
    pub shards: Vec<ShardReport>,
}

#[derive(Serialize, Debug)]
pub struct RtspInfo {
    pub listen: String,
    pub default_query: String,
}

#[derive(Serialize, Debug)]
pub struct ApiInfo {
    pub version: &'static str,
    pub corecast_version: &'static str,
    pub config_path: String,
    pub host: String,
    pub rtsp: RtspInfo,
    pub shard_count: usize,
    pub shards: Vec<ShardReport>,
}

/// `GET /api`: go2rtc's keys (`version`, `config_path`, `host`, `rtsp.listen` as ":port",
/// `rtsp.default_query` defaulting to go2rtc's "video&audio"), corecast's beside them.
pub fn info_json(s: InfoSnapshot) -> ApiInfo {
    ApiInfo {
        version: s.version,
        corecast_version: s.corecast_version,
        config_path: s.config_path,
        host: s.host,
        rtsp: RtspInfo {
            listen: s
                .rtsp_listen
                .map(|a| format!(":{}", a.port()))
                .unwrap_or_default(),
            default_query: s.default_query.unwrap_or_else(|| "video&audio".into()),
        },
        shard_count: s.shards.len(),
        shards: s.shards,
    }
}

/// One stream's row in `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct StreamRow {
    pub name: String,
    pub bytes_in: u64,
    pub packets_in: u64,
    pub viewers: usize,
    /// Monotonic: includes consumers that left.
    pub bytes_out: u64,
    pub skipped: u64,
    pub online: bool,
}

/// One shard's row in `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct ShardRow {
    pub streams_owned: usize,
    pub viewers: usize,
    pub relayed_packets: u64,
    pub relay_dropped: u64,
    pub muxers: usize,
    /// Share of the last second the loop was busy, in thousandths.
    pub loop_permille: u64,
}

/// What `/metrics` reports, copied out of the runtime.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub streams: Vec<StreamRow>,
    /// (stream, format) of every running muxer.
    pub muxers: Vec<(String, &'static str)>,
    /// Open connections: RTSP, HTTP, WebSocket.
    pub connections: [usize; 3],
    pub shards: Vec<ShardRow>,
}

/// `/metrics` in Prometheus' text format.
pub fn metrics_text(s: &MetricsSnapshot) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str,
                      kind: &str,
                      help: &str,
                      samples: &mut dyn Iterator<Item = (String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let l = |n: &str| format!("stream=\"{}\"", escape_label(n));
    family(
        "corecast_stream_online",
        "gauge",
        "1 while the stream has a producer.",
        &mut s
            .streams
            .iter()
            .map(|r| (l(&r.name), (r.online as u8).to_string())),
    );
    family(
        "corecast_stream_inbound_bytes_total",
        "counter",
        "Bytes received from the stream's current producer.",
        &mut s
            .streams
            .iter()
            .map(|r| (l(&r.name), r.bytes_in.to_string())),
    );
    family(
        "corecast_stream_inbound_packets_total",
        "counter",
        "Packets received from the stream's current producer.",
        &mut s
            .streams
            .iter()
            .map(|r| (l(&r.name), r.packets_in.to_string())),
    );
    family(
        "corecast_stream_viewers",
        "gauge",
        "Consumers attached to the stream (all protocols).",
        &mut s
            .streams
            .iter()
            .map(|r| (l(&r.name), r.viewers.to_string())),
    );
    family(
        "corecast_stream_outbound_bytes_total",
        "counter",
        "Bytes sent to the stream's consumers.",
        &mut s
            .streams
            .iter()
            .map(|r| (l(&r.name), r.bytes_out.to_string())),
    );
    family(
        "corecast_stream_skipped_total",
        "counter",
        "Packets or fragments consumers skipped after falling behind.",
        &mut s
            .streams
            .iter()
            .map(|r| (l(&r.name), r.skipped.to_string())),
    );
    family(
        "corecast_stream_muxers",
        "gauge",
        "Muxers running for the stream, by output format (one serves every viewer).",
        // One series per (stream, format) with the count: a stream can have several
        // muxers of one format (viewers' track choices, `stream.mp4` paced apart from MSE).
        &mut s
            .muxers
            .iter()
            .fold(
                std::collections::BTreeMap::<(&str, &str), usize>::new(),
                |mut m, (name, f)| {
                    *m.entry((name.as_str(), *f)).or_default() += 1;
                    m
                },
            )
            .into_iter()
            .map(|((name, f), n)| {
                (
                    format!("{},format=\"{}\"", l(name), escape_label(f)),
                    n.to_string(),
                )
            }),
    );
    family(
        "corecast_connections",
        "gauge",
        "Open client connections by protocol.",
        &mut [
            ("rtsp", s.connections[0]),
            ("http", s.connections[1]),
            ("ws", s.connections[2]),
        ]
        .into_iter()
        .map(|(p, v)| (format!("protocol=\"{p}\""), v.to_string())),
    );
    let per_shard = |f: &dyn Fn(&ShardRow) -> String| -> Vec<(String, String)> {
        s.shards
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("shard=\"{i}\""), f(r)))
            .collect()
    };
    family(
        "corecast_shard_streams_owned",
        "gauge",
        "Streams whose producer runs on the shard.",
        &mut per_shard(&|s| s.streams_owned.to_string()).into_iter(),
    );
    family(
        "corecast_shard_viewers",
        "gauge",
        "Readers served by the shard (viewers and muxers).",
        &mut per_shard(&|s| s.viewers.to_string()).into_iter(),
    );
    family(
        "corecast_shard_cross_shard_packets_total",
        "counter",
        "Packets the shard relayed to other shards.",
        &mut per_shard(&|s| s.relayed_packets.to_string()).into_iter(),
    );
    family(
        "corecast_shard_relay_dropped_total",
        "counter",
        "Packets dropped because another shard's channel was full.",
        &mut per_shard(&|s| s.relay_dropped.to_string()).into_iter(),
    );
    family(
        "corecast_shard_muxers",
        "gauge",
        "Muxers running on the shard.",
        &mut per_shard(&|s| s.muxers.to_string()).into_iter(),
    );
    family(
        "corecast_shard_loop_utilization",
        "gauge",
        "Share of the last second the shard's event loop was busy (0..1).",
        &mut per_shard(&|s| format!("{:.3}", s.loop_permille as f64 / 1000.0)).into_iter(),
    );
    out
}

/// Prometheus label values escape `\`, `"` and newlines.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /api/streams`: name → stream, go2rtc's shape.
pub fn streams_json(snapshot: Vec<StreamSnapshot>) -> BTreeMap<String, StreamJson> {
    snapshot
        .into_iter()
        .map(|s| (s.name.clone(), stream_json(s)))
        .collect()
}

/// go2rtc's `Codec.String()`: NAME[/rate unless 90000][/channels].
pub fn codec_words(r: &crate::sdp::RtpMap) -> String {
    let mut full = r.encoding.to_ascii_uppercase();
    if r.clock_rate != 0 && r.clock_rate != 90_000 {
        full.push_str(&format!("/{}", r.clock_rate));
    }
    if let Some(ch) = r.channels.filter(|c| *c > 0) {
        full.push_str(&format!("/{ch}"));
    }
    full
}

/// One stream (`GET /api/streams?src=`).
pub fn stream_json(s: StreamSnapshot) -> StreamJson {
    let backchannel = s.backchannel;
    let live = s.producer.map(|(p, sdp)| {
        let (mut medias, codecs): (Vec<String>, Vec<Codec>) = sdp
            .map(|sdp| {
                sdp.medias
                    .iter()
                    .map(|m| {
                        let name = m
                            .codec()
                            .map(|(_, r)| r.encoding.clone())
                            .unwrap_or_else(|| m.formats.join(" "));
                        let full = match m.codec() {
                            Some((_, r)) => codec_words(r),
                            None => name.to_ascii_uppercase(),
                        };
                        // A camera's ONVIF backchannel (`a=sendonly` in its SDP) is audio
                        // we would send: go2rtc shows it as `sendonly` (Frigate's two-way talk).
                        let dir = if m.lines.iter().any(|l| l.trim() == "a=sendonly") {
                            "sendonly"
                        } else {
                            "recvonly"
                        };
                        (
                            format!("{}, {dir}, {full}", m.kind),
                            Codec {
                                codec_name: name.to_ascii_lowercase(),
                                codec_type: m.kind.clone(),
                            },
                        )
                    })
                    .unzip()
            })
            .unwrap_or_default();
        medias.extend(backchannel.iter().map(|c| format!("audio, sendonly, {c}")));
        ProducerJson {
            id: p.id,
            format_name: p.protocol,
            protocol: p.protocol,
            remote_addr: p.remote_addr,
            url: p.url,
            user_agent: p.user_agent,
            medias,
            codecs,
            bytes_recv: p.bytes,
            packets_recv: p.packets,
        }
    });
    let online = live.is_some();
    let live_url = live.as_ref().map(|p| p.url.clone());
    let mut producers: Vec<ProducerOut> = live.into_iter().map(ProducerOut::Live).collect();
    producers.extend(
        s.sources
            .iter()
            .filter(|u| Some(*u) != live_url.as_ref() && !u.starts_with("internal:"))
            .map(|u| ProducerOut::Idle { url: u.clone() }),
    );
    let consumers: Vec<ConsumerJson> = s
        .consumers
        .into_iter()
        .map(|c| ConsumerJson {
            id: c.id,
            format_name: c.format_name,
            protocol: c.protocol,
            remote_addr: c.remote_addr,
            user_agent: c.user_agent,
            shard: c.shard,
            tracks: c.tracks,
            bytes_send: c.bytes,
            packets_send: c.packets,
            skips: c.skips,
            skipped_packets: c.skipped,
        })
        .collect();
    StreamJson {
        producers,
        online,
        consumers: (!consumers.is_empty()).then_some(consumers),
        owner_shard: s.owner_shard,
        sources: s.sources,
        preload: s.preload,
        error: s.error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_and_labels() {
        let text = metrics_text(&MetricsSnapshot {
            streams: vec![StreamRow {
                name: "a\"b\\c\n".into(),
                online: true,
                ..Default::default()
            }],
            muxers: vec![("a\"b\\c\n".into(), "mp4"), ("a\"b\\c\n".into(), "mp4")],
            connections: [1, 2, 3],
            shards: vec![ShardRow::default()],
        });
        assert!(
            text.contains("corecast_stream_online{stream=\"a\\\"b\\\\c\\n\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("corecast_connections{protocol=\"ws\"} 3"),
            "{text}"
        );
        // Two muxers of one format: one series with their count.
        assert_eq!(text.matches("corecast_stream_muxers{").count(), 1, "{text}");
        assert!(
            text.contains("corecast_stream_muxers{stream=\"a\\\"b\\\\c\\n\",format=\"mp4\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("corecast_shard_loop_utilization{shard=\"0\"} 0.000"),
            "{text}"
        );
    }

    #[test]
    fn info_shape() {
        let i = info_json(InfoSnapshot {
            version: "1.9.14",
            rtsp_listen: Some("0.0.0.0:8554".parse().unwrap()),
            shards: vec![ShardReport::default(); 2],
            ..Default::default()
        });
        assert_eq!(
            (i.rtsp.listen.as_str(), i.rtsp.default_query.as_str()),
            (":8554", "video&audio")
        );
        assert_eq!(i.shard_count, 2);
    }

    #[test]
    fn go2rtc_shapes() {
        let sdp = crate::sdp::parse(
            "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n",
        )
        .unwrap();
        let idle = StreamSnapshot {
            name: "cam".into(),
            sources: vec!["rtsp://cam/1".into(), "ffmpeg:cam#audio=opus".into()],
            ..Default::default()
        };
        let live = StreamSnapshot {
            name: "pub".into(),
            sources: vec!["rtsp://cam/2".into(), "internal:demo".into()],
            producer: Some((
                ProducerSnapshot {
                    url: "rtsp://cam/2".into(),
                    protocol: "rtsp",
                    ..Default::default()
                },
                Some(sdp),
            )),
            consumers: vec![ConsumerSnapshot {
                format_name: "mp4",
                protocol: "http",
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = streams_json(vec![idle, live]);
        let cam = &out["cam"];
        assert!(!cam.online && cam.consumers.is_none());
        // Idle sources are listed by URL only.
        assert!(
            matches!(&cam.producers[..], [ProducerOut::Idle { url: a }, ProducerOut::Idle { url: b }]
            if a == "rtsp://cam/1" && b == "ffmpeg:cam#audio=opus")
        );
        let p = &out["pub"];
        assert!(p.online);
        // The live producer once (not again as an idle URL); internal sources hidden.
        assert_eq!(p.producers.len(), 1);
        let ProducerOut::Live(live) = &p.producers[0] else {
            panic!("not live")
        };
        assert_eq!(
            live.medias,
            [
                "video, recvonly, H264",
                "audio, recvonly, MPEG4-GENERIC/48000/2"
            ]
        );
        assert_eq!(live.codecs[0].codec_name, "h264");
        assert_eq!(p.consumers.as_ref().map(Vec::len), Some(1));
        // It serialises, without the absent keys (YAML here: the core has no JSON crate).
        let text = serde_yaml_ng::to_string(&out).unwrap();
        assert!(
            text.contains("producers") && !text.contains("preload"),
            "{text}"
        );
    }
}
