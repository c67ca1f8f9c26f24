//! STUN messages (RFC 8489) as ICE uses them (RFC 8445 §7): parse a datagram into a borrowed
//! view, build binding responses and requests into the caller's buffer.
//!
//! Only what an ICE-lite answerer and a TURN client need is understood: USERNAME,
//! MESSAGE-INTEGRITY (HMAC-SHA1, short- and long-term credentials), FINGERPRINT,
//! XOR-MAPPED-ADDRESS, PRIORITY, USE-CANDIDATE, ICE-CONTROLLING/CONTROLLED, ERROR-CODE,
//! SOFTWARE, UNKNOWN-ATTRIBUTES, and TURN's (RFC 8656) XOR-RELAYED-ADDRESS,
//! XOR-PEER-ADDRESS, DATA, LIFETIME, REQUESTED-TRANSPORT, REALM, NONCE, CHANNEL-NUMBER.
//! Other comprehension-optional attributes are skipped; other comprehension-required ones
//! are reported in [`Message::unknown_required`] so the caller can answer 420.
//!
//! Parsing never allocates and never panics: every length is checked against the datagram.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ring::hmac;

/// The fixed value in every RFC 5389+ STUN header.
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
/// STUN header: type (2), length (2), cookie (4), transaction id (12).
pub const HEADER_LEN: usize = 20;
/// The only method ICE uses.
pub const METHOD_BINDING: u16 = 0x001;

/// Attribute types (RFC 8489 §18.3, RFC 8445 §16.1).
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000a;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    // TURN (RFC 8656 §18) and long-term credentials (RFC 8489 §14.9, §14.10).
    pub const CHANNEL_NUMBER: u16 = 0x000c;
    pub const LIFETIME: u16 = 0x000d;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001a;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802a;
}

/// XORed into the CRC-32 of a message to make FINGERPRINT (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// MESSAGE-INTEGRITY value: an HMAC-SHA1.
const INTEGRITY_LEN: usize = 20;
/// RFC 8489 §14.3: USERNAME is less than 513 bytes.
pub const MAX_USERNAME: usize = 512;
/// RFC 8489 §14.8 and §14.10: reason phrase and SOFTWARE are at most 763 bytes.
pub const MAX_TEXT: usize = 763;
/// How many unknown comprehension-required attributes a message reports (the rest are
/// counted in [`UnknownAttributes::overflow`]); a 420 answer names at most these.
pub const MAX_UNKNOWN: usize = 8;

/// The class bits of a STUN message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }
}

/// The 96-bit transaction id.
pub type TransactionId = [u8; 12];

/// Why a datagram is not an acceptable STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    #[error("STUN: shorter than the 20-byte header")]
    TooShort,
    #[error("STUN: first two bits are not zero")]
    NotStun,
    #[error("STUN: magic cookie missing")]
    BadCookie,
    #[error("STUN: message length {0} is not a multiple of 4 or does not match the datagram")]
    BadLength(u16),
    #[error("STUN: attribute {0:#06x} runs past the end of the message")]
    TruncatedAttribute(u16),
    #[error("STUN: attribute {0:#06x} has a malformed value")]
    BadAttribute(u16),
    #[error("STUN: FINGERPRINT does not match")]
    BadFingerprint,
    #[error("STUN: attribute {0:#06x} after FINGERPRINT")]
    AfterFingerprint(u16),
}

/// A parsed ERROR-CODE attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// 300..=699.
    pub code: u16,
    /// UTF-8 text in a well-behaved peer, kept as bytes: it is only ever logged.
    pub reason: &'a [u8],
}

/// Unknown comprehension-required attribute types of a message, in order, at most
/// [`MAX_UNKNOWN`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnknownAttributes {
    types: [u16; MAX_UNKNOWN],
    len: u8,
    /// More unknown attributes than fit were present.
    pub overflow: bool,
}

