//! The near cache under the fault suite, on real servers: Redis restarted, the pub/sub
//! connection killed, clients paused; and the measured bound on how long an acknowledged
//! invalidation takes to reach another process's near cache.

use action_cache_core::{Cache, CacheKey, Policy};
use action_cache_testing::{eventually, RedisServer};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

fn key(id: u32) -> CacheKey {
    let mut b = CacheKey::builder("nearfaults");
    b.arg("id", &id).unwrap().tag("t");
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

fn cache(server: &RedisServer, near: bool) -> Cache {
    let b = Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .circuit_breaker(1_000, Duration::from_millis(100));
    if near { b.near_cache(1_000) } else { b }.build().unwrap()
}

async fn get(cache: &Cache, id: u32, loaded: &str) -> String {
    let loaded = loaded.to_string();
    cache
        .get_or_load(&key(id), &policy(), move || async move {
            Ok::<_, String>(loaded)
        })
        .await
        .expect("fail-open: never an error")
}

async fn until_near_hit(cache: &Cache, id: u32) {
    let end = tokio::time::Instant::now() + DEADLINE;
    let before = cache.stats().near_hits;
    while cache.stats().near_hits == before {
        assert!(
            tokio::time::Instant::now() < end,
            "no near hit: {:?}",
            cache.stats()
        );
        get(cache, id, "unused").await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `cache` until it answers `want` for `id`; returns how long that took.
async fn until_seen(cache: &Cache, id: u32, want: &str) -> Duration {
    let started = Instant::now();
    let end = tokio::time::Instant::now() + DEADLINE;
    while get(cache, id, "loaded").await != want {
        assert!(
            tokio::time::Instant::now() < end,
            "kept serving an invalidated value instead of {want:?}"
        );
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_empties_the_near_cache_instead_of_trusting_it() {
    let mut server = RedisServer::start();
    let b = cache(&server, true);
    assert_eq!(get(&b, 1, "old").await, "old");
    until_near_hit(&b, 1).await;

    server.restart(); // empty, same port
    eventually("the lost subscription was noticed", DEADLINE, || {
        b.stats().near_resets >= 1
    })
    .await;
    // A writer without a near cache announces nothing: only an emptied near cache sees it.
    let silent = cache(&server, false);
    silent.put(&key(1), &policy(), "new").await.unwrap();
    until_seen(&b, 1, "new").await;
    until_near_hit(&b, 1).await; // and the near cache works again
    assert_eq!(get(&b, 1, "unused").await, "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_client_pause_still_reaches_the_other_near_cache() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server, true), cache(&server, true));
    assert_eq!(get(&a, 1, "v1").await, "v1");
    until_near_hit(&a, 1).await;
    until_near_hit(&b, 1).await;

    assert_eq!(server.cli(&["CLIENT", "PAUSE", "300", "WRITE"]), "OK");
    // The purge waits out the pause (within its operation timeout), then is announced.
    a.invalidate(&key(1)).await.unwrap();
    let took = until_seen(&b, 1, "loaded").await;
    eprintln!("invalidation after CLIENT PAUSE reached the other near cache in {took:?}");
    // `until_seen` loads "loaded": what B answers once its copy is gone.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pubsub_connection_under_writes_never_leaves_a_stale_near_copy() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server, true), cache(&server, true));
    for round in 0..20u32 {
        let value = format!("v{round}");
        a.put(&key(1), &policy(), &value).await.unwrap();
        if round % 5 == 2 {
            server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        }
        until_seen(&b, 1, &value).await;
    }
    assert!(b.stats().near_resets >= 1, "{:?}", b.stats());
}

/// The bound README documents: from an acknowledged put or invalidation in one process to the
/// other process's near cache no longer answering the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_the_other_near_cache_within_the_measured_bound() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server, true), cache(&server, true));
    let mut took = Vec::new();
    for round in 0..50u32 {
        let value = format!("v{round}");
        get(&b, 1, "first").await;
        until_near_hit(&b, 1).await;
        a.put(&key(1), &policy(), &value).await.unwrap();
        took.push(until_seen(&b, 1, &value).await);
    }
    took.sort();
    eprintln!(
        "near-cache propagation over {} puts: p50 {:?}, p99 {:?}, max {:?}",
        took.len(),
        took[took.len() / 2],
        took[took.len() * 99 / 100],
        took[took.len() - 1]
    );
    assert!(b.stats().near_hits >= 50);
}
