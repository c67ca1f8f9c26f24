//! Readiness of many ingest sockets (pulled cameras over TCP and UDP, RTSP publishers)
//! through one epoll set per shard, waited on by one io_uring poll in glommio's loop.
//!
//! Why (issue #10): glommio arms a one-shot io_uring poll on a socket after every read, and
//! its rings have no setup flags, so each completion is task work signalled to the shard's
//! thread, which wakes any interruptible sleep. A shard pulling hundreds of cameras was
//! woken about ten times per egress-tick nap, a context switch in and out per arrival. With
//! the sockets in an edge-triggered epoll set an arrival is a list insert; only the set's
//! own poll completes, at most once per wait, so a nap is woken at most once.
//!
//! glommio 0.9 has no public way to wait on an arbitrary descriptor. A glommio `TcpStream`
//! made from a descriptor arms a read poll on it at once, and its first read waits for that
//! poll before trying `recv`; on an epoll descriptor that `recv` then fails (`ENOTSOCK`), so
//! "the read returned" means "the set became readable". `wait_set` does that on a duplicate
//! of the set's descriptor, one per wait. A unit test pins the behaviour: if a glommio
//! update changed it, the wait would return at once and the poller falls back to a 1 ms
//! timer (correct, only costlier).

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};

/// `CORECAST_NO_EPOLL=1`: ingest sockets are read through glommio instead (A/B runs).
pub fn disabled() -> bool {
    std::env::var_os("CORECAST_NO_EPOLL").is_some_and(|v| v != "0")
}

/// Events taken per `epoll_wait`; more are taken in another call before waiting.
const EVENTS: usize = 256;

struct Slot {
    /// Bumped when the slot is freed, so an old registration's key cannot name a new one.
    generation: u32,
    ready: bool,
    /// The peer closed (or the socket failed): from then on only a read returning 0 or an
    /// error ends readiness. A short read does not: when data and the close came before
    /// one event, that read takes the data and no edge follows for the close (a publisher
    /// killed right after sending would never be seen to leave).
    hup: bool,
    waker: Option<Waker>,
}

/// One shard's epoll set and the state of its registered sockets.
pub struct ReadySet {
    epfd: OwnedFd,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    /// The executor whose poller serves the set (a thread could run a second executor
    /// after the first ended, and its poller with it).
    poller: Cell<Option<usize>>,
}

thread_local! {
    static SET: RefCell<Option<Rc<ReadySet>>> = const { RefCell::new(None) };
}

impl ReadySet {
    /// This thread's set, created on first use (None when epoll cannot be created).
    fn get() -> Option<Rc<ReadySet>> {
        SET.with(|s| {
            let mut s = s.borrow_mut();
            if s.is_none() {
                // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new
                // descriptor we own.
                let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
                if fd < 0 {
                    return None;
                }
                *s = Some(Rc::new(ReadySet {
                    // SAFETY: `fd` was just created and is owned by nothing else.
                    epfd: unsafe { OwnedFd::from_raw_fd(fd) },
                    slots: RefCell::new(Vec::new()),
                    free: RefCell::new(Vec::new()),
                    poller: Cell::new(None),
                }));
            }
            s.clone()
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: data,
        };
        // SAFETY: `ev` lives across the call; epoll_ctl only reads it.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Takes what is ready without blocking and wakes those sockets' readers; returns how
    /// many events were taken.
    fn dispatch(&self, events: &mut [libc::epoll_event]) -> usize {
        // SAFETY: `events` is writable for `len` entries; timeout 0 never blocks.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                0,
            )
        };
        let n = n.max(0) as usize;
        let mut slots = self.slots.borrow_mut();
        for ev in &events[..n] {
            let data = ev.u64;
            let (key, generation) = ((data & 0xffff_ffff) as usize, (data >> 32) as u32);
            if let Some(s) = slots.get_mut(key).filter(|s| s.generation == generation) {
                s.ready = true;
                s.hup |=
                    ev.events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
        n
    }

    /// The shard's poller: dispatches, then waits for the set to become readable.
    async fn run(self: Rc<Self>) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let tick = std::time::Duration::from_millis(1);
        let mut after_wait = false;
        loop {
            let n = self.dispatch(&mut events);
            if n == EVENTS {
                futures_lite::future::yield_now().await;
                after_wait = false;
                continue;
            }
            if n == 0 && after_wait {
                // The wait returned with nothing ready: rare (a socket removed meanwhile),
                // or glommio no longer waits as relied on. Poll on a timer, never spin.
                glommio::timer::sleep(tick).await;
                after_wait = false;
                continue;
            }
            if !self.wait_set().await {
                // The wait could not be set up (no descriptor for the duplicate).
                glommio::timer::sleep(tick).await;
                after_wait = false;
                continue;
            }
            after_wait = true;
        }
    }

    /// Waits until the set is readable; false when it could not wait.
    async fn wait_set(&self) -> bool {
        use futures_lite::AsyncReadExt;
        let Ok(dup) = self.epfd.try_clone() else {
            return false;
        };
        // SAFETY: `dup` is an open descriptor owned by nothing else; the stream owns it
        // from here and closes it when dropped. It is never used as a socket: the read only
        // waits for the poll armed at construction (see the module comment).
        let mut s = unsafe {
            glommio::net::TcpStream::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(dup))
        };
        let mut b = [0u8; 1];
        // Always an error (ENOTSOCK) once the set is readable.
        let _ = s.read(&mut b).await;
        true
    }
}

