//! Redis killed and restarted under a sustained mixed load of hits and misses, through
//! `#[cached_action]`: no caller sees an error, every value is correct (fail-open), and the
//! same `Cache` resumes hitting once Redis is back on its port, without restarting anything.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use action_cache::{cached_action, Cache};
use action_cache_testing::{eventually, RedisServer};

/// Bounds the whole test: a hang fails it instead of blocking CI.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long each phase may take to show progress.
const PHASE: Duration = Duration::from_secs(20);
const TASKS: u64 = 12;
/// Hot keys every task reads over and over (hits once loaded).
const HOT: u64 = 8;

static CACHE: OnceLock<Cache> = OnceLock::new();

/// The backend: derives the value from the key, so every answer is checkable.
#[cached_action(fresh = 300, stale = 900, cache = CACHE.get().unwrap())]
async fn lookup(id: u64) -> Result<String, String> {
    tokio::task::yield_now().await;
    Ok(format!("value-{id}"))
}

/// Injects: `redis-server` killed (SIGKILL) while 12 tasks run a mixed load (8 hot keys read
/// repeatedly, plus a new key every iteration), kept down for a while, restarted empty on the
/// same port, and the same again a second time.
/// Proves: no call returns an error and every value is the one derived from its key, before,
/// during and after each outage; the outage is observed (store errors, breaker skips); and after
/// each restart the very same cache hits Redis again (fresh hits grow) with no restart of the
/// application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_open_and_resumes_after_restart() {
    let mut server = RedisServer::start();
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            // Generous: a timed-out call would only fail open, but this test counts hits.
            .op_timeout(Duration::from_millis(500))
            .circuit_breaker(3, Duration::from_millis(200))
            .build()
            .unwrap()
    });

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..TASKS)
        .map(|t| {
            let (stop, calls) = (Arc::clone(&stop), Arc::clone(&calls));
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let hot = i % HOT;
                    let new = 1_000 + t * 1_000_000 + i;
                    for id in [hot, new] {
                        let v = lookup(id).await;
                        assert_eq!(v, Ok(format!("value-{id}")), "task {t}, iteration {i}");
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
                i
            })
        })
        .collect();

    let watched = async {
        let progress = |n: u64| {
            let target = calls.load(Ordering::Relaxed) + n;
            let calls = Arc::clone(&calls);
            async move {
                eventually(&format!("{n} more calls"), PHASE, || {
                    calls.load(Ordering::Relaxed) >= target
                })
                .await
            }
        };
        progress(500).await;
        assert!(cache.stats().fresh_hits > 0, "warm: {:?}", cache.stats());

        for outage in 1..=2 {
            let before = cache.stats();
            server.stop();
            // Keep going while Redis is down: every one of these calls fails open.
            progress(500).await;
            let down = cache.stats();
            assert!(
                down.store_errors > before.store_errors,
                "outage {outage}: the dead store was noticed: {down:?}"
            );
            assert!(
                down.store_skipped > before.store_skipped,
                "outage {outage}: the breaker skipped the dead store: {down:?}"
            );
            let hits_while_down = down.fresh_hits;
            progress(200).await;

            server.restart();
            // Same cache, same port: the breaker probes after its cool-down, the connection
            // manager reconnects, hot keys are stored again and hit.
            eventually(
                &format!("outage {outage}: hits resume after the restart"),
                PHASE,
                || cache.stats().fresh_hits > hits_while_down + 100,
            )
            .await;
            progress(500).await;
        }
    };
    tokio::time::timeout(DEADLINE, watched)
        .await
        .unwrap_or_else(|_| panic!("load did not finish within {DEADLINE:?}"));

    stop.store(true, Ordering::Relaxed);
    for task in load {
        let iterations = tokio::time::timeout(PHASE, task)
            .await
            .expect("a load task hung")
            .expect("a load task saw a wrong value or an error");
        assert!(iterations > 0);
    }
    let s = cache.stats();
    assert_eq!(s.load_errors, 0, "{s:?}");
    assert_eq!(s.corrupt_entries, 0, "{s:?}");
    assert!(cache.ping().await.is_ok(), "the cache talks to Redis again");
}
