//! Redis short of memory (`maxmemory` with eviction, and with `noeviction`) and very large values,
//! through `#[cached_action]`: values are always correct, and the size limit is enforced with a
//! clear error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use action_cache::{cached_action, Cache, CacheError};
use action_cache_testing::{bounded, RedisServer};

/// Bounds every test: a hang fails the test instead of blocking CI.
const DEADLINE: Duration = Duration::from_secs(60);
/// Counting tests must not fail open because a store call was slow on a loaded machine (and a
/// 5 MB `SET` is not a 50 ms operation in a debug build).
const LOADED: Duration = Duration::from_secs(2);

fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

/// The value for `id`: about 10 KB, derived from the key so every answer is checkable.
fn padded(id: u32) -> String {
    format!("value-{id}-{}", "x".repeat(10_000))
}

/// `INFO stats` field `name` of `server`.
fn info_stat(server: &RedisServer, name: &str) -> u64 {
    let info = server.cli(&["INFO", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO stats:\n{info}"))
}

/// Writes 2,000 keys of ~10 KB each (about 20 MB) from 4 tasks, then reads them all again.
async fn fill_and_reread<F, Fut>(call: F)
where
    F: Fn(u32) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = Result<String, String>> + Send,
{
    let tasks: Vec<_> = (0..4u32)
        .map(|t| {
            tokio::spawn(async move {
                for pass in 0..2 {
                    for id in (t * 500)..(t * 500 + 500) {
                        assert_eq!(call(id).await, Ok(padded(id)), "pass {pass}");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        bounded("the fill", DEADLINE, t).await.unwrap();
    }
}

/// Injects: `maxmemory 2mb` with `allkeys-lru`, and ten times that much data written and read
/// back (entries, locks and all are fair game for eviction).
/// Proves: every value is correct although Redis evicts constantly (evicted keys are simply
/// reloaded), the most recent keys are still hits, and nothing is ever mistaken for a corrupt
/// entry (eviction removes whole keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_maxmemory_with_eviction_keeps_values_correct() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 300, cache = CACHE.get().unwrap())]
    async fn blob(id: u32) -> Result<String, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(padded(id))
    }
    let server =
        RedisServer::start_with_args(&["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"]);
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .build()
            .unwrap()
    });
    fill_and_reread(blob).await;
    let s = cache.stats();
    assert!(info_stat(&server, "evicted_keys") > 0, "Redis evicted");
    assert!(count(&CALLS) > 2_000, "evicted keys were reloaded: {s:?}");
    assert_eq!(s.corrupt_entries, 0, "{s:?}");
    assert_eq!(s.store_errors, 0, "eviction is not a store failure: {s:?}");
    // The most recent keys are still there. (Not necessarily the very last one: Redis's LRU
    // clock has a resolution of one second and samples keys, so among keys written within the
    // same second it may evict the newest, and the guarded write's script call can trigger an
    // eviction right after it.)
    let before = cache.stats().fresh_hits;
    for id in 1_990..2_000 {
        assert_eq!(blob(id).await, Ok(padded(id)));
    }
    assert!(
        cache.stats().fresh_hits > before,
        "none of the last ten keys was a hit"
    );
}

/// Injects: `maxmemory 2mb` with `noeviction`: once full, Redis refuses every write (`SET`,
/// the `SET NX` lock, the guarded-write script) with an OOM error, while reads still work.
/// (2 MB, not 1: an empty Redis 7 uses about 0.9 MB, and its first script call about 0.1 MB
/// more, so at 1 MB not even the first key would fit.)
/// Proves: values are always correct (refused writes fail open); the keys that did fit keep
/// being served from Redis as hits while writes are refused — a full Redis is not a dead one,
/// and refused writes must not open the circuit breaker in front of the reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_that_refuses_writes_keeps_values_correct_and_serves_hits() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    #[cached_action(fresh = 300, cache = CACHE.get().unwrap())]
    async fn blob(id: u32) -> Result<String, String> {
        Ok(padded(id))
    }
    let server =
        RedisServer::start_with_args(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            // Two failures in a row open the breaker for the rest of the test: a refused miss
            // makes exactly two refused writes in a row (lock, set), so if refusals counted as
            // failures this would open it deterministically. With the default of 5, concurrent
            // misses on a full Redis get there by interleaving, and hits are lost for a while.
            .circuit_breaker(2, Duration::from_secs(30))
            .build()
            .unwrap()
    });
    // The first keys fit (Redis with no data uses well under 1 MB).
    for id in 0..5 {
        assert_eq!(blob(id).await, Ok(padded(id)));
    }
    let stored: Vec<u32> = (0..5)
        .filter(|id| server.cli(&["EXISTS", &blob_key(*id)]) == "1")
        .collect();
    assert!(!stored.is_empty(), "some keys fit before the limit");

    fill_and_reread(blob).await;
    assert!(
        server.cli(&["SET", "probe", "x"]).contains("OOM"),
        "Redis is full and refuses writes"
    );

    // Reads still work on a full Redis: the keys that fit are hits.
    let before = cache.stats();
    for &id in &stored {
        assert_eq!(blob(id).await, Ok(padded(id)));
    }
    let after = cache.stats();
    assert_eq!(
        after.store_skipped, 0,
        "the breaker stayed closed: {after:?}"
    );
    assert_eq!(
        after.fresh_hits - before.fresh_hits,
        stored.len() as u64,
        "stored keys are still served from a full Redis: {after:?}"
    );
}

/// Injects: a 5 MB value, under the default maximum entry size (8 MiB).
/// Proves: it is stored whole and the next call is a hit that returns it intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_value_is_cached() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 300, cache = CACHE.get().unwrap())]
    async fn huge(id: u32) -> Result<String, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("{id}:{}", "y".repeat(5 << 20)))
    }
    let server = RedisServer::start();
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .build()
            .unwrap()
    });
    let first = bounded("a 5 MB miss", DEADLINE, huge(1)).await.unwrap();
    assert_eq!(first.len(), 2 + (5 << 20));
    let len: usize = server.cli(&["STRLEN", &huge_key(1)]).parse().unwrap();
    assert!(len > 5 << 20, "stored whole: {len} bytes");
    let again = bounded("a 5 MB hit", DEADLINE, huge(1)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(count(&CALLS), 1);
    assert_eq!(cache.stats().fresh_hits, 1);
}

