//! The engine every part of a [`Cache`](crate::Cache) works through: the store behind its
//! breaker and operation timeout, shared reads and decoding, encoding with drawn windows, and
//! the near-cache announcements of writes and purges. Its fields are private; the miss path
//! (`load`), the lock lease (`lock`) and the refresher (`refresh`) use it through methods.

use rand::rngs::StdRng;
use rand::{Rng, RngCore};
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use crate::breaker::Breaker;
use crate::clock::Clock;
use crate::codec::Codec;
use crate::entry::{self, DecodeError, Meta};
use crate::error::{CacheError, StoreError};
use crate::flight::Flights;
use crate::key::CacheKey;
use crate::keyspace::{Keyspace, GENERATION_TTL};
use crate::near::{Event, Held, Near, Typed};
use crate::policy::Policy;
use crate::read_flight::{ReadFlights, ReadRole};
use crate::settings::Settings;
use crate::stats::Counters;
use crate::store::Store;

/// How many key names get counters of their own.
const MAX_NAMES: usize = 1_000;

/// What the cache and its background tasks share.
pub(crate) struct Engine {
    store: Arc<dyn Store>,
    keys: Keyspace,
    settings: Settings,
    clock: Arc<dyn Clock>,
    rng: Mutex<StdRng>,
    counters: Arc<Counters>,
    /// The same counters per key name (function or route), for the first `MAX_NAMES` names.
    /// FxHash: the names are the application's own function and route names, not input an
    /// attacker chooses, and SipHash of the name showed in the hit path's profile.
    by_name: RwLock<FxHashMap<String, Arc<Counters>>>,
    breaker: Breaker,
    flights: Arc<Flights>,
    /// The optional in-process tier.
    near: Option<Arc<Near>>,
    /// Shared in-flight reads; `None` for the in-process store, where sharing costs more than
    /// it saves.
    reads: Option<ReadFlights>,
}

/// A decoded entry read from the store.
pub(crate) struct Found<T> {
    pub(crate) value: T,
    pub(crate) meta: Meta,
    pub(crate) bytes: Arc<Vec<u8>>,
}

