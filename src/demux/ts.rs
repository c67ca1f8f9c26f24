//! MPEG-TS demultiplexer (ISO/IEC 13818-1): 188-byte packets → PAT → PMT → PES with PTS.
//!
//! Strict about structure (CRC-checked PSI, continuity counters, PES start codes) but
//! tolerant the way real encoders need: a lost sync byte is found again, and a broken PES is
//! dropped and counted instead of ending the stream. Only the first program of the PAT is
//! followed; exec sources carry one.

use bytes::{Bytes, BytesMut};

pub(crate) const PACKET_LEN: usize = 188;
pub(crate) const SYNC: u8 = 0x47;
/// Largest PES packet reassembled; a bigger one is dropped and counted.
pub(crate) const MAX_PES: usize = 4 << 20;
/// Most elementary streams followed; further PMT entries are ignored.
pub(crate) const MAX_STREAMS: usize = 16;

pub(crate) const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
pub(crate) const STREAM_TYPE_H264: u8 = 0x1b;
pub(crate) const STREAM_TYPE_H265: u8 = 0x24;

const PAT_PID: u16 = 0;
const NULL_PID: u16 = 0x1fff;
const TABLE_PAT: u8 = 0x00;
const TABLE_PMT: u8 = 0x02;
/// PAT and PMT section_length is at most 1021 (2.4.4.3, 2.4.4.8), plus the 3 bytes before it.
const MAX_SECTION: usize = 3 + 1021;
/// PTS is a 33-bit counter of a 90 kHz clock.
const PTS_WRAP: u64 = 1 << 33;

/// One entry of the PMT's elementary stream loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EsInfo {
    pub pid: u16,
    pub stream_type: u8,
}

#[derive(Debug)]
pub(crate) enum TsEvent {
    /// The program's elementary streams: the first PMT, or a new version listing other streams.
    Program(Vec<EsInfo>),
    /// A complete PES payload. `pts` is widened to 64 bits across 33-bit wraps (one widening
    /// for the whole program, so streams stay comparable).
    Pes {
        pid: u16,
        pts: Option<u64>,
        payload: Bytes,
    },
}

/// Counters of what was repaired or thrown away.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TsStats {
    /// Sync byte missing where a packet should start; scanning found sync again later.
    pub sync_losses: u64,
    /// Continuity counter jumps on a followed PID.
    pub cc_errors: u64,
    /// PES packets dropped: cut by a CC gap or lost sync, oversize, truncated, malformed.
    pub dropped_pes: u64,
    /// Packets with transport_error_indicator, scrambling, or a malformed adaptation field.
    pub bad_packets: u64,
    /// PSI sections with a bad CRC or layout.
    pub bad_sections: u64,
}

#[derive(Debug, Default)]
pub(crate) struct TsDemuxer {
    /// Bytes not yet consumed as whole packets (at most two packets' worth between pushes).
    buf: Vec<u8>,
    synced: bool,
    pat: Section,
    /// PMT PID and program number chosen from the PAT.
    program: Option<(u16, u16)>,
    pmt: Section,
    streams: Vec<EsInfo>,
    /// One per entry of `streams`.
    pes: Vec<Pes>,
    pts: PtsExtender,
    pub stats: TsStats,
}

