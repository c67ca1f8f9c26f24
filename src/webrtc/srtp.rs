//! SRTP and SRTCP (RFC 3711, RFC 7714) for the three DTLS-SRTP profiles browsers offer:
//! AES128_CM_HMAC_SHA1_80, AEAD_AES_128_GCM and AEAD_AES_256_GCM.
//!
//! Ciphers come from `ring` (AES-GCM) and RustCrypto (`aes` + `ctr` for AES counter mode,
//! which ring does not expose; `hmac` + `sha1` for HMAC-SHA1, whose SHA-NI path is 3x
//! faster than ring's portable SHA-1); this module only lays out IVs, keys and
//! packets. One [`SrtpContext`] is one direction of one DTLS association: the server has
//! one to send (it encrypts the shared packet once per viewer, into a reused buffer) and
//! one to receive (RTCP from viewers, media from WHIP publishers).
//!
//! Sans-IO and allocation-free per packet: `protect_*` write into a caller `Vec` whose
//! capacity is reused, `unprotect_*` work in place.

use aes::{Aes128Enc, Aes256Enc};
use ctr::cipher::consts::U16;
use ctr::cipher::{BlockCipherEncrypt, InnerIvInit, KeyInit, StreamCipher};
use hmac::{Hmac, Mac};
use ring::aead;
use sha1::Sha1;
use thiserror::Error;

/// The SRTP protection profiles DTLS-SRTP negotiates (RFC 5764 §4.1.2, RFC 7714 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// SRTP_AES128_CM_HMAC_SHA1_80 (0x0001).
    Aes128CmHmacSha1_80,
    /// SRTP_AEAD_AES_128_GCM (0x0007).
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM (0x0008).
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// Master (and session) key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 | Self::AeadAes128Gcm => 16,
            Self::AeadAes256Gcm => 32,
        }
    }

    /// Master (and session) salt length in bytes.
    pub fn salt_len(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 => 14,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => 12,
        }
    }

    /// Bytes appended to an SRTP packet (auth tag or AEAD tag).
    pub fn rtp_overhead(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 => CM_TAG_LEN,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => GCM_TAG_LEN,
        }
    }

    /// Bytes appended to an SRTCP packet (tag + E flag/index word).
    pub fn rtcp_overhead(self) -> usize {
        self.rtp_overhead() + 4
    }

    /// Length of the DTLS exporter output this profile needs (RFC 5764 §4.2).
    pub fn keying_material_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }

    /// The profile's IANA name as DTLS-SRTP and SDP write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_SHA1_80",
            Self::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
            Self::AeadAes256Gcm => "SRTP_AEAD_AES_256_GCM",
        }
    }
}

/// Which end of the DTLS association we are: it picks which half of the keying material
/// protects what we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// DTLS client (`a=setup:active`).
    Client,
    /// DTLS server (`a=setup:passive`); corecast's usual role.
    Server,
}

