//! Configuring a [`Cache`].

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::Breaker;
use crate::cache::Cache;
use crate::clock::{Clock, SystemClock};
use crate::engine::Engine;
use crate::error::CacheError;
use crate::keyspace::Keyspace;
use crate::near::Near;
use crate::policy::Policy;
use crate::settings::Settings;
use crate::store::{MemoryStore, RedisStore, Store};

/// Builds a [`Cache`]. Every setting has a documented default; [`CacheBuilder::build`] checks
/// them.
///
/// ```
/// use action_cache_core::Cache;
/// use std::time::Duration;
///
/// let cache = Cache::builder()
///     .redis_url("redis://127.0.0.1:6379/0") // connected on first use
///     .prefix("orders")
///     .op_timeout(Duration::from_millis(50))
///     .build()?;
/// assert_eq!(cache.prefix(), "orders");
/// # Ok::<(), action_cache_core::CacheError>(())
/// ```
#[derive(Debug)]
pub struct CacheBuilder {
    backend: Backend,
    prefix: String,
    default_policy: Policy,
    op_timeout: Duration,
    lock_ttl: Duration,
    lock_wait: Duration,
    refresh_capacity: usize,
    refresh_timeout: Duration,
    max_entry_bytes: usize,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
    clock: Arc<dyn Clock>,
    rng_seed: Option<u64>,
    near_capacity: Option<usize>,
}

#[derive(Debug)]
enum Backend {
    Memory { capacity: usize },
    RedisUrl(String),
    RedisCluster(Vec<String>),
    Store(Arc<dyn Store>),
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder::new()
    }
}

impl CacheBuilder {
    /// Defaults: in-memory store of 10,000 keys, prefix `ac`, policy fresh 300 s / stale 900 s,
    /// operation timeout 50 ms, lock TTL 5 s (renewed while a load runs), waiting on another
    /// caller's load up to 30 s, 64 refreshes in
    /// flight, refresh timeout 30 s, entries up to 8 MiB, circuit breaker after 5 consecutive
    /// store failures for 1 s, system clock.
    pub fn new() -> CacheBuilder {
        CacheBuilder {
            backend: Backend::Memory {
                capacity: MemoryStore::DEFAULT_CAPACITY,
            },
            prefix: "ac".into(),
            default_policy: Policy::default(),
            op_timeout: Duration::from_millis(50),
            lock_ttl: Duration::from_secs(5),
            lock_wait: Duration::from_secs(30),
            refresh_capacity: 64,
            refresh_timeout: Duration::from_secs(30),
            max_entry_bytes: 8 << 20,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
            rng_seed: None,
            near_capacity: None,
        }
    }

    /// Reads `REDIS_CLUSTER_NODES` (comma-separated seed URLs: a Redis Cluster), else
    /// `REDIS_URL` (one Redis), else uses memory; and `ACTION_CACHE_PREFIX`.
    pub fn from_env() -> CacheBuilder {
        CacheBuilder::from_env_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`CacheBuilder::from_env`], reading variables through `lookup` (for tests, or
    /// configuration from elsewhere). Empty values count as unset.
    pub fn from_env_lookup(lookup: impl Fn(&str) -> Option<String>) -> CacheBuilder {
        let var = |name| lookup(name).filter(|v| !v.trim().is_empty());
        let mut b = CacheBuilder::new();
        if let Some(nodes) = var("REDIS_CLUSTER_NODES") {
            b = b.redis_cluster(nodes.split(',').map(str::trim).filter(|n| !n.is_empty()));
        } else if let Some(url) = var("REDIS_URL") {
            b = b.redis_url(url.trim());
        }
        if let Some(prefix) = var("ACTION_CACHE_PREFIX") {
            b = b.prefix(prefix.trim());
        }
        b
    }

    /// Uses Redis at `url` (one multiplexed connection, made on first use, reconnecting).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.backend = Backend::RedisUrl(url.into());
        self
    }

