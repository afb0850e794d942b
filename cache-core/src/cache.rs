//! The [`Cache`]: fresh / stale / miss over a [`Store`], with coalescing and fail-open.

use rand::rngs::StdRng;
use rand::{Rng, RngCore};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Digest;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

use crate::breaker::Breaker;
use crate::builder::CacheBuilder;
use crate::clock::Clock;
use crate::entry::{self, DecodeError, Meta};
use crate::error::{CacheError, LoadError, StoreError};
use crate::flight::{self, Flights, Outcome, ReadFlights, ReadRole, Role};
use crate::key::CacheKey;
use crate::near::{Event, Near};
use crate::policy::{Policy, RefreshMode};
use crate::refresh::Refreshing;
use crate::stats::{Counters, Stats};
use crate::store::Store;

/// A boxed, owned future that a background refresh runs; see [`Cache::get_or_load_with`].
pub type RefreshFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// A stale-while-revalidate cache over a [`Store`]. Cheap to clone: clones share the store,
/// the counters, the in-flight loads and the background refreshes.
///
/// Background refreshes stop when the last clone is dropped.
///
/// ```
/// use action_cache_core::{Cache, CacheKey, Policy};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cache = Cache::in_memory();
/// let policy = Policy::new(Duration::from_secs(300), Duration::from_secs(900))?;
/// let mut key = CacheKey::builder("crm.account");
/// key.arg("id", "42")?;
/// let key = key.build();
///
/// let v: String = cache
///     .get_or_load(&key, &policy, || async { Ok::<_, String>("Ada".to_string()) })
///     .await?;
/// assert_eq!(v, "Ada");
/// assert_eq!(cache.stats().misses, 1);
///
/// let again: String = cache
///     .get_or_load(&key, &policy, || async { Ok::<_, String>("not called".into()) })
///     .await?;
/// assert_eq!(again, "Ada");
/// assert_eq!(cache.stats().fresh_hits, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Background refreshes; dropping the set aborts them.
    tasks: Mutex<JoinSet<()>>,
}

/// What the cache and its background tasks share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) prefix: String,
    pub(crate) default_policy: Policy,
    pub(crate) op_timeout: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) refresh_capacity: usize,
    pub(crate) refresh_timeout: Duration,
    pub(crate) max_entry_bytes: usize,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Mutex<StdRng>,
    pub(crate) counters: Counters,
    pub(crate) breaker: Breaker,
    pub(crate) flights: Arc<Flights>,
    pub(crate) refreshing: Mutex<Refreshing>,
    /// The optional in-process tier.
    pub(crate) near: Option<Near>,
    /// Shared in-flight reads; `None` for the in-process store, where sharing costs more than
    /// it saves.
    pub(crate) reads: Option<ReadFlights>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.inner.shared;
        f.debug_struct("Cache")
            .field("store", &s.store)
            .field("prefix", &s.prefix)
            .field("op_timeout", &s.op_timeout)
            .field("stats", &s.counters.snapshot())
            .finish_non_exhaustive()
    }
}

/// A decoded entry read from the store.
pub(crate) struct Found<T> {
    pub(crate) value: T,
    pub(crate) meta: Meta,
    pub(crate) bytes: Arc<Vec<u8>>,
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

    /// A cache configured from the environment: `REDIS_URL` (else in-memory) and
    /// `ACTION_CACHE_PREFIX` (default `ac`).
    ///
    /// # Errors
    ///
    /// When `REDIS_URL` is set but cannot be parsed, or the prefix is invalid.
    pub fn from_env() -> Result<Cache, CacheError> {
        CacheBuilder::from_env().build()
    }