impl UnknownAttributes {
    pub fn as_slice(&self) -> &[u16] {
        &self.types[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0 && !self.overflow
    }

    fn push(&mut self, ty: u16) {
        if self.as_slice().contains(&ty) {
            return;
        }
        match self.types.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = ty;
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }
}

/// A STUN message, borrowed from the datagram it was parsed from.
///
/// When an attribute appears twice, the first one counts (RFC 8489 §14). Attributes after
/// MESSAGE-INTEGRITY other than FINGERPRINT are ignored (RFC 8489 §14.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub class: Class,
    /// 12-bit method; [`METHOD_BINDING`] for ICE.
    pub method: u16,
    pub transaction_id: TransactionId,
    pub username: Option<&'a [u8]>,
    pub software: Option<&'a [u8]>,
    pub xor_mapped_address: Option<SocketAddr>,
    pub priority: Option<u32>,
    pub use_candidate: bool,
    pub ice_controlling: Option<u64>,
    pub ice_controlled: Option<u64>,
    pub error_code: Option<ErrorCode<'a>>,
    /// TURN: the allocation's relayed address.
    pub xor_relayed_address: Option<SocketAddr>,
    /// TURN: the peer of a Data indication (one per message is all a client needs).
    pub xor_peer_address: Option<SocketAddr>,
    /// TURN: the payload of a Send or Data indication.
    pub data: Option<&'a [u8]>,
    /// TURN: seconds.
    pub lifetime: Option<u32>,
    /// TURN: the protocol number of REQUESTED-TRANSPORT (17 for UDP).
    pub requested_transport: Option<u8>,
    /// Long-term credentials: at most [`MAX_TEXT`] bytes each.
    pub realm: Option<&'a [u8]>,
    pub nonce: Option<&'a [u8]>,
    /// TURN: 0x4000..=0x4fff.
    pub channel_number: Option<u16>,
    /// UNKNOWN-ATTRIBUTES of a 420 answer (the first [`MAX_UNKNOWN`]).
    pub unknown_attributes: UnknownAttributes,
    /// Comprehension-required attributes this parser does not understand.
    pub unknown_required: UnknownAttributes,
    /// The message had a FINGERPRINT (already checked: a wrong one fails the parse).
    pub has_fingerprint: bool,
    /// Offset of the MESSAGE-INTEGRITY attribute header, when present.
    integrity_at: Option<usize>,
    raw: &'a [u8],
}

/// RFC 7983 demultiplexing of the first byte of a datagram on a port shared by STUN, DTLS
/// and SRTP/SRTCP: 0..=3 is STUN.
pub fn is_stun(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(0..=3))
}

