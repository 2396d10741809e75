//! Open files: every in-process device costs two descriptors (both ends of its TCP connection)
//! when the broker is embedded, one when it is external. Raise the soft limit to the hard one
//! and refuse, before connecting anything, a scenario that cannot fit.

use crate::UsageError;

/// Descriptors the process needs besides its connections (runtime, logs, files, listeners).
const RESERVE: u64 = 256;

/// Raise the soft limit on open files to the hard limit and check that `connections` fit.
pub fn ensure_open_files(connections: u64, per_connection: u64) -> anyhow::Result<u64> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|e| anyhow::anyhow!("raising the open-file limit: {e}"))?;
    let needed = connections * per_connection + RESERVE;
    if needed > limit {
        return Err(UsageError(format!(
            "this scenario needs about {needed} open files ({connections} connections x \
             {per_connection} descriptors + {RESERVE}), but this process may open {limit}. \
             Run fewer devices, run the broker in its own process (external broker), or split \
             the fleet into shards (--shard I/N) run by several processes"
        ))
        .into());
    }
    Ok(limit)
}
