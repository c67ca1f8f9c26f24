//! RTSP server session: one per connection, sans-IO.
//!
//! The driver feeds parsed requests in with the current time and writes the returned
//! response; everything that needs the stream registry goes through the [`Host`] trait,
//! which the driver implements over the hub. Transitions the driver must act on (start
//! sending, start accepting media, stop) come back as [`Event`]s.

use super::message::{Method, Request, Response};
use super::transport::{self, Transport};
use super::url;
use crate::sdp::Sdp;

/// Methods this server answers, for `Public:`.
pub const PUBLIC_METHODS: &str =
    "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// How media of one track travels for this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackTransport {
    /// RTP and RTCP interleaved on the RTSP connection.
    Tcp { rtp_channel: u8, rtcp_channel: u8 },
    /// RTP and RTCP over UDP to/from the client's ports (the client address is the peer's).
    Udp { client_rtp: u16, client_rtcp: u16 },
}

/// One track set up in this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupTrack {
    /// Index of the media section in the stream's SDP.
    pub media_index: usize,
    pub transport: TrackTransport,
}

/// Where a PLAY starts, per track, for `RTP-Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpInfo {
    pub media_index: usize,
    pub seq: Option<u16>,
    pub rtptime: Option<u32>,
}

/// What the driver must do after a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start sending the stream to this client (PLAY accepted).
    Play,
    /// Start accepting media from this client (RECORD accepted).
    Record,
    /// Stop sending / receiving but keep the session (PAUSE).
    Pause,
    /// The session ended (TEARDOWN); media stops, the connection may stay open.
    Teardown,
}

/// The stream registry as seen by a session.
pub trait Host {
    /// The SDP served to readers of `path` (already rewritten for readers).
    fn describe(&mut self, path: &str, query: Option<&str>) -> Result<Sdp, u16>;
    /// Claim `path` for publishing with this SDP.
    fn announce(&mut self, path: &str, sdp: &Sdp) -> Result<(), u16>;
    /// This shard's UDP RTP/RTCP server ports, if UDP is available.
    fn udp_server_ports(&self) -> Option<(u16, u16)>;
    /// Start delivering; returns where each track starts.
    fn play(&mut self, path: &str, tracks: &[SetupTrack]) -> Result<Vec<RtpInfo>, u16>;
    /// Start accepting media for the announced stream.
    fn record(&mut self, path: &str, tracks: &[SetupTrack]) -> Result<(), u16>;
}

/// Session state (RFC 2326 appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Ready,
    Playing,
    Recording,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Play,
    Record,
}

/// One RTSP connection's session.
#[derive(Debug)]
pub struct ServerSession {
    session_id: String,
    timeout_secs: u64,
    state: State,
    mode: Option<Mode>,
    path: Option<String>,
    query: Option<String>,
    /// SDP of the stream this session reads or publishes.
    sdp: Option<Sdp>,
    tracks: Vec<SetupTrack>,
    has_session: bool,
    last_activity: u64,
}