/// A socket in its shard's epoll set, until dropped (drop it before closing the socket).
pub struct Registration {
    set: Rc<ReadySet>,
    fd: RawFd,
    key: u32,
    generation: u32,
}

impl Registration {
    /// Adds `fd` (a socket read by this shard: TCP through `read`, UDP through `readable`
    /// and `drained`) to the shard's set; starts the shard's poller on first use. Must run
    /// inside a glommio executor.
    pub fn new(fd: RawFd) -> io::Result<Registration> {
        let set = ReadySet::get().ok_or_else(io::Error::last_os_error)?;
        let (key, generation) = {
            let mut slots = set.slots.borrow_mut();
            let key = match set.free.borrow_mut().pop() {
                Some(k) => k,
                None => {
                    slots.push(Slot {
                        generation: 0,
                        ready: false,
                        hup: false,
                        waker: None,
                    });
                    (slots.len() - 1) as u32
                }
            };
            let s = &mut slots[key as usize];
            // Ready until a read finds the socket empty: data may be there already.
            s.ready = true;
            s.hup = false;
            s.waker = None;
            (key, s.generation)
        };
        let data = ((generation as u64) << 32) | key as u64;
        if let Err(e) = set.ctl(libc::EPOLL_CTL_ADD, fd, data) {
            free_slot(&set, key);
            return Err(e);
        }
        let executor = glommio::executor().id();
        if set.poller.replace(Some(executor)) != Some(executor) {
            glommio::spawn_local(set.clone().run()).detach();
        }
        Ok(Registration {
            set,
            fd,
            key,
            generation,
        })
    }

