//! The client-side limiter: keeps one client inside the limits Genesys documents per org, so a
//! burst of callers waits in line instead of turning into a storm of 429s.
//!
//! * At most [`Limits::max_concurrent_executions`] data-action executions in flight (Genesys:
//!   `actions.concurrent.executions.max`, 50 by default). Further executions wait in line
//!   (first come, first served) for a slot.
//! * At most [`Limits::executions_per_minute`] executions (2,500) and
//!   [`Limits::requests_per_minute`] Platform API requests (300 per token, executions
//!   included) in any 60 s: a sliding window, so no fixed minute of Genesys's sees more.
//! * With [`Limits::with_rate_limit_headers`] (on), a response whose `inin-ratelimit-count`
//!   reached `inin-ratelimit-allowed` holds new requests until `inin-ratelimit-reset` has
//!   passed, and a 429's `Retry-After` holds them as long: the client slows down before
//!   (or as soon as) Genesys starts refusing, instead of every caller finding out alone.
//!
//! Every attempt, retries included, passes the limiter; token requests (to the login host) do
//! not. Time spent waiting in line does not count against a call's retry time budget.
//! [`Limits::off`] turns it all off.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::meta::ResponseMeta;

/// The documented per-org limit of data-action executions running at once.
pub const DEFAULT_MAX_CONCURRENT_EXECUTIONS: usize = 50;
/// The documented per-org limit of data-action executions per minute.
pub const DEFAULT_EXECUTIONS_PER_MINUTE: u32 = 2_500;
/// The documented limit of Platform API requests per minute per OAuth token.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 300;

/// How fast one client may go; see the [crate docs](crate#staying-inside-the-orgs-limits). Defaults match Genesys's
/// documented limits; lower them when several clients share an org.
///
/// ```
/// use genesys_client::Limits;
///
/// let limits = Limits::default();
/// assert_eq!(limits.max_concurrent_executions(), Some(50));
/// assert_eq!(limits.executions_per_minute(), Some(2_500));
/// assert_eq!(limits.requests_per_minute(), Some(300));
///
/// // Half the org's budget, no per-minute cap on executions, and no limiter at all.
/// let shared = Limits::default()
///     .with_max_concurrent_executions(25)
///     .with_requests_per_minute(150)
///     .with_executions_per_minute(None);
/// assert_eq!(shared.executions_per_minute(), None);
/// assert_eq!(Limits::off().max_concurrent_executions(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Limits {
    max_concurrent_executions: Option<usize>,
    executions_per_minute: Option<u32>,
    requests_per_minute: Option<u32>,
    follow_rate_limit_headers: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_executions: Some(DEFAULT_MAX_CONCURRENT_EXECUTIONS),
            executions_per_minute: Some(DEFAULT_EXECUTIONS_PER_MINUTE),
            requests_per_minute: Some(DEFAULT_REQUESTS_PER_MINUTE),
            follow_rate_limit_headers: true,
        }
    }
}

impl Limits {
    /// No limiter: every request is sent at once, and rate-limit headers are only reported.
    pub fn off() -> Self {
        Self {
            max_concurrent_executions: None,
            executions_per_minute: None,
            requests_per_minute: None,
            follow_rate_limit_headers: false,
        }
    }

    /// The most executions in flight at once (default 50; `None`: no cap).
    pub fn with_max_concurrent_executions(mut self, max: impl Into<Option<usize>>) -> Self {
        self.max_concurrent_executions = max.into();
        self
    }

    /// The most executions in any 60 s (default 2,500; `None`: no cap).
    pub fn with_executions_per_minute(mut self, max: impl Into<Option<u32>>) -> Self {
        self.executions_per_minute = max.into();
        self
    }

    /// The most API requests, executions included, in any 60 s (default 300; `None`: no cap).
    pub fn with_requests_per_minute(mut self, max: impl Into<Option<u32>>) -> Self {
        self.requests_per_minute = max.into();
        self
    }

    /// Whether `inin-ratelimit-*` headers and 429 `Retry-After`s hold back new requests
    /// (default `true`).
    pub fn with_rate_limit_headers(mut self, follow: bool) -> Self {
        self.follow_rate_limit_headers = follow;
        self
    }

    /// The cap on executions in flight.
    pub fn max_concurrent_executions(&self) -> Option<usize> {
        self.max_concurrent_executions
    }

    /// The cap on executions per 60 s.
    pub fn executions_per_minute(&self) -> Option<u32> {
        self.executions_per_minute
    }

    /// The cap on API requests per 60 s.
    pub fn requests_per_minute(&self) -> Option<u32> {
        self.requests_per_minute
    }

