//! Fault injection into the loader itself, through `#[cached_action]` on a real Redis: a body that
//! panics (on a miss and in a background refresh) and a body that never returns, with
//! concurrent callers and other keys under load at the same time.
//!
//! The core tests these at the `Cache` level (cache-core/tests/coalescing.rs); here the macro's
//! own glue (argument slots, `into_loader_error`, owned refresh copies) is in the path.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use action_cache::{cached_action, Cache, ManualClock};
use action_cache_testing::{bounded, eventually, until_coalesced, RedisServer};

/// Bounds every test: a hang fails the test instead of blocking CI.
const DEADLINE: Duration = Duration::from_secs(20);
/// Counting tests must not fail open because a store call was slow on a loaded machine.
const LOADED: Duration = Duration::from_secs(2);

fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

/// Injects: a body that panics on the first miss of a key while 15 other callers wait on that
/// load and other tasks keep loading and hitting other keys.
/// Proves: the panic reaches the caller that ran the body *and* every coalesced waiter as a
/// panic (the macro re-raises `LoadError::Panicked`), nobody hangs, the cross-process lock is
/// released at once (not left to its TTL), the other keys are unaffected, and the key is
/// usable afterwards (the next call loads and caches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_body_panics_every_coalesced_caller_and_frees_the_key() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static OTHER_CALLS: AtomicUsize = AtomicUsize::new(0);

    #[cached_action(fresh = 60, cache = CACHE.get().unwrap())]
    async fn boom(id: u32) -> Result<String, String> {
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            // Hold the load until every other caller waits on it, then blow up.
            until_coalesced(CACHE.get().unwrap(), 15, DEADLINE).await;
            panic!("backend client bug");
        }
        Ok(format!("value-{id}"))
    }

    #[cached_action(fresh = 60, cache = CACHE.get().unwrap())]
    async fn other(id: u32) -> Result<String, String> {
        OTHER_CALLS.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(format!("other-{id}"))
    }

    let server = RedisServer::start();
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .build()
            .unwrap()
    });

    // Other keys under load meanwhile: 4 tasks, 10 keys each, 20 rounds (misses, then hits).
    let load: Vec<_> = (0..4u32)
        .map(|t| {
            tokio::spawn(async move {
                for round in 0..20 {
                    for id in t * 10..t * 10 + 10 {
                        assert_eq!(other(id).await.unwrap(), format!("other-{id}"), "{round}");
                    }
                }
            })
        })
        .collect();

    let callers: Vec<_> = (0..16).map(|_| tokio::spawn(boom(1))).collect();
    let mut panicked = 0;
    for c in callers {
        match bounded("a caller of the panicking load", DEADLINE, c).await {
            Err(e) if e.is_panic() => panicked += 1,
            other => panic!("expected a panic, got {other:?}"),
        }
    }
    assert_eq!(panicked, 16, "the leader and all 15 waiters see the panic");
    assert_eq!(
        count(&CALLS),
        1,
        "the body ran once; waiters did not rerun it"
    );

    for l in load {
        bounded("the background load", DEADLINE, l).await.unwrap();
    }
    assert_eq!(
        count(&OTHER_CALLS),
        40,
        "each other key loaded once, then hit"
    );

    // The dropped lock guard releases the Redis lock at once (a spawned unlock), not at its TTL.
    let lock_key = format!("{{{}}}:lock", boom_key(1));
    eventually("the load lock is released", DEADLINE, || {
        server.cli(&["EXISTS", &lock_key]) == "0"
    })
    .await;

    let started = Instant::now();
    assert_eq!(
        bounded("the next call", DEADLINE, boom(1)).await.unwrap(),
        "value-1"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the next call did not wait out the 5 s lock TTL: {:?}",
        started.elapsed()
    );
    assert_eq!(boom(1).await.unwrap(), "value-1");
    assert_eq!(count(&CALLS), 2, "the key is cached again after the panic");
    assert_eq!(
        cache.stats().load_errors,
        0,
        "a panic is not a loader error"
    );
}

/// Injects: a body with a plain (non-`Result`) return type that panics while waiters share it.
/// Proves: the generated code for plain returns re-raises the shared panic in every waiter too
/// (there is no error channel to put it in), and the key works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_plain_body_panics_its_waiters() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[cached_action(fresh = 60, cache = CACHE.get().unwrap())]
    async fn plain(id: u32) -> String {
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            until_coalesced(CACHE.get().unwrap(), 5, DEADLINE).await;
            panic!("plain body bug");
        }
        format!("plain-{id}")
    }

    let server = RedisServer::start();
    CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .build()
            .unwrap()
    });
    let callers: Vec<_> = (0..6).map(|_| tokio::spawn(plain(3))).collect();
    for c in callers {
        let r = bounded("a caller of the panicking plain load", DEADLINE, c).await;
        assert!(r.unwrap_err().is_panic());
    }
    assert_eq!(plain(3).await, "plain-3");
    assert_eq!(plain(3).await, "plain-3");
    assert_eq!(count(&CALLS), 2);
}

