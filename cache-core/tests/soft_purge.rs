//! Soft purges on a real Redis: a marked entry is served at once and refreshed once, by key and
//! by tag, across processes (near caches included); entries without the tag stay fresh; a
//! load in flight when the mark is made does not store its value.

use action_cache_core::{Cache, CacheKey, ManualClock, Policy};
use action_cache_testing::{bounded, eventually, RedisServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(10);

fn key(id: u32) -> CacheKey {
    let mut b = CacheKey::builder("soft");
    b.arg("id", &id).unwrap().tag(if id < 5 {
        "account:low"
    } else {
        "account:high"
    });
    b.build()
}

fn policy() -> Policy {
    Policy::builder()
        .fresh(Duration::from_secs(60))
        .stale(Duration::from_secs(600))
        .jitter(0.0)
        .build()
        .unwrap()
}

fn cache(server: &RedisServer, clock: &ManualClock, near: bool) -> Cache {
    let b = Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .clock(Arc::new(clock.clone()));
    if near { b.near_cache(100) } else { b }.build().unwrap()
}

async fn get(cache: &Cache, id: u32, loaded: &str, calls: &Arc<AtomicUsize>) -> String {
    let (loaded, calls) = (loaded.to_string(), Arc::clone(calls));
    cache
        .get_or_load(&key(id), &policy(), move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(loaded)
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marked_entry_is_served_at_once_and_refreshed_once() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, false);
    let calls = Arc::new(AtomicUsize::new(0));
    cache.put(&key(1), &policy(), "v1").await.unwrap();

    assert!(cache.mark_stale(&key(1)).await.unwrap());
    assert_eq!(get(&cache, 1, "v2", &calls).await, "v1", "served at once");
    assert_eq!(cache.stats().stale_hits, 1);
    eventually("the refresh stored v2", DEADLINE, || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let end = tokio::time::Instant::now() + DEADLINE;
    while get(&cache, 1, "unused", &calls).await != "v2" {
        assert!(
            tokio::time::Instant::now() < end,
            "the refresh never landed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh, no miss");
    assert!(cache.stats().fresh_hits >= 1);

    // An absent key marks nothing, and is not created.
    assert!(!cache.mark_stale(&key(2)).await.unwrap());
    let absent = cache.full_key(&key(2));
    assert_eq!(server.cli(&["EXISTS", &absent]).trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_mark_reaches_every_tagged_entry_and_other_processes_near_caches() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let (a, b) = (cache(&server, &clock, true), cache(&server, &clock, true));
    let calls = Arc::new(AtomicUsize::new(0));
    for id in 0..10 {
        a.put(&key(id), &policy(), &format!("old-{id}"))
            .await
            .unwrap();
    }
    // B holds near copies of everything.
    for id in 0..10 {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            let before = b.stats().near_hits;
            assert_eq!(get(&b, id, "unused", &calls).await, format!("old-{id}"));
            if b.stats().near_hits > before {
                break;
            }
            assert!(tokio::time::Instant::now() < end, "no near hit on B");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    assert_eq!(a.mark_stale_tag("account:low").await.unwrap(), 5);
    // B drops its near copies of the marked entries: each is a stale hit there, refreshed.
    for id in 0..5 {
        let end = tokio::time::Instant::now() + DEADLINE;
        while get(&b, id, &format!("new-{id}"), &calls).await != format!("new-{id}") {
            assert!(
                tokio::time::Instant::now() < end,
                "{id} never refreshed on B"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(b.stats().stale_hits >= 5, "{:?}", b.stats());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "one refresh per marked entry"
    );
    // The other tag's entries are untouched: still the old values, still fresh.
    for id in 5..10 {
        assert_eq!(get(&a, id, "unused", &calls).await, format!("old-{id}"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_in_flight_when_its_tag_is_marked_does_not_store() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, false);
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let load = {
        let (cache, release, started) = (cache.clone(), release.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key(3), &policy(), move || async move {
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, String>("loaded before the change".to_string())
                })
                .await
                .unwrap()
        })
    };
    bounded("the load starts", DEADLINE, started.notified()).await;
    assert_eq!(cache.mark_stale_tag("account:low").await.unwrap(), 0);
    release.notify_one();
    let value = bounded("the load ends", DEADLINE, load).await.unwrap();
    assert_eq!(value, "loaded before the change", "its own caller gets it");
    let full = cache.full_key(&key(3));
    assert_eq!(
        server.cli(&["EXISTS", &full]).trim(),
        "0",
        "but it is not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_of_many_entries_is_marked_whole() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, false);
    let bulk = |id: u32| {
        let mut b = CacheKey::builder("soft.bulk");
        b.arg("id", &id).unwrap().tag("bulk");
        b.build()
    };
    const N: u32 = 300;
    for id in 0..N {
        cache.put(&bulk(id), &policy(), &id).await.unwrap();
    }
    // Marked concurrently: every one of them, each once.
    assert_eq!(cache.mark_stale_tag("bulk").await.unwrap(), u64::from(N));
    let before = cache.stats();
    for id in 0..N {
        let v: u32 = cache
            .get_or_load(&bulk(id), &policy(), move || async move {
                Ok::<_, String>(id + 1_000)
            })
            .await
            .unwrap();
        assert_eq!(
            v, id,
            "a marked entry is served at once, with its own value"
        );
    }
    let after = cache.stats();
    assert_eq!(after.stale_hits - before.stale_hits, u64::from(N));
    assert_eq!(after.fresh_hits, before.fresh_hits);
}
