//! An in-process store with the same expiry semantics as Redis, bounded in size.

use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::Store;
use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;

/// An in-memory [`Store`]: the embedded default when no Redis is configured.
///
/// Holds at most `capacity` keys and, with [`MemoryStore::max_bytes`], at most that many bytes
/// of entries by [`MemoryStore::weight`] (default: no byte bound); when a write would pass a
/// bound, the entries closest to expiry are evicted first (expired ones before anything else).
/// An entry heavier than the whole byte bound is not kept (the key's older value is dropped
/// too, so a read never answers with what the write replaced), except a lock, which is always
/// taken. Expiry follows the clock it was given.
///
/// ```
/// use action_cache_core::store::{MemoryStore, Store};
/// use std::time::Duration;
///
/// # tokio_test_block_on(async {
/// let store = MemoryStore::new(1_000);
/// store.set("k", b"v", Duration::from_secs(5), &[]).await?;
/// assert_eq!(store.get("k").await?, Some(b"v".to_vec()));
/// # Ok::<(), action_cache_core::StoreError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    capacity: usize,
    max_bytes: Option<usize>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each key is allocated once, shared by the map and the eviction order. Hashed with
    /// foldhash, seeded per store: every read hashes its full key here, and SipHash of a
    /// 60-100 byte key costs several times more.
    entries: HashMap<Arc<str>, Slot, foldhash::fast::RandomState>,
    /// (expires_at, seq, key): the eviction order.
    by_expiry: BTreeSet<(u64, u64, Arc<str>)>,
    tags: HashMap<String, (HashSet<String>, u64)>,
    /// Purge generations: value and expiry. Not counted against the capacity (one small
    /// counter per purged key or tag, kept for its TTL).
    generations: HashMap<String, (u64, u64)>,
    seq: u64,
    /// The sum of the entries' [`MemoryStore::weight`].
    weight: usize,
}

#[derive(Debug)]
struct Slot {
    /// Shared with the typed tier in front of the store ([`Store::get_shared`]).
    value: Arc<Vec<u8>>,
    expires_at: u64,
    seq: u64,
}

impl MemoryStore {
    /// The default capacity in keys.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// What an entry costs besides its key and value, in [`MemoryStore::weight`]: its slot in
    /// the key map and its place in the eviction order, and the allocations' headers.
    /// `examples/memory_report` measured 224 B (RSS per entry less the value and the key),
    /// rounded up.
    pub const ENTRY_OVERHEAD: usize = 232;

    /// An entry's weight against the byte bound: `key.len() + value.len() +`
    /// [`MemoryStore::ENTRY_OVERHEAD`] (the key is held once, shared by the map and the
    /// eviction order). Tag sets and purge generations are not weighed.
    pub fn weight(key: &str, value: &[u8]) -> usize {
        key.len() + value.len() + MemoryStore::ENTRY_OVERHEAD
    }

    /// A store holding at most `capacity` keys (at least 1), on the system clock.
    pub fn new(capacity: usize) -> MemoryStore {
        MemoryStore::with_clock(capacity, Arc::new(SystemClock))
    }