impl<'a> Message<'a> {
    /// Parse one whole STUN message (a UDP datagram or one RFC 4571 frame). The message
    /// length must match the input exactly, and a FINGERPRINT, when present, must be right.
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        let (class, method, transaction_id) = parse_header(buf)?;
        let mut msg = Message {
            class,
            method,
            transaction_id,
            username: None,
            software: None,
            xor_mapped_address: None,
            priority: None,
            use_candidate: false,
            ice_controlling: None,
            ice_controlled: None,
            error_code: None,
            xor_relayed_address: None,
            xor_peer_address: None,
            data: None,
            lifetime: None,
            requested_transport: None,
            realm: None,
            nonce: None,
            channel_number: None,
            unknown_attributes: UnknownAttributes::default(),
            unknown_required: UnknownAttributes::default(),
            has_fingerprint: false,
            integrity_at: None,
            raw: buf,
        };
        let mut seen = Seen::default();
        for item in Attributes::new(buf) {
            let (at, ty, value) = item?;
            if msg.has_fingerprint {
                return Err(StunError::AfterFingerprint(ty));
            }
            if ty == attr::FINGERPRINT {
                let &[a, b, c, d] = value else {
                    return Err(StunError::BadAttribute(ty));
                };
                let want = u32::from_be_bytes([a, b, c, d]);
                // Not a secret, but compared without an early exit anyway.
                if fingerprint_of(buf, at) ^ want != 0 {
                    return Err(StunError::BadFingerprint);
                }
                msg.has_fingerprint = true;
                continue;
            }
            if msg.integrity_at.is_some() {
                continue; // RFC 8489 §14.5: ignored after MESSAGE-INTEGRITY
            }
            if !seen.first(ty) {
                continue;
            }
            msg.attribute(at, ty, value)?;
        }
        Ok(msg)
    }

    fn attribute(&mut self, at: usize, ty: u16, value: &'a [u8]) -> Result<(), StunError> {
        let bad = StunError::BadAttribute(ty);
        match ty {
            attr::USERNAME => {
                if value.len() > MAX_USERNAME {
                    return Err(bad);
                }
                self.username = Some(value);
            }
            attr::SOFTWARE => {
                if value.len() > MAX_TEXT {
                    return Err(bad);
                }
                self.software = Some(value);
            }
            attr::MESSAGE_INTEGRITY => {
                if value.len() != INTEGRITY_LEN {
                    return Err(bad);
                }
                self.integrity_at = Some(at);
            }
            attr::XOR_MAPPED_ADDRESS => {
                self.xor_mapped_address =
                    Some(xor_address(value, &self.transaction_id).ok_or(bad)?);
            }
            attr::PRIORITY => {
                let v: [u8; 4] = value.try_into().map_err(|_| bad)?;
                self.priority = Some(u32::from_be_bytes(v));
            }
            attr::USE_CANDIDATE => {
                if !value.is_empty() {
                    return Err(bad);
                }
                self.use_candidate = true;
            }
            attr::ICE_CONTROLLING | attr::ICE_CONTROLLED => {
                let v: [u8; 8] = value.try_into().map_err(|_| bad)?;
                let v = Some(u64::from_be_bytes(v));
                if ty == attr::ICE_CONTROLLING {
                    self.ice_controlling = v;
                } else {
                    self.ice_controlled = v;
                }
            }
            attr::ERROR_CODE => {
                let &[0, 0, class, number, ref reason @ ..] = value else {
                    return Err(bad);
                };
                if !(3..=6).contains(&class) || number > 99 || reason.len() > MAX_TEXT {
                    return Err(bad);
                }
                self.error_code = Some(ErrorCode {
                    code: u16::from(class) * 100 + u16::from(number),
                    reason,
                });
            }
            attr::UNKNOWN_ATTRIBUTES => {
                if !value.len().is_multiple_of(2) {
                    return Err(bad);
                }
                for t in value.chunks_exact(2) {
                    self.unknown_attributes
                        .push(u16::from_be_bytes([t[0], t[1]]));
                }
            }
            attr::XOR_RELAYED_ADDRESS => {
                self.xor_relayed_address =
                    Some(xor_address(value, &self.transaction_id).ok_or(bad)?);
            }
            attr::XOR_PEER_ADDRESS => {
                self.xor_peer_address = Some(xor_address(value, &self.transaction_id).ok_or(bad)?);
            }
            attr::DATA => self.data = Some(value),
            attr::LIFETIME => {
                let v: [u8; 4] = value.try_into().map_err(|_| bad)?;
                self.lifetime = Some(u32::from_be_bytes(v));
            }
            attr::REQUESTED_TRANSPORT => {
                let &[proto, 0, 0, 0] = value else {
                    return Err(bad);
                };
                self.requested_transport = Some(proto);
            }
            attr::REALM | attr::NONCE => {
                if value.len() > MAX_TEXT {
                    return Err(bad);
                }
                if ty == attr::REALM {
                    self.realm = Some(value);
                } else {
                    self.nonce = Some(value);
                }
            }
            attr::CHANNEL_NUMBER => {
                let &[a, b, 0, 0] = value else {
                    return Err(bad);
                };
                let ch = u16::from_be_bytes([a, b]);
                if !(0x4000..=0x4fff).contains(&ch) {
                    return Err(bad);
                }
                self.channel_number = Some(ch);
            }
            // Understood and not needed here.
            attr::MAPPED_ADDRESS | attr::DONT_FRAGMENT => {}
            t if t < 0x8000 => self.unknown_required.push(t),
            _ => {}
        }
        Ok(())
    }

    /// The message had a MESSAGE-INTEGRITY attribute.
    pub fn has_integrity(&self) -> bool {
        self.integrity_at.is_some()
    }

    /// Check MESSAGE-INTEGRITY with a short-term credential (the key is the password as
    /// given, RFC 8489 §9.1.1) in constant time. False when the attribute is missing.
    pub fn verify_integrity(&self, key: &hmac::Key) -> bool {
        let Some(at) = self.integrity_at else {
            return false;
        };
        // The HMAC covers the message up to the attribute, with the header's length
        // field saying the message ends right after MESSAGE-INTEGRITY.
        let Some(tag) = self.raw.get(at + 4..at + 4 + INTEGRITY_LEN) else {
            return false;
        };
        let mut covered = self.raw[..at].to_vec(); // at >= HEADER_LEN, checked by parse
        set_length(&mut covered, at + 4 + INTEGRITY_LEN);
        hmac::verify(key, &covered, tag).is_ok()
    }

    /// The whole message as parsed.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
}