    pub(crate) fn from_shared(shared: Shared) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                shared: Arc::new(shared),
                tasks: Mutex::new(JoinSet::new()),
            }),
        }
    }

    /// The key prefix of this cache.
    pub fn prefix(&self) -> &str {
        &self.inner.shared.prefix
    }

    /// The policy given to the builder (fresh 300 s, stale 900 s unless changed).
    pub fn default_policy(&self) -> &Policy {
        &self.inner.shared.default_policy
    }

    /// The store key of `key` in this cache: `{prefix}:{name}:{digest}`.
    pub fn full_key(&self, key: &CacheKey) -> String {
        key.with_prefix(&self.inner.shared.prefix)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.shared.counters.snapshot()
    }

    /// Checks that the store answers within the operation timeout.
    ///
    /// # Errors
    ///
    /// The store's error, a timeout, or [`StoreError::CircuitOpen`].
    pub async fn ping(&self) -> Result<(), CacheError> {
        let s = &self.inner.shared;
        Ok(s.store_op("ping", s.store.ping()).await?)
    }

    /// Returns the cached value for `key`, or loads, stores and returns it.
    ///
    /// Fresh hit: the cached value. Stale hit: the cached value, and one background refresh
    /// with `loader` (per key, per process; across processes a short Redis lock decides).
    /// Miss: concurrent callers in this process share one `loader` call (each waiter gets a
    /// clone of its value or error), and across processes one holds a lock, renewed like a
    /// lease while its loader runs however long it takes, while the others wait for its value.
    /// Only when the holder is gone (its process died and the lease expired) does exactly one
    /// waiter take over. Errors are never cached, nor are values that cannot be encoded
    /// faithfully or exceed the size limit (they still reach every waiter). A load that began
    /// before a purge or a put of its entry ([`Cache::invalidate`], [`Cache::invalidate_tag`],
    /// [`Cache::invalidate_prefix`], [`Cache::put`], from any process) gives its value to its
    /// own caller but does not store it. If the store is down, slow or holds garbage, the call
    /// goes to `loader` (fail-open).
    ///
    /// # Errors
    ///
    /// [`LoadError::Loader`] with the loader's error, [`LoadError::Panicked`] for a waiter
    /// whose shared load panicked, [`LoadError::TimedOut`] for a waiter whose patience
    /// ([`CacheBuilder::lock_wait`]) ran out before another caller's load ended.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        loader: F,
    ) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Clone + fmt::Debug + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        // Exactly one of the two closures runs (a call either loads or refreshes), so they can
        // share the one loader.
        let cell = Mutex::new(Some(loader));
        let take = || {
            cell.lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .expect("one loader per call")
        };
        self.get_or_load_with(key, policy, || take()(), || Box::pin(take()()))
            .await
    }

    /// Like [`Cache::get_or_load`], for loaders that borrow: `load` runs in the caller's task on
    /// a miss (and for [`RefreshMode::Inline`]); `refresh` is called only when a background
    /// refresh is actually started, and returns an owned future. This is what
    /// `#[cached_action]` uses, so that hits clone nothing.
    ///
    /// # Errors
    ///
    /// As [`Cache::get_or_load`].
    pub async fn get_or_load_with<T, E, L, LFut, R>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        refresh: R,
    ) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Clone + fmt::Debug + Send + Sync + 'static,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<T, E>>,
        R: FnOnce() -> RefreshFuture<T, E>,
    {
        let share = Share {
            value: Some(T::clone),
            error: E::clone,
            load_after_patience: false,
        };
        self.fetch(key, policy, load, refresh, Some(share)).await
    }

    /// [`Cache::get_or_load_with`] for `#[cached_action]`, whose functions cannot return
    /// [`LoadError::TimedOut`] (a caller whose patience runs out loads on its own instead) and
    /// whose values need not be `Clone` (`clone_value`: how to share one, if it is).
    #[doc(hidden)]
    pub async fn get_or_load_for_macro<T, E, L, LFut, R>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        refresh: R,
        clone_value: Option<fn(&T) -> T>,
    ) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: Clone + fmt::Debug + Send + Sync + 'static,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<T, E>>,
        R: FnOnce() -> RefreshFuture<T, E>,
    {
        let share = Share {
            value: clone_value,
            error: E::clone,
            load_after_patience: true,
        };
        self.fetch(key, policy, load, refresh, Some(share)).await
    }

    /// Like [`Cache::get_or_load_with`] without miss coalescing, for error types that are not
    /// `Clone`: concurrent misses each call their loader. Background refreshes are still one
    /// per key.
    ///
    /// # Errors
    ///
    /// [`LoadError::Loader`] with the loader's error.
    pub async fn get_or_load_uncoalesced_with<T, E, L, LFut, R>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        refresh: R,
    ) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: fmt::Debug + Send + 'static,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<T, E>>,
        R: FnOnce() -> RefreshFuture<T, E>,
    {
        self.fetch(key, policy, load, refresh, None).await
    }

    async fn fetch<T, E, L, LFut, R>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        refresh: R,
        share: Option<Share<T, E>>,
    ) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: fmt::Debug + Send + 'static,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<T, E>>,
        R: FnOnce() -> RefreshFuture<T, E>,
    {
        let s = &self.inner.shared;
        let full = self.full_key(key);
        let mut stale_value = None;
        let (found, from_near, epoch) = self.read_through_near::<T>(&full).await;
        if let Some(found) = found {
            let now = s.clock.now_ms();
            let age = now.saturating_sub(found.meta.at);
            if age < found.meta.fresh {
                Counters::incr(&s.counters.fresh_hits);
                if from_near {
                    Counters::incr(&s.counters.near_hits);
                } else if let Some(near) = &s.near {
                    near.fill(
                        &full,
                        &found.bytes,
                        &found.meta,
                        now,
                        &s.tag_keys(key),
                        epoch,
                    )
                    .await;
                }
                tracing::debug!(key = %full, age_ms = age, near = from_near, "fresh hit");
                if s.early_refresh_due(policy, &found.meta, now) {
                    tracing::debug!(key = %full, "early refresh (xfetch)");
                    self.spawn_refresh(
                        full,
                        entry::token(&found.bytes).to_vec(),
                        key,
                        policy,
                        refresh,
                    );
                }
                return Ok(found.value);
            }
            if age < found.meta.stale {
                Counters::incr(&s.counters.stale_hits);
                tracing::debug!(key = %full, age_ms = age, "stale hit");
                match policy.refresh_mode() {
                    RefreshMode::Background => {
                        self.spawn_refresh(
                            full,
                            entry::token(&found.bytes).to_vec(),
                            key,
                            policy,
                            refresh,
                        );
                        return Ok(found.value);
                    }
                    RefreshMode::Inline => stale_value = Some(found.value),
                }
            }
        }
        if stale_value.is_none() {
            Counters::incr(&s.counters.misses);
            tracing::debug!(key = %full, "miss");
        }
        let loaded = match share {
            Some(share) => s.load_coalesced(&full, key, policy, load, share).await,
            None => s
                .load_and_store(&full, key, policy, load)
                .await
                .map(|loaded| loaded.value)
                .map_err(LoadError::Loader),
        };
        match (loaded, stale_value) {
            (Err(e), Some(stale)) => {
                tracing::warn!(key = %full, error = ?e, "inline refresh failed; serving the stale value");
                Ok(stale)
            }
            (loaded, _) => loaded,
        }
    }

    /// Stores `value` under `key` as if freshly loaded (write-through). A load of `key` already
    /// in flight does not overwrite it.
    ///
    /// # Errors
    ///
    /// When the value cannot be encoded, is over the size limit, or the store fails.
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        value: &T,
    ) -> Result<(), CacheError> {
        let s = &self.inner.shared;
        let full = self.full_key(key);
        let bytes = s.encode(&full, value, policy, 0)?;
        let ttl = Duration::from_millis(s.ttl_of(&bytes));
        let tags = s.tag_keys(key);
        // First the generation, so that a load in flight does not replace this value.
        s.bump(Shared::gen_key(&full)).await?;
        s.store_op("set", s.store.set(&full, &bytes, ttl, &tags))
            .await?;
        s.written(&full, &bytes, &tags).await;
        Ok(())
    }

    /// Removes the entry for `key`; returns whether there was one. A load of `key` already in
    /// flight, in this process or another, does not store its value afterwards.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn invalidate(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let s = &self.inner.shared;
        let full = self.full_key(key);
        // First the generation, so that a load in flight does not store its pre-purge value.
        s.bump(Shared::gen_key(&full)).await?;
        let existed = s.store_op("delete", s.store.delete(&full)).await?;
        s.purged(Event::Key(&full)).await;
        Ok(existed)
    }

    /// Removes every entry that carries `tag`, across functions; returns how many. A load in
    /// flight of an entry with `tag` does not store its value afterwards (on one Redis server,
    /// atomically; on a Redis Cluster, whose tag sets live in other slots, such a write may be
    /// visible for the one round trip it takes the loader to see the purge and delete it again).
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        let s = &self.inner.shared;
        let tag_key = s.tag_key(tag);
        s.bump(Shared::tag_gen_key(&tag_key)).await?;
        let n = s
            .store_op("delete_tagged", s.store.delete_tagged(&tag_key))
            .await?;
        s.purged(Event::Tag(&tag_key)).await;
        Ok(n)
    }

    /// Removes every entry whose name starts with `name_prefix` (e.g. `"crm."` or a whole
    /// function name); returns how many. Redis walks the keys with `SCAN`, never `KEYS`.
    /// Every load in flight when it starts, of any key of this cache's prefix, is then not
    /// stored (its value still reaches its own caller).
    ///
    /// This may take longer than the operation timeout on a large keyspace, so it is bounded by
    /// the refresh timeout instead.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn invalidate_prefix(&self, name_prefix: &str) -> Result<u64, CacheError> {
        let s = &self.inner.shared;
        let pattern = format!("{}:{name_prefix}", s.prefix);
        s.bump(s.prefix_gen_key()).await?;
        let op = s.store.delete_prefix(&pattern);
        let n = match tokio::time::timeout(s.refresh_timeout, op).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(StoreError::Timeout {
                    op: "delete_prefix",
                    timeout: s.refresh_timeout,
                }
                .into())
            }
        };
        s.purged(Event::Prefix(&pattern)).await;
        Ok(n)
    }

    /// Reads from the near cache when it holds the key, else from the store. Also returns the
    /// near cache's epoch from before the store read, for a later fill.
    async fn read_through_near<T: DeserializeOwned>(
        &self,
        full: &str,
    ) -> (Option<Found<T>>, bool, u64) {
        let s = &self.inner.shared;
        let Some(near) = &s.near else {
            return (s.read(full).await, false, 0);
        };
        self.start_near_subscriber();
        if let Some(bytes) = near.get(full).await {
            if let Ok((value, meta)) = entry::decode::<T>(&bytes) {
                let bytes = Arc::new(bytes);
                return (Some(Found { value, meta, bytes }), true, 0);
            }
        }
        let epoch = near.epoch();
        (s.read(full).await, false, epoch)
    }

    fn start_near_subscriber(&self) {
        if let Some(near) = &self.inner.shared.near {
            if near.start() {
                let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
                tasks.spawn(crate::near::subscriber(Arc::clone(&self.inner.shared)));
            }
        }
    }

    fn spawn_refresh<T, E, R>(
        &self,
        full: String,
        token: Vec<u8>,
        key: &CacheKey,
        policy: &Policy,
        refresh: R,
    ) where
        T: Serialize + Send + Sync + 'static,
        E: fmt::Debug + Send + 'static,
        R: FnOnce() -> RefreshFuture<T, E>,
    {
        let s = &self.inner.shared;
        {
            let mut refreshing = s.refreshing.lock().unwrap_or_else(|p| p.into_inner());
            if !refreshing.is_due(&full, &token) {
                return;
            }
            if refreshing.running() >= s.refresh_capacity {
                Counters::incr(&s.counters.refreshes_dropped);
                tracing::warn!(key = %full, capacity = s.refresh_capacity, "refresh dropped: too many in flight");
                return;
            }
            refreshing.start(full.clone());
        }
        Counters::incr(&s.counters.refreshes_started);
        let job = crate::refresh::Job {
            shared: Arc::clone(s),
            full,
            token,
            tag_keys: s.tag_keys(key),
            policy: policy.clone(),
            future: refresh(),
        };
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(job.run());
    }
}

