//! Process figures of the server for the platform operator: resident memory now and at its
//! peak (from `/proc/self/status`, zero where the platform does not expose it), uptime and the
//! storage engine (so that a measurement says what it measured).

use super::{Paraph, Principal, Result};
use crate::domain::DomainError;

/// What `GetServerStats` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStats {
    /// Resident set size now (`VmRSS`), in bytes; 0 when unknown.
    pub rss_bytes: u64,
    /// Highest resident set size since the process started (`VmHWM`), in bytes; 0 when unknown.
    pub peak_rss_bytes: u64,
    /// Seconds since the service was opened.
    pub uptime_seconds: u64,
    /// The engine of the store's index.
    pub storage_engine: String,
    /// What the data directory takes on disk, in bytes; 0 when it cannot be read.
    pub store_bytes: u64,
}

/// Reads `VmRSS` and `VmHWM` (given in kB) from the text of `/proc/<pid>/status`.
/// Missing or unreadable lines give 0.
pub fn parse_proc_status(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .map_or(0, |kb| kb.saturating_mul(1024))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

impl Paraph {
    /// The server's process figures. Only the platform operator may read them (with or
    /// without naming a tenant).
    pub async fn server_stats(&self, who: &Principal) -> Result<ServerStats> {
        let operator = match who {
            Principal::Operator { .. } => true,
            Principal::Caller(c) => c.operator,
        };
        if !operator {
            return Err(DomainError::Forbidden(
                "only the platform operator reads the server statistics".into(),
            )
            .into());
        }
        // Not a storage read: a failure (no procfs) just leaves the figures at 0.
        let (rss_bytes, peak_rss_bytes) = tokio::fs::read_to_string("/proc/self/status")
            .await
            .map(|s| parse_proc_status(&s))
            .unwrap_or((0, 0));
        // A walk of a few directory entries, off the runtime's threads.
        let store = self.store().clone();
        let store_bytes = tokio::task::spawn_blocking(move || store.disk_bytes())
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(0);
        Ok(ServerStats {
            rss_bytes,
            store_bytes,
            peak_rss_bytes,
            uptime_seconds: self.started.elapsed().as_secs(),
            storage_engine: self.store().kind_name().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_sizes_are_read_from_proc_status() {
        let status = "Name:\tparaph\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\n\
                      VmRSS:\t   40960 kB\nThreads:\t8\n";
        assert_eq!(parse_proc_status(status), (40960 * 1024, 51200 * 1024));
        assert_eq!(parse_proc_status(""), (0, 0));
        assert_eq!(parse_proc_status("VmRSS:\tlots kB\n"), (0, 0));
    }
}