    /// Reads what the socket holds, waiting for readiness when it holds nothing.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.readable().await;
            // SAFETY: `buf` is writable for its length; MSG_DONTWAIT never blocks.
            let n = unsafe {
                libc::recv(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                let n = n as usize;
                // A full read may have left more.
                if n < buf.len() && n > 0 {
                    self.emptied();
                }
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => self.set_ready(false),
                io::ErrorKind::Interrupted => {}
                _ => return Err(e),
            }
        }
    }

    /// For datagram sockets, read until `EAGAIN` (a short read says nothing there): call
    /// after a read found the socket empty, so the next `readable` waits for a new edge.
    pub fn drained(&self) {
        self.set_ready(false);
    }

    /// A short read emptied the socket: not ready until the next edge, unless the peer
    /// closed (its end is still to be read, and no edge will come for it).
    fn emptied(&self) {
        if let Some(s) = self.set.slots.borrow_mut().get_mut(self.key as usize) {
            s.ready &= s.hup;
        }
    }

    fn set_ready(&self, ready: bool) {
        if let Some(s) = self.set.slots.borrow_mut().get_mut(self.key as usize) {
            s.ready = ready;
        }
    }

    /// Ready while the socket may hold data: from an event until `drained` (or a short
    /// `read`).
    pub async fn readable(&self) {
        futures_lite::future::poll_fn(|cx| {
            let mut slots = self.set.slots.borrow_mut();
            let s = &mut slots[self.key as usize];
            if s.ready {
                Poll::Ready(())
            } else {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

fn free_slot(set: &ReadySet, key: u32) {
    let mut slots = set.slots.borrow_mut();
    let s = &mut slots[key as usize];
    s.generation = s.generation.wrapping_add(1);
    s.ready = false;
    s.hup = false;
    s.waker = None;
    set.free.borrow_mut().push(key);
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Fails only if the socket is already closed, which removed it from the set.
        let _ = self.set.ctl(libc::EPOLL_CTL_DEL, self.fd, 0);
        debug_assert_eq!(
            self.set.slots.borrow()[self.key as usize].generation,
            self.generation
        );
        free_slot(&self.set, self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;
    use std::io::Write;
    use std::time::Duration;

    fn run<G, F>(g: G)
    where
        G: FnOnce() -> F + Send + 'static,
        F: std::future::Future<Output = ()> + 'static,
    {
        LocalExecutorBuilder::default()
            .spawn(g)
            .expect("executor")
            .join()
            .expect("join");
    }

    /// The glommio behaviour `wait_set` relies on: the wait returns only once the set is
    /// readable, not at once.
    #[test]
    fn set_wait_blocks_until_an_event() {
        run(|| async {
            let set = ReadySet::get().unwrap();
            let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            set.ctl(libc::EPOLL_CTL_ADD, a.as_raw_fd(), 7).unwrap();
            let waited = futures_lite::future::or(
                async {
                    set.wait_set().await;
                    true
                },
                async {
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    false
                },
            )
            .await;
            assert!(!waited, "the wait returned with nothing readable");
            b.write_all(b"x").unwrap();
            let waited = glommio::timer::timeout(Duration::from_secs(5), async {
                set.wait_set().await;
                Ok(())
            })
            .await;
            assert!(waited.is_ok(), "the wait missed the event");
            let mut ev = vec![libc::epoll_event { events: 0, u64: 0 }; 4];
            assert_eq!(set.dispatch(&mut ev), 1);
            assert_eq!({ ev[0].u64 }, 7);
            set.ctl(libc::EPOLL_CTL_DEL, a.as_raw_fd(), 0).unwrap();
        });
    }

    /// Reads through registrations: data written before and after the reader waits all
    /// arrives, end-of-file reads 0, and a dropped registration frees its slot for reuse.
    #[test]
    fn registered_sockets_read_everything() {
        run(|| async {
            let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            let (c, mut d) = std::os::unix::net::UnixStream::pair().unwrap();
            b.write_all(b"early").unwrap();
            let ra = Registration::new(a.as_raw_fd()).unwrap();
            let rc = Registration::new(c.as_raw_fd()).unwrap();
            let mut buf = [0u8; 64];
            assert_eq!(ra.read(&mut buf).await.unwrap(), 5);
            let writer = std::thread::spawn(move || {
                for _ in 0..50 {
                    b.write_all(&[1u8; 10]).unwrap();
                    d.write_all(&[2u8; 10]).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            let (mut got_a, mut got_c) = (0, 0);
            let deadline = glommio::timer::timeout(Duration::from_secs(10), async {
                while got_a < 500 || got_c < 500 {
                    let mut x = [0u8; 64];
                    let mut y = [0u8; 64];
                    if got_a < 500 {
                        got_a += ra.read(&mut x).await.unwrap();
                    }
                    if got_c < 500 {
                        got_c += rc.read(&mut y).await.unwrap();
                    }
                }
                Ok(())
            })
            .await;
            writer.join().unwrap();
            assert!(
                deadline.is_ok(),
                "read {got_a} and {got_c} of 500 bytes each"
            );
            let key = rc.key;
            drop(rc);
            drop(c);
            // The writer's end closed when its thread ended: end-of-file arrives as an event.
            assert_eq!(ra.read(&mut buf).await.unwrap(), 0);
            let (e, _f) = std::os::unix::net::UnixStream::pair().unwrap();
            let re = Registration::new(e.as_raw_fd()).unwrap();
            assert_eq!(re.key, key, "the freed slot is reused");
        });
    }

    /// The last data and the peer's close that come before one event (a publisher killed
    /// right after a write): the read after the data returns the end, it does not wait for
    /// an edge that never comes.
    #[test]
    fn a_close_that_came_with_the_last_data_is_read() {
        run(|| async {
            let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            let ra = Rc::new(Registration::new(a.as_raw_fd()).unwrap());
            let r = ra.clone();
            let reader = glommio::spawn_local(async move {
                let mut buf = [0u8; 64];
                let first = r.read(&mut buf).await.unwrap();
                let second = glommio::timer::timeout(Duration::from_secs(5), async {
                    Ok(r.read(&mut buf).await.unwrap())
                })
                .await;
                (first, second.ok())
            })
            .detach();
            // The reader finds the socket empty and waits for an event...
            for _ in 0..3 {
                futures_lite::future::yield_now().await;
            }
            // ...then data and the close arrive with no turn of the poller between them.
            b.write_all(b"last").unwrap();
            drop(b);
            let got = reader.await.expect("reader");
            assert_eq!(got, (4, Some(0)), "the close after the data was missed");
            drop(ra);
        });
    }
}
