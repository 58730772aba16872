//! What the property-style sweeps share: a seed that can be replayed and a time budget, each
//! from its own environment variable.

use std::time::{Duration, SystemTime};

/// The sweep's seed: `var` when it holds a number (to replay a sweep), else one from the clock.
pub fn seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
        })
}

/// The sweep's time budget: `var` in seconds, else `default_secs`.
pub fn budget(var: &str, default_secs: u64) -> Duration {
    Duration::from_secs(
        std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_secs),
    )
}
