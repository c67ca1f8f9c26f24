//! Per-viewer cost of WebRTC egress: protecting one 1200-byte RTP packet (12-byte header
//! copy + payload slice) into a reused output buffer, for each SRTP profile; and the
//! receive side (unprotect in place). Results in BENCHMARKS.md.

use corecast::webrtc::srtp::{contexts_from_keying_material, Role, SrtpProfile};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const PROFILES: [SrtpProfile; 3] = [
    SrtpProfile::Aes128CmHmacSha1_80,
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::AeadAes256Gcm,
];

fn header(seq: u16) -> [u8; 12] {
    let mut h = [0x80, 96, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h
}

fn bench_srtp(c: &mut Criterion) {
    let payload = vec![0xa5u8; 1200 - 12];
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Bytes(1200));
    for profile in PROFILES {
        let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
        let (mut tx, _) = contexts_from_keying_material(profile, &material, Role::Server)
            .expect("material length from the profile");
        let mut out = Vec::with_capacity(1500);
        let mut seq = 0u16;
        g.bench_function(format!("protect_1200/{}", profile.name()), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                tx.protect_rtp(&header(seq), &payload, &mut out)
                    .expect("valid packet");
                out.len()
            })
        });

        let (_, mut rx) = contexts_from_keying_material(profile, &material, Role::Client)
            .expect("material length from the profile");
        let mut seq = 0u16;
        g.bench_function(format!("unprotect_1200/{}", profile.name()), |b| {
            b.iter_batched_ref(
                || {
                    seq = seq.wrapping_add(1);
                    let mut wire = Vec::with_capacity(1500);
                    tx.protect_rtp(&header(seq), &payload, &mut wire)
                        .expect("valid packet");
                    wire
                },
                |wire| rx.unprotect_rtp(wire).is_ok(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_srtp);
criterion_main!(benches);
