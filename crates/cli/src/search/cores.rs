//! How busy the cores this process may run on were during a step, by anything: a generator
//! that saturates them and one starved by other work on them are both out of cores.

/// Busy and total ticks over the allowed cores, from /proc/stat.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreLoad {
    cpus: usize,
    start: Option<(u64, u64)>,
}

impl CoreLoad {
    pub(crate) fn start() -> CoreLoad {
        let allowed = allowed_cpus();
        CoreLoad {
            cpus: allowed.as_ref().map_or(0, Vec::len),
            start: allowed.and_then(|a| ticks(&a)),
        }
    }

    /// (busy cores on average since the start, the cores allowed); None where /proc is missing.
    pub(crate) fn busy(&self) -> Option<(f64, f64)> {
        let (busy0, total0) = self.start?;
        let (busy1, total1) = ticks(&allowed_cpus()?)?;
        let total = total1.checked_sub(total0).filter(|t| *t > 0)?;
        let share = busy1.saturating_sub(busy0) as f64 / total as f64;
        Some((share * self.cpus as f64, self.cpus as f64))
    }
}

/// The cores this process may run on (`Cpus_allowed_list`: "0-3,6").
fn allowed_cpus() -> Option<Vec<usize>> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    parse_list(list)
}

fn parse_list(list: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.trim().parse::<usize>().ok()?..=b.trim().parse().ok()?),
            None => out.push(part.trim().parse().ok()?),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Busy and total ticks of `cpus` ("cpuN user nice system idle iowait ...").
fn ticks(cpus: &[usize]) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let (mut busy, mut total) = (0, 0);
    for line in stat.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        let Some((n, fields)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        if !cpus.contains(&n) {
            continue;
        }
        let f: Vec<u64> = fields
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let all: u64 = f.iter().take(8).sum();
        let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
        busy += all.saturating_sub(idle);
        total += all;
    }
    (total > 0).then_some((busy, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_as_the_kernel_writes_them() {
        assert_eq!(parse_list("0-3,6"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_list("1"), Some(vec![1]));
        assert_eq!(parse_list("x"), None);
        let load = CoreLoad::start();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (busy, cores) = load.busy().expect("/proc on Linux");
        assert!(
            cores >= 1.0 && busy >= 0.0 && busy <= cores + 0.01,
            "{busy} of {cores}"
        );
    }
}
