//! The near cache's byte bound in front of a real Redis: every hit is its key's own value while
//! the bound evicts, and an entry heavier than the whole bound is returned but never kept (each
//! read of it goes to Redis).

use action_cache_core::{Cache, CacheKey, Policy};
use action_cache_testing::RedisServer;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(10);

fn key(i: usize) -> CacheKey {
    let mut b = CacheKey::builder("near_bounds");
    b.arg("i", &i).unwrap();
    b.build()
}

fn policy() -> Policy {
    Policy::builder()
        .fresh(Duration::from_secs(60))
        .jitter(0.0)
        .build()
        .unwrap()
}

fn value_of(i: usize) -> String {
    format!("{i}:{}", "v".repeat(200 + i % 300))
}

async fn get(cache: &Cache, i: usize, loaded: String) -> String {
    cache
        .get_or_load(&key(i), &policy(), move || async move {
            Ok::<_, String>(loaded)
        })
        .await
        .unwrap()
}

fn bounded(server: &RedisServer, max_bytes: usize) -> Cache {
    Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .near_cache_max_bytes(max_bytes)
        .build()
        .unwrap()
}

/// Reads key 0 until the near cache answers (its subscription is up).
async fn until_trusted(cache: &Cache) {
    let end = tokio::time::Instant::now() + DEADLINE;
    let before = cache.stats().near_hits;
    while cache.stats().near_hits == before {
        assert!(tokio::time::Instant::now() < end, "no near hit");
        get(cache, 0, value_of(0)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_byte_bound_every_near_hit_is_its_own_value() {
    let server = RedisServer::start();
    let cache = bounded(&server, 100_000);
    until_trusted(&cache).await;
    for round in 0..3 {
        for i in 0..1_000 {
            assert_eq!(
                get(&cache, i, value_of(i)).await,
                value_of(i),
                "round {round}"
            );
        }
    }
    let stats = cache.stats();
    assert!(stats.near_hits > 0, "{stats:?}");
    // 1,000 entries of 1–2 KB of weight do not fit in 100 KB: some reads went to Redis.
    assert!(
        stats.fresh_hits - stats.near_hits > 1_000,
        "the bound evicted: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_heavier_than_the_bound_is_returned_and_read_from_redis_each_time() {
    let server = RedisServer::start();
    let cache = bounded(&server, 8_192);
    until_trusted(&cache).await;
    let big = "b".repeat(10_000);
    assert_eq!(get(&cache, 1, big.clone()).await, big);
    let near_hits = cache.stats().near_hits;
    for _ in 0..20 {
        assert_eq!(get(&cache, 1, "unused".into()).await, big);
    }
    let stats = cache.stats();
    assert_eq!(stats.near_hits, near_hits, "never answered near: {stats:?}");
    assert!(stats.fresh_hits >= 20, "{stats:?}");
    // A small entry is still kept.
    until_trusted(&cache).await;
}
