//! Background refresh of stale entries: one per key per process, bounded in number and time,
//! and never overwriting an entry that was invalidated or replaced meanwhile.

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::error::StoreError;
use crate::keyspace::Keyspace;
use crate::lock::{release_in_background, LockGuard};
use crate::near::Event;
use crate::outcome::Loaded;
use crate::policy::Policy;
use crate::stats::Counters;

/// A boxed, owned future that a background refresh runs; see [`Cache::get_or_load_with`](crate::Cache::get_or_load_with).
pub type RefreshFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// What a background refresh runs: a plain loader's future, or one whose value says how it is
/// to be kept ([`Loaded`]). Two kinds rather than one, so that plain loaders pay no second box.
pub(crate) enum Work<T, E> {
    Plain(RefreshFuture<T, E>),
    Told(RefreshFuture<Loaded<T>, E>),
}

impl<T, E> Work<T, E> {
    async fn run(self) -> Result<Loaded<T>, E> {
        match self {
            Work::Plain(future) => future.await.map(Loaded::new),
            Work::Told(future) => future.await,
        }
    }
}

/// The keys being refreshed in this process, and the entry each key's last refresh replaced.
#[derive(Debug, Default)]
pub(crate) struct Refreshing {
    running: HashSet<String>,
    /// Key -> write token of the stale entry its last finished refresh dealt with. A reader that
    /// read that entry before the refresh wrote must not start a second refresh of it.
    done: HashMap<String, Vec<u8>>,
}

impl Refreshing {
    /// How many finished refreshes are remembered; past this the memory starts afresh (at worst
    /// one extra refresh per key, which the write token then discards).
    const REMEMBERED: usize = 4_096;

    /// Whether the entry with write token `token` under `full` still needs a refresh from here.
    pub(crate) fn is_due(&self, full: &str, token: &[u8]) -> bool {
        !self.running.contains(full) && self.done.get(full).is_none_or(|t| t != token)
    }

    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    pub(crate) fn start(&mut self, full: String) {
        self.running.insert(full);
    }

    fn finish(&mut self, full: &str, dealt_with: Option<Vec<u8>>) {
        self.running.remove(full);
        if let Some(token) = dealt_with {
            if self.done.len() >= Self::REMEMBERED {
                self.done.clear();
            }
            self.done.insert(full.to_string(), token);
        }
    }
}

/// One refresh, ready to be spawned.
pub(crate) struct Job<T, E> {
    pub(crate) engine: Arc<Engine>,
    /// The keys being refreshed in this process (this job's is freed when it ends).
    pub(crate) refreshing: Arc<Mutex<Refreshing>>,
    /// The entry's store key.
    pub(crate) full: String,
    /// The key's name, for the per-name counters.
    pub(crate) name: String,
    /// The write token of the entry that was read stale; the refresh replaces only that entry.
    pub(crate) token: Vec<u8>,
    /// The tags the entry is written with, and their tag sets.
    pub(crate) tags: Vec<String>,
    pub(crate) tag_keys: Vec<String>,
    pub(crate) policy: Policy,
    pub(crate) future: Work<T, E>,
}

/// Frees the key's refresh slot however the task ends (finished, panicked or aborted).
struct Slot {
    engine: Arc<Engine>,
    refreshing: Arc<Mutex<Refreshing>>,
    full: String,
    name: String,
    done: bool,
    /// The stale entry's write token, once the refresh replaced it or found it gone.
    dealt_with: Option<Vec<u8>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.done && std::thread::panicking() {
            self.engine.count(&self.name, |c| &c.refreshes_failed);
            tracing::warn!(key = %self.full, "refresh panicked; keeping the old entry");
        }
        self.refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finish(&self.full, self.dealt_with.take());
    }
}

/// How a refresh ended, counted only once its slot and lock are released, so that anyone who
/// sees the count can also start the next refresh of the key.
#[derive(Clone, Copy)]
enum Ended {
    /// Another process held the refresh lock.
    Elsewhere,
    Succeeded,
    Failed,
    Discarded,
}