/// Why a packet could not be protected or unprotected. Unprotect errors mean "drop the
/// packet"; none of them ends the session by itself.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SrtpError {
    #[error("{what}: {len} bytes is too short")]
    TooShort { what: &'static str, len: usize },
    #[error("{what}: version {version}, want 2")]
    BadVersion { what: &'static str, version: u8 },
    #[error("{what}: {len} bytes is too long (limit {MAX_PACKET_LEN})")]
    TooLong { what: &'static str, len: usize },
    #[error("{what}: authentication failed")]
    AuthFailed { what: &'static str },
    #[error("{what}: replayed index {index}")]
    Replayed { what: &'static str, index: u64 },
    #[error("{what}: index {index} is older than the replay window")]
    TooOld { what: &'static str, index: u64 },
    #[error("more than {MAX_SSRCS} SSRCs in one SRTP context")]
    TooManySsrcs,
    #[error("SRTCP index space exhausted for SSRC {ssrc:#010x}: rekey needed")]
    IndexExhausted { ssrc: u32 },
    #[error("keying material for {profile}: {len} bytes, want {want}")]
    BadKeyingMaterial {
        profile: &'static str,
        len: usize,
        want: usize,
    },
}

/// HMAC-SHA1 tag length for the _80 profile.
const CM_TAG_LEN: usize = 10;
/// AES-GCM tag length (RFC 7714 §7: 16 octets, the only one DTLS-SRTP negotiates).
const GCM_TAG_LEN: usize = 16;
/// Largest packet accepted: above a jumbo UDP datagram, and RFC 4571 framing caps TCP at
/// 65535 anyway.
pub const MAX_PACKET_LEN: usize = 65_535;
/// SSRCs tracked per context: a viewer session has a few (video, audio, RTX, RTCP
/// reporters); a bound keeps a peer from growing the table.
pub const MAX_SSRCS: usize = 16;
/// Replay window in packets (RFC 3711 §3.3.2 asks for at least 64; libsrtp uses 128).
const REPLAY_WINDOW: u64 = 128;
/// SRTCP's index is 31 bits (the top bit of the trailer word is the E flag).
const SRTCP_INDEX_MASK: u32 = 0x7fff_ffff;

// RFC 3711 §4.3.2 key derivation labels.
const LABEL_RTP_ENC: u8 = 0x00;
const LABEL_RTP_AUTH: u8 = 0x01;
const LABEL_RTP_SALT: u8 = 0x02;
const LABEL_RTCP_ENC: u8 = 0x03;
const LABEL_RTCP_AUTH: u8 = 0x04;
const LABEL_RTCP_SALT: u8 = 0x05;

/// One set of session keys (SRTP or SRTCP side of a context).
struct SessionKeys {
    cipher: Cipher,
    /// Session salt, left-aligned; 14 bytes used by AES-CM, 12 by GCM.
    salt: [u8; 14],
}

// One per context and hot per packet: inline beats a Box for the 240-byte difference.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    /// AES-128 key schedule (encrypt only: counter mode never decrypts blocks) and the
    /// HMAC-SHA1 keyed once (inner/outer states precomputed; cloned per packet).
    Cm {
        aes: Aes128Enc,
        auth: Hmac<Sha1>,
    },
    Gcm(aead::LessSafeKey),
}

/// Per-SSRC state: ROC and replay window for SRTP, index and window for SRTCP.
#[derive(Clone, Copy)]
struct SsrcState {
    ssrc: u32,
    /// Highest SRTP index (ROC << 16 | seq) seen (receive) or sent; None before the first.
    rtp_highest: Option<u64>,
    /// Bit i set: index `rtp_highest - i` was received.
    rtp_window: u128,
    /// Next SRTCP index to send.
    rtcp_next: u32,
    /// Highest SRTCP index received.
    rtcp_highest: Option<u64>,
    rtcp_window: u128,
}

impl SsrcState {
    fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            rtp_highest: None,
            rtp_window: 0,
            rtcp_next: 0,
            rtcp_highest: None,
            rtcp_window: 0,
        }
    }
}

/// One direction of SRTP + SRTCP under one master key.
pub struct SrtpContext {
    profile: SrtpProfile,
    rtp: SessionKeys,
    rtcp: SessionKeys,
    ssrcs: Vec<SsrcState>,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("ssrcs", &self.ssrcs.len())
            .finish()
    }
}

/// True when a demultiplexed SRTP-or-SRTCP datagram (first byte 128..=191, RFC 7983) is
/// SRTCP: with rtcp-mux, RTCP packet types 192..=223 occupy the second byte where RTP has
/// marker + payload type, and WebRTC payload types stay out of 64..=95 (RFC 5761 §4).
pub fn is_rtcp(pkt: &[u8]) -> bool {
    pkt.len() >= 2 && (192..=223).contains(&pkt[1])
}

/// Builds the two contexts of a DTLS-SRTP association from the exporter output, laid out
/// as RFC 5764 §4.2 says: client key | server key | client salt | server salt. Returns
/// `(send, receive)`: the client sends with the client half, the server with the server
/// half.
pub fn contexts_from_keying_material(
    profile: SrtpProfile,
    material: &[u8],
    role: Role,
) -> Result<(SrtpContext, SrtpContext), SrtpError> {
    let want = profile.keying_material_len();
    if material.len() != want {
        return Err(SrtpError::BadKeyingMaterial {
            profile: profile.name(),
            len: material.len(),
            want,
        });
    }
    let (k, s) = (profile.key_len(), profile.salt_len());
    let client_key = &material[..k];
    let server_key = &material[k..2 * k];
    let client_salt = &material[2 * k..2 * k + s];
    let server_salt = &material[2 * k + s..];
    let client = SrtpContext::new(profile, client_key, client_salt)?;
    let server = SrtpContext::new(profile, server_key, server_salt)?;
    Ok(match role {
        Role::Client => (client, server),
        Role::Server => (server, client),
    })
}

/// XORs AES counter-mode keystream (128-bit big-endian counter from `iv`) into `data`.
fn ctr_apply<C: BlockCipherEncrypt<BlockSize = U16>>(cipher: C, iv: &[u8; 16], data: &mut [u8]) {
    let core = ctr::CtrCore::<C, ctr::flavors::Ctr128BE>::inner_iv_init(cipher, &(*iv).into());
    ctr::Ctr128BE::from_core(core).apply_keystream(data);
}

/// AES-CM PRF of RFC 3711 §4.3.1/§4.3.3 with a key derivation rate of 0 (DTLS-SRTP's):
/// x = label at byte 7 XOR the master salt (left-aligned; GCM's 12-byte salt is padded
/// with zeros as RFC 7714 §11 and libsrtp do), keystream of AES-CM(master key, x || 0000).
fn kdf(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    out.fill(0);
    match master_key.len() {
        16 => {
            let aes = Aes128Enc::new_from_slice(master_key).expect("16-byte key checked");
            ctr_apply(aes, &iv, out);
        }
        _ => {
            let aes = Aes256Enc::new_from_slice(master_key).expect("32-byte key checked");
            ctr_apply(aes, &iv, out);
        }
    }
}

impl SessionKeys {
    /// Derives the SRTP (`rtcp == false`) or SRTCP session keys from the master key.
    fn derive(profile: SrtpProfile, master_key: &[u8], master_salt: &[u8], rtcp: bool) -> Self {
        let (enc_l, auth_l, salt_l) = if rtcp {
            (LABEL_RTCP_ENC, LABEL_RTCP_AUTH, LABEL_RTCP_SALT)
        } else {
            (LABEL_RTP_ENC, LABEL_RTP_AUTH, LABEL_RTP_SALT)
        };
        let mut key = [0u8; 32];
        let key = &mut key[..profile.key_len()];
        kdf(master_key, master_salt, enc_l, key);
        let mut salt = [0u8; 14];
        kdf(
            master_key,
            master_salt,
            salt_l,
            &mut salt[..profile.salt_len()],
        );
        let auth = if profile == SrtpProfile::Aes128CmHmacSha1_80 {
            let mut auth = [0u8; 20];
            kdf(master_key, master_salt, auth_l, &mut auth);
            Some(auth)
        } else {
            None
        };
        Self::from_session(profile, key, &salt[..profile.salt_len()], auth.as_ref())
    }

    /// Builds session keys from session (already derived) material.
    fn from_session(
        profile: SrtpProfile,
        key: &[u8],
        salt: &[u8],
        auth: Option<&[u8; 20]>,
    ) -> Self {
        let mut s = [0u8; 14];
        s[..salt.len()].copy_from_slice(salt);
        let cipher = match profile {
            SrtpProfile::Aes128CmHmacSha1_80 => Cipher::Cm {
                aes: Aes128Enc::new_from_slice(key).expect("16-byte key"),
                auth: <Hmac<Sha1> as hmac::KeyInit>::new_from_slice(
                    auth.map(|a| &a[..]).unwrap_or(&[]),
                )
                .expect("HMAC takes any key length"),
            },
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => {
                let alg = if profile == SrtpProfile::AeadAes128Gcm {
                    &aead::AES_128_GCM
                } else {
                    &aead::AES_256_GCM
                };
                let unbound = aead::UnboundKey::new(alg, key).expect("key length from profile");
                Cipher::Gcm(aead::LessSafeKey::new(unbound))
            }
        };
        Self { cipher, salt: s }
    }

    /// AES-CM keystream XOR for an SRTP/SRTCP IV (RFC 3711 §4.1.1):
    /// (salt << 16) XOR (SSRC << 64) XOR (index << 16).
    fn cm_apply(aes: &Aes128Enc, salt: &[u8; 14], ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(salt);
        for (d, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *d ^= s;
        }
        for (d, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *d ^= s;
        }
        ctr_apply(aes.clone(), &iv, data);
    }

    /// GCM IV (RFC 7714 §8.1 and §9.1): 00 00 | SSRC | 4 bytes | 2 bytes, XOR salt.
    /// SRTP puts ROC and SEQ in the last six bytes; SRTCP puts 00 00 and the 31-bit index.
    fn gcm_nonce(&self, ssrc: u32, hi: u32, lo: u16) -> aead::Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&hi.to_be_bytes());
        iv[10..12].copy_from_slice(&lo.to_be_bytes());
        for (d, s) in iv.iter_mut().zip(&self.salt[..12]) {
            *d ^= s;
        }
        aead::Nonce::assume_unique_for_key(iv)
    }
}

