//! A setting a SIGHUP reload changes while the request path reads it: one relaxed atomic load
//! per read, shared by every clone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A duration (kept in whole milliseconds, as the config writes them) that a reload may
/// change; cheap to clone, every clone sees the change.
#[derive(Clone, Debug)]
pub(crate) struct LiveDuration(Arc<AtomicU64>);

impl LiveDuration {
    pub(crate) fn new(value: Duration) -> LiveDuration {
        LiveDuration(Arc::new(AtomicU64::new(millis(value))))
    }

    pub(crate) fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }

    pub(crate) fn set(&self, value: Duration) {
        self.0.store(millis(value), Ordering::Relaxed);
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_sees_a_change() {
        let ttl = LiveDuration::new(Duration::from_secs(300));
        let reader = ttl.clone();
        ttl.set(Duration::from_millis(1_500));
        assert_eq!(reader.get(), Duration::from_millis(1_500));
        reader.set(Duration::ZERO);
        assert!(ttl.is_zero());
    }
}
