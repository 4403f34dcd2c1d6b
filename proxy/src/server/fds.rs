//! File descriptors: at start the proxy raises its soft limit to the hard one (as nginx's
//! `worker_rlimit_nofile` does; systemd's default soft limit is 1024) and lowers
//! `max_connections` to what the limit can carry, saying so in the log, so that descriptors do
//! not run out under load ("Too many open files", and every app refused) while the accept
//! queue could have held the excess.

use tracing::{info, warn};

/// Descriptors kept for everything but app connections: listeners, the admin listener and its
/// connections, the decision file, Redis, stdio, the runtime's own.
pub const RESERVED: u64 = 128;

/// Descriptors one app connection may hold at once: its own, the upstream connection it holds,
/// and a racing rung or a parked connection.
pub const PER_CONNECTION: u64 = 3;

/// The app connections `limit` descriptors carry, if fewer than `wanted`.
pub fn fit(wanted: usize, limit: u64) -> Option<usize> {
    let fits = limit.saturating_sub(RESERVED) / PER_CONNECTION;
    let fits = usize::try_from(fits).unwrap_or(usize::MAX).max(1);
    (fits < wanted).then_some(fits)
}

/// Raises the soft descriptor limit to the hard one and returns the limit in force (`None`
/// when it cannot be read).
pub fn raise_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            info!(
                "file descriptor limit raised from {} to {}",
                lim.rlim_cur, lim.rlim_max
            );
            return Some(lim.rlim_max);
        }
    }
    Some(lim.rlim_cur)
}

/// Raises the limit and lowers `max_connections` to what it carries, saying so.
pub fn fit_connections(max_connections: &mut usize) {
    let Some(limit) = raise_limit() else {
        return;
    };
    if let Some(fits) = fit(*max_connections, limit) {
        warn!(
            "max_connections lowered from {} to {fits}: the file descriptor limit is {limit} \
             ({PER_CONNECTION} per app connection, {RESERVED} kept); raise it (systemd: \
             LimitNOFILE=) to serve more apps at once",
            *max_connections
        );
        *max_connections = fits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_is_lowered_only_when_the_limit_cannot_carry_it() {
        // (max_connections wanted, descriptor limit) -> lowered to
        let rows = [
            ((1024, 1024), Some(298)),
            ((1024, 4096), None),
            ((2000, 4096), Some(1322)),
            ((1024, 65_536), None),
            ((100, 428), None),
            ((101, 428), Some(100)),
            ((1024, 0), Some(1)),
            ((1024, u64::MAX), None),
        ];
        for ((wanted, limit), want) in rows {
            assert_eq!(
                fit(wanted, limit),
                want,
                "{wanted} connections, limit {limit}"
            );
        }
    }
}
