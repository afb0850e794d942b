//! Background refresh of stale entries: one per key per process, bounded in number and time,
//! and never overwriting an entry that was invalidated or replaced meanwhile.

use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::{LockGuard, RefreshFuture, Shared};
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

impl<T, E> Job<T, E>
where
    T: Serialize + Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    pub(crate) async fn run(self) {
        let Job {
            shared,
            full,
            token,
            tag_keys,
            policy,
            future,
        } = self;
        let mut slot = Slot {
            shared: Arc::clone(&shared),
            full: full.clone(),
            done: false,
        };
        let lock_key = Shared::lock_key(&full);
        let lock_token = format!("{:016x}", shared.random_token());
        match shared
            .store_op(
                "lock",
                shared
                    .store
                    .try_lock(&lock_key, &lock_token, shared.lock_ttl),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(key = %full, "another process is refreshing this key");
                slot.done = true;
                return;
            }
            Err(_) => {
                // The store is unreachable: a refreshed value could not be written anyway.
                Counters::incr(&shared.counters.refreshes_failed);
                slot.done = true;
                return;
            }
        }
        let lock = LockGuard::new(Arc::clone(&shared), lock_key, lock_token);
        let started = Instant::now();
        let outcome = tokio::time::timeout(shared.refresh_timeout, future).await;
        let value = match outcome {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                Counters::incr(&shared.counters.refreshes_failed);
                tracing::warn!(key = %full, error = ?e, "refresh failed; keeping the old entry");
                slot.done = true;
                lock.release().await;
                return;
            }
            Err(_) => {
                Counters::incr(&shared.counters.refreshes_failed);
                tracing::warn!(key = %full, timeout = ?shared.refresh_timeout, "refresh timed out; keeping the old entry");
                slot.done = true;
                lock.release().await;
                return;
            }
        };
        let delta = started.elapsed().as_millis() as u64;
        match shared.encode(&full, &value, &policy, delta) {
            Ok(bytes) => {
                let ttl = Duration::from_millis(shared.ttl_of(&bytes));
                let op = shared
                    .store
                    .replace_if(&full, &token, &bytes, ttl, &tag_keys);
                match shared.store_op("replace_if", op).await {
                    Ok(true) => {
                        Counters::incr(&shared.counters.refreshes_succeeded);
                        tracing::debug!(key = %full, "refreshed");
                    }
                    Ok(false) => {
                        Counters::incr(&shared.counters.refreshes_discarded);
                        tracing::debug!(key = %full, "entry changed during refresh (invalidated or replaced); result discarded");
                    }
                    Err(_) => Counters::incr(&shared.counters.refreshes_failed),
                }
            }
            Err(e) => {
                Counters::incr(&shared.counters.unstorable_values);
                Counters::incr(&shared.counters.refreshes_failed);
                tracing::warn!(key = %full, error = %e, "refreshed value not cached");
            }
        }
        slot.done = true;
        lock.release().await;
    }
}
