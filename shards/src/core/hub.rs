//! The shard-local hub: streams this shard owns, mirrors of streams owned elsewhere that
//! this shard's viewers read, and the cross-shard relay.
//!
//! Everything here runs on one executor thread: `Rc`/`RefCell`/`Cell`, no locks and no
//! atomics on the per-packet path. A packet crosses to another shard once per interested
//! shard (batched per producer tick), never once per viewer.

use crate::core::registry::{owner_of, AttachError, Generation, Registry, StreamId};
use corecast::config::Config;
use corecast::packet::Packet;
use corecast::ring::{Bounds, Ring};
use glommio::channels::channel_mesh::{Receivers, Senders};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tracing::{debug, warn};

/// Packets relayed from an owner to one interested shard, one message per producer tick.
pub struct DataMsg {
    pub stream_id: StreamId,
    pub generation: Generation,
    pub packets: Vec<Packet>,
}

/// Everything one shard sends another, over one SPSC channel per ordered pair.
pub enum ShardMsg {
    Data(DataMsg),
    Ctl(CtlMsg),
}

/// Control messages between shards. Rare; sent reliably (awaiting space).
pub enum CtlMsg {
    /// `shard` has viewers of this generation of the stream and wants its packets.
    Subscribe {
        stream_id: StreamId,
        generation: Generation,
        shard: usize,
    },
    /// `shard` has no viewers of this generation left.
    Unsubscribe {
        stream_id: StreamId,
        generation: Generation,
        shard: usize,
    },
    /// The producer of this generation is gone.
    StreamEnd {
        stream_id: StreamId,
        generation: Generation,
    },
    /// For the rooms around the core (sources, muxers, the RTSP driver).
    Room(RoomMsg),
}

/// Control messages the core carries but does not handle: the runtime installs the
/// handler (`Shard::set_rooms`), so the core imports none of the rooms.
pub enum RoomMsg {
    /// A reader wants this stream's pull source running.
    StartSource { name: String },
    /// A reader wants tracks the stream lacks: dial its later sources.
    ExtendSource { name: String, query: Option<String> },
    /// A viewer wants a muxed variant of a stream this shard owns.
    StartMuxer {
        output: crate::core::registry::OutputKey,
    },
    /// Who wants this stream changed (a viewer came or left, the API changed its sources
    /// or preload): the owner re-evaluates its source and muxers once.
    Wanted { name: String },
    /// An RTSP connection on the wrong shard (a publisher, or a player of a stream with few
    /// viewers): the owner takes over its socket.
    Handoff {
        /// Owned: a message dropped on the way (channel closed at shutdown, no handler)
        /// closes the socket instead of leaking it.
        fd: std::os::fd::OwnedFd,
        peer: SocketAddr,
        buffered: Vec<u8>,
        /// The connection already passed RTSP auth on the first shard.
        authenticated: bool,
    },
    /// A datagram from a WebRTC viewer whose session lives on the receiving shard (the
    /// kernel spreads the shared WebRTC port's datagrams over the shards).
    WebRtcDatagram { data: Vec<u8>, from: SocketAddr },
    /// End a WebRTC session of this shard (WHEP DELETE arrived elsewhere).
    WebRtcClose { id: String },
    /// Work for the receiving shard (a WHIP publisher's session made where its stream is
    /// owned).
    Call(ShardCall),
    /// An ICE-TCP connection accepted by another shard, for a session of this one.
    WebRtcTcp {
        /// Owned: a lost message closes the socket.
        fd: std::os::fd::OwnedFd,
        peer: SocketAddr,
        buffered: Vec<u8>,
    },
}

/// Work sent to a shard ([`RoomMsg::Call`]).
pub type ShardCall = Box<dyn FnOnce(&Rc<Shard>) + Send>;

/// Handles `RoomMsg`s on a shard (installed by the runtime).
pub type RoomHandler = Rc<dyn Fn(&Rc<Shard>, RoomMsg)>;

/// A stream as this shard sees it: owned (a producer runs here) or a mirror fed by the
/// owner. Viewers read both the same way.
pub struct LocalStream {
    pub id: StreamId,
    /// The stream's name (for a muxer's output, the name of the stream it muxes).
    pub name: String,
    /// Set for a muxer's output: which format of `name` it carries.
    pub output: Option<crate::core::registry::Variant>,
    pub generation: Generation,
    pub owned: bool,
    pub ring: RefCell<Ring<Rc<Packet>>>,
    waiters: RefCell<Vec<Waker>>,
    /// Viewers written inline by `notify` instead of woken (see `Direct`).
    direct: RefCell<Vec<Parked>>,
    /// Bumped by every notify: a viewer registered in an older epoch must register again.
    epoch: Cell<u64>,
    tick: Cell<u64>,
    closed: Cell<bool>,
    /// Per media: the exact RTP/wall-clock anchor if the producer knows it, and whether
    /// arrival-based sender reports are allowed. Copied from the registry when the stream
    /// opens (a mirror) and set by the owner, so a viewer's sender report reads it here,
    /// never under the registry lock.
    sync: RefCell<(Vec<Option<crate::core::registry::Anchor>>, bool)>,
    /// Bumped each time a new producer resumes the stream (its viewers stay and continue
    /// at the new producer's first keyframe; see `corecast::fanout`).
    producer_epoch: Cell<u64>,
    pub local_viewers: Cell<usize>,
    /// Owned streams: which shards mirror it.
    remote: RefCell<Vec<bool>>,
    /// Owned streams: packets waiting for the next flush, per shard.
    pending: RefCell<Vec<Vec<Packet>>>,
    /// Waiting in the shard's egress tick (see `Shard::flush`).
    dirty: Cell<bool>,
    /// Owned streams with video and other media: which media are video (a bit per media
    /// index; 0: no audio hold, see `Shard::flush`).
    video: Cell<u64>,
    /// A video packet was pushed since the last flush.
    video_pushed: Cell<bool>,
    /// Since when pushed audio waits for the next video packet (see `Shard::flush`).
    held_since: Cell<Option<u64>>,
}

/// A viewer that is written at each notify of its stream, in the notifying task, instead of
/// having its own task woken to write (issue #10 (a): at 2,000 viewers a tick's wake-ups,
/// task runs and per-viewer scratch buffers were most of corecast's user time). The
/// viewer's task parks it after a write that emptied the ring and takes over again when
/// `on_data` declines.
pub trait Direct {
    /// Writes what is new for this viewer without waiting, when `generation` is still the
    /// one it parked with (see `Parking`). False: leave the list (the viewer's task has
    /// been woken to go on, or the entry is stale).
    fn on_data(&self, generation: u64) -> bool;

    /// Starts loading what the next `on_data` reads beyond the viewer's own struct (a
    /// notify calls it one entry ahead; the struct itself was prefetched two ahead).
    fn prefetch(&self) {}
}

/// How much of a parked viewer a notify prefetches two entries ahead: its `Rc` box, counts
/// and struct (an RTSP `Conn` is 344 bytes with them).
const PREFETCH_VIEWER: usize = 384;

ab_switch! {
    /// `CORECAST_NO_PREFETCH=1`: notify walks its list without prefetching.
    fn prefetch_allowed = "CORECAST_NO_PREFETCH"
}

/// An entry of a stream's inline list, kept in the list itself: a notify walking 2,000
/// entries touches each viewer's own state once (an entry allocated apart was one more
/// cache miss per viewer per tick). Weak: a viewer that left is dropped at the next notify.
struct Parked {
    viewer: std::rc::Weak<dyn Direct>,
    generation: u64,
}

/// A viewer's parked state: its `Direct` entry carries the generation it was parked with,
/// and any unpark (the viewer's task running again) makes that entry stale, so that the
/// next notify drops it unwritten.
#[derive(Default)]
pub struct Parking {
    parked: Cell<bool>,
    generation: Cell<u64>,
}

impl Parking {
    /// Parks; returns the generation the new entry must carry.
    pub fn park(&self) -> u64 {
        self.parked.set(true);
        self.generation.get()
    }

    pub fn unpark(&self) {
        if self.parked.replace(false) {
            self.generation.set(self.generation.get().wrapping_add(1));
        }
    }

    pub fn is_parked(&self) -> bool {
        self.parked.get()
    }