impl TsDemuxer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held for reassembly (partial packet plus partial PES packets).
    pub fn pending(&self) -> usize {
        self.buf.len() + self.pes.iter().map(|p| p.buf.len()).sum::<usize>()
    }

    /// Drop everything buffered, as after lost sync.
    pub fn reset_buffers(&mut self) {
        self.buf = Vec::new();
        self.synced = false;
        self.lose_partials();
    }

    pub fn push(&mut self, data: &[u8], out: &mut Vec<TsEvent>) {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            if !self.synced {
                // Sync is two sync bytes a packet apart, so one stray 0x47 is not trusted.
                let end = buf.len().saturating_sub(PACKET_LEN);
                match (pos..end).find(|&i| buf[i] == SYNC && buf[i + PACKET_LEN] == SYNC) {
                    Some(i) => {
                        pos = i;
                        self.synced = true;
                    }
                    None => {
                        // Keep only what could still start a sync pair.
                        pos = pos.max(end);
                        break;
                    }
                }
            }
            let Some(packet) = buf.get(pos..pos + PACKET_LEN) else {
                break;
            };
            if packet[0] != SYNC {
                tracing::debug!("mpeg-ts: lost sync, scanning for the next packet");
                self.stats.sync_losses += 1;
                self.synced = false;
                self.lose_partials();
                continue;
            }
            self.packet(packet, out);
            pos += PACKET_LEN;
        }
        buf.drain(..pos);
        self.buf = buf;
    }

    /// End of input: an unbounded PES still open is complete.
    pub fn finish(&mut self, out: &mut Vec<TsEvent>) {
        for i in 0..self.pes.len() {
            self.end_pes(i, out);
        }
    }

    fn lose_partials(&mut self) {
        for pes in &mut self.pes {
            if pes.active {
                self.stats.dropped_pes += 1;
            }
            pes.reset();
        }
        self.pat.reset();
        self.pmt.reset();
    }

    fn packet(&mut self, p: &[u8], out: &mut Vec<TsEvent>) {
        // transport_error_indicator: even the PID may be wrong, so drop the packet; the next
        // packet's continuity counter tells the right PID what it lost.
        if p[1] & 0x80 != 0 {
            self.stats.bad_packets += 1;
            return;
        }
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let scrambled = p[3] & 0xc0 != 0;
        let afc = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0f;
        if pid == NULL_PID {
            return;
        }
        let mut start = 4;
        let mut discontinuity = false;
        if afc & 0x02 != 0 {
            let len = usize::from(p[4]);
            // 183 fills a packet without payload; with payload at least one byte must remain.
            let max = if afc & 0x01 != 0 { 182 } else { 183 };
            if len > max {
                self.stats.bad_packets += 1;
                return;
            }
            discontinuity = len > 0 && p[5] & 0x80 != 0;
            start = 5 + len;
        }
        if afc & 0x01 == 0 {
            // No payload (or reserved afc 0): the continuity counter does not advance.
            return;
        }
        if scrambled {
            self.stats.bad_packets += 1;
            return;
        }
        let payload = &p[start..];
        if pid == PAT_PID {
            if !self.psi_continuity(true, cc, discontinuity) {
                return;
            }
            let mut sections = Vec::new();
            self.pat.push(payload, pusi, &mut sections);
            for s in sections {
                self.on_pat(&s);
            }
        } else if self.program.is_some_and(|(pmt_pid, _)| pmt_pid == pid) {
            if !self.psi_continuity(false, cc, discontinuity) {
                return;
            }
            let mut sections = Vec::new();
            self.pmt.push(payload, pusi, &mut sections);
            for s in sections {
                self.on_pmt(&s, out);
            }
        } else if let Some(i) = self.streams.iter().position(|s| s.pid == pid) {
            match check_cc(&mut self.pes[i].cc, cc, discontinuity) {
                Continuity::Duplicate => return,
                Continuity::Gap => {
                    tracing::debug!(pid, "mpeg-ts: continuity counter gap");
                    self.stats.cc_errors += 1;
                    if self.pes[i].active {
                        self.stats.dropped_pes += 1;
                        self.pes[i].reset();
                    }
                }
                Continuity::Ok => {}
            }
            self.pes_payload(i, payload, pusi, out);
        }
    }

    /// Continuity check for the PAT (`pat`) or PMT PID; a gap loses the section in progress.
    /// Returns whether the payload should be used.
    fn psi_continuity(&mut self, pat: bool, cc: u8, discontinuity: bool) -> bool {
        let section = if pat { &mut self.pat } else { &mut self.pmt };
        match check_cc(&mut section.cc, cc, discontinuity) {
            Continuity::Ok => true,
            Continuity::Duplicate => false,
            Continuity::Gap => {
                self.stats.cc_errors += 1;
                section.reset();
                true
            }
        }
    }

    fn on_pat(&mut self, s: &[u8]) {
        let Some(body) = psi_body(s, TABLE_PAT) else {
            self.stats.bad_sections += 1;
            return;
        };
        let Some(body) = body else { return };
        // Program 0 is the network PID, not a program.
        let first = body
            .chunks_exact(4)
            .map(|e| (u16::from_be_bytes([e[0], e[1]]), be13(e[2], e[3])))
            .find(|&(number, _)| number != 0);
        if let Some((number, pmt_pid)) = first {
            if self.program != Some((pmt_pid, number)) {
                self.program = Some((pmt_pid, number));
                self.pmt = Section::default();
            }
        }
    }

    fn on_pmt(&mut self, s: &[u8], out: &mut Vec<TsEvent>) {
        let Some((_, program_number)) = self.program else {
            return;
        };
        let Some(body) = psi_body(s, TABLE_PMT) else {
            self.stats.bad_sections += 1;
            return;
        };
        let Some(body) = body else { return };
        if u16::from_be_bytes([s[3], s[4]]) != program_number {
            return;
        }
        let Some(streams) = parse_es_loop(body) else {
            self.stats.bad_sections += 1;
            return;
        };
        if streams == self.streams {
            return;
        }
        // PES in progress on PIDs that stay keep going; others are gone.
        let mut pes: Vec<Pes> = streams.iter().map(|_| Pes::default()).collect();
        for (i, es) in streams.iter().enumerate() {
            if let Some(old) = self.streams.iter().position(|o| o.pid == es.pid) {
                pes[i] = std::mem::take(&mut self.pes[old]);
            }
        }
        self.pes = pes;
        self.streams = streams.clone();
        out.push(TsEvent::Program(streams));
    }

    fn pes_payload(&mut self, i: usize, payload: &[u8], pusi: bool, out: &mut Vec<TsEvent>) {
        if pusi {
            self.end_pes(i, out);
            self.pes[i].active = true;
        } else if !self.pes[i].active {
            return;
        }
        let pes = &mut self.pes[i];
        if pes.buf.len() + payload.len() > MAX_PES {
            tracing::debug!(
                pid = self.streams[i].pid,
                "mpeg-ts: PES over limit, dropped"
            );
            self.stats.dropped_pes += 1;
            pes.reset();
            return;
        }
        pes.buf.extend_from_slice(payload);
        if pes.buf.len() >= 6 && pes.declared.is_none() {
            if !pes.buf.starts_with(&[0, 0, 1]) {
                self.stats.dropped_pes += 1;
                pes.reset();
                return;
            }
            // 0 means unbounded (video): the PES ends where the next one starts.
            let len = usize::from(u16::from_be_bytes([pes.buf[4], pes.buf[5]]));
            pes.declared = Some((len != 0).then_some(6 + len));
        }
        if let Some(Some(total)) = pes.declared {
            if pes.buf.len() >= total {
                pes.buf.truncate(total);
                self.emit_pes(i, out);
            }
        }
    }

    /// Close the PES in progress on stream `i`: emit it if unbounded, drop it if it was
    /// bounded (its declared length never arrived).
    fn end_pes(&mut self, i: usize, out: &mut Vec<TsEvent>) {
        let pes = &mut self.pes[i];
        if !pes.active {
            return;
        }
        if pes.declared == Some(None) {
            self.emit_pes(i, out);
        } else {
            self.stats.dropped_pes += 1;
            pes.reset();
        }
    }

    fn emit_pes(&mut self, i: usize, out: &mut Vec<TsEvent>) {
        let pid = self.streams[i].pid;
        let data = self.pes[i].buf.split().freeze();
        self.pes[i].reset();
        match parse_pes(&data) {
            Some((pts, range)) => {
                let pts = pts.map(|p| self.pts.extend(p));
                out.push(TsEvent::Pes {
                    pid,
                    pts,
                    payload: data.slice(range),
                });
            }
            None => self.stats.dropped_pes += 1,
        }
    }
}