impl ServerSession {
    /// `session_id` must be unguessable (the driver draws it); `now` in microseconds.
    pub fn new(session_id: String, timeout_secs: u64, now: u64) -> Self {
        ServerSession {
            session_id,
            timeout_secs,
            state: State::Init,
            mode: None,
            path: None,
            query: None,
            sdp: None,
            tracks: Vec::new(),
            has_session: false,
            last_activity: now,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    pub fn tracks(&self) -> &[SetupTrack] {
        &self.tracks
    }

    pub fn sdp(&self) -> Option<&Sdp> {
        self.sdp.as_ref()
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn is_publisher(&self) -> bool {
        self.mode == Some(Mode::Record)
    }

    /// Any traffic from the client (requests, interleaved RTCP, UDP RTCP) keeps it alive.
    pub fn touch(&mut self, now: u64) {
        self.last_activity = now;
    }

    /// True when the connection saw no traffic for the session timeout (with or without a
    /// session: an idle connection is closed too). Playing sessions are kept alive by
    /// their connection (players often send nothing); the driver exempts them.
    pub fn timed_out(&self, now: u64) -> bool {
        now.saturating_sub(self.last_activity) > self.timeout_secs * 1_000_000
    }

    /// Track (media index) and kind for an interleaved channel of this session.
    pub fn track_for_channel(&self, channel: u8) -> Option<(usize, bool)> {
        self.tracks.iter().find_map(|t| match t.transport {
            TrackTransport::Tcp { rtp_channel, .. } if rtp_channel == channel => {
                Some((t.media_index, false))
            }
            TrackTransport::Tcp { rtcp_channel, .. } if rtcp_channel == channel => {
                Some((t.media_index, true))
            }
            _ => None,
        })
    }

    /// Handles one request. The response always carries the request's CSeq.
    pub fn handle_request(
        &mut self,
        req: &Request,
        host: &mut dyn Host,
        now: u64,
    ) -> (Response, Option<Event>) {
        self.last_activity = now;
        let Some(cseq) = req.cseq() else {
            return (Response::new(400), None);
        };
        let (mut resp, event) = match self.dispatch(req, host) {
            Ok(r) => r,
            Err(status) => (Response::new(status), None),
        };
        resp.headers.insert("CSeq", cseq.to_string());
        resp.headers.insert("Server", "corecast");
        if self.has_session && resp.headers.get("Session").is_none() && resp.status < 300 {
            resp.headers.insert("Session", self.session_header());
        }
        (resp, event)
    }

    fn session_header(&self) -> String {
        format!("{};timeout={}", self.session_id, self.timeout_secs)
    }

    fn check_session(&self, req: &Request) -> Result<(), u16> {
        match req.headers.get("Session") {
            // The id may carry parameters (";timeout=..."); compare the id only.
            Some(v) => {
                let id = v.split(';').next().unwrap_or("").trim();
                if self.has_session && id == self.session_id {
                    Ok(())
                } else {
                    Err(454)
                }
            }
            // Some clients omit Session on PLAY/TEARDOWN over one connection; the session
            // is bound to the connection anyway, so accept that once one exists.
            None if self.has_session => Ok(()),
            None => Err(454),
        }
    }

    fn dispatch(
        &mut self,
        req: &Request,
        host: &mut dyn Host,
    ) -> Result<(Response, Option<Event>), u16> {
        match req.method {
            Method::Options => Ok((
                Response::new(200).with_header("Public", PUBLIC_METHODS),
                None,
            )),
            Method::GetParameter | Method::SetParameter => {
                if req.headers.get("Session").is_some() {
                    self.check_session(req)?;
                }
                Ok((Response::new(200), None))
            }
            Method::Describe => self.describe(req, host),
            Method::Announce => self.announce(req, host),
            Method::Setup => self.setup(req, host),
            Method::Play => self.play(req, host),
            Method::Record => self.record(req, host),
            Method::Pause => {
                self.check_session(req)?;
                match self.state {
                    State::Playing | State::Recording => {
                        self.state = State::Ready;
                        Ok((Response::new(200), Some(Event::Pause)))
                    }
                    State::Ready => Ok((Response::new(200), None)),
                    State::Init => Err(455),
                }
            }
            Method::Teardown => {
                self.check_session(req)?;
                let resp = Response::new(200).with_header("Session", self.session_header());
                self.reset();
                Ok((resp, Some(Event::Teardown)))
            }
            Method::Redirect | Method::Other(_) => Err(501),
        }
    }

    fn reset(&mut self) {
        self.state = State::Init;
        self.mode = None;
        self.path = None;
        self.query = None;
        self.tracks.clear();
        self.has_session = false;
        self.sdp = None;
    }

    fn content_base(uri: &str) -> String {
        // Without the query: clients append the control to it for SETUP.
        let base = uri.split('?').next().unwrap_or(uri);
        if base.ends_with('/') {
            base.to_string()
        } else {
            format!("{base}/")
        }
    }

    fn describe(
        &mut self,
        req: &Request,
        host: &mut dyn Host,
    ) -> Result<(Response, Option<Event>), u16> {
        let (path, query) = url::path_and_query(&req.uri);
        if path.is_empty() {
            return Err(404);
        }
        let sdp = host.describe(path, query)?;
        let body = sdp.write();
        if self.mode.is_none() {
            self.path = Some(path.to_string());
            self.query = query.map(str::to_string);
            self.sdp = Some(sdp);
        }
        Ok((
            Response::new(200)
                .with_header("Content-Base", Self::content_base(&req.uri))
                .with_body("application/sdp", body),
            None,
        ))
    }

    fn announce(
        &mut self,
        req: &Request,
        host: &mut dyn Host,
    ) -> Result<(Response, Option<Event>), u16> {
        if self.mode.is_some() {
            return Err(455);
        }
        if let Some(ct) = req.headers.get("Content-Type") {
            if !ct.trim().eq_ignore_ascii_case("application/sdp") {
                return Err(415);
            }
        }
        let (path, _) = url::path_and_query(&req.uri);
        if path.is_empty() {
            return Err(400);
        }
        let text = std::str::from_utf8(&req.body).map_err(|_| 400u16)?;
        let sdp = crate::sdp::parse(text).map_err(|_| 400u16)?;
        if sdp.medias.is_empty() {
            return Err(400);
        }
        host.announce(path, &sdp)?;
        self.path = Some(path.to_string());
        self.query = None;
        self.sdp = Some(sdp);
        self.mode = Some(Mode::Record);
        Ok((Response::new(200), None))
    }

    fn setup(
        &mut self,
        req: &Request,
        host: &mut dyn Host,
    ) -> Result<(Response, Option<Event>), u16> {
        if self.has_session {
            self.check_session(req)?;
        }
        if matches!(self.state, State::Playing | State::Recording) {
            // Adding tracks while media flows is not supported (RFC allows refusing).
            return Err(455);
        }
        let (full_path, query) = url::path_and_query(&req.uri);
        let header = req.headers.get("Transport").ok_or(461u16)?;
        let offered = transport::parse(header).map_err(|_| 461u16)?;

        // Which stream and which media section does the URI name?
        let media_index = match (&self.sdp, self.mode) {
            (Some(sdp), Some(Mode::Record)) => self.record_media_index(sdp, &req.uri, full_path)?,
            _ => {
                let (stream_path, track) = url::split_track(full_path);
                let stream_path = if stream_path.is_empty() {
                    full_path
                } else {
                    stream_path
                };
                if self.sdp.is_none() || self.path.as_deref() != Some(stream_path) {
                    if self.has_session {
                        // One session reads one stream.
                        return Err(459);
                    }
                    let sdp = host.describe(stream_path, query)?;
                    self.path = Some(stream_path.to_string());
                    self.query = query.map(str::to_string);
                    self.sdp = Some(sdp);
                }
                self.mode = Some(Mode::Play);
                let n = self.sdp.as_ref().map_or(0, |s| s.medias.len());
                let idx = track.unwrap_or(0) as usize;
                if idx >= n {
                    return Err(404);
                }
                idx
            }
        };

        let chosen = offered
            .into_iter()
            .find(|t| !t.multicast && (t.tcp || t.client_port.is_some()))
            .ok_or(461u16)?;
        let record = self.mode == Some(Mode::Record);
        let mut answer = Transport {
            profile: chosen.profile.clone(),
            tcp: chosen.tcp,
            mode_record: record,
            ..Transport::default()
        };
        let transport = if chosen.tcp {
            let (rtp, rtcp) = match chosen.interleaved {
                Some(pair) => pair,
                None => {
                    let base = (media_index as u8).wrapping_mul(2);
                    (base, base.wrapping_add(1))
                }
            };
            // A channel used by another track of this session would mix streams.
            if self
                .tracks
                .iter()
                .any(|t| t.media_index != media_index && matches!(t.transport, TrackTransport::Tcp { rtp_channel, rtcp_channel } if rtp_channel == rtp || rtcp_channel == rtcp || rtp_channel == rtcp || rtcp_channel == rtp))
            {
                return Err(461);
            }
            answer.interleaved = Some((rtp, rtcp));
            TrackTransport::Tcp {
                rtp_channel: rtp,
                rtcp_channel: rtcp,
            }
        } else {
            let (crtp, crtcp) = chosen.client_port.ok_or(461u16)?;
            let server = host.udp_server_ports().ok_or(461u16)?;
            answer.client_port = Some((crtp, crtcp));
            answer.server_port = Some(server);
            TrackTransport::Udp {
                client_rtp: crtp,
                client_rtcp: crtcp,
            }
        };
        self.tracks.retain(|t| t.media_index != media_index);
        self.tracks.push(SetupTrack {
            media_index,
            transport,
        });
        self.has_session = true;
        self.state = State::Ready;
        Ok((
            Response::new(200)
                .with_header("Transport", answer.to_string())
                .with_header("Session", self.session_header()),
            None,
        ))
    }

    fn record_media_index(&self, sdp: &Sdp, uri: &str, path: &str) -> Result<usize, u16> {
        if let Some(i) = sdp.media_index_for_control(uri) {
            return Ok(i);
        }
        if let Some(i) = sdp.media_index_for_control(path) {
            return Ok(i);
        }
        // A single-media publisher may SETUP the stream URL itself.
        if sdp.medias.len() == 1 {
            return Ok(0);
        }
        let (_, track) = url::split_track(path);
        match track {
            Some(t) if (t as usize) < sdp.medias.len() => Ok(t as usize),
            _ => Err(404),
        }
    }

    fn play(
        &mut self,
        req: &Request,
        host: &mut dyn Host,
    ) -> Result<(Response, Option<Event>), u16> {
        self.check_session(req)?;
        if self.mode != Some(Mode::Play) || self.tracks.is_empty() {
            return Err(455);
        }
        if self.state == State::Playing {
            // A repeated PLAY (e.g. a keepalive by some players) is harmless.
            return Ok((Response::new(200).with_header("Range", "npt=0.000-"), None));
        }
        let path = self.path.clone().ok_or(455u16)?;
        let infos = host.play(&path, &self.tracks)?;
        let base = Self::content_base(&req.uri);
        let rtp_info: Vec<String> = infos
            .iter()
            .map(|i| {
                let mut s = format!("url={base}trackID={}", i.media_index);
                if let Some(seq) = i.seq {
                    s.push_str(&format!(";seq={seq}"));
                }
                if let Some(t) = i.rtptime {
                    s.push_str(&format!(";rtptime={t}"));
                }
                s
            })
            .collect();
        self.state = State::Playing;
        let mut resp = Response::new(200).with_header("Range", "npt=0.000-");
        if !rtp_info.is_empty() {
            resp.headers.insert("RTP-Info", rtp_info.join(","));
        }
        Ok((resp, Some(Event::Play)))
    }

    fn record(
        &mut self,
        req: &Request,
        host: &mut dyn Host,
    ) -> Result<(Response, Option<Event>), u16> {
        self.check_session(req)?;
        if self.mode != Some(Mode::Record) || self.tracks.is_empty() {
            return Err(455);
        }
        if self.state == State::Recording {
            return Ok((Response::new(200), None));
        }
        let path = self.path.clone().ok_or(455u16)?;
        host.record(&path, &self.tracks)?;
        self.state = State::Recording;
        Ok((Response::new(200), Some(Event::Record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtsp::message::{parse, Message};
    use bytes::BytesMut;

    const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/1\r\na=control:streamid=1\r\n";

    #[derive(Default)]
    struct MockHost {
        announced: Vec<String>,
        played: Vec<Vec<SetupTrack>>,
        recorded: usize,
    }

    impl Host for MockHost {
        fn describe(&mut self, path: &str, _q: Option<&str>) -> Result<Sdp, u16> {
            if path == "cam" {
                Ok(crate::sdp::parse(SDP).unwrap().for_readers())
            } else {
                Err(404)
            }
        }
        fn announce(&mut self, path: &str, _sdp: &Sdp) -> Result<(), u16> {
            if path == "busy" {
                return Err(403);
            }
            self.announced.push(path.to_string());
            Ok(())
        }
        fn udp_server_ports(&self) -> Option<(u16, u16)> {
            Some((8000, 8001))
        }
        fn play(&mut self, _p: &str, tracks: &[SetupTrack]) -> Result<Vec<RtpInfo>, u16> {
            self.played.push(tracks.to_vec());
            Ok(tracks
                .iter()
                .map(|t| RtpInfo {
                    media_index: t.media_index,
                    seq: Some(7),
                    rtptime: Some(9),
                })
                .collect())
        }
        fn record(&mut self, _p: &str, _t: &[SetupTrack]) -> Result<(), u16> {
            self.recorded += 1;
            Ok(())
        }
    }

    fn req(text: &str) -> Request {
        let mut buf = BytesMut::from(text.as_bytes());
        match parse(&mut buf).unwrap().unwrap() {
            Message::Request(r) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn run(s: &mut ServerSession, h: &mut MockHost, text: &str) -> (Response, Option<Event>) {
        s.handle_request(&req(text), h, 0)
    }

    #[test]
    fn ffmpeg_play_over_tcp() {
        let mut h = MockHost::default();
        let mut s = ServerSession::new("abc".into(), 60, 0);
        let (r, _) = run(
            &mut s,
            &mut h,
            "OPTIONS rtsp://127.0.0.1:8554/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert!(r.headers.get("Public").unwrap().contains("DESCRIBE"));
        let (r, _) = run(&mut s, &mut h, "DESCRIBE rtsp://127.0.0.1:8554/cam RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers.get("Content-Base"),
            Some("rtsp://127.0.0.1:8554/cam/")
        );
        let body = std::str::from_utf8(&r.body).unwrap();
        assert!(body.contains("a=control:trackID=1"), "{body}");
        let (r, _) = run(&mut s, &mut h, "SETUP rtsp://127.0.0.1:8554/cam/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.headers.get("Session"), Some("abc;timeout=60"));
        assert!(r
            .headers
            .get("Transport")
            .unwrap()
            .contains("interleaved=0-1"));
        let (r, _) = run(&mut s, &mut h, "SETUP rtsp://127.0.0.1:8554/cam/trackID=1 RTSP/1.0\r\nCSeq: 4\r\nSession: abc\r\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n\r\n");
        assert_eq!(r.status, 200);
        let (r, ev) = run(&mut s, &mut h, "PLAY rtsp://127.0.0.1:8554/cam/ RTSP/1.0\r\nCSeq: 5\r\nSession: abc\r\nRange: npt=0.000-\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(ev, Some(Event::Play));
        assert_eq!(
            r.headers.get("RTP-Info"),
            Some("url=rtsp://127.0.0.1:8554/cam/trackID=0;seq=7;rtptime=9,url=rtsp://127.0.0.1:8554/cam/trackID=1;seq=7;rtptime=9")
        );
        assert_eq!(s.track_for_channel(2), Some((1, false)));
        assert_eq!(s.track_for_channel(3), Some((1, true)));
        assert_eq!(s.track_for_channel(9), None);
        let (r, ev) = run(
            &mut s,
            &mut h,
            "TEARDOWN rtsp://127.0.0.1:8554/cam/ RTSP/1.0\r\nCSeq: 6\r\nSession: abc\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(ev, Some(Event::Teardown));
        assert_eq!(s.state(), State::Init);
    }

    #[test]
    fn udp_setup_answers_server_ports() {
        let mut h = MockHost::default();
        let mut s = ServerSession::new("x".into(), 60, 0);
        let (r, _) = run(&mut s, &mut h, "SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n");
        assert_eq!(r.status, 200);
        let t = r.headers.get("Transport").unwrap();
        assert!(
            t.contains("client_port=5000-5001") && t.contains("server_port=8000-8001"),
            "{t}"
        );
        assert_eq!(
            s.tracks()[0].transport,
            TrackTransport::Udp {
                client_rtp: 5000,
                client_rtcp: 5001
            }
        );
    }

    #[test]
    fn publish_flow() {
        let mut h = MockHost::default();
        let mut s = ServerSession::new("p".into(), 60, 0);
        let announce = format!(
            "ANNOUNCE rtsp://127.0.0.1:8554/live RTSP/1.0\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
            SDP.len(),
            SDP
        );
        let (r, _) = run(&mut s, &mut h, &announce);
        assert_eq!(r.status, 200);
        assert_eq!(h.announced, vec!["live"]);
        let (r, _) = run(&mut s, &mut h, "SETUP rtsp://127.0.0.1:8554/live/streamid=1 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3;mode=record\r\n\r\n");
        assert_eq!(r.status, 200);
        assert!(r.headers.get("Transport").unwrap().contains("mode=record"));
        assert_eq!(s.tracks()[0].media_index, 1);
        let (r, _) = run(&mut s, &mut h, "SETUP rtsp://127.0.0.1:8554/live/streamid=0 RTSP/1.0\r\nCSeq: 4\r\nSession: p\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n");
        assert_eq!(r.status, 200);
        let (r, ev) = run(
            &mut s,
            &mut h,
            "RECORD rtsp://127.0.0.1:8554/live RTSP/1.0\r\nCSeq: 5\r\nSession: p\r\n\r\n",
        );
        assert_eq!((r.status, ev), (200, Some(Event::Record)));
        assert!(s.is_publisher());
        // PLAY on a publishing session is not valid in this state.
        let (r, _) = run(
            &mut s,
            &mut h,
            "PLAY rtsp://127.0.0.1:8554/live RTSP/1.0\r\nCSeq: 6\r\nSession: p\r\n\r\n",
        );
        assert_eq!(r.status, 455);
    }

    #[test]
    fn errors() {
        let mut h = MockHost::default();
        let mut s = ServerSession::new("e".into(), 60, 0);
        let (r, _) = run(
            &mut s,
            &mut h,
            "DESCRIBE rtsp://h/nope RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        );
        assert_eq!(r.status, 404);
        assert_eq!(r.headers.get("CSeq"), Some("1"));
        let (r, _) = run(&mut s, &mut h, "DESCRIBE rtsp://h/cam RTSP/1.0\r\n\r\n");
        assert_eq!(r.status, 400, "CSeq is required");
        let (r, _) = run(
            &mut s,
            &mut h,
            "PLAY rtsp://h/cam RTSP/1.0\r\nCSeq: 2\r\n\r\n",
        );
        assert_eq!(r.status, 454, "PLAY without a session");
        let (r, _) = run(
            &mut s,
            &mut h,
            "SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n\r\n",
        );
        assert_eq!(r.status, 461, "no Transport");
        let (r, _) = run(&mut s, &mut h, "SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 4\r\nTransport: RTP/AVP;multicast\r\n\r\n");
        assert_eq!(r.status, 461, "multicast not offered");
        let (r, _) = run(&mut s, &mut h, "SETUP rtsp://h/cam/trackID=5 RTSP/1.0\r\nCSeq: 5\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n");
        assert_eq!(r.status, 404, "no such track");
        let (r, _) = run(&mut s, &mut h, "SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 6\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n");
        assert_eq!(r.status, 200);
        let (r, _) = run(
            &mut s,
            &mut h,
            "PLAY rtsp://h/cam RTSP/1.0\r\nCSeq: 7\r\nSession: wrong\r\n\r\n",
        );
        assert_eq!(r.status, 454);
        let (r, _) = run(
            &mut s,
            &mut h,
            "FOO rtsp://h/cam RTSP/1.0\r\nCSeq: 8\r\n\r\n",
        );
        assert_eq!(r.status, 501);
        let (r, _) = run(&mut s, &mut h, "ANNOUNCE rtsp://h/busy RTSP/1.0\r\nCSeq: 9\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n");
        assert_eq!(r.status, 455, "already a reader session");
        let mut s2 = ServerSession::new("f".into(), 60, 0);
        let body = "garbage";
        let (r, _) = run(&mut s2, &mut h, &format!("ANNOUNCE rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        assert_eq!(r.status, 400);
    }

    #[test]
    fn timeout_uses_time_input() {
        let mut h = MockHost::default();
        let mut s = ServerSession::new("t".into(), 60, 0);
        assert!(s.timed_out(1_000_000_000), "idle connections time out too");
        s.handle_request(&req("SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n"), &mut h, 10);
        assert!(!s.timed_out(60_000_000));
        assert!(s.timed_out(60_000_011));
        s.touch(60_000_000);
        assert!(!s.timed_out(100_000_000));
    }
}
