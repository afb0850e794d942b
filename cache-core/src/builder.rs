//! Configuring a [`Cache`].

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::Breaker;
use crate::cache::Cache;
use crate::clock::{Clock, SystemClock};
use crate::codec::Codec;
use crate::engine::Engine;
use crate::error::CacheError;
use crate::keyspace::Keyspace;
use crate::near::{Bounds, Near};
use crate::policy::Policy;
use crate::settings::Settings;
use crate::store::{MemoryStore, Store};
#[cfg(feature = "redis")]
use crate::store::{RedisStore, RedisTls};

/// Builds a [`Cache`]. Every setting has a documented default; [`CacheBuilder::build`] checks
/// them. The `redis_*` settings need the `redis` feature (on by default).
///
/// ```
/// use action_cache_core::Cache;
/// use std::time::Duration;
///
/// # #[cfg(feature = "redis")] {
/// let cache = Cache::builder()
///     .redis_url("redis://127.0.0.1:6379/0") // connected on first use
///     .prefix("orders")
///     .op_timeout(Duration::from_millis(50))
///     .build()?;
/// assert_eq!(cache.prefix(), "orders");
/// # }
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
    codec: Codec,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
    clock: Arc<dyn Clock>,
    rng_seed: Option<u64>,
    near_capacity: Option<usize>,
    near_max_bytes: Option<usize>,
    tls_ca: Option<Pem>,
    tls_client_cert: Option<Pem>,
    tls_client_key: Option<Pem>,
}

enum Backend {
    Memory {
        capacity: usize,
        max_bytes: Option<usize>,
    },
    RedisUrl(String),
    RedisCluster(Vec<String>),
    RedisSentinel {
        nodes: Vec<String>,
        master: String,
        auth: Option<(Option<String>, String)>,
    },
    Store(Arc<dyn Store>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry a password: show where they point, never the credentials.
        let hide = |url: &String| match url.rsplit_once('@') {
            Some((head, tail)) => {
                let scheme = head.split_once("://").map_or("", |(s, _)| s);
                format!("{scheme}://<credentials>@{tail}")
            }
            None => url.clone(),
        };
        match self {
            Backend::Memory {
                capacity,
                max_bytes,
            } => f
                .debug_struct("Memory")
                .field("capacity", capacity)
                .field("max_bytes", max_bytes)
                .finish(),
            Backend::RedisUrl(url) => f.debug_tuple("RedisUrl").field(&hide(url)).finish(),
            Backend::RedisCluster(nodes) => f
                .debug_tuple("RedisCluster")
                .field(&nodes.iter().map(hide).collect::<Vec<_>>())
                .finish(),
            Backend::RedisSentinel {
                nodes,
                master,
                auth,
            } => f
                .debug_struct("RedisSentinel")
                .field("nodes", &nodes.iter().map(hide).collect::<Vec<_>>())
                .field("master", master)
                .field("auth", &auth.as_ref().map(|(user, _)| (user, "<password>")))
                .finish(),
            Backend::Store(store) => f.debug_tuple("Store").field(store).finish(),
        }
    }
}

/// PEM material given inline or as a file read when the cache is built.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
enum Pem {
    File(PathBuf),
    Inline(Vec<u8>),
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::File(path) => f.debug_tuple("File").field(path).finish(),
            Pem::Inline(_) => f.write_str("Inline(<pem>)"),
        }
    }
}

impl Pem {
    /// An environment value: inline PEM when it starts like one, else a file path.
    fn from_env(value: &str) -> Pem {
        let value = value.trim();
        if value.starts_with("-----BEGIN") {
            Pem::Inline(value.as_bytes().to_vec())
        } else {
            Pem::File(PathBuf::from(value))
        }
    }

    #[cfg(feature = "redis")]
    fn read(&self, what: &str) -> Result<Vec<u8>, CacheError> {
        match self {
            Pem::Inline(pem) => Ok(pem.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|e| {
                CacheError::Config(format!("cannot read the {what} {}: {e}", path.display()))
            }),
        }
    }
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
    /// store failures for 1 s, system clock, no near cache, no byte bounds.
    pub fn new() -> CacheBuilder {
        CacheBuilder {
            backend: Backend::Memory {
                capacity: MemoryStore::DEFAULT_CAPACITY,
                max_bytes: None,
            },
            prefix: "ac".into(),
            default_policy: Policy::default(),
            op_timeout: Duration::from_millis(50),
            lock_ttl: Duration::from_secs(5),
            lock_wait: Duration::from_secs(30),
            refresh_capacity: 64,
            refresh_timeout: Duration::from_secs(30),
            max_entry_bytes: 8 << 20,
            codec: Codec::Json,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
            rng_seed: None,
            near_capacity: None,
            near_max_bytes: None,
            tls_ca: None,
            tls_client_cert: None,
            tls_client_key: None,
        }
    }