    /// A store on the given clock (share the cache's clock so expiry and windows agree).
    pub fn with_clock(capacity: usize, clock: Arc<dyn Clock>) -> MemoryStore {
        MemoryStore {
            capacity: capacity.max(1),
            max_bytes: None,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// How many keys are held (including not-yet-purged expired ones).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Also bounds the store to `max_bytes` of entries by [`MemoryStore::weight`] (at least 1;
    /// default: no byte bound, only the key count).
    ///
    /// ```
    /// use action_cache_core::store::{MemoryStore, Store};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::new(1_000).max_bytes(64 * 1024);
    /// for i in 0..1_000 {
    ///     store.set(&format!("k{i}"), &[0; 1_000], Duration::from_secs(60), &[]).await?;
    /// }
    /// assert!(store.bytes() <= 64 * 1024 && !store.is_empty());
    /// # Ok::<(), action_cache_core::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn max_bytes(mut self, max_bytes: usize) -> MemoryStore {
        self.max_bytes = Some(max_bytes.max(1));
        self
    }

    /// The weight of what is held now ([`MemoryStore::weight`] summed over every key, including
    /// not-yet-purged expired ones): never more than the byte bound, if there is one.
    pub fn bytes(&self) -> usize {
        self.lock().weight
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that matters
        // more than losing the cache, so recover the guard rather than poison every caller.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A store's bounds, as [`State::insert`] takes them.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    capacity: usize,
    max_bytes: Option<usize>,
}

impl MemoryStore {
    fn bounds(&self) -> Bounds {
        Bounds {
            capacity: self.capacity,
            max_bytes: self.max_bytes,
        }
    }
}

impl State {
    fn live(&mut self, key: &str, now: u64) -> Option<&Slot> {
        let expired = matches!(self.entries.get(key), Some(s) if s.expires_at <= now);
        if expired {
            self.remove(key);
            return None;
        }
        self.entries.get(key)
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove_entry(key) {
            Some((key, slot)) => {
                self.weight -= MemoryStore::weight(&key, &slot.value);
                self.by_expiry.remove(&(slot.expires_at, slot.seq, key));
                true
            }
            None => false,
        }
    }

    /// Writes `key` (replacing its older value), evicting the entries closest to expiry while
    /// a bound would be passed. An entry heavier than the whole byte bound is not kept unless
    /// `always`; returns whether it was.
    fn insert(
        &mut self,
        key: &str,
        value: &[u8],
        expires_at: u64,
        bounds: Bounds,
        always: bool,
    ) -> bool {
        self.remove(key);
        let weight = MemoryStore::weight(key, value);
        let fits = |held: usize| bounds.max_bytes.is_none_or(|max| held + weight <= max);
        if !fits(0) && !always {
            return false;
        }
        while self.entries.len() >= bounds.capacity || !fits(self.weight) {
            let Some((_, _, first)) = self.by_expiry.pop_first() else {
                break;
            };
            if let Some(slot) = self.entries.remove(&first) {
                self.weight -= MemoryStore::weight(&first, &slot.value);
            }
        }
        self.weight += weight;
        self.seq += 1;
        let seq = self.seq;
        let key: Arc<str> = Arc::from(key);
        self.by_expiry.insert((expires_at, seq, Arc::clone(&key)));
        self.entries.insert(
            key,
            Slot {
                value: Arc::new(value.to_vec()),
                expires_at,
                seq,
            },
        );
        true
    }

    fn generation(&mut self, key: &str, now: u64) -> u64 {
        match self.generations.get(key) {
            Some(&(g, expires_at)) if expires_at > now => g,
            Some(_) => {
                self.generations.remove(key);
                0
            }
            None => 0,
        }
    }

    fn tag(&mut self, tag_keys: &[String], key: &str, expires_at: u64, now: u64) {
        for t in tag_keys {
            let (members, exp) = self.tags.entry(t.clone()).or_default();
            if *exp <= now {
                members.clear();
            }
            members.insert(key.to_string());
            *exp = (*exp).max(expires_at);
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.clock.now_ms();
        Ok(self.lock().live(key, now).map(|s| s.value.to_vec()))
    }

    async fn get_shared(&self, key: &str) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        let now = self.clock.now_ms();
        Ok(self.lock().live(key, now).map(|s| Arc::clone(&s.value)))
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let expires_at = now + ttl.as_millis() as u64;
        let mut st = self.lock();
        if st.insert(key, value, expires_at, self.bounds(), false) {
            st.tag(tag_keys, key, expires_at, now);
        }
        Ok(())
    }

    async fn replace_if(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let matches = st
            .live(key, now)
            .is_some_and(|s| s.value.starts_with(expected));
        if matches {
            let expires_at = now + ttl.as_millis() as u64;
            if st.insert(key, value, expires_at, self.bounds(), false) {
                st.tag(tag_keys, key, expires_at, now);
            }
        }
        Ok(matches)
    }

    async fn set_guarded(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
        guards: &[(String, u64)],
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if guards
            .iter()
            .any(|(g, seen)| st.generation(g, now) != *seen)
        {
            return Ok(false);
        }
        let expires_at = now + ttl.as_millis() as u64;
        if st.insert(key, value, expires_at, self.bounds(), false) {
            st.tag(tag_keys, key, expires_at, now);
        }
        Ok(true)
    }

    async fn generations(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        Ok(keys.iter().map(|k| st.generation(k, now)).collect())
    }

    async fn bump_generations(&self, keys: &[String], ttl: Duration) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let expires_at = now + ttl.as_millis() as u64;
        let mut st = self.lock();
        if st.generations.len() > 100_000 {
            st.generations.retain(|_, (_, exp)| *exp > now);
        }
        for k in keys {
            let g = st.generation(k, now) + 1;
            st.generations.insert(k.clone(), (g, expires_at));
        }
        Ok(())
    }

    async fn renew_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let held = st
            .live(key, now)
            .is_some_and(|s| *s.value == token.as_bytes());
        if held {
            st.insert(
                key,
                token.as_bytes(),
                now + ttl.as_millis() as u64,
                self.bounds(),
                true,
            );
        }
        Ok(held)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let existed = st.live(key, now).is_some();
        st.remove(key);
        Ok(existed)
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if st.live(key, now).is_some() {
            return Ok(false);
        }
        st.insert(
            key,
            token.as_bytes(),
            now + ttl.as_millis() as u64,
            self.bounds(),
            true,
        );
        Ok(true)
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if st
            .live(key, now)
            .is_some_and(|s| *s.value == token.as_bytes())
        {
            st.remove(key);
        }
        Ok(())
    }