/// The HMAC key for a short-term credential (an ICE password).
pub fn integrity_key(password: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password)
}

/// The HMAC key for a long-term credential (RFC 8489 §9.2.2): MD5(username:realm:password).
/// The password is used as given (no SASLprep: TURN servers' passwords are ASCII in
/// practice, and coturn does not apply it either).
pub fn long_term_key(username: &[u8], realm: &[u8], password: &[u8]) -> hmac::Key {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(username);
    h.update(b":");
    h.update(realm);
    h.update(b":");
    h.update(password);
    integrity_key(&h.finalize())
}

/// Header checks shared by [`Message::parse`] and [`username_of`].
fn parse_header(buf: &[u8]) -> Result<(Class, u16, TransactionId), StunError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Err(StunError::TooShort);
    };
    let ty = u16::from_be_bytes([header[0], header[1]]);
    if ty & 0xc000 != 0 {
        return Err(StunError::NotStun);
    }
    if u32::from_be_bytes([header[4], header[5], header[6], header[7]]) != MAGIC_COOKIE {
        return Err(StunError::BadCookie);
    }
    let len = u16::from_be_bytes([header[2], header[3]]);
    if !len.is_multiple_of(4) || usize::from(len) != buf.len() - HEADER_LEN {
        return Err(StunError::BadLength(len));
    }
    let class = match ((ty >> 7) & 0b10) | ((ty >> 4) & 0b01) {
        0b00 => Class::Request,
        0b01 => Class::Indication,
        0b10 => Class::Success,
        _ => Class::Error,
    };
    let method = (ty & 0x000f) | ((ty >> 1) & 0x0070) | ((ty >> 2) & 0x0f80);
    let mut tid = [0; 12];
    tid.copy_from_slice(&header[8..HEADER_LEN]);
    Ok((class, method, tid))
}

/// The USERNAME of a STUN message, found without any state or credential check: routes
/// a datagram to the session whose local ufrag is the part before the colon.
pub fn username_of(buf: &[u8]) -> Option<&[u8]> {
    parse_header(buf).ok()?;
    for item in Attributes::new(buf) {
        let (_, ty, value) = item.ok()?;
        if ty == attr::USERNAME {
            return (value.len() <= MAX_USERNAME).then_some(value);
        }
        if ty == attr::MESSAGE_INTEGRITY {
            return None;
        }
    }
    None
}

