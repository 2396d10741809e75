//! One event loop per core: the devices and observers of a run are split between loops, each
//! a single-threaded tokio runtime on a thread of its own, so that nothing on the hot path
//! wakes another thread. A connection's reads, acknowledgements and sends are served by the
//! loop that owns it, and so are its due times: each loop keeps its deadlines in a heap of its
//! own and sleeps towards the earliest with a `timerfd` that its reactor polls beside the
//! sockets. The devices due in the same instant are woken by one expiry of one timer, in the
//! loop they run on, with no futex and no timer thread between them.
//!
//! A task that is not on a loop (a test on a plain runtime, a tool of its own) sleeps on the
//! timer thread instead (`PreciseTimer`, whose sleeps ask [`register`] first).

use std::cell::RefCell;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::task::Waker;
use std::time::{Duration, Instant};

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::deadline::Deadlines;

/// The event loops of a run; they end when this is dropped (what still runs on them is
/// dropped with them). [`Loops::shared`] stands for none: the runtime it was made in.
pub struct Loops {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
}

impl Loops {
    /// `n` loops (at least one), each on a thread named `fleet-loop-I`.
    pub fn start(n: usize) -> std::io::Result<Loops> {
        let mut loops = Loops {
            handles: Vec::new(),
            stops: Vec::new(),
        };
        for i in 0..n.max(1) {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("fleet-loop-{i}"))
                .spawn(move || serve(ready_tx, stopped))?;
            let handle = ready_rx
                .recv()
                .map_err(|_| std::io::Error::other("an event loop ended as it started"))??;
            loops.handles.push(handle);
            loops.stops.push(stop);
        }
        Ok(loops)
    }

    /// No loops of its own: tasks go to the runtime this is called from (the fleet's
    /// multi-threaded runtime, whose workers steal each other's tasks). What a run uses unless
    /// told how many loops: a loop's clients wait whenever its thread does, so on a busy
    /// machine loops show the machine's stalls in delivery latency, which work stealing
    /// hides (docs/PERFORMANCE.md).
    pub fn shared() -> Loops {
        Loops {
            handles: vec![Handle::current()],
            stops: Vec::new(),
        }
    }

    /// Run `task` on loop `key % len`: the same key always lands on the same loop.
    pub fn spawn<F>(&self, key: usize, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[key % self.handles.len()].spawn(task)
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}

/// A loop's thread: its runtime and its timer, until told to stop.
fn serve(ready: std::sync::mpsc::Sender<std::io::Result<Handle>>, stopped: oneshot::Receiver<()>) {
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|rt| {
            let timer = rt.block_on(async { LoopTimer::new() })?;
            Ok((rt, timer))
        });
    let (rt, timer) = match started {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let timer = Rc::new(timer);
    CURRENT.with(|c| *c.borrow_mut() = Some(timer.clone()));
    if ready.send(Ok(rt.handle().clone())).is_err() {
        return;
    }
    rt.block_on(async {
        tokio::select! {
            _ = stopped => {}
            () = timer.drive() => {}
        }
    });
    CURRENT.with(|c| c.borrow_mut().take());
    // Dropping the runtime drops what still runs on it, on this thread.
    drop(rt);
}

thread_local! {
    /// The timer of the loop this thread runs, if it runs one.
    static CURRENT: RefCell<Option<Rc<LoopTimer>>> = const { RefCell::new(None) };
}

/// Wake `waker` at `deadline` on this thread's loop; false when this thread runs no loop (or
/// its timer failed), and the caller must wait some other way.
pub(crate) fn register(deadline: Instant, waker: &Waker) -> bool {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|t| t.register(deadline, waker.clone()))
    })
}

/// A loop's deadlines and the timerfd armed for the earliest.
struct LoopTimer {
    fd: AsyncFd<OwnedFd>,
    state: RefCell<State>,
}

struct State {
    entries: Deadlines,
    /// What the timerfd is armed for (None: disarmed).
    armed: Option<Instant>,
    /// The timerfd could not be set: the loop's sleeps fall back to the timer thread.
    broken: bool,
}