    /// Whether rate-limit headers hold back new requests.
    pub fn follows_rate_limit_headers(&self) -> bool {
        self.follow_rate_limit_headers
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_concurrent_executions == Some(0)
            || self.executions_per_minute == Some(0)
            || self.requests_per_minute == Some(0)
        {
            return Err(Error::config(
                "a limit of 0 would stop every request; use None (or Limits::off()) for no limit",
            ));
        }
        Ok(())
    }
}

/// The running limiter of one client (shared by its clones).
pub(crate) struct Limiter {
    executions: Option<Semaphore>,
    execution_rate: Option<SlidingWindow>,
    request_rate: Option<SlidingWindow>,
    follow_headers: bool,
    /// No new request before this instant (from rate-limit headers or a 429).
    hold_until: Mutex<Option<Instant>>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field(
                "free_execution_slots",
                &self.executions.as_ref().map(Semaphore::available_permits),
            )
            .field("follow_headers", &self.follow_headers)
            .finish_non_exhaustive()
    }
}

/// A request's place in flight; an execution slot is freed when it drops.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    _slot: Option<SemaphorePermit<'a>>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        let window = |max: Option<u32>| {
            max.map(|max| SlidingWindow::new(max as usize, Duration::from_secs(60)))
        };
        Self {
            executions: limits.max_concurrent_executions.map(Semaphore::new),
            execution_rate: window(limits.executions_per_minute),
            request_rate: window(limits.requests_per_minute),
            follow_headers: limits.follow_rate_limit_headers,
            hold_until: Mutex::new(None),
        }
    }

    /// Waits until one more request (an execution when `execution`) may be sent.
    pub(crate) async fn admit(&self, execution: bool) -> Admission<'_> {
        let slot = match (&self.executions, execution) {
            // The semaphore is never closed, so acquiring only fails if it were.
            (Some(slots), true) => slots.acquire().await.ok(),
            _ => None,
        };
        self.wait_for_hold().await;
        if execution {
            if let Some(rate) = &self.execution_rate {
                rate.acquire().await;
            }
        }
        if let Some(rate) = &self.request_rate {
            rate.acquire().await;
        }
        Admission { _slot: slot }
    }

    /// Learns from a response's headers: holds new requests when the window is used up or
    /// Genesys answered 429 with `Retry-After`.
    pub(crate) fn observe(&self, meta: &ResponseMeta) {
        if !self.follow_headers {
            return;
        }
        let limit = &meta.rate_limit;
        let exhausted = match (limit.count, limit.allowed) {
            (Some(count), Some(allowed)) => count >= allowed,
            _ => false,
        };
        let mut hold = None;
        if exhausted {
            hold = limit.reset.map(Duration::from_secs);
        }
        if meta.status.as_u16() == 429 {
            hold = hold.max(meta.retry_after);
        }
        if let Some(wait) = hold {
            let until = Instant::now() + wait;
            let mut current = self
                .hold_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.is_none_or(|t| t < until) {
                *current = Some(until);
            }
        }
    }

    async fn wait_for_hold(&self) {
        let until = *self
            .hold_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(until) = until {
            if until > Instant::now() {
                tokio::time::sleep_until(until).await;
            }
        }
    }
}

/// At most `max` events in any `period`: a log of the last `max` send times. Callers queue
/// first come, first served (tokio's mutex is fair), and only the head of the line sleeps.
struct SlidingWindow {
    max: usize,
    period: Duration,
    log: tokio::sync::Mutex<VecDeque<Instant>>,
}

impl SlidingWindow {
    fn new(max: usize, period: Duration) -> Self {
        Self {
            max,
            period,
            log: tokio::sync::Mutex::new(VecDeque::with_capacity(max.min(4096))),
        }
    }

    async fn acquire(&self) {
        let mut log = self.log.lock().await;
        loop {
            let now = Instant::now();
            while log
                .front()
                .is_some_and(|sent| now.duration_since(*sent) >= self.period)
            {
                log.pop_front();
            }
            if log.len() < self.max {
                log.push_back(now);
                return;
            }
            let oldest = *log.front().expect("the log is full, so not empty");
            tokio::time::sleep_until(oldest + self.period).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_sliding_window_never_lets_more_than_max_through_in_a_period() {
        let window = SlidingWindow::new(3, Duration::from_secs(60));
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..7 {
            window.acquire().await;
            sent.push(start.elapsed().as_secs());
        }
        assert_eq!(sent, [0, 0, 0, 60, 60, 60, 120]);
    }

    #[test]
    fn zero_limits_are_refused() {
        assert!(Limits::default().validate().is_ok());
        assert!(Limits::off().validate().is_ok());
        assert!(Limits::default()
            .with_max_concurrent_executions(0)
            .validate()
            .is_err());
        assert!(Limits::default()
            .with_requests_per_minute(0)
            .validate()
            .is_err());
    }
}
