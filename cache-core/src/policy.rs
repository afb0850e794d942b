//! How long an entry is fresh, how long it may be served stale, and how refreshes happen.

use std::time::Duration;

use crate::codec::Codec;
use crate::error::PolicyError;

/// What happens on a stale hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefreshMode {
    /// Return the stale value at once and refresh in a background task (the default).
    #[default]
    Background,
    /// Reload before returning; if the reload fails, return the stale value.
    Inline,
}

/// The windows and refresh behaviour of a cached function.
///
/// With age = now − cached_at: age < fresh is a fresh hit, fresh ≤ age < stale a stale hit
/// (served, and refreshed once), anything older a miss. The store expires an entry at its stale
/// window, so nothing outlives it.
///
/// ```
/// use action_cache_core::Policy;
/// use std::time::Duration;
///
/// let p = Policy::builder()
///     .fresh(Duration::from_secs(300))
///     .stale(Duration::from_secs(900))
///     .jitter(0.2)
///     .build()?;
/// assert_eq!(p.fresh(), Duration::from_secs(300));
/// assert!(Policy::new(Duration::from_secs(10), Duration::from_secs(5)).is_err());
/// # Ok::<(), action_cache_core::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    fresh: Duration,
    stale: Duration,
    jitter: f64,
    refresh_mode: RefreshMode,
    early_refresh_beta: Option<f64>,
    codec: Option<Codec>,
}

impl Policy {
    /// The default jitter: each write stretches its windows by up to 10 %.
    pub const DEFAULT_JITTER: f64 = 0.1;

    /// A policy with these windows and default jitter.
    ///
    /// # Errors
    ///
    /// As [`PolicyBuilder::build`].
    pub fn new(fresh: Duration, stale: Duration) -> Result<Policy, PolicyError> {
        Policy::builder().fresh(fresh).stale(stale).build()
    }

    /// Starts a policy; defaults: fresh 300 s, stale 900 s, jitter 0.1, background refresh, no
    /// early refresh. As in `#[cached_action]`, a `stale` left unset defaults to `fresh` once
    /// `fresh` is set (no stale window); only the untouched defaults pair 300 s with 900 s.
    ///
    /// ```
    /// use action_cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// let p = Policy::builder().fresh(Duration::from_secs(1200)).build().unwrap();
    /// assert_eq!(p.stale(), Duration::from_secs(1200));
    /// assert_eq!(Policy::builder().build().unwrap().stale(), Duration::from_secs(900));
    /// ```
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            stale_set: false,
            policy: Policy {
                fresh: Duration::from_secs(300),
                stale: Duration::from_secs(900),
                jitter: Policy::DEFAULT_JITTER,
                refresh_mode: RefreshMode::Background,
                early_refresh_beta: None,
                codec: None,
            },
        }
    }

    /// The fresh window before jitter.
    pub fn fresh(&self) -> Duration {
        self.fresh
    }

    /// The stale window before jitter (also the store expiry).
    pub fn stale(&self) -> Duration {
        self.stale
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// What happens on a stale hit.
    pub fn refresh_mode(&self) -> RefreshMode {
        self.refresh_mode
    }

    /// The XFetch `beta`, when probabilistic early refresh is on.
    pub fn early_refresh_beta(&self) -> Option<f64> {
        self.early_refresh_beta
    }

    /// The codec this policy's values are stored with; `None`: the cache's
    /// ([`CacheBuilder::codec`](crate::CacheBuilder::codec)).
    pub fn codec(&self) -> Option<Codec> {
        self.codec
    }

    /// This policy with the fresh and stale windows and the jitter of `told` (a loader's choice,
    /// see [`Loaded::with_policy`](crate::Loaded::with_policy)); the codec, refresh mode and
    /// early refresh stay this one's.
    pub(crate) fn with_windows_of(&self, told: &Policy) -> Policy {
        Policy {
            fresh: told.fresh,
            stale: told.stale,
            jitter: told.jitter,
            ..self.clone()
        }
    }

    /// Draws the windows for one write: each is `window × (1 + U(0, jitter))`, and stale is kept
    /// no shorter than fresh. `u1`, `u2` are uniform in `[0, 1)`.
    pub(crate) fn draw_windows(&self, u1: f64, u2: f64) -> (u64, u64) {
        let stretch = |d: Duration, u: f64| (d.as_millis() as f64 * (1.0 + u * self.jitter)) as u64;
        let fresh = stretch(self.fresh, u1).max(1);
        let stale = stretch(self.stale, u2).max(fresh);
        (fresh, stale)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::builder().policy
    }
}

/// Builds a [`Policy`], validating it.
#[derive(Debug, Clone)]
pub struct PolicyBuilder {
    policy: Policy,
    /// Whether `stale` was given; when not, setting `fresh` moves `stale` along with it.
    stale_set: bool,
}