impl<T, E> Job<T, E>
where
    T: Serialize + Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    pub(crate) async fn run(self) {
        let shared = Arc::clone(&self.engine);
        let mut slot = Slot {
            engine: Arc::clone(&shared),
            refreshing: Arc::clone(&self.refreshing),
            full: self.full.clone(),
            name: self.name.clone(),
            done: false,
            dealt_with: None,
        };
        let token = self.token.clone();
        let name = self.name.clone();
        let lock_key = Keyspace::lock(&self.full);
        let lock_token = format!("{:016x}", shared.random_token());
        let locked = shared
            .store_op(
                "lock",
                shared
                    .store()
                    .try_lock(&lock_key, &lock_token, shared.settings().lock_ttl),
            )
            .await;
        let ended = match locked {
            Ok(true) => {
                let lock = LockGuard::new(Arc::clone(&shared), lock_key, lock_token);
                let ended = if still_current(&shared, &self.full, &self.token).await {
                    self.refresh().await
                } else {
                    // Refreshed (or purged) by someone else since we read it: nothing to do.
                    tracing::debug!(key = %self.full, "entry already replaced; refresh skipped");
                    Ended::Discarded
                };
                lock.release().await;
                ended
            }
            Ok(false) => {
                tracing::debug!(key = %self.full, "another process is refreshing this key");
                Ended::Elsewhere
            }
            // The lock may still land once the store catches up: release it after it.
            Err(StoreError::Timeout { .. }) => {
                release_in_background(&shared, lock_key, lock_token);
                Ended::Failed
            }
            // The store is unreachable: a refreshed value could not be written anyway.
            Err(_) => Ended::Failed,
        };
        slot.done = true;
        if matches!(ended, Ended::Succeeded | Ended::Discarded) {
            slot.dealt_with = Some(token);
        }
        drop(slot);
        let counter: fn(&Counters) -> &std::sync::atomic::AtomicU64 = match ended {
            Ended::Elsewhere => return,
            Ended::Succeeded => |c| &c.refreshes_succeeded,
            Ended::Failed => |c| &c.refreshes_failed,
            Ended::Discarded => |c| &c.refreshes_discarded,
        };
        shared.count(&name, counter);
    }

    /// Runs the loader (bounded) and replaces the entry only if it is still the one read stale.
    async fn refresh(self) -> Ended {
        let Job {
            engine: shared,
            refreshing: _,
            full,
            name,
            token,
            tags,
            tag_keys,
            policy,
            future,
        } = self;
        let started = Instant::now();
        let work = future.run();
        let (value, keep) = match tokio::time::timeout(shared.settings().refresh_timeout, work)
            .await
        {
            Ok(Ok(loaded)) => loaded.into_parts(),
            Ok(Err(e)) => {
                tracing::warn!(key = %full, error = ?e, "refresh failed; keeping the old entry");
                return Ended::Failed;
            }
            Err(_) => {
                tracing::warn!(key = %full, timeout = ?shared.settings().refresh_timeout, "refresh timed out; keeping the old entry");
                return Ended::Failed;
            }
        };
        let Some(policy) = keep.policy(&policy) else {
            return no_store(&shared, &full, &token).await;
        };
        let delta = started.elapsed().as_millis() as u64;
        let (bytes, meta) = match shared.encode(&full, &value, &tags, &policy, delta) {
            Ok(encoded) => encoded,
            Err(e) => {
                shared.count(&name, |c| &c.unstorable_values);
                tracing::warn!(key = %full, error = %e, "refreshed value not cached");
                return Ended::Failed;
            }
        };
        let ttl = Duration::from_millis(meta.stale);
        let epoch = shared.near_epoch();
        let op = shared
            .store()
            .replace_if(&full, &token, &bytes, ttl, &tag_keys);
        match shared.store_op("replace_if", op).await {
            Ok(true) => {
                // Other near caches may keep the value this refresh replaced until its fresh
                // window ends: still a value no purge removed.
                let _ = shared
                    .written(&name, &full, &Arc::new(bytes), &meta, &tag_keys, epoch)
                    .await;
                tracing::debug!(key = %full, "refreshed");
                Ended::Succeeded
            }
            Ok(false) => {
                tracing::debug!(key = %full, "entry changed during refresh (invalidated or replaced); result discarded");
                Ended::Discarded
            }
            Err(_) => Ended::Failed,
        }
    }
}

/// Whether the store still holds the entry with write token `token` (checked under the refresh
/// lock, so that a reader in another process that read it before another refresh wrote does not
/// call the loader again). A store error counts as current: the compare-and-set write still
/// guards.
async fn still_current(engine: &Engine, full: &str, token: &[u8]) -> bool {
    match engine.store_op("get", engine.store().get(full)).await {
        Ok(Some(bytes)) => bytes.starts_with(token),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// A refresh whose loader said not to store its value ([`Loaded::no_store`]): the stale entry it
/// was refreshing is removed (here and in every near cache) if it is still the one read, so that
/// the next call loads again. Checked under the refresh lock; a write that lands between the
/// check and the delete is removed too, which costs that entry's next call a load, never a
/// wrong value.
async fn no_store(engine: &Engine, full: &str, token: &[u8]) -> Ended {
    if !still_current(engine, full, token).await {
        tracing::debug!(key = %full, "entry changed during refresh (invalidated or replaced); result discarded");
        return Ended::Discarded;
    }
    match engine.store_op("delete", engine.store().delete(full)).await {
        Ok(_) => {
            // A lost announcement costs as little as after any refresh: the entry was stale.
            let _ = engine.purged(Event::Key(full)).await;
            tracing::debug!(key = %full, "refreshed; the loader said not to store its value, so the stale entry was removed");
            Ended::Succeeded
        }
        Err(_) => Ended::Failed,
    }
}
