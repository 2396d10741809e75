//! Open files: every in-process device costs two descriptors (both ends of its TCP connection)
//! when the broker is embedded, one when it is external. Raise the soft limit to the hard one
//! and refuse, before connecting anything, a scenario that cannot fit.

use crate::UsageError;

/// Descriptors kept free besides the connections, listeners and what is open already (runtime
/// wake-ups, the report, logs).
const MARGIN: u64 = 64;

/// Descriptors open in this process now.
fn open_now() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count() as u64)
}

/// Raise the soft limit on open files to the hard limit and check that `connections` (with
/// `per_connection` descriptors each) and `listeners` fit.
pub(crate) fn ensure_open_files(
    connections: u64,
    per_connection: u64,
    listeners: u64,
) -> anyhow::Result<u64> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|e| anyhow::anyhow!("raising the open-file limit: {e}"))?;
    let reserve = open_now() + 2 * listeners + MARGIN;
    let needed = connections * per_connection + reserve;
    if needed > limit {
        return Err(UsageError(format!(
            "this scenario needs about {needed} open files ({connections} connections x \
             {per_connection} descriptors + {reserve} for the process), but it may open {limit}. \
             Run fewer devices, run the broker in its own process (external broker), or split \
             the fleet into shards (--shard I/N) run by several processes"
        ))
        .into());
    }
    Ok(limit)
}
