//! A shard-wide heartbeat for connection loops that must wake now and then even when their
//! socket is quiet (to see a stop request, send a keepalive, notice a silent camera).
//!
//! Wrapping every read in `glommio::timer::timeout` made a timer per read: an insert and a
//! removal in the reactor's timer maps and a boxed future, ~1.5 % of a server pulling 500
//! cameras, whose reads come ~40 times a second each. Here a loop registers its task's waker
//! once per beat (a `Vec` push) and one timer per shard wakes every registered loop.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

pub struct Beat {
    period: Duration,
    /// Beats so far.
    epoch: Cell<u64>,
    /// Tasks to wake at the next beat (each at most once per beat, see `next`).
    wakers: RefCell<Vec<Waker>>,
    running: Cell<bool>,
}

impl Beat {
    pub fn new(period: Duration) -> Rc<Beat> {
        Rc::new(Beat {
            period,
            epoch: Cell::new(0),
            wakers: RefCell::new(Vec::new()),
            running: Cell::new(false),
        })
    }

    /// Completes at the next beat (within one period). `mark` belongs to the waiting loop
    /// and remembers the beat it registered for, so a loop that calls this on every turn
    /// (its reads win the race most of the time) registers its waker once per beat.
    pub fn next<'a>(self: &'a Rc<Self>, mark: &'a Cell<u64>) -> impl Future<Output = ()> + 'a {
        let since = self.epoch.get();
        futures_lite::future::poll_fn(move |cx| {
            if self.epoch.get() != since {
                return Poll::Ready(());
            }
            // `since + 1`, so a fresh mark (0) never matches.
            if mark.get() != since + 1 {
                mark.set(since + 1);
                self.wakers.borrow_mut().push(cx.waker().clone());
                self.start();
            }
            Poll::Pending
        })
    }

    /// Starts the shard's one timer task on first use (any glommio executor: shards and
    /// tests alike).
    fn start(self: &Rc<Self>) {
        if self.running.replace(true) {
            return;
        }
        let me = self.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(me.period).await;
                me.beat();
            }
        })
        .detach();
    }

    fn beat(&self) {
        self.epoch.set(self.epoch.get() + 1);
        let mut due = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in due.drain(..) {
            w.wake();
        }
        // Keep the allocation for the next beat's registrations.
        let mut cur = self.wakers.borrow_mut();
        if cur.is_empty() {
            *cur = due;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_registers_once_per_beat_and_wakes_at_the_next() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let beat = Beat::new(Duration::from_millis(20));
                let mark = Cell::new(0);
                // A loop whose reads keep winning: it polls a fresh `next` every turn.
                for _ in 0..100 {
                    let mut f = std::pin::pin!(beat.next(&mark));
                    let waker =
                        futures_lite::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
                    let mut cx = std::task::Context::from_waker(&waker);
                    assert!(f.as_mut().poll(&mut cx).is_pending());
                }
                assert_eq!(beat.wakers.borrow().len(), 1, "one registration per beat");
                // Then the socket is quiet: the beat ends the wait.
                let t0 = std::time::Instant::now();
                beat.next(&mark).await;
                assert!(t0.elapsed() < Duration::from_secs(2));
                assert_eq!(beat.epoch.get(), 1);
                assert!(beat.wakers.borrow().is_empty());
                // And the next wait registers again.
                beat.next(&mark).await;
                assert_eq!(beat.epoch.get(), 2);
            })
            .expect("glommio executor (io_uring, 512 KiB locked memory)")
            .join()
            .unwrap();
    }
}
