//! Minimal HTTP API on httparse: `GET /api` and `GET /api/streams` (go2rtc's shapes).
//! One request per connection for now; strict limits on the request head.

use crate::hub::Shard;
use crate::registry::Registry;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use serde::Serialize;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tracing::{debug, warn};

const MAX_HEAD: usize = 16 * 1024;

pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let sh = shard.clone();
                glommio::spawn_local(async move {
                    let _ = glommio::timer::timeout(Duration::from_secs(10), async {
                        handle(sh, stream).await;
                        Ok(())
                    })
                    .await;
                })
                .detach();
            }
            Err(e) => {
                warn!(shard = shard.id, error = %e, "http accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(shard: Rc<Shard>, mut stream: TcpStream) {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let (status, ctype, body) = loop {
        let n = match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("");
                let path = req.path.unwrap_or("/");
                debug!(method, path, "http request");
                break route(&shard, method, path);
            }
            Ok(httparse::Status::Partial) if len < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                break (431, "text/plain", b"request head too large\n".to_vec())
            }
            Err(httparse::Error::TooManyHeaders) => {
                break (431, "text/plain", b"too many headers\n".to_vec())
            }
            Err(e) => {
                break (
                    400,
                    "text/plain",
                    format!("bad request: {e}\n").into_bytes(),
                )
            }
        }
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.close().await;
}

fn route(shard: &Shard, method: &str, target: &str) -> (u16, &'static str, Vec<u8>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" {
        return (405, "text/plain", b"method not allowed\n".to_vec());
    }
    let json = |v: Result<String, simd_json::Error>| match v {
        Ok(s) => (200, "application/json", s.into_bytes()),
        Err(e) => (500, "text/plain", format!("{e}\n").into_bytes()),
    };
    match path {
        "/api" => json(simd_json::to_string(&api_info(shard))),
        "/api/streams" => {
            let src = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("src="))
                .map(percent_decode);
            let all = streams(&shard.registry);
            match src {
                Some(name) => match all.get(&name) {
                    Some(s) => json(simd_json::to_string(s)),
                    None => (404, "text/plain", b"stream not found\n".to_vec()),
                },
                None => json(simd_json::to_string(&all)),
            }
        }
        _ => (404, "text/plain", b"not found\n".to_vec()),
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|v| v as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Serialize)]
struct ShardReport {
    id: usize,
    viewers: usize,
    streams_owned: usize,
    connections: usize,
    relayed_packets: u64,
    relay_dropped: u64,
}

#[derive(Serialize)]
struct ApiInfo {
    version: &'static str,
    corecast_version: &'static str,
    shard_count: usize,
    shards: Vec<ShardReport>,
}

fn api_info(shard: &Shard) -> ApiInfo {
    ApiInfo {
        // The go2rtc API level corecast answers as (see README).
        version: "1.9.13",
        corecast_version: env!("CARGO_PKG_VERSION"),
        shard_count: shard.nshards,
        shards: shard
            .registry
            .shards
            .iter()
            .enumerate()
            .map(|(id, s)| ShardReport {
                id,
                viewers: s.viewers.load(Relaxed),
                streams_owned: s.streams_owned.load(Relaxed),
                connections: s.connections.load(Relaxed),
                relayed_packets: s.relayed_packets.load(Relaxed),
                relay_dropped: s.relay_dropped.load(Relaxed),
            })
            .collect(),
    }
}

#[derive(Serialize)]
struct Codec {
    codec_name: String,
    codec_type: String,
}

#[derive(Serialize)]
struct ProducerJson {
    id: u64,
    format_name: &'static str,
    protocol: &'static str,
    remote_addr: String,
    url: String,
    user_agent: String,
    medias: Vec<String>,
    codecs: Vec<Codec>,
    bytes_recv: u64,
    packets_recv: u64,
}

#[derive(Serialize)]
struct ConsumerJson {
    id: u64,
    format_name: &'static str,
    protocol: &'static str,
    remote_addr: String,
    user_agent: String,
    shard: usize,
    tracks: Vec<usize>,
    bytes_send: u64,
    packets_send: u64,
    skips: u64,
    skipped_packets: u64,
}

#[derive(Serialize)]
struct StreamJson {
    producers: Option<Vec<ProducerJson>>,
    consumers: Option<Vec<ConsumerJson>>,
    /// corecast extras: owning shard and configured sources.
    owner_shard: usize,
    sources: Vec<String>,
    /// Why the source last failed, while it is failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn streams(reg: &Registry) -> BTreeMap<String, StreamJson> {
    let g = reg.lock();
    g.streams
        .iter()
        .map(|(name, e)| {
            let producers = e.producer.as_ref().map(|p| {
                let (medias, codecs) = e
                    .sdp
                    .as_ref()
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
                vec![ProducerJson {
                    id: p.id,
                    format_name: p.protocol,
                    protocol: p.protocol,
                    remote_addr: p.remote_addr.clone(),
                    url: p.url.clone(),
                    user_agent: p.user_agent.clone(),
                    medias,
                    codecs,
                    bytes_recv: p.stats.bytes.load(Relaxed),
                    packets_recv: p.stats.packets.load(Relaxed),
                }]
            });
            let consumers: Vec<ConsumerJson> = e
                .consumers
                .iter()
                .map(|c| ConsumerJson {
                    id: c.id,
                    format_name: "rtsp",
                    protocol: c.protocol,
                    remote_addr: c.remote_addr.clone(),
                    user_agent: c.user_agent.clone(),
                    shard: c.shard,
                    tracks: c.tracks.clone(),
                    bytes_send: c.stats.bytes.load(Relaxed),
                    packets_send: c.stats.packets.load(Relaxed),
                    skips: c.stats.skips.load(Relaxed),
                    skipped_packets: c.stats.skipped_packets.load(Relaxed),
                })
                .collect();
            (
                name.clone(),
                StreamJson {
                    producers,
                    consumers: (!consumers.is_empty()).then_some(consumers),
                    owner_shard: e.owner,
                    sources: e.sources.clone(),
                    error: e.error.clone(),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_query_values() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%2"), "end%2");
        assert_eq!(percent_decode("%"), "%");
    }
}
