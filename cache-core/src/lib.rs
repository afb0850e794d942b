//! The engine behind action-cache: stale-while-revalidate caching of expensive async calls over
//! Redis (or memory), with miss coalescing, jitter, tags and fail-open.
//!
//! ```
//! use action_cache_core::{Cache, CacheKey, Policy};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // `Cache::from_env()` uses Redis when REDIS_URL is set; this one is in memory.
//! let cache = Cache::in_memory();
//! let policy = Policy::builder()
//!     .fresh(Duration::from_secs(300))
//!     .stale(Duration::from_secs(900))
//!     .build()?;
//!
//! let mut key = CacheKey::builder("crm.account");
//! key.arg("account_id", "42")?.tag("account:42");
//! let key = key.build();
//!
//! let name: String = cache
//!     .get_or_load(&key, &policy, || async {
//!         // The expensive backend call goes here.
//!         Ok::<_, String>("Ada Lovelace".to_string())
//!     })
//!     .await?;
//! assert_eq!(name, "Ada Lovelace");
//!
//! // The CRM says account 42 changed: purge everything tagged with it.
//! assert_eq!(cache.invalidate_tag("account:42").await?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//!
//! `metrics` (off by default): [`Cache::record_metrics`](crate::Cache) reports the counters
//! through the `metrics` facade, per key name (see the `metrics` module).
//!
//! `redis` (on by default): `store::RedisStore` (one server, TLS, Sentinel, Cluster) and the
//! `CacheBuilder::redis_*` settings. Without it the cache runs on the memory store or a
//! [`store::Store`] of your own, and [`Cache::from_env`] refuses a configured Redis.
//!
//! # Semantics
//!
//! An entry stores the value, when it was cached, and the fresh and stale windows it was written
//! with (each stretched by jitter). With age = now − cached_at: age < fresh is a **fresh hit**;
//! fresh ≤ age < stale is a **stale hit**, returned at once while one background refresh runs;
//! otherwise a **miss**. The store expires entries at their stale window.
//! [`Cache::get_or_load_with_outcome`] says which of these a call was ([`Outcome`]), and with
//! [`Cache::get_or_load_with_loader_policy`] a loader chooses its entry's windows, or that it is
//! not stored at all ([`Loaded`]).
//!
//! Every store operation has a timeout; when the store is down, slow or holds garbage, calls go
//! to the loader and still return correct values, and a circuit breaker stops paying the timeout
//! after repeated failures.
//!
//! # Guarantees
//!
//! - A loader error is never stored, nor a value whose entry would not read back as written.
//! - A load that began before a purge or a put of its entry ([`Cache::invalidate`],
//!   [`Cache::invalidate_tag`], [`Cache::invalidate_prefix`], [`Cache::put`], from any process)
//!   returns its value to its own caller but does not store it: purge generations in Redis,
//!   checked by the write's Lua script (atomically on one server; on a Redis Cluster the tag and
//!   prefix generations are checked right after the write, which is undone if one moved).
//! - Concurrent misses make one loader call per key, in one process and across processes,
//!   however slow the loader: the lock holder renews its lock as a lease, and exactly one waiter
//!   takes over when the holder dies. Waiters wait at most
//!   [`CacheBuilder::lock_wait`], then get [`LoadError::TimedOut`].
//! - One background refresh per key per stale episode.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod breaker;
mod builder;
mod cache;
mod clock;
mod codec;
mod engine;
mod entry;
mod error;
mod flight;
mod global;
mod key;
mod keyspace;
mod load;
mod lock;
#[cfg(feature = "metrics")]
pub mod metrics;
mod near;
mod outcome;
mod policy;
mod read_flight;
mod refresh;
#[doc(hidden)]
pub mod returns;
mod settings;
mod soft;
mod stats;
pub mod store;

pub use builder::CacheBuilder;
pub use cache::{Cache, PurgeMark};
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::Codec;
pub use error::{CacheError, KeyError, LoadError, PolicyError, StoreError};
/// For the code `#[cached_action]` generates (through `action_cache::__private`); not an API.
#[doc(hidden)]
pub use global::global_or_warn;
pub use global::{global, set_global};
pub use key::{CacheKey, KeyBuilder};
pub use outcome::{Loaded, Outcome};
pub use policy::{Policy, PolicyBuilder, RefreshMode};
pub use refresh::RefreshFuture;
pub use stats::{InFlight, Stats};
