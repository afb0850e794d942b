//! Set-up shared by the tests that run a cache on a real Redis: keys, windows and caches, and
//! the Redis store with test hooks ([`hooked`]).

#![allow(dead_code, unreachable_pub)]

pub mod hooked;

use action_cache_core::{Cache, CacheBuilder, CacheKey, ManualClock, Policy};
use action_cache_testing::RedisServer;
use std::sync::Arc;
use std::time::Duration;

/// The key of function `name` with the one argument `id`.
pub fn key(name: &str, id: u32) -> CacheKey {
    let mut b = CacheKey::builder(name);
    b.arg("id", &id).unwrap();
    b.build()
}

/// Fresh for `fresh` seconds, kept until `stale` seconds, without jitter.
pub fn windows(fresh: u64, stale: u64) -> Policy {
    Policy::builder()
        .fresh(Duration::from_secs(fresh))
        .stale(Duration::from_secs(stale))
        .jitter(0.0)
        .build()
        .unwrap()
}

/// A cache on `server` with 2 s per operation, for the test to finish building.
pub fn on_redis(server: &RedisServer) -> CacheBuilder {
    Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
}

/// A cache on `server` whose entry ages follow `clock`.
pub fn cache_on(server: &RedisServer, clock: &ManualClock) -> Cache {
    on_redis(server)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}
