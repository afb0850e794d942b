//! Where entries live: the [`Store`] trait, with a Redis and an in-memory implementation.

use async_trait::async_trait;
use futures_util::Stream;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisTls};

/// Messages received on a pub/sub channel; the stream ends when the subscription is lost.
pub type Subscription = Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>;

/// A key-value store with expiry, compare-and-set, short locks and tag sets.
///
/// Keys arrive fully formed (prefix included). Implementations do not time out on their own; the
/// cache wraps every call in its operation timeout and circuit breaker.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// The bytes under `key`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::WrongType`] when the key holds another type; other errors when the store
    /// cannot be reached.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// [`Store::get`], as a shared allocation. The default wraps `get`'s bytes; a store in this
    /// process that keeps each entry in an `Arc` (the memory store) returns its own, so the
    /// typed tier in front of it holds the same bytes instead of a second copy.
    ///
    /// # Errors
    ///
    /// As [`Store::get`].
    async fn get_shared(&self, key: &str) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        Ok(self.get(key).await?.map(Arc::new))
    }

    /// Stores `value` under `key` for `ttl`, and adds `key` to each tag set in `tag_keys`
    /// (whose own expiry is extended to at least `ttl`).
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
    ) -> Result<(), StoreError>;

    /// Like [`Store::set`], but only if the current value under `key` starts with `expected`;
    /// returns whether it wrote. An absent key does not match.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn replace_if(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
    ) -> Result<bool, StoreError>;

    /// Like [`Store::set`], but only if every purge generation in `guards` still holds the
    /// value it had when the load began (`(generation key, value seen)`; an absent key counts as
    /// 0); returns whether it wrote. This is how a purge or a put wins over a load already in
    /// flight: they bump a generation before they delete or write.
    ///
    /// The first guard shares the entry's cluster hash slot and is checked atomically with the
    /// write. Implementations on one server check every guard atomically; a cluster checks the
    /// others right after the write and deletes that write again if one moved.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn set_guarded(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
        guards: &[(String, u64)],
    ) -> Result<bool, StoreError>;

    /// The current values of purge generation counters (0 for an absent one), in order.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn generations(&self, keys: &[String]) -> Result<Vec<u64>, StoreError>;

    /// Increments each purge generation counter, keeping it for at least `ttl`.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn bump_generations(&self, keys: &[String], ttl: Duration) -> Result<(), StoreError>;

    /// Extends the lock `key` to `ttl` from now if it is still held with `token`; returns whether
    /// it is (a lease renewal while a slow load runs).
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn renew_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Deletes `key`; returns whether it existed.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;

    /// Takes the lock `key` with `token` for `ttl` if nobody holds it (`SET NX PX`).
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Releases the lock `key` if it is still held with `token`.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError>;

    /// Deletes every key in the tag set `tag_key` and the set itself; returns how many keys
    /// were deleted.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn delete_tagged(&self, tag_key: &str) -> Result<u64, StoreError>;

    /// The keys in the tag set `tag_key` (some may have expired since they were added).
    /// Used by soft purges by tag; stores that cannot list a set keep this default, an error.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached, or cannot list tag sets.
    async fn tag_members(&self, tag_key: &str) -> Result<Vec<String>, StoreError> {
        let _ = tag_key;
        Err(StoreError::Unsupported { op: "tag_members" })
    }

    /// Deletes every key that starts with `prefix`; returns how many. Redis does it with `SCAN`,
    /// never `KEYS`.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError>;

    /// Checks that the store answers.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Publishes `message` on `channel` to every process (used to keep near caches coherent).
    /// Stores without pub/sub do nothing.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), StoreError> {
        let _ = (channel, message);
        Ok(())
    }

    /// Subscribes to `channel`; `None` when the store has no pub/sub. The stream ends when the
    /// subscription is lost.
    ///
    /// # Errors
    ///
    /// When the subscription cannot be made.
    async fn subscribe(&self, channel: &str) -> Result<Option<Subscription>, StoreError> {
        let _ = channel;
        Ok(None)
    }
}
