//! The intermediate serde model: what the YAML says, before validation.
//!
//! Fixed-shape sections are derived structs with `Option` fields, so type errors come from
//! serde_yaml_ng with a location and a fixed dotted path. Sections keyed by user-chosen names
//! (`streams:`, `log:`) are read into ordered [`Node`] pairs instead and checked by the
//! validator, which knows the exact key of every value.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping of sections (streams:, rtsp:, api:, log:, ...)")]
pub(super) struct RawConfig {
    pub streams: Option<Pairs>,
    pub rtsp: Option<RawRtsp>,
    pub api: Option<RawApi>,
    pub log: Option<Pairs>,
    pub shards: Option<u64>,
    pub preload: Option<Pairs>,
    pub ffmpeg: Option<Pairs>,
    pub sources: Option<RawSources>,
    pub exec: Option<RawExec>,
    pub fanout: Option<RawFanout>,
    pub webrtc: Option<RawWebrtc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping")]
pub(super) struct RawWebrtc {
    pub listen: Option<String>,
    pub candidates: Option<Vec<String>>,
    pub ice_servers: Option<Vec<RawIceServer>>,
    pub filters: Option<RawWebrtcFilters>,
}

/// go2rtc's `ice_servers` entry: `urls` is one string or a list.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping with `urls`")]
pub(super) struct RawIceServer {
    pub urls: Option<serde_yaml_ng::Value>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping")]
pub(super) struct RawWebrtcFilters {
    pub candidates: Option<Vec<String>>,
    pub loopback: Option<bool>,
    pub interfaces: Option<Vec<String>>,
    pub ips: Option<Vec<String>>,
    pub networks: Option<Vec<String>>,
    pub udp_ports: Option<Vec<u16>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping")]
pub(super) struct RawFanout {
    pub max_lag_ms: Option<u64>,
    pub resume_ms: Option<u64>,
    pub egress_tick_us: Option<u64>,
    pub ring_bytes: Option<u64>,
    pub mux_interval_ms: Option<u64>,
    pub progressive_interval_ms: Option<u64>,
    pub audio_hold_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping")]
pub(super) struct RawExec {
    pub allow_paths: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping")]
pub(super) struct RawSources {
    pub idle_timeout: Option<u64>,
    pub reconnect_max: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping")]
pub(super) struct RawRtsp {
    pub listen: Option<String>,
    pub session_timeout: Option<u64>,
    pub rtp_port: Option<u16>,
    pub ring_size: Option<u64>,
    pub default_query: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub local_auth: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping")]
pub(super) struct RawApi {
    pub listen: Option<String>,
    pub origin: Option<String>,
    pub base_path: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub local_auth: Option<bool>,
    pub allow_exec: Option<bool>,
    pub unix_listen: Option<String>,
    pub allow_paths: Option<Vec<String>>,
}

/// Dotted paths of every typed field above: a serde error message starting with one of
/// these (`"rtsp.listen: invalid type ..."`) names its key.
pub(super) const TYPED_PATHS: &[&str] = &[
    "streams",
    "rtsp",
    "api",
    "log",
    "shards",
    "preload",
    "ffmpeg",
    "sources",
    "exec",
    "exec.allow_paths",
    "api.allow_paths",
    "api.unix_listen",
    "fanout",
    "fanout.max_lag_ms",
    "fanout.resume_ms",
    "fanout.egress_tick_us",
    "fanout.ring_bytes",
    "fanout.mux_interval_ms",
    "fanout.progressive_interval_ms",
    "fanout.audio_hold_ms",
    "webrtc",
    "webrtc.listen",
    "webrtc.candidates",
    "webrtc.ice_servers",
    "webrtc.filters",
    "sources.idle_timeout",
    "sources.reconnect_max",
    "rtsp.local_auth",
    "rtsp.listen",
    "rtsp.session_timeout",
    "rtsp.rtp_port",
    "rtsp.ring_size",
    "rtsp.default_query",
    "rtsp.username",
    "rtsp.password",
    "api.listen",
    "api.origin",
    "api.base_path",
    "api.username",
    "api.password",
    "api.local_auth",
    "api.allow_exec",
];

/// A YAML value as far as validation cares. Scalars other than strings keep only their kind,
/// which is all an error message needs.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
    Other(&'static str),
}

impl Node {
    /// How the value reads in an error message ("found a number").
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing (null)",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
            Node::Other(kind) => kind,
        }
    }
}

/// A mapping as ordered (key, value) pairs, duplicates kept: go2rtc users expect streams in
/// file order, and the validator reports duplicates with both lines.
#[derive(Debug, Default)]
pub(super) struct Pairs(pub Vec<(String, Node)>);

/// Message for [`Budget`] exhaustion.
pub(super) const TOO_LARGE: &str =
    "the section expands to too much data (YAML aliases repeating large values?)";

/// The text is capped at 1 MiB, but aliases can replay a large node many times over (a
/// "billion laughs"), so the visitors charge what they build against this many bytes and
/// stop early. Generous: an alias-free 1 MiB file costs at most a few MiB.
const BUDGET_BYTES: usize = 32 << 20;
/// Charged per node on top of its string bytes, roughly its in-memory size.
const NODE_COST: usize = 48;

struct Budget(usize);

impl Budget {
    fn spend<E: de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        self.0 = self
            .0
            .checked_sub(NODE_COST + bytes)
            .ok_or_else(|| E::custom(TOO_LARGE))?;
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Pairs, A::Error> {
                read_pairs(map, &mut Budget(BUDGET_BYTES)).map(Pairs)
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

fn read_pairs<'de, A: MapAccess<'de>>(
    mut map: A,
    budget: &mut Budget,
) -> Result<Vec<(String, Node)>, A::Error> {
    let mut pairs = Vec::new();
    // Keys are read as strings: serde_yaml_ng hands over the scalar's text, so `007:` stays
    // "007" as it would in go2rtc.
    while let Some(key) = map.next_key::<String>()? {
        budget.spend(key.len())?;
        let value = map.next_value_seed(NodeSeed { budget })?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Reads any value into a [`Node`], charging the shared budget.
struct NodeSeed<'b> {
    budget: &'b mut Budget,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        self.budget.spend(v.len())?;
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        self.budget.spend(0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(NodeSeed {
            budget: &mut *self.budget,
        })? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node, A::Error> {
        self.budget.spend(0)?;
        read_pairs(map, self.budget).map(Node::Map)
    }

    /// serde_yaml_ng presents a value with a custom tag (`!secret x`) as an enum.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        use de::VariantAccess;
        let (_tag, variant): (String, _) = data.variant()?;
        variant.newtype_variant_seed(NodeSeed {
            budget: self.budget,
        })?;
        Ok(Node::Other("a value with a YAML tag"))
    }
}

/// The dotted path serde_ignored reports, as separate keys.
pub(super) fn ignored_path(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path;
    let mut out = Vec::new();
    let mut cur = path;
    loop {
        match cur {
            Path::Root => break,
            Path::Seq { parent, index } => {
                out.push(index.to_string());
                cur = parent;
            }
            Path::Map { parent, key } => {
                out.push(key.clone());
                cur = parent;
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => cur = parent,
        }
    }
    out.reverse();
    out
}
