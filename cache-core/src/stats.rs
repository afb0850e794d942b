//! Counters of what the cache did, their snapshot, and the gauge of what runs now.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $field:ident),* $(,)?) => {
        /// A snapshot of a cache's counters since it was built (all clones of a `Cache` share them).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        #[non_exhaustive]
        pub struct Stats {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl Stats {
            /// Every counter with its field name, in declaration order: for exporting them
            /// (e.g. `("fresh_hits", 12)`).
            ///
            /// ```
            /// let stats = action_cache_core::Cache::in_memory().stats();
            /// assert!(stats.counters().any(|(name, n)| name == "fresh_hits" && n == 0));
            /// ```
            pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($field), self.$field)),*].into_iter()
            }
        }

        /// The live counters behind [`Stats`]. One difference: a near hit is counted once, in
        /// `near_hits`, and `fresh_hits` here counts only the other fresh hits; the snapshot adds
        /// them up (one increment fewer on the hottest path).
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $field: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                let mut stats = Stats { $($field: self.$field.load(Ordering::Relaxed),)* };
                stats.fresh_hits += stats.near_hits;
                stats
            }
        }
    };
}

counters! {
    /// Calls answered from a fresh entry.
    fresh_hits,
    /// Calls answered from a stale entry (a refresh was due).
    stale_hits,
    /// Calls that found no usable entry.
    misses,
    /// Loader calls made for misses (coalesced misses share one).
    loads,
    /// Loader calls that returned an error.
    load_errors,
    /// Misses that waited on another caller's load instead of loading.
    coalesced_waits,
    /// Background refreshes started.
    refreshes_started,
    /// Refreshes whose loader succeeded: the new value was stored, or, when the loader said
    /// not to store it ([`Loaded::no_store`](crate::Loaded::no_store)), the stale entry removed.
    refreshes_succeeded,
    /// Refreshes whose loader failed, panicked or timed out (the old entry was kept).
    refreshes_failed,
    /// Refreshes not started because the refresh capacity was full.
    refreshes_dropped,
    /// Refreshes whose result was discarded because the entry was invalidated or replaced.
    refreshes_discarded,
    /// Store operations that failed or timed out (the call failed open).
    store_errors,
    /// Store calls skipped because the circuit breaker was open.
    store_skipped,
    /// Entries that could not be decoded (foreign data, older format, wrong type); each was a miss.
    corrupt_entries,
    /// Fresh hits answered by an in-process tier without a store round trip: the near cache in
    /// front of Redis, or the typed tier in front of the memory store.
    near_hits,
    /// Values decoded from an entry's bytes to answer a call (store reads, in-process hits of
    /// an entry held as bytes only or as another type, waiters decoding a leader's entry). A hit
    /// on a decoded value held in process decodes nothing.
    decodes,
    /// Times the near cache was emptied because its invalidation subscription was lost.
    near_resets,
    /// Values not stored because they could not be encoded faithfully or were over the size
    /// limit (they were still returned, and shared with coalesced waiters).
    unstorable_values,
    /// Loads not stored because their entry was purged or replaced while they ran.
    superseded_loads,
}

impl Counters {
    pub(crate) fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one cache (all its clones) has in flight right now: a gauge for health checks and
/// metrics, and the way tests check that nothing is left behind once calls end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct InFlight {
    /// Loads under way: misses whose loader (or whose wait on another process's lock) runs.
    pub loads: usize,
    /// Store reads shared by concurrent readers of one key.
    pub reads: usize,
    /// Background refreshes running.
    pub refreshes: usize,
}
