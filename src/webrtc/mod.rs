pub mod dtls;
pub mod sdp;
pub mod srtp;