    /// Reads `REDIS_CLUSTER_NODES` (comma-separated seed URLs: a Redis Cluster), else
    /// `REDIS_SENTINEL_NODES` with `REDIS_SENTINEL_MASTER` (comma-separated sentinel URLs and
    /// the master's name; the master's own credentials, if any, from
    /// `REDIS_SENTINEL_MASTER_PASSWORD` and `REDIS_SENTINEL_MASTER_USERNAME`), else `REDIS_URL`
    /// (one Redis), else uses memory; `ACTION_CACHE_PREFIX`; and for `rediss://` the TLS
    /// material `REDIS_CA_CERT`, `REDIS_CLIENT_CERT`, `REDIS_CLIENT_KEY` (each a PEM file's
    /// path, or the PEM text itself).
    pub fn from_env() -> CacheBuilder {
        CacheBuilder::from_env_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`CacheBuilder::from_env`], reading variables through `lookup` (for tests, or
    /// configuration from elsewhere). Empty values count as unset.
    pub fn from_env_lookup(lookup: impl Fn(&str) -> Option<String>) -> CacheBuilder {
        let var = |name| lookup(name).filter(|v| !v.trim().is_empty());
        let mut b = CacheBuilder::new();
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        };
        // Set directly rather than through the `redis_*` methods, so that without the `redis`
        // feature a Redis setting still reaches `build`, which refuses it instead of quietly
        // caching in memory.
        if let Some(nodes) = var("REDIS_CLUSTER_NODES") {
            b.backend = Backend::RedisCluster(list(nodes));
        } else if let Some(nodes) = var("REDIS_SENTINEL_NODES") {
            let master = var("REDIS_SENTINEL_MASTER").unwrap_or_default();
            let auth = var("REDIS_SENTINEL_MASTER_PASSWORD").map(|password| {
                let user = var("REDIS_SENTINEL_MASTER_USERNAME");
                (user.map(|u| u.trim().to_string()), password)
            });
            b.backend = Backend::RedisSentinel {
                nodes: list(nodes),
                master: master.trim().to_string(),
                auth,
            };
        } else if let Some(url) = var("REDIS_URL") {
            b.backend = Backend::RedisUrl(url.trim().to_string());
        }
        if let Some(prefix) = var("ACTION_CACHE_PREFIX") {
            b = b.prefix(prefix.trim());
        }
        b.tls_ca = var("REDIS_CA_CERT").map(|v| Pem::from_env(&v));
        b.tls_client_cert = var("REDIS_CLIENT_CERT").map(|v| Pem::from_env(&v));
        b.tls_client_key = var("REDIS_CLIENT_KEY").map(|v| Pem::from_env(&v));
        b
    }