/// Remembers which attribute types were seen (the first occurrence counts). Known types
/// only; unknown ones are deduplicated by [`UnknownAttributes`].
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn first(&mut self, ty: u16) -> bool {
        let bit = match ty {
            attr::USERNAME => 0,
            attr::SOFTWARE => 1,
            attr::XOR_MAPPED_ADDRESS => 2,
            attr::PRIORITY => 3,
            attr::USE_CANDIDATE => 4,
            attr::ICE_CONTROLLING => 5,
            attr::ICE_CONTROLLED => 6,
            attr::ERROR_CODE => 7,
            attr::UNKNOWN_ATTRIBUTES => 8,
            attr::XOR_RELAYED_ADDRESS => 9,
            attr::XOR_PEER_ADDRESS => 10,
            attr::DATA => 11,
            attr::LIFETIME => 12,
            attr::REQUESTED_TRANSPORT => 13,
            attr::REALM => 14,
            attr::NONCE => 15,
            attr::CHANNEL_NUMBER => 16,
            _ => return true,
        };
        let first = self.0 & (1 << bit) == 0;
        self.0 |= 1 << bit;
        first
    }
}

/// Walks the attributes of a message whose header was checked: `(offset of the attribute
/// header, type, value)`.
struct Attributes<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Attributes<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Attributes {
            buf,
            at: HEADER_LEN,
        }
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<(usize, u16, &'a [u8]), StunError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.at..)?;
        if rest.is_empty() {
            return None;
        }
        let at = self.at;
        let &[t0, t1, l0, l1, ref body @ ..] = rest else {
            self.at = self.buf.len();
            return Some(Err(StunError::TruncatedAttribute(0)));
        };
        let ty = u16::from_be_bytes([t0, t1]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let padded = len.next_multiple_of(4);
        if padded > body.len() {
            self.at = self.buf.len();
            return Some(Err(StunError::TruncatedAttribute(ty)));
        }
        self.at = at + 4 + padded;
        Some(Ok((at, ty, &body[..len])))
    }
}

