//! The real Redis store with test hooks around its reads and writes, so a test can hold an
//! operation at a chosen moment or answer a read as a racing one would have. Every other call
//! goes to Redis as it is.

use action_cache_core::store::{RedisStore, Store, Subscription};
use action_cache_core::StoreError;
use action_cache_testing::RedisServer;
use async_trait::async_trait;
use std::time::Duration;

/// What a test does around the store's calls; each hook does nothing unless overridden.
#[async_trait]
pub trait Hooks: Send + Sync + std::fmt::Debug + 'static {
    /// Runs before each read; `Some` answers the read instead of Redis.
    async fn before_get(&self, _key: &str) -> Option<Result<Option<Vec<u8>>, StoreError>> {
        None
    }

    /// Runs after each read, once Redis answered and before the cache hears the answer.
    async fn after_get(&self, _key: &str) {}

    /// Runs before each plain write (a put's), before it is sent to Redis.
    async fn before_set(&self, _key: &str) {}

    /// Runs after each guarded write, once Redis applied it and before the cache hears back.
    async fn after_set_guarded(&self, _key: &str) {}

    /// Runs after each compare-and-set write (a refresh's), once Redis answered.
    async fn after_replace_if(&self, _key: &str) {}
}

/// [`RedisStore`] on a test's server, with `hooks` around its calls.
#[derive(Debug)]
pub struct Hooked<H> {
    pub redis: RedisStore,
    pub hooks: H,
}

impl<H: Hooks> Hooked<H> {
    /// The store of `server`, with `hooks`.
    pub fn new(server: &RedisServer, hooks: H) -> Hooked<H> {
        Hooked {
            redis: RedisStore::open(&server.url()).unwrap(),
            hooks,
        }
    }
}

#[async_trait]
impl<H: Hooks> Store for Hooked<H> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(answer) = self.hooks.before_get(key).await {
            return answer;
        }
        let answer = self.redis.get(key).await;
        self.hooks.after_get(key).await;
        answer
    }
    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tags: &[String],
    ) -> Result<(), StoreError> {
        self.hooks.before_set(key).await;
        self.redis.set(key, value, ttl, tags).await
    }
    async fn replace_if(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
        tags: &[String],
    ) -> Result<bool, StoreError> {
        let replaced = self.redis.replace_if(key, expected, value, ttl, tags).await;
        self.hooks.after_replace_if(key).await;
        replaced
    }
    async fn set_guarded(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tags: &[String],
        guards: &[(String, u64)],
    ) -> Result<bool, StoreError> {
        let stored = self.redis.set_guarded(key, value, ttl, tags, guards).await;
        self.hooks.after_set_guarded(key).await;
        stored
    }
    async fn generations(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        self.redis.generations(keys).await
    }
    async fn bump_generations(&self, keys: &[String], ttl: Duration) -> Result<(), StoreError> {
        self.redis.bump_generations(keys, ttl).await
    }
    async fn renew_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.redis.renew_lock(key, token, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.redis.delete(key).await
    }
    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.redis.try_lock(key, token, ttl).await
    }
    async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError> {
        self.redis.unlock(key, token).await
    }
    async fn delete_tagged(&self, tag_key: &str) -> Result<u64, StoreError> {
        self.redis.delete_tagged(tag_key).await
    }
    async fn tag_members(&self, tag_key: &str) -> Result<Vec<String>, StoreError> {
        self.redis.tag_members(tag_key).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        self.redis.delete_prefix(prefix).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
    async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), StoreError> {
        self.redis.publish(channel, message).await
    }
    async fn subscribe(&self, channel: &str) -> Result<Option<Subscription>, StoreError> {
        self.redis.subscribe(channel).await
    }
}
