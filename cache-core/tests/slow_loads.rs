//! One load however slow the backend: the lock holder renews its lease while its loader runs,
//! waiters keep waiting while it is alive, exactly one new leader takes over when the holder is
//! gone, and waiters whose patience runs out get a typed error rather than loading themselves.
//! Also: values that cannot be stored still reach every coalesced waiter from one load.
//! Real Redis throughout; several `Cache` values stand for several processes.

use action_cache_core::{Cache, CacheKey, LoadError, Policy};
use action_cache_testing::{bounded, until_coalesced, RedisServer};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);
const LOCK_TTL: Duration = Duration::from_millis(300);

fn key(name: &str) -> CacheKey {
    let mut b = CacheKey::builder(name);
    b.arg("id", &1).unwrap();
    b.build()
}

fn policy() -> Policy {
    Policy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap()
}

fn caches(server: &RedisServer, n: usize) -> Vec<Cache> {
    (0..n)
        .map(|_| {
            Cache::builder()
                .redis_url(server.url())
                .op_timeout(Duration::from_secs(2))
                .lock_ttl(LOCK_TTL)
                .build()
                .unwrap()
        })
        .collect()
}

/// `callers` concurrent misses spread over `caches`, each with a loader that takes `load_time`.
async fn stampede(
    caches: &[Cache],
    k: &CacheKey,
    callers: usize,
    load_time: Duration,
) -> (Vec<Result<String, LoadError<String>>>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..callers {
        let cache = caches[i % caches.len()].clone();
        let (calls, k) = (Arc::clone(&calls), k.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(&k, &policy(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // The CRM is slow: slower than the lock's TTL.
                    tokio::time::sleep(load_time).await;
                    Ok::<_, String>("loaded".to_string())
                })
                .await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(bounded("a caller", DEADLINE, t).await.unwrap());
    }
    (results, calls.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_slower_than_the_lock_ttl_is_called_once_in_one_process() {
    let server = RedisServer::start();
    let caches = caches(&server, 1);
    let (results, calls) = stampede(&caches, &key("slow.one"), 100, LOCK_TTL * 3).await;
    assert_eq!(calls, 1, "a slow backend set off a herd of loads");
    assert!(results.iter().all(|r| matches!(r.as_deref(), Ok("loaded"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_slower_than_the_lock_ttl_is_called_once_across_four_processes() {
    let server = RedisServer::start();
    let caches = caches(&server, 4);
    let (results, calls) = stampede(&caches, &key("slow.four"), 100, LOCK_TTL * 3).await;
    assert_eq!(calls, 1, "a slow backend set off a herd of loads");
    assert!(results.iter().all(|r| matches!(r.as_deref(), Ok("loaded"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lock_holder_is_replaced_by_exactly_one_leader() {
    let server = RedisServer::start();
    let caches = caches(&server, 4);
    let k = key("slow.dead-holder");
    // A process took the load lock and was SIGKILLed: the lock is never renewed nor released.
    let lock = format!("{{{}}}:lock", caches[0].full_key(&k));
    let px = LOCK_TTL.as_millis().to_string();
    assert_eq!(server.cli(&["SET", &lock, "dead-process", "PX", &px]), "OK");
    let (results, calls) = stampede(&caches, &k, 100, Duration::from_millis(50)).await;
    assert_eq!(
        calls, 1,
        "once the dead holder's lease expired, one caller took over"
    );
    assert!(results.iter().all(|r| matches!(r.as_deref(), Ok("loaded"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_whose_patience_runs_out_get_a_typed_error_not_a_load_of_their_own() {
    let server = RedisServer::start();
    let patience = Duration::from_millis(400);
    let caches: Vec<Cache> = (0..2)
        .map(|_| {
            Cache::builder()
                .redis_url(server.url())
                .op_timeout(Duration::from_secs(2))
                .lock_ttl(LOCK_TTL)
                .lock_wait(patience)
                .build()
                .unwrap()
        })
        .collect();
    let k = key("slow.hung");
    let calls = Arc::new(AtomicUsize::new(0));
    // The leader's loader hangs (for the length of this test).
    let leader = {
        let (cache, calls, k) = (caches[0].clone(), Arc::clone(&calls), k.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&k, &policy(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    Ok::<_, String>("never".to_string())
                })
                .await
        })
    };
    bounded("the leader to start", DEADLINE, async {
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut waiters = Vec::new();
    for i in 0..20 {
        let (cache, calls, k) = (caches[i % 2].clone(), Arc::clone(&calls), k.clone());
        waiters.push(tokio::spawn(async move {
            cache
                .get_or_load(&k, &policy(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>("private load".to_string())
                })
                .await
        }));
    }
    until_coalesced(&caches[0], 10, DEADLINE).await;
    for w in waiters {
        match bounded("a waiter", DEADLINE, w).await.unwrap() {
            Err(LoadError::TimedOut { waited, .. }) => assert!(waited >= patience),
            other => panic!("expected a typed time-out, got {other:?}"),
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a waiter loaded on its own"
    );
    leader.abort();
}

/// A value JSON cannot carry faithfully: NaN is written as `null`, which does not decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reading {
    value: f64,
}

/// A value whose `Serialize` fails.
#[derive(Debug, Clone, Deserialize)]
struct Unserializable(u32);

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be serialized",
        ))
    }
}

async fn fifty_callers<T>(cache: &Cache, name: &str, make: fn() -> T) -> (Vec<T>, usize)
where
    T: Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let k = key(name);
    let calls = Arc::new(AtomicUsize::new(0));
    // The counter is the cache's since it was built: wait for 49 more than now.
    let waiting = cache.stats().coalesced_waits + 49;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (cache, calls, k) = (cache.clone(), Arc::clone(&calls), k.clone());
        let watcher = cache.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(&k, &policy(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    until_coalesced(&watcher, waiting, DEADLINE).await;
                    Ok::<_, String>(make())
                })
                .await
                .unwrap()
        }));
    }
    let mut values = Vec::new();
    for t in tasks {
        values.push(bounded("a caller", DEADLINE, t).await.unwrap());
    }
    (values, calls.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_cannot_be_stored_still_coalesce() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .max_entry_bytes(1_000)
        .build()
        .unwrap();

    let (values, calls) =
        fifty_callers(&cache, "unstorable.nan", || Reading { value: f64::NAN }).await;
    assert_eq!(calls, 1, "a NaN value made every waiter load");
    assert!(values.iter().all(|r| r.value.is_nan()));

    let (values, calls) = fifty_callers(&cache, "unstorable.big", || "x".repeat(5_000)).await;
    assert_eq!(calls, 1, "an oversized value made every waiter load");
    assert!(values.iter().all(|v| v.len() == 5_000));

    let (values, calls) = fifty_callers(&cache, "unstorable.error", || Unserializable(7)).await;
    assert_eq!(
        calls, 1,
        "a value that fails to serialize made every waiter load"
    );
    assert!(values.iter().all(|v| v.0 == 7));

    let s = cache.stats();
    assert_eq!(s.loads, 3);
    assert_eq!(s.unstorable_values, 3, "each skipped write is counted once");
    assert_eq!(server.entry_count(), 0, "nothing unusable was stored");
}