    /// Uses a Redis Cluster reached through these seed nodes (`redis://host:port` each); the
    /// client discovers the rest and follows `MOVED`/`ASK` and failovers.
    pub fn redis_cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.backend = Backend::RedisCluster(nodes.into_iter().map(Into::into).collect());
        self
    }

    /// Uses the bounded in-memory store (the default).
    pub fn in_memory(mut self) -> Self {
        self.backend = Backend::Memory {
            capacity: MemoryStore::DEFAULT_CAPACITY,
        };
        self
    }

    /// Uses the in-memory store with room for `capacity` keys.
    pub fn memory_capacity(mut self, capacity: usize) -> Self {
        self.backend = Backend::Memory { capacity };
        self
    }

    /// Uses a store of your own.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.backend = Backend::Store(store);
        self
    }

    /// The key prefix (default `ac`); keys are `{prefix}:{name}:{digest}`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The policy returned by [`Cache::default_policy`].
    pub fn default_policy(mut self, policy: Policy) -> Self {
        self.default_policy = policy;
        self
    }

    /// How long one store operation may take before the call fails open (default 50 ms).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// The lease of the cross-process load/refresh lock (default 5 s). Its holder renews it
    /// every third of it while its loader runs, for up to [`CacheBuilder::lock_wait`] (the
    /// longest anyone waits on it); if the holder's process dies, the lock lapses within this
    /// time and exactly one waiter takes over.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// How long a miss waits, in all, for another caller's load of the same key, in this
    /// process or another (default 30 s). A slow load is waited for, not duplicated: when the
    /// wait runs out, [`Cache::get_or_load`] returns
    /// [`LoadError::TimedOut`](crate::LoadError::TimedOut) rather than loading on its own (a
    /// `#[cached_action]` function, whose signature cannot carry that error, runs its body
    /// then).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// How many background refreshes may run at once; more are dropped and counted (default 64).
    pub fn refresh_capacity(mut self, capacity: usize) -> Self {
        self.refresh_capacity = capacity;
        self
    }

    /// How long a background refresh may take (default 30 s).
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = timeout;
        self
    }

    /// The largest encoded entry that is stored; larger values are returned but not cached
    /// (default 8 MiB).
    pub fn max_entry_bytes(mut self, max: usize) -> Self {
        self.max_entry_bytes = max;
        self
    }

    /// Opens the circuit breaker after `failures` consecutive store failures, for `cooldown`
    /// (default 5 and 1 s).
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker_threshold = failures;
        self.breaker_cooldown = cooldown;
        self
    }

    /// The clock entries are timed by (default: the system clock). Inject a
    /// [`ManualClock`](crate::ManualClock) for exact window tests.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Adds a near cache: a bounded in-process tier of up to `capacity` entries in front of
    /// Redis, answering fresh hits without a round trip. It holds an entry no longer than its
    /// fresh window, and stays coherent across processes through Redis pub/sub (every write and
    /// invalidation is announced on `{prefix}:__near`); when the subscription is lost it is
    /// emptied and bypassed until it is back. Needs a Redis store.
    ///
    /// Propagation is one pub/sub hop: an invalidation in one process was seen by another's
    /// near cache within 2–4 ms on loopback (debug build, measured by the `near` tests). Until
    /// then that process may still answer from its copy, so use the near cache for data where a
    /// few milliseconds of lag after a purge are acceptable.
    pub fn near_cache(mut self, capacity: usize) -> Self {
        self.near_capacity = Some(capacity);
        self
    }

    /// Seeds the random number generator (jitter, write ids, early refresh), for reproducible
    /// tests.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Checks the configuration and builds the cache. Nothing connects yet, so this works while
    /// Redis is down (calls then fail open until it is back).
    ///
    /// # Errors
    ///
    /// [`CacheError::Config`] for an unparsable Redis URL, an empty prefix or one containing
    /// `{`, `}` or whitespace, a zero operation timeout, lock TTL, refresh timeout or refresh
    /// capacity.
    pub fn build(self) -> Result<Cache, CacheError> {
        let bad = |m: &str| Err(CacheError::Config(m.to_string()));
        if self.prefix.is_empty()
            || self.prefix.contains(['{', '}', '#'])
            || self.prefix.contains(char::is_whitespace)
        {
            return bad("the prefix must be non-empty, without braces, '#' or whitespace");
        }
        if self.op_timeout.is_zero() || self.lock_ttl.is_zero() || self.refresh_timeout.is_zero() {
            return bad("timeouts and the lock TTL must be greater than zero");
        }
        if self.refresh_capacity == 0 {
            return bad("the refresh capacity must be at least 1");
        }
        if self.near_capacity.is_some() && matches!(self.backend, Backend::Memory { .. }) {
            return bad(
                "a near cache needs a Redis store (the memory store is already in-process)",
            );
        }
        let remote = !matches!(self.backend, Backend::Memory { .. });
        let store: Arc<dyn Store> = match self.backend {
            Backend::Memory { capacity } => {
                Arc::new(MemoryStore::with_clock(capacity, Arc::clone(&self.clock)))
            }
            Backend::RedisUrl(url) => Arc::new(RedisStore::open(&url).map_err(|e| {
                CacheError::Config(format!("invalid Redis URL: {}", e.kind_description()))
            })?),
            Backend::RedisCluster(nodes) if nodes.is_empty() => {
                return bad("a Redis Cluster needs at least one seed node");
            }
            Backend::RedisCluster(nodes) => {
                Arc::new(RedisStore::open_cluster(&nodes).map_err(|e| {
                    CacheError::Config(format!(
                        "invalid Redis Cluster node URL: {}",
                        e.kind_description()
                    ))
                })?)
            }
            Backend::Store(store) => store,
        };
        let mut rng = match self.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let keys = Keyspace::new(self.prefix);
        let near = self.near_capacity.map(|capacity| {
            Near::new(
                capacity,
                Arc::clone(&self.clock),
                keys.near_channel(),
                rng.next_u64(),
            )
        });
        let settings = Settings {
            op_timeout: self.op_timeout,
            lock_ttl: self.lock_ttl,
            lock_wait: self.lock_wait,
            refresh_capacity: self.refresh_capacity,
            refresh_timeout: self.refresh_timeout,
            max_entry_bytes: self.max_entry_bytes,
        };
        let engine = Engine::new(
            store,
            keys,
            settings,
            self.clock,
            rng,
            Breaker::new(self.breaker_threshold, self.breaker_cooldown),
            near,
            remote,
        );
        Ok(Cache::new(engine, self.default_policy))
    }
}

