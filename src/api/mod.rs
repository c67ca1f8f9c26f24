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

/// `GET /api/streams`: name → stream, go2rtc's shape.
pub fn streams_json(snapshot: Vec<StreamSnapshot>) -> BTreeMap<String, StreamJson> {
    snapshot
        .into_iter()
        .map(|s| (s.name.clone(), stream_json(s)))
        .collect()
}

/// One stream (`GET /api/streams?src=`).
pub fn stream_json(s: StreamSnapshot) -> StreamJson {
    let live = s.producer.map(|(p, sdp)| {
        let (medias, codecs) = sdp
            .map(|sdp| {
                sdp.medias
                    .iter()
                    .map(|m| {
                        let name = m
                            .codec()
                            .map(|(_, r)| r.encoding.clone())
                            .unwrap_or_else(|| m.formats.join(" "));
                        (
                            format!("{}, recvonly, {}", m.kind, name),
                            Codec {
                                codec_name: name.to_ascii_lowercase(),
                                codec_type: m.kind.clone(),
                            },
                        )
                    })
                    .unzip()
            })
            .unwrap_or_default();
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
    fn info_shape() {
        let i = info_json(InfoSnapshot {
            version: "1.9.13",
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
            ["video, recvonly, H264", "audio, recvonly, MPEG4-GENERIC"]
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