/// Length of an RTP header with its CSRCs and extension, checked against the packet.
fn rtp_header_len(pkt: &[u8]) -> Result<usize, SrtpError> {
    const WHAT: &str = "SRTP header";
    if pkt.len() < 12 {
        return Err(SrtpError::TooShort {
            what: WHAT,
            len: pkt.len(),
        });
    }
    let version = pkt[0] >> 6;
    if version != 2 {
        return Err(SrtpError::BadVersion {
            what: WHAT,
            version,
        });
    }
    let mut len = 12 + 4 * usize::from(pkt[0] & 0x0f);
    if pkt[0] & 0x10 != 0 {
        if pkt.len() < len + 4 {
            return Err(SrtpError::TooShort {
                what: WHAT,
                len: pkt.len(),
            });
        }
        let words = u16::from_be_bytes([pkt[len + 2], pkt[len + 3]]);
        len += 4 + 4 * usize::from(words);
    }
    if pkt.len() < len {
        return Err(SrtpError::TooShort {
            what: WHAT,
            len: pkt.len(),
        });
    }
    Ok(len)
}

/// RFC 3711 §3.3.1 index estimate: the index closest to the highest one seen.
fn estimate_index(highest: Option<u64>, seq: u16) -> u64 {
    let Some(highest) = highest else {
        return u64::from(seq);
    };
    let roc = highest >> 16;
    let s_l = (highest & 0xffff) as u16;
    let seq64 = u64::from(seq);
    if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 && roc > 0 {
            ((roc - 1) << 16) | seq64
        } else {
            (roc << 16) | seq64
        }
    } else if seq < s_l - 0x8000 {
        // ROC is 32 bits: wrap with it (RFC 3711 §3.3.1: the master key must be renewed
        // long before; 2^48 packets never happen in one session).
        (((roc + 1) & 0xffff_ffff) << 16) | seq64
    } else {
        (roc << 16) | seq64
    }
}

/// Replay check (RFC 3711 §3.3.2) without updating the window.
fn replay_check(
    highest: Option<u64>,
    window: u128,
    index: u64,
    what: &'static str,
) -> Result<(), SrtpError> {
    let Some(highest) = highest else {
        return Ok(());
    };
    if index > highest {
        return Ok(());
    }
    let age = highest - index;
    if age >= REPLAY_WINDOW {
        return Err(SrtpError::TooOld { what, index });
    }
    if window & (1u128 << age) != 0 {
        return Err(SrtpError::Replayed { what, index });
    }
    Ok(())
}

/// Records an authenticated index in the replay window.
fn replay_update(highest: &mut Option<u64>, window: &mut u128, index: u64) {
    match *highest {
        None => {
            *highest = Some(index);
            *window = 1;
        }
        Some(h) if index > h => {
            let shift = index - h;
            *window = if shift >= REPLAY_WINDOW {
                1
            } else {
                (*window << shift) | 1
            };
            *highest = Some(index);
        }
        Some(h) => *window |= 1u128 << (h - index),
    }
}

