//! The retry budget: one per client, shared by all its calls, so that retries stay a bounded
//! share of the traffic, in the manner of `tower`'s `TpsBudget`.
//!
//! Every call deposits into the budget when it starts; every retry withdraws one. A retry is
//! allowed while the retries of the last [`RetryBudget::with_ttl`] seconds stay below
//! `min_per_second × ttl` plus `ratio ×` the calls of that time. When Genesys fails for
//! everyone at once (a 429 storm, an outage), each call still makes its first attempt, but the
//! client as a whole sends at most about `1 + ratio` times the requests it was asked for,
//! instead of `max_attempts` times; a call refused a retry ends with
//! [`Error::RetryBudgetExhausted`](crate::Error::RetryBudgetExhausted).
//!
//! The windows follow tokio's clock (tests with a paused clock control it). `tower`'s own
//! budget is not used because it reads `std::time::Instant`, which a paused clock does not
//! move.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The configuration of a client's retry budget; see the [crate docs](crate#staying-inside-the-orgs-limits).
///
/// Defaults as `tower`'s: a 10 s window, 10 retries per second for free, and retries up to
/// 20 % of the calls.
///
/// ```
/// use std::time::Duration;
/// use genesys_client::RetryBudget;
///
/// let budget = RetryBudget::default()
///     .with_ttl(Duration::from_secs(30))
///     .with_min_per_second(1)
///     .with_ratio(0.1);
/// assert_eq!(budget.ratio(), 0.1);
/// assert!(RetryBudget::off().is_off());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct RetryBudget {
    ttl: Duration,
    min_per_second: u32,
    ratio: f64,
    off: bool,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_per_second: 10,
            ratio: 0.2,
            off: false,
        }
    }
}

impl RetryBudget {
    /// No shared budget: each call retries as its [`RetryPolicy`](crate::RetryPolicy) allows.
    pub fn off() -> Self {
        Self {
            off: true,
            ..Self::default()
        }
    }

    /// How long a call's deposit and a retry's withdrawal count (1 to 60 s; default 10 s).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Retries per second allowed whatever the traffic (default 10), so that a quiet client
    /// can still retry.
    pub fn with_min_per_second(mut self, min: u32) -> Self {
        self.min_per_second = min;
        self
    }

    /// Retries allowed per call made (default 0.2: 20 %; 0 to 1000).
    pub fn with_ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// The window.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The retries per second allowed whatever the traffic.
    pub fn min_per_second(&self) -> u32 {
        self.min_per_second
    }

    /// The retries allowed per call.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Whether the budget is off.
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// What is wrong with the settings, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.off {
            return None;
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(60) {
            return Some(format!(
                "retry budget window {:?} must be between 1 s and 60 s",
                self.ttl
            ));
        }
        if !(0.0..=1000.0).contains(&self.ratio) {
            return Some(format!(
                "retry budget ratio {} must be between 0 and 1000",
                self.ratio
            ));
        }
        None
    }
}

/// Deposits and withdrawals in one-second buckets over the window.
pub(crate) struct Budget {
    settings: RetryBudget,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    start: Option<Instant>,
    /// (second since start, deposits, withdrawals), oldest first.
    seconds: std::collections::VecDeque<(u64, u64, u64)>,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Budget {
    pub(crate) fn new(settings: RetryBudget) -> Self {
        Self {
            settings,
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// Records a call.
    pub(crate) fn deposit(&self) {
        if self.settings.off {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        self.current(&mut buckets).1 += 1;
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub(crate) fn withdraw(&self) -> bool {
        if self.settings.off {
            return true;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        self.current(&mut buckets);
        let (deposits, withdrawals) = buckets
            .seconds
            .iter()
            .fold((0u64, 0u64), |(d, w), (_, bd, bw)| (d + bd, w + bw));
        let reserve = u64::from(self.settings.min_per_second) * self.settings.ttl.as_secs();
        // Whole retries allowed: the reserve plus the ratio of the calls.
        let allowed = reserve as f64 + self.settings.ratio * deposits as f64;
        if (withdrawals as f64) + 1.0 > allowed {
            return false;
        }
        self.current(&mut buckets).2 += 1;
        true
    }

    /// The bucket of this second, after dropping those older than the window.
    fn current<'a>(&self, buckets: &'a mut Buckets) -> &'a mut (u64, u64, u64) {
        let now = Instant::now();
        let start = *buckets.start.get_or_insert(now);
        let second = now.duration_since(start).as_secs();
        let ttl = self.settings.ttl.as_secs().max(1);
        while buckets
            .seconds
            .front()
            .is_some_and(|(s, _, _)| *s + ttl <= second)
        {
            buckets.seconds.pop_front();
        }
        if buckets.seconds.back().is_none_or(|(s, _, _)| *s != second) {
            buckets.seconds.push_back((second, 0, 0));
        }
        buckets.seconds.back_mut().expect("just pushed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_stay_within_the_ratio_of_calls() {
        let budget = Budget::new(
            RetryBudget::default()
                .with_min_per_second(0)
                .with_ratio(0.2),
        );
        for _ in 0..100 {
            budget.deposit();
        }
        let granted = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 20);
        // Past the window the calls no longer count, and neither do the retries.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!budget.withdraw());
        budget.deposit();
        budget.deposit();
        budget.deposit();
        budget.deposit();
        budget.deposit();
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_lets_a_quiet_client_retry() {
        let budget = Budget::new(
            RetryBudget::default()
                .with_min_per_second(1)
                .with_ratio(0.0),
        );
        let granted = (0..50).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 10, "1 per second over a 10 s window");
        let off = Budget::new(RetryBudget::off());
        assert!((0..1000).all(|_| off.withdraw()));
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(RetryBudget::default().problem().is_none());
        assert!(RetryBudget::default()
            .with_ttl(Duration::from_millis(10))
            .problem()
            .is_some());
        assert!(RetryBudget::default().with_ratio(-1.0).problem().is_some());
    }
}