impl Shared {
    /// The lock key of an entry, in the entry's cluster hash slot: the whole entry key (which
    /// never contains braces) is the lock's hash tag.
    pub(crate) fn lock_key(full: &str) -> String {
        format!("{{{full}}}:lock")
    }

    /// The purge generation of one entry, in the entry's hash slot (like its lock).
    pub(crate) fn gen_key(full: &str) -> String {
        format!("{{{full}}}:gen")
    }

    /// The purge generation of a tag, beside its tag set.
    pub(crate) fn tag_gen_key(tag_key: &str) -> String {
        format!("{{{tag_key}}}:gen")
    }

    /// The generation bumped by every prefix purge of this cache. Not under `{prefix}:`, so a
    /// prefix purge never deletes it.
    pub(crate) fn prefix_gen_key(&self) -> String {
        format!("{}#gen", self.prefix)
    }

    /// Every generation a load of `full` must find unchanged to store its value: the entry's
    /// own first (it shares the entry's slot), then its tags', then the prefix purges'.
    fn guard_keys(&self, full: &str, key: &CacheKey) -> Vec<String> {
        let mut keys = Vec::with_capacity(key.tags().len() + 2);
        keys.push(Shared::gen_key(full));
        keys.extend(self.tag_keys(key).iter().map(|t| Shared::tag_gen_key(t)));
        keys.push(self.prefix_gen_key());
        keys
    }