/// Constant-time equality for tags (the attacker chooses the compared bytes).
fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl SrtpContext {
    /// Builds a context from a master key and salt (lengths from the profile).
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        if master_key.len() != profile.key_len() || master_salt.len() != profile.salt_len() {
            return Err(SrtpError::BadKeyingMaterial {
                profile: profile.name(),
                len: master_key.len() + master_salt.len(),
                want: profile.key_len() + profile.salt_len(),
            });
        }
        Ok(Self {
            profile,
            rtp: SessionKeys::derive(profile, master_key, master_salt, false),
            rtcp: SessionKeys::derive(profile, master_key, master_salt, true),
            ssrcs: Vec::new(),
        })
    }

    /// The profile this context runs.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    fn state_index(&mut self, ssrc: u32) -> Result<usize, SrtpError> {
        if let Some(i) = self.ssrcs.iter().position(|s| s.ssrc == ssrc) {
            return Ok(i);
        }
        if self.ssrcs.len() >= MAX_SSRCS {
            return Err(SrtpError::TooManySsrcs);
        }
        self.ssrcs.push(SsrcState::new(ssrc));
        Ok(self.ssrcs.len() - 1)
    }

    fn state(&self, ssrc: u32) -> SsrcState {
        self.ssrcs
            .iter()
            .find(|s| s.ssrc == ssrc)
            .copied()
            .unwrap_or(SsrcState::new(ssrc))
    }

    /// Protects one RTP packet given as its header (with CSRCs/extension, already
    /// rewritten for this peer) and its payload; writes header | encrypted payload | tag
    /// into `out` (cleared first; no allocation once `out` has grown to a packet's size).
    pub fn protect_rtp(
        &mut self,
        header: &[u8],
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        let hlen = header.len();
        if rtp_header_len(header)? != hlen {
            return Err(SrtpError::TooShort {
                what: "SRTP header (extension runs past the given header)",
                len: hlen,
            });
        }
        let total = hlen + payload.len() + self.profile.rtp_overhead();
        if total > MAX_PACKET_LEN {
            return Err(SrtpError::TooLong {
                what: "SRTP packet",
                len: total,
            });
        }
        let seq = u16::from_be_bytes([header[2], header[3]]);
        let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let i = self.state_index(ssrc)?;
        let st = &mut self.ssrcs[i];
        let index = estimate_index(st.rtp_highest, seq);
        if st.rtp_highest.is_none_or(|h| index > h) {
            st.rtp_highest = Some(index);
        }
        let roc = (index >> 16) as u32;

        out.clear();
        out.extend_from_slice(header);
        out.extend_from_slice(payload);
        match &self.rtp.cipher {
            Cipher::Cm { aes, auth } => {
                SessionKeys::cm_apply(aes, &self.rtp.salt, ssrc, index, &mut out[hlen..]);
                let mut mac = auth.clone();
                mac.update(out);
                mac.update(&roc.to_be_bytes());
                let tag = mac.finalize().into_bytes();
                out.extend_from_slice(&tag[..CM_TAG_LEN]);
            }
            Cipher::Gcm(key) => {
                let nonce = self.rtp.gcm_nonce(ssrc, roc, seq);
                let (aad, body) = out.split_at_mut(hlen);
                let tag = key
                    .seal_in_place_separate_tag(nonce, aead::Aad::from(&*aad), body)
                    .map_err(|_| SrtpError::TooLong {
                        what: "SRTP packet",
                        len: total,
                    })?;
                out.extend_from_slice(tag.as_ref());
            }
        }
        Ok(())
    }

    /// Protects a whole RTP packet (header and payload in one slice) into `out`.
    pub fn protect_rtp_packet(&mut self, pkt: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let hlen = rtp_header_len(pkt)?;
        self.protect_rtp(&pkt[..hlen], &pkt[hlen..], out)
    }

    /// Authenticates and decrypts an SRTP packet in place; returns the length of the
    /// plaintext RTP packet at the start of `buf`. Replays and forgeries are errors and
    /// leave the context as it was.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        const WHAT: &str = "SRTP packet";
        if buf.len() > MAX_PACKET_LEN {
            return Err(SrtpError::TooLong {
                what: WHAT,
                len: buf.len(),
            });
        }
        let tag_len = self.profile.rtp_overhead();
        if buf.len() < 12 + tag_len {
            return Err(SrtpError::TooShort {
                what: WHAT,
                len: buf.len(),
            });
        }
        let body_end = buf.len() - tag_len;
        let hlen = rtp_header_len(&buf[..body_end])?;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let st = self.state(ssrc);
        let index = estimate_index(st.rtp_highest, seq);
        replay_check(st.rtp_highest, st.rtp_window, index, WHAT)?;
        let roc = (index >> 16) as u32;

        match &self.rtp.cipher {
            Cipher::Cm { aes, auth } => {
                let mut mac = auth.clone();
                mac.update(&buf[..body_end]);
                mac.update(&roc.to_be_bytes());
                let tag = mac.finalize().into_bytes();
                if !tags_equal(&tag[..CM_TAG_LEN], &buf[body_end..]) {
                    return Err(SrtpError::AuthFailed { what: WHAT });
                }
                SessionKeys::cm_apply(aes, &self.rtp.salt, ssrc, index, &mut buf[hlen..body_end]);
            }
            Cipher::Gcm(key) => {
                let nonce = self.rtp.gcm_nonce(ssrc, roc, seq);
                let (aad, body) = buf.split_at_mut(hlen);
                key.open_in_place(nonce, aead::Aad::from(&*aad), body)
                    .map_err(|_| SrtpError::AuthFailed { what: WHAT })?;
            }
        }
        // Only authenticated packets create or move state.
        let i = self.state_index(ssrc)?;
        let st = &mut self.ssrcs[i];
        replay_update(&mut st.rtp_highest, &mut st.rtp_window, index);
        Ok(body_end)
    }

    /// Protects one RTCP compound packet into `out` (encrypted, E flag set), with the next
    /// SRTCP index of its first packet's SSRC.
    pub fn protect_rtcp(&mut self, pkt: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        const WHAT: &str = "SRTCP packet";
        if pkt.len() < 8 {
            return Err(SrtpError::TooShort {
                what: WHAT,
                len: pkt.len(),
            });
        }
        let version = pkt[0] >> 6;
        if version != 2 {
            return Err(SrtpError::BadVersion {
                what: WHAT,
                version,
            });
        }
        let total = pkt.len() + self.profile.rtcp_overhead();
        if total > MAX_PACKET_LEN {
            return Err(SrtpError::TooLong {
                what: WHAT,
                len: total,
            });
        }
        let ssrc = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        let i = self.state_index(ssrc)?;
        let index = self.ssrcs[i].rtcp_next;
        if index > SRTCP_INDEX_MASK {
            return Err(SrtpError::IndexExhausted { ssrc });
        }
        self.ssrcs[i].rtcp_next = index + 1;
        self.seal_rtcp(pkt, ssrc, index, out);
        Ok(())
    }

    fn seal_rtcp(&self, pkt: &[u8], ssrc: u32, index: u32, out: &mut Vec<u8>) {
        let e_index = (0x8000_0000 | index).to_be_bytes();
        out.clear();
        out.extend_from_slice(pkt);
        match &self.rtcp.cipher {
            Cipher::Cm { aes, auth } => {
                SessionKeys::cm_apply(aes, &self.rtcp.salt, ssrc, u64::from(index), &mut out[8..]);
                out.extend_from_slice(&e_index);
                let mut mac = auth.clone();
                mac.update(out);
                let tag = mac.finalize().into_bytes();
                out.extend_from_slice(&tag[..CM_TAG_LEN]);
            }
            Cipher::Gcm(key) => {
                // RFC 7714 §9.1/§17: AAD = first 8 bytes | E flag + index; the tag goes
                // before the trailing index word.
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&pkt[..8]);
                aad[8..].copy_from_slice(&e_index);
                let nonce = self.rtcp.gcm_nonce(ssrc, index >> 16, index as u16);
                let tag = key
                    .seal_in_place_separate_tag(nonce, aead::Aad::from(aad), &mut out[8..])
                    .expect("length bounded by MAX_PACKET_LEN");
                out.extend_from_slice(tag.as_ref());
                out.extend_from_slice(&e_index);
            }
        }
    }

    /// Authenticates and (when the E flag says so) decrypts an SRTCP packet in place;
    /// returns the length of the plaintext RTCP compound packet at the start of `buf`.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        const WHAT: &str = "SRTCP packet";
        if buf.len() > MAX_PACKET_LEN {
            return Err(SrtpError::TooLong {
                what: WHAT,
                len: buf.len(),
            });
        }
        let tag_len = self.profile.rtp_overhead();
        if buf.len() < 8 + 4 + tag_len {
            return Err(SrtpError::TooShort {
                what: WHAT,
                len: buf.len(),
            });
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(SrtpError::BadVersion {
                what: WHAT,
                version,
            });
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let n = buf.len();
        // AES-CM: ... | E+index | tag. GCM: ... | tag | E+index.
        let (word_at, tag_at, body_end) = match self.rtcp.cipher {
            Cipher::Cm { .. } => (n - tag_len - 4, n - tag_len, n - tag_len - 4),
            Cipher::Gcm(_) => (n - 4, n - 4 - tag_len, n - 4 - tag_len),
        };
        let word = u32::from_be_bytes([
            buf[word_at],
            buf[word_at + 1],
            buf[word_at + 2],
            buf[word_at + 3],
        ]);
        let encrypted = word & 0x8000_0000 != 0;
        let index = word & SRTCP_INDEX_MASK;
        let st = self.state(ssrc);
        replay_check(st.rtcp_highest, st.rtcp_window, u64::from(index), WHAT)?;

        match &self.rtcp.cipher {
            Cipher::Cm { aes, auth } => {
                let mut mac = auth.clone();
                mac.update(&buf[..tag_at]);
                let tag = mac.finalize().into_bytes();
                if !tags_equal(&tag[..CM_TAG_LEN], &buf[tag_at..]) {
                    return Err(SrtpError::AuthFailed { what: WHAT });
                }
                if encrypted {
                    SessionKeys::cm_apply(
                        aes,
                        &self.rtcp.salt,
                        ssrc,
                        u64::from(index),
                        &mut buf[8..body_end],
                    );
                }
            }
            Cipher::Gcm(key) => {
                let nonce = self.rtcp.gcm_nonce(ssrc, index >> 16, index as u16);
                let word = word.to_be_bytes();
                if encrypted {
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(&buf[..8]);
                    aad[8..].copy_from_slice(&word);
                    key.open_in_place(nonce, aead::Aad::from(aad), &mut buf[8..word_at])
                        .map_err(|_| SrtpError::AuthFailed { what: WHAT })?;
                } else {
                    // Authentication only (RFC 7714 §9.2): AAD = whole packet | word, the
                    // ciphertext is empty and only the tag is checked.
                    let (head, rest) = buf.split_at_mut(tag_at);
                    let aad = auth_only_aad(head, &word);
                    key.open_in_place(nonce, aead::Aad::from(&aad[..]), &mut rest[..tag_len])
                        .map_err(|_| SrtpError::AuthFailed { what: WHAT })?;
                }
            }
        }
        let i = self.state_index(ssrc)?;
        let st = &mut self.ssrcs[i];
        replay_update(&mut st.rtcp_highest, &mut st.rtcp_window, u64::from(index));
        Ok(body_end)
    }
}

