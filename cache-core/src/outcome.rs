//! What a call found ([`Outcome`]), and what a loader may say about keeping its value
//! ([`Loaded`]).

use crate::policy::Policy;

/// How a call of [`Cache::get_or_load_with_outcome`](crate::Cache::get_or_load_with_outcome)
/// (or [`Cache::get_or_load_with_loader_policy`](crate::Cache::get_or_load_with_loader_policy))
/// got its value.
///
/// Each call counts exactly one of [`Stats::fresh_hits`](crate::Stats::fresh_hits) (for
/// `Fresh`), [`Stats::stale_hits`](crate::Stats::stale_hits) (`Stale`, `Refreshed`,
/// `StaleIfError`) and [`Stats::misses`](crate::Stats::misses) (`Miss`, `Coalesced`); asking for
/// the outcome counts nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// A fresh hit: the value of an entry inside its fresh window (from the store or an
    /// in-process tier); no loader ran for this call. With
    /// [`PolicyBuilder::early_refresh`](crate::PolicyBuilder::early_refresh), a background
    /// refresh may have been started.
    Fresh,
    /// A stale hit ([`RefreshMode::Background`](crate::RefreshMode::Background)): the value of
    /// an entry past its fresh window but inside its stale window, returned at once. A
    /// background refresh was started by this call, or one was already running or done for
    /// this entry (in this process or, through the refresh lock, another), or none was started
    /// because [`CacheBuilder::refresh_capacity`](crate::CacheBuilder::refresh_capacity) was
    /// full ([`Stats::refreshes_dropped`](crate::Stats::refreshes_dropped)).
    Stale,
    /// A miss (no usable entry) whose value this call's own loader produced, whether or not it
    /// could be stored. A caller that waited on another's load, in vain, and then loaded itself
    /// is a `Miss` too.
    Miss,
    /// A miss whose value another caller's load produced: this call waited on a load of the
    /// same key in this process (counted in
    /// [`Stats::coalesced_waits`](crate::Stats::coalesced_waits)), or found the entry another
    /// process had just stored while this call waited for its lock. This call's loader did not
    /// run.
    Coalesced,
    /// A stale hit with [`RefreshMode::Inline`](crate::RefreshMode::Inline): the entry was
    /// reloaded before returning, and the value is the reloaded one (this call's loader, or
    /// another caller's load it waited on).
    Refreshed,
    /// A stale hit with [`RefreshMode::Inline`](crate::RefreshMode::Inline) whose reload
    /// failed: the value is the stale entry's (the error was logged, not returned).
    StaleIfError,
}

impl Outcome {
    /// Whether the value came from an entry without waiting for any load (`Fresh` or `Stale`).
    pub fn is_hit(self) -> bool {
        matches!(self, Outcome::Fresh | Outcome::Stale)
    }
}

/// A loader's value and how it is to be kept: with the call's [`Policy`], with windows of the
/// loader's own choosing, or not at all. What loaders of
/// [`Cache::get_or_load_with_loader_policy`](crate::Cache::get_or_load_with_loader_policy)
/// return, e.g. from an HTTP answer's `Cache-Control`.
///
/// Whatever it says, the value is stored the way every load's is: only if no purge or put of
/// the entry happened since the load began, only if it encodes faithfully and fits the size
/// limit, and an `Err` of the loader is never stored.
///
/// ```
/// use action_cache_core::{Loaded, Policy};
/// use std::time::Duration;
///
/// let told = Policy::builder()
///     .fresh(Duration::from_secs(60))
///     .stale(Duration::from_secs(90))
///     .jitter(0.0)
///     .build()?;
/// let kept = Loaded::with_policy("body", told);
/// assert_eq!(kept.value(), &"body");
/// let not_kept = Loaded::no_store("private body");
/// assert_eq!(not_kept.into_value(), "private body");
/// # Ok::<(), action_cache_core::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    value: T,
    keep: Keep,
}

/// How a loaded value is kept.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Keep {
    /// With the call's policy.
    AsCalled,
    /// With these windows and jitter (the rest of the call's policy stays).
    Windows(Policy),
    /// Not stored.
    NoStore,
}

impl<T> Loaded<T> {
    /// `value`, kept with the call's policy (as a plain loader's value is).
    pub fn new(value: T) -> Loaded<T> {
        Loaded {
            value,
            keep: Keep::AsCalled,
        }
    }

    /// `value`, kept with the fresh and stale windows and the jitter of `policy` instead of the
    /// call's (its windows are drawn from them as for any write). The rest stays the call's:
    /// its codec (so that readers can decode the entry), its refresh mode and early refresh.
    pub fn with_policy(value: T, policy: Policy) -> Loaded<T> {
        Loaded {
            value,
            keep: Keep::Windows(policy),
        }
    }

    /// `value`, returned (and shared with the callers waiting on this load) but not stored.
    /// From a background refresh, it also removes the stale entry it was refreshing (unless that
    /// entry was replaced meanwhile), so that the next call loads again rather than being
    /// served a copy its source no longer lets be kept.
    pub fn no_store(value: T) -> Loaded<T> {
        Loaded {
            value,
            keep: Keep::NoStore,
        }
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The value, without how to keep it.
    pub fn into_value(self) -> T {
        self.value
    }

    /// The value and how to keep it.
    pub(crate) fn into_parts(self) -> (T, Keep) {
        (self.value, self.keep)
    }
}

impl Keep {
    /// The policy to write with, `None` for no write: the call's, or the call's with this
    /// directive's windows and jitter.
    pub(crate) fn policy(&self, call: &Policy) -> Option<Policy> {
        match self {
            Keep::AsCalled => Some(call.clone()),
            Keep::Windows(told) => Some(call.with_windows_of(told)),
            Keep::NoStore => None,
        }
    }
}