/// Injects: a body that panics in a background refresh (a stale hit), twice in a row.
/// Proves: the caller of the stale hit gets the stale value and never sees the panic, the
/// failed refresh is counted and its slot freed (the next stale hit starts another refresh),
/// the old entry survives, and a later good refresh replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_background_refresh_keeps_the_stale_value_and_retries_later() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[cached_action(fresh = 10, stale = 600, jitter = 0.0, cache = CACHE.get().unwrap())]
    async fn refreshed(id: u32) -> Result<String, String> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        if n == 1 || n == 2 {
            panic!("refresh {n} blew up");
        }
        Ok(format!("v{n}-{id}"))
    }

    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap()
    });
    assert_eq!(refreshed(1).await.unwrap(), "v0-1");
    clock.advance(Duration::from_secs(11));
    for attempt in 1..=2 {
        assert_eq!(
            refreshed(1).await.unwrap(),
            "v0-1",
            "stale value while refresh {attempt} panics"
        );
        eventually("the panicked refresh is counted", DEADLINE, || {
            cache.stats().refreshes_failed == attempt
        })
        .await;
    }
    assert_eq!(refreshed(1).await.unwrap(), "v0-1");
    eventually("the third refresh succeeds", DEADLINE, || {
        cache.stats().refreshes_succeeded == 1
    })
    .await;
    assert_eq!(refreshed(1).await.unwrap(), "v3-1");
    let s = cache.stats();
    assert_eq!((s.refreshes_started, s.refreshes_failed), (3, 2), "{s:?}");
}

/// Injects: a body that never returns on its first call, while 8 callers of the same key wait
/// on it (coalesced) and a second wave arrives later.
/// Proves: every waiter is answered within the coalescing wait (`lock_wait`, 300 ms here) plus
/// slack, with the correct value, instead of hanging with the stuck leader; the stuck call
/// holds nothing that blocks the key afterwards (later calls are hits, and a later miss does
/// not wait on the stuck flight again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_returns_holds_waiters_only_for_the_coalescing_wait() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    const WAIT: Duration = Duration::from_millis(300);

    #[cached_action(fresh = 60, cache = CACHE.get().unwrap())]
    async fn stuck(id: u32) -> Result<String, String> {
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            std::future::pending::<()>().await;
        }
        Ok(format!("value-{id}"))
    }

    let server = RedisServer::start();
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .lock_wait(WAIT)
            .lock_ttl(Duration::from_millis(600))
            .build()
            .unwrap()
    });
    let leader = tokio::spawn(stuck(5));
    eventually("the stuck body started", DEADLINE, || count(&CALLS) == 1).await;

    let waiters: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async {
                let started = Instant::now();
                let v = stuck(5).await;
                (v, started.elapsed())
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for w in waiters {
        let (v, took) = bounded("a waiter of a stuck load", DEADLINE, w)
            .await
            .unwrap();
        assert_eq!(v.unwrap(), "value-5");
        worst = worst.max(took);
    }
    // A waiter waits at most `lock_wait` for the in-process flight, then loads directly (one
    // body call plus a few store round trips).
    assert!(
        worst < WAIT + Duration::from_secs(3),
        "waiters were held {worst:?}"
    );
    assert!(!leader.is_finished(), "the stuck body is still stuck");
    // Each waiter that gave up loads on its own (documented: "loading directly"), so a stuck
    // leader turns N waiters into up to N body calls; bounded by the number of waiters.
    assert!(count(&CALLS) <= 1 + 8, "{} body calls", count(&CALLS));

    // Later callers are answered from the store, not held by the stuck leader.
    let calls = count(&CALLS);
    let started = Instant::now();
    assert_eq!(
        bounded("a later call", DEADLINE, stuck(5)).await.unwrap(),
        "value-5"
    );
    assert!(
        started.elapsed() < WAIT,
        "a later call waited on the stuck load: {:?}",
        started.elapsed()
    );
    assert_eq!(count(&CALLS), calls, "a later call is a hit");
    assert!(cache.stats().fresh_hits >= 1);

    // The entry goes (invalidated here; expired in production) while the stuck call still
    // hangs: the next miss must not join the stuck flight and pay the whole coalescing wait
    // again — otherwise one hung backend call taxes every later miss of the key, for as long
    // as it hangs (with the default `lock_wait`, 5 s per miss).
    // (The stuck call's Redis lock is bounded by `lock_ttl`; wait for it to expire so that what
    // is measured is the in-process flight, which has no TTL.)
    let lock_key = format!("{{{}}}:lock", stuck_key(5));
    eventually("the stuck call's Redis lock expired", DEADLINE, || {
        server.cli(&["EXISTS", &lock_key]) == "0"
    })
    .await;
    assert!(stuck_invalidate(5).await.unwrap());
    let started = Instant::now();
    assert_eq!(
        bounded("a miss after invalidation", DEADLINE, stuck(5))
            .await
            .unwrap(),
        "value-5"
    );
    assert!(
        started.elapsed() < WAIT,
        "a later miss joined the stuck flight and waited {:?}",
        started.elapsed()
    );
    leader.abort();
}