impl PolicyBuilder {
    /// How long an entry is served without any refresh. Also sets `stale` to the same value
    /// unless [`PolicyBuilder::stale`] is (or was) given.
    pub fn fresh(mut self, fresh: Duration) -> Self {
        self.policy.fresh = fresh;
        if !self.stale_set {
            self.policy.stale = fresh;
        }
        self
    }

    /// How long (from when it was cached) an entry may still be served while it is refreshed;
    /// not shorter than `fresh`. Defaults to `fresh` once `fresh` is set.
    pub fn stale(mut self, stale: Duration) -> Self {
        self.policy.stale = stale;
        self.stale_set = true;
        self
    }

    /// The jitter fraction in `0.0..=1.0`; 0 disables jitter.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.policy.jitter = jitter;
        self
    }

    /// What happens on a stale hit.
    pub fn refresh_mode(mut self, mode: RefreshMode) -> Self {
        self.policy.refresh_mode = mode;
        self
    }

    /// Turns on probabilistic early refresh (XFetch): a fresh hit refreshes in the background
    /// when `now − delta·beta·ln(U) ≥ fresh_until`, `delta` being the last load's duration.
    /// `beta = 1.0` is the usual choice; larger refreshes earlier.
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.policy.early_refresh_beta = Some(beta);
        self
    }

    /// Stores this policy's values with `codec` instead of the cache's (see [`Codec`]).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.policy.codec = Some(codec);
        self
    }

    /// Validates and returns the policy.
    ///
    /// # Errors
    ///
    /// [`PolicyError::ZeroFresh`], [`PolicyError::StaleBeforeFresh`] when stale < fresh,
    /// [`PolicyError::Jitter`] outside `0.0..=1.0`, [`PolicyError::Beta`] when not finite and > 0.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let p = self.policy;
        if p.fresh.is_zero() {
            return Err(PolicyError::ZeroFresh);
        }
        if p.stale < p.fresh {
            return Err(PolicyError::StaleBeforeFresh {
                fresh: p.fresh,
                stale: p.stale,
            });
        }
        if !(0.0..=1.0).contains(&p.jitter) {
            return Err(PolicyError::Jitter(p.jitter));
        }
        if let Some(beta) = p.early_refresh_beta {
            if !(beta.is_finite() && beta > 0.0) {
                return Err(PolicyError::Beta(beta));
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn stale_follows_fresh_unless_given_in_either_order() {
        let secs = Duration::from_secs;
        let only_fresh = Policy::builder().fresh(secs(1200)).build().unwrap();
        assert_eq!(
            (only_fresh.fresh(), only_fresh.stale()),
            (secs(1200), secs(1200))
        );
        let stale_first = Policy::builder().stale(secs(600)).fresh(secs(60)).build();
        assert_eq!(stale_first.unwrap().stale(), secs(600));
        let untouched = Policy::builder().build().unwrap();
        assert_eq!(
            (untouched.fresh(), untouched.stale()),
            (secs(300), secs(900))
        );
        assert_eq!(Policy::default().stale(), secs(900));
    }

    #[test]
    fn invalid_policies_are_refused_when_built() {
        assert_eq!(
            Policy::new(secs(10), secs(5)),
            Err(PolicyError::StaleBeforeFresh {
                fresh: secs(10),
                stale: secs(5)
            })
        );
        assert_eq!(
            Policy::new(Duration::ZERO, secs(5)),
            Err(PolicyError::ZeroFresh)
        );
        assert!(matches!(
            Policy::builder().jitter(-0.1).build(),
            Err(PolicyError::Jitter(_))
        ));
        assert!(matches!(
            Policy::builder().jitter(f64::NAN).build(),
            Err(PolicyError::Jitter(_))
        ));
        assert!(matches!(
            Policy::builder().early_refresh(0.0).build(),
            Err(PolicyError::Beta(_))
        ));
        assert!(Policy::new(secs(5), secs(5)).is_ok());
    }

    #[test]
    fn jitter_draws_stay_within_bounds_and_keep_stale_after_fresh() {
        let p = Policy::builder()
            .fresh(secs(100))
            .stale(secs(101))
            .jitter(0.2)
            .build()
            .unwrap();
        for (u1, u2) in [(0.0, 0.0), (0.999, 0.0), (0.5, 0.5), (0.0, 0.999)] {
            let (f, s) = p.draw_windows(u1, u2);
            assert!((100_000..120_000).contains(&f), "fresh {f}");
            assert!((101_000..=121_200).contains(&s) || s == f, "stale {s}");
            assert!(s >= f);
        }
        let none = Policy::builder()
            .fresh(secs(100))
            .stale(secs(200))
            .jitter(0.0)
            .build()
            .unwrap();
        assert_eq!(none.draw_windows(0.9, 0.9), (100_000, 200_000));
    }
}