    /// Whether an entry of `generation` is the live one.
    pub fn holds(&self, generation: u64) -> bool {
        self.parked.get() && self.generation.get() == generation
    }
}

impl LocalStream {
    /// A stream as a shard keeps it; public so that benches and tests can drive one that
    /// no shard owns.
    pub fn new(
        id: StreamId,
        name: &str,
        generation: Generation,
        owned: bool,
        ring: Bounds,
        nshards: usize,
    ) -> Self {
        LocalStream {
            id,
            name: name.to_string(),
            output: None,
            generation,
            owned,
            ring: RefCell::new(Ring::bounded(ring)),
            waiters: RefCell::new(Vec::new()),
            direct: RefCell::new(Vec::new()),
            epoch: Cell::new(0),
            tick: Cell::new(0),
            closed: Cell::new(false),
            producer_epoch: Cell::new(0),
            sync: RefCell::new((Vec::new(), true)),
            local_viewers: Cell::new(0),
            remote: RefCell::new(vec![false; nshards]),
            pending: RefCell::new((0..nshards).map(|_| Vec::new()).collect()),
            dirty: Cell::new(false),
            video: Cell::new(0),
            video_pushed: Cell::new(false),
            held_since: Cell::new(None),
        }
    }

    /// Which of the producer's media are video: when there are others too, their packets
    /// wait for the next video packet to be flushed (see `Shard::flush`).
    pub fn set_media(&self, sdp: &corecast::sdp::Sdp) {
        let n = sdp.medias.len().min(64);
        let video = sdp.medias[..n]
            .iter()
            .enumerate()
            .filter(|(_, m)| m.kind == "video")
            .fold(0u64, |mask, (i, _)| mask | 1 << i);
        let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        self.video.set(if video == all { 0 } else { video });
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// The producer epoch (see the field).
    pub fn producer_epoch(&self) -> u64 {
        self.producer_epoch.get()
    }

    /// The anchor of one media and whether arrival-based sync is allowed (see `sync`).
    pub fn sync_of(&self, media: usize) -> (Option<crate::core::registry::Anchor>, bool) {
        let s = self.sync.borrow();
        (s.0.get(media).copied().flatten(), s.1)
    }

    fn copy_sync(&self, anchors: &[Option<crate::core::registry::Anchor>], arrival: bool) {
        *self.sync.borrow_mut() = (anchors.to_vec(), arrival);
    }

    /// A new producer resumed the stream.
    pub fn next_producer_epoch(&self) {
        self.producer_epoch.set(self.producer_epoch.get() + 1);
    }

    /// Viewers on this shard, or mirrors on others: someone would notice an end.
    pub fn has_viewers(&self) -> bool {
        self.local_viewers.get() > 0 || self.remote.borrow().iter().any(|r| *r)
    }

    /// Appends one packet. Call [`Shard::flush`] after a batch.
    pub fn push(&self, pkt: Packet) {
        {
            let remote = self.remote.borrow();
            if remote.iter().any(|r| *r) {
                let mut pending = self.pending.borrow_mut();
                for (shard, on) in remote.iter().enumerate() {
                    if *on {
                        pending[shard].push(pkt.clone());
                    }
                }
            }
        }
        if (self.video.get() >> (pkt.track & 63)) & 1 == 1 {
            self.video_pushed.set(true);
        }
        let (key, bytes, at) = (pkt.keyframe, pkt.held_bytes(), pkt.arrival);
        self.ring
            .borrow_mut()
            .push_held(Rc::new(pkt), key, bytes, at);
    }

    /// Wakes every viewer waiting for data, and writes the parked ones (`Direct`) inline.
    pub fn notify(&self) {
        // Waking only schedules tasks (nothing re-registers during this loop), so the list
        // is drained in place and keeps its capacity: no allocation per tick.
        let mut w = self.waiters.borrow_mut();
        self.epoch.set(self.epoch.get() + 1);
        for waker in w.drain(..) {
            waker.wake();
        }
        drop(w);
        // Taken out while the viewers write (one could park again meanwhile: kept too), put
        // back with its capacity.
        let mut list = std::mem::take(&mut *self.direct.borrow_mut());
        if list.is_empty() {
            return;
        }
        // As `retain`, with each entry's state loaded while the previous ones write.
        let n = list.len();
        let ahead = prefetch_allowed();
        let mut kept = 0;
        for i in 0..n {
            if ahead {
                if let Some(p) = list.get(i + 2) {
                    // The box starts with its two counts, before the value (std's layout
                    // for values aligned to at most 16; only a hint if that changes).
                    let counts = 2 * std::mem::size_of::<usize>();
                    let boxed = (p.viewer.as_ptr() as *const u8).wrapping_sub(counts);
                    crate::io::sendv::prefetch_bytes(boxed, PREFETCH_VIEWER);
                }
                if let Some(v) = list.get(i + 1).and_then(|p| p.viewer.upgrade()) {
                    v.prefetch();
                }
            }
            let p = &list[i];
            if p.viewer.upgrade().is_some_and(|v| v.on_data(p.generation)) {
                list.swap(kept, i);
                kept += 1;
            }
        }
        list.truncate(kept);
        let mut cur = self.direct.borrow_mut();
        list.append(&mut cur);
        std::mem::swap(&mut *cur, &mut list);
    }

    /// Parks a viewer: until it leaves, each notify writes it inline.
    pub fn park_direct(&self, viewer: std::rc::Weak<dyn Direct>, generation: u64) {
        self.direct.borrow_mut().push(Parked { viewer, generation });
    }

    /// Whether the ring has moved past `pos` or the stream closed (a parking viewer's
    /// last look).
    pub fn has_data(&self, pos: u64) -> bool {
        self.closed.get() || self.ring.borrow().head() > pos
    }

    /// Time of the last tick that moved this ring (µs): viewers use it instead of reading
    /// the clock once each.
    pub fn tick(&self) -> u64 {
        self.tick.get()
    }

    /// Ready when the ring has something past `pos` or the stream closed. Otherwise the
    /// viewer's waker is registered once per notify epoch (`registered` is the viewer's
    /// own marker), so registering costs O(1) whatever the number of viewers.
    pub fn poll_data(&self, pos: u64, registered: &Cell<u64>, cx: &Context<'_>) -> Poll<()> {
        if self.has_data(pos) {
            return Poll::Ready(());
        }
        let mark = self.epoch.get() + 1;
        if registered.get() != mark {
            self.waiters.borrow_mut().push(cx.waker().clone());
            registered.set(mark);
        }
        Poll::Pending
    }

    fn close(&self) {
        self.closed.set(true);
        self.notify();
    }
}

/// What attaching a viewer needs to know of a registry entry (read under one lock).
struct Found {
    id: StreamId,
    owner: usize,
    generation: Generation,
    live: bool,
    anchors: Vec<Option<crate::core::registry::Anchor>>,
    arrival: bool,
}

impl Found {
    fn of(e: &crate::core::registry::StreamEntry) -> Found {
        Found {
            id: e.id,
            owner: e.owner,
            generation: e.generation,
            // A stream waiting for its producer's successor (`fanout.resume_ms`) takes
            // new viewers too: they wait with the others (a publisher restarting must not
            // fail the joins of its gap).
            live: e.producer.is_some() || e.resume_sdp.is_some(),
            anchors: e.anchors.clone(),
            arrival: e.arrival_sync,
        }
    }
}

/// Monotonic microseconds since process start, the time base of every `now` and
/// `Packet::arrival` (shared by all shards).
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock(Instant::now())
    }
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// Most items of a muxer's output ring (fragments, about one per frame and track; time and
/// bytes bound it first).
const DERIVED_RING: usize = 512;