    /// Bumps one purge generation (before the purge or put it announces).
    async fn bump(&self, gen_key: String) -> Result<(), StoreError> {
        let keys = [gen_key];
        self.store_op(
            "bump_generations",
            self.store.bump_generations(&keys, GENERATION_TTL),
        )
        .await
    }

    pub(crate) fn tag_key(&self, tag: &str) -> String {
        // Not under `{prefix}:` so prefix invalidation never eats the tag sets. Tags are often
        // made of call arguments: one that is long, or holds anything but printable ASCII
        // without braces (a Redis Cluster hash tag), is hashed, so tag-set keys are as safe and
        // bounded as entry keys. `#tag#` keeps hashed tags apart from plain ones.
        let plain = tag.len() <= 100
            && tag
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if plain {
            format!("{}#tag:{tag}", self.prefix)
        } else {
            let digest = hex::encode(sha2::Sha256::digest(tag.as_bytes()));
            format!("{}#tag#{digest}", self.prefix)
        }
    }

    pub(crate) fn tag_keys(&self, key: &CacheKey) -> Vec<String> {
        key.tags().iter().map(|t| self.tag_key(t)).collect()
    }

    pub(crate) fn random_token(&self) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_u64()
    }

    /// Runs one store operation under the breaker and the operation timeout, counting and
    /// logging failures.
    pub(crate) async fn store_op<V>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<V, StoreError>>,
    ) -> Result<V, StoreError> {
        if !self.breaker.allow() {
            Counters::incr(&self.counters.store_skipped);
            return Err(StoreError::CircuitOpen);
        }
        let result = match tokio::time::timeout(self.op_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout {
                op,
                timeout: self.op_timeout,
            }),
        };
        match &result {
            Ok(_) => self.breaker.success(),
            Err(e) if e.is_unavailable() => {
                Counters::incr(&self.counters.store_errors);
                if self.breaker.failure() {
                    tracing::warn!(error = %e, "store failing; skipping it for a cool-down (fail-open)");
                } else {
                    tracing::warn!(error = %e, "store operation failed (fail-open)");
                }
            }
            Err(e) if e.is_out_of_memory() => {
                Counters::incr(&self.counters.store_errors);
                tracing::debug!(error = %e, "store is full and refused a write (fail-open)");
            }
            Err(_) => {}
        }
        result
    }

    /// Reads and decodes an entry; anything unusable is `None` (and counted).
    pub(crate) async fn read<T: DeserializeOwned>(&self, full: &str) -> Option<Found<T>> {
        self.read_reporting(full, true).await
    }

    /// Reads like [`Shared::read`]; with `report` false an unusable entry is not counted or
    /// logged again (the call already did so on its first read).
    async fn read_reporting<T: DeserializeOwned>(
        &self,
        full: &str,
        report: bool,
    ) -> Option<Found<T>> {
        let bytes = match self.get(full).await {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(StoreError::WrongType { .. }) if !report => return None,
            Err(StoreError::WrongType { .. }) => {
                Counters::incr(&self.counters.corrupt_entries);
                tracing::warn!(key = %full, "key holds a non-string value; treating as a miss");
                return None;
            }
            Err(_) => return None,
        };
        match entry::decode::<T>(&bytes) {
            Ok((value, meta)) => Some(Found { value, meta, bytes }),
            Err(_) if !report => None,
            Err(e) => {
                Counters::incr(&self.counters.corrupt_entries);
                match e {
                    DecodeError::Format => {
                        tracing::warn!(key = %full, "entry is not in our format; treating as a miss")
                    }
                    DecodeError::Json(e) => {
                        tracing::warn!(key = %full, error = %e, "entry does not decode; treating as a miss")
                    }
                }
                None
            }
        }
    }

    /// One store `GET`, shared with concurrent readers of the same key when the store is
    /// remote. A follower waits for the shared read at most the operation timeout, and reads
    /// itself if the reading caller went away.
    async fn get(&self, full: &str) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        let Some(reads) = &self.reads else {
            return self.own_read(full).await;
        };
        match reads.join(full) {
            ReadRole::Reader(guard) => {
                let result = self.own_read(full).await;
                guard.publish(&result);
                result
            }
            ReadRole::Follower(mut rx) => {
                let waited = tokio::time::timeout(self.op_timeout, rx.wait_for(Option::is_some));
                // Owned before any await: the channel's read guard must not be held across one.
                let shared = match waited.await {
                    Ok(Ok(shared)) => shared.clone(),
                    Ok(Err(_)) => None,
                    Err(_) => {
                        return Err(StoreError::Timeout {
                            op: "get",
                            timeout: self.op_timeout,
                        })
                    }
                };
                match shared {
                    Some(result) => result,
                    // The reading caller went away before it read: read for ourselves.
                    None => self.own_read(full).await,
                }
            }
        }
    }

    async fn own_read(&self, full: &str) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        let got = self.store_op("get", self.store.get(full)).await;
        got.map(|bytes| bytes.map(Arc::new))
    }

    /// Encodes a value with windows drawn from `policy`, whatever its size.
    pub(crate) fn encode_any<T: Serialize + ?Sized>(
        &self,
        full: &str,
        value: &T,
        policy: &Policy,
        delta_ms: u64,
    ) -> Result<Vec<u8>, CacheError> {
        let (write_id, u1, u2) = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            (rng.next_u64(), rng.random::<f64>(), rng.random::<f64>())
        };
        let (fresh, stale) = policy.draw_windows(u1, u2);
        let meta = Meta {
            at: self.clock.now_ms(),
            fresh,
            stale,
            delta: delta_ms,
        };
        entry::encode(value, meta, write_id).map_err(|e| CacheError::Encode {
            key: full.to_string(),
            source: Arc::new(e),
        })
    }

    /// Encodes a value like [`Shared::encode_any`], refusing entries over the size limit.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        full: &str,
        value: &T,
        policy: &Policy,
        delta_ms: u64,
    ) -> Result<Vec<u8>, CacheError> {
        let bytes = self.encode_any(full, value, policy, delta_ms)?;
        self.check_size(full, &bytes)?;
        Ok(bytes)
    }

    fn check_size(&self, full: &str, bytes: &[u8]) -> Result<(), CacheError> {
        if bytes.len() > self.max_entry_bytes {
            return Err(CacheError::TooLarge {
                key: full.to_string(),
                size: bytes.len(),
                max: self.max_entry_bytes,
            });
        }
        Ok(())
    }

    /// The store expiry of an encoded entry: its stale window.
    pub(crate) fn ttl_of(&self, bytes: &[u8]) -> u64 {
        entry::meta(bytes).map_or(1, |m| m.stale)
    }

    /// After this process wrote an entry: keep it near, and tell other processes to drop theirs.
    pub(crate) async fn written(&self, full: &str, bytes: &[u8], tag_keys: &[String]) {
        let Some(near) = &self.near else { return };
        if let Some(meta) = entry::meta(bytes) {
            near.fill(
                full,
                bytes,
                &meta,
                self.clock.now_ms(),
                tag_keys,
                near.epoch(),
            )
            .await;
        }
        self.publish(near, Event::Key(full)).await;
    }

    /// After this process purged entries: drop them here and in every other process.
    pub(crate) async fn purged(&self, event: Event<'_>) {
        let Some(near) = &self.near else { return };
        near.forget(event).await;
        self.publish(near, event).await;
    }

    async fn publish(&self, near: &Near, event: Event<'_>) {
        let message = near.message(event);
        let _ = self
            .store_op("publish", self.store.publish(&near.channel, &message))
            .await;
    }

    fn early_refresh_due(&self, policy: &Policy, meta: &Meta, now: u64) -> bool {
        let Some(beta) = policy.early_refresh_beta() else {
            return false;
        };
        let u: f64 = self.rng.lock().unwrap_or_else(|p| p.into_inner()).random();
        let gap = -(meta.delta as f64) * beta * (1.0 - u).ln();
        now as f64 + gap >= (meta.at + meta.fresh) as f64
    }

    /// Calls the loader and stores its value, unless a purge or put of the entry happened
    /// since the load began, or the value cannot be stored faithfully.
    pub(crate) async fn load_and_store<T, E, L, LFut>(
        &self,
        full: &str,
        key: &CacheKey,
        policy: &Policy,
        load: L,
    ) -> Result<Loaded<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Debug,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<T, E>>,
    {
        // The generations before the loader starts: any purge after this point moves one.
        let guard_keys = self.guard_keys(full, key);
        let seen = self
            .store_op("generations", self.store.generations(&guard_keys))
            .await
            .ok();
        Counters::incr(&self.counters.loads);
        let started = Instant::now();
        let value = match load().await {
            Ok(v) => v,
            Err(e) => {
                Counters::incr(&self.counters.load_errors);
                tracing::debug!(key = %full, error = ?e, "loader failed; not cached");
                return Err(e);
            }
        };
        let elapsed = started.elapsed();
        let Some(bytes) = self.encoded(full, &value, policy, elapsed) else {
            Counters::incr(&self.counters.unstorable_values);
            return Ok(Loaded::new(value, Stored::No, None));
        };
        if let Err(e) = self.check_size(full, &bytes) {
            // Too large for the store, but still handed to this load's coalesced waiters.
            Counters::incr(&self.counters.unstorable_values);
            tracing::warn!(key = %full, error = %e, "value not cached");
            return Ok(Loaded::new(value, Stored::No, Some(Arc::new(bytes))));
        }
        // Unknown generations (the store failed) or older than they are kept: do not store.
        let Some(seen) = seen.filter(|_| elapsed < GENERATION_TTL) else {
            return Ok(Loaded::new(value, Stored::No, Some(Arc::new(bytes))));
        };
        let guards: Vec<(String, u64)> = guard_keys.into_iter().zip(seen).collect();
        let ttl = Duration::from_millis(self.ttl_of(&bytes));
        let tag_keys = self.tag_keys(key);
        let op = self
            .store
            .set_guarded(full, &bytes, ttl, &tag_keys, &guards);
        // A failed write was counted and logged by `store_op`; the caller still gets its value.
        let stored = match self.store_op("set", op).await {
            Ok(true) => {
                self.written(full, &bytes, &tag_keys).await;
                Stored::Yes
            }
            Ok(false) => {
                Counters::incr(&self.counters.superseded_loads);
                tracing::debug!(key = %full, "purged or replaced while loading; value not cached");
                Stored::Superseded
            }
            Err(_) => Stored::No,
        };
        Ok(Loaded::new(value, stored, Some(Arc::new(bytes))))
    }

    /// The entry of a loaded value, or `None` (logged) when it cannot be stored faithfully: it
    /// does not encode, or does not read back as written (JSON writes NaN as `null`).
    fn encoded<T: Serialize + DeserializeOwned>(
        &self,
        full: &str,
        value: &T,
        policy: &Policy,
        elapsed: Duration,
    ) -> Option<Vec<u8>> {
        let delta = elapsed.as_millis() as u64;
        let checked = self
            .encode_any(full, value, policy, delta)
            .and_then(|bytes| match entry::decode::<T>(&bytes) {
                Ok(_) => Ok(bytes),
                Err(e) => Err(CacheError::Encode {
                    key: full.to_string(),
                    source: Arc::new(serde::ser::Error::custom(format!(
                        "the value does not read back as written ({e:?}); a NaN or infinite float?"
                    ))),
                }),
            });
        match checked {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(key = %full, error = %e, "value not cached");
                None
            }
        }
    }

    /// The miss path with coalescing: in-process flights, then the cross-process lock.
    async fn load_coalesced<T, E, L, LFut>(
        self: &Arc<Self>,
        full: &str,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        share: Share<T, E>,
    ) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: fmt::Debug + Send + 'static,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<T, E>>,
    {
        // A caller waits on other callers' loads, here or in other processes, for at most
        // `lock_wait` in all. A leader renews its lock while it loads, so a slow load is waited
        // for, not duplicated; a leader that goes away hands the flight to one waiter.
        let started = tokio::time::Instant::now();
        let deadline = started + self.lock_wait;
        let timed_out = || LoadError::TimedOut {
            key: full.to_string(),
            waited: started.elapsed(),
        };
        let mut counted = false;
        loop {
            match self.flights.join(full, self.lock_wait) {
                Role::Leader(guard) => {
                    return match self.load_locked(full, key, policy, load, deadline).await {
                        Ok(loaded) => {
                            match (loaded.stored, share.value, loaded.bytes) {
                                (Stored::Superseded, _, _) => guard.finish(Outcome::Superseded),
                                (_, Some(clone), _) => {
                                    guard.finish(Outcome::Value(Arc::new(clone(&loaded.value))))
                                }
                                (_, None, Some(bytes)) => {
                                    guard.finish(Outcome::Value(Arc::new(bytes)))
                                }
                                // Nothing to share: the waiters load.
                                (_, None, None) => drop(guard),
                            }
                            Ok(loaded.value)
                        }
                        Err(NotLoaded::Failed(e)) => {
                            let shared = Arc::new(SendCell::new((share.error)(&e)));
                            guard.finish(Outcome::Failed(shared));
                            Err(LoadError::Loader(e))
                        }
                        Err(NotLoaded::TimedOut(load)) if share.load_after_patience => {
                            drop(guard);
                            self.load_after_patience(full, key, policy, load).await
                        }
                        Err(NotLoaded::TimedOut(_)) => {
                            guard.finish(Outcome::TimedOut);
                            Err(timed_out())
                        }
                    };
                }
                Role::Waiter(slot) => {
                    if !counted {
                        Counters::incr(&self.counters.coalesced_waits);
                        counted = true;
                    }
                    let outcome = match tokio::time::timeout_at(deadline, flight::wait(slot)).await
                    {
                        Ok(outcome) => outcome,
                        Err(_) if share.load_after_patience => {
                            return self.load_after_patience(full, key, policy, load).await
                        }
                        Err(_) => return Err(timed_out()),
                    };
                    match outcome {
                        Some(Outcome::Value(any)) => match share.value {
                            Some(clone) => match any.downcast_ref::<T>() {
                                Some(v) => return Ok(clone(v)),
                                // Another type under the same key: load for ourselves.
                                None => continue,
                            },
                            None => match any
                                .downcast_ref::<Arc<Vec<u8>>>()
                                .and_then(|bytes| entry::decode::<T>(bytes).ok())
                            {
                                Some((v, _)) => return Ok(v),
                                None => continue,
                            },
                        },
                        Some(Outcome::Failed(err)) => match err.downcast_ref::<SendCell<E>>() {
                            Some(e) => return Err(LoadError::Loader((share.error)(&e.get()))),
                            None => continue,
                        },
                        Some(Outcome::Panicked) => {
                            return Err(LoadError::Panicked {
                                key: full.to_string(),
                                message: "the shared loader panicked in another task".into(),
                            })
                        }
                        // The leader's patience ran out before ours, the load began before a
                        // purge, or the leader was dropped mid-load: lead or wait on a new
                        // flight (until our own deadline).
                        Some(Outcome::TimedOut | Outcome::Superseded) | None => continue,
                    }
                }
            }
        }
    }

    /// A `#[cached_action]` caller whose patience ran out loads on its own (still guarded).
    async fn load_after_patience<T, E, L, LFut>(
        &self,
        full: &str,
        key: &CacheKey,
        policy: &Policy,
        load: L,
    ) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Debug,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<T, E>>,
    {
        tracing::warn!(key = %full, wait = ?self.lock_wait, "another caller's load is taking longer than lock_wait; loading directly");
        self.load_and_store(full, key, policy, load)
            .await
            .map(|loaded| loaded.value)
            .map_err(LoadError::Loader)
    }

    /// Loads under the cross-process lock, or waits until `deadline` for the process that holds
    /// it, taking over only when that holder is gone.
    async fn load_locked<T, E, L, LFut>(
        self: &Arc<Self>,
        full: &str,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        deadline: tokio::time::Instant,
    ) -> Result<Loaded<T>, NotLoaded<E, L>>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Debug,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<T, E>>,
    {
        let lock_key = Shared::lock_key(full);
        let token = format!("{:016x}", self.random_token());
        let lock = || async {
            self.store_op(
                "lock",
                self.store.try_lock(&lock_key, &token, self.lock_ttl),
            )
            .await
        };
        let mut attempt = lock().await;
        // Someone else is loading: wait for their value while their lease lives, and take over
        // when it lapses. A store error ends the wait at once (fail-open): the store cannot
        // deliver a value.
        let mut pause = Duration::from_millis(5);
        while matches!(attempt, Ok(false)) {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                tracing::warn!(key = %full, wait = ?self.lock_wait, "another process's load is taking longer than lock_wait");
                return Err(NotLoaded::TimedOut(load));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            if let Some(found) = self.read_fresh::<T>(full).await {
                return Ok(found);
            }
            attempt = lock().await;
        }
        let held = matches!(attempt, Ok(true));
        let uncertain = matches!(attempt, Err(StoreError::Timeout { .. }));
        if held {
            let guard = LockGuard::new(Arc::clone(self), lock_key, token);
            // Double-check under the lock: another caller, here or in another process, may have
            // stored the value after our read and released the lock before we asked for it.
            // One GET per genuine miss buys "one loader call per stampede".
            if let Some(found) = self.read_fresh::<T>(full).await {
                guard.release().await;
                return Ok(found);
            }
            let result = self.load_and_store(full, key, policy, load).await;
            guard.release().await;
            return result.map_err(NotLoaded::Failed);
        }
        let result = self.load_and_store(full, key, policy, load).await;
        if uncertain {
            self.release_in_background(lock_key, token);
        }
        result.map_err(NotLoaded::Failed)
    }

    /// Releases a lock whose `SET NX` timed out in the client: Redis may still run it once it
    /// catches up, leaving a lock nobody would release, on which the key's next miss would wait
    /// for the lock's TTL. The unlock is queued behind it on the same connection (a no-op if the
    /// lock never landed); it runs in the background, past the breaker and the operation timeout
    /// (which protect callers, not this clean-up), bounded by the lock's own TTL.
    /// Also used by a lock guard dropped mid-load; outside a runtime (a cache dropped after its
    /// runtime) there is nothing to run it on, and the lock expires at its TTL.
    pub(crate) fn release_in_background(self: &Arc<Self>, lock_key: String, token: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::clone(self);
        runtime.spawn(async move {
            let unlock = shared.store.unlock(&lock_key, &token);
            let _ = tokio::time::timeout(shared.lock_ttl, unlock).await;
        });
    }

    /// A fresh entry (one that someone just loaded), as a load result. A stale entry does not
    /// count: it is what an inline refresh is replacing.
    async fn read_fresh<T: DeserializeOwned>(&self, full: &str) -> Option<Loaded<T>> {
        let found = self.read_reporting::<T>(full, false).await?;
        let age = self.clock.now_ms().saturating_sub(found.meta.at);
        (age < found.meta.fresh).then(|| Loaded::new(found.value, Stored::Yes, Some(found.bytes)))
    }
}

