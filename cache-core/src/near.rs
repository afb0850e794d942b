//! The near cache: an optional, bounded in-process tier in front of the store, kept coherent
//! across processes through the store's pub/sub.
//!
//! Every write and invalidation in any process publishes an event on `{prefix}:__near`; each
//! process's subscriber drops what the event names from its tier. An entry is held at most until
//! its fresh window ends, so the tier never serves a stale or expired value. While the
//! subscription is down (not yet made, or lost) the tier is emptied and bypassed rather than
//! trusted, and a read that raced an event is not kept.

use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::entry::Meta;
use crate::stats::Counters;
use crate::store::{MemoryStore, Store};

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

#[derive(Debug)]
pub(crate) struct Near {
    l1: MemoryStore,
    /// Identifies this cache's own events, which its subscriber skips.
    origin: String,
    channel: String,
    trusted: AtomicBool,
    /// Bumped by every event applied and every reset; a fill whose read began in an older epoch
    /// is dropped, since an event may have overtaken it.
    epoch: AtomicU64,
    started: AtomicBool,
}

impl Near {
    pub(crate) fn new(
        capacity: usize,
        clock: Arc<dyn Clock>,
        channel: String,
        origin: u64,
    ) -> Near {
        Near {
            l1: MemoryStore::with_clock(capacity, clock),
            origin: format!("{origin:016x}"),
            channel,
            trusted: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            started: AtomicBool::new(false),
        }
    }

    /// The pub/sub channel every process of this prefix announces on.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// True the first time it is called: the caller starts the subscriber.
    pub(crate) fn start(&self) -> bool {
        !self.started.load(Ordering::Relaxed) && !self.started.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The bytes held for `full`, while the tier is trusted.
    pub(crate) async fn get(&self, full: &str) -> Option<Vec<u8>> {
        if !self.trusted.load(Ordering::Acquire) {
            return None;
        }
        self.l1.get(full).await.ok().flatten()
    }

    /// Keeps an entry until its fresh window ends, unless an event arrived since `epoch`.
    pub(crate) async fn fill(
        &self,
        full: &str,
        bytes: &[u8],
        meta: &Meta,
        now: u64,
        tag_keys: &[String],
        epoch: u64,
    ) {
        let left = (meta.at + meta.fresh).saturating_sub(now);
        if left == 0 || !self.trusted.load(Ordering::Acquire) || self.epoch() != epoch {
            return;
        }
        let _ = self
            .l1
            .set(full, bytes, Duration::from_millis(left), tag_keys)
            .await;
    }

    /// Drops what `event` names from this process's tier.
    pub(crate) async fn forget(&self, event: Event<'_>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let _ = match event {
            Event::Key(k) => self.l1.delete(k).await.map(drop),
            Event::Tag(t) => self.l1.delete_tagged(t).await.map(drop),
            Event::Prefix(p) => self.l1.delete_prefix(p).await.map(drop),
        };
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
    async fn apply(&self, message: &[u8]) {
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
            "k" => self.forget(Event::Key(payload)).await,
            "t" => self.forget(Event::Tag(payload)).await,
            "p" => self.forget(Event::Prefix(payload)).await,
            _ => {}
        }
    }

    /// Empties and stops trusting the tier; returns whether it was trusted.
    async fn reset(&self) -> bool {
        let was = self.trusted.swap(false, Ordering::AcqRel);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let _ = self.l1.delete_prefix("").await;
        was
    }

    fn trust(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.trusted.store(true, Ordering::Release);
    }
}

/// Keeps the subscription up for the life of the cache (the task is aborted with it).
pub(crate) async fn subscriber(near: Arc<Near>, store: Arc<dyn Store>, counters: Arc<Counters>) {
    let mut pause = Duration::from_millis(50);
    loop {
        match store.subscribe(&near.channel).await {
            Ok(Some(mut events)) => {
                near.trust();
                pause = Duration::from_millis(50);
                tracing::debug!(channel = %near.channel, "near cache subscribed");
                while let Some(message) = events.next().await {
                    near.apply(&message).await;
                }
                if near.reset().await {
                    Counters::incr(&counters.near_resets);
                    tracing::warn!(channel = %near.channel, "near-cache subscription lost; near cache cleared until it is back");
                }
            }
            Ok(None) => return,
            Err(e) => {
                near.reset().await;
                tracing::debug!(error = %e, "near-cache subscription failed; retrying");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
