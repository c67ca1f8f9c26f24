//! Splitting an RTSP/TCP byte stream into interleaved frames (`$`, channel, length,
//! payload), skipping RTSP messages that appear between them (answers to keepalives).

/// What [`split`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Frame {
        channel: u8,
        data: &'a [u8],
    },
    /// An RTSP message (head and body), skipped.
    Message(&'a [u8]),
}

/// Longest RTSP message head we wait for before calling the stream corrupt.
const MAX_HEAD: usize = 64 * 1024;

/// Calls `f` for every complete item at the front of `buf` and returns how many bytes
/// were consumed (the rest is an incomplete item to keep for the next read), or `Err`
/// with the offset if the stream is not RTSP.
#[inline]
pub fn split<'a>(buf: &'a [u8], mut f: impl FnMut(Item<'a>)) -> Result<usize, usize> {
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if b == b'$' {
            if buf.len() - i < 4 {
                break;
            }
            let len = u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize;
            if buf.len() - i - 4 < len {
                break;
            }
            f(Item::Frame {
                channel: buf[i + 1],
                data: &buf[i + 4..i + 4 + len],
            });
            i += 4 + len;
        } else if b == b'\r' || b == b'\n' {
            i += 1;
        } else if b.is_ascii_uppercase() {
            // "RTSP/1.0 200 OK ..." (or a request from the server).
            let rest = &buf[i..];
            let Some(head_end) = find(rest, b"\r\n\r\n") else {
                if rest.len() > MAX_HEAD {
                    return Err(i);
                }
                break;
            };
            let head = &rest[..head_end + 4];
            let body = content_length(head).unwrap_or(0);
            if rest.len() < head.len() + body {
                break;
            }
            f(Item::Message(&rest[..head.len() + body]));
            i += head.len() + body;
        } else {
            return Err(i);
        }
    }
    Ok(i)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim().eq_ignore_ascii_case("content-length") {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ch: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![b'$', ch];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn collect(buf: &[u8]) -> (Vec<(u8, usize)>, usize, Result<usize, usize>) {
        let mut frames = Vec::new();
        let mut msgs = 0;
        let r = split(buf, |it| match it {
            Item::Frame { channel, data } => frames.push((channel, data.len())),
            Item::Message(_) => msgs += 1,
        });
        (frames, msgs, r)
    }

    #[test]
    fn frames_and_messages_and_partial_tail() {
        let mut buf = frame(0, &[1; 100]);
        buf.extend(b"RTSP/1.0 200 OK\r\nCSeq: 7\r\nContent-Length: 3\r\n\r\nabc");
        buf.extend(frame(1, &[2; 28]));
        buf.extend(frame(2, &[3; 1200]));
        let whole = buf.len();
        buf.extend(&frame(0, &[4; 50])[..20]);
        let (frames, msgs, r) = collect(&buf);
        assert_eq!(frames, vec![(0, 100), (1, 28), (2, 1200)]);
        assert_eq!(msgs, 1);
        assert_eq!(r, Ok(whole));
    }

    #[test]
    fn every_split_point_resumes() {
        let mut buf = Vec::new();
        for i in 0..20u8 {
            buf.extend(frame(i % 4, &vec![i; 10 + i as usize * 37]));
            if i == 7 {
                buf.extend(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n");
            }
        }
        for cut in 0..buf.len() {
            let (mut f1, m1, r1) = collect(&buf[..cut]);
            let used = r1.unwrap();
            let (f2, m2, r2) = collect(&buf[used..]);
            assert_eq!(r2, Ok(buf.len() - used));
            f1.extend(f2);
            assert_eq!(f1.len(), 20, "cut {cut}");
            assert_eq!(m1 + m2, 1);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(collect(b"\x00\x01").2, Err(0));
        let mut buf = frame(0, &[0; 4]);
        buf.push(0xff);
        assert_eq!(collect(&buf).2, Err(8));
    }
}
