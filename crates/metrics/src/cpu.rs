//! CPU use of this process by component, from `/proc/self/task/*/stat`: the generator's threads
//! (`fleet-worker*`, `fleet-timer`), the embedded broker's (`broker-worker*` and rumqttd's
//! `router-*`) and the rest. So that a saturated broker is not blamed on the generator, or the
//! reverse.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Cores in use (1.0 = one core fully busy), by component.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CpuUsage {
    pub generator: f64,
    pub broker: f64,
    pub other: f64,
}

impl CpuUsage {
    pub fn total(&self) -> f64 {
        self.generator + self.broker + self.other
    }
}

/// Which component a thread belongs to, by its name.
pub fn component(thread_name: &str) -> usize {
    if thread_name.starts_with("fleet-") {
        0
    } else if thread_name.starts_with("broker-worker") || thread_name.starts_with("router-") {
        1
    } else {
        2
    }
}

/// CPU seconds used so far by each component (generator, broker, other).
pub fn cpu_seconds() -> [f64; 3] {
    let mut out = [0.0; 3];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((name, seconds)) = crate::env::stat_cpu_seconds(&stat) {
            out[component(name)] += seconds;
        }
    }
    out
}

/// Turns successive readings into cores used between them.
#[derive(Debug)]
pub struct CpuSampler {
    last: (Instant, [f64; 3]),
    first: (Instant, [f64; 3]),
    recent: CpuUsage,
}

/// `/proc` counts CPU time in 10 ms ticks: shorter windows than this would mostly show noise.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

impl Default for CpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSampler {
    pub fn new() -> Self {
        let now = (Instant::now(), cpu_seconds());
        CpuSampler {
            last: now,
            first: now,
            recent: CpuUsage::default(),
        }
    }

    fn usage(from: &(Instant, [f64; 3]), to: &(Instant, [f64; 3])) -> CpuUsage {
        let dt =
            to.0.saturating_duration_since(from.0)
                .max(Duration::from_millis(1))
                .as_secs_f64();
        let d = |i: usize| ((to.1[i] - from.1[i]) / dt).max(0.0);
        CpuUsage {
            generator: d(0),
            broker: d(1),
            other: d(2),
        }
    }

    /// Cores used since the previous sample.
    pub fn sample(&mut self) -> CpuUsage {
        let now = (Instant::now(), cpu_seconds());
        let usage = Self::usage(&self.last, &now);
        self.last = now;
        self.recent = usage;
        usage
    }

    /// Like [`sample`](Self::sample), but over at least [`MIN_WINDOW`]: sooner than that it
    /// returns the previous figure.
    pub fn sample_smoothed(&mut self) -> CpuUsage {
        if self.last.0.elapsed() < MIN_WINDOW {
            return self.recent;
        }
        self.sample()
    }

    /// Cores used on average since the sampler was made.
    pub fn average(&self) -> CpuUsage {
        Self::usage(&self.first, &self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_grouped_by_name() {
        assert_eq!(component("fleet-worker"), 0);
        assert_eq!(component("broker-worker"), 1);
        assert_eq!(component("router-0"), 1);
        assert_eq!(component("main"), 2);
    }

    #[test]
    fn a_busy_named_thread_is_counted_for_its_component() {
        let mut sampler = CpuSampler::new();
        let busy = std::thread::Builder::new()
            .name("fleet-worker-t".into())
            .spawn(|| {
                let start = Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_millis(800) {
                    x = x.wrapping_mul(31).wrapping_add(1);
                }
                x
            })
            .expect("spawn");
        // Sample while the thread still runs: an exited thread leaves /proc/self/task.
        std::thread::sleep(Duration::from_millis(500));
        let usage = sampler.sample();
        let _ = busy.join();
        // It spun through the whole window; even on a loaded machine it gets a good share.
        assert!(usage.generator > 0.2, "{usage:?}");
        assert!(usage.generator > usage.other, "{usage:?}");
    }
}

/// The whole machine's CPU time so far, in the kernel's ticks (the first line of `/proc/stat`):
/// over an interval, busy / total is the share of the machine that was busy (every process
/// counted) and steal / total the share its hypervisor gave to other machines.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    busy: u64,
    steal: u64,
    total: u64,
    cpus: usize,
}

fn machine_ticks() -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    let steal = fields.get(7).copied().unwrap_or(0);
    Some(Ticks {
        busy: total.saturating_sub(idle),
        steal,
        total,
        cpus,
    })
}

/// Measures how busy the whole machine is between its start and a reading.
#[derive(Debug, Clone, Copy)]
pub struct MachineLoad {
    start: Option<Ticks>,
}

impl MachineLoad {
    pub fn start() -> MachineLoad {
        MachineLoad {
            start: machine_ticks(),
        }
    }

    /// The ticks since the start: (then, now, total between), None where /proc/stat is missing
    /// or no tick passed.
    fn since(&self) -> Option<(Ticks, Ticks, u64)> {
        let (then, now) = (self.start?, machine_ticks()?);
        let total = now.total.checked_sub(then.total).filter(|t| *t > 0)?;
        Some((then, now, total))
    }

    /// Cores of the machine busy on average since the start; None where /proc/stat is
    /// missing.
    pub fn busy_cores(&self) -> Option<f64> {
        let (then, now, total) = self.since()?;
        Some(now.busy.saturating_sub(then.busy) as f64 / total as f64 * now.cpus as f64)
    }

    /// The share of the machine's CPU time its hypervisor stole since the start (0 on bare
    /// metal); None where /proc/stat is missing.
    pub fn steal_share(&self) -> Option<f64> {
        let (then, now, total) = self.since()?;
        Some(now.steal.saturating_sub(then.steal) as f64 / total as f64)
    }
}

#[cfg(test)]
mod machine_tests {
    use super::*;

    #[test]
    fn the_machines_steal_is_a_share_of_its_time() {
        let load = MachineLoad::start();
        std::thread::sleep(Duration::from_millis(300));
        let steal = load.steal_share().expect("/proc/stat on Linux");
        assert!((0.0..=1.0).contains(&steal), "{steal}");
        let busy = load.busy_cores().expect("/proc/stat on Linux");
        assert!(busy >= 0.0, "{busy}");
    }
}