/// How long a purge generation is kept after its last purge or put: a load that takes longer
/// than this is not stored, since a purge during it might no longer be seen.
pub(crate) const GENERATION_TTL: Duration = Duration::from_secs(10 * 60);

/// How coalesced callers share a load: clones of its value (or, for a value type that is not
/// `Clone`, decodes of its entry) and of its error.
pub(crate) struct Share<T, E> {
    value: Option<fn(&T) -> T>,
    error: fn(&E) -> E,
    /// Whether a caller whose patience ran out loads on its own (`#[cached_action]`) rather
    /// than returning [`LoadError::TimedOut`].
    load_after_patience: bool,
}

/// Why [`Shared::load_locked`] returned no value.
enum NotLoaded<E, L> {
    /// The loader failed.
    Failed(E),
    /// The deadline passed while another process still held the lock; the loader is unused.
    TimedOut(L),
}

/// A loaded (or found) value, what became of its entry, and the entry's bytes when it encoded
/// faithfully (to share with waiters whose value type is not `Clone`).
pub(crate) struct Loaded<T> {
    pub(crate) value: T,
    stored: Stored,
    bytes: Option<Arc<Vec<u8>>>,
}

impl<T> Loaded<T> {
    fn new(value: T, stored: Stored, bytes: Option<Arc<Vec<u8>>>) -> Self {
        Loaded {
            value,
            stored,
            bytes,
        }
    }
}