impl Engine {
    /// The one constructor (the builder's); `remote` stores share concurrent reads of a key.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Arc<dyn Store>,
        keys: Keyspace,
        settings: Settings,
        clock: Arc<dyn Clock>,
        rng: StdRng,
        breaker: Breaker,
        near: Option<Near>,
        remote: bool,
    ) -> Engine {
        Engine {
            store,
            keys,
            settings,
            clock,
            rng: Mutex::new(rng),
            counters: Arc::new(Counters::default()),
            by_name: RwLock::new(FxHashMap::default()),
            breaker,
            flights: Arc::new(Flights::default()),
            near: near.map(Arc::new),
            reads: remote.then(ReadFlights::default),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn keys(&self) -> &Keyspace {
        &self.keys
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Counts one event for the whole cache and for the key name `name` (the first
    /// `MAX_NAMES` names get counters of their own). The hit path pays one read-locked lookup;
    /// no allocation, no reference count.
    pub(crate) fn count(&self, name: &str, counter: fn(&Counters) -> &AtomicU64) {
        self.count_all(name, &[counter]);
    }

    /// [`Engine::count`] for several events of one call, with one lookup of the name.
    pub(crate) fn count_all(&self, name: &str, counters: &[fn(&Counters) -> &AtomicU64]) {
        for counter in counters {
            Counters::incr(counter(&self.counters));
        }
        {
            let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
            if let Some(named) = map.get(name) {
                for counter in counters {
                    Counters::incr(counter(named));
                }
                return;
            }
            if map.len() >= MAX_NAMES {
                return;
            }
        }
        if let Some(named) = self.named(name) {
            for counter in counters {
                Counters::incr(counter(&named));
            }
        }
    }

    /// [`Engine::count_all`] with the name's counters at hand (an in-process entry keeps them):
    /// no lookup.
    pub(crate) fn count_all_in(
        &self,
        named: Option<&Counters>,
        counters: &[fn(&Counters) -> &AtomicU64],
    ) {
        for counter in counters {
            Counters::incr(counter(&self.counters));
            if let Some(named) = named {
                Counters::incr(counter(named));
            }
        }
    }

    /// The counters of the key name `name`, made on first use; `None` past `MAX_NAMES` names.
    pub(crate) fn named(&self, name: &str) -> Option<Arc<Counters>> {
        if let Some(named) = self
            .by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Some(Arc::clone(named));
        }
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        if let Some(named) = map.get(name) {
            return Some(Arc::clone(named));
        }
        if map.len() >= MAX_NAMES {
            return None;
        }
        Some(Arc::clone(map.entry(name.to_string()).or_default()))
    }

    /// The counters of one key name, if it was counted.
    pub(crate) fn stats_for(&self, name: &str) -> Option<crate::stats::Stats> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        map.get(name).map(|named| named.snapshot())
    }

    /// The counters of every key name seen, sorted by name.
    pub(crate) fn stats_by_name(&self) -> Vec<(String, crate::stats::Stats)> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map.iter().map(|(n, c)| (n.clone(), c.snapshot())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub(crate) fn flights(&self) -> &Arc<Flights> {
        &self.flights
    }

    /// The shared store reads in flight now (none for an in-process store).
    pub(crate) fn reads_in_flight(&self) -> usize {
        self.reads.as_ref().map_or(0, ReadFlights::len)
    }

    /// Whether the store is in this process (its reads never wait on I/O).
    pub(crate) fn in_process(&self) -> bool {
        self.reads.is_none()
    }

    pub(crate) fn near(&self) -> Option<&Arc<Near>> {
        self.near.as_ref()
    }

    /// Bumps one purge generation (before the purge or put it announces).
    pub(crate) async fn bump(&self, gen_key: String) -> Result<(), StoreError> {
        let keys = [gen_key];
        self.store_op(
            "bump_generations",
            self.store.bump_generations(&keys, GENERATION_TTL),
        )
        .await
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
        let result = match tokio::time::timeout(self.settings.op_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout {
                op,
                timeout: self.settings.op_timeout,
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

    /// The codec `policy` stores with.
    pub(crate) fn codec(&self, policy: &Policy) -> Codec {
        policy.codec().unwrap_or(self.settings.codec)
    }

    /// Reads and decodes an entry written with `codec`; anything unusable is `None` (and
    /// counted).
    pub(crate) async fn read<T: DeserializeOwned>(
        &self,
        full: &str,
        codec: Codec,
    ) -> Option<Found<T>> {
        self.read_reporting(full, codec, true).await
    }

    /// Reads like [`Engine::read`]; with `report` false an unusable entry is not counted or
    /// logged again (the call already did so on its first read).
    pub(crate) async fn read_reporting<T: DeserializeOwned>(
        &self,
        full: &str,
        codec: Codec,
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
        Counters::incr(&self.counters.decodes);
        match entry::decode::<T>(&bytes, codec) {
            Ok((value, meta)) => Some(Found { value, meta, bytes }),
            Err(_) if !report => None,
            Err(e) => {
                Counters::incr(&self.counters.corrupt_entries);
                match e {
                    DecodeError::Format => {
                        tracing::warn!(key = %full, "entry is not in our format; treating as a miss")
                    }
                    DecodeError::OtherCodec => {
                        tracing::debug!(key = %full, ?codec, "entry was written with another codec; treating as a miss")
                    }
                    DecodeError::Value(e) => {
                        tracing::warn!(key = %full, error = %e, "entry does not decode; treating as a miss")
                    }
                }
                None
            }
        }
    }

    /// One store `GET`, shared with concurrent readers of the same key when the store is
    /// remote, but only with those that arrived before it was sent (see `read_flight`): a
    /// caller never takes the answer of a read that may predate a purge it saw acknowledged.
    /// A follower waits at most twice the operation timeout (the read in flight when it
    /// arrived, then its own), and reads itself if the reading caller went away.
    async fn get(&self, full: &str) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        let Some(reads) = &self.reads else {
            return self.own_read(full).await;
        };
        match reads.join(full) {
            ReadRole::Reader(mut guard) => {
                guard.ready(self.settings.op_timeout).await;
                let result = self.own_read(full).await;
                guard.publish(&result);
                result
            }
            ReadRole::Follower(slot) => {
                let patience = self.settings.op_timeout.saturating_mul(2);
                let shared = match tokio::time::timeout(patience, slot.wait()).await {
                    Ok(shared) => shared,
                    Err(_) => {
                        return Err(StoreError::Timeout {
                            op: "get",
                            timeout: patience,
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
        self.store_op("get", self.store.get_shared(full)).await
    }

    /// Encodes a value with windows drawn from `policy`, whatever its size; returns the entry
    /// and the metadata it was written with (so that nobody parses it back to find its TTL).
    pub(crate) fn encode_any<T: Serialize + ?Sized>(
        &self,
        full: &str,
        value: &T,
        tags: &[String],
        policy: &Policy,
        delta_ms: u64,
    ) -> Result<(Vec<u8>, Meta), CacheError> {
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
        let bytes =
            entry::encode(value, meta, tags, write_id, self.codec(policy)).map_err(|e| {
                CacheError::Encode {
                    key: full.to_string(),
                    source: Arc::new(e),
                }
            })?;
        Ok((bytes, meta))
    }

    /// Encodes a value like [`Engine::encode_any`], refusing entries over the size limit.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        full: &str,
        value: &T,
        tags: &[String],
        policy: &Policy,
        delta_ms: u64,
    ) -> Result<(Vec<u8>, Meta), CacheError> {
        let (bytes, meta) = self.encode_any(full, value, tags, policy, delta_ms)?;
        self.check_size(full, &bytes)?;
        Ok((bytes, meta))
    }

    pub(crate) fn check_size(&self, full: &str, bytes: &[u8]) -> Result<(), CacheError> {
        if bytes.len() > self.settings.max_entry_bytes {
            return Err(CacheError::TooLarge {
                key: full.to_string(),
                size: bytes.len(),
                max: self.settings.max_entry_bytes,
            });
        }
        Ok(())
    }

    /// The tag sets whose purge must drop a near copy of `bytes`, read under `key`: the key's
    /// own tags and every tag the entry says it was written with (another process, or another
    /// version of this code, may have given it tags this key does not name).
    pub(crate) fn near_tag_keys(&self, key: &CacheKey, bytes: &[u8]) -> Vec<String> {
        let mut tag_keys = self.keys().tags(key);
        for tag in entry::tags(bytes).unwrap_or_default() {
            if !key.tags().contains(&tag) {
                tag_keys.push(self.keys().tag(&tag));
            }
        }
        tag_keys
    }

    /// The in-process tier's epoch (0 without one): taken before a store write and handed to
    /// [`Engine::written`], so that a purge applied here between the write and the fill (from
    /// this process, or announced by another) keeps the written value out of the tier.
    pub(crate) fn near_epoch(&self) -> u64 {
        self.near.as_ref().map_or(0, |near| near.epoch())
    }

    /// After this process wrote an entry: drop what the tier held for it, keep the write near
    /// (unless an event arrived since `epoch`, [`Engine::near_epoch`] from before the write),
    /// and tell other processes to drop theirs. Keeping it moves the epoch
    /// ([`Near::own_write`]), so a read of the key that began before, and may have read the
    /// replaced entry, does not overwrite it with that.
    ///
    /// Returns the announcement's failure: until other processes hear it, their near caches
    /// may answer with what they hold, so a put or purge must not be acknowledged as done.
    pub(crate) async fn written(
        &self,
        name: &str,
        full: &str,
        bytes: &Arc<Vec<u8>>,
        meta: &Meta,
        tag_keys: &[String],
        epoch: u64,
    ) -> Result<(), StoreError> {
        let Some(near) = &self.near else {
            return Ok(());
        };
        let mut bytes = Arc::clone(bytes);
        if self.in_process() {
            // Keep the store's own allocation of this very write (same token), not a second
            // copy; after another write, our bytes as they are.
            if let Ok(Some(stored)) = self.store.get_shared(full).await {
                if entry::token(&stored) == entry::token(&bytes) && *stored == *bytes {
                    bytes = stored;
                }
            }
        }
        // Whether or not it is kept, what the tier held for the key is older than this write.
        if let Some(epoch) = near.own_write(full, epoch) {
            near.fill(
                full,
                bytes,
                meta,
                None,
                self.clock.now_ms(),
                tag_keys,
                self.named(name),
                epoch,
            );
        }
        self.publish(near, Event::Key(full)).await
    }

    /// After this process purged entries: drop them here and in every other process. Returns
    /// the announcement's failure (see [`Engine::written`]).
    pub(crate) async fn purged(&self, event: Event<'_>) -> Result<(), StoreError> {
        let Some(near) = &self.near else {
            return Ok(());
        };
        near.forget(event);
        self.publish(near, event).await
    }

    async fn publish(&self, near: &Near, event: Event<'_>) -> Result<(), StoreError> {
        // The tier in front of the in-process store has no one to tell.
        let Some(channel) = near.channel() else {
            return Ok(());
        };
        let message = near.message(event);
        self.store_op("publish", self.store.publish(channel, &message))
            .await
    }

    /// The value of an entry held near, as a `T`: a clone of the decoded value when it is one
    /// and `clone` is given, else a decode of its bytes (counted), after which the tier keeps
    /// the decoded value if it held none. `epoch` is the tier's epoch from before the lookup.
    pub(crate) fn near_value<T>(
        &self,
        near: &Near,
        full: &str,
        held: &Held,
        clone: Option<fn(&T) -> T>,
        codec: Codec,
        epoch: u64,
    ) -> Option<T>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        if let (Some(any), Some(clone)) = (&held.value, clone) {
            if let Some(value) = any.downcast_ref::<T>() {
                return Some(clone(value));
            }
        }
        // Bytes only (written by a put or a load), or another type under the same key.
        Counters::incr(&self.counters.decodes);
        let (value, _) = entry::decode::<T>(&held.bytes, codec).ok()?;
        if let (None, Some(clone)) = (&held.value, clone) {
            let typed: Typed = Arc::new(clone(&value));
            near.upgrade(full, held, typed, self.clock.now_ms(), epoch);
        }
        Some(value)
    }

    pub(crate) fn early_refresh_due(&self, policy: &Policy, meta: &Meta, now: u64) -> bool {
        let Some(beta) = policy.early_refresh_beta() else {
            return false;
        };
        let u: f64 = self.rng.lock().unwrap_or_else(|p| p.into_inner()).random();
        let gap = -(meta.delta as f64) * beta * (1.0 - u).ln();
        now as f64 + gap >= (meta.at + meta.fresh) as f64
    }
}