fn xor_address(value: &[u8], tid: &TransactionId) -> Option<SocketAddr> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match value {
        [0, 1, p0, p1, a @ ..] if a.len() == 4 => {
            let port = u16::from_be_bytes([*p0, *p1]) ^ (MAGIC_COOKIE >> 16) as u16;
            let ip: [u8; 4] = std::array::from_fn(|i| a[i] ^ cookie[i]);
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        [0, 2, p0, p1, a @ ..] if a.len() == 16 => {
            let port = u16::from_be_bytes([*p0, *p1]) ^ (MAGIC_COOKIE >> 16) as u16;
            let ip: [u8; 16] =
                std::array::from_fn(|i| a[i] ^ if i < 4 { cookie[i] } else { tid[i - 4] });
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Overwrite the header's length field so the message ends at `end` (a header-relative
/// end offset counting the header).
fn set_length(msg: &mut [u8], end: usize) {
    let len = (end - HEADER_LEN) as u16; // messages are built and parsed below 64 KiB
    msg[2..4].copy_from_slice(&len.to_be_bytes());
}

/// FINGERPRINT value of the message in `buf` whose FINGERPRINT attribute header sits at
/// `at`: CRC-32 of everything before it, with the length covering the attribute.
fn fingerprint_of(buf: &[u8], at: usize) -> u32 {
    let len = ((at + 8 - HEADER_LEN) as u16).to_be_bytes();
    let crc = Crc32::new()
        .update(&buf[..2])
        .update(&len)
        .update(&buf[4..at])
        .finish();
    crc ^ FINGERPRINT_XOR
}

/// CRC-32 (ISO-HDLC, as zlib), table-driven; FINGERPRINT and candidate foundations use it.
#[derive(Clone, Copy)]
pub struct Crc32(u32);

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Crc32 {
    pub fn new() -> Self {
        Crc32(0xffff_ffff)
    }

    #[must_use]
    pub fn update(mut self, data: &[u8]) -> Self {
        for &b in data {
            self.0 = CRC_TABLE[((self.0 ^ u32::from(b)) & 0xff) as usize] ^ (self.0 >> 8);
        }
        self
    }

    pub fn finish(self) -> u32 {
        !self.0
    }

    /// CRC-32 of one slice.
    pub fn checksum(data: &[u8]) -> u32 {
        Crc32::new().update(data).finish()
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

/// Writes a STUN message into the caller's buffer, attribute by attribute. The header's
/// length is kept current, so the bytes are a valid message after every call.
///
/// Text attributes longer than their RFC limits are cut (at a UTF-8 character boundary),
/// so a message stays far below 64 KiB.
pub struct Builder<'o> {
    out: &'o mut Vec<u8>,
    start: usize,
    transaction_id: TransactionId,
    /// Padding byte (zero; RFC 5769's vectors pad with spaces, which tests reproduce).
    pad: u8,
}

impl<'o> Builder<'o> {
    /// Start a message at the end of `out`.
    pub fn new(
        out: &'o mut Vec<u8>,
        class: Class,
        method: u16,
        transaction_id: &TransactionId,
    ) -> Self {
        let start = out.len();
        let m = method & 0x0fff;
        let c = class.bits();
        let ty = (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2);
        let ty = ty | ((c & 0b01) << 4) | ((c & 0b10) << 7);
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(transaction_id);
        Builder {
            out,
            start,
            transaction_id: *transaction_id,
            pad: 0,
        }
    }

    /// Pad attribute values with `byte` instead of zero.
    pub fn padding(mut self, byte: u8) -> Self {
        self.pad = byte;
        self
    }

    /// Any attribute, raw (value cut to what the length field can say).
    pub fn attribute(&mut self, ty: u16, value: &[u8]) -> &mut Self {
        let len = value.len().min(u16::MAX as usize - 4);
        self.out.extend_from_slice(&ty.to_be_bytes());
        self.out.extend_from_slice(&(len as u16).to_be_bytes());
        self.out.extend_from_slice(&value[..len]);
        let padded = len.next_multiple_of(4);
        self.out.resize(self.out.len() + padded - len, self.pad);
        let end = self.out.len() - self.start;
        set_length(&mut self.out[self.start..], end);
        self
    }

    pub fn username(&mut self, username: &[u8]) -> &mut Self {
        self.attribute(
            attr::USERNAME,
            &username[..username.len().min(MAX_USERNAME)],
        )
    }

    pub fn software(&mut self, software: &[u8]) -> &mut Self {
        self.attribute(attr::SOFTWARE, cut(software, MAX_TEXT))
    }

    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> &mut Self {
        self.xor_address(attr::XOR_MAPPED_ADDRESS, addr)
    }

    pub fn xor_peer_address(&mut self, addr: SocketAddr) -> &mut Self {
        self.xor_address(attr::XOR_PEER_ADDRESS, addr)
    }

    pub fn xor_relayed_address(&mut self, addr: SocketAddr) -> &mut Self {
        self.xor_address(attr::XOR_RELAYED_ADDRESS, addr)
    }

    /// An address attribute XORed with the cookie (and the transaction id for IPv6).
    pub fn xor_address(&mut self, ty: u16, addr: SocketAddr) -> &mut Self {
        let tid = self.transaction_id;
        let port = (addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes();
        let cookie = MAGIC_COOKIE.to_be_bytes();
        let mut value = [0u8; 20];
        let len = match addr.ip() {
            IpAddr::V4(ip) => {
                value[..4].copy_from_slice(&[0, 1, port[0], port[1]]);
                for (i, b) in ip.octets().into_iter().enumerate() {
                    value[4 + i] = b ^ cookie[i];
                }
                8
            }
            IpAddr::V6(ip) => {
                value[..4].copy_from_slice(&[0, 2, port[0], port[1]]);
                for (i, b) in ip.octets().into_iter().enumerate() {
                    value[4 + i] = b ^ if i < 4 { cookie[i] } else { tid[i - 4] };
                }
                20
            }
        };
        self.attribute(ty, &value[..len])
    }

    /// TURN DATA (a Send indication's payload).
    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.attribute(attr::DATA, data)
    }

    pub fn lifetime(&mut self, seconds: u32) -> &mut Self {
        self.attribute(attr::LIFETIME, &seconds.to_be_bytes())
    }

    /// REQUESTED-TRANSPORT; 17 is UDP, the only one RFC 8656 allocates.
    pub fn requested_transport(&mut self, protocol: u8) -> &mut Self {
        self.attribute(attr::REQUESTED_TRANSPORT, &[protocol, 0, 0, 0])
    }

    pub fn realm(&mut self, realm: &[u8]) -> &mut Self {
        self.attribute(attr::REALM, cut(realm, MAX_TEXT))
    }

    pub fn nonce(&mut self, nonce: &[u8]) -> &mut Self {
        self.attribute(attr::NONCE, cut(nonce, MAX_TEXT))
    }

    pub fn channel_number(&mut self, channel: u16) -> &mut Self {
        let c = channel.to_be_bytes();
        self.attribute(attr::CHANNEL_NUMBER, &[c[0], c[1], 0, 0])
    }

    pub fn priority(&mut self, priority: u32) -> &mut Self {
        self.attribute(attr::PRIORITY, &priority.to_be_bytes())
    }

    pub fn use_candidate(&mut self) -> &mut Self {
        self.attribute(attr::USE_CANDIDATE, &[])
    }

    pub fn ice_controlling(&mut self, tie_breaker: u64) -> &mut Self {
        self.attribute(attr::ICE_CONTROLLING, &tie_breaker.to_be_bytes())
    }

    pub fn ice_controlled(&mut self, tie_breaker: u64) -> &mut Self {
        self.attribute(attr::ICE_CONTROLLED, &tie_breaker.to_be_bytes())
    }

    /// ERROR-CODE; `code` outside 300..=699 is clamped into it (a programming error, but
    /// not one worth a panic on a network path).
    pub fn error_code(&mut self, code: u16, reason: &[u8]) -> &mut Self {
        let code = code.clamp(300, 699);
        let reason = cut(reason, MAX_TEXT);
        let mut value = Vec::with_capacity(4 + reason.len());
        value.extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        value.extend_from_slice(reason);
        self.attribute(attr::ERROR_CODE, &value)
    }

    /// UNKNOWN-ATTRIBUTES for a 420 answer.
    pub fn unknown_attributes(&mut self, types: &[u16]) -> &mut Self {
        let mut value = [0u8; 2 * MAX_UNKNOWN];
        let n = types.len().min(MAX_UNKNOWN);
        for (i, t) in types[..n].iter().enumerate() {
            value[2 * i..2 * i + 2].copy_from_slice(&t.to_be_bytes());
        }
        self.attribute(attr::UNKNOWN_ATTRIBUTES, &value[..2 * n])
    }

    /// MESSAGE-INTEGRITY over everything written so far.
    pub fn integrity(&mut self, key: &hmac::Key) -> &mut Self {
        let end = self.out.len() - self.start + 4 + INTEGRITY_LEN;
        set_length(&mut self.out[self.start..], end);
        let tag = hmac::sign(key, &self.out[self.start..]);
        self.attribute(attr::MESSAGE_INTEGRITY, tag.as_ref())
    }

    /// FINGERPRINT over everything written so far; the last attribute of a message.
    pub fn fingerprint(&mut self) -> &mut Self {
        let at = self.out.len() - self.start;
        let value = fingerprint_of(&self.out[self.start..], at);
        self.attribute(attr::FINGERPRINT, &value.to_be_bytes())
    }

    /// The message written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.out[self.start..]
    }
}

/// `text` cut to at most `max` bytes, at a UTF-8 character boundary when it is UTF-8.
fn cut(text: &[u8], max: usize) -> &[u8] {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    // Step back over continuation bytes (10xxxxxx) so a character is not split.
    while end > 0 && text[end] & 0xc0 == 0x80 {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
