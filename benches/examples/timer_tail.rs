//! The tail of wake-up lateness: how late a thread, and a device task behind the precise timer,
//! wakes after its deadline, for each way a thread can sleep precisely. Prints one row per
//! way with p50, p99, p99.9 and max lateness and the CPU it cost.
//!
//! `cargo run --release -p fleetbench-benches --example timer_tail [-- SECONDS ROUNDS]`: each
//! way runs SECONDS (3) at a time, ROUNDS (5) times, the ways alternating.
//!
//! Two parts:
//! - *thread*: one thread sleeps to deadlines 0.2-1.8 ms apart (as the timer thread does at
//!   1,000 devices per second), by `park_timeout` (a futex), `std::thread::sleep`,
//!   `clock_nanosleep` to an absolute time, and a timerfd, each with the default timer slack
//!   (50 us) and with a slack of 1 ns, and by park-then-spin;
//! - *chain*: 1,000 tasks on a two-worker tokio runtime, each woken 5 times a second through
//!   [`PreciseTimer`] tuned each way (and through tokio's own timer for scale): the lateness a
//!   device sees, which adds the hop from the timer thread to a worker.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use fleetbench_fleet::timer::{PreciseTimer, Tuning};
use hdrhistogram::Histogram;
use rustix::time::{ClockId, Timespec};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let seconds = args.next().flatten().unwrap_or(3);
    let rounds = args.next().flatten().unwrap_or(5);
    let spin = |us| Some(Duration::from_micros(us));
    let threads = [
        (Way::Park, None, None),
        (Way::Sleep, None, None),
        (Way::NanosleepAbs, None, None),
        (Way::Timerfd, None, None),
        (Way::Park, Some(1u64), None),
        (Way::Sleep, Some(1), None),
        (Way::NanosleepAbs, Some(1), None),
        (Way::Timerfd, Some(1), None),
        (Way::Park, Some(1), spin(50)),
        (Way::Park, Some(1), spin(100)),
    ];
    let tuned = |slack: Option<u64>, spin: u64| {
        Some(Tuning {
            slack: slack.map(Duration::from_nanos),
            spin: Duration::from_micros(spin),
        })
    };
    let chains = [
        ("chain: park, slack 50 us", tuned(None, 0)),
        ("chain: park, slack 1 ns", tuned(Some(1), 0)),
        ("chain: park, slack 1 ns, spin 50 us", tuned(Some(1), 50)),
        ("chain: park, slack 1 ns, spin 100 us", tuned(Some(1), 100)),
        ("chain: tokio sleep_until", None),
    ];
    // Rounds alternate the ways, so that a noisy minute of the machine falls on all of them.
    let mut thread_sums: Vec<(Histogram<u64>, f64)> =
        threads.iter().map(|_| (histogram(), 0.0)).collect();
    let mut chain_sums: Vec<(Histogram<u64>, f64)> =
        chains.iter().map(|_| (histogram(), 0.0)).collect();
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        for (i, (way, slack, spin)) in threads.iter().enumerate() {
            let (h, cpu) = thread_way(*way, *slack, *spin, seconds);
            thread_sums[i].0.add(h).expect("same bounds");
            thread_sums[i].1 += cpu / rounds as f64;
        }
        for (i, (_, tuning)) in chains.iter().enumerate() {
            let (h, cpu) = chain(*tuning, seconds);
            chain_sums[i].0.add(h).expect("same bounds");
            chain_sums[i].1 += cpu / rounds as f64;
        }
    }
    println!(
        "{:<38} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "way", "p50 us", "p99 us", "p99.9", "max", "cpu %"
    );
    for ((way, slack, spin), (h, cpu)) in threads.iter().zip(&thread_sums) {
        let slack = match slack {
            None => "slack 50 us".to_string(),
            Some(ns) => format!("slack {ns} ns"),
        };
        let name = match spin {
            None => format!("thread: {way:?}, {slack}"),
            Some(s) => format!("thread: {way:?}, {slack}, spin {} us", s.as_micros()),
        };
        row(&name, h, *cpu);
    }
    for ((name, _), (h, cpu)) in chains.iter().zip(&chain_sums) {
        row(name, h, *cpu);
    }
}

#[derive(Debug, Clone, Copy)]
enum Way {
    Park,
    Sleep,
    NanosleepAbs,
    Timerfd,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000, 3).expect("histogram bounds")
}

fn row(name: &str, h: &Histogram<u64>, cpu: f64) {
    println!(
        "{name:<38} {:>8} {:>8} {:>8} {:>8} {:>8.1}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        cpu * 100.0
    );
}

