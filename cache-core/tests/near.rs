//! The near cache in front of a real Redis: hits without round trips, coherence between two
//! caches (two processes) through pub/sub, and distrust when the subscription is lost.

use action_cache_core::{Cache, CacheKey, Codec, ManualClock, Policy};
use action_cache_testing::{eventually, RedisServer};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

fn key(id: u32, tag: &str) -> CacheKey {
    let mut b = CacheKey::builder("near");
    b.arg("id", &id).unwrap().tag(tag);
    b.build()
}

fn policy() -> Policy {
    Policy::builder()
        .fresh(Duration::from_secs(60))
        .stale(Duration::from_secs(120))
        .jitter(0.0)
        .build()
        .unwrap()
}

fn near_cache(server: &RedisServer) -> Cache {
    Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .near_cache(1_000)
        .build()
        .unwrap()
}

async fn get(cache: &Cache, id: u32, loaded: &str) -> String {
    get_key(cache, &key(id, "t"), loaded).await
}

async fn get_key(cache: &Cache, key: &CacheKey, loaded: &str) -> String {
    let loaded = loaded.to_string();
    cache
        .get_or_load(
            key,
            &policy(),
            move || async move { Ok::<_, String>(loaded) },
        )
        .await
        .unwrap()
}

/// Reads until the near cache answers (its subscription is up and it holds the key).
async fn until_near_hit(cache: &Cache, id: u32) {
    until_near_hit_of(cache, &key(id, "t")).await;
}

async fn until_near_hit_of(cache: &Cache, key: &CacheKey) {
    let end = tokio::time::Instant::now() + DEADLINE;
    let before = cache.stats().near_hits;
    while cache.stats().near_hits == before {
        assert!(
            tokio::time::Instant::now() < end,
            "no near hit: {:?}",
            cache.stats()
        );
        get_key(cache, key, "unused").await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn redis_gets(server: &RedisServer) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_hits_make_no_redis_round_trip() {
    let server = RedisServer::start();
    let cache = near_cache(&server);
    assert_eq!(get(&cache, 1, "v1").await, "v1");
    until_near_hit(&cache, 1).await;
    let gets = redis_gets(&server);
    for _ in 0..100 {
        assert_eq!(get(&cache, 1, "unused").await, "v1");
    }
    assert_eq!(redis_gets(&server), gets, "100 near hits, no GET");
    assert!(cache.stats().near_hits >= 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_or_put_on_one_process_reaches_the_others_near_cache() {
    let server = RedisServer::start();
    let (a, b) = (near_cache(&server), near_cache(&server));
    assert_eq!(get(&a, 1, "v1").await, "v1");
    until_near_hit(&a, 1).await;
    until_near_hit(&b, 1).await;

    // Invalidate on A; B's near copy must go, so B's next read loads afresh.
    a.invalidate(&key(1, "t")).await.unwrap();
    let started = Instant::now();
    let end = tokio::time::Instant::now() + DEADLINE;
    while get(&b, 1, "v2").await != "v2" {
        assert!(
            tokio::time::Instant::now() < end,
            "B kept serving the invalidated value"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    eprintln!(
        "invalidation propagated to the other near cache in {:?}",
        started.elapsed()
    );

    // A put on B replaces A's near copy.
    until_near_hit(&a, 1).await;
    b.put(&key(1, "t"), &policy(), "put").await.unwrap();
    let end = tokio::time::Instant::now() + DEADLINE;
    while get(&a, 1, "unused").await != "put" {
        assert!(
            tokio::time::Instant::now() < end,
            "A kept serving the replaced value"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }

    // A tag purge on A empties B's near entries with that tag.
    until_near_hit(&b, 1).await;
    a.invalidate_tag("t").await.unwrap();
    let end = tokio::time::Instant::now() + DEADLINE;
    while get(&b, 1, "after tag purge").await != "after tag purge" {
        assert!(
            tokio::time::Instant::now() < end,
            "B kept serving a tag-purged value"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// The reader's key need not name every tag: another version of the code, or another function
/// reading the same entry, may have written it with more. The entry records its tags, and a
/// purge of any of them drops the near copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_of_a_tag_the_entry_was_written_with_drops_a_near_copy_read_without_it() {
    let server = RedisServer::start();
    for (id, codec) in [(1u32, Codec::Json), (2, Codec::MessagePack)] {
        let with = |codec| {
            Cache::builder()
                .redis_url(server.url())
                .op_timeout(Duration::from_secs(2))
                .near_cache(1_000)
                .codec(codec)
                .build()
                .unwrap()
        };
        let (writer, reader) = (with(codec), with(codec));
        let tagged = key(id, "added-later");
        let mut b = CacheKey::builder("near");
        b.arg("id", &id).unwrap();
        let untagged = b.build();
        assert_eq!(writer.full_key(&tagged), reader.full_key(&untagged));

        assert_eq!(get_key(&writer, &tagged, "v1").await, "v1");
        assert_eq!(get_key(&reader, &untagged, "unused").await, "v1");
        until_near_hit_of(&reader, &untagged).await;

        writer.invalidate_tag("added-later").await.unwrap();
        let end = tokio::time::Instant::now() + DEADLINE;
        while get_key(&reader, &untagged, "v2").await != "v2" {
            assert!(
                tokio::time::Instant::now() < end,
                "{codec:?}: the reader kept serving a value purged by a tag its key does not name"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_clears_the_near_cache_instead_of_trusting_it() {
    let server = RedisServer::start();
    let b = near_cache(&server);
    // A writer without a near cache announces nothing: only a cleared near cache can see it.
    let silent = Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert_eq!(get(&b, 1, "old").await, "old");
    until_near_hit(&b, 1).await;

    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    eventually("the lost subscription was noticed", DEADLINE, || {
        b.stats().near_resets == 1
    })
    .await;
    silent.put(&key(1, "t"), &policy(), "new").await.unwrap();
    assert_eq!(
        get(&b, 1, "unused").await,
        "new",
        "the near copy was dropped, not trusted"
    );
    until_near_hit(&b, 1).await; // and it works again once resubscribed
    assert_eq!(get(&b, 1, "unused").await, "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_cache_never_holds_an_entry_past_its_fresh_window() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .near_cache(100)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    assert_eq!(get(&cache, 1, "v1").await, "v1");
    until_near_hit(&cache, 1).await;
    let hits = cache.stats().near_hits;
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        get(&cache, 1, "v2").await,
        "v1",
        "stale: served from Redis, refreshed in the background"
    );
    assert_eq!(
        cache.stats().near_hits,
        hits,
        "the near cache no longer held it"
    );
    assert_eq!(cache.stats().stale_hits, 1);
}

#[test]
fn a_near_cache_needs_redis() {
    assert!(Cache::builder().near_cache(10).build().is_err());
}
