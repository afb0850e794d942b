//! Background refresh of stale entries: one per key per process, bounded in number and time,
//! and never overwriting an entry that was invalidated or replaced meanwhile.

use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::{LockGuard, RefreshFuture, Shared};
use crate::error::StoreError;
use crate::policy::Policy;
use crate::stats::Counters;

/// One refresh, ready to be spawned.
pub(crate) struct Job<T, E> {
    pub(crate) shared: Arc<Shared>,
    /// The entry's store key.
    pub(crate) full: String,
    /// The write token of the entry that was read stale; the refresh replaces only that entry.
    pub(crate) token: Vec<u8>,
    pub(crate) tag_keys: Vec<String>,
    pub(crate) policy: Policy,
    pub(crate) future: RefreshFuture<T, E>,
}

/// Frees the key's refresh slot however the task ends (finished, panicked or aborted).
struct Slot {
    shared: Arc<Shared>,
    full: String,
    done: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.done && std::thread::panicking() {
            Counters::incr(&self.shared.counters.refreshes_failed);
            tracing::warn!(key = %self.full, "refresh panicked; keeping the old entry");
        }
        self.shared
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.full);
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
        let shared = Arc::clone(&self.shared);
        let mut slot = Slot {
            shared: Arc::clone(&shared),
            full: self.full.clone(),
            done: false,
        };
        let lock_key = Shared::lock_key(&self.full);
        let lock_token = format!("{:016x}", shared.random_token());
        let locked = shared
            .store_op(
                "lock",
                shared
                    .store
                    .try_lock(&lock_key, &lock_token, shared.lock_ttl),
            )
            .await;
        let ended = match locked {
            Ok(true) => {
                let lock = LockGuard::new(Arc::clone(&shared), lock_key, lock_token);
                let ended = self.refresh().await;
                lock.release().await;
                ended
            }
            Ok(false) => {
                tracing::debug!(key = %self.full, "another process is refreshing this key");
                Ended::Elsewhere
            }
            // The lock may still land once the store catches up: release it after it.
            Err(StoreError::Timeout { .. }) => {
                shared.release_in_background(lock_key, lock_token);
                Ended::Failed
            }
            // The store is unreachable: a refreshed value could not be written anyway.
            Err(_) => Ended::Failed,
        };
        slot.done = true;
        drop(slot);
        let counter = match ended {
            Ended::Elsewhere => return,
            Ended::Succeeded => &shared.counters.refreshes_succeeded,
            Ended::Failed => &shared.counters.refreshes_failed,
            Ended::Discarded => &shared.counters.refreshes_discarded,
        };
        Counters::incr(counter);
    }

    /// Runs the loader (bounded) and replaces the entry only if it is still the one read stale.
    async fn refresh(self) -> Ended {
        let Job {
            shared,
            full,
            token,
            tag_keys,
            policy,
            future,
        } = self;
        let started = Instant::now();
        let value = match tokio::time::timeout(shared.refresh_timeout, future).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(key = %full, error = ?e, "refresh failed; keeping the old entry");
                return Ended::Failed;
            }
            Err(_) => {
                tracing::warn!(key = %full, timeout = ?shared.refresh_timeout, "refresh timed out; keeping the old entry");
                return Ended::Failed;
            }
        };
        let delta = started.elapsed().as_millis() as u64;
        let bytes = match shared.encode(&full, &value, &policy, delta) {
            Ok(bytes) => bytes,
            Err(e) => {
                Counters::incr(&shared.counters.unstorable_values);
                tracing::warn!(key = %full, error = %e, "refreshed value not cached");
                return Ended::Failed;
            }
        };
        let ttl = Duration::from_millis(shared.ttl_of(&bytes));
        let op = shared
            .store
            .replace_if(&full, &token, &bytes, ttl, &tag_keys);
        match shared.store_op("replace_if", op).await {
            Ok(true) => {
                shared.written(&full, &bytes, &tag_keys).await;
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
