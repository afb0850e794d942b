//! The in-process tiers: the near cache, an optional, bounded tier in front of Redis kept
//! coherent across processes through the store's pub/sub, and the same tier in front of the
//! memory store (which only this cache writes, so it needs no subscription).
//!
//! Each holds, per entry, its bytes and, when the caller that filled it could clone the value,
//! the decoded value (type-erased, checked against the reader's type), so that a hit is a
//! lookup and a clone, never a decode; a reader of another type decodes the bytes. Entries live
//! in a `moka` cache bounded by count, by weight in bytes ([`Bounds`]), or both, each expiring at
//! its fresh window.
//!
//! Every write and invalidation in any process publishes an event on `{prefix}:__near`; each
//! process's subscriber drops what the event names from its tier. An entry is held at most until
//! its fresh window ends, so the tier never serves a stale or expired value. While the
//! subscription is down (not yet made, or lost) the tier is emptied and bypassed rather than
//! trusted, and a read that raced an event is not kept.

use futures_util::StreamExt;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::entry::Meta;
use crate::stats::Counters;
use crate::store::Store;

/// What an event names.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<'a> {
    /// One entry (written or deleted).
    Key(&'a str),
    /// Every entry in a tag set.
    Tag(&'a str),
    /// Every entry whose key starts with this.
    Prefix(&'a str),
}

/// A decoded value, type-erased; a reader checks it against the type it expects.
pub(crate) type Typed = Arc<dyn Any + Send + Sync>;

/// One entry held near: its bytes (the write token, and the fallback for a reader of another
/// type), its metadata, and, when the filler could clone it, its decoded value.
pub(crate) struct Held {
    pub(crate) bytes: Arc<Vec<u8>>,
    pub(crate) meta: Meta,
    /// The decoded value (a `T`), so that a hit of the same type is a clone, never a decode.
    pub(crate) value: Option<Typed>,
    /// The clock time (ms) its fresh window ends: it is never answered from here after that.
    until: u64,
    /// How long the tier keeps it (the fresh window left when it was filled).
    keep: Duration,
    /// The tag sets it belongs to, for tag purges.
    tag_keys: Box<[String]>,
    /// The counters of its key's name, so that a hit counts without looking the name up.
    pub(crate) named: Option<Arc<Counters>>,
    /// The tier's epoch it was kept in: a tag or prefix purge applied in a later epoch that
    /// names it refuses it ([`Purged`]).
    born: u64,
}

/// Keeps each entry no longer than the fresh window it had left when it was filled.
struct FreshWindow;

impl moka::Expiry<String, Arc<Held>> for FreshWindow {
    fn expire_after_create(&self, _: &String, held: &Arc<Held>, _: Instant) -> Option<Duration> {
        Some(held.keep)
    }

    fn expire_after_update(
        &self,
        _: &String,
        held: &Arc<Held>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(held.keep)
    }
}

/// What bounds an in-process tier: entries, approximate bytes ([`weight`]), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// At most this many entries (at least 1); `None`: no count bound.
    pub(crate) entries: Option<u64>,
    /// At most this total [`weight`]; `None`: no byte bound.
    pub(crate) bytes: Option<u64>,
}

impl Bounds {
    /// A count bound only (what the tiers had before byte bounds).
    pub(crate) fn entries(n: usize) -> Bounds {
        Bounds {
            entries: Some(n.max(1) as u64),
            bytes: None,
        }
    }
}

/// What one entry costs a tier besides its key, bytes and decoded value: moka's entry, its
/// access-order, write-order and timer nodes, the [`Held`] and its `Arc`s, the allocations'
/// headers. `examples/memory_report` measured 830 B (a small value) to 1,600 B (a value of 50
/// allocations, whose headers the encoded size does not stand for) beyond what is held.
pub(crate) const ENTRY_OVERHEAD: u64 = 1_024;

/// An entry's weight against a byte bound: its key, its bytes, the same again for the decoded
/// value when one is held (its heap size is not known; the encoded size stands in for it), its
/// tag set names and [`ENTRY_OVERHEAD`].
pub(crate) fn weight(full: &str, held: &Held) -> u64 {
    let bytes = held.bytes.len() as u64;
    let decoded = if held.value.is_some() { bytes } else { 0 };
    let tags: usize = held.tag_keys.iter().map(String::len).sum();
    full.len() as u64 + bytes + decoded + tags as u64 + ENTRY_OVERHEAD
}

/// The bytes in an allocation of their own size: an encoded entry grows its buffer by
/// doubling (up to twice its size), and the tier may keep it for its whole fresh window.
fn compact(bytes: Arc<Vec<u8>>) -> Arc<Vec<u8>> {
    if bytes.capacity() == bytes.len() {
        return bytes;
    }
    match Arc::try_unwrap(bytes) {
        Ok(mut own) => {
            own.shrink_to_fit();
            Arc::new(own)
        }
        Err(shared) => Arc::new(shared.as_slice().to_vec()),
    }
}

/// The tag and prefix purges applied to a tier, each with the epoch it moved the tier to, so
/// that a lookup refuses an entry kept before a purge that names it.
///
/// moka's `invalidate_entries_if` alone does not promise that: its scan walks the entries whose
/// writes its housekeeping has applied, skips those with a write still queued, and drops the
/// predicate once the walk ends. An entry kept (or replaced) just before a purge, its write still
/// queued, outlived the purge and was served. The tier still registers the predicate, to free
/// the memory; these records decide what is answered.
///
/// A record is needed only while an entry kept before it may still be held: at most the longest
/// time the tier keeps an entry. Older ones are dropped as purges arrive; past
/// [`MAX_PURGE_RECORDS`] the tier is emptied instead (its `floor` moves to the current epoch).
#[derive(Default)]
struct Purged {
    tags: HashMap<String, (u64, Instant)>,
    prefixes: Vec<(String, u64, Instant)>,
}

/// At most this many tag and prefix purges are remembered; more, within the longest time an
/// entry is kept, empty the tier.
const MAX_PURGE_RECORDS: usize = 4_096;

impl Purged {
    fn len(&self) -> usize {
        self.tags.len() + self.prefixes.len()
    }

    /// Whether a purge applied after epoch `born` names the entry `full` of `tag_keys`.
    fn names(&self, full: &str, tag_keys: &[String], born: u64) -> bool {
        tag_keys
            .iter()
            .any(|t| self.tags.get(t).is_some_and(|(at, _)| *at > born))
            || self
                .prefixes
                .iter()
                .any(|(p, at, _)| *at > born && full.starts_with(p.as_str()))
    }

    /// Drops the records older than `keep`: no entry kept before them is still held.
    fn prune(&mut self, keep: Duration) {
        self.tags.retain(|_, (_, when)| when.elapsed() <= keep);
        self.prefixes.retain(|(_, _, when)| when.elapsed() <= keep);
    }
}

pub(crate) struct Near {
    /// Hashed with foldhash, seeded per tier, rather than moka's default SipHash: every hit
    /// hashes its full key (60-100 bytes), and SipHash was about 400 instructions of it, a
    /// tenth of a hit.
    l1: moka::sync::Cache<String, Arc<Held>, foldhash::fast::RandomState>,
    /// Whether the gate's [`Purged`] holds a tag record, or a prefix record (a lookup skips the
    /// gate when neither could name the entry).
    any_tags: AtomicBool,
    any_prefixes: AtomicBool,
    /// Entries kept in an epoch below this are refused: the tier was emptied since.
    floor: AtomicU64,
    /// The longest time (ms) the tier was asked to keep an entry, for pruning [`Purged`].
    longest_keep: AtomicU64,
    /// The byte bound: an entry heavier than all of it is not kept.
    max_bytes: Option<u64>,
    /// Identifies this cache's own events, which its subscriber skips.
    origin: String,
    /// `None` for the tier in front of the in-process store, which every write and purge goes
    /// through: it needs no subscription and is always trusted.
    channel: Option<String>,
    trusted: AtomicBool,
    /// Bumped by every event applied and every reset; a fill whose read began in an older epoch
    /// is dropped, since an event may have overtaken it.
    epoch: AtomicU64,
    /// Fills check the epoch and insert under its read side, events move the epoch, record
    /// tag and prefix purges and drop entries under its write side: no event lands between a
    /// fill's check and its insert. (Checking again after the insert, as the tier once did,
    /// left the overtaken value visible until the second check, which a descheduled thread
    /// could make milliseconds later, after the event's caller had returned.) A hit takes its
    /// read side only to check an entry against the purges it holds.
    gate: RwLock<Purged>,
    started: AtomicBool,
    /// Runs inside a fill's gate, between its epoch check and its insert: where a test holds a
    /// fill to show that no event lands there.
    #[cfg(test)]
    before_insert: std::sync::Mutex<Option<Box<dyn Fn() + Send>>>,
}

impl std::fmt::Debug for Near {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Near")
            .field("entries", &self.l1.entry_count())
            .field("channel", &self.channel)
            .field("trusted", &self.trusted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Near {
    /// A tier in front of Redis, kept coherent through the pub/sub `channel`.
    pub(crate) fn new(bounds: Bounds, channel: String, origin: u64) -> Near {
        Near::build(bounds, Some(channel), origin, false)
    }

    /// The typed tier in front of the cache's own in-process store: always trusted, no
    /// subscription (nothing but this cache writes or purges that store).
    pub(crate) fn local(bounds: Bounds) -> Near {
        Near::build(bounds, None, 0, true)
    }

    fn build(bounds: Bounds, channel: Option<String>, origin: u64, trusted: bool) -> Near {
        let builder = moka::sync::Cache::builder()
            .expire_after(FreshWindow)
            .support_invalidation_closures();
        let l1 = match bounds {
            Bounds {
                entries,
                bytes: Some(max),
            } => {
                // moka has one bound. With a count bound too, each entry weighs at least
                // `max / entries`, so that at most `entries` fit: neither bound is passed.
                let floor = entries.map_or(0, |n| max.div_ceil(n.max(1)));
                builder
                    .max_capacity(max)
                    .weigher(move |full: &String, held: &Arc<Held>| {
                        u32::try_from(weight(full, held).max(floor)).unwrap_or(u32::MAX)
                    })
                    .build_with_hasher(foldhash::fast::RandomState::default())
            }
            Bounds {
                entries,
                bytes: None,
            } => builder
                .max_capacity(entries.unwrap_or(u64::MAX))
                .build_with_hasher(foldhash::fast::RandomState::default()),
        };
        Near {
            l1,
            max_bytes: bounds.bytes,
            origin: format!("{origin:016x}"),
            channel,
            trusted: AtomicBool::new(trusted),
            epoch: AtomicU64::new(0),
            gate: RwLock::new(Purged::default()),
            started: AtomicBool::new(false),
            any_tags: AtomicBool::new(false),
            any_prefixes: AtomicBool::new(false),
            floor: AtomicU64::new(0),
            longest_keep: AtomicU64::new(0),
            #[cfg(test)]
            before_insert: std::sync::Mutex::new(None),
        }
    }

    /// The pub/sub channel every process of this prefix announces on; `None` for the local
    /// tier, which announces nothing.
    pub(crate) fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    /// True the first time it is called on a tier with a channel: the caller starts the
    /// subscriber.
    pub(crate) fn start(&self) -> bool {
        self.channel.is_some()
            && !self.started.load(Ordering::Relaxed)
            && !self.started.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The entry held for `full`, while the tier is trusted and its fresh window lasts at
    /// `now` (the clock time in ms the caller read once for the whole hit).
    pub(crate) fn get_at(&self, full: &str, now: u64) -> Option<Arc<Held>> {
        if !self.trusted.load(Ordering::Acquire) {
            return None;
        }
        let held = self.l1.get(full)?;
        if held.until <= now || self.purged_since(full, &held) {
            return None;
        }
        Some(held)
    }

    /// Whether the tier was emptied, or a tag or prefix purge naming it applied, since `held`
    /// was kept.
    fn purged_since(&self, full: &str, held: &Held) -> bool {
        if held.born < self.floor.load(Ordering::Acquire) {
            return true;
        }
        let tags = !held.tag_keys.is_empty() && self.any_tags.load(Ordering::Acquire);
        if !tags && !self.any_prefixes.load(Ordering::Acquire) {
            return false;
        }
        self.fills().names(full, &held.tag_keys, held.born)
    }

    /// Keeps an entry until its fresh window ends, unless an event arrived since `epoch`.
    /// `value` is its decoded value, when the caller has one to spare.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fill(
        &self,
        full: &str,
        bytes: Arc<Vec<u8>>,
        meta: &Meta,
        value: Option<Typed>,
        now: u64,
        tag_keys: &[String],
        named: Option<Arc<Counters>>,
        epoch: u64,
    ) {
        let until = meta.at.saturating_add(meta.fresh);
        let left = until.saturating_sub(now);
        if left == 0 || !self.trusted.load(Ordering::Acquire) || self.epoch() != epoch {
            return;
        }
        let held = Held {
            bytes,
            meta: *meta,
            value,
            until,
            keep: Duration::from_millis(left),
            tag_keys: tag_keys.into(),
            named,
            born: epoch,
        };
        self.insert(full, held, epoch);
    }

    /// Replaces a held entry of bytes only with the same entry and its decoded value, unless an
    /// event arrived since `epoch`.
    pub(crate) fn upgrade(&self, full: &str, held: &Held, value: Typed, now: u64, epoch: u64) {
        let left = held.until.saturating_sub(now);
        if left == 0 || !self.trusted.load(Ordering::Acquire) || self.epoch() != epoch {
            return;
        }
        let typed = Held {
            bytes: Arc::clone(&held.bytes),
            meta: held.meta,
            value: Some(value),
            until: held.until,
            keep: Duration::from_millis(left),
            tag_keys: held.tag_keys.clone(),
            named: held.named.clone(),
            born: epoch,
        };
        self.insert(full, typed, epoch);
    }

    fn insert(&self, full: &str, held: Held, epoch: u64) {
        let held = Held {
            bytes: compact(held.bytes),
            ..held
        };
        let keep = u64::try_from(held.keep.as_millis()).unwrap_or(u64::MAX);
        self.longest_keep.fetch_max(keep, Ordering::Relaxed);
        let _gate = self.fills();
        if !self.trusted.load(Ordering::Acquire) || self.epoch() != epoch {
            return;
        }
        if self.max_bytes.is_some_and(|max| weight(full, &held) > max) {
            // Heavier than the whole bound: not kept (its caller still has the value), and what
            // was held for the key is older than it, so that goes too.
            self.l1.invalidate(full);
            return;
        }
        #[cfg(test)]
        if let Some(hook) = &*self.before_insert.lock().unwrap_or_else(|p| p.into_inner()) {
            hook();
        }
        self.l1.insert(full.to_string(), Arc::new(held));
    }

    /// The gate's read side: for a fill, and for a lookup to check the purges it holds.
    fn fills(&self) -> std::sync::RwLockReadGuard<'_, Purged> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The gate's write side, for an event to move the epoch, record a purge and drop what it
    /// names.
    fn event(&self) -> std::sync::RwLockWriteGuard<'_, Purged> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Before this process keeps its own write of `full`: drops what the tier holds for it (what
    /// the write replaced, or a copy a read racing the write just filled) and moves the epoch, so
    /// that a fill by a read that began before now, which may have read the replaced entry, is
    /// refused. Returns the epoch to keep the write with, or `None` when an event arrived since
    /// `epoch` (taken before the write): then the write is not kept here either.
    pub(crate) fn own_write(&self, full: &str, epoch: u64) -> Option<u64> {
        let _event = self.event();
        let before = self.epoch.fetch_add(1, Ordering::AcqRel);
        self.l1.invalidate(full);
        (before == epoch).then_some(before.wrapping_add(1))
    }

    /// Drops what `event` names from this process's tier.
    pub(crate) fn forget(&self, event: Event<'_>) {
        let mut purged = self.event();
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        match event {
            // moka drops one key at once.
            Event::Key(k) => self.l1.invalidate(k),
            Event::Tag(t) => {
                if self.room(&mut purged, epoch) {
                    purged.tags.insert(t.to_string(), (epoch, Instant::now()));
                    self.any_tags.store(true, Ordering::Release);
                }
                let t = t.to_string();
                self.invalidate_if(move |_, held| held.tag_keys.contains(&t));
            }
            Event::Prefix(p) => {
                if self.room(&mut purged, epoch) {
                    purged.prefixes.retain(|(q, _, _)| q != p);
                    purged.prefixes.push((p.to_string(), epoch, Instant::now()));
                    self.any_prefixes.store(true, Ordering::Release);
                }
                let p = p.to_string();
                self.invalidate_if(move |k, _| k.starts_with(&p));
            }
        }
    }

    /// Makes room in `purged` for the record of a tag or prefix purge applied in `epoch`, made
    /// before its entries are dropped so that a lookup from then on refuses what it names:
    /// drops the records no held entry predates, and if too many are left, empties the tier
    /// instead (its floor moves to `epoch`) and returns `false`, no record needed.
    fn room(&self, purged: &mut Purged, epoch: u64) -> bool {
        let keep = Duration::from_millis(self.longest_keep.load(Ordering::Relaxed));
        // A second of margin over the longest keep: moka's expiry and our clock differ.
        purged.prune(keep.saturating_add(Duration::from_secs(1)));
        if purged.len() < MAX_PURGE_RECORDS {
            return true;
        }
        // Too many to check each hit against: empty the tier instead.
        self.floor.fetch_max(epoch, Ordering::AcqRel);
        *purged = Purged::default();
        self.l1.invalidate_all();
        false
    }

    fn invalidate_if(&self, doomed: impl Fn(&String, &Arc<Held>) -> bool + Send + Sync + 'static) {
        // `get` never returns an entry a registered predicate matches. Closures are enabled at
        // build time, so this cannot fail; if it ever did, emptying the tier is the safe answer.
        if self.l1.invalidate_entries_if(doomed).is_err() {
            self.floor
                .fetch_max(self.epoch.load(Ordering::Acquire), Ordering::AcqRel);
            self.l1.invalidate_all();
        }
    }

    /// The wire form of an event: `origin|kind|payload`.
    pub(crate) fn message(&self, event: Event<'_>) -> Vec<u8> {
        let (kind, payload) = match event {
            Event::Key(k) => ('k', k),
            Event::Tag(t) => ('t', t),
            Event::Prefix(p) => ('p', p),
        };
        format!("{}|{kind}|{payload}", self.origin).into_bytes()
    }

    /// Applies another process's event; ignores our own and malformed ones.
    fn apply(&self, message: &[u8]) {
        let Ok(text) = std::str::from_utf8(message) else {
            return;
        };
        let mut parts = text.splitn(3, '|');
        let (Some(origin), Some(kind), Some(payload)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if origin == self.origin {
            return;
        }
        match kind {
            "k" => self.forget(Event::Key(payload)),
            "t" => self.forget(Event::Tag(payload)),
            "p" => self.forget(Event::Prefix(payload)),
            _ => {}
        }
    }

    /// Empties and stops trusting the tier; returns whether it was trusted.
    fn reset(&self) -> bool {
        let _event = self.event();
        let was = self.trusted.swap(false, Ordering::AcqRel);
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        // Nothing kept before now is answered again, whatever moka still holds.
        self.floor.fetch_max(epoch, Ordering::AcqRel);
        self.l1.invalidate_all();
        was
    }

    fn trust(&self) {
        let _event = self.event();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.trusted.store(true, Ordering::Release);
    }
}

/// Keeps the subscription up for the life of the cache (the task is aborted with it).
pub(crate) async fn subscriber(near: Arc<Near>, store: Arc<dyn Store>, counters: Arc<Counters>) {
    let mut pause = Duration::from_millis(50);
    loop {
        let Some(channel) = near.channel() else {
            return;
        };
        match store.subscribe(channel).await {
            Ok(Some(mut events)) => {
                near.trust();
                pause = Duration::from_millis(50);
                tracing::debug!(channel = %channel, "near cache subscribed");
                while let Some(message) = events.next().await {
                    near.apply(&message);
                }
                if near.reset() {
                    Counters::incr(&counters.near_resets);
                    tracing::warn!(channel = %channel, "near-cache subscription lost; near cache cleared until it is back");
                }
            }
            Ok(None) => return,
            Err(e) => {
                near.reset();
                tracing::debug!(error = %e, "near-cache subscription failed; retrying");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    /// The clock time the tests fill and read at.
    fn now() -> u64 {
        static NOW: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        *NOW.get_or_init(|| ManualClock::new().now_ms())
    }

    impl Near {
        fn get(&self, full: &str) -> Option<Arc<Held>> {
            self.get_at(full, now())
        }
    }

    fn meta(now: u64) -> Meta {
        Meta {
            at: now,
            fresh: 60_000,
            stale: 120_000,
            delta: 0,
        }
    }

    fn value_of(i: usize, len: usize) -> Arc<Vec<u8>> {
        let mut v = format!("{i}:").into_bytes();
        v.resize(len, b'x');
        Arc::new(v)
    }

    fn fill(near: &Near, full: &str, bytes: Arc<Vec<u8>>, typed: bool) {
        fill_in(near, full, bytes, typed, &[]);
    }

    fn fill_in(near: &Near, full: &str, bytes: Arc<Vec<u8>>, typed: bool, tags: &[String]) {
        let now = now();
        let value = typed.then(|| Arc::new(bytes.len()) as Typed);
        near.fill(
            full,
            bytes,
            &meta(now),
            value,
            now,
            tags,
            None,
            near.epoch(),
        );
    }

    fn local(bounds: Bounds) -> Near {
        Near::local(bounds)
    }

    #[test]
    fn a_byte_bound_holds_the_weight_under_it_and_every_hit_is_its_own() {
        let max = 64 * 1024;
        let near = local(Bounds {
            entries: None,
            bytes: Some(max),
        });
        for i in 0..2_000 {
            fill(&near, &format!("k{i}"), value_of(i, 300), i % 2 == 0);
        }
        near.l1.run_pending_tasks();
        assert!(
            near.l1.weighted_size() <= max,
            "{}",
            near.l1.weighted_size()
        );
        assert!(near.l1.entry_count() > 0);
        // 300 B of bytes (and as much again for a decoded value) plus the key and the overhead.
        assert!(
            near.l1.entry_count() < max / 700 + 1,
            "{}",
            near.l1.entry_count()
        );
        let mut hits = 0;
        for i in 0..2_000 {
            if let Some(held) = near.get(&format!("k{i}")) {
                assert_eq!(held.bytes, value_of(i, 300), "k{i}");
                hits += 1;
            }
        }
        assert!(hits > 0);
    }

    #[test]
    fn an_entry_heavier_than_the_bound_is_not_kept_and_drops_the_older_one() {
        let near = local(Bounds {
            entries: None,
            bytes: Some(4_096),
        });
        fill(&near, "k", value_of(1, 100), true);
        assert!(near.get("k").is_some());
        fill(&near, "k", value_of(2, 4_096), false);
        assert!(
            near.get("k").is_none(),
            "neither the big entry nor the older one"
        );
        near.l1.run_pending_tasks();
        assert_eq!(near.l1.entry_count(), 0);
    }

    #[test]
    fn kept_bytes_are_in_an_allocation_of_their_own_size() {
        let near = local(Bounds::entries(10));
        let mut grown = Vec::with_capacity(4_096);
        grown.extend_from_slice(&value_of(1, 2_500));
        let shared = Arc::new(grown);
        fill(&near, "shared", Arc::clone(&shared), false);
        let mut grown = Vec::with_capacity(4_096);
        grown.extend_from_slice(&value_of(2, 2_500));
        fill(&near, "own", Arc::new(grown), false);
        for (k, i) in [("shared", 1), ("own", 2)] {
            let held = near.get(k).unwrap();
            assert_eq!(held.bytes, value_of(i, 2_500));
            assert_eq!(held.bytes.capacity(), 2_500, "{k}");
        }
    }

    fn fill_tagged(near: &Near, full: &str, tag: &str) {
        fill_in(near, full, value_of(1, 64), false, &[tag.to_string()]);
    }

    /// moka's `invalidate_entries_if` misses an entry whose write is still queued when a
    /// concurrent housekeeping run walks the entries, and then drops its predicate: the entry
    /// outlived its tag purge. Other threads keep housekeeping running while one fills a tagged
    /// entry, purges its tag, and looks it up.
    #[test]
    fn an_entry_kept_before_its_tag_or_prefix_purge_is_never_answered_after_it() {
        let near = Arc::new(local(Bounds::entries(100_000)));
        let stop = Arc::new(AtomicBool::new(false));
        let churn: Vec<_> = (0..3)
            .map(|t| {
                let (near, stop) = (Arc::clone(&near), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        fill(
                            &near,
                            &format!("churn{t}.{}", i % 512),
                            value_of(1, 32),
                            false,
                        );
                        near.get(&format!("churn{t}.{}", (i * 7) % 512));
                        if i.is_multiple_of(64) {
                            near.l1.run_pending_tasks();
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        let mut survived = 0;
        for i in 0..20_000u32 {
            let (full, tag) = (format!("k{i}"), format!("t{i}"));
            fill_tagged(&near, &full, &tag);
            if i.is_multiple_of(2) {
                near.forget(Event::Tag(&tag));
            } else {
                near.forget(Event::Prefix(&full));
            }
            if near.get(&full).is_some() {
                survived += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for t in churn {
            t.join().unwrap();
        }
        assert_eq!(survived, 0, "entries answered after their purge returned");
    }

    /// A fill checks the epoch, then inserts. An event (here a key purge) that arrived between
    /// the two used to return at once, and the fill then kept the value the purge removed. The
    /// fill is held between its check and its insert while the purge is issued: the purge must
    /// wait for it (it is given 200 ms to return, which it did at once before the gate), and
    /// once both are done the key is not held.
    #[test]
    fn a_purge_issued_while_a_fill_inserts_waits_for_it_and_drops_what_it_kept() {
        let near = Arc::new(local(Bounds::entries(100)));
        let (reached, at_insert) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        *near.before_insert.lock().unwrap() = Some(Box::new(move || {
            let _ = reached.send(());
            let _ = released.recv();
        }));
        let filler = {
            let near = Arc::clone(&near);
            std::thread::spawn(move || fill(&near, "k", value_of(1, 32), true))
        };
        at_insert.recv().unwrap();
        let purger = {
            let near = Arc::clone(&near);
            std::thread::spawn(move || near.forget(Event::Key("k")))
        };
        let deadline = Instant::now() + Duration::from_millis(200);
        while !purger.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let returned_early = purger.is_finished();
        release.send(()).unwrap();
        filler.join().unwrap();
        purger.join().unwrap();
        assert!(
            !returned_early,
            "the purge returned while a fill was inserting"
        );
        assert!(
            near.get("k").is_none(),
            "the fill kept what the purge removed"
        );
    }

    #[test]
    fn too_many_purges_to_remember_empty_the_tier() {
        let near = local(Bounds::entries(100_000));
        // Kept for an hour, so no record is old enough to drop.
        fill_tagged(&near, "kept", "other");
        for i in 0..=MAX_PURGE_RECORDS {
            near.forget(Event::Tag(&format!("t{i}")));
        }
        assert!(near.get("kept").is_none(), "the tier was emptied");
        assert_eq!(near.gate.read().unwrap().len(), 0);
        fill_tagged(&near, "later", "other");
        assert!(near.get("later").is_some(), "a later entry is kept");
    }

    #[test]
    fn a_count_bound_with_a_byte_bound_keeps_both() {
        let near = local(Bounds {
            entries: Some(10),
            bytes: Some(1 << 20),
        });
        for i in 0..1_000 {
            fill(&near, &format!("k{i}"), value_of(i, 10), false);
        }
        near.l1.run_pending_tasks();
        assert!(near.l1.entry_count() <= 10, "{}", near.l1.entry_count());
        let near = local(Bounds::entries(10));
        for i in 0..1_000 {
            fill(&near, &format!("k{i}"), value_of(i, 10_000), false);
        }
        near.l1.run_pending_tasks();
        assert!(near.l1.entry_count() <= 10, "{}", near.l1.entry_count());
    }
}
