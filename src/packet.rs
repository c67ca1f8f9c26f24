//! The unit of the data path: one received RTP packet, parsed once at ingest.
//!
//! Every consumer reads the metadata here instead of parsing the RTP header again, and
//! shares `data` by reference count (at most one copy at ingest, never one per viewer).

use bytes::Bytes;

/// One RTP packet as received (or produced by an internal source), with the metadata every
/// consumer needs. `data` is the whole RTP packet, header included, exactly as it is sent
/// to RTSP readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The whole RTP packet (header + payload): for network producers a copy packed with
    /// the stream's neighbouring packets ([`CopyChunk`], made by the ingest or by the
    /// receive path itself), never a slice of a larger receive buffer.
    pub data: Bytes,
    /// Index of the media section in the stream's SDP.
    pub track: u8,
    /// Sequence number widened to 64 bits on arrival.
    pub seq: u64,
    /// RTP timestamp widened to 64 bits on arrival.
    pub timestamp: u64,
    /// RTP marker bit.
    pub marker: bool,
    /// First packet of a random-access point of the stream (a video keyframe, or any
    /// packet of an audio-only stream): where a joining or resyncing reader may start.
    pub keyframe: bool,
    /// Arrival time, microseconds on the server's monotonic clock.
    pub arrival: u64,
    /// Offset of the RTP payload inside `data`.
    pub payload_offset: u16,
}

/// What holding one packet in a ring costs besides its bytes: the `Rc<Packet>` allocation
/// (counts + the struct), the ring slot and the allocator's headers of both allocations.
/// Counted against `fanout: ring_bytes`, so a stream of tiny packets is bounded too.
pub const HELD_OVERHEAD: usize = std::mem::size_of::<Packet>() + 16 + 24 + 32;

impl Packet {
    /// What holding this packet in a ring costs (see [`HELD_OVERHEAD`]). The payload is
    /// copied at ingest into the stream's own chunks, so its length is what it pins (plus
    /// at most two partly used chunks per stream).
    pub fn held_bytes(&self) -> usize {
        self.data.len() + HELD_OVERHEAD
    }

    /// The RTP sequence number as it is on the wire.
    pub fn rtp_seq(&self) -> u16 {
        self.seq as u16
    }

    /// The RTP timestamp as it is on the wire.
    pub fn rtp_timestamp(&self) -> u32 {
        self.timestamp as u32
    }

    /// The RTP payload: header and padding stripped. (Packets that are not RTP, such as a
    /// muxer's fragments, have `payload_offset` 0 and are returned whole.)
    pub fn payload(&self) -> &[u8] {
        let mut end = self.data.len();
        // RTP padding (the P bit): the last byte counts the padding bytes, itself included.
        if self.payload_offset >= 12 && self.data.first().is_some_and(|b| b & 0x20 != 0) {
            let pad = self.data.last().copied().unwrap_or(0) as usize;
            end = end.saturating_sub(pad).max(self.payload_offset as usize);
        }
        self.data
            .get(self.payload_offset as usize..end)
            .unwrap_or(&[])
    }
}

/// Copies of one producer's packets are packed in chunks of this size, in arrival order.
pub const COPY_CHUNK: usize = 32 * 1024;

/// Where a network producer's received packets are copied to, packed in arrival order in
/// [`COPY_CHUNK`] chunks (see [`Ingest::copy_payloads`](crate::ingest::Ingest::copy_payloads)
/// for why packed and why copied). A receive path that owns one copies each packet straight
/// out of its read buffer: one copy, and no reference count taken on the read buffer.
#[derive(Debug, Default)]
pub struct CopyChunk(bytes::BytesMut);

impl CopyChunk {
    /// A copy of `src`, sharing the current chunk with this producer's previous packets.
    pub fn copy(&mut self, src: &[u8]) -> bytes::BytesMut {
        if self.0.capacity() < src.len() {
            // The old chunk stays alive while its packets are held.
            self.0 = bytes::BytesMut::with_capacity(COPY_CHUNK.max(src.len()));
        }
        self.0.extend_from_slice(src);
        self.0.split()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_a_chunk_and_never_spill() {
        let mut c = CopyChunk::default();
        let a = c.copy(&[1; 1000]).freeze();
        let b = c.copy(&[2; 500]).freeze();
        assert_eq!(&a[..], &[1; 1000][..]);
        assert_eq!(&b[..], &[2; 500][..]);
        // Packed: the second copy follows the first in the same allocation.
        assert_eq!(a.as_ptr().wrapping_add(1000), b.as_ptr());
        // Larger than what is left (and than a chunk): a fresh allocation of its own size.
        let big = c.copy(&vec![3; COPY_CHUNK + 1]).freeze();
        assert_eq!(big.len(), COPY_CHUNK + 1);
        assert!(big.iter().all(|&x| x == 3));
        assert_eq!(&a[..], &[1; 1000][..]);
    }

    #[test]
    fn hot_struct_sizes() {
        // Printed so growth is noticed in review; the ring holds one of these per slot.
        println!("Packet: {} bytes", std::mem::size_of::<Packet>());
        assert!(std::mem::size_of::<Packet>() <= 72);
    }

    #[test]
    fn wire_values() {
        let p = Packet {
            data: Bytes::from_static(&[0x80, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xAA]),
            track: 0,
            seq: (1 << 16) + 1,
            timestamp: (1 << 32) + 2,
            marker: false,
            keyframe: false,
            arrival: 0,
            payload_offset: 12,
        };
        assert_eq!(p.rtp_seq(), 1);
        assert_eq!(p.rtp_timestamp(), 2);
        assert_eq!(p.payload(), &[0xAA]);
    }

    /// tools/fuzz ingest: the padding of a padded RTP packet is not payload.
    #[test]
    fn padding_is_not_payload() {
        let p = Packet {
            data: Bytes::from_static(&[0xA0, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xAA, 0xBB, 0, 2]),
            track: 0,
            seq: 1,
            timestamp: 2,
            marker: false,
            keyframe: false,
            arrival: 0,
            payload_offset: 12,
        };
        assert_eq!(p.payload(), &[0xAA, 0xBB]);
        let fragment = Packet {
            data: Bytes::from_static(&[0xFF, 1, 2, 3]),
            payload_offset: 0,
            ..p
        };
        assert_eq!(fragment.payload(), &[0xFF, 1, 2, 3]);
    }
}