/// Reassembly state of one elementary stream.
#[derive(Debug, Default)]
struct Pes {
    buf: BytesMut,
    /// Collecting a PES (a payload_unit_start was seen and nothing broke since).
    active: bool,
    /// Once the 6-byte PES prefix is in: `Some(Some(total length))`, or `Some(None)` when
    /// PES_packet_length is 0 (unbounded).
    declared: Option<Option<usize>>,
    cc: Option<u8>,
}

impl Pes {
    fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
        self.declared = None;
    }
}

/// PSI section reassembly for one PID (sections may span packets, several may share one).
#[derive(Debug, Default)]
struct Section {
    buf: Vec<u8>,
    active: bool,
    cc: Option<u8>,
}

impl Section {
    fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }

    fn push(&mut self, payload: &[u8], pusi: bool, done: &mut Vec<Vec<u8>>) {
        if !pusi {
            if self.active {
                self.extend(payload, done);
            }
            return;
        }
        // pointer_field: bytes finishing the previous section come first.
        let Some((&pointer, tail)) = payload.split_first() else {
            return self.reset();
        };
        let Some((previous, mut rest)) = tail.split_at_checked(usize::from(pointer)) else {
            return self.reset();
        };
        if self.active {
            self.extend(previous, done);
        }
        // 0xff is stuffing after the last section in the packet.
        while rest.first().is_some_and(|&b| b != 0xff) {
            self.buf.clear();
            self.active = true;
            rest = self.extend(rest, done);
            if self.active {
                return;
            }
        }
        self.reset();
    }

    /// Append bytes to the section being collected; returns what follows it once complete.
    fn extend<'a>(&mut self, mut data: &'a [u8], done: &mut Vec<Vec<u8>>) -> &'a [u8] {
        if self.buf.len() < 3 {
            let take = (3 - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() < 3 {
                return data;
            }
        }
        let total = 3 + usize::from(be12(self.buf[1], self.buf[2]));
        if total > MAX_SECTION {
            self.reset();
            return &[];
        }
        let take = (total - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == total {
            done.push(std::mem::take(&mut self.buf));
            self.active = false;
        }
        &data[take..]
    }
}

