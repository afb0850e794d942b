//! Miss coalescing in one process and across processes, and what happens when the shared load
//! fails, panics, is abandoned or never returns. Real Redis throughout.

use action_cache_core::testing::{eventually, RedisServer};
use action_cache_core::{Cache, CacheKey, LoadError, Policy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(10);
/// Thousands of concurrent commands on a loaded 2-core machine can exceed the 50 ms default,
/// and a timed-out store call correctly fails open into an extra load; these tests count loads.
const LOADED: Duration = Duration::from_secs(2);

fn key(name: &str) -> CacheKey {
    let mut b = CacheKey::builder(name);
    b.arg("id", &1).unwrap();
    b.build()
}

fn policy() -> Policy {
    Policy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap()
}

/// Waits (polling, bounded) until `cache` counts `n` coalesced waiters.
async fn until_waiting(cache: &Cache, n: u64) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while cache.stats().coalesced_waits < n {
        assert!(
            tokio::time::Instant::now() < end,
            "only {} waiters joined",
            cache.stats().coalesced_waits
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_make_one_loader_call() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(LOADED)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("stampede");
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (cache, calls, k) = (cache.clone(), Arc::clone(&calls), k.clone());
        tasks.push(tokio::spawn(async move {
            let watcher = cache.clone();
            cache
                .get_or_load(&k, &policy(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Hold the load until every other caller is waiting on it.
                    until_waiting(&watcher, 999).await;
                    Ok::<_, String>("loaded".to_string())
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "loaded");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = cache.stats();
    assert_eq!((s.misses, s.loads, s.coalesced_waits), (1000, 1, 999));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_caches_on_one_redis_make_one_loader_call() {
    let server = RedisServer::start();
    // Two `Cache` values share nothing in process, as two service instances would.
    let a = Cache::builder()
        .redis_url(server.url())
        .op_timeout(LOADED)
        .build()
        .unwrap();
    let b = Cache::builder()
        .redis_url(server.url())
        .op_timeout(LOADED)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("two-processes");
    let mut tasks = Vec::new();
    for i in 0..400 {
        let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (a, b, calls, k) = (a.clone(), b.clone(), Arc::clone(&calls), k.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(&k, &policy(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    until_waiting(&a, 199).await;
                    until_waiting(&b, 199).await;
                    Ok::<_, String>("loaded".to_string())
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "loaded");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader call across both caches"
    );
    assert_eq!(a.stats().loads + b.stats().loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_error_reaches_every_waiter_and_is_not_cached() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(LOADED)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("error");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (cache, calls, k) = (cache.clone(), Arc::clone(&calls), k.clone());
        tasks.push(tokio::spawn(async move {
            let watcher = cache.clone();
            cache
                .get_or_load(&k, &policy(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    until_waiting(&watcher, 9).await;
                    Err::<String, _>("crm said 503".to_string())
                })
                .await
        }));
    }
    for t in tasks {
        match t.await.unwrap() {
            Err(LoadError::Loader(e)) => assert_eq!(e, "crm said 503"),
            other => panic!("expected the loader's error, got {other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        server.cli(&["EXISTS", &cache.full_key(&k)]),
        "0",
        "errors are not cached"
    );
    let v: String = cache
        .get_or_load(&k, &policy(), || async { Ok::<_, String>("ok".into()) })
        .await
        .unwrap();
    assert_eq!(v, "ok", "the next call loads again");
    assert_eq!(cache.stats().load_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_answered_when_the_first_callers_future_is_dropped() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(LOADED)
        .build()
        .unwrap();
    let k = key("dropped-leader");
    let started = Arc::new(AtomicUsize::new(0));
    let leader = {
        let (cache, k, started) = (cache.clone(), k.clone(), Arc::clone(&started));
        tokio::spawn(async move {
            cache
                .get_or_load(&k, &policy(), move || async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<Result<String, String>>().await
                })
                .await
        })
    };
    eventually("the leader is loading", DEADLINE, || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut waiters = Vec::new();
    for _ in 0..10 {
        let (cache, k) = (cache.clone(), k.clone());
        waiters.push(tokio::spawn(async move {
            cache
                .get_or_load(&k, &policy(), || async {
                    Ok::<String, String>("from a waiter".into())
                })
                .await
        }));
    }
    until_waiting(&cache, 10).await;
    leader.abort(); // the client went away mid-load
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), "from a waiter");
    }
    assert_eq!(
        cache.stats().loads,
        2,
        "one waiter took over the load; the rest shared it"
    );
    let v: String = cache
        .get_or_load(&k, &policy(), || async { Ok::<_, String>("unused".into()) })
        .await
        .unwrap();
    assert_eq!(v, "from a waiter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_answers_its_waiters_and_frees_the_key() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(LOADED)
        .build()
        .unwrap();
    let k = key("panic");
    let started = Arc::new(AtomicUsize::new(0));
    let leader = {
        let (cache, k, started) = (cache.clone(), k.clone(), Arc::clone(&started));
        tokio::spawn(async move {
            let watcher = cache.clone();
            cache
                .get_or_load(&k, &policy(), move || async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    until_waiting(&watcher, 5).await;
                    panic!("loader bug");
                    #[allow(unreachable_code)]
                    Ok::<String, String>(String::new())
                })
                .await
        })
    };
    eventually("the leader is loading", DEADLINE, || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let (cache, k) = (cache.clone(), k.clone());
        waiters.push(tokio::spawn(async move {
            cache
                .get_or_load(&k, &policy(), || async {
                    Ok::<String, String>("unused".into())
                })
                .await
        }));
    }
    assert!(
        leader.await.unwrap_err().is_panic(),
        "the panic reaches its own caller"
    );
    for w in waiters {
        assert!(matches!(w.await.unwrap(), Err(LoadError::Panicked { .. })));
    }
    let v: String = cache
        .get_or_load(&k, &policy(), || async { Ok::<_, String>("after".into()) })
        .await
        .unwrap();
    assert_eq!(v, "after", "the key is usable afterwards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_that_never_returns_holds_waiters_only_for_the_coalescing_wait() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .lock_wait(Duration::from_millis(200))
        .build()
        .unwrap();
    let other_process = Cache::builder()
        .redis_url(server.url())
        .lock_wait(Duration::from_millis(200))
        .build()
        .unwrap();
    let k = key("never");
    let started = Arc::new(AtomicUsize::new(0));
    let _stuck = {
        let (cache, k, started) = (cache.clone(), k.clone(), Arc::clone(&started));
        tokio::spawn(async move {
            cache
                .get_or_load(&k, &policy(), move || async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<Result<String, String>>().await
                })
                .await
        })
    };
    eventually("the stuck loader started", DEADLINE, || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    let p = policy();
    let same = cache.get_or_load(&k, &p, || async {
        Ok::<String, String>("same process".into())
    });
    let other = other_process.get_or_load(&k, &p, || async {
        Ok::<String, String>("other process".into())
    });
    let (same, other) = tokio::time::timeout(DEADLINE, async { tokio::join!(same, other) })
        .await
        .expect("waiters are bounded");
    assert_eq!(same.unwrap(), "same process");
    // The other process either loaded itself or picked up the value the first waiter stored.
    assert!(["same process", "other process"].contains(&other.unwrap().as_str()));
}
