//! The [`Cache`]: fresh / stale / miss over a [`Store`](crate::store::Store), with coalescing
//! and fail-open. Its public calls only: the work is done by the engine (`engine`), the miss
//! path (`load`) and the refresher (`refresh`).

use futures_util::future::{FutureExt, Map};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

use crate::codec::Codec;
use crate::engine::Engine;
use crate::entry::{self, Meta};
use crate::error::{CacheError, LoadError, StoreError};
use crate::key::CacheKey;
use crate::keyspace::Keyspace;
use crate::load::Share;
use crate::near::{Event, Held, Typed};
use crate::outcome::{Loaded, Outcome};
use crate::policy::{Policy, RefreshMode};
use crate::refresh::{RefreshFuture, Refreshing, Work};
use crate::soft;
use crate::stats::{Counters, InFlight, Stats};

/// A stale-while-revalidate cache over a [`Store`](crate::store::Store). Cheap to clone: clones share the store,
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
    engine: Arc<Engine>,
    /// The policy given to the builder, for whoever asks.
    default_policy: Policy,
    /// The keys being refreshed, shared with the refresh tasks.
    refreshing: Arc<Mutex<Refreshing>>,
    /// Background refreshes and the near-cache subscriber; dropping the set aborts them.
    tasks: Mutex<JoinSet<()>>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.inner.engine;
        f.debug_struct("Cache")
            .field("store", e.store())
            .field("prefix", &e.keys().prefix())
            .field("op_timeout", &e.settings().op_timeout)
            .field("stats", &e.counters().snapshot())
            .finish_non_exhaustive()
    }
}

/// How many entries of a tag [`Cache::mark_stale_tag`] marks at once.
const MARK_STALE_CONCURRENCY: usize = 16;