/// Check a long-form PSI section (table id, syntax bit, CRC) and return the bytes between
/// its 8-byte header and the CRC. `Some(None)` for a valid section that is not yet current.
fn psi_body(s: &[u8], table_id: u8) -> Option<Option<&[u8]>> {
    if s.len() < 12 || s[0] != table_id || s[1] & 0x80 == 0 || crc32_mpeg2(s) != 0 {
        return None;
    }
    if s[5] & 0x01 == 0 {
        return Some(None);
    }
    Some(Some(&s[8..s.len() - 4]))
}

/// The PMT body after the fixed header: PCR PID, program info, then the ES loop.
fn parse_es_loop(body: &[u8]) -> Option<Vec<EsInfo>> {
    let [_, _, pil_hi, pil_lo, rest @ ..] = body else {
        return None;
    };
    let mut rest = rest.get(usize::from(be12(*pil_hi, *pil_lo))..)?;
    let mut streams = Vec::new();
    while !rest.is_empty() {
        let [stream_type, pid_hi, pid_lo, len_hi, len_lo, tail @ ..] = rest else {
            return None;
        };
        let pid = be13(*pid_hi, *pid_lo);
        rest = tail.get(usize::from(be12(*len_hi, *len_lo))..)?;
        if streams.len() < MAX_STREAMS && !streams.iter().any(|s: &EsInfo| s.pid == pid) {
            streams.push(EsInfo {
                pid,
                stream_type: *stream_type,
            });
        }
    }
    Some(streams)
}

/// PTS and payload range of a complete PES packet, or None if its header is malformed.
fn parse_pes(data: &[u8]) -> Option<(Option<u64>, std::ops::Range<usize>)> {
    let [0, 0, 1, stream_id, _, _, rest @ ..] = data else {
        return None;
    };
    // Streams without the optional PES header (2.4.3.7): map, padding, private_stream_2,
    // ECM, EMM, DSM-CC, H.222.1 type E, directory.
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return Some((None, 6..data.len()));
    }
    let [flags1, flags2, header_len, header @ ..] = rest else {
        return None;
    };
    if flags1 & 0xc0 != 0x80 {
        return None;
    }
    let header_len = usize::from(*header_len);
    if header_len > header.len() {
        return None;
    }
    let pts = match (flags2 >> 6, header) {
        (2 | 3, [a, b, c, d, e, ..]) => Some(
            (u64::from(a >> 1 & 0x07) << 30)
                | (u64::from(*b) << 22)
                | (u64::from(c >> 1) << 15)
                | (u64::from(*d) << 7)
                | u64::from(e >> 1),
        ),
        (2 | 3, _) => return None,
        _ => None,
    };
    Some((pts, 9 + header_len..data.len()))
}

/// Widens 33-bit PTS values to u64 by choosing the value closest to the previous one, so
/// B-frame reordering and the 26.5-hour wrap both come out right.
#[derive(Debug, Default)]
struct PtsExtender {
    last: Option<u64>,
}

