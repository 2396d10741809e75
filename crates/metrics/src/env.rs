//! What a run ran on, so that any number in a report can be traced and rerun.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Environment {
    pub cores: u32,
    pub memory_bytes: u64,
    /// `std::env::consts::OS` and architecture, e.g. "linux x86_64".
    pub os: String,
    /// The distribution's PRETTY_NAME and the kernel release, where they can be read.
    pub os_release: String,
    pub kernel: String,
    pub git_revision: String,
    pub build_profile: String,
    pub fleetbench_version: String,
}

impl Environment {
    /// Read the machine's facts; what cannot be read is left empty (or 0), never guessed.
    pub fn detect(git_revision: &str, build_profile: &str, version: &str) -> Environment {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get() as u32);
        let memory_bytes = proc_kb("/proc/meminfo", "MemTotal").unwrap_or(0);
        let os_release = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_default();
        Environment {
            cores,
            memory_bytes,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            os_release,
            kernel,
            git_revision: git_revision.to_string(),
            build_profile: build_profile.to_string(),
            fleetbench_version: version.to_string(),
        }
    }
}

/// A `Key:   123 kB` line of a `/proc` file such as `/proc/self/status`, in bytes.
pub fn proc_kb(path: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    })
}

/// CPU seconds (user + system) of a `/proc/.../stat` line, and the name in it.
pub fn stat_cpu_seconds(stat: &str) -> Option<(&str, f64)> {
    // "pid (name) state ...": the name may hold spaces, so split at the last ')'.
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `fields` starts at field 3. Their unit
    // is the kernel's clock tick (USER_HZ).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    Some((name, (ticks(14)? + ticks(15)?) / clock_ticks_per_second()))
}

/// The kernel's clock ticks per second (USER_HZ, what `sysconf(_SC_CLK_TCK)` answers), as the
/// kernel hands it to every process in its auxiliary vector (`AT_CLKTCK`); 100, Linux's value
/// everywhere in practice, where that cannot be read.
pub fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|auxv| auxv_value(&auxv, AT_CLKTCK))
            .filter(|t| *t > 0)
            .map_or(100.0, |t| t as f64)
    })
}

/// The auxiliary vector's entry for the clock tick rate.
const AT_CLKTCK: u64 = 17;

/// The value of `key` in an auxiliary vector: pairs of native-endian words, ended by a 0 key.
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |c: &[u8]| -> Option<u64> {
        let bytes: [u8; WORD] = c.try_into().ok()?;
        Some(usize::from_ne_bytes(bytes) as u64)
    };
    for pair in auxv.chunks_exact(2 * WORD) {
        let (k, v) = pair.split_at(WORD);
        match word(k)? {
            0 => return None,
            k if k == key => return word(v),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_are_read() {
        // The name holds spaces and a ')': only the last ')' ends it.
        let stat = "42 (my (odd) thread) S 1 42 42 0 -1 4194560 10 0 0 0 150 25 0 0 20 0 1 0 100";
        let (name, seconds) = stat_cpu_seconds(stat).expect("parsed");
        assert_eq!(name, "my (odd) thread");
        let hz = clock_ticks_per_second();
        assert!((seconds - 175.0 / hz).abs() < 1e-9, "{seconds}");
        assert_eq!(stat_cpu_seconds("garbage"), None);
    }

    #[test]
    fn the_clock_tick_rate_comes_from_the_kernel() {
        // What `getconf CLK_TCK` says, read the same way the C library reads it.
        let out = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf");
        let said: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a number");
        assert_eq!(clock_ticks_per_second(), said);
        // A vector whose entries end before the key gives nothing.
        let w = |v: usize| v.to_ne_bytes().to_vec();
        let auxv = [w(6), w(4096), w(17), w(250), w(0), w(0)].concat();
        assert_eq!(auxv_value(&auxv, 17), Some(250));
        assert_eq!(auxv_value(&auxv, 99), None);
        let ended = [w(0), w(0), w(17), w(250)].concat();
        assert_eq!(auxv_value(&ended, 17), None);
    }

    #[test]
    fn this_process_reports_its_memory() {
        assert!(proc_kb("/proc/self/status", "VmHWM").is_some_and(|b| b > 0));
        assert_eq!(proc_kb("/proc/self/status", "NoSuchKey"), None);
    }
}
