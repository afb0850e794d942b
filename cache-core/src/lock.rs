//! The cross-process load/refresh lock as a lease: held by a guard that renews it while its
//! load runs, and releases it however the load ends.

use std::sync::Arc;

use crate::engine::Engine;

/// A held cross-process lock, renewed like a lease while it is held (for at most `lock_wait`);
/// released explicitly, or by a spawned task if dropped mid-load.
pub(crate) struct LockGuard {
    engine: Arc<Engine>,
    /// `(lock key, token)` until released.
    held: Option<(String, String)>,
    /// The task that renews the lease; aborted on release.
    renewal: Option<tokio::task::AbortHandle>,
}

impl LockGuard {
    pub(crate) fn new(engine: Arc<Engine>, key: String, token: String) -> LockGuard {
        let renewal = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (engine, key, token) = (Arc::clone(&engine), key.clone(), token.clone());
            runtime
                .spawn(async move {
                    // Renewed for as long as anyone waits on it: past `lock_wait` every waiter
                    // has given up, and a hung loader must not hold the key for ever.
                    let settings = *engine.settings();
                    let every = settings.lock_ttl / 3;
                    let until = tokio::time::Instant::now() + settings.lock_wait;
                    while tokio::time::Instant::now() + every < until {
                        tokio::time::sleep(every).await;
                        let renew = engine.store().renew_lock(&key, &token, settings.lock_ttl);
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
                    tracing::warn!(lock = %key, wait = ?settings.lock_wait, "a load has run longer than lock_wait; its lock lapses");
                })
                .abort_handle()
        });
        LockGuard {
            engine,
            held: Some((key, token)),
            renewal,
        }
    }

    pub(crate) async fn release(mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if let Some((key, token)) = self.held.take() {
            let unlock = self.engine.store().unlock(&key, &token);
            if self.engine.store_op("unlock", unlock).await.is_err() {
                // Skipped by the open breaker, or timed out: the lock would stay until its TTL
                // and every other process's miss of the key would wait that long. Release it
                // past the breaker as soon as the store answers again.
                release_in_background(&self.engine, key, token);
            }
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
        release_in_background(&self.engine, key, token);
    }
}

/// Releases a lock whose `SET NX` timed out in the client: Redis may still run it once it
/// catches up, leaving a lock nobody would release, on which the key's next miss would wait
/// for the lock's TTL. The unlock is queued behind it on the same connection (a no-op if the
/// lock never landed); it runs in the background, past the breaker and the operation timeout
/// (which protect callers, not this clean-up), bounded by the lock's own TTL.
/// Also used by a lock guard dropped mid-load; outside a runtime (a cache dropped after its
/// runtime) there is nothing to run it on, and the lock expires at its TTL.
pub(crate) fn release_in_background(engine: &Arc<Engine>, lock_key: String, token: String) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let engine = Arc::clone(engine);
    runtime.spawn(async move {
        let unlock = engine.store().unlock(&lock_key, &token);
        let _ = tokio::time::timeout(engine.settings().lock_ttl, unlock).await;
    });
}
