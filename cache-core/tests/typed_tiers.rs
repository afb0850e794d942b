//! The in-process tiers keep decoded values: a hit there is a lookup and a clone, never a
//! decode (counted in `Stats::decodes`), a reader of another type falls back to decoding the
//! bytes, and a Redis hit is exactly one round trip and one decode.

mod support;

use action_cache_core::{Cache, CacheKey, Policy};
use action_cache_testing::RedisServer;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use support::{on_redis, windows};

const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    id: u32,
    name: String,
    tags: Vec<String>,
}

fn account(id: u32) -> Account {
    Account {
        id,
        name: format!("account {id}"),
        tags: vec!["a".into(), "b".into()],
    }
}

fn key(id: u32) -> CacheKey {
    let mut b = CacheKey::builder("typed");
    b.arg("id", &id).unwrap().tag("t");
    b.build()
}

fn policy() -> Policy {
    windows(60, 120)
}

async fn get(cache: &Cache, id: u32) -> Account {
    cache
        .get_or_load(&key(id), &policy(), move || async move {
            Ok::<_, String>(account(id))
        })
        .await
        .unwrap()
}

/// Reads until the near cache answers (its subscription is up and it holds the key).
async fn until_near_hit(cache: &Cache, id: u32) {
    let end = tokio::time::Instant::now() + DEADLINE;
    let before = cache.stats().near_hits;
    while cache.stats().near_hits == before {
        assert!(tokio::time::Instant::now() < end, "no near hit");
        get(cache, id).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Commands the server executed, `INFO` itself left out.
fn redis_commands(server: &RedisServer) -> u64 {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| {
            l.split_once("calls=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_near_hit_decodes_nothing_and_sends_nothing() {
    let server = RedisServer::start();
    let cache = on_redis(&server).near_cache(100).build().unwrap();
    assert_eq!(get(&cache, 1).await, account(1));
    until_near_hit(&cache, 1).await;
    // The first near hit of a loaded entry may decode once (the load kept its bytes); from then
    // on the tier holds the decoded value.
    get(&cache, 1).await;
    let (before, commands) = (cache.stats(), redis_commands(&server));
    for _ in 0..100 {
        assert_eq!(get(&cache, 1).await, account(1));
    }
    let after = cache.stats();
    assert_eq!(after.near_hits - before.near_hits, 100);
    assert_eq!(
        after.decodes - before.decodes,
        0,
        "typed near hits decode nothing"
    );
    assert_eq!(redis_commands(&server), commands, "and make no round trip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_another_type_decodes_the_bytes_and_leaves_the_typed_value() {
    let server = RedisServer::start();
    let cache = on_redis(&server).near_cache(100).build().unwrap();
    get(&cache, 1).await;
    until_near_hit(&cache, 1).await;
    get(&cache, 1).await;

    let before = cache.stats();
    let other: serde_json::Value = cache
        .get_or_load(&key(1), &policy(), || async {
            Err::<serde_json::Value, _>("a hit never loads".to_string())
        })
        .await
        .unwrap();
    assert_eq!(other, serde_json::to_value(account(1)).unwrap());
    let after = cache.stats();
    assert_eq!(after.near_hits - before.near_hits, 1);
    assert_eq!(
        after.decodes - before.decodes,
        1,
        "another type: one decode"
    );

    assert_eq!(get(&cache, 1).await, account(1));
    assert_eq!(
        cache.stats().decodes,
        after.decodes,
        "the typed value is still held for its own type"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_hit_is_one_round_trip_and_one_decode() {
    let server = RedisServer::start();
    let cache = on_redis(&server).build().unwrap();
    assert_eq!(get(&cache, 1).await, account(1));
    let (before, commands) = (cache.stats(), redis_commands(&server));
    for _ in 0..50 {
        assert_eq!(get(&cache, 1).await, account(1));
    }
    let after = cache.stats();
    assert_eq!(after.fresh_hits - before.fresh_hits, 50);
    assert_eq!(
        redis_commands(&server) - commands,
        50,
        "one command per hit"
    );
    assert_eq!(after.decodes - before.decodes, 50, "one decode per hit");
}

#[tokio::test]
async fn memory_store_hits_clone_the_decoded_value_and_purges_still_reach_it() {
    let cache = Cache::in_memory();
    assert_eq!(get(&cache, 1).await, account(1));
    get(&cache, 1).await;
    let before = cache.stats();
    for _ in 0..100 {
        assert_eq!(get(&cache, 1).await, account(1));
    }
    let after = cache.stats();
    assert_eq!(after.fresh_hits - before.fresh_hits, 100);
    assert_eq!(
        after.decodes - before.decodes,
        0,
        "typed memory hits decode nothing"
    );

    // A put, an invalidation, a tag purge and a prefix purge each replace or drop the typed copy.
    let mut renamed = account(1);
    renamed.name = "renamed".into();
    cache.put(&key(1), &policy(), &renamed).await.unwrap();
    assert_eq!(get(&cache, 1).await, renamed);
    for purge in 0..3 {
        get(&cache, 1).await;
        let misses = cache.stats().misses;
        match purge {
            0 => assert!(cache.invalidate(&key(1)).await.unwrap()),
            1 => assert_eq!(cache.invalidate_tag("t").await.unwrap(), 1),
            _ => assert_eq!(cache.invalidate_prefix("typed").await.unwrap(), 1),
        }
        assert_eq!(get(&cache, 1).await, account(1), "purge {purge}");
        assert_eq!(
            cache.stats().misses,
            misses + 1,
            "purge {purge} reached the tier"
        );
    }
}

#[tokio::test]
async fn without_a_clone_an_in_process_hit_decodes() {
    let cache = Cache::in_memory();
    let (k, p) = (key(2), policy());
    let call = || {
        cache.get_or_load_uncoalesced_with(
            &k,
            &p,
            || async { Ok::<_, String>(account(2)) },
            || Box::pin(async { Ok::<_, String>(account(2)) }),
        )
    };
    assert_eq!(call().await.unwrap(), account(2));
    let before = cache.stats();
    for _ in 0..10 {
        assert_eq!(call().await.unwrap(), account(2));
    }
    assert_eq!(cache.stats().decodes - before.decodes, 10);
}