impl Cache {
    /// Starts configuring a cache; see [`CacheBuilder`].
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    /// A cache on a bounded in-memory store with default settings (prefix `ac`).
    pub fn in_memory() -> Cache {
        CacheBuilder::new()
            .in_memory()
            .build()
            .expect("the default in-memory configuration is valid")
    }

    /// A cache configured from the environment, as [`CacheBuilder::from_env`] reads it
    /// (in memory when no Redis is configured).
    ///
    /// # Errors
    ///
    /// When a Redis setting is set but cannot be parsed, or the prefix is invalid.
    pub fn from_env() -> Result<Cache, CacheError> {
        CacheBuilder::from_env().build()
    }
}

/// A short description of a URL parse error that cannot echo a password back.
trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for redis::RedisError {
    fn kind_description(&self) -> String {
        format!("{:?}", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> CacheBuilder {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CacheBuilder::from_env_lookup(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_environment_picks_cluster_then_redis_then_memory() {
        let cluster = from(&[
            ("REDIS_CLUSTER_NODES", "redis://a:1, redis://b:2,"),
            ("REDIS_URL", "redis://c:3"),
        ]);
        assert!(
            matches!(&cluster.backend, Backend::RedisCluster(n) if n == &["redis://a:1", "redis://b:2"])
        );
        let single = from(&[("REDIS_CLUSTER_NODES", " "), ("REDIS_URL", "redis://c:3")]);
        assert!(matches!(&single.backend, Backend::RedisUrl(u) if u == "redis://c:3"));
        let memory = from(&[("ACTION_CACHE_PREFIX", "orders")]);
        assert!(matches!(memory.backend, Backend::Memory { .. }));
        assert_eq!(memory.build().unwrap().prefix(), "orders");
    }

    #[test]
    fn bad_settings_are_refused_when_built() {
        assert!(CacheBuilder::new().prefix("").build().is_err());
        assert!(CacheBuilder::new().prefix("a{b}").build().is_err());
        assert!(CacheBuilder::new()
            .op_timeout(Duration::ZERO)
            .build()
            .is_err());
        assert!(CacheBuilder::new().refresh_capacity(0).build().is_err());
        assert!(CacheBuilder::new().redis_url("not a url").build().is_err());
        assert!(CacheBuilder::new()
            .redis_cluster(Vec::<String>::new())
            .build()
            .is_err());
        let err = CacheBuilder::new()
            .redis_url("redis://:hunter2@[::1")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