/// What became of a loaded value's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// It is in the store (written now, or found there).
    Yes,
    /// It could not be stored: unstorable value, or the store failed.
    No,
    /// A purge or put of the entry since the load began: not stored, by design.
    Superseded,
}

/// A held cross-process lock, renewed like a lease while it is held (for at most `lock_wait`);
/// released explicitly, or by a spawned task if dropped mid-load.
pub(crate) struct LockGuard {
    pub(crate) shared: Arc<Shared>,
    /// `(lock key, token)` until released.
    pub(crate) held: Option<(String, String)>,
    /// The task that renews the lease; aborted on release.
    renewal: Option<tokio::task::AbortHandle>,
}

impl LockGuard {
    pub(crate) fn new(shared: Arc<Shared>, key: String, token: String) -> LockGuard {
        let renewal = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (shared, key, token) = (Arc::clone(&shared), key.clone(), token.clone());
            runtime
                .spawn(async move {
                    // Renewed for as long as anyone waits on it: past `lock_wait` every waiter
                    // has given up, and a hung loader must not hold the key for ever.
                    let every = shared.lock_ttl / 3;
                    let until = tokio::time::Instant::now() + shared.lock_wait;
                    while tokio::time::Instant::now() + every < until {
                        tokio::time::sleep(every).await;
                        let renew = shared.store.renew_lock(&key, &token, shared.lock_ttl);
                        match tokio::time::timeout(every, renew).await {
                            Ok(Ok(true)) => {}
                            Ok(Ok(false)) => {
                                tracing::warn!(lock = %key, "load lock lost (it expired before a renewal)");
                                return;
                            }
                            // Transient: try again at the next beat, while the lease lasts.
                            _ => {}
                        }
                    }
                    tracing::warn!(lock = %key, wait = ?shared.lock_wait, "a load has run longer than lock_wait; its lock lapses");
                })
                .abort_handle()
        });
        LockGuard {
            shared,
            held: Some((key, token)),
            renewal,
        }
    }

    pub(crate) async fn release(mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if let Some((key, token)) = self.held.take() {
            let _ = self
                .shared
                .store_op("unlock", self.shared.store.unlock(&key, &token))
                .await;
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        // Dropped mid-load (caller gone or panic): free the lock now rather than at its TTL.
        let Some((key, token)) = self.held.take() else {
            return;
        };
        self.shared.release_in_background(key, token);
    }
}

