//! *When* to retry: a [`RetryPolicy`] (attempts, total time, the longest `Retry-After`) with
//! [`ExponentialBackoff`] (full jitter). *Whether* to retry is the classifier's business
//! ([`default_classifier`](crate::default_classifier)), kept apart as in `reqwest-retry`.
//!
//! The module is generic: it names none of the crate's types, so the policy knows nothing of
//! HTTP or of the error type, and the client's retry loop puts the two together.
//!
//! * 429 and 503 wait as long as `Retry-After` says; a `Retry-After` over
//!   [`RetryPolicy::retry_after_cap`] ends the call with `Error::RateLimited`.
//! * Otherwise the wait is exponential backoff with full jitter.

use std::time::Duration;

use std::fmt;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// A retry policy or backoff whose settings cannot work, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRetryPolicy {
    message: String,
}

impl InvalidRetryPolicy {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidRetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidRetryPolicy {}

/// Exponential backoff with full jitter: wait number `n` (from 0) is drawn uniformly, in whole
/// milliseconds, from `0..=min(cap, base * 2^n)`. Build the iterator with [`ExponentialBackoff::build`].
///
/// Defaults: base 500 ms, cap 30 s, jitter on, RNG seeded from the OS.
///
/// ```
/// use std::time::Duration;
/// use genesys_client::ExponentialBackoff;
///
/// let waits: Vec<Duration> = ExponentialBackoff::default()
///     .with_base(Duration::from_millis(100))
///     .with_cap(Duration::from_millis(500))
///     .with_jitter(false)
///     .build()
///     .take(5)
///     .collect();
/// let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
/// assert_eq!(ms, [100, 200, 400, 500, 500]);
///
/// // With jitter, a seed makes the waits repeatable.
/// let a: Vec<_> = ExponentialBackoff::default().with_seed(7).build().take(3).collect();
/// let b: Vec<_> = ExponentialBackoff::default().with_seed(7).build().take(3).collect();
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExponentialBackoff {
    base: Duration,
    cap: Duration,
    jitter: bool,
    seed: Option<u64>,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            jitter: true,
            seed: None,
        }
    }
}

impl ExponentialBackoff {
    /// The first wait's ceiling (default 500 ms).
    pub fn with_base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The largest wait (default 30 s).
    pub fn with_cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Whether to draw each wait at random below its ceiling (default `true`).
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter RNG so waits repeat exactly (for tests). Every iterator built from a
    /// seeded backoff yields the same sequence.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The first wait's ceiling.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest wait.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// An endless iterator of waits.
    pub fn build(&self) -> impl Iterator<Item = Duration> + Clone + Send + Sync + 'static {
        self.iter()
    }

    pub(crate) fn iter(&self) -> BackoffIter {
        let rng = match self.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        BackoffIter {
            base: self.base,
            cap: self.cap,
            jitter: self.jitter,
            step: 0,
            rng,
        }
    }

    fn validate(&self) -> Result<(), InvalidRetryPolicy> {
        if self.base.is_zero() {
            return Err(InvalidRetryPolicy::new(
                "backoff base must be greater than zero",
            ));
        }
        if self.cap < self.base {
            return Err(InvalidRetryPolicy::new(format!(
                "backoff cap {:?} is below its base {:?}",
                self.cap, self.base
            )));
        }
        Ok(())
    }
}

/// The waits of an [`ExponentialBackoff`]; never ends.
#[derive(Debug, Clone)]
pub(crate) struct BackoffIter {
    base: Duration,
    cap: Duration,
    jitter: bool,
    step: u32,
    rng: SmallRng,
}

impl Iterator for BackoffIter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let factor = 2u32.checked_pow(self.step).unwrap_or(u32::MAX);
        let ceiling = self
            .base
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap);
        self.step = self.step.saturating_add(1);
        if !self.jitter {
            return Some(ceiling);
        }
        // Whole milliseconds: tokio's timer has that resolution, so a wait sleeps exactly as
        // long as it says.
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Some(Duration::from_millis(self.rng.random_range(0..=millis)))
    }
}

