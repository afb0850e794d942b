//! What a call reports it did (`Cache::get_or_load_with_outcome`), and loaders that choose how
//! their value is kept (`Cache::get_or_load_with_loader_policy`): their windows, or no entry at
//! all, on a miss and in a background refresh. Real Redis, a manual clock for entry ages.

mod support;

use action_cache_core::{
    Cache, CacheKey, LoadError, Loaded, ManualClock, Outcome, Policy, RefreshFuture, RefreshMode,
};
use action_cache_testing::{eventually, until_coalesced, RedisServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{cache_on, key, on_redis, windows};

const DEADLINE: Duration = Duration::from_secs(10);

/// One call with a counting plain loader that answers `v{n}`.
async fn call(
    cache: &Cache,
    key: &CacheKey,
    policy: &Policy,
    calls: &Arc<AtomicUsize>,
) -> (String, Outcome) {
    let load = || {
        let calls = Arc::clone(calls);
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, String>(format!("v{n}"))
        }
    };
    cache
        .get_or_load_with_outcome(key, policy, load, || Box::pin(load()))
        .await
        .unwrap()
}

/// What a loader of [`told`] answers: the value and how to keep it.
type Answer = Result<Loaded<String>, String>;

/// One call whose loader (and refresh) answers `answer(n)` for its `n`th call.
async fn told(
    cache: &Cache,
    key: &CacheKey,
    policy: &Policy,
    calls: &Arc<AtomicUsize>,
    answer: fn(usize) -> Answer,
) -> Result<(String, Outcome), LoadError<String>> {
    let load = || {
        let calls = Arc::clone(calls);
        async move { answer(calls.fetch_add(1, Ordering::SeqCst) + 1) }
    };
    cache
        .get_or_load_with_loader_policy(key, policy, load, || -> RefreshFuture<_, _> {
            Box::pin(load())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_stale_and_miss_are_reported_and_counted_once() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache_on(&server, &clock);
    let policy = windows(10, 60);
    let k = key("outcomes", 1);
    let calls = Arc::new(AtomicUsize::new(0));

    assert_eq!(
        call(&cache, &k, &policy, &calls).await,
        ("v1".into(), Outcome::Miss)
    );
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(
        call(&cache, &k, &policy, &calls).await,
        ("v1".into(), Outcome::Fresh)
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        call(&cache, &k, &policy, &calls).await,
        ("v1".into(), Outcome::Stale),
        "a stale hit says so, and starts the refresh"
    );
    eventually("the refresh stored v2", DEADLINE, || {
        cache.stats().refreshes_succeeded == 1
    })
    .await;
    assert_eq!(
        call(&cache, &k, &policy, &calls).await,
        ("v2".into(), Outcome::Fresh)
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        call(&cache, &k, &policy, &calls).await,
        ("v3".into(), Outcome::Miss),
        "past the stale window"
    );
    // Each call counted once, and only where its outcome says.
    let s = cache.stats();
    assert_eq!(
        (
            s.misses,
            s.fresh_hits,
            s.stale_hits,
            s.loads,
            s.coalesced_waits
        ),
        (2, 2, 1, 2, 0)
    );
    assert_eq!(s.refreshes_started, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_another_callers_load_is_coalesced() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache_on(&server, &clock);
    let policy = windows(10, 60);
    let k = key("outcomes.coalesced", 1);
    let calls = Arc::new(AtomicUsize::new(0));

    // In this process: the leader holds its load until the other caller waits on it.
    let leader = {
        let (cache, k, policy, calls) = (cache.clone(), k.clone(), policy.clone(), calls.clone());
        tokio::spawn(async move {
            let watcher = cache.clone();
            let load = || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                until_coalesced(&watcher, 1, DEADLINE).await;
                Ok::<_, String>("led".to_string())
            };
            cache
                .get_or_load_with_outcome(&k, &policy, load, || -> RefreshFuture<_, _> {
                    Box::pin(async { Ok("unused".to_string()) })
                })
                .await
        })
    };
    eventually("the leader is loading", DEADLINE, || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let waiter = call(&cache, &k, &policy, &calls).await;
    assert_eq!(waiter, ("led".into(), Outcome::Coalesced));
    assert_eq!(
        leader.await.unwrap().unwrap(),
        ("led".into(), Outcome::Miss)
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the waiter's loader never ran"
    );
    let s = cache.stats();
    assert_eq!((s.misses, s.loads, s.coalesced_waits), (2, 1, 1));

    // Across processes: another cache on the same Redis waits for this one's lock, then finds
    // the entry it stored.
    let other = cache_on(&server, &clock);
    let k2 = key("outcomes.coalesced", 2);
    let (release, hold) = tokio::sync::oneshot::channel::<()>();
    let holding = Arc::new(AtomicUsize::new(0));
    let leader = {
        let (cache, k2, policy) = (cache.clone(), k2.clone(), policy.clone());
        let holding = Arc::clone(&holding);
        tokio::spawn(async move {
            let load = || async move {
                holding.fetch_add(1, Ordering::SeqCst);
                hold.await.unwrap();
                Ok::<_, String>("from the lock holder".to_string())
            };
            cache
                .get_or_load_with_outcome(&k2, &policy, load, || -> RefreshFuture<_, _> {
                    Box::pin(async { Ok("unused".to_string()) })
                })
                .await
        })
    };
    eventually("the first process loads under its lock", DEADLINE, || {
        holding.load(Ordering::SeqCst) == 1
    })
    .await;
    let waiter = {
        let (other, k2, policy, calls) = (other.clone(), k2.clone(), policy.clone(), calls.clone());
        tokio::spawn(async move { call(&other, &k2, &policy, &calls).await })
    };
    eventually("the second process waits", DEADLINE, || {
        other.in_flight().loads == 1
    })
    .await;
    release.send(()).unwrap();
    assert_eq!(
        leader.await.unwrap().unwrap(),
        ("from the lock holder".into(), Outcome::Miss)
    );
    assert_eq!(
        waiter.await.unwrap(),
        ("from the lock holder".into(), Outcome::Coalesced)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(other.stats().misses, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_refresh_reports_refreshed_or_stale_if_error() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache_on(&server, &clock);
    let policy = Policy::builder()
        .fresh(Duration::from_secs(10))
        .stale(Duration::from_secs(60))
        .jitter(0.0)
        .refresh_mode(RefreshMode::Inline)
        .build()
        .unwrap();
    let k = key("outcomes.inline", 1);
    let calls = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        call(&cache, &k, &policy, &calls).await,
        ("v1".into(), Outcome::Miss)
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        call(&cache, &k, &policy, &calls).await,
        ("v2".into(), Outcome::Refreshed)
    );
    clock.advance(Duration::from_secs(10));
    let failing = || async { Err::<String, _>("backend down".to_string()) };
    let served = cache
        .get_or_load_with_outcome(&k, &policy, failing, || Box::pin(failing()))
        .await
        .unwrap();
    assert_eq!(served, ("v2".into(), Outcome::StaleIfError));
    let s = cache.stats();
    assert_eq!((s.misses, s.stale_hits, s.fresh_hits), (1, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_chosen_window_is_the_one_the_entry_gets_on_a_miss_and_a_refresh() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache_on(&server, &clock);
    // The call's windows would keep the entry fresh for 5 minutes; the loader says 10 s
    // fresh, 30 s in all, then (refreshed) 20 s fresh, 40 s in all.
    let policy = windows(300, 900);
    let k = key("outcomes.told", 1);
    let calls = Arc::new(AtomicUsize::new(0));
    let answer: fn(usize) -> Answer = |n| {
        let told = if n == 1 {
            windows(10, 30)
        } else {
            windows(20, 40)
        };
        Ok(Loaded::with_policy(format!("v{n}"), told))
    };
    let get = || told(&cache, &k, &policy, &calls, answer);

    assert_eq!(get().await.unwrap(), ("v1".into(), Outcome::Miss));
    let ttl: u64 = server
        .cli(&["PTTL", &cache.full_key(&k)])
        .trim()
        .parse()
        .unwrap();
    assert!(
        (25_000..=30_000).contains(&ttl),
        "the store expires it at the loader's stale window: {ttl} ms"
    );
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(get().await.unwrap(), ("v1".into(), Outcome::Fresh));
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        get().await.unwrap(),
        ("v1".into(), Outcome::Stale),
        "stale after the loader's 10 s, not the call's 300 s"
    );
    eventually("the refresh stored v2", DEADLINE, || {
        cache.stats().refreshes_succeeded == 1
    })
    .await;
    assert_eq!(cache.stats().refreshes_failed, 0);
    // The refresh's own windows: fresh for 20 s from its write.
    clock.advance(Duration::from_millis(19_999));
    assert_eq!(get().await.unwrap(), ("v2".into(), Outcome::Fresh));
    clock.advance(Duration::from_millis(1));
    assert_eq!(get().await.unwrap(), ("v2".into(), Outcome::Stale));
    eventually("the second refresh stored v3", DEADLINE, || {
        cache.stats().refreshes_succeeded == 2
    })
    .await;
    clock.advance(Duration::from_secs(40));
    assert_eq!(
        get().await.unwrap(),
        ("v4".into(), Outcome::Miss),
        "past the loader's 40 s"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loader_chosen_policy_jitters_its_windows() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache_on(&server, &clock);
    // No jitter in the call's windows; half in the loader's.
    let policy = windows(300, 900);
    let calls = Arc::new(AtomicUsize::new(0));
    let answer: fn(usize) -> Answer = |n| {
        let told = Policy::builder()
            .fresh(Duration::from_secs(100))
            .stale(Duration::from_secs(100))
            .jitter(0.5)
            .build()
            .unwrap();
        Ok(Loaded::with_policy(format!("v{n}"), told))
    };
    let mut longest = 0;
    for id in 0..20 {
        let k = key("outcomes.jitter", id);
        told(&cache, &k, &policy, &calls, answer).await.unwrap();
        let ttl: u64 = server
            .cli(&["PTTL", &cache.full_key(&k)])
            .trim()
            .parse()
            .unwrap();
        assert!(ttl <= 150_000, "within the jitter: {ttl} ms");
        longest = longest.max(ttl);
    }
    assert!(
        longest > 102_000,
        "20 draws of jitter 0.5 stretch some window: {longest} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_is_served_and_shared_but_never_stored() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache_on(&server, &clock);
    let policy = windows(10, 60);
    let k = key("outcomes.no_store", 1);
    let calls = Arc::new(AtomicUsize::new(0));
    let answer: fn(usize) -> Answer = |n| Ok(Loaded::no_store(format!("v{n}")));
    for n in 1..=3 {
        assert_eq!(
            told(&cache, &k, &policy, &calls, answer).await.unwrap(),
            (format!("v{n}"), Outcome::Miss),
            "every call loads"
        );
    }
    assert_eq!(server.entry_count(), 0, "nothing stored");
    let s = cache.stats();
    assert_eq!((s.loads, s.unstorable_values, s.load_errors), (3, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_says_no_store_removes_the_stale_entry() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache_on(&server, &clock);
    let policy = windows(10, 60);
    let k = key("outcomes.no_store_refresh", 1);
    let calls = Arc::new(AtomicUsize::new(0));
    // Kept at first; the source then says it may no longer be kept.
    let answer: fn(usize) -> Answer = |n| match n {
        1 => Ok(Loaded::new(format!("v{n}"))),
        _ => Ok(Loaded::no_store(format!("v{n}"))),
    };
    assert_eq!(
        told(&cache, &k, &policy, &calls, answer).await.unwrap(),
        ("v1".into(), Outcome::Miss)
    );
    assert_eq!(server.entry_count(), 1);
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        told(&cache, &k, &policy, &calls, answer).await.unwrap(),
        ("v1".into(), Outcome::Stale)
    );
    eventually("the refresh ended", DEADLINE, || {
        cache.stats().refreshes_succeeded == 1
    })
    .await;
    assert_eq!(cache.stats().refreshes_failed, 0);
    assert_eq!(server.entry_count(), 0, "the stale entry is gone");
    assert_eq!(
        told(&cache, &k, &policy, &calls, answer).await.unwrap(),
        ("v3".into(), Outcome::Miss)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_error_is_never_stored_and_a_failed_refresh_keeps_the_entry() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = cache_on(&server, &clock);
    let policy = windows(10, 60);
    let k = key("outcomes.error", 1);
    let calls = Arc::new(AtomicUsize::new(0));
    // Fails, then succeeds with windows of its own, then fails in the refresh.
    let answer: fn(usize) -> Answer = |n| match n {
        2 => Ok(Loaded::with_policy(format!("v{n}"), windows(10, 60))),
        _ => Err(format!("e{n}")),
    };
    let err = told(&cache, &k, &policy, &calls, answer).await.unwrap_err();
    assert!(
        matches!(err, LoadError::Loader(ref e) if e == "e1"),
        "{err:?}"
    );
    assert_eq!(server.entry_count(), 0, "an error is not stored");
    assert_eq!(
        told(&cache, &k, &policy, &calls, answer).await.unwrap(),
        ("v2".into(), Outcome::Miss),
        "the next call loads again"
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        told(&cache, &k, &policy, &calls, answer).await.unwrap(),
        ("v2".into(), Outcome::Stale)
    );
    eventually("the refresh failed", DEADLINE, || {
        cache.stats().refreshes_failed == 1
    })
    .await;
    assert_eq!(
        told(&cache, &k, &policy, &calls, answer).await.unwrap().0,
        "v2",
        "the old entry stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_chosen_window_is_still_a_guarded_bounded_write() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = on_redis(&server)
        .clock(Arc::new(clock.clone()))
        .max_entry_bytes(1_000)
        .build()
        .unwrap();
    let policy = windows(10, 60);
    // A purge while the loader runs: its value reaches the caller, not the store.
    let k = key("outcomes.guarded", 1);
    let purger = cache.clone();
    let purged = k.clone();
    let load = || async move {
        purger.invalidate(&purged).await.unwrap();
        Ok::<_, String>(Loaded::with_policy(
            "pre-purge".to_string(),
            windows(30, 90),
        ))
    };
    let got = cache
        .get_or_load_with_loader_policy(&k, &policy, load, || -> RefreshFuture<_, _> {
            Box::pin(async { Ok(Loaded::new("unused".to_string())) })
        })
        .await
        .unwrap();
    assert_eq!(got, ("pre-purge".into(), Outcome::Miss));
    assert_eq!(cache.stats().superseded_loads, 1);
    // Over the size limit: returned, not stored.
    let k = key("outcomes.guarded", 2);
    let calls = Arc::new(AtomicUsize::new(0));
    let answer: fn(usize) -> Answer =
        |_| Ok(Loaded::with_policy("x".repeat(2_000), windows(30, 90)));
    let (big, outcome) = told(&cache, &k, &policy, &calls, answer).await.unwrap();
    assert_eq!((big.len(), outcome), (2_000, Outcome::Miss));
    assert_eq!(cache.stats().unstorable_values, 1);
    assert_eq!(server.entry_count(), 0);
}
