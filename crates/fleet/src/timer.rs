//! A precise timer for the publish schedule.
//!
//! tokio's timer wheel has 1 ms resolution and wakes a sleep on the first tick after its
//! deadline, so a send scheduled with `sleep_until` leaves 0-2 ms late (about 1.1 ms at the
//! median, measured). This timer keeps the deadlines in a heap on one thread of its own
//! (`fleet-timer`), which sleeps with `recv_timeout` (a futex with an hrtimer: tens of
//! microseconds of slack) and wakes the tasks whose deadlines have passed.
//!
//! Tasks register through a std channel: no lock is shared on the publish path.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

struct Entry {
    deadline: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

/// Handle to the timer thread; clone it freely. The thread ends when every handle is gone and
/// no deadline is pending.
#[derive(Clone)]
pub struct PreciseTimer {
    tx: Sender<(Instant, Waker)>,
}

impl PreciseTimer {
    pub fn start() -> std::io::Result<PreciseTimer> {
        let (tx, rx) = channel::<(Instant, Waker)>();
        std::thread::Builder::new()
            .name("fleet-timer".into())
            .spawn(move || {
                let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
                let mut seq = 0u64;
                let mut open = true;
                loop {
                    let now = Instant::now();
                    while heap.peek().is_some_and(|Reverse(e)| e.deadline <= now) {
                        if let Some(Reverse(e)) = heap.pop() {
                            e.waker.wake();
                        }
                    }
                    let next = match heap.peek() {
                        Some(Reverse(e)) => {
                            Some(e.deadline.saturating_duration_since(Instant::now()))
                        }
                        None if open => None,
                        None => break,
                    };
                    let received = match next {
                        Some(wait) => rx.recv_timeout(wait),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match received {
                        Ok((deadline, waker)) => {
                            seq += 1;
                            heap.push(Reverse(Entry {
                                deadline,
                                seq,
                                waker,
                            }));
                            // Take in everything else that is waiting before sleeping again.
                            while let Ok((deadline, waker)) = rx.try_recv() {
                                seq += 1;
                                heap.push(Reverse(Entry {
                                    deadline,
                                    seq,
                                    waker,
                                }));
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => open = false,
                    }
                }
            })?;
        Ok(PreciseTimer { tx })
    }

    /// Complete at `deadline` (never before it).
    pub fn sleep_until(&self, deadline: Instant) -> Sleep<'_> {
        Sleep {
            timer: self,
            deadline,
            registered: None,
        }
    }
}

pub struct Sleep<'a> {
    timer: &'a PreciseTimer,
    deadline: Instant,
    registered: Option<Waker>,
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let fresh = match &self.registered {
            Some(w) => !w.will_wake(cx.waker()),
            None => true,
        };
        if fresh {
            let waker = cx.waker().clone();
            if self.timer.tx.send((self.deadline, waker.clone())).is_err() {
                // The timer thread is gone (it never ends while handles exist): fall back to
                // finishing now rather than hanging.
                return Poll::Ready(());
            }
            self.registered = Some(waker);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_at_the_deadline_never_before() {
        let timer = PreciseTimer::start().expect("timer thread");
        for i in 0..50u64 {
            let deadline = Instant::now() + Duration::from_micros(700 + i * 37);
            timer.sleep_until(deadline).await;
            assert!(Instant::now() >= deadline, "woke early");
        }
        // How late it wakes is measured by the `timer/*_lateness` benches, not asserted here:
        // a shared machine can stall any thread for milliseconds.
    }

    /// Records, in the timer thread, the order in which it wakes the registered sleeps. Wakers
    /// are observed directly: the order tasks then run in is the runtime's business.
    struct Recorder {
        id: u64,
        woken: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
        done: std::sync::mpsc::Sender<()>,
    }

    impl std::task::Wake for Recorder {
        fn wake(self: std::sync::Arc<Self>) {
            if let Ok(mut woken) = self.woken.lock() {
                woken.push(self.id);
            }
            let _ = self.done.send(());
        }
    }

    #[test]
    fn many_sleeps_are_woken_in_deadline_order() {
        let timer = PreciseTimer::start().expect("timer thread");
        // The order is only defined for sleeps registered before the first deadline; on a
        // stalled machine the registrations can miss it, so widen the margin and try again.
        for margin_ms in [20u64, 200, 2_000] {
            let woken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let (done, finished) = channel();
            let base = Instant::now() + Duration::from_millis(margin_ms);
            let mut sleeps = Vec::new();
            // Registered latest deadline first, so a heap that kept arrival order would fail.
            for id in (0..20u64).rev() {
                let waker = Waker::from(std::sync::Arc::new(Recorder {
                    id,
                    woken: woken.clone(),
                    done: done.clone(),
                }));
                let mut sleep = Box::pin(timer.sleep_until(base + Duration::from_micros(id * 300)));
                let polled = sleep.as_mut().poll(&mut Context::from_waker(&waker));
                sleeps.push((sleep, polled));
            }
            if Instant::now() >= base || sleeps.iter().any(|(_, p)| p.is_ready()) {
                continue;
            }
            for _ in 0..20 {
                finished
                    .recv_timeout(Duration::from_secs(30))
                    .expect("every sleep is woken");
            }
            let order = woken.lock().expect("recorder lock").clone();
            assert_eq!(order, (0..20).collect::<Vec<_>>());
            return;
        }
        panic!("could not register 20 sleeps within 2 s of their deadlines");
    }
}
