//! A precise timer for the publish schedule.
//!
//! tokio's timer wheel has 1 ms resolution and wakes a sleep on the first tick after its
//! deadline, so a send scheduled with `sleep_until` leaves 0-2 ms late (about 1.1 ms at the
//! median, measured). This timer keeps the deadlines in a heap on one thread of its own
//! (`fleet-timer`), which sleeps with `park_timeout` (a futex with an hrtimer: tens of
//! microseconds of slack) and wakes the tasks whose deadlines have passed.
//!
//! It costs one wake of its thread per slot of deadlines, not per deadline: a task registers
//! its deadline under the heap's lock and wakes the thread only when that deadline comes
//! before the one the thread sleeps towards. Devices register their next message about a
//! period ahead, so at IoT rates registering wakes nobody, and every task due by the time the
//! thread wakes is woken in that one pass.

use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::deadline::Deadlines;

/// The deadlines, and when the thread will next look at them.
struct Heap {
    entries: Deadlines,
    /// The thread wakes by then on its own (None: it sleeps until woken).
    planned: Option<Instant>,
}

struct Shared {
    heap: Mutex<Heap>,
    thread: Thread,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: let the thread see it and end.
        self.thread.unpark();
    }
}

/// How the timer thread sleeps towards a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// The thread's timer slack (`PR_SET_TIMERSLACK`): how much later than asked the kernel
    /// may end its sleeps to group wake-ups. None leaves the default (50 us).
    pub slack: Option<Duration>,
    /// Sleep until this long before a deadline, then spin to it.
    pub spin: Duration,
}

impl Tuning {
    /// The kernel's defaults: 50 us of slack, no spin.
    pub const DEFAULT_SLACK: Tuning = Tuning {
        slack: None,
        spin: Duration::ZERO,
    };

    /// What the timer uses: no slack, no spin. The slack of 50 us the kernel allows by default
    /// is the median lateness of every wake; spinning before a deadline costs two to four times
    /// the CPU and does not shorten the tail, which is the machine's (see `timer_tail` and
    /// docs/PERFORMANCE.md).
    pub const PRECISE: Tuning = Tuning {
        slack: Some(Duration::from_nanos(1)),
        spin: Duration::ZERO,
    };
}

/// Handle to the timer thread; clone it freely. The thread ends when every handle is gone.
/// A sleep polled on one of the run's event loops ([`crate::loops`]) is woken by that loop's
/// own timer and leaves the thread alone.
#[derive(Clone)]
pub struct PreciseTimer {
    shared: Arc<Shared>,
}

impl PreciseTimer {
    pub fn start() -> std::io::Result<PreciseTimer> {
        PreciseTimer::start_tuned(Tuning::PRECISE)
    }

    /// A timer thread that sleeps as `tuning` says.
    pub fn start_tuned(tuning: Tuning) -> std::io::Result<PreciseTimer> {
        let (tx, rx) = std::sync::mpsc::channel::<Weak<Shared>>();
        let handle = std::thread::Builder::new()
            .name("fleet-timer".into())
            .spawn(move || {
                if let Some(slack) = tuning.slack {
                    let ns = u64::try_from(slack.as_nanos()).unwrap_or(u64::MAX).max(1);
                    if let Err(e) = rustix::thread::set_current_timer_slack(NonZeroU64::new(ns)) {
                        tracing::debug!("timer slack not set: {e}");
                    }
                }
                if let Ok(shared) = rx.recv() {
                    run(&shared, tuning.spin);
                }
            })?;
        let shared = Arc::new(Shared {
            heap: Mutex::new(Heap {
                entries: Deadlines::default(),
                planned: None,
            }),
            thread: handle.thread().clone(),
        });
        tx.send(Arc::downgrade(&shared))
            .map_err(|_| std::io::Error::other("the timer thread ended at once"))?;
        Ok(PreciseTimer { shared })
    }

    /// Complete at `deadline` (never before it).
    pub fn sleep_until(&self, deadline: Instant) -> Sleep<'_> {
        Sleep {
            timer: self,
            deadline,
            registered: None,
        }
    }

    /// Wake `waker` at `deadline`; false when the heap's lock is poisoned.
    fn register(&self, deadline: Instant, waker: Waker) -> bool {
        let Ok(mut heap) = self.shared.heap.lock() else {
            return false;
        };
        heap.entries.push(deadline, waker);
        let wake = heap.planned.is_none_or(|p| deadline < p);
        if wake {
            heap.planned = Some(deadline);
        }
        drop(heap);
        if wake {
            self.shared.thread.unpark();
        }
        true
    }
}

/// The timer thread: wake what is due, sleep until the next deadline or until woken.
fn run(shared: &Weak<Shared>, spin: Duration) {
    let mut due: Vec<Waker> = Vec::new();
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        let next = {
            let Ok(mut heap) = s.heap.lock() else {
                return;
            };
            heap.planned = heap.entries.take_due(Instant::now(), &mut due);
            heap.planned
        };
        drop(s);
        for w in due.drain(..) {
            w.wake();
        }
        match next {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left > spin {
                    std::thread::park_timeout(left - spin);
                } else {
                    while Instant::now() < at {
                        std::hint::spin_loop();
                    }
                }
            }
            // Long naps: a dropped timer unparks the thread anyway.
            None => std::thread::park_timeout(Duration::from_secs(1)),
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
            // On an event loop its own timer wakes the task; elsewhere the timer thread does.
            let on_loop = crate::loops::register(self.deadline, &waker);
            if !on_loop && !self.timer.register(self.deadline, waker.clone()) {
                // The timer cannot be used: finish now rather than hang.
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

    use std::sync::mpsc::channel;

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