/// Makes a `Send` error shareable between tasks behind `Arc<dyn Any + Send + Sync>`: the value
/// is only ever read through `&`, under a mutex, by the waiter that clones it.
pub(crate) struct SendCell<E>(Mutex<E>);

impl<E> SendCell<E> {
    fn new(e: E) -> Self {
        SendCell(Mutex::new(e))
    }

    fn get(&self) -> std::sync::MutexGuard<'_, E> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::Shared;

    /// CRC16/XMODEM hash slot, as Redis Cluster computes it (only for checking lock keys).
    fn slot(key: &str) -> u16 {
        let bytes = key.as_bytes();
        let hashed = match bytes.iter().position(|&b| b == b'{') {
            Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
                Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
                _ => bytes,
            },
            None => bytes,
        };
        let mut crc: u16 = 0;
        for &b in hashed {
            crc ^= (b as u16) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn lock_keys_share_the_entrys_hash_slot() {
        assert_eq!(slot("123456789"), 0x31C3, "CRC16/XMODEM check value");
        for name in ["crm.account", "{weird}name", "a{}b", "a}b{c", "x"] {
            let full = crate::CacheKey::builder(name).build().with_prefix("ac");
            assert!(!full.contains(['{', '}']), "{full}");
            let lock = Shared::lock_key(&full);
            assert_eq!(slot(&lock), slot(&full), "{full} -> {lock}");
            assert_ne!(lock, full);
        }
    }
}