/// Injects: a 5 MB value with `max_entry_bytes` set to 1 MiB.
/// Proves: callers still get the value (it is simply not stored, and that is counted), nothing
/// lands in Redis, and writing it explicitly with `_put` is refused with `CacheError::TooLarge`
/// whose message names the key, the size and the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_maximum_entry_size_is_returned_but_refused_by_the_store() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 300, cache = CACHE.get().unwrap())]
    async fn huge(id: u32) -> Result<String, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("{id}:{}", "y".repeat(5 << 20)))
    }
    let server = RedisServer::start();
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .max_entry_bytes(1 << 20)
            .build()
            .unwrap()
    });
    for _ in 0..2 {
        let v = bounded("an oversized miss", DEADLINE, huge(1))
            .await
            .unwrap();
        assert_eq!(v.len(), 2 + (5 << 20));
    }
    assert_eq!(count(&CALLS), 2, "not cached, so each call loads");
    assert_eq!(cache.stats().unstorable_values, 2);
    assert_eq!(server.cli(&["EXISTS", &huge_key(1)]), "0");

    let value = format!("1:{}", "y".repeat(5 << 20));
    let err = huge_put(1, &value).await.unwrap_err();
    let CacheError::TooLarge { key, size, max } = &err else {
        panic!("expected TooLarge, got {err:?}");
    };
    assert_eq!(key, &huge_key(1));
    assert!(*size > 5 << 20);
    assert_eq!(*max, 1 << 20);
    let message = err.to_string();
    assert_eq!(
        message,
        format!(
            "entry for key {} is {size} bytes, over the maximum of 1048576 bytes",
            huge_key(1)
        )
    );
    assert_eq!(server.cli(&["EXISTS", &huge_key(1)]), "0");
}

/// Injects: 8 concurrent callers of one key whose value (5 MB) is over the maximum entry size,
/// with a body that takes 200 ms.
/// Proves: concurrent misses still share one body call (the value is handed to the waiters in
/// process even though the store refuses it), so the waiters do not run the body one after
/// another, each waiting for the previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_of_an_oversized_value_share_one_load() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    const BODY: Duration = Duration::from_millis(200);
    #[cached_action(fresh = 300, cache = CACHE.get().unwrap())]
    async fn huge(id: u32) -> Result<String, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(BODY).await;
        Ok(format!("{id}:{}", "y".repeat(5 << 20)))
    }
    let server = RedisServer::start();
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .max_entry_bytes(1 << 20)
            .build()
            .unwrap()
    });
    let started = Arc::new(Instant::now());
    let callers: Vec<_> = (0..8).map(|_| tokio::spawn(huge(7))).collect();
    for c in callers {
        let v = bounded("a caller of an oversized value", DEADLINE, c)
            .await
            .unwrap();
        assert_eq!(v.unwrap().len(), 2 + (5 << 20));
    }
    assert_eq!(
        count(&CALLS),
        1,
        "8 concurrent misses made {} body calls (in {:?}); stats {:?}",
        count(&CALLS),
        started.elapsed(),
        cache.stats()
    );
}