    #[cfg(feature = "redis")]
    /// Uses Redis at `url` (one multiplexed connection, made on first use, reconnecting).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.backend = Backend::RedisUrl(url.into());
        self
    }

    #[cfg(feature = "redis")]
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

    #[cfg(feature = "redis")]
    /// Uses the master that these sentinels (`redis://host:port` each, or `rediss://`; a user
    /// name and password in the URLs are the sentinels' own) report under `master_name`. The
    /// master is looked up on first use and again whenever its connection fails or it was
    /// demoted, so a failover is followed without a restart.
    pub fn redis_sentinel<I, S>(mut self, nodes: I, master_name: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.backend = Backend::RedisSentinel {
            nodes: nodes.into_iter().map(Into::into).collect(),
            master: master_name.into(),
            auth: None,
        };
        self
    }

    #[cfg(feature = "redis")]
    /// The master's (and its replicas') own credentials behind Sentinel: an ACL user name, or
    /// `None` for the default user, and the password. Call after
    /// [`CacheBuilder::redis_sentinel`]; ignored for other backends.
    pub fn redis_sentinel_master_auth(mut self, username: Option<&str>, password: &str) -> Self {
        if let Backend::RedisSentinel { auth, .. } = &mut self.backend {
            *auth = Some((username.map(str::to_string), password.to_string()));
        }
        self
    }

    #[cfg(feature = "redis")]
    /// Trusts the CA certificates in this PEM file (read when the cache is built) instead of
    /// the public roots, for `rediss://` connections (env `REDIS_CA_CERT`).
    pub fn redis_ca_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(Pem::File(path.into()));
        self
    }

    #[cfg(feature = "redis")]
    /// Like [`CacheBuilder::redis_ca_cert_file`], with the PEM text itself.
    pub fn redis_ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(Pem::Inline(pem.into()));
        self
    }

    #[cfg(feature = "redis")]
    /// Presents the client certificate chain and private key in these PEM files (read when the
    /// cache is built) to a server that verifies clients (mutual TLS; env `REDIS_CLIENT_CERT`
    /// and `REDIS_CLIENT_KEY`).
    pub fn redis_client_cert_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.tls_client_cert = Some(Pem::File(cert.into()));
        self.tls_client_key = Some(Pem::File(key.into()));
        self
    }

    #[cfg(feature = "redis")]
    /// Like [`CacheBuilder::redis_client_cert_files`], with the PEM texts themselves.
    pub fn redis_client_cert_pem(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_cert = Some(Pem::Inline(cert.into()));
        self.tls_client_key = Some(Pem::Inline(key.into()));
        self
    }

    /// Uses the bounded in-memory store (the default), with its default bounds: 10,000 keys,
    /// no byte bound.
    pub fn in_memory(mut self) -> Self {
        self.backend = Backend::Memory {
            capacity: MemoryStore::DEFAULT_CAPACITY,
            max_bytes: None,
        };
        self
    }

    /// Uses the in-memory store with room for `capacity` keys (default 10,000), keeping a byte
    /// bound set by [`CacheBuilder::memory_max_bytes`].
    pub fn memory_capacity(mut self, capacity: usize) -> Self {
        let max_bytes = match self.backend {
            Backend::Memory { max_bytes, .. } => max_bytes,
            _ => None,
        };
        self.backend = Backend::Memory {
            capacity,
            max_bytes,
        };
        self
    }

    /// Uses the in-memory store, bounded to about `max_bytes` (default: no byte bound, only
    /// the key count of [`CacheBuilder::memory_capacity`], which still applies).
    ///
    /// Two bounds see it: the store, whose entries weigh [`MemoryStore::weight`] (the key,
    /// the encoded entry and [`MemoryStore::ENTRY_OVERHEAD`], 232 B), evicting the entries
    /// closest to expiry; and the typed tier in front of it, which keeps decoded values and
    /// evicts as `moka` does (TinyLFU), its entries weighing the key, the encoded entry (one
    /// allocation shared with the store, but weighed by both bounds), as much
    /// again when the decoded value is held, and a constant 1,024 B. The decoded value's heap
    /// size is not known: the encoded size approximates it. So the process holds up to about
    /// twice `max_bytes` for the cache (`examples/memory_report` measures it). An entry heavier
    /// than the bound is returned to its caller but not kept; a read never answers with
    /// another key's value.
    pub fn memory_max_bytes(mut self, max_bytes: usize) -> Self {
        let capacity = match self.backend {
            Backend::Memory { capacity, .. } => capacity,
            _ => MemoryStore::DEFAULT_CAPACITY,
        };
        self.backend = Backend::Memory {
            capacity,
            max_bytes: Some(max_bytes),
        };
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

    /// The codec values are stored with (default [`Codec::Json`], readable from any language);
    /// a [`Policy`] may name its own ([`PolicyBuilder::codec`](crate::PolicyBuilder::codec)).
    /// An entry written with another codec reads as a miss and is overwritten by its load.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
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
    ///
    /// A hit clones the decoded value it holds (no decode). For a large value, return it in an
    /// `Arc` (serde's `rc` feature) so that the clone is a pointer's.
    pub fn near_cache(mut self, capacity: usize) -> Self {
        self.near_capacity = Some(capacity);
        self
    }

    /// Bounds the near cache (see [`CacheBuilder::near_cache`]) to about `max_bytes`, adding
    /// it if [`CacheBuilder::near_cache`] was not called (then with no count bound). Default:
    /// no byte bound, only the count.
    ///
    /// Each entry weighs its key, its encoded entry, as much again when its decoded value is
    /// held (the decoded value's heap size is not known: the encoded size approximates it), its
    /// tag set names and a constant 1,024 B for the bookkeeping (moka's entry and nodes, `Arc`s,
    /// allocation headers). At the bound `moka` evicts (TinyLFU: a new entry may also be
    /// refused in favour of more often used ones). An entry heavier than the whole bound is
    /// returned to its caller but not kept. With a count bound as well, each entry counts at
    /// least `max_bytes / capacity`, so that neither bound is passed.
    pub fn near_cache_max_bytes(mut self, max_bytes: usize) -> Self {
        self.near_max_bytes = Some(max_bytes);
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
    /// capacity, a zero byte bound.
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
        let memory_max_bytes = match self.backend {
            Backend::Memory { max_bytes, .. } => max_bytes,
            _ => None,
        };
        if self.near_max_bytes == Some(0) || memory_max_bytes == Some(0) {
            return bad("a byte bound must be greater than zero");
        }
        let wants_near = self.near_capacity.is_some() || self.near_max_bytes.is_some();
        if wants_near && matches!(self.backend, Backend::Memory { .. }) {
            return bad(
                "a near cache needs a Redis store (the memory store is already in-process)",
            );
        }
        let remote = !matches!(self.backend, Backend::Memory { .. });
        let has_tls = self.tls_ca.is_some()
            || self.tls_client_cert.is_some()
            || self.tls_client_key.is_some();
        if has_tls {
            let urls: Vec<&String> = match &self.backend {
                Backend::RedisUrl(url) => vec![url],
                Backend::RedisCluster(nodes) | Backend::RedisSentinel { nodes, .. } => {
                    nodes.iter().collect()
                }
                Backend::Memory { .. } | Backend::Store(_) => {
                    return bad(
                        "a CA or client certificate needs a Redis backend (a rediss:// URL)",
                    )
                }
            };
            let rediss = |u: &&String| u.trim().starts_with("rediss://");
            let all = matches!(
                self.backend,
                Backend::RedisUrl(_) | Backend::RedisCluster(_)
            );
            if (all && !urls.iter().all(rediss)) || !urls.iter().any(rediss) {
                return bad(
                    "a CA or client certificate is set, but the Redis URL is not rediss:// (TLS)",
                );
            }
        }
        let memory_bounds = match self.backend {
            Backend::Memory {
                capacity,
                max_bytes,
            } => Some(Bounds {
                bytes: max_bytes.map(|b| b as u64),
                ..Bounds::entries(capacity)
            }),
            _ => None,
        };
        let tls = self.tls_material();
        let store: Arc<dyn Store> = match self.backend {
            Backend::Memory {
                capacity,
                max_bytes,
            } => {
                let store = MemoryStore::with_clock(capacity, Arc::clone(&self.clock));
                Arc::new(match max_bytes {
                    Some(max) => store.max_bytes(max),
                    None => store,
                })
            }
            Backend::Store(store) => store,
            redis => open_redis(redis, tls)?,
        };
        let mut rng = match self.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let keys = Keyspace::new(self.prefix);
        let near_bounds = wants_near.then(|| Bounds {
            entries: self.near_capacity.map(|n| n.max(1) as u64),
            bytes: self.near_max_bytes.map(|b| b as u64),
        });
        let near = match (near_bounds, memory_bounds) {
            (Some(bounds), _) => Some(Near::new(bounds, keys.near_channel(), rng.next_u64())),
            // The memory store holds bytes; a typed tier of the same bounds in front of it keeps
            // the decoded values, so that its hits clone instead of decoding.
            (None, Some(bounds)) => Some(Near::local(bounds)),
            (None, None) => None,
        };
        let settings = Settings {
            op_timeout: self.op_timeout,
            lock_ttl: self.lock_ttl,
            lock_wait: self.lock_wait,
            refresh_capacity: self.refresh_capacity,
            refresh_timeout: self.refresh_timeout,
            max_entry_bytes: self.max_entry_bytes,
            codec: self.codec,
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

impl CacheBuilder {
    /// The TLS material, read and checked.
    #[cfg(feature = "redis")]
    fn tls_material(&self) -> TlsMaterial {
        let mut tls = RedisTls::new();
        if let Some(ca) = &self.tls_ca {
            tls = tls.ca_cert(ca.read("CA certificate file (REDIS_CA_CERT)")?);
        }
        match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => {
                tls = tls.client_cert(
                    cert.read("client certificate file (REDIS_CLIENT_CERT)")?,
                    key.read("client key file (REDIS_CLIENT_KEY)")?,
                );
            }
            (None, None) => {}
            _ => {
                return Err(CacheError::Config(
                    "a client certificate needs both the certificate and its key \
                     (REDIS_CLIENT_CERT and REDIS_CLIENT_KEY)"
                        .into(),
                ))
            }
        }
        tls.check().map_err(CacheError::Config)?;
        Ok(tls)
    }

    /// Without the `redis` feature there is no TLS to read.
    #[cfg(not(feature = "redis"))]
    fn tls_material(&self) -> TlsMaterial {
        TlsMaterial
    }
}

/// Opens the Redis store a backend names.
#[cfg(feature = "redis")]
fn open_redis(backend: Backend, tls: TlsMaterial) -> Result<Arc<dyn Store>, CacheError> {
    let bad = |m: &str| Err(CacheError::Config(m.to_string()));
    let tls = &tls?;
    Ok(match backend {
        Backend::RedisUrl(url) => Arc::new(RedisStore::open_tls(&url, tls).map_err(|e| {
            CacheError::Config(format!("invalid Redis URL: {}", e.kind_description()))
        })?),
        Backend::RedisSentinel { nodes, .. } if nodes.is_empty() => {
            return bad("Sentinel needs at least one sentinel node");
        }
        Backend::RedisSentinel { master, .. } if master.trim().is_empty() => {
            return bad("Sentinel needs the master's name (REDIS_SENTINEL_MASTER)");
        }
        Backend::RedisSentinel {
            nodes,
            master,
            auth,
        } => {
            let auth = auth.as_ref().map(|(u, p)| (u.as_deref(), p.as_str()));
            Arc::new(
                RedisStore::open_sentinel(&nodes, &master, auth, tls).map_err(|e| {
                    CacheError::Config(format!(
                        "invalid sentinel node URL: {}",
                        e.kind_description()
                    ))
                })?,
            )
        }
        Backend::RedisCluster(nodes) if nodes.is_empty() => {
            return bad("a Redis Cluster needs at least one seed node");
        }
        Backend::RedisCluster(nodes) => {
            Arc::new(RedisStore::open_cluster_tls(&nodes, tls).map_err(|e| {
                CacheError::Config(format!(
                    "invalid Redis Cluster node URL: {}",
                    e.kind_description()
                ))
            })?)
        }
        Backend::Memory { .. } | Backend::Store(_) => return bad("not a Redis backend"),
    })
}

/// Without the `redis` feature, a Redis backend (from the environment) is refused.
#[cfg(not(feature = "redis"))]
fn open_redis(_backend: Backend, _tls: TlsMaterial) -> Result<Arc<dyn Store>, CacheError> {
    Err(CacheError::Config(
        "a Redis backend is configured (REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINEL_NODES), \
         but action-cache was built without its `redis` feature"
            .into(),
    ))
}

/// The TLS material, read and checked (or the reason it cannot be).
#[cfg(feature = "redis")]
type TlsMaterial = Result<RedisTls, CacheError>;
/// Without the `redis` feature there is no TLS material.
#[cfg(not(feature = "redis"))]
struct TlsMaterial;

/// A short description of a URL parse error that cannot echo a password back.
#[cfg(feature = "redis")]
trait KindDescription {
    fn kind_description(&self) -> String;
}

#[cfg(feature = "redis")]
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
    fn the_environment_picks_sentinel_after_cluster_and_before_redis() {
        let sentinel = from(&[
            ("REDIS_SENTINEL_NODES", "redis://s1:26379, redis://s2:26379"),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
            ("REDIS_SENTINEL_MASTER_USERNAME", "cache"),
            ("REDIS_SENTINEL_MASTER_PASSWORD", "hunter2"),
            ("REDIS_URL", "redis://c:3"),
        ]);
        assert!(matches!(
            &sentinel.backend,
            Backend::RedisSentinel { nodes, master, auth: Some((Some(u), p)) }
                if nodes == &["redis://s1:26379", "redis://s2:26379"]
                    && master == "mymaster" && u == "cache" && p == "hunter2"
        ));
        assert!(!format!("{sentinel:?}").contains("hunter2"));
        let no_master = from(&[("REDIS_SENTINEL_NODES", "redis://s1:26379")]);
        let err = no_master.build().unwrap_err().to_string();
        assert!(err.contains("REDIS_SENTINEL_MASTER"), "{err}");
        let cluster = from(&[
            ("REDIS_CLUSTER_NODES", "redis://a:1"),
            ("REDIS_SENTINEL_NODES", "redis://s1:26379"),
        ]);
        assert!(matches!(cluster.backend, Backend::RedisCluster(_)));
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let single = CacheBuilder::new().redis_url("rediss://cache:hunter2@db.example:6380/0");
        let cluster = CacheBuilder::new().redis_cluster(["redis://:hunter2@a:7000"]);
        for b in [single, cluster] {
            let shown = format!("{b:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        let shown = format!(
            "{:?}",
            CacheBuilder::new().redis_url("rediss://cache:hunter2@db.example:6380/0")
        );
        assert!(shown.contains("db.example:6380"), "{shown}");
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