    async fn delete_tagged(&self, tag_key: &str) -> Result<u64, StoreError> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let Some((members, _)) = st.tags.remove(tag_key) else {
            return Ok(0);
        };
        let mut n = 0;
        for k in members {
            if st.live(&k, now).is_some() {
                st.remove(&k);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn tag_members(&self, tag_key: &str) -> Result<Vec<String>, StoreError> {
        let st = self.lock();
        Ok(st
            .tags
            .get(tag_key)
            .map(|(members, _)| members.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut st = self.lock();
        let doomed: Vec<Arc<str>> = st
            .entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for k in &doomed {
            st.remove(k);
        }
        Ok(doomed.len() as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn is_bounded_and_evicts_the_soonest_to_expire() {
        let clock = ManualClock::new();
        let store = MemoryStore::with_clock(3, Arc::new(clock.clone()));
        store
            .set("long", b"1", Duration::from_secs(100), &[])
            .await
            .unwrap();
        store
            .set("short", b"2", Duration::from_secs(1), &[])
            .await
            .unwrap();
        store
            .set("mid", b"3", Duration::from_secs(50), &[])
            .await
            .unwrap();
        store
            .set("new", b"4", Duration::from_secs(60), &[])
            .await
            .unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(store.get("short").await.unwrap(), None);
        for k in ["long", "mid", "new"] {
            assert!(store.get(k).await.unwrap().is_some(), "{k}");
        }
        for i in 0..100 {
            store
                .set(&format!("k{i}"), b"x", Duration::from_secs(10), &[])
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 3);
    }

    #[tokio::test]
    async fn a_shared_read_hands_out_the_stores_own_allocation_until_the_next_write() {
        let store = MemoryStore::new(10);
        let ttl = Duration::from_secs(60);
        store.set("k", b"one", ttl, &[]).await.unwrap();
        let a = store.get_shared("k").await.unwrap().unwrap();
        let b = store.get_shared("k").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one copy, however many readers");
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"one"[..]));
        store.set("k", b"two", ttl, &[]).await.unwrap();
        let c = store.get_shared("k").await.unwrap().unwrap();
        assert_eq!(
            (&a[..], &c[..]),
            (&b"one"[..], &b"two"[..]),
            "a write never changes bytes handed out"
        );
        assert_eq!(store.get_shared("absent").await.unwrap(), None);
    }

    #[tokio::test]
    async fn expires_on_its_clock() {
        let clock = ManualClock::new();
        let store = MemoryStore::with_clock(10, Arc::new(clock.clone()));
        store
            .set("k", b"v", Duration::from_secs(5), &[])
            .await
            .unwrap();
        clock.advance(Duration::from_millis(4_999));
        assert!(store.get("k").await.unwrap().is_some());
        clock.advance(Duration::from_millis(1));
        assert_eq!(store.get("k").await.unwrap(), None);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn locks_tags_and_compare_and_set() {
        let store = MemoryStore::new(10);
        assert!(store
            .try_lock("l", "a", Duration::from_secs(5))
            .await
            .unwrap());
        assert!(!store
            .try_lock("l", "b", Duration::from_secs(5))
            .await
            .unwrap());
        store.unlock("l", "b").await.unwrap();
        assert!(!store
            .try_lock("l", "b", Duration::from_secs(5))
            .await
            .unwrap());
        store.unlock("l", "a").await.unwrap();
        assert!(store
            .try_lock("l", "b", Duration::from_secs(5))
            .await
            .unwrap());

        let ttl = Duration::from_secs(5);
        store
            .set("x", b"AAvalue", ttl, &["t".into()])
            .await
            .unwrap();
        assert!(!store
            .replace_if("x", b"BB", b"BBnew", ttl, &[])
            .await
            .unwrap());
        assert!(store
            .replace_if("x", b"AA", b"BBnew", ttl, &[])
            .await
            .unwrap());
        assert!(!store
            .replace_if("absent", b"AA", b"v", ttl, &[])
            .await
            .unwrap());
        assert_eq!(store.delete_tagged("t").await.unwrap(), 1);
        assert_eq!(store.get("x").await.unwrap(), None);
    }
}