impl PtsExtender {
    fn extend(&mut self, pts: u64) -> u64 {
        let pts = pts & (PTS_WRAP - 1);
        let value = match self.last {
            // Start one wrap up so an earlier (reordered) PTS cannot underflow.
            None => PTS_WRAP + pts,
            Some(last) => {
                let forward = pts.wrapping_sub(last) & (PTS_WRAP - 1);
                if forward <= PTS_WRAP / 2 {
                    last + forward
                } else {
                    last.checked_sub(PTS_WRAP - forward)
                        .unwrap_or(last + forward)
                }
            }
        };
        self.last = Some(value);
        value
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Continuity {
    Ok,
    /// Same counter again: 13818-1 allows one duplicate packet, whose payload is skipped.
    Duplicate,
    Gap,
}

fn check_cc(last: &mut Option<u8>, cc: u8, discontinuity: bool) -> Continuity {
    let result = match *last {
        _ if discontinuity => Continuity::Ok,
        None => Continuity::Ok,
        Some(l) if l == cc => Continuity::Duplicate,
        Some(l) if (l + 1) & 0x0f == cc => Continuity::Ok,
        Some(_) => Continuity::Gap,
    };
    *last = Some(cc);
    result
}

fn be12(hi: u8, lo: u8) -> u16 {
    (u16::from(hi & 0x0f) << 8) | u16::from(lo)
}

fn be13(hi: u8, lo: u8) -> u16 {
    (u16::from(hi & 0x1f) << 8) | u16::from(lo)
}

/// CRC-32/MPEG-2 (poly 0x04c11db7, init all ones, no reflection, no final xor). Over a
/// whole section including its CRC field the result is 0.
pub(super) fn crc32_mpeg2(data: &[u8]) -> u32 {
    static TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = (i as u32) << 24;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04c1_1db7
                } else {
                    crc << 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    data.iter().fold(0xffff_ffff, |crc, &b| {
        (crc << 8) ^ TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static H264_AAC: &[u8] = include_bytes!("fixtures/h264_aac.ts");

    fn demux_all(data: &[u8], chunk: usize) -> (Vec<TsEvent>, TsStats) {
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            d.push(c, &mut out);
        }
        d.finish(&mut out);
        (out, d.stats)
    }

    fn pes_summary(events: &[TsEvent]) -> Vec<(u16, Option<u64>, usize)> {
        events
            .iter()
            .filter_map(|e| match e {
                TsEvent::Pes { pid, pts, payload } => Some((*pid, *pts, payload.len())),
                TsEvent::Program(_) => None,
            })
            .collect()
    }

    #[test]
    fn crc_of_known_section() {
        // The PAT from the fixture, CRC included.
        let pat = &H264_AAC[188 + 5..188 + 5 + 16];
        assert_eq!(pat[0], TABLE_PAT);
        assert_eq!(crc32_mpeg2(pat), 0);
        assert_eq!(
            crc32_mpeg2(&pat[..12]),
            u32::from_be_bytes(pat[12..16].try_into().unwrap())
        );
    }

    #[test]
    fn fixture_program_and_pes() {
        let (events, stats) = demux_all(H264_AAC, 188 * 7);
        assert_eq!(stats, TsStats::default());
        let TsEvent::Program(streams) = &events[0] else {
            panic!("first event is the program");
        };
        assert_eq!(
            streams,
            &[
                EsInfo {
                    pid: 0x100,
                    stream_type: STREAM_TYPE_H264
                },
                EsInfo {
                    pid: 0x101,
                    stream_type: STREAM_TYPE_AAC_ADTS
                },
            ]
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, TsEvent::Program(_)))
                .count(),
            1
        );
        let pes = pes_summary(&events);
        let video: Vec<_> = pes.iter().filter(|p| p.0 == 0x100).collect();
        assert_eq!(video.len(), 50);
        for pair in video.windows(2) {
            assert_eq!(pair[1].1.unwrap() - pair[0].1.unwrap(), 3600);
        }
        assert!(pes.iter().all(|p| p.1.is_some() && p.2 > 0));
        // ffprobe: first video PTS 128090 (1.4231 s with the 1.4 s mpegts offset).
        assert_eq!(video[0].1, Some(PTS_WRAP + 128_090));
    }

    #[test]
    fn chunking_does_not_matter() {
        let reference = pes_summary(&demux_all(H264_AAC, H264_AAC.len()).0);
        for chunk in [1, 187, 188, 189, 1000] {
            assert_eq!(
                pes_summary(&demux_all(H264_AAC, chunk).0),
                reference,
                "{chunk}"
            );
        }
    }

    #[test]
    fn resync_after_garbage() {
        let mut data = H264_AAC[..188 * 100].to_vec();
        // Garbage including a lone sync byte inside a packet run.
        let junk = [0x47, 1, 2, 3, 0x47, 9, 9];
        data.splice(188 * 50..188 * 50, junk);
        data.extend_from_slice(&H264_AAC[188 * 100..]);
        let (events, stats) = demux_all(&data, 500);
        assert_eq!(stats.sync_losses, 1);
        let clean = pes_summary(&demux_all(H264_AAC, 500).0);
        let got = pes_summary(&events);
        // One or two PES (those in progress at the break) are lost, the rest survive.
        assert!(
            got.len() + 3 >= clean.len() && got.len() < clean.len(),
            "{} vs {}",
            got.len(),
            clean.len()
        );
        assert_eq!(got.last(), clean.last());
    }

    #[test]
    fn cc_gap_drops_partial_pes() {
        // Remove one packet carrying video in the middle of a PES.
        let packets: Vec<&[u8]> = H264_AAC.chunks(PACKET_LEN).collect();
        let victim = (30..packets.len())
            .find(|&i| be13(packets[i][1], packets[i][2]) == 0x100 && packets[i][1] & 0x40 == 0)
            .unwrap();
        let data: Vec<u8> = packets
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != victim)
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        let (events, stats) = demux_all(&data, 188);
        assert_eq!(stats.cc_errors, 1);
        assert_eq!(stats.dropped_pes, 1);
        let video = pes_summary(&events).iter().filter(|p| p.0 == 0x100).count();
        assert_eq!(video, 49);
    }