/// When to retry: how many attempts, how much total time, how long a `Retry-After` may be, and
/// the backoff between attempts.
///
/// Defaults: 5 attempts, 2 minutes in total, `Retry-After` cap 180 s (what the Genesys Go SDK
/// accepts), [`ExponentialBackoff::default`]. The client validates the policy when it is built.
/// Time a call spends waiting in the client's [limiter](crate::Limits) does not count against
/// the total time; retries also draw on the client's shared [`RetryBudget`](crate::RetryBudget).
///
/// ```
/// use std::time::Duration;
/// use genesys_client::{ExponentialBackoff, RetryPolicy};
///
/// let policy = RetryPolicy::default()
///     .with_max_attempts(3)
///     .with_max_total_time(Duration::from_secs(30))
///     .with_backoff(ExponentialBackoff::default().with_jitter(false));
/// assert_eq!(policy.max_attempts(), 3);
/// assert!(policy.validate().is_ok());
/// assert!(RetryPolicy::default().with_max_attempts(0).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    max_total_time: Duration,
    retry_after_cap: Duration,
    backoff: ExponentialBackoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            max_total_time: Duration::from_secs(120),
            retry_after_cap: Duration::from_secs(180),
            backoff: ExponentialBackoff::default(),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries (one attempt).
    pub fn never() -> Self {
        Self::default().with_max_attempts(1)
    }

    /// The most requests one call may send, the first included (default 5; at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The longest a call may keep retrying, counted from its first attempt (default 120 s).
    /// A retry whose wait would end past it is not made.
    pub fn with_max_total_time(mut self, total: Duration) -> Self {
        self.max_total_time = total;
        self
    }

    /// The longest `Retry-After` to honour (default 180 s); a longer one ends the call with
    /// `Error::RateLimited`.
    pub fn with_retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// The backoff used when the response gave no `Retry-After`.
    pub fn with_backoff(mut self, backoff: ExponentialBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The most requests one call may send.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The longest a call may keep retrying.
    pub fn max_total_time(&self) -> Duration {
        self.max_total_time
    }

    /// The longest `Retry-After` honoured.
    pub fn retry_after_cap(&self) -> Duration {
        self.retry_after_cap
    }

    /// The backoff.
    pub fn backoff(&self) -> &ExponentialBackoff {
        &self.backoff
    }

    /// Starts the clock for one call: the schedule decides after each failed attempt.
    pub(crate) fn schedule(&self) -> RetrySchedule {
        RetrySchedule {
            policy: self.clone(),
            backoff: self.backoff.iter(),
            failed_attempts: 0,
            started: Instant::now(),
        }
    }

    /// Checks the policy's settings.
    ///
    /// # Errors
    ///
    /// [`InvalidRetryPolicy`] when `max_attempts` is 0, the total time or `Retry-After` cap is
    /// zero, or the backoff's base is zero or above its cap. (The client's builder reports it
    /// as a configuration error.)
    pub fn validate(&self) -> Result<(), InvalidRetryPolicy> {
        if self.max_attempts == 0 {
            return Err(InvalidRetryPolicy::new(
                "retry policy needs at least one attempt",
            ));
        }
        if self.max_total_time.is_zero() {
            return Err(InvalidRetryPolicy::new(
                "retry policy max total time must be greater than zero",
            ));
        }
        if self.retry_after_cap.is_zero() {
            return Err(InvalidRetryPolicy::new(
                "retry policy Retry-After cap must be greater than zero",
            ));
        }
        self.backoff.validate()
    }
}

/// What to do after a failed, transient attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryDecision {
    /// Send the request again after this wait.
    Retry {
        /// How long to wait first.
        after: Duration,
    },
    /// Give up.
    DoNotRetry(StopReason),
}

/// Why a [`RetrySchedule`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// `max_attempts` requests were sent.
    AttemptsExhausted,
    /// The next wait would end after `max_total_time`.
    TimeBudgetExhausted,
    /// `Retry-After` asked for longer than the cap.
    RetryAfterTooLong {
        /// What `Retry-After` asked for.
        wait: Duration,
    },
}