/// AAD of an unencrypted SRTCP-GCM packet: the packet then its E/index word. Rare (browsers
/// encrypt RTCP), so a small allocation is fine here.
fn auth_only_aad(head: &[u8], word: &[u8; 4]) -> Vec<u8> {
    let mut v = Vec::with_capacity(head.len() + 4);
    v.extend_from_slice(head);
    v.extend_from_slice(word);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let clean: Vec<u8> = s.bytes().filter(|c| c.is_ascii_hexdigit()).collect();
        clean
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// A context with session keys given directly (the RFC 7714 vectors skip the KDF).
    fn session_ctx(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> SrtpContext {
        SrtpContext {
            profile,
            rtp: SessionKeys::from_session(profile, key, salt, None),
            rtcp: SessionKeys::from_session(profile, key, salt, None),
            ssrcs: Vec::new(),
        }
    }

    const GCM_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
    const GCM_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const GCM_SALT: &str = "517569642070726f2071756f";
    const RTP_PLAIN: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f
        6d6e6973 20646976 69736120 696e2070 61727465 73207472 6573";
    const RTCP_PLAIN: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a
        0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";

    /// RFC 3711 Appendix B.2: the AES-CM keystream for session key 2B7E..., salt
    /// F0F1...FCFD, SSRC 0, index 0 (counter blocks 0000, 0001, 0002, FEFF, FF00, FF01).
    #[test]
    fn rfc3711_b2_keystream() {
        let aes = Aes128Enc::new_from_slice(&hex("2B7E151628AED2A6ABF7158809CF4F3C")).unwrap();
        let mut salt = [0u8; 14];
        salt.copy_from_slice(&hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"));
        let mut ks = vec![0u8; 16 * 0xff02];
        SessionKeys::cm_apply(&aes, &salt, 0, 0, &mut ks);
        let block = |i: usize| ks[16 * i..16 * (i + 1)].to_vec();
        assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(block(0xfeff), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(block(0xff00), hex("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(block(0xff01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
    }

    /// RFC 3711 Appendix B.3: key derivation with the AES-CM PRF.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut out = [0u8; 16];
        kdf(&key, &salt, LABEL_RTP_ENC, &mut out);
        assert_eq!(out.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut out = [0u8; 14];
        kdf(&key, &salt, LABEL_RTP_SALT, &mut out);
        assert_eq!(out.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut out = [0u8; 94];
        kdf(&key, &salt, LABEL_RTP_AUTH, &mut out);
        assert_eq!(
            out.to_vec(),
            hex(
                "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
            )
        );
    }

    /// AES128_CM_HMAC_SHA1_80 end to end (KDF, keystream, HMAC-SHA1 tag) on the RFC 3711
    /// B.3 master key: libsrtp's `srtp_validate` reference packets, exact bytes.
    #[test]
    fn libsrtp_reference_packets_aes_cm() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let profile = SrtpProfile::Aes128CmHmacSha1_80;
        let mut tx = SrtpContext::new(profile, &key, &salt).unwrap();
        let plain = hex("800f1234 decafbad cafebabe abababab abababab abababab abababab");
        let want = hex(
            "800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 949d2402
             b78d6acc 99ea179b 8dbb",
        );
        let mut out = Vec::new();
        tx.protect_rtp_packet(&plain, &mut out).unwrap();
        assert_eq!(out, want);
        let mut rx = SrtpContext::new(profile, &key, &salt).unwrap();
        let n = rx.unprotect_rtp(&mut out).unwrap();
        assert_eq!(out[..n], plain[..]);

        // SRTCP, index 1 (libsrtp's first index).
        let rtcp = hex("81c8000b cafebabe abababab abababab abababab abababab");
        let want = hex(
            "81c8000b cafebabe 7128035b e487b9bd bef89041 f977a5a8 80000001
             993e08cd 54d6c123 0798",
        );
        let i = tx.state_index(0xcafe_babe).unwrap();
        tx.ssrcs[i].rtcp_next = 1;
        tx.protect_rtcp(&rtcp, &mut out).unwrap();
        assert_eq!(out, want);
        let n = rx.unprotect_rtcp(&mut out).unwrap();
        assert_eq!(out[..n], rtcp[..]);
    }

    /// RFC 7714 §16.1: AEAD_AES_128_GCM SRTP, exact bytes both ways, then a replay.
    #[test]
    fn rfc7714_srtp_gcm128() {
        let want = hex(
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
             0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce",
        );
        let plain = hex(RTP_PLAIN);
        let mut tx = session_ctx(
            SrtpProfile::AeadAes128Gcm,
            &hex(GCM_KEY_128),
            &hex(GCM_SALT),
        );
        let mut out = Vec::new();
        tx.protect_rtp(&plain[..12], &plain[12..], &mut out)
            .unwrap();
        assert_eq!(out, want);

        let mut rx = session_ctx(
            SrtpProfile::AeadAes128Gcm,
            &hex(GCM_KEY_128),
            &hex(GCM_SALT),
        );
        let mut buf = want.clone();
        let n = rx.unprotect_rtp(&mut buf).unwrap();
        assert_eq!(&buf[..n], &plain[..]);
        let mut buf = want;
        assert!(matches!(
            rx.unprotect_rtp(&mut buf),
            Err(SrtpError::Replayed { .. })
        ));
    }

    /// RFC 7714 §16.2: AEAD_AES_256_GCM SRTP.
    #[test]
    fn rfc7714_srtp_gcm256() {
        let want = hex(
            "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238
             9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13",
        );
        let plain = hex(RTP_PLAIN);
        let mut tx = session_ctx(
            SrtpProfile::AeadAes256Gcm,
            &hex(GCM_KEY_256),
            &hex(GCM_SALT),
        );
        let mut out = Vec::new();
        tx.protect_rtp_packet(&plain, &mut out).unwrap();
        assert_eq!(out, want);
        let mut rx = session_ctx(
            SrtpProfile::AeadAes256Gcm,
            &hex(GCM_KEY_256),
            &hex(GCM_SALT),
        );
        let mut buf = want;
        let n = rx.unprotect_rtp(&mut buf).unwrap();
        assert_eq!(&buf[..n], &plain[..]);
    }

    /// RFC 7714 §17.1: SRTCP AEAD_AES_128_GCM, encrypted, index 0x5d4.
    #[test]
    fn rfc7714_srtcp_gcm128() {
        let want = hex(
            "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
             c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
             45d9eade 800005d4",
        );
        let plain = hex(RTCP_PLAIN);
        let mut tx = session_ctx(
            SrtpProfile::AeadAes128Gcm,
            &hex(GCM_KEY_128),
            &hex(GCM_SALT),
        );
        let i = tx.state_index(0x4d61_7273).unwrap();
        tx.ssrcs[i].rtcp_next = 0x5d4;
        let mut out = Vec::new();
        tx.protect_rtcp(&plain, &mut out).unwrap();
        assert_eq!(out, want);
        let mut rx = session_ctx(
            SrtpProfile::AeadAes128Gcm,
            &hex(GCM_KEY_128),
            &hex(GCM_SALT),
        );
        let mut buf = want.clone();
        let n = rx.unprotect_rtcp(&mut buf).unwrap();
        assert_eq!(&buf[..n], &plain[..]);
        let mut buf = want;
        assert!(matches!(
            rx.unprotect_rtcp(&mut buf),
            Err(SrtpError::Replayed { .. })
        ));
    }

    /// RFC 7714 §17.2: SRTCP AEAD_AES_256_GCM decryption.
    #[test]
    fn rfc7714_srtcp_gcm256() {
        let wire = hex(
            "81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d bffe0a50
             a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c
             b26ac3be 800005d4",
        );
        let mut rx = session_ctx(
            SrtpProfile::AeadAes256Gcm,
            &hex(GCM_KEY_256),
            &hex(GCM_SALT),
        );
        let mut buf = wire;
        let n = rx.unprotect_rtcp(&mut buf).unwrap();
        assert_eq!(&buf[..n], &hex(RTCP_PLAIN)[..]);
    }

    /// RFC 7714 §17.3/§17.4: SRTCP with the E flag clear (authentication only).
    #[test]
    fn rfc7714_srtcp_gcm_auth_only() {
        for (profile, key, tag) in [
            (
                SrtpProfile::AeadAes128Gcm,
                GCM_KEY_128,
                "841dd968 3dd78ec9 2ae58790 125f62b3",
            ),
            (
                SrtpProfile::AeadAes256Gcm,
                GCM_KEY_256,
                "91db4afb feee5a97 8fab4393 ed2615fe",
            ),
        ] {
            let mut wire = hex(RTCP_PLAIN);
            wire.extend(hex(tag));
            wire.extend(hex("000005d4"));
            let mut rx = session_ctx(profile, &hex(key), &hex(GCM_SALT));
            let mut buf = wire.clone();
            let n = rx.unprotect_rtcp(&mut buf).unwrap();
            assert_eq!(&buf[..n], &hex(RTCP_PLAIN)[..], "{profile:?}");
            // One flipped payload bit fails authentication.
            let mut rx = session_ctx(profile, &hex(key), &hex(GCM_SALT));
            wire[20] ^= 1;
            assert!(matches!(
                rx.unprotect_rtcp(&mut wire),
                Err(SrtpError::AuthFailed { .. })
            ));
        }
    }

    fn rtp(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend((0..payload_len).map(|i| i as u8));
        p
    }

    fn pair(profile: SrtpProfile) -> (SrtpContext, SrtpContext) {
        let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
        // What the server sends with its half, the client receives with the same half.
        let (srv_tx, _) = contexts_from_keying_material(profile, &material, Role::Server).unwrap();
        let (_, cli_rx) = contexts_from_keying_material(profile, &material, Role::Client).unwrap();
        (srv_tx, cli_rx)
    }

    const PROFILES: [SrtpProfile; 3] = [
        SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
    ];

    /// Round trip across a sequence wrap (ROC 0 -> 1), with reordering, replays and a
    /// tampered tag; the receiver's ROC follows the sender's.
    #[test]
    fn roundtrip_rollover_reorder_replay() {
        for profile in PROFILES {
            let (mut tx, mut rx) = pair(profile);
            let seqs: Vec<u16> = (65530..=65535).chain(0..6).collect();
            let mut wire = Vec::new();
            for &s in &seqs {
                let mut out = Vec::new();
                tx.protect_rtp_packet(&rtp(s, 0x1234, 100), &mut out)
                    .unwrap();
                assert_eq!(out.len(), 12 + 100 + profile.rtp_overhead());
                wire.push((s, out));
            }
            // Deliver 65534 after 0 (reordered across the wrap).
            let order = [0, 1, 2, 3, 5, 6, 4, 7, 8, 9, 10, 11];
            for &k in &order {
                let (s, pkt) = &wire[k];
                let mut buf = pkt.clone();
                let n = rx
                    .unprotect_rtp(&mut buf)
                    .unwrap_or_else(|e| panic!("{profile:?} seq {s}: {e}"));
                assert_eq!(buf[..n], rtp(*s, 0x1234, 100)[..]);
            }
            let st = rx.state(0x1234);
            assert_eq!(st.rtp_highest, Some((1 << 16) | 5), "{profile:?}");
            // Replays of old and new packets are refused.
            for k in [4, 11] {
                let mut buf = wire[k].1.clone();
                assert!(matches!(
                    rx.unprotect_rtp(&mut buf),
                    Err(SrtpError::Replayed { .. })
                ));
            }
            // A flipped bit anywhere fails authentication and moves no state.
            let mut bad = rtp(6, 0x1234, 100);
            let mut out = Vec::new();
            tx.protect_rtp_packet(&bad, &mut out).unwrap();
            for pos in [1, 20, out.len() - 1] {
                let mut b = out.clone();
                b[pos] ^= 0x40;
                assert!(rx.unprotect_rtp(&mut b).is_err(), "{profile:?} pos {pos}");
            }
            let mut b = out.clone();
            let n = rx.unprotect_rtp(&mut b).unwrap();
            bad.truncate(n);
            assert_eq!(b[..n], bad[..]);
        }
    }

    #[test]
    fn srtcp_roundtrip_and_tamper() {
        for profile in PROFILES {
            let (mut tx, mut rx) = pair(profile);
            let rr = hex("81c90007 deadbeef 00001234 00000000 00000000 00000000 00000000 00000000");
            for i in 0..3u32 {
                let mut out = Vec::new();
                tx.protect_rtcp(&rr, &mut out).unwrap();
                assert_eq!(out.len(), rr.len() + profile.rtcp_overhead());
                let mut b = out.clone();
                let n = rx.unprotect_rtcp(&mut b).unwrap();
                assert_eq!(b[..n], rr[..], "{profile:?} index {i}");
                assert!(matches!(
                    rx.unprotect_rtcp(&mut out.clone()),
                    Err(SrtpError::Replayed { .. })
                ));
                // A tampered fresh packet fails authentication (a tampered replay is
                // refused as a replay before any crypto).
                tx.protect_rtcp(&rr, &mut out).unwrap();
                out[9] ^= 1;
                assert!(matches!(
                    rx.unprotect_rtcp(&mut out),
                    Err(SrtpError::AuthFailed { .. })
                ));
            }
        }
    }

    #[test]
    fn replay_window_bounds() {
        let (mut tx, mut rx) = pair(SrtpProfile::AeadAes128Gcm);
        let mut pkts = Vec::new();
        for s in 0..300u16 {
            let mut out = Vec::new();
            tx.protect_rtp_packet(&rtp(s, 7, 10), &mut out).unwrap();
            pkts.push(out);
        }
        let mut b = pkts[299].clone();
        rx.unprotect_rtp(&mut b).unwrap();
        // 299 - 128 is just outside the window, 299 - 127 just inside.
        assert!(matches!(
            rx.unprotect_rtp(&mut pkts[171].clone()),
            Err(SrtpError::TooOld { .. })
        ));
        rx.unprotect_rtp(&mut pkts[172].clone()).unwrap();
    }

    #[test]
    fn malformed_input_is_an_error() {
        for profile in PROFILES {
            let (mut tx, mut rx) = pair(profile);
            let mut out = Vec::new();
            // Header claims an extension longer than the packet.
            let mut p = rtp(1, 1, 0);
            p[0] |= 0x10;
            p.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff]);
            assert!(tx.protect_rtp_packet(&p, &mut out).is_err());
            // CSRC count past the end, bad version, short header.
            assert!(tx.protect_rtp_packet(&[0x8f; 20], &mut out).is_err());
            assert!(tx.protect_rtp_packet(&[0x40; 20], &mut out).is_err());
            assert!(tx.protect_rtp(&[0x80; 11], &[], &mut out).is_err());
            assert!(tx.protect_rtcp(&[0x80; 7], &mut out).is_err());
            // Every length of junk, every prefix of a valid packet: errors, no panic.
            let mut good = Vec::new();
            tx.protect_rtp_packet(&rtp(9, 9, 50), &mut good).unwrap();
            for n in 0..good.len() {
                assert!(rx.unprotect_rtp(&mut good[..n].to_vec()).is_err());
                assert!(rx.unprotect_rtcp(&mut good[..n].to_vec()).is_err());
            }
            for n in 0..64 {
                let mut junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
                assert!(rx.unprotect_rtp(&mut junk.clone()).is_err());
                assert!(rx.unprotect_rtcp(&mut junk).is_err());
            }
            assert!(matches!(
                rx.unprotect_rtp(&mut vec![0x80; MAX_PACKET_LEN + 1]),
                Err(SrtpError::TooLong { .. })
            ));
            assert!(SrtpContext::new(profile, &[0; 3], &[0; 3]).is_err());
            assert!(contexts_from_keying_material(profile, &[0; 10], Role::Server).is_err());
        }
    }

    #[test]
    fn ssrc_table_is_bounded() {
        let (mut tx, _) = pair(SrtpProfile::AeadAes128Gcm);
        let mut out = Vec::new();
        for ssrc in 0..MAX_SSRCS as u32 {
            tx.protect_rtp_packet(&rtp(0, ssrc, 4), &mut out).unwrap();
        }
        assert_eq!(
            tx.protect_rtp_packet(&rtp(0, 999, 4), &mut out),
            Err(SrtpError::TooManySsrcs)
        );
    }

    #[test]
    fn rtcp_demux_and_context_size() {
        assert!(is_rtcp(&hex("81c8000d")) && is_rtcp(&hex("81cd0002")));
        // RTP with and without the marker bit, PT 96 / 111.
        assert!(!is_rtcp(&hex("8060")) && !is_rtcp(&hex("80ef")) && !is_rtcp(&[0x80]));
        // Per-viewer memory: two contexts per viewer must stay small.
        let size = std::mem::size_of::<SrtpContext>();
        assert!(size <= 1280, "SrtpContext is {size} bytes");
    }

    #[test]
    fn index_estimate_matches_rfc3711() {
        assert_eq!(estimate_index(None, 5), 5);
        // Just after a wrap, a late packet from before it belongs to ROC - 1.
        assert_eq!(estimate_index(Some((1 << 16) | 3), 65534), 65534);
        // Late in the sequence space, a small seq is the next ROC.
        assert_eq!(estimate_index(Some(65530), 2), (1 << 16) | 2);
        // ROC 0 never goes negative.
        assert_eq!(estimate_index(Some(3), 65534), 65534);
    }
}