/// One shard's state.
pub struct Shard {
    pub id: usize,
    pub nshards: usize,
    pub registry: Arc<Registry>,
    pub config: Arc<Config>,
    pub clock: Clock,
    streams: RefCell<HashMap<StreamId, Rc<LocalStream>>>,
    tx: Rc<Senders<ShardMsg>>,
    /// Control messages waiting for room in a full channel, per destination shard.
    ctl_queues: Rc<RefCell<Vec<std::collections::VecDeque<CtlMsg>>>>,
    /// Handles the rooms' control messages (set by the runtime).
    rooms: RefCell<Option<RoomHandler>>,
    /// Owned streams whose producer left while viewers stayed, by name: the next producer
    /// of the name takes them over (see `leave_owned`).
    orphans: RefCell<HashMap<String, Rc<LocalStream>>>,
    /// The egress tick (`fanout: egress_tick_us`): streams with arrivals not yet flushed,
    /// the tick task's waker, whether that task runs, and when it last flushed.
    dirty: RefCell<Vec<Rc<LocalStream>>>,
    egress_waker: RefCell<Option<Waker>>,
    egress_running: Cell<bool>,
    /// Streams whose audio waits for their next video packet (`fanout: audio_hold_ms`),
    /// and that a hold began since the tick task last looked.
    held: RefCell<Vec<Rc<LocalStream>>>,
    hold_began: Cell<bool>,
    /// Wake quiet connection loops for their periodic checks (see `beat`): every 250 ms
    /// (pulled sources: stop requests, keepalives), every 5 s (RTSP connections' session
    /// timeout, where thousands of idle players must not be woken often).
    pub beat: Rc<super::beat::Beat>,
    pub slow_beat: Rc<super::beat::Beat>,
}

impl Shard {
    pub fn new(
        id: usize,
        registry: Arc<Registry>,
        config: Arc<Config>,
        clock: Clock,
        tx: Senders<ShardMsg>,
    ) -> Rc<Shard> {
        let nshards = registry.nshards();
        Rc::new(Shard {
            id,
            nshards,
            registry,
            config,
            clock,
            streams: RefCell::new(HashMap::new()),
            tx: Rc::new(tx),
            ctl_queues: Rc::new(RefCell::new(
                (0..nshards).map(|_| Default::default()).collect(),
            )),
            rooms: RefCell::new(None),
            orphans: RefCell::new(HashMap::new()),
            dirty: RefCell::new(Vec::new()),
            egress_waker: RefCell::new(None),
            egress_running: Cell::new(false),
            held: RefCell::new(Vec::new()),
            hold_began: Cell::new(false),
            beat: super::beat::Beat::new(std::time::Duration::from_millis(250)),
            slow_beat: super::beat::Beat::new(std::time::Duration::from_secs(5)),
        })
    }

    pub fn owner_of(&self, name: &str) -> usize {
        owner_of(name, self.nshards)
    }

    /// The consumer policy every viewer on this shard follows (`fanout:` in the config).
    pub fn fanout_policy(&self) -> corecast::fanout::Policy {
        corecast::fanout::Policy {
            max_lag_us: self.config.fanout.max_lag_ms.saturating_mul(1000),
            ..Default::default()
        }
    }

    /// What a stream's ring keeps (owned, mirror or a muxer's output alike): from the
    /// latest keyframe or the lag bound, whichever is older, within `fanout: ring_bytes`;
    /// `rtsp: ring_size` caps the count (a muxer's output, whole frames, at a few hundred).
    pub fn ring_bounds(&self, output: bool) -> Bounds {
        let items = self.config.rtsp.ring_packets;
        Bounds {
            max_age_us: self.config.fanout.max_lag_ms.saturating_mul(1000),
            max_bytes: usize::try_from(self.config.fanout.ring_bytes).unwrap_or(usize::MAX),
            max_items: if output {
                DERIVED_RING.min(items)
            } else {
                items
            },
        }
    }

    /// Creates the owned stream for a new producer generation (after `Registry::claim`).
    pub fn open_owned(&self, id: StreamId, name: &str, generation: Generation) -> Rc<LocalStream> {
        self.open(id, name, None, generation)
    }

    /// Creates a muxer's output stream (after `Registry::claim_output`).
    pub fn open_output(
        &self,
        id: StreamId,
        key: &crate::core::registry::OutputKey,
        generation: Generation,
    ) -> Rc<LocalStream> {
        self.open(id, &key.stream, Some(key.variant), generation)
    }

    /// A stream of this shard: owned (a producer runs here) or a mirror.
    fn local_stream(
        &self,
        id: StreamId,
        name: &str,
        output: Option<crate::core::registry::Variant>,
        generation: Generation,
        owned: bool,
    ) -> Rc<LocalStream> {
        let mut s = LocalStream::new(
            id,
            name,
            generation,
            owned,
            self.ring_bounds(output.is_some()),
            self.nshards,
        );
        s.output = output;
        Rc::new(s)
    }

    fn open(
        &self,
        id: StreamId,
        name: &str,
        output: Option<crate::core::registry::Variant>,
        generation: Generation,
    ) -> Rc<LocalStream> {
        let s = self.local_stream(id, name, output, generation, true);
        if let Some(old) = self.streams.borrow_mut().insert(id, s.clone()) {
            old.close();
        }
        self.registry.shards[self.id]
            .streams_owned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s
    }

    /// Claims `name` for a new producer: takes over the stream a previous producer left
    /// with viewers attached when the tracks match (`true`: make the producer with
    /// `Producer::resuming`), else opens a new generation (viewers of an old one end).
    pub fn claim_stream(
        self: &Rc<Self>,
        name: &str,
        sdp: &corecast::sdp::Sdp,
        info: Arc<crate::core::registry::ProducerInfo>,
    ) -> Result<(Rc<LocalStream>, bool), crate::core::registry::ClaimError> {
        let orphan = self.orphans.borrow_mut().remove(name);
        let (id, generation, resumed) = match self.registry.claim_resuming(name, sdp.clone(), info)
        {
            Ok(v) => v,
            Err(e) => {
                if let Some(o) = orphan {
                    self.orphans.borrow_mut().insert(name.to_string(), o);
                }
                return Err(e);
            }
        };
        if resumed {
            match orphan {
                Some(o) if o.generation == generation && !o.is_closed() => {
                    debug!(stream = name, "new producer takes over the waiting viewers");
                    // The new producer sets its own clock relation, if it knows one.
                    o.copy_sync(&[], true);
                    // The epoch moves at once: a producer that leaves again before it
                    // records must not let the earlier grace timer end the viewers.
                    o.next_producer_epoch();
                    o.set_media(sdp);
                    return Ok((o, true));
                }
                other => {
                    if let Some(o) = other {
                        self.close_owned(&o);
                    }
                }
            }
        } else if let Some(o) = orphan {
            debug!(
                stream = name,
                "new producer has other tracks: waiting viewers end"
            );
            self.close_owned(&o);
        }
        let s = self.open_owned(id, name, generation);
        s.set_media(sdp);
        Ok((s, false))
    }

    /// Registers a viewer of `name` (the API lists it) and tells the stream's owner.
    pub fn viewer_joined(
        self: &Rc<Self>,
        name: &str,
        info: Arc<crate::core::registry::ConsumerInfo>,
    ) {
        self.registry.add_consumer(name, info);
        self.wanted_changed(name);
    }

    /// Unregisters a viewer and tells the stream's owner (its source or muxer may idle).
    pub fn viewer_left(self: &Rc<Self>, name: &str, id: u64) {
        self.registry.remove_consumer(name, id);
        self.wanted_changed(name);
    }

    /// Tells the owner of `name` that who wants it changed: sources and muxers are
    /// stopped by these events (and an idle timer), never by polling the registry.
    pub fn wanted_changed(self: &Rc<Self>, name: &str) {
        let owner = self.owner_of(name);
        self.send_room(
            owner,
            RoomMsg::Wanted {
                name: name.to_string(),
            },
        );
    }

    /// Installs the handler of the rooms' messages (once, at start).
    pub fn set_rooms(&self, handler: RoomHandler) {
        *self.rooms.borrow_mut() = Some(handler);
    }

    /// Handles a room message here. Without a handler it is dropped (a handed-off socket
    /// closes with it).
    pub fn to_room(self: &Rc<Self>, msg: RoomMsg) {
        let handler = self.rooms.borrow().clone();
        if let Some(h) = handler {
            h(self, msg);
        }
    }

    /// Sends a room message to `shard` (handled at once when that is this one).
    pub fn send_room(self: &Rc<Self>, shard: usize, msg: RoomMsg) {
        if shard == self.id {
            self.to_room(msg);
        } else {
            self.send_ctl(shard, CtlMsg::Room(msg));
        }
    }