/// One call's retry state: how many attempts failed and since when.
#[derive(Debug, Clone)]
pub(crate) struct RetrySchedule {
    policy: RetryPolicy,
    backoff: BackoffIter,
    failed_attempts: u32,
    started: Instant,
}

impl RetrySchedule {
    /// Records a failed attempt and decides whether and when to send the next one.
    /// `retry_after` is the server's `Retry-After`, when it should be honoured.
    pub(crate) fn next_decision(&mut self, retry_after: Option<Duration>) -> RetryDecision {
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        if let Some(wait) = retry_after {
            if wait > self.policy.retry_after_cap {
                return RetryDecision::DoNotRetry(StopReason::RetryAfterTooLong { wait });
            }
        }
        if self.failed_attempts >= self.policy.max_attempts {
            return RetryDecision::DoNotRetry(StopReason::AttemptsExhausted);
        }
        let wait = match retry_after {
            Some(wait) => wait,
            None => self.backoff.next().unwrap_or(self.policy.backoff.cap),
        };
        if self.started.elapsed() + wait > self.policy.max_total_time {
            return RetryDecision::DoNotRetry(StopReason::TimeBudgetExhausted);
        }
        RetryDecision::Retry { after: wait }
    }

    /// Moves the start forward by `queued`: time spent waiting in the client's limiter does
    /// not count against the total time.
    pub(crate) fn exclude(&mut self, queued: Duration) {
        self.started += queued;
    }

    /// How many attempts have failed so far.
    pub(crate) fn failed_attempts(&self) -> u32 {
        self.failed_attempts
    }

    /// Time since the schedule started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_waits_stay_below_their_ceiling() {
        let backoff = ExponentialBackoff::default()
            .with_base(Duration::from_millis(100))
            .with_cap(Duration::from_secs(1))
            .with_seed(42);
        let ceilings = [100u64, 200, 400, 800, 1000, 1000, 1000];
        let waits: Vec<Duration> = backoff.iter().take(ceilings.len()).collect();
        for (wait, ceiling) in waits.iter().zip(ceilings) {
            assert!(
                *wait <= Duration::from_millis(ceiling),
                "{wait:?} > {ceiling}ms"
            );
        }
        // Not all equal to the ceiling: jitter is on.
        assert!(waits
            .iter()
            .zip(ceilings)
            .any(|(w, c)| *w < Duration::from_millis(c)));
        assert_eq!(
            waits,
            backoff.iter().take(ceilings.len()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn backoff_never_overflows() {
        let mut iter = ExponentialBackoff::default()
            .with_jitter(false)
            .with_cap(Duration::from_secs(60))
            .iter();
        let last = iter.nth(200).unwrap();
        assert_eq!(last, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn over_cap_retry_after_stops_even_with_attempts_left() {
        let mut schedule = RetryPolicy::default().schedule();
        assert_eq!(
            schedule.next_decision(Some(Duration::from_secs(181))),
            RetryDecision::DoNotRetry(StopReason::RetryAfterTooLong {
                wait: Duration::from_secs(181)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn total_time_budget_is_enforced() {
        let policy = RetryPolicy::default()
            .with_max_attempts(100)
            .with_max_total_time(Duration::from_secs(10));
        let mut schedule = policy.schedule();
        assert_eq!(
            schedule.next_decision(Some(Duration::from_secs(6))),
            RetryDecision::Retry {
                after: Duration::from_secs(6)
            }
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            schedule.next_decision(Some(Duration::from_secs(6))),
            RetryDecision::DoNotRetry(StopReason::TimeBudgetExhausted)
        );
    }

    #[test]
    fn invalid_policies_are_rejected() {
        assert!(RetryPolicy::default().validate().is_ok());
        assert!(RetryPolicy::default()
            .with_max_attempts(0)
            .validate()
            .is_err());
        assert!(RetryPolicy::default()
            .with_max_total_time(Duration::ZERO)
            .validate()
            .is_err());
        assert!(RetryPolicy::default()
            .with_backoff(
                ExponentialBackoff::default()
                    .with_base(Duration::from_secs(10))
                    .with_cap(Duration::from_secs(1))
            )
            .validate()
            .is_err());
    }
}