    #[test]
    fn pts_extension_wraps() {
        let mut e = PtsExtender::default();
        let a = e.extend(PTS_WRAP - 3600);
        assert_eq!(e.extend(0), a + 3600);
        assert_eq!(e.extend(PTS_WRAP - 1800), a + 1800); // reordered B-frame
        assert_eq!(e.extend(3600), a + 7200);
    }

    #[test]
    fn sections_split_and_stuffed() {
        let pat = &H264_AAC[188 + 5..188 + 5 + 16];
        let mut s = Section::default();
        let mut done = Vec::new();
        // Section split over two packets with the pointer field at 0.
        let mut first = vec![0];
        first.extend_from_slice(&pat[..5]);
        s.push(&first, true, &mut done);
        assert!(done.is_empty());
        s.push(&pat[5..], false, &mut done);
        assert_eq!(done, vec![pat.to_vec()]);
        // Two sections in one payload, then stuffing; a bogus pointer resets.
        done.clear();
        let mut two = vec![0];
        two.extend_from_slice(pat);
        two.extend_from_slice(pat);
        two.extend_from_slice(&[0xff; 10]);
        s.push(&two, true, &mut done);
        assert_eq!(done.len(), 2);
        s.push(&[200, 1, 2], true, &mut done);
        assert!(!s.active);
        assert_eq!(psi_body(pat, TABLE_PMT), None);
        let mut bad = pat.to_vec();
        bad[9] ^= 1;
        assert_eq!(psi_body(&bad, TABLE_PAT), None);
    }

    #[test]
    fn malformed_pes_headers() {
        assert_eq!(parse_pes(&[0, 0, 1]), None);
        assert_eq!(
            parse_pes(&[0, 0, 2, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1]),
            None
        );
        // PTS flag but header too short for it.
        assert_eq!(
            parse_pes(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 2, 0x21, 0]),
            None
        );
        assert_eq!(parse_pes(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 9, 0x21]), None);
        assert_eq!(parse_pes(&[0, 0, 1, 0xe0, 0, 0, 0x40, 0, 0]), None);
        assert_eq!(
            parse_pes(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0, 0, 7]),
            Some((None, 9..10))
        );
        assert_eq!(parse_pes(&[0, 0, 1, 0xbe, 0, 1, 0xff]), Some((None, 6..7)));
        // PTS 1 with marker bits.
        let p = [0, 0, 1, 0xc0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 3, 0xaa];
        assert_eq!(parse_pes(&p), Some((Some(1), 14..15)));
    }
}
