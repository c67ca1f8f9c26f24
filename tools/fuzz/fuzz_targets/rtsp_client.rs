//! A pull session driven through a fixed OPTIONS/DESCRIBE exchange, then fed arbitrary bytes
//! in input-chosen chunks with timers, UDP port hand-outs and a teardown along the way. The
//! client may fail, but must never panic, and must keep its invariants (a failed session
//! stays failed, output is always well-formed RTSP).
#![no_main]

use bytes::BytesMut;
use corecast::rtsp::client::{parse_source_url, Client, ClientEvent, ClientState};
use corecast::rtsp::message::{parse, Message};
use libfuzzer_sys::fuzz_target;

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=cam\r\nt=0 0\r\na=control:*\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n\
m=audio 0 RTP/AVP 8\r\na=control:trackID=1\r\n\
m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\na=control:trackID=2\r\n";

fn drain(client: &mut Client) {
    let mut out = Vec::new();
    client.poll_transmit(&mut out);
    let mut buf = BytesMut::from(&out[..]);
    while let Some(msg) = parse(&mut buf).expect("client output is valid RTSP") {
        assert!(!matches!(msg, Message::Interleaved { .. }));
    }
    assert!(buf.is_empty());
    while let Some(ev) = client.poll_event() {
        if let ClientEvent::NeedUdpPorts { media_index } = ev {
            let port = 40000 + 2 * media_index as u16;
            client.set_udp_ports(media_index, port, port + 1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let url = match mode % 4 {
        0 => "rtsp://10.0.0.1/cam",
        1 => "rtsp://admin:secret@10.0.0.1/cam",
        2 => "rtsp://10.0.0.1/cam#transport=udp",
        _ => "rtsps://admin:secret@[fe80::1]:8322/cam?x=1#media=video",
    };
    let mut now = 1_000_000u64;
    let mut client = Client::new(parse_source_url(url).expect("fixed URL"), now);
    // The pull loop's mode: interleaved payloads copied out of the read buffer.
    if mode & 4 != 0 {
        client.copy_payloads();
    }
    drain(&mut client);
    let fixed = format!(
        "RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER\r\n\r\n\
         RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Base: rtsp://10.0.0.1:554/cam/\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let mut buf = BytesMut::from(fixed.as_bytes());
    client
        .handle_input(&mut buf, now)
        .expect("fixed exchange is valid");
    drain(&mut client);

    // Chunk sizes and actions from a small xorshift seeded by the mode byte.
    let mut state = u32::from(mode) | 1;
    let mut pos = 0;
    let mut failed = false;
    while pos < input.len() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = 1 + (state as usize % 512).min(input.len() - pos - 1);
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        let result = client.handle_input(&mut buf, now);
        if failed {
            assert!(result.is_err(), "a failed session stays failed");
        }
        if result.is_err() {
            failed = true;
            assert_eq!(client.state(), ClientState::Failed);
            assert_eq!(client.poll_timeout(), None);
        }
        drain(&mut client);
        match state % 16 {
            0 => {
                now += 31_000_000;
                client.handle_timeout(now);
                if let Some(t) = client.poll_timeout() {
                    assert!(t > now, "timer not advanced: {t} at {now}");
                }
            }
            1 => client.teardown(),
            2 => client.set_udp_ports((state >> 8) as usize % 4, 50000, 50001),
            _ => now += 1000,
        }
        drain(&mut client);
    }
});