impl Cache {
    pub(crate) fn new(engine: Engine, default_policy: Policy) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                engine: Arc::new(engine),
                default_policy,
                refreshing: Arc::new(Mutex::new(Refreshing::default())),
                tasks: Mutex::new(JoinSet::new()),
            }),
        }
    }

    /// The key prefix of this cache.
    pub fn prefix(&self) -> &str {
        self.inner.engine.keys().prefix()
    }

    /// The policy given to [`CacheBuilder::default_policy`](crate::CacheBuilder::default_policy)
    /// (fresh 300 s, stale 900 s unless changed): one place to set the windows that direct
    /// callers of [`Cache::get_or_load`] share.
    ///
    /// ```
    /// use action_cache_core::{Cache, CacheKey, Policy};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = Cache::builder()
    ///     .default_policy(Policy::builder().fresh(Duration::from_secs(60)).build()?)
    ///     .build()?;
    /// let key = CacheKey::builder("crm.account").build();
    /// let name: String = cache
    ///     .get_or_load(&key, cache.default_policy(), || async { Ok::<_, String>("Ada".into()) })
    ///     .await?;
    /// assert_eq!((name.as_str(), cache.default_policy().stale()), ("Ada", Duration::from_secs(60)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn default_policy(&self) -> &Policy {
        &self.inner.default_policy
    }

    /// The store key of `key` in this cache: `{prefix}:{name}:{digest}`.
    pub fn full_key(&self, key: &CacheKey) -> String {
        self.inner.engine.keys().entry(key)
    }

    /// What runs in this cache now: loads, shared reads and background refreshes. Once every
    /// call has returned and every refresh ended, all three are 0.
    pub fn in_flight(&self) -> InFlight {
        let refreshes = self
            .inner
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .running();
        InFlight {
            loads: self.inner.engine.flights().len(),
            reads: self.inner.engine.reads_in_flight(),
            refreshes,
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.engine.counters().snapshot()
    }

    /// The same counters for one key name (a `#[cached_action]` function's name, or the name
    /// given to [`CacheKey::builder`]): `None` if no call used it yet. The first 1,000 names
    /// are counted; calls of later ones count only in [`Cache::stats`].
    pub fn stats_for(&self, name: &str) -> Option<Stats> {
        self.inner.engine.stats_for(name)
    }

    /// The counters of every key name used so far, sorted by name (see [`Cache::stats_for`]).
    pub fn stats_by_name(&self) -> Vec<(String, Stats)> {
        self.inner.engine.stats_by_name()
    }

    /// Checks that the store answers within the operation timeout.
    ///
    /// # Errors
    ///
    /// The store's error, a timeout, or [`StoreError::CircuitOpen`].
    pub async fn ping(&self) -> Result<(), CacheError> {
        let s = &self.inner.engine;
        Ok(s.store_op("ping", s.store().ping()).await?)
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
    /// ([`CacheBuilder::lock_wait`](crate::CacheBuilder::lock_wait)) ran out before another caller's load ended.
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
        self.get_or_load_with_outcome(key, policy, load, refresh)
            .await
            .map(|(value, _)| value)
    }

    /// Like [`Cache::get_or_load_with`], and also says how the value was got: a fresh or stale
    /// hit, a miss this call loaded, a miss that waited on another caller's load, ... (see
    /// [`Outcome`]). Costs nothing more than [`Cache::get_or_load_with`], and counts the same
    /// [`Stats`].
    ///
    /// ```
    /// use action_cache_core::{Cache, CacheKey, Outcome, Policy};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = Cache::in_memory();
    /// let policy = Policy::new(Duration::from_secs(60), Duration::from_secs(600))?;
    /// let key = CacheKey::builder("crm.account").build();
    /// let fetch = || async { Ok::<_, String>("Ada".to_string()) };
    ///
    /// let (name, outcome) = cache
    ///     .get_or_load_with_outcome(&key, &policy, fetch, || Box::pin(fetch()))
    ///     .await?;
    /// assert_eq!((name.as_str(), outcome), ("Ada", Outcome::Miss));
    ///
    /// let (_, outcome) = cache
    ///     .get_or_load_with_outcome(&key, &policy, fetch, || Box::pin(fetch()))
    ///     .await?;
    /// assert_eq!(outcome, Outcome::Fresh);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get_or_load`].
    pub async fn get_or_load_with_outcome<T, E, L, LFut, R>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        refresh: R,
    ) -> Result<(T, Outcome), LoadError<E>>
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
        let refresh = || Work::Plain(refresh());
        self.fetch(key, policy, plain(load), refresh, Some(share))
            .await
    }

    /// Like [`Cache::get_or_load_with_outcome`], for loaders that choose how their value is kept:
    /// they return a [`Loaded`] with the value, and the windows to store it with
    /// ([`Loaded::with_policy`], e.g. from an HTTP answer's `Cache-Control`), the call's
    /// `policy` ([`Loaded::new`]), or no entry at all ([`Loaded::no_store`]). A background
    /// refresh keeps its value the same way. The entry is written as any load's is: never for
    /// an `Err`, not when a purge or put of the entry happened since the load began, not when
    /// the value does not encode faithfully or is over the size limit.
    ///
    /// `policy` still decides everything else: the codec, the refresh mode, early refresh.
    ///
    /// ```
    /// use action_cache_core::{Cache, CacheKey, Loaded, Outcome, Policy};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = Cache::in_memory();
    /// let key = CacheKey::builder("crm.account").build();
    /// // The answer says how long it may be kept (say, `Cache-Control: max-age=60`).
    /// let fetch = || async {
    ///     let told = Policy::new(Duration::from_secs(60), Duration::from_secs(60)).unwrap();
    ///     Ok::<_, String>(Loaded::with_policy("Ada".to_string(), told))
    /// };
    /// let policy = cache.default_policy();
    /// let (name, outcome) = cache
    ///     .get_or_load_with_loader_policy(&key, policy, fetch, || Box::pin(fetch()))
    ///     .await?;
    /// assert_eq!((name.as_str(), outcome), ("Ada", Outcome::Miss));
    ///
    /// // `no-store`: served, never kept.
    /// let other = CacheKey::builder("crm.secret").build();
    /// let secret = || async { Ok::<_, String>(Loaded::no_store("s3cret".to_string())) };
    /// for _ in 0..2 {
    ///     let (_, outcome) = cache
    ///         .get_or_load_with_loader_policy(&other, policy, secret, || Box::pin(secret()))
    ///         .await?;
    ///     assert_eq!(outcome, Outcome::Miss);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get_or_load`].
    pub async fn get_or_load_with_loader_policy<T, E, L, LFut, R>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        refresh: R,
    ) -> Result<(T, Outcome), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Clone + fmt::Debug + Send + Sync + 'static,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<Loaded<T>, E>>,
        R: FnOnce() -> RefreshFuture<Loaded<T>, E>,
    {
        let share = Share {
            value: Some(T::clone),
            error: E::clone,
            load_after_patience: false,
        };
        let refresh = || Work::Told(refresh());
        self.fetch(key, policy, load, refresh, Some(share)).await
    }

    /// [`Cache::get_or_load_with`] for `#[cached_action]`, whose functions cannot return
    /// [`LoadError::TimedOut`] (a caller whose patience runs out loads on its own instead) and
    /// whose values need not be `Clone` (`clone_value`: how to share one, if it is).
    ///
    /// A plain function returning `fetch`'s own future (not an `async fn` around it), so a call
    /// nests one future less: each layer would copy the one inside it when it starts.
    #[doc(hidden)]
    pub fn get_or_load_for_macro<'a, T, E, L, LFut, R>(
        &'a self,
        key: &'a CacheKey,
        policy: &'a Policy,
        load: L,
        refresh: R,
        clone_value: Option<fn(&T) -> T>,
    ) -> impl Future<Output = Result<T, LoadError<E>>> + 'a
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: Clone + fmt::Debug + Send + Sync + 'static,
        L: FnOnce() -> LFut + 'a,
        LFut: Future<Output = Result<T, E>> + 'a,
        R: FnOnce() -> RefreshFuture<T, E> + 'a,
    {
        let share = Share {
            value: clone_value,
            error: E::clone,
            load_after_patience: true,
        };
        let refresh = || Work::Plain(refresh());
        self.fetch(key, policy, plain(load), refresh, Some(share))
            .map(|result| result.map(|(value, _)| value))
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
        let refresh = || Work::Plain(refresh());
        self.fetch(key, policy, plain(load), refresh, None)
            .await
            .map(|(value, _)| value)
    }

    async fn fetch<T, E, L, LFut, R>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        refresh: R,
        share: Option<Share<T, E>>,
    ) -> Result<(T, Outcome), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: fmt::Debug + Send + 'static,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<Loaded<T>, E>>,
        R: FnOnce() -> Work<T, E>,
    {
        let full = self.full_key(key);
        let clone = share.as_ref().and_then(|share| share.value);
        let codec = self.inner.engine.codec(policy);
        let epoch = match self.read_near::<T>(&full, clone, codec) {
            // The tier answers only inside an entry's fresh window (`Near::get_at`): a hit is a
            // fresh hit.
            NearLookup::Hit(value, now, held) => {
                // Answered without awaiting any I/O: spend the task's cooperative budget, or a
                // hot loop of such hits would never yield and starve other tasks and the timers.
                tokio::task::coop::consume_budget().await;
                let read = NearRead {
                    from_near: true,
                    epoch: 0,
                    now,
                };
                let named = held.named.as_deref();
                let (meta, bytes) = (&held.meta, &held.bytes);
                let value = self.fresh_hit(
                    key, full, policy, value, meta, bytes, read, named, clone, refresh,
                );
                return Ok((value, Outcome::Fresh));
            }
            NearLookup::Miss { epoch } => epoch,
        };
        // Boxed: everything past an in-process hit (the store read, the stale and miss paths)
        // kept inline made every call's future kilobytes large, in-process hits included, which
        // then paid for copying it. A call that reaches the store pays one allocation instead.
        Box::pin(self.fetch_further(key, full, policy, load, refresh, share, epoch)).await
    }

    /// [`Cache::fetch`] past the in-process tier: reads the store (`epoch` is the tier's from
    /// before its lookup, for a fill), then serves a fresh or stale entry or loads.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_further<T, E, L, LFut, R>(
        &self,
        key: &CacheKey,
        full: String,
        policy: &Policy,
        load: L,
        refresh: R,
        share: Option<Share<T, E>>,
        epoch: u64,
    ) -> Result<(T, Outcome), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: fmt::Debug + Send + 'static,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<Loaded<T>, E>>,
        R: FnOnce() -> Work<T, E>,
    {
        let s = &self.inner.engine;
        let mut stale_value = None;
        let clone = share.as_ref().and_then(|share| share.value);
        let found = s.read(&full, s.codec(policy)).await;
        if s.in_process() {
            // No I/O was awaited: as for a near hit, spend the cooperative budget.
            tokio::task::coop::consume_budget().await;
        }
        // Timed after the read returns.
        let now = s.clock().now_ms();
        let read = NearRead {
            from_near: false,
            epoch,
            now,
        };
        if let Some(found) = found {
            let age = now.saturating_sub(found.meta.at);
            if age < found.meta.fresh {
                let (meta, bytes) = (&found.meta, &found.bytes);
                let value = self.fresh_hit(
                    key,
                    full,
                    policy,
                    found.value,
                    meta,
                    bytes,
                    read,
                    None,
                    clone,
                    refresh,
                );
                return Ok((value, Outcome::Fresh));
            }
            if age < found.meta.stale {
                s.count(key.name(), |c| &c.stale_hits);
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
                        return Ok((found.value, Outcome::Stale));
                    }
                    RefreshMode::Inline => stale_value = Some(found.value),
                }
            }
        }
        if stale_value.is_none() {
            s.count(key.name(), |c| &c.misses);
            tracing::debug!(key = %full, "miss");
        }
        // Boxed: the miss path's state (flights, the lock lease, the loader's own future) is
        // kilobytes, and kept inline it made every call's future that large, hits included,
        // which then paid for copying it. A miss pays one allocation instead.
        let loaded = match share {
            Some(share) => Box::pin(s.load_coalesced(&full, key, policy, load, share)).await,
            None => Box::pin(s.load_and_store(&full, key, policy, load, None))
                .await
                .map(|loaded| (loaded.value, Outcome::Miss))
                .map_err(LoadError::Loader),
        };
        match (loaded, stale_value) {
            (Err(e), Some(stale)) => {
                tracing::warn!(key = %full, error = ?e, "inline refresh failed; serving the stale value");
                Ok((stale, Outcome::StaleIfError))
            }
            (Ok((value, _)), Some(_)) => Ok((value, Outcome::Refreshed)),
            (loaded, None) => loaded,
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
        let s = &self.inner.engine;
        let full = self.full_key(key);
        let (bytes, meta) = s.encode(&full, value, key.tags(), policy, 0)?;
        let ttl = Duration::from_millis(meta.stale);
        let tags = s.keys().tags(key);
        // First the generation, so that a load in flight does not replace this value.
        s.bump(Keyspace::generation(&full)).await?;
        let epoch = s.near_epoch();
        s.store_op("set", s.store().set(&full, &bytes, ttl, &tags))
            .await?;
        s.written(key.name(), &full, &Arc::new(bytes), &meta, &tags, epoch)
            .await?;
        Ok(())
    }

    /// Takes a snapshot of the purge generations of `key` (its own, its tags', the prefix
    /// purges'), for a later [`Cache::put_unless_purged`]: take it before fetching a value
    /// that you will store outside [`Cache::get_or_load`], as a loader would.
    ///
    /// # Errors
    ///
    /// When the store fails (then nothing may be stored under it: when in doubt, do not store).
    pub async fn purge_mark(&self, key: &CacheKey) -> Result<PurgeMark, CacheError> {
        let s = &self.inner.engine;
        let full = self.full_key(key);
        let keys = s.keys().guards(&full, key);
        let seen = s
            .store_op("generations", s.store().generations(&keys))
            .await?;
        Ok(PurgeMark {
            full,
            guards: keys.into_iter().zip(seen).collect(),
        })
    }

    /// Stores `value` under `key` like a load would: only if no purge or put of the entry (by
    /// key, tag or prefix, from any process) happened since `mark` was taken; returns whether
    /// it stored. Unlike [`Cache::put`], it never wins over a purge.
    ///
    /// # Errors
    ///
    /// When the value cannot be encoded or is over the size limit, when `mark` was taken for
    /// another key, or when the store fails.
    pub async fn put_unless_purged<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        value: &T,
        mark: &PurgeMark,
    ) -> Result<bool, CacheError> {
        let s = &self.inner.engine;
        let full = self.full_key(key);
        if full != mark.full {
            return Err(CacheError::Config(format!(
                "a purge mark of {} cannot guard a write of {full}",
                mark.full
            )));
        }
        let (bytes, meta) = s.encode(&full, value, key.tags(), policy, 0)?;
        let ttl = Duration::from_millis(meta.stale);
        let tags = s.keys().tags(key);
        let epoch = s.near_epoch();
        let op = s
            .store()
            .set_guarded(&full, &bytes, ttl, &tags, &mark.guards);
        let stored = s.store_op("set", op).await?;
        if stored {
            s.written(key.name(), &full, &Arc::new(bytes), &meta, &tags, epoch)
                .await?;
        }
        Ok(stored)
    }

    /// Removes the entry for `key`; returns whether there was one. A load of `key` already in
    /// flight, in this process or another, does not store its value afterwards.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn invalidate(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let s = &self.inner.engine;
        let full = self.full_key(key);
        // First the generation, so that a load in flight does not store its pre-purge value.
        s.bump(Keyspace::generation(&full)).await?;
        let existed = s.store_op("delete", s.store().delete(&full)).await?;
        s.purged(Event::Key(&full)).await?;
        Ok(existed)
    }

    /// A soft purge: marks the entry for `key` stale instead of removing it, so the next read is
    /// served at once and refreshes it (a stale hit), and other processes' near caches drop
    /// their copies. The value and its stale deadline stay; returns whether there was a live
    /// entry. As with [`Cache::invalidate`], a load of `key` already in flight does not store
    /// its value afterwards, and neither does a refresh that read the entry before the mark.
    ///
    /// ```
    /// use action_cache_core::{Cache, CacheKey, Policy};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = Cache::in_memory();
    /// let policy = Policy::new(Duration::from_secs(60), Duration::from_secs(600))?;
    /// let key = CacheKey::builder("crm.account").build();
    /// cache.put(&key, &policy, "Ada").await?;
    /// assert!(cache.mark_stale(&key).await?);
    /// // Served at once (a stale hit) while one refresh asks the backend.
    /// let name: String = cache
    ///     .get_or_load(&key, &policy, || async { Ok::<_, String>("Ada L.".into()) })
    ///     .await?;
    /// assert_eq!((name.as_str(), cache.stats().stale_hits), ("Ada", 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn mark_stale(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let s = &self.inner.engine;
        let full = self.full_key(key);
        s.bump(Keyspace::generation(&full)).await?;
        let marked = soft::mark_stale(s, &full).await?;
        s.purged(Event::Key(&full)).await?;
        Ok(marked)
    }

    /// A soft purge by tag: marks every entry that carries `tag` stale (see
    /// [`Cache::mark_stale`]); returns how many live entries it marked. A load in flight of an
    /// entry with `tag` does not store its value afterwards.
    ///
    /// # Errors
    ///
    /// When the store fails, or is a custom store that cannot list tag sets
    /// ([`StoreError::Unsupported`](crate::StoreError::Unsupported)).
    pub async fn mark_stale_tag(&self, tag: &str) -> Result<u64, CacheError> {
        let s = &self.inner.engine;
        let tag_key = s.keys().tag(tag);
        s.bump(Keyspace::tag_generation(&tag_key)).await?;
        let members = s
            .store_op("tag_members", s.store().tag_members(&tag_key))
            .await?;
        // About two round trips an entry: overlapped, so that a tag of thousands of entries
        // takes a few hundred round trips, not thousands in a row.
        let mut marks = futures_util::stream::iter(members)
            .map(|full| async move { soft::mark_stale(s, &full).await })
            .buffer_unordered(MARK_STALE_CONCURRENCY);
        let mut marked = 0;
        while let Some(mark) = marks.next().await {
            if mark? {
                marked += 1;
            }
        }
        s.purged(Event::Tag(&tag_key)).await?;
        Ok(marked)
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
        let s = &self.inner.engine;
        let tag_key = s.keys().tag(tag);
        s.bump(Keyspace::tag_generation(&tag_key)).await?;
        let n = s
            .store_op("delete_tagged", s.store().delete_tagged(&tag_key))
            .await?;
        s.purged(Event::Tag(&tag_key)).await?;
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
        let s = &self.inner.engine;
        let pattern = s.keys().entries_named(name_prefix);
        s.bump(s.keys().prefix_generation()).await?;
        let op = s.store().delete_prefix(&pattern);
        let n = match tokio::time::timeout(s.settings().refresh_timeout, op).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(StoreError::Timeout {
                    op: "delete_prefix",
                    timeout: s.settings().refresh_timeout,
                }
                .into())
            }
        };
        s.purged(Event::Prefix(&pattern)).await?;
        Ok(n)
    }

    /// Looks `full` up in the in-process tier, without I/O: a hit (a clone of the decoded value
    /// when it holds one of type `T` and `clone` is given, else a decode) with the clock time
    /// it was checked at, or a miss with the tier's epoch from before the lookup (for a fill
    /// from the store read that follows).
    fn read_near<T>(&self, full: &str, clone: Option<fn(&T) -> T>, codec: Codec) -> NearLookup<T>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let s = &self.inner.engine;
        let Some(near) = s.near() else {
            return NearLookup::Miss { epoch: 0 };
        };
        self.start_near_subscriber();
        let epoch = near.epoch();
        let now = s.clock().now_ms();
        if let Some(held) = near.get_at(full, now) {
            if let Some(value) = s.near_value(near, full, &held, clone, codec, epoch) {
                return NearLookup::Hit(value, now, held);
            }
        }
        NearLookup::Miss { epoch }
    }

    /// Serves a fresh entry: counts the hit, keeps an entry read from the store near, and
    /// starts an early refresh when one is due.
    #[allow(clippy::too_many_arguments)]
    fn fresh_hit<T, E, R>(
        &self,
        key: &CacheKey,
        full: String,
        policy: &Policy,
        value: T,
        meta: &Meta,
        bytes: &Arc<Vec<u8>>,
        read: NearRead,
        named: Option<&Counters>,
        clone: Option<fn(&T) -> T>,
        refresh: R,
    ) -> T
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: fmt::Debug + Send + 'static,
        R: FnOnce() -> Work<T, E>,
    {
        let s = &self.inner.engine;
        let NearRead {
            from_near,
            epoch,
            now,
        } = read;
        if from_near {
            // Also a fresh hit: `Counters::snapshot` adds near hits to the fresh ones.
            let near_hit: [fn(&Counters) -> &AtomicU64; 1] = [|c| &c.near_hits];
            match named {
                Some(named) => s.count_all_in(Some(named), &near_hit),
                None => s.count_all(key.name(), &near_hit),
            }
        } else {
            s.count(key.name(), |c| &c.fresh_hits);
        }
        if let (false, Some(near)) = (from_near, s.near()) {
            // Kept decoded when the value can be cloned: the next hits clone, not decode.
            let typed = clone.map(|clone| Arc::new(clone(&value)) as Typed);
            near.fill(
                &full,
                Arc::clone(bytes),
                meta,
                typed,
                now,
                &s.near_tag_keys(key, bytes),
                s.named(key.name()),
                epoch,
            );
        }
        let age = now.saturating_sub(meta.at);
        tracing::debug!(key = %full, age_ms = age, near = from_near, "fresh hit");
        if s.early_refresh_due(policy, meta, now) {
            tracing::debug!(key = %full, "early refresh (xfetch)");
            self.spawn_refresh(full, entry::token(bytes).to_vec(), key, policy, refresh);
        }
        value
    }

    fn start_near_subscriber(&self) {
        let engine = &self.inner.engine;
        if let Some(near) = engine.near() {
            if near.start() {
                let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
                tasks.spawn(crate::near::subscriber(
                    Arc::clone(near),
                    Arc::clone(engine.store()),
                    Arc::clone(engine.counters()),
                ));
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
        R: FnOnce() -> Work<T, E>,
    {
        let s = &self.inner.engine;
        {
            let mut refreshing = self
                .inner
                .refreshing
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !refreshing.is_due(&full, &token) {
                return;
            }
            if refreshing.running() >= s.settings().refresh_capacity {
                s.count(key.name(), |c| &c.refreshes_dropped);
                tracing::warn!(key = %full, capacity = s.settings().refresh_capacity, "refresh dropped: too many in flight");
                return;
            }
            refreshing.start(full.clone());
        }
        s.count(key.name(), |c| &c.refreshes_started);
        let job = crate::refresh::Job {
            engine: Arc::clone(s),
            refreshing: Arc::clone(&self.inner.refreshing),
            full,
            token,
            name: key.name().to_string(),
            tags: key.tags().to_vec(),
            tag_keys: s.keys().tags(key),
            policy: policy.clone(),
            future: refresh(),
        };
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(job.run());
    }
}

/// A plain loader as one whose value is kept with the call's policy (no box, no allocation).
#[allow(clippy::type_complexity)]
fn plain<T, E, L, LFut>(
    load: L,
) -> impl FnOnce() -> Map<LFut, fn(Result<T, E>) -> Result<Loaded<T>, E>>
where
    L: FnOnce() -> LFut,
    LFut: Future<Output = Result<T, E>>,
{
    move || load().map(|r| r.map(Loaded::new))
}

/// The purge generations of one key at one moment; see [`Cache::purge_mark`].
#[derive(Debug, Clone)]
pub struct PurgeMark {
    full: String,
    guards: Vec<(String, u64)>,
}

/// What the in-process tier answered.
enum NearLookup<T> {
    /// It held the key: its value, the clock time it was checked at, and what the tier holds.
    Hit(T, u64, Arc<Held>),
    /// It did not (or there is none): its epoch from before the lookup, 0 without a tier.
    Miss { epoch: u64 },
}

/// How an entry was read.
#[derive(Clone, Copy)]
struct NearRead {
    /// Answered by the in-process tier (no I/O).
    from_near: bool,
    /// The in-process tier's epoch when a store read began (a fill from it is dropped if an
    /// event came since); 0 otherwise.
    epoch: u64,
    /// The clock time the entry was checked at: a near hit's lookup, or after a store read.
    now: u64,
}
