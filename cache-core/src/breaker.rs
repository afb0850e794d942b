//! A circuit breaker in front of the store: after repeated failures, skip the store for a short
//! cool-down instead of paying the operation timeout on every call, then probe again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// Milliseconds after `base` until which the breaker is open; 0 when closed.
    open_until: AtomicU64,
    base: Instant,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }

    /// Whether a store call may be made now. After the cool-down every call is let through;
    /// the first failure opens the breaker again, the first success closes it.
    pub(crate) fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Relaxed);
        until == 0 || self.now() >= until
    }

    pub(crate) fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open_until.load(Ordering::Relaxed) != 0 {
            self.open_until.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub(crate) fn failure(&self) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold {
            let until = self.now() + self.cooldown.as_millis() as u64;
            let was = self.open_until.swap(until, Ordering::Relaxed);
            return was == 0 || was <= self.now();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_probes_after_the_cool_down() {
        let b = Breaker::new(3, Duration::from_secs(1));
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.allow());
        assert!(b.failure());
        assert!(!b.allow());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!b.allow());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.allow(), "half-open: probe");
        b.failure();
        assert!(!b.allow(), "a failed probe opens it again");
        tokio::time::advance(Duration::from_secs(1)).await;
        b.success();
        assert!(b.allow());
        assert!(!b.failure(), "failures were reset by the success");
    }
}