impl LoopTimer {
    /// Made inside the loop's runtime, whose reactor then polls the timerfd.
    fn new() -> std::io::Result<LoopTimer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // `AsyncFd::new` is deprecated for fds that could be closed while registered; this one
        // is owned by the `AsyncFd` and closed only after it is deregistered. `register`, its
        // replacement, is unsafe, which this workspace does not allow.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(LoopTimer {
            fd,
            state: RefCell::new(State {
                entries: Deadlines::default(),
                armed: None,
                broken: false,
            }),
        })
    }

    fn register(&self, deadline: Instant, waker: Waker) -> bool {
        let Ok(mut s) = self.state.try_borrow_mut() else {
            return false;
        };
        if s.broken {
            return false;
        }
        s.entries.push(deadline, waker);
        if s.armed.is_none_or(|a| deadline < a) {
            self.arm(&mut s, Some(deadline));
        }
        !s.broken
    }

    /// Arm the timerfd for `at` (None: disarm). A failure marks the timer broken and wakes
    /// every sleep, which then waits on the timer thread.
    fn arm(&self, s: &mut State, at: Option<Instant>) {
        let value = match at {
            // Relative to now; never zero, which would disarm it.
            Some(at) => at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_nanos(1)),
            None => Duration::ZERO,
        };
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: value.as_secs() as _,
                tv_nsec: value.subsec_nanos() as _,
            },
        };
        match timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec) {
            Ok(_) => s.armed = at,
            Err(e) => {
                tracing::warn!(
                    "an event loop's timer cannot be set ({e}): its sleeps use the timer thread"
                );
                s.broken = true;
                s.armed = None;
                s.entries.wake_all();
            }
        }
    }

    /// Wake what is due each time the timerfd expires, and arm it for the next deadline.
    async fn drive(&self) {
        let mut due: Vec<Waker> = Vec::new();
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                self.fail();
                return;
            };
            let mut expirations = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut expirations) {
                // One read takes every expiry: not readable again until the next.
                Ok(_) => ready.clear_ready(),
                Err(rustix::io::Errno::AGAIN) => {
                    ready.clear_ready();
                    continue;
                }
                Err(_) => {
                    self.fail();
                    return;
                }
            }
            {
                let Ok(mut s) = self.state.try_borrow_mut() else {
                    continue;
                };
                let next = s.entries.take_due(Instant::now(), &mut due);
                s.armed = None;
                if next.is_some() {
                    self.arm(&mut s, next);
                }
            }
            for w in due.drain(..) {
                w.wake();
            }
        }
    }

    /// The timerfd cannot be read: hand every sleep to the timer thread.
    fn fail(&self) {
        if let Ok(mut s) = self.state.try_borrow_mut() {
            tracing::warn!("an event loop's timer failed: its sleeps use the timer thread");
            s.broken = true;
            s.entries.wake_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Ready at `deadline`, woken by the loop's timer (never polled ready before it).
    struct Until(Instant);

    impl Future for Until {
        type Output = ();
        fn poll(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if Instant::now() >= self.0 {
                return std::task::Poll::Ready(());
            }
            assert!(
                register(self.0, cx.waker()),
                "the loop's timer takes the deadline"
            );
            std::task::Poll::Pending
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleeps_on_a_loop_wake_at_their_deadline_never_before() {
        let loops = Loops::start(2).expect("loops");
        let tasks: Vec<_> = (0..8usize)
            .map(|k| {
                loops.spawn(k, async move {
                    for i in 0..30u64 {
                        let deadline = Instant::now() + Duration::from_micros(300 + i * 53);
                        Until(deadline).await;
                        assert!(Instant::now() >= deadline, "woke early");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("every sleep ended, on time or after");
        }
        assert!(!register(Instant::now(), Waker::noop()), "no loop here");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_key_one_loop_and_every_loop_used() {
        let loops = Loops::start(3).expect("loops");
        assert_eq!(loops.handles.len(), 3);
        let mut names = Vec::new();
        for k in 0..6usize {
            let name = loops
                .spawn(k, async {
                    std::thread::current().name().map(str::to_owned)
                })
                .await
                .expect("task");
            names.push(name.expect("named thread"));
        }
        assert_eq!(names[0], names[3]);
        assert_eq!(names[1], names[4]);
        let mut distinct = names.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{names:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_loops_drops_what_runs_on_them() {
        struct Count(Arc<AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let loops = Loops::start(2).expect("loops");
        let tasks: Vec<_> = (0..4usize)
            .map(|k| {
                let c = Count(dropped.clone());
                loops.spawn(k, async move {
                    let _c = c;
                    std::future::pending::<()>().await;
                })
            })
            .collect();
        drop(loops);
        for t in tasks {
            assert!(t.await.is_err_and(|e| e.is_cancelled()));
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 4);
    }
}