    /// Records an exact RTP/wall-clock anchor of one media of an owned stream (internal
    /// sources know theirs): in the stream for its viewers here, in the registry for
    /// mirrors opened later.
    pub fn set_anchor(
        &self,
        stream: &LocalStream,
        media: usize,
        anchor: crate::core::registry::Anchor,
    ) {
        {
            let mut s = stream.sync.borrow_mut();
            if s.0.len() <= media {
                s.0.resize(media + 1, None);
            }
            s.0[media] = Some(anchor);
        }
        self.registry
            .set_anchor(&stream.name, stream.generation, media, anchor);
    }

    /// Whether viewers may derive sender reports from arrival times (not for bursty
    /// sources such as demuxed stdout).
    pub fn set_arrival_sync(&self, stream: &LocalStream, allowed: bool) {
        stream.sync.borrow_mut().1 = allowed;
        self.registry.set_arrival_sync(&stream.name, allowed);
    }

    /// The producer of an owned stream left. Viewers (here or on other shards) wait for a
    /// new producer for `fanout.resume_ms`, then end; without viewers the stream ends now.
    pub fn leave_owned(self: &Rc<Self>, stream: &Rc<LocalStream>) {
        let grace = self.config.fanout.resume_ms;
        if grace == 0 || stream.output.is_some() || stream.is_closed() || !stream.has_viewers() {
            return self.close_owned(stream);
        }
        self.flush(stream);
        // Only the registry's current generation of the name can wait for a producer (the
        // stream may have been deleted and claimed again meanwhile).
        if !self.registry.orphan(&stream.name, stream.generation) {
            return self.close_owned(stream);
        }
        let displaced = self
            .orphans
            .borrow_mut()
            .insert(stream.name.clone(), stream.clone());
        if let Some(old) = displaced.filter(|o| !Rc::ptr_eq(o, stream)) {
            // An older stream of the name still waiting: nobody can resume it any more.
            self.close_owned(&old);
        }
        let epoch = stream.producer_epoch();
        let (sh, s) = (self.clone(), stream.clone());
        glommio::spawn_local(async move {
            glommio::timer::sleep(std::time::Duration::from_millis(grace)).await;
            let waiting = sh
                .orphans
                .borrow()
                .get(&s.name)
                .is_some_and(|o| Rc::ptr_eq(o, &s));
            // Resumed in between (even if orphaned again since): not ours to end.
            if waiting && s.producer_epoch() == epoch {
                sh.orphans.borrow_mut().remove(&s.name);
                debug!(stream = %s.name, "no new producer in time: viewers end");
                sh.close_owned(&s);
            }
        })
        .detach();
    }

    /// Ends a producer's generation: local viewers stop, mirrors are told.
    pub fn close_owned(self: &Rc<Self>, stream: &Rc<LocalStream>) {
        self.flush(stream);
        stream.close();
        let mut map = self.streams.borrow_mut();
        if map.get(&stream.id).is_some_and(|s| Rc::ptr_eq(s, stream)) {
            map.remove(&stream.id);
        }
        drop(map);
        self.registry.shards[self.id]
            .streams_owned
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let remote: Vec<usize> = stream
            .remote
            .borrow()
            .iter()
            .enumerate()
            .filter_map(|(i, on)| on.then_some(i))
            .collect();
        for shard in remote {
            self.send_ctl(
                shard,
                CtlMsg::StreamEnd {
                    stream_id: stream.id,
                    generation: stream.generation,
                },
            );
        }
        match stream.output {
            Some(variant) => self.registry.release_output(
                &crate::core::registry::OutputKey {
                    stream: stream.name.clone(),
                    variant,
                },
                stream.generation,
            ),
            None => self.registry.release(&stream.name, stream.generation),
        }
    }

    /// Ends a receive turn. Without an egress tick (or before its task runs: benches,
    /// tests) the stream is flushed now; with one, the stream waits for the shard's next
    /// tick, so a viewer is woken (and writes) at most once per tick however the publisher
    /// paces its packets, and each mirroring shard gets one batch per tick.
    ///
    /// Audio hold (`fanout: audio_hold_ms`): when only audio arrived since the last flush
    /// of a stream with video, the flush waits for the next video packet (or the hold's
    /// end), so that an RTSP viewer is written once per video frame rather than once more
    /// per audio packet (~30 writes a second instead of ~25 for 25 fps video with AAC:
    /// the writes, not the bytes, are what a viewer costs; issue #10). Audio reaches the
    /// viewers up to one frame interval later; its timestamps, and so the players' sync,
    /// do not change.
    pub fn flush(&self, stream: &Rc<LocalStream>) {
        if !self.egress_running.get() {
            return self.flush_now(stream);
        }
        if stream.dirty.get() {
            return;
        }
        let hold = self.config.fanout.audio_hold_ms.saturating_mul(1000);
        if hold > 0 && stream.video.get() != 0 && !stream.video_pushed.get() {
            let now = self.clock.now();
            match stream.held_since.get() {
                None => {
                    stream.held_since.set(Some(now));
                    self.held.borrow_mut().push(stream.clone());
                    self.hold_began.set(true);
                    if let Some(w) = self.egress_waker.borrow_mut().take() {
                        w.wake();
                    }
                    return;
                }
                Some(t) if now.saturating_sub(t) < hold => return,
                Some(_) => {}
            }
        }
        self.mark_dirty(stream);
    }

