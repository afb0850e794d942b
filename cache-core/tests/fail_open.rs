//! Redis down, restarted, or holding garbage: callers keep getting correct values (fail-open),
//! and the cache resumes on its own.

use action_cache_core::{Cache, CacheKey, Policy};
use action_cache_testing::{eventually, RedisServer};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(15);

fn key(id: u32) -> CacheKey {
    let mut b = CacheKey::builder("failopen");
    b.arg("id", &id).unwrap();
    b.build()
}

fn policy() -> Policy {
    Policy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap()
}

async fn get(cache: &Cache, id: u32) -> String {
    cache
        .get_or_load(&key(id), &policy(), move || async move {
            Ok::<_, String>(format!("value-{id}"))
        })
        .await
        .expect("fail-open: never an error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_then_restarted_keeps_values_correct_and_resumes() {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .circuit_breaker(3, Duration::from_millis(200))
        .build()
        .unwrap();
    for id in 0..20 {
        assert_eq!(get(&cache, id).await, format!("value-{id}"));
    }
    assert_eq!(get(&cache, 0).await, "value-0");
    assert_eq!(cache.stats().fresh_hits, 1);

    server.stop();
    for round in 0..3 {
        for id in 0..20 {
            assert_eq!(
                get(&cache, id).await,
                format!("value-{id}"),
                "round {round}"
            );
        }
    }
    let down = cache.stats();
    assert!(down.store_errors >= 3, "{down:?}");
    assert!(
        down.store_skipped > 0,
        "the breaker skipped the dead store: {down:?}"
    );
    assert!(cache.ping().await.is_err());

    server.restart();
    // After the cool-down the breaker probes, the connection manager reconnects, and values are
    // cached again: poll until a call is answered from Redis.
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let hits = cache.stats().fresh_hits;
        assert_eq!(get(&cache, 7).await, "value-7");
        if cache.stats().fresh_hits > hits {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "cache never resumed: {:?}\n{}",
            cache.stats(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.ping().await.is_ok());
}

#[tokio::test]
async fn a_cache_built_while_redis_is_down_works_and_connects_later() {
    let port = action_cache_testing::free_port();
    let cache = Cache::builder()
        .redis_url(format!("redis://127.0.0.1:{port}/"))
        .circuit_breaker(2, Duration::from_millis(100))
        .build()
        .unwrap();
    assert_eq!(get(&cache, 1).await, "value-1");
    assert_eq!(get(&cache, 1).await, "value-1");
    assert!(cache.stats().store_errors > 0);
}

#[tokio::test]
async fn corrupt_and_foreign_entries_are_misses_that_get_overwritten() {
    let server = RedisServer::start();
    let cache = Cache::builder().redis_url(server.url()).build().unwrap();
    let full = |id| cache.full_key(&key(id));
    server.cli(&["SET", &full(1), "random bytes \u{1}\u{2}"]);
    server.cli(&[
        "SET",
        &full(2),
        "AC1:0000000000000001\n{\"at\":1,\"f\":1,\"s\":1,\"d\":0,\"v\":{\"other\":\"shape\"}}",
    ]);
    server.cli(&["SET", &full(3), "AC1:0000000000000001\n{\"at\":1,\"f\""]);
    server.cli(&["RPUSH", &full(4), "a", "list"]);
    for id in 1..=4 {
        assert_eq!(get(&cache, id).await, format!("value-{id}"));
    }
    assert_eq!(cache.stats().corrupt_entries, 4);
    assert_eq!(cache.stats().misses, 4);
    for id in 1..=4 {
        assert_eq!(get(&cache, id).await, format!("value-{id}"));
    }
    assert_eq!(
        cache.stats().fresh_hits,
        4,
        "each corrupt entry was overwritten with a good one"
    );
    assert_eq!(server.cli(&["TYPE", &full(4)]), "string");
}

#[tokio::test]
async fn a_slow_redis_costs_at_most_the_operation_timeout() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    assert_eq!(get(&cache, 1).await, "value-1");
    // Pause every client command for 2 s: reads and writes must time out, not wait.
    server.cli(&["CLIENT", "PAUSE", "2000", "ALL"]);
    let started = std::time::Instant::now();
    assert_eq!(get(&cache, 2).await, "value-2");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_500),
        "bounded by the op timeout, took {took:?}"
    );
    assert!(cache.stats().store_errors >= 1);
    eventually("pause over", DEADLINE, || server.cli(&["PING"]) == "PONG").await;
}