fn cpu_time(clock: ClockId) -> Duration {
    let t = rustix::time::clock_gettime(clock);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The monotonic clock's reading at `at` (Instant is CLOCK_MONOTONIC on Linux).
fn timespec_at(at: Instant) -> Timespec {
    let (now, ts) = (
        Instant::now(),
        rustix::time::clock_gettime(ClockId::Monotonic),
    );
    let base = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    let then = base + at.saturating_duration_since(now);
    Timespec {
        tv_sec: then.as_secs() as i64,
        tv_nsec: i64::from(then.subsec_nanos()),
    }
}

/// A deterministic spread of gaps between deadlines, 0.2 to 1.8 ms.
fn gap(i: u64) -> Duration {
    Duration::from_micros(200 + (i.wrapping_mul(2_654_435_761) % 1_600))
}

fn thread_way(
    way: Way,
    slack: Option<u64>,
    spin: Option<Duration>,
    seconds: u64,
) -> (Histogram<u64>, f64) {
    let handle = std::thread::spawn(move || {
        if let Some(ns) = slack {
            rustix::thread::set_current_timer_slack(NonZeroU64::new(ns)).expect("timer slack");
        }
        let tfd = rustix::time::timerfd_create(
            rustix::time::TimerfdClockId::Monotonic,
            rustix::time::TimerfdFlags::empty(),
        )
        .expect("timerfd");
        let mut h = histogram();
        let cpu0 = cpu_time(ClockId::ThreadCPUTime);
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let mut deadline = start;
        let mut i = 0;
        while deadline < end {
            i += 1;
            deadline += gap(i);
            let sleep_to = deadline - spin.unwrap_or_default();
            let left = sleep_to.saturating_duration_since(Instant::now());
            match way {
                Way::Park => std::thread::park_timeout(left),
                Way::Sleep => std::thread::sleep(left),
                Way::NanosleepAbs => {
                    let _ = rustix::thread::clock_nanosleep_absolute(
                        ClockId::Monotonic,
                        &timespec_at(sleep_to),
                    );
                }
                Way::Timerfd => {
                    let spec = rustix::time::Itimerspec {
                        it_interval: Timespec {
                            tv_sec: 0,
                            tv_nsec: 0,
                        },
                        it_value: timespec_at(sleep_to),
                    };
                    rustix::time::timerfd_settime(
                        &tfd,
                        rustix::time::TimerfdTimerFlags::ABSTIME,
                        &spec,
                    )
                    .expect("timerfd_settime");
                    let mut buf = [0u8; 8];
                    let _ = rustix::io::read(&tfd, &mut buf);
                }
            }
            while Instant::now() < deadline {
                std::hint::spin_loop();
            }
            let late = deadline.elapsed().as_micros() as u64;
            h.saturating_record(late.max(1));
        }
        let cpu =
            (cpu_time(ClockId::ThreadCPUTime) - cpu0).as_secs_f64() / start.elapsed().as_secs_f64();
        (h, cpu)
    });
    handle.join().expect("sleeper thread")
}

/// 1,000 tasks woken 5 times a second each, at deadlines spread over the period.
fn chain(tuning: Option<Tuning>, seconds: u64) -> (Histogram<u64>, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime");
    let timer = tuning.map(|t| PreciseTimer::start_tuned(t).expect("timer thread"));
    let cpu0 = cpu_time(ClockId::ProcessCPUTime);
    let started = Instant::now();
    let h = rt.block_on(async move {
        let start = Instant::now() + Duration::from_millis(50);
        let end = start + Duration::from_secs(seconds);
        let period = Duration::from_millis(200);
        let tasks: Vec<_> = (0..1_000u64)
            .map(|k| {
                let timer = timer.clone();
                tokio::spawn(async move {
                    let mut h = histogram();
                    let mut due = start + period * (k as u32) / 1_000;
                    while due < end {
                        match &timer {
                            Some(t) => t.sleep_until(due).await,
                            None => tokio::time::sleep_until(due.into()).await,
                        }
                        h.saturating_record((due.elapsed().as_micros() as u64).max(1));
                        due += period;
                    }
                    h
                })
            })
            .collect();
        let mut all = histogram();
        for t in tasks {
            all.add(t.await.expect("task")).expect("same bounds");
        }
        all
    });
    let cpu =
        (cpu_time(ClockId::ProcessCPUTime) - cpu0).as_secs_f64() / started.elapsed().as_secs_f64();
    (h, cpu)
}