    fn mark_dirty(&self, stream: &Rc<LocalStream>) {
        if !stream.dirty.replace(true) {
            self.dirty.borrow_mut().push(stream.clone());
            if let Some(w) = self.egress_waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Moves the held streams whose hold is over to the tick's flush; returns when the
    /// next hold ends (clock µs).
    fn release_held(&self, now: u64) -> Option<u64> {
        let hold = self.config.fanout.audio_hold_ms.saturating_mul(1000);
        let mut next: Option<u64> = None;
        let mut held = self.held.borrow_mut();
        held.retain(|s| {
            // Flushed meanwhile (video came), or gone.
            let Some(t) = s.held_since.get() else {
                return false;
            };
            if s.is_closed() {
                return false;
            }
            let due = t.saturating_add(hold);
            if now >= due {
                self.mark_dirty(s);
                return false;
            }
            next = Some(next.map_or(due, |n: u64| n.min(due)));
            true
        });
        next
    }

    /// The egress tick task (`fanout: egress_tick_us` > 0): after the first arrival of a
    /// quiet period it lets one tick pass, collecting every arrival of every stream of the
    /// shard, then flushes them all.
    pub async fn egress_loop(self: Rc<Self>, tick: std::time::Duration) {
        self.egress_running.set(true);
        let mut batch: Vec<Rc<LocalStream>> = Vec::new();
        let mut nap = Nap::new(tick);
        loop {
            let dirty = futures_lite::future::poll_fn(|cx| {
                if self.dirty.borrow().is_empty() && !self.hold_began.replace(false) {
                    *self.egress_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            });
            // A timer only while nothing else is due: on a busy shard the loop passes by
            // every tick and finds the ended holds itself.
            match self.release_held(self.clock.now()) {
                Some(due) if self.dirty.borrow().is_empty() => {
                    let left = due.saturating_sub(self.clock.now());
                    futures_lite::future::or(dirty, async {
                        glommio::timer::sleep(std::time::Duration::from_micros(left)).await;
                    })
                    .await;
                    self.release_held(self.clock.now());
                    if self.dirty.borrow().is_empty() {
                        continue;
                    }
                }
                _ => dirty.await,
            }
            if self.dirty.borrow().is_empty() {
                continue;
            }
            let napped = nap.take();
            glommio::timer::sleep(tick.saturating_sub(napped)).await;
            std::mem::swap(&mut batch, &mut *self.dirty.borrow_mut());
            for s in batch.drain(..) {
                s.dirty.set(false);
                self.flush_now(&s);
            }
        }
    }

    /// Wakes local viewers and relays the batch to mirroring shards.
    fn flush_now(&self, stream: &LocalStream) {
        stream.video_pushed.set(false);
        stream.held_since.set(None);
        stream.tick.set(self.clock.now());
        stream.notify();
        let mut pending = stream.pending.borrow_mut();
        for (shard, batch) in pending.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            // The next batch is likely the same size: one allocation per batch, no growth.
            let packets = std::mem::replace(batch, Vec::with_capacity(batch.len()));
            let n = packets.len() as u64;
            let msg = DataMsg {
                stream_id: stream.id,
                generation: stream.generation,
                packets,
            };
            let stats = &self.registry.shards[self.id];
            match self.tx.try_send_to(shard, ShardMsg::Data(msg)) {
                Ok(()) => {
                    stats
                        .relayed_packets
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                // A full channel means the other shard is behind: drop and count, never
                // block the producer. Its viewers resync at the next keyframe.
                Err(_) => {
                    stats
                        .relay_dropped
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// The stream a reader on this shard reads: the owned one, or a mirror (subscribing
    /// to the owner if this is the first viewer here).
    pub fn attach_reader(self: &Rc<Self>, name: &str) -> Result<Rc<LocalStream>, AttachError> {
        let found = {
            let g = self.registry.lock();
            let e = g.streams.get(name).ok_or(AttachError::NotFound)?;
            Found::of(e)
        };
        self.attach(name, None, found)
    }

    /// Attaches a viewer to a muxer's output, as `attach_reader`.
    pub fn attach_output(
        self: &Rc<Self>,
        key: &crate::core::registry::OutputKey,
    ) -> Result<Rc<LocalStream>, AttachError> {
        let found = {
            let g = self.registry.lock();
            let e = g.outputs.get(key).ok_or(AttachError::NotFound)?;
            Found::of(e)
        };
        self.attach(&key.stream, Some(key.variant), found)
    }

    fn attach(
        self: &Rc<Self>,
        name: &str,
        output: Option<crate::core::registry::Variant>,
        found: Found,
    ) -> Result<Rc<LocalStream>, AttachError> {
        let Found {
            id,
            owner,
            generation,
            live,
            anchors,
            arrival,
        } = found;
        if !live {
            return Err(AttachError::NotLive);
        }
        let stream = if owner == self.id {
            let map = self.streams.borrow();
            let s = map.get(&id).ok_or(AttachError::NotLive)?;
            if s.generation != generation || s.is_closed() {
                return Err(AttachError::NotLive);
            }
            s.clone()
        } else {
            let existing = self.streams.borrow().get(&id).cloned();
            match existing {
                Some(s) if s.generation == generation && !s.is_closed() => s,
                stale => {
                    // A mirror of an older generation whose end is still in flight: its
                    // viewers must not wait for data that will never come.
                    if let Some(old) = stale {
                        old.close();
                    }
                    let s = self.local_stream(id, name, output, generation, false);
                    s.copy_sync(&anchors, arrival);
                    self.streams.borrow_mut().insert(id, s.clone());
                    debug!(stream = name, owner, shard = self.id, "mirror opened");
                    self.send_ctl(
                        owner,
                        CtlMsg::Subscribe {
                            stream_id: id,
                            generation,
                            shard: self.id,
                        },
                    );
                    s
                }
            }
        };
        stream.local_viewers.set(stream.local_viewers.get() + 1);
        self.registry.shards[self.id]
            .viewers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(stream)
    }

    pub fn detach_reader(self: &Rc<Self>, stream: &Rc<LocalStream>) {
        let n = stream.local_viewers.get().saturating_sub(1);
        stream.local_viewers.set(n);
        self.registry.shards[self.id]
            .viewers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if n == 0 && !stream.owned {
            let mut map = self.streams.borrow_mut();
            // Only the current mirror unsubscribes: a replaced one must not cut off its
            // successor's feed.
            let current = map.get(&stream.id).is_some_and(|s| Rc::ptr_eq(s, stream));
            if current {
                map.remove(&stream.id);
            }
            drop(map);
            stream.close();
            if current {
                let owner = self.owner_of(&stream.name);
                self.send_ctl(
                    owner,
                    CtlMsg::Unsubscribe {
                        stream_id: stream.id,
                        generation: stream.generation,
                        shard: self.id,
                    },
                );
            }
        }
    }

    /// Sends a control message without blocking the caller, in order per destination:
    /// when the channel is full, messages queue here and one task drains them.
    pub fn send_ctl(&self, shard: usize, msg: CtlMsg) {
        let mut queues = self.ctl_queues.borrow_mut();
        let Some(q) = queues.get_mut(shard) else {
            return;
        };
        if q.is_empty() {
            match self.tx.try_send_to(shard, ShardMsg::Ctl(msg)) {
                Ok(()) => return,
                Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(
                    ShardMsg::Ctl(m),
                ))) => q.push_back(m),
                Err(_) => {
                    warn!(shard, "control message to shard lost (channel closed)");
                    return;
                }
            }
            // The borrow must end before the drain task exists: it borrows the queues
            // itself (a task may be polled before `send_ctl` returns).
            drop(queues);
            let (tx, queues) = (self.tx.clone(), self.ctl_queues.clone());
            glommio::spawn_local(async move {
                loop {
                    let next = queues.borrow_mut()[shard].pop_front();
                    let Some(m) = next else { break };
                    if tx.send_to(shard, ShardMsg::Ctl(m)).await.is_err() {
                        warn!(shard, "control message to shard lost (channel closed)");
                        queues.borrow_mut()[shard].clear();
                        break;
                    }
                }
            })
            .detach();
        } else {
            q.push_back(msg);
        }
    }

    fn on_ctl(self: &Rc<Self>, msg: CtlMsg) {
        match msg {
            CtlMsg::Subscribe {
                stream_id,
                generation,
                shard,
            } => {
                let s = self.streams.borrow().get(&stream_id).cloned();
                if let Some(s) = s.filter(|s| s.owned && s.generation == generation) {
                    s.remote.borrow_mut()[shard] = true;
                    // Backfill from the last keyframe so the mirror's first viewer starts
                    // at once instead of waiting a whole GOP.
                    let ring = s.ring.borrow();
                    if let Some(k) = ring.last_keyframe() {
                        let mut pending = s.pending.borrow_mut();
                        pending[shard].clear();
                        for pos in k..ring.head() {
                            if let Some(p) = ring.get(pos) {
                                pending[shard].push((**p).clone());
                            }
                        }
                    }
                    drop(ring);
                    self.flush(&s);
                } else {
                    // That generation ended before the subscription arrived.
                    self.send_ctl(
                        shard,
                        CtlMsg::StreamEnd {
                            stream_id,
                            generation,
                        },
                    );
                }
            }
            CtlMsg::Unsubscribe {
                stream_id,
                generation,
                shard,
            } => {
                if let Some(s) = self.streams.borrow().get(&stream_id) {
                    if s.owned && s.generation == generation {
                        s.remote.borrow_mut()[shard] = false;
                        s.pending.borrow_mut()[shard].clear();
                    }
                }
            }
            CtlMsg::StreamEnd {
                stream_id,
                generation,
            } => {
                let s = self.streams.borrow().get(&stream_id).cloned();
                if let Some(s) = s {
                    if !s.owned && s.generation == generation {
                        self.streams.borrow_mut().remove(&stream_id);
                        s.close();
                    }
                }
            }
            CtlMsg::Room(m) => self.to_room(m),
        }
    }

    fn on_data(&self, msg: DataMsg) {
        let s = self.streams.borrow().get(&msg.stream_id).cloned();
        let Some(s) = s else { return };
        if s.owned || s.generation != msg.generation {
            return;
        }
        {
            let mut ring = s.ring.borrow_mut();
            for p in msg.packets {
                let (key, bytes, at) = (p.keyframe, p.held_bytes(), p.arrival);
                ring.push_held(Rc::new(p), key, bytes, at);
            }
        }
        s.tick.set(self.clock.now());
        s.notify();
    }

    /// Spawns the tasks that receive relayed packets and control messages from every
    /// other shard.
    pub fn spawn_mesh_receivers(self: &Rc<Self>, mut rx: Receivers<ShardMsg>) {
        for (_, rx) in rx.streams() {
            let shard = self.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    match msg {
                        ShardMsg::Data(d) => shard.on_data(d),
                        ShardMsg::Ctl(c) => shard.on_ctl(c),
                    }
                }
            })
            .detach();
        }
    }
}

/// Ingest coalescing: most of an egress tick is spent with the shard's thread asleep
/// (blocking, the event loop stopped), so that what every socket of the shard receives
/// meanwhile is read, parsed and flushed in one event-loop turn, not one turn per arrival.
/// Each turn of glommio's loop re-arms its timers (two io_uring cancels) and a park costs a
/// membarrier and a context switch: with hundreds of streams those turns, not the bytes,
/// were the shard's largest cost after `sendmsg` (issue #10). The latency bound is the
/// tick's, as before. Only while the shard is mostly idle (its thread's CPU time under half
/// of the wall time over the last 100 ms): a busy shard already does many arrivals per turn,
/// and napping would only take time from it. `CORECAST_NO_NAP=1` turns it off (A/B runs).
struct Nap {
    tick: std::time::Duration,
    on: bool,
    /// Start of the measuring window: monotonic and thread CPU time, microseconds.
    wall0: u64,
    cpu0: u64,
    allowed: bool,
}

impl Nap {
    /// The part of a tick spent asleep; the rest is left to the event loop, which reads what
    /// arrived during the nap before the flush.
    const TAIL: std::time::Duration = std::time::Duration::from_micros(300);
    const WINDOW_US: u64 = 100_000;

    fn new(tick: std::time::Duration) -> Self {
        Nap {
            tick,
            on: std::env::var_os("CORECAST_NO_NAP").is_none_or(|v| v == "0"),
            wall0: crate::io::clock::micros(libc::CLOCK_MONOTONIC),
            cpu0: crate::io::clock::micros(libc::CLOCK_THREAD_CPUTIME_ID),
            allowed: false,
        }
    }

    /// Ends a measuring window at (`wall`, `cpu`): naps are allowed in the next one if the
    /// thread was busy under half of this one.
    fn judge(&mut self, wall: u64, cpu: u64) {
        self.allowed = cpu.saturating_sub(self.cpu0) * 2 < wall.saturating_sub(self.wall0);
        self.wall0 = wall;
        self.cpu0 = cpu;
    }

    /// Sleeps the thread for most of a tick when allowed; returns how long.
    fn take(&mut self) -> std::time::Duration {
        if !self.on || self.tick <= Self::TAIL {
            return std::time::Duration::ZERO;
        }
        let wall = crate::io::clock::micros(libc::CLOCK_MONOTONIC);
        if wall.saturating_sub(self.wall0) >= Self::WINDOW_US {
            self.judge(
                wall,
                crate::io::clock::micros(libc::CLOCK_THREAD_CPUTIME_ID),
            );
        }
        if !self.allowed {
            return std::time::Duration::ZERO;
        }
        let d = self.tick - Self::TAIL;
        std::thread::sleep(d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry::{ProducerInfo, ProducerStats};
    use bytes::Bytes;
    use corecast::ring::{Cursor, Next};
    use glommio::channels::channel_mesh::MeshBuilder;
    use glommio::{LocalExecutorBuilder, Placement};
    use std::time::Duration;

    const N: u64 = 20_000;

    /// A handoff message that never reaches a handler (channel closed at shutdown, or no
    /// RTSP driver) must close the socket it carries: the peer then reads end-of-file.
    #[test]
    fn dropped_handoff_closes_its_fd() {
        use std::io::Read;
        let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let msg = RoomMsg::Handoff {
            fd: std::os::fd::OwnedFd::from(ours),
            peer: "127.0.0.1:1".parse().unwrap(),
            buffered: Vec::new(),
            authenticated: false,
        };
        drop(msg);
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            peer.read(&mut buf).unwrap(),
            0,
            "the handed-off socket was leaked"
        );
    }

    fn packet(seq: u64) -> Packet {
        Packet {
            data: Bytes::from(seq.to_be_bytes().to_vec()),
            track: 0,
            seq,
            timestamp: seq * 3000,
            marker: true,
            keyframe: seq.is_multiple_of(50),
            arrival: 0,
            payload_offset: 0,
        }
    }

    /// Packets relayed from the owner shard reach a mirror on the other shard complete
    /// and in order, in batches, over the mesh wired at start.
    #[test]
    fn cross_shard_relay_keeps_order() {
        let registry = Registry::new(2);
        let config = Arc::new(Config::default());
        let clock = Clock::new();
        let mesh = MeshBuilder::<ShardMsg, _>::full(2, 4096);
        let name = (0..)
            .map(|i| format!("s{i}"))
            .find(|n| owner_of(n, 2) == 0)
            .unwrap();
        let mut handles = vec![];
        for _ in 0..2 {
            let (registry, config, mesh, name) =
                (registry.clone(), config.clone(), mesh.clone(), name.clone());
            let h = LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(512 << 10)
                .spawn(move || async move {
                    let (tx, rx) = mesh.join().await.unwrap();
                    let shard = Shard::new(tx.peer_id(), registry.clone(), config, clock, tx);
                    shard.spawn_mesh_receivers(rx);
                    let timeout = Duration::from_secs(20);
                    if shard.id == 0 {
                        let sdp = corecast::sdp::parse(
                            "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
                        )
                        .unwrap();
                        let producer = Arc::new(ProducerInfo {
                            id: 1,
                            protocol: "test",
                            remote_addr: String::new(),
                            url: String::new(),
                            user_agent: String::new(),
                            stats: ProducerStats::default(),
                        });
                        let (id, generation, _) =
                            registry.claim_resuming(&name, sdp, producer).unwrap();
                        let s = shard.open_owned(id, &name, generation);
                        // Wait for the other shard's subscription.
                        glommio::timer::timeout(timeout, async {
                            while !s.remote.borrow()[1] {
                                glommio::timer::sleep(Duration::from_millis(1)).await;
                            }
                            Ok(())
                        })
                        .await
                        .unwrap();
                        let mut seq = 0;
                        while seq < N {
                            for _ in 0..7 {
                                s.push(packet(seq));
                                seq += 1;
                            }
                            shard.flush(&s);
                            // The channel holds every batch of this test (4096 > N / 7), so
                            // nothing may drop whatever the scheduling; yield to be fair.
                            glommio::yield_if_needed().await;
                            glommio::timer::sleep(Duration::from_micros(20)).await;
                        }
                        0
                    } else {
                        let s = loop {
                            match shard.attach_reader(&name) {
                                Ok(s) => break s,
                                Err(_) => glommio::timer::sleep(Duration::from_millis(1)).await,
                            }
                        };
                        assert!(!s.owned);
                        let mut cursor = Cursor::join(&s.ring.borrow());
                        let mut expect = 0u64;
                        let mut got = 0u64;
                        glommio::timer::timeout(timeout, async {
                            while expect < N - 1 {
                                let pos = cursor.position();
                                let mark = Cell::new(0);
                                futures_lite::future::poll_fn(|cx| s.poll_data(pos, &mark, cx))
                                    .await;
                                let ring = s.ring.borrow();
                                while let Next::Item(p) = cursor.next(&ring, u64::MAX) {
                                    // The mirror may start at a keyframe; after that, no gap
                                    // and no reordering.
                                    if got == 0 {
                                        expect = p.seq;
                                    }
                                    assert_eq!(p.seq, expect, "relay reordered or lost packets");
                                    assert_eq!(&p.data[..], &p.seq.to_be_bytes());
                                    expect += 1;
                                    got += 1;
                                }
                            }
                            Ok(())
                        })
                        .await
                        .unwrap();
                        assert_eq!(cursor.skips, 0);
                        got
                    }
                })
                .unwrap();
            handles.push(h);
        }
        let results: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let received = results.iter().sum::<u64>();
        assert!(received > N / 2, "mirror received {received} of {N}");
        let dropped = registry.shards[0]
            .relay_dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(dropped, 0, "paced producer must not overflow the channel");
    }

    fn rtp(seq: u16, ts: u32, ssrc: u32, key: bool) -> Bytes {
        let mut p = Vec::new();
        corecast::rtp::write_header(&mut p, 96, true, seq, ts, ssrc);
        // One H.264 NAL: an IDR slice (type 5) or a non-IDR one (type 1).
        p.extend_from_slice(if key { &[0x65, 0x88] } else { &[0x41, 0x9a] });
        Bytes::from(p)
    }

    /// Polls `f` every millisecond until it holds (true) or 20 s pass (false).
    async fn wait_until(f: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            if Instant::now() > deadline {
                return false;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        true
    }

    fn info() -> Arc<ProducerInfo> {
        Arc::new(ProducerInfo {
            id: 1,
            protocol: "test",
            remote_addr: String::new(),
            url: String::new(),
            user_agent: String::new(),
            stats: ProducerStats::default(),
        })
    }

    /// The audio hold: with the egress tick running, audio alone waits for the stream's
    /// next video packet and goes with it; without video it goes when the hold ends.
    #[test]
    fn audio_waits_for_the_next_video_packet_or_the_hold() {
        let registry = Registry::new(1);
        let mut config = Config::default();
        config.fanout.audio_hold_ms = 60;
        let config = Arc::new(config);
        let clock = Clock::new();
        let mesh = MeshBuilder::<ShardMsg, _>::full(1, 64);
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(512 << 10)
            .spawn(move || async move {
                let (tx, rx) = mesh.join().await.unwrap();
                let shard = Shard::new(tx.peer_id(), registry.clone(), config, clock, tx);
                shard.spawn_mesh_receivers(rx);
                glommio::spawn_local(shard.clone().egress_loop(Duration::from_millis(2))).detach();
                let sdp = corecast::sdp::parse(
                    "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                     m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n",
                )
                .unwrap();
                let (s, _) = shard.claim_stream("av", &sdp, info()).unwrap();
                let flushes = || s.epoch.get();
                let send = |seq: u64, track: u8| {
                    s.push(Packet {
                        track,
                        ..packet(seq)
                    });
                    shard.flush(&s);
                };
                // Video alone: flushed at the tick.
                send(1, 0);
                assert!(wait_until(|| flushes() == 1).await);
                // Audio: held past several ticks, then flushed with the next video packet.
                send(2, 1);
                glommio::timer::sleep(Duration::from_millis(20)).await;
                assert_eq!(flushes(), 1, "audio was not held");
                send(3, 0);
                assert!(wait_until(|| flushes() == 2).await);
                assert_eq!(s.ring.borrow().head(), 3);
                // Audio with no video after it: flushed when the hold ends.
                let t = Instant::now();
                send(4, 1);
                assert!(wait_until(|| flushes() == 3).await);
                assert!(
                    t.elapsed() >= Duration::from_millis(55),
                    "{:?}",
                    t.elapsed()
                );
                // An audio-only stream is never held.
                let audio = corecast::sdp::parse(
                    "v=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n",
                )
                .unwrap();
                let (a, _) = shard.claim_stream("a", &audio, info()).unwrap();
                a.push(packet(1));
                shard.flush(&a);
                assert!(a.held_since.get().is_none() && a.dirty.get());
                assert!(wait_until(|| a.epoch.get() == 1).await);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// Control messages and the resume rules through the real types, on two shards: a
    /// room message crosses to the owner's handler; a viewer on the other shard (a mirror)
    /// stays through a new producer with the same tracks and gets its packets renumbered
    /// to continue the old ones, from its first keyframe; a producer with other parameter
    /// sets ends it.
    #[test]
    fn nap_only_when_the_shard_was_mostly_idle() {
        use std::time::Duration;
        let tick = Duration::from_millis(1);
        let mut nap = Nap::new(tick);
        nap.on = true;
        // Windows judged on synthetic clocks: busy under half the wall time allows naps.
        nap.wall0 = 0;
        nap.cpu0 = 0;
        nap.judge(100_000, 40_000);
        assert!(nap.allowed);
        nap.judge(200_000, 40_000 + 60_000);
        assert!(!nap.allowed, "60 % busy: no nap");
        nap.judge(300_000, 100_000 + 10_000);
        assert!(nap.allowed);
        // take() naps the tick minus the tail while allowed (the window still runs).
        nap.wall0 = crate::io::clock::micros(libc::CLOCK_MONOTONIC);
        let t = std::time::Instant::now();
        assert_eq!(nap.take(), tick - Nap::TAIL);
        assert!(t.elapsed() >= tick - Nap::TAIL);
        // Not allowed, off (CORECAST_NO_NAP), or a tick no longer than the tail: never.
        nap.allowed = false;
        assert_eq!(nap.take(), Duration::ZERO);
        nap.allowed = true;
        nap.on = false;
        assert_eq!(nap.take(), Duration::ZERO);
        let mut short = Nap::new(Nap::TAIL);
        short.on = true;
        short.allowed = true;
        assert_eq!(short.take(), Duration::ZERO);
    }

    #[test]
    fn control_messages_and_resume_across_shards() {
        use crate::core::producer::Producer;
        use corecast::fanout::{Consumer, Policy};
        let registry = Registry::new(2);
        let config = Arc::new(Config::default());
        let clock = Clock::new();
        let mesh = MeshBuilder::<ShardMsg, _>::full(2, 1024);
        let name = (0..)
            .map(|i| format!("r{i}"))
            .find(|n| owner_of(n, 2) == 0)
            .unwrap();
        let sdp = |sprop: &str| {
            corecast::sdp::parse(&format!(
                "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                 a=fmtp:96 packetization-mode=1;sprop-parameter-sets={sprop}\r\n"
            ))
            .unwrap()
        };
        let mut handles = vec![];
        for _ in 0..2 {
            let (registry, config, mesh, name) =
                (registry.clone(), config.clone(), mesh.clone(), name.clone());
            let h = LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(512 << 10)
                .spawn(move || async move {
                    let (tx, rx) = mesh.join().await.unwrap();
                    let shard = Shard::new(tx.peer_id(), registry.clone(), config, clock, tx);
                    shard.spawn_mesh_receivers(rx);
                    let wanted = Rc::new(Cell::new(0u32));
                    let w = wanted.clone();
                    shard.set_rooms(Rc::new(move |_, m| {
                        if matches!(m, RoomMsg::Wanted { .. }) {
                            w.set(w.get() + 1);
                        }
                    }));
                    if shard.id == 0 {
                        let (s, resumed) = shard
                            .claim_stream(&name, &sdp("Z0LAHtkA,aMuDyyA="), info())
                            .unwrap();
                        assert!(!resumed);
                        let mut p = Producer::new(s.clone(), &sdp("x"), info());
                        assert!(wait_until(|| s.remote.borrow()[1]).await, "no subscriber");
                        // The viewer's shard tells us it wants the stream.
                        assert!(wait_until(|| wanted.get() > 0).await, "no room message");
                        for i in 0..5u16 {
                            p.packet(&shard, 0, rtp(100 + i, 9000 * i as u32, 0xAAAA, i == 0));
                        }
                        shard.flush(&s);
                        // The publisher leaves with the viewer attached: the stream waits.
                        shard.leave_owned(&s);
                        assert!(!s.is_closed());
                        let (s2, resumed) = shard
                            .claim_stream(&name, &sdp("Z0LAHtkA,aMuDyyA="), info())
                            .unwrap();
                        assert!(resumed && Rc::ptr_eq(&s, &s2));
                        let mut p = Producer::new(s2.clone(), &sdp("x"), info()).resuming();
                        // Mid-GOP first: dropped until the keyframe.
                        p.packet(&shard, 0, rtp(7, 50, 0xBBBB, false));
                        for i in 0..3u16 {
                            p.packet(&shard, 0, rtp(8 + i, 100 + 3000 * i as u32, 0xBBBB, i == 0));
                        }
                        shard.flush(&s2);
                        glommio::timer::sleep(Duration::from_millis(200)).await;
                        // Another resolution's parameter sets: the waiting viewers end.
                        shard.leave_owned(&s2);
                        let (s3, resumed) = shard
                            .claim_stream(&name, &sdp("Z0LAKNkA,aMuDyyA="), info())
                            .unwrap();
                        assert!(!resumed && !Rc::ptr_eq(&s2, &s3) && s2.is_closed());
                        glommio::timer::sleep(Duration::from_millis(200)).await;
                        0
                    } else {
                        let s = loop {
                            match shard.attach_reader(&name) {
                                Ok(s) => break s,
                                Err(_) => glommio::timer::sleep(Duration::from_millis(1)).await,
                            }
                        };
                        shard.wanted_changed(&name);
                        let c =
                            RefCell::new(Consumer::join(&s.ring.borrow(), Policy::default(), 0, 0));
                        let got: RefCell<Vec<Rc<Packet>>> = RefCell::new(Vec::new());
                        let ended = wait_until(|| {
                            let ring = s.ring.borrow();
                            let mut c = c.borrow_mut();
                            while let Some(p) = c.next(&ring) {
                                got.borrow_mut().push(p.clone());
                            }
                            s.is_closed()
                        })
                        .await;
                        assert!(
                            ended,
                            "the viewer was not ended by the incompatible producer"
                        );
                        let got = got.into_inner();
                        let seqs: Vec<u16> = got.iter().map(|p| p.rtp_seq()).collect();
                        let ssrcs: Vec<u32> = got
                            .iter()
                            .map(|p| corecast::rtp::view(&p.data).unwrap().ssrc)
                            .collect();
                        // 5 from the first producer, 3 from the second renumbered after them.
                        assert_eq!(seqs, (100..108).collect::<Vec<_>>());
                        assert!(ssrcs.iter().all(|s| *s == 0xAAAA), "{ssrcs:x?}");
                        assert!(got[5].keyframe);
                        assert!(got[5].timestamp > got[4].timestamp);
                        got.len() as u64
                    }
                })
                .unwrap();
            handles.push(h);
        }
        let results: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results[1], 8);
    }

    /// The consumer policy on the real types: a real `LocalStream` fed by parse-once
    /// ingest, read by `fanout::Consumer`s: a viewer joining between keyframes starts at
    /// the last one; a viewer stalled for 3 s jumps to the newest keyframe and counts it;
    /// a producer epoch (a new producer resumed the stream) makes it wait for a keyframe.
    #[test]
    fn consumer_policy_on_a_real_stream() {
        use corecast::fanout::{Consumer, Policy};
        use corecast::ingest::Ingest;
        let sdp = corecast::sdp::parse("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")
            .unwrap();
        let mut ingest = Ingest::new(&sdp);
        let s = LocalStream::new(
            StreamId(1),
            "p",
            Generation(1),
            true,
            Bounds::items(4096),
            1,
        );
        let mut now = 0u64;
        let mut seq = 0u16;
        let mut push = |frames: u32, now: &mut u64| {
            for _ in 0..frames {
                *now += 40_000;
                // A keyframe every 25 frames (1 s), one packet per frame.
                let key = seq.is_multiple_of(25);
                let (p, _) = ingest
                    .packet(0, rtp(seq, 3600 * seq as u32, 0xAAAA, key), *now)
                    .unwrap();
                s.push(p);
                seq += 1;
            }
            s.tick.set(*now);
        };
        push(30, &mut now);
        let mut c = Consumer::join(&s.ring.borrow(), Policy::default(), 0, now);
        let read = |c: &mut Consumer| {
            let mut out: Vec<Rc<Packet>> = Vec::new();
            c.fill(&s.ring.borrow(), s.tick(), &mut out, usize::MAX);
            out.iter().map(|p| p.rtp_seq()).collect::<Vec<_>>()
        };
        // Joined between keyframes: from the last one (frame 25).
        assert_eq!(read(&mut c), (25..30).collect::<Vec<_>>());
        // Stalled 3 s: jumps to the newest keyframe (frame 100), the skip counted.
        push(75, &mut now);
        let got = read(&mut c);
        assert_eq!(got.first(), Some(&100));
        assert_eq!(c.skips(), (1, 70));
        // A new producer: the viewer waits for its first keyframe.
        push(3, &mut now);
        s.next_producer_epoch();
        assert!(c.observe_epoch(s.producer_epoch()));
        push(22, &mut now); // frames 108..=129: the keyframe is 125
        assert_eq!(read(&mut c), (125..130).collect::<Vec<_>>());
    }

    /// An entry is live only while the viewer stays parked with the entry's generation:
    /// after an unpark, an old entry stays stale even when the viewer parks again.
    #[test]
    fn parking_makes_older_entries_stale() {
        let p = Parking::default();
        assert!(!p.is_parked());
        let g1 = p.park();
        assert!(p.is_parked() && p.holds(g1));
        p.unpark();
        assert!(!p.is_parked() && !p.holds(g1));
        // A second unpark changes nothing.
        p.unpark();
        let g2 = p.park();
        assert_ne!(g1, g2);
        assert!(p.holds(g2) && !p.holds(g1));
    }

    /// The walk that prefetches ahead keeps `retain`'s order.
    #[test]
    fn notify_keeps_the_order_of_the_viewers_that_stay() {
        struct Viewer {
            id: u32,
            stay: bool,
            log: Rc<RefCell<Vec<u32>>>,
        }
        impl Direct for Viewer {
            fn on_data(&self, _generation: u64) -> bool {
                self.log.borrow_mut().push(self.id);
                self.stay
            }
        }
        let s = LocalStream::new(StreamId(1), "o", Generation(1), true, Bounds::items(16), 1);
        let log = Rc::new(RefCell::new(Vec::new()));
        let viewers: Vec<Rc<Viewer>> = (0..7)
            .map(|id| {
                Rc::new(Viewer {
                    id,
                    stay: id % 3 != 1,
                    log: log.clone(),
                })
            })
            .collect();
        for v in &viewers {
            let w = Rc::downgrade(v);
            s.park_direct(w, 0);
        }
        s.notify();
        assert_eq!(*log.borrow(), (0..7).collect::<Vec<_>>());
        log.borrow_mut().clear();
        s.notify();
        assert_eq!(*log.borrow(), vec![0, 2, 3, 5, 6]);
    }

    /// Parked viewers: each notify calls every entry once with its generation; one that
    /// declines leaves the list, one that stays is called again next time, one parked by an
    /// entry's own call (a viewer re-parking while the list is out) is kept for the next
    /// notify, and the entry of a viewer that is gone is dropped.
    #[test]
    fn notify_writes_parked_viewers_and_drops_the_ones_that_decline() {
        struct Viewer {
            calls: Cell<u32>,
            stay_for: u32,
            stream: std::rc::Weak<LocalStream>,
            parks_another: RefCell<Option<Rc<Viewer>>>,
        }
        impl Direct for Viewer {
            fn on_data(&self, generation: u64) -> bool {
                assert_eq!(generation, 7);
                self.calls.set(self.calls.get() + 1);
                if let Some(other) = self.parks_another.borrow_mut().take() {
                    let s = self.stream.upgrade().unwrap();
                    let w = Rc::downgrade(&other);
                    s.park_direct(w, 7);
                }
                self.calls.get() < self.stay_for
            }
        }
        let s = Rc::new(LocalStream::new(
            StreamId(1),
            "p",
            Generation(1),
            true,
            Bounds::items(16),
            1,
        ));
        let viewer = |stay_for, parks_another| {
            Rc::new(Viewer {
                calls: Cell::new(0),
                stay_for,
                stream: Rc::downgrade(&s),
                parks_another: RefCell::new(parks_another),
            })
        };
        let d = viewer(10, None);
        let (a, b, c) = (
            viewer(1, None),
            viewer(3, Some(d.clone())),
            viewer(10, None),
        );
        for v in [&a, &b, &c] {
            let w = Rc::downgrade(v);
            s.park_direct(w, 7);
        }
        s.notify();
        assert_eq!((a.calls.get(), b.calls.get(), c.calls.get()), (1, 1, 1));
        // `a` declined; `b` parked `d`, not called in the notify that parked it.
        assert_eq!(d.calls.get(), 0);
        assert_eq!(s.direct.borrow().len(), 3);
        s.notify();
        s.notify();
        assert_eq!((a.calls.get(), b.calls.get(), c.calls.get()), (1, 3, 3));
        assert_eq!(d.calls.get(), 2);
        assert_eq!(s.direct.borrow().len(), 2, "b declined at its third call");
        // `c` leaves: its entry goes at the next notify, `d` stays.
        drop(c);
        s.notify();
        assert_eq!(s.direct.borrow().len(), 1);
        assert_eq!(d.calls.get(), 3);
        assert!(!s.has_data(0));
        s.close();
        assert!(s.has_data(0));
    }
}
