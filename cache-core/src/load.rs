//! The miss path: in-process flights, the cross-process lock and the wait for its holder, and
//! the guarded load-and-store (a load that began before a purge or a put of its entry does not
//! store its value).

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::entry::{self, Meta};
use crate::error::{CacheError, LoadError, StoreError};
use crate::flight::{self, Marks, Outcome, Role, Valid};
use crate::key::CacheKey;
use crate::keyspace::{Keyspace, GENERATION_TTL};
use crate::lock::{release_in_background, LockGuard};
use crate::outcome::{Loaded, Outcome as Answer};
use crate::policy::Policy;

impl Engine {
    /// Runs the loader and stores its value as it says ([`Loaded`]), unless its entry was purged
    /// since the load began, or the value cannot be stored faithfully. A flight's leader passes
    /// its `marks`, to mark the write its waiters' values hinge on.
    pub(crate) async fn load_and_store<T, E, L, LFut>(
        &self,
        full: &str,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        marks: Option<&Marks>,
    ) -> Result<Got<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Debug,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<Loaded<T>, E>>,
    {
        // The generations before the loader starts: any purge after this point moves one. A
        // waiter that joined before this read arrived before any purge the read misses.
        let began = mark(marks);
        let guard_keys = self.keys().guards(full, key);
        let seen = self
            .store_op("generations", self.store().generations(&guard_keys))
            .await
            .ok();
        self.count(key.name(), |c| &c.loads);
        let started = Instant::now();
        let (value, keep) = match load().await {
            Ok(loaded) => loaded.into_parts(),
            Err(e) => {
                self.count(key.name(), |c| &c.load_errors);
                tracing::debug!(key = %full, error = ?e, "loader failed; not cached");
                return Err(e);
            }
        };
        let elapsed = started.elapsed();
        let got = 'stored: {
            // The loader's say: the call's windows, its own, or no entry at all.
            let Some(policy) = keep.policy(policy) else {
                tracing::debug!(key = %full, "the loader said not to store its value");
                break 'stored Got::new(value, Stored::No, None);
            };
            let policy = &policy;
            let Some((bytes, meta)) = self.encoded(full, &value, key.tags(), policy, elapsed)
            else {
                self.count(key.name(), |c| &c.unstorable_values);
                break 'stored Got::new(value, Stored::No, None);
            };
            let bytes = Arc::new(bytes);
            if let Err(e) = self.check_size(full, &bytes) {
                // Too large for the store, but still handed to this load's coalesced waiters.
                self.count(key.name(), |c| &c.unstorable_values);
                tracing::warn!(key = %full, error = %e, "value not cached");
                break 'stored Got::new(value, Stored::No, Some(bytes));
            }
            // Unknown generations (the store failed) or older than they are kept: do not store.
            let Some(seen) = seen.as_ref().filter(|_| elapsed < GENERATION_TTL) else {
                break 'stored Got::new(value, Stored::No, Some(bytes));
            };
            let guards: Vec<(String, u64)> = guard_keys
                .iter()
                .cloned()
                .zip(seen.iter().copied())
                .collect();
            let ttl = Duration::from_millis(meta.stale);
            let tag_keys = self.keys().tags(key);
            let epoch = self.near_epoch();
            let written = mark(marks);
            let op = self
                .store()
                .set_guarded(full, &bytes, ttl, &tag_keys, &guards);
            // A failed write was counted and logged by `store_op`; the caller still gets its
            // value.
            match self.store_op("set", op).await {
                Ok(true) => {
                    // A lost announcement costs nothing here: no other process holds a fresh
                    // copy of an entry that was missing, and a later purge announces again.
                    let _ = self
                        .written(key.name(), full, &bytes, &meta, &tag_keys, epoch)
                        .await;
                    Got {
                        valid: written,
                        ..Got::new(value, Stored::Yes, Some(bytes))
                    }
                }
                Ok(false) => {
                    self.count(key.name(), |c| &c.superseded_loads);
                    tracing::debug!(key = %full, "purged or replaced while loading; value not cached");
                    Got::new(value, Stored::Superseded, Some(bytes))
                }
                Err(_) => Got::new(value, Stored::No, Some(bytes)),
            }
        };
        if got.stored != Stored::No {
            return Ok(got);
        }
        let valid = match (marks, seen) {
            (Some(marks), Some(seen)) if elapsed < GENERATION_TTL => {
                self.unstored(marks, began, &guard_keys, &seen).await
            }
            // Generations older than they are kept prove nothing.
            (Some(_), Some(_)) => began,
            // The store failed before the load: fail-open, as for every caller then.
            _ => Valid::ForAll,
        };
        Ok(Got { valid, ..got })
    }

    /// Which waiters a loaded value that was not stored is good for. No write checked it
    /// against purges, so by default only those that joined before its load began (`began`):
    /// a later one may have arrived after a purge during the load. If any such caller joined,
    /// the purge generations are read again: unmoved, the value is good for everyone who
    /// joined before that read; moved or unreadable, the late callers start again.
    async fn unstored(&self, marks: &Marks, began: Valid, keys: &[String], seen: &[u64]) -> Valid {
        if !marks.joined_since(began) {
            return began;
        }
        let checked = marks.mark();
        match self
            .store_op("generations", self.store().generations(keys))
            .await
        {
            Ok(now) if now == seen => checked,
            _ => began,
        }
    }

    /// The entry of a loaded value, or `None` (logged) when it cannot be stored faithfully: it
    /// does not encode, or does not read back as written (JSON writes NaN as `null`).
    fn encoded<T: Serialize + DeserializeOwned>(
        &self,
        full: &str,
        value: &T,
        tags: &[String],
        policy: &Policy,
        elapsed: Duration,
    ) -> Option<(Vec<u8>, Meta)> {
        let delta = elapsed.as_millis() as u64;
        let codec = self.codec(policy);
        let checked =
            self.encode_any(full, value, tags, policy, delta)
                .and_then(|(bytes, meta)| match entry::decode::<T>(&bytes, codec) {
                    Ok(_) => Ok((bytes, meta)),
                    Err(e) => Err(CacheError::Encode {
                        key: full.to_string(),
                        source: Arc::new(serde::ser::Error::custom(format!(
                        "the value does not read back as written ({e:?}); a NaN or infinite float?"
                    ))),
                    }),
                });
        match checked {
            Ok(encoded) => Some(encoded),
            Err(e) => {
                tracing::warn!(key = %full, error = %e, "value not cached");
                None
            }
        }
    }

    /// The miss path with coalescing: in-process flights, then the cross-process lock.
    pub(crate) async fn load_coalesced<T, E, L, LFut>(
        self: &Arc<Self>,
        full: &str,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        share: Share<T, E>,
    ) -> Result<(T, Answer), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: fmt::Debug + Send + 'static,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<Loaded<T>, E>>,
    {
        // A caller waits on other callers' loads, here or in other processes, for at most
        // `lock_wait` in all. A leader renews its lock while it loads, so a slow load is waited
        // for, not duplicated; a leader that goes away hands the flight to one waiter.
        let started = tokio::time::Instant::now();
        let deadline = started + self.settings().lock_wait;
        let timed_out = || LoadError::TimedOut {
            key: full.to_string(),
            waited: started.elapsed(),
        };
        let mut counted = false;
        loop {
            match self.flights().join(full, self.settings().lock_wait) {
                Role::Leader(guard) => {
                    let loaded = self
                        .load_locked(full, key, policy, load, deadline, guard.marks())
                        .await;
                    return match loaded {
                        Ok(loaded) => {
                            let answer = loaded.answer();
                            let valid = loaded.valid;
                            match (loaded.stored, share.value, loaded.bytes) {
                                (Stored::Superseded, _, _) => guard.finish(Outcome::Superseded),
                                (_, Some(clone), _) => guard
                                    .finish(Outcome::Value(Arc::new(clone(&loaded.value)), valid)),
                                (_, None, Some(bytes)) => {
                                    guard.finish(Outcome::Value(Arc::new(bytes), valid))
                                }
                                // Nothing to share: the waiters load.
                                (_, None, None) => drop(guard),
                            }
                            Ok((loaded.value, answer))
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
                Role::Waiter(mut waiter) => {
                    if !counted {
                        self.count(key.name(), |c| &c.coalesced_waits);
                        counted = true;
                    }
                    let outcome = flight::wait(&mut waiter);
                    let outcome = match tokio::time::timeout_at(deadline, outcome).await {
                        Ok(outcome) => outcome,
                        Err(_) if share.load_after_patience => {
                            return self.load_after_patience(full, key, policy, load).await
                        }
                        Err(_) => return Err(timed_out()),
                    };
                    match outcome {
                        // Stored, or found, by a call sent before this caller joined: it may
                        // have reached the store before a purge this caller saw return. Start
                        // again; the entry, if still there, is one read away.
                        Some(Outcome::Value(_, valid)) if !waiter.accepts(valid) => {
                            tracing::debug!(key = %full, "joined after the load's store call was sent; reading again");
                            continue;
                        }
                        Some(Outcome::Value(any, _)) => match share.value {
                            Some(clone) => match any.downcast_ref::<T>() {
                                Some(v) => return Ok((clone(v), Answer::Coalesced)),
                                // Another type under the same key: load for ourselves.
                                None => continue,
                            },
                            None => match any.downcast_ref::<Arc<Vec<u8>>>().and_then(|bytes| {
                                crate::stats::Counters::incr(&self.counters().decodes);
                                entry::decode::<T>(bytes, self.codec(policy)).ok()
                            }) {
                                Some((v, _)) => return Ok((v, Answer::Coalesced)),
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
    ) -> Result<(T, Answer), LoadError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Debug,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<Loaded<T>, E>>,
    {
        tracing::warn!(key = %full, wait = ?self.settings().lock_wait, "another caller's load is taking longer than lock_wait; loading directly");
        self.load_and_store(full, key, policy, load, None)
            .await
            .map(|loaded| (loaded.value, Answer::Miss))
            .map_err(LoadError::Loader)
    }

    /// Loads under the cross-process lock, or waits until `deadline` for the process that holds
    /// it, taking over only when that holder is gone. `marks` are the flight's, whose leader
    /// this caller is.
    async fn load_locked<T, E, L, LFut>(
        self: &Arc<Self>,
        full: &str,
        key: &CacheKey,
        policy: &Policy,
        load: L,
        deadline: tokio::time::Instant,
        marks: &Marks,
    ) -> Result<Got<T>, NotLoaded<E, L>>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Debug,
        L: FnOnce() -> LFut,
        LFut: Future<Output = Result<Loaded<T>, E>>,
    {
        let lock_key = Keyspace::lock(full);
        let token = format!("{:016x}", self.random_token());
        let lock = || async {
            self.store_op(
                "lock",
                self.store()
                    .try_lock(&lock_key, &token, self.settings().lock_ttl),
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
                tracing::warn!(key = %full, wait = ?self.settings().lock_wait, "another process's load is taking longer than lock_wait");
                return Err(NotLoaded::TimedOut(load));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            if let Some(found) = self.read_fresh::<T>(full, policy, marks).await {
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
            if let Some(found) = self.read_fresh::<T>(full, policy, marks).await {
                guard.release().await;
                return Ok(found);
            }
            let result = self
                .load_and_store(full, key, policy, load, Some(marks))
                .await;
            guard.release().await;
            return result.map_err(NotLoaded::Failed);
        }
        let result = self
            .load_and_store(full, key, policy, load, Some(marks))
            .await;
        if uncertain {
            release_in_background(self, lock_key, token);
        }
        result.map_err(NotLoaded::Failed)
    }

    /// A fresh entry (one that someone just loaded), as a load result. A stale entry does not
    /// count: it is what an inline refresh is replacing.
    async fn read_fresh<T: DeserializeOwned>(
        &self,
        full: &str,
        policy: &Policy,
        marks: &Marks,
    ) -> Option<Got<T>> {
        let valid = marks.mark();
        let found = self
            .read_reporting::<T>(full, self.codec(policy), false)
            .await?;
        let age = self.clock().now_ms().saturating_sub(found.meta.at);
        (age < found.meta.fresh).then(|| Got {
            here: false,
            valid,
            ..Got::new(found.value, Stored::Yes, Some(found.bytes))
        })
    }
}

/// How coalesced callers share a load: clones of its value (or, for a value type that is not
/// `Clone`, decodes of its entry) and of its error.
pub(crate) struct Share<T, E> {
    pub(crate) value: Option<fn(&T) -> T>,
    pub(crate) error: fn(&E) -> E,
    /// Whether a caller whose patience ran out loads on its own (`#[cached_action]`) rather
    /// than returning [`LoadError::TimedOut`].
    pub(crate) load_after_patience: bool,
}

/// Why [`Engine::load_locked`] returned no value.
enum NotLoaded<E, L> {
    /// The loader failed.
    Failed(E),
    /// The deadline passed while another process still held the lock; the loader is unused.
    TimedOut(L),
}

/// A loaded (or found) value, what became of its entry, who loaded it, and the entry's bytes when it encoded
/// faithfully (to share with waiters whose value type is not `Clone`).
pub(crate) struct Got<T> {
    pub(crate) value: T,
    stored: Stored,
    bytes: Option<Arc<Vec<u8>>>,
    /// Whether this call's loader produced it (else it was found, stored by another caller).
    here: bool,
    /// Which of a flight's waiters may take it.
    valid: Valid,
}

impl<T> Got<T> {
    fn new(value: T, stored: Stored, bytes: Option<Arc<Vec<u8>>>) -> Self {
        Got {
            value,
            stored,
            bytes,
            here: true,
            valid: Valid::ForAll,
        }
    }

    /// How the call got it: a miss of its own, or another caller's load.
    fn answer(&self) -> Answer {
        if self.here {
            Answer::Miss
        } else {
            Answer::Coalesced
        }
    }
}

/// The mark of a store call a flight's leader is about to send; outside a flight there are no
/// waiters to judge it.
fn mark(marks: Option<&Marks>) -> Valid {
    marks.map_or(Valid::ForAll, Marks::mark)
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

/// Makes a `Send` error shareable between tasks behind `Arc<dyn Any + Send + Sync>`: the value
/// is only ever read through `&`, under a mutex, by the waiter that clones it.
pub(crate) struct SendCell<E>(Mutex<E>);

impl<E> SendCell<E> {
    pub(crate) fn new(e: E) -> Self {
        SendCell(Mutex::new(e))
    }

    pub(crate) fn get(&self) -> std::sync::MutexGuard<'_, E> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
