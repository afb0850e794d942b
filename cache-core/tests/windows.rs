//! Fresh, stale and miss windows, jitter and write-through, against a real Redis with a manual
//! clock.

mod support;

use action_cache_core::{Cache, CacheKey, ManualClock, Policy};
use action_cache_testing::{eventually, RedisServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{cache_on, key, on_redis, windows};

const DEADLINE: Duration = Duration::from_secs(5);

async fn get(cache: &Cache, key: &CacheKey, policy: &Policy, calls: &Arc<AtomicUsize>) -> String {
    let calls = Arc::clone(calls);
    cache
        .get_or_load(key, policy, move || async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, String>(format!("v{n}"))
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_then_stale_with_one_refresh_then_miss() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache_on(&server, &clock);
    let policy = windows(10, 60);
    let k = key("windows", 1);
    let calls = Arc::new(AtomicUsize::new(0));

    assert_eq!(get(&cache, &k, &policy, &calls).await, "v1");
    assert_eq!((cache.stats().misses, calls.load(Ordering::SeqCst)), (1, 1));

    clock.advance(Duration::from_millis(9_999));
    assert_eq!(get(&cache, &k, &policy, &calls).await, "v1");
    assert_eq!(cache.stats().fresh_hits, 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a fresh hit calls no loader"
    );

    clock.advance(Duration::from_millis(1));
    assert_eq!(
        get(&cache, &k, &policy, &calls).await,
        "v1",
        "a stale hit returns the old value at once"
    );
    assert_eq!(cache.stats().stale_hits, 1);
    eventually("the refresh stored v2", DEADLINE, || {
        cache.stats().refreshes_succeeded == 1
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        get(&cache, &k, &policy, &calls).await,
        "v2",
        "the refreshed value is fresh"
    );
    assert_eq!(cache.stats().fresh_hits, 2);

    clock.advance(Duration::from_secs(60));
    assert_eq!(
        get(&cache, &k, &policy, &calls).await,
        "v3",
        "past the stale window is a miss"
    );
    assert_eq!(cache.stats().misses, 2);
    assert_eq!(cache.stats().refreshes_started, 1);
}

#[tokio::test]
async fn the_redis_expiry_is_the_drawn_stale_window_within_jitter_bounds() {
    let server = RedisServer::start();
    let cache = on_redis(&server).rng_seed(7).build().unwrap();
    let policy = Policy::builder()
        .fresh(Duration::from_secs(100))
        .stale(Duration::from_secs(200))
        .jitter(0.5)
        .build()
        .unwrap();
    let mut ttls = Vec::new();
    for i in 0..100 {
        let k = key("jitter", i);
        cache.put(&k, &policy, &i).await.unwrap();
        let ttl: u64 = server.cli(&["PTTL", &cache.full_key(&k)]).parse().unwrap();
        ttls.push(ttl);
    }
    let (min, max) = (*ttls.iter().min().unwrap(), *ttls.iter().max().unwrap());
    assert!(
        min >= 199_000,
        "no entry expires before its stale window: {min}"
    );
    assert!(
        max <= 300_000,
        "no entry is stretched past stale × 1.5: {max}"
    );
    assert!(max - min > 50_000, "jitter spreads expiries: {min}..{max}");

    let none = windows(100, 200);
    let k = key("jitter-off", 0);
    cache.put(&k, &none, &0).await.unwrap();
    let ttl: u64 = server.cli(&["PTTL", &cache.full_key(&k)]).parse().unwrap();
    assert!((199_000..=200_000).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn put_writes_through_as_if_freshly_loaded() {
    let server = RedisServer::start();
    let cache = on_redis(&server).build().unwrap();
    let policy = Policy::new(Duration::from_secs(10), Duration::from_secs(20)).unwrap();
    let k = key("put", 1);
    let calls = Arc::new(AtomicUsize::new(0));
    assert_eq!(get(&cache, &k, &policy, &calls).await, "v1");
    cache.put(&k, &policy, "written").await.unwrap();
    assert_eq!(get(&cache, &k, &policy, &calls).await, "written");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().fresh_hits, 1);
}

#[tokio::test]
async fn values_over_the_size_limit_are_returned_but_not_stored() {
    let server = RedisServer::start();
    let cache = on_redis(&server).max_entry_bytes(1024).build().unwrap();
    let policy = Policy::default();
    let k = key("big", 1);
    let big = "x".repeat(4096);
    let value = big.clone();
    let got: String = cache
        .get_or_load(&k, &policy, move || async move { Ok::<_, String>(value) })
        .await
        .unwrap();
    assert_eq!(got, big);
    assert_eq!(cache.stats().unstorable_values, 1);
    assert_eq!(server.cli(&["EXISTS", &cache.full_key(&k)]), "0");
    assert!(matches!(
        cache.put(&k, &policy, &big).await,
        Err(action_cache_core::CacheError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn five_megabyte_values_round_trip_under_the_default_limit() {
    let server = RedisServer::start();
    let cache = on_redis(&server).build().unwrap();
    let policy = Policy::default();
    let k = key("five-mb", 1);
    let big = "y".repeat(5 << 20);
    let value = big.clone();
    let _: String = cache
        .get_or_load(&k, &policy, move || async move { Ok::<_, String>(value) })
        .await
        .unwrap();
    let again: String = cache
        .get_or_load(&k, &policy, || async {
            Ok::<_, String>("not called".into())
        })
        .await
        .unwrap();
    assert_eq!(again.len(), big.len());
    assert_eq!(cache.stats().fresh_hits, 1);
}
