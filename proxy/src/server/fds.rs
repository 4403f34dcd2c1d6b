//! File descriptors: at start the proxy raises its soft limit to the hard one (as nginx's
//! `worker_rlimit_nofile` does; systemd's default soft limit is 1024) and lowers
//! `max_connections` to what the limit can carry, saying so in the log, so that descriptors do
//! not run out under load ("Too many open files", and every app refused) while the accept
//! queue could have held the excess.

use tracing::{info, warn};

/// Descriptors kept for everything but app connections: the admin listener and its
/// connections, the decision file, Redis, stdio, the main runtime's own.
pub const RESERVED: u64 = 128;

/// Descriptors each worker holds: its handle on the listening socket, its event loop's.
pub const PER_WORKER: u64 = 4;

/// Descriptors one app connection may hold at once: its own, the upstream connection it holds,
/// and a racing rung or a parked connection.
pub const PER_CONNECTION: u64 = 3;

/// The app connections `limit` descriptors carry beside `workers` workers, if fewer than
/// `wanted`. Each app connection counts its own descriptor, its upstream connection, and one
/// parked or racing one (each layer parks at most `max_connections` connections in all).
pub fn fit(wanted: usize, limit: u64, workers: usize) -> Option<usize> {
    let kept = RESERVED.saturating_add(PER_WORKER.saturating_mul(workers as u64));
    let fits = limit.saturating_sub(kept) / PER_CONNECTION;
    let fits = usize::try_from(fits).unwrap_or(usize::MAX).max(1);
    (fits < wanted).then_some(fits)
}

/// Raises the soft descriptor limit to the hard one and returns the limit in force (`None`
/// when it cannot be read).
// `rlim_t` is `u64` here but 32 bits on some 32-bit targets: the conversions are not useless.
#[allow(clippy::useless_conversion)]
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
            return Some(u64::from(lim.rlim_max));
        }
    }
    Some(u64::from(lim.rlim_cur))
}

/// Raises the limit and lowers `max_connections` to what it carries, saying so.
pub fn fit_connections(max_connections: &mut usize, workers: usize) {
    let Some(limit) = raise_limit() else {
        return;
    };
    if let Some(fits) = fit(*max_connections, limit, workers) {
        warn!(
            "max_connections lowered from {} to {fits}: the file descriptor limit is {limit} \
             ({PER_CONNECTION} per app connection, {RESERVED} and {PER_WORKER} per worker \
             kept); raise it (systemd: LimitNOFILE=) to serve more apps at once",
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
        // (max_connections wanted, descriptor limit, workers) -> lowered to
        let rows = [
            ((1024, 1024, 2), Some(296)),
            ((1024, 4096, 2), None),
            ((2000, 4096, 2), Some(1320)),
            ((2000, 4096, 64), Some(1237)),
            ((1024, 65_536, 256), None),
            ((100, 436, 2), None),
            ((101, 436, 2), Some(100)),
            ((1024, 0, 2), Some(1)),
            ((1024, u64::MAX, 256), None),
        ];
        for ((wanted, limit, workers), want) in rows {
            let got = fit(wanted, limit, workers);
            assert_eq!(
                got, want,
                "{wanted} connections, limit {limit}, {workers} workers"
            );
        }
    }
}
