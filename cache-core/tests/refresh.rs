//! Background refresh: one per key, bounded, stopped with the cache, and never resurrecting an
//! entry that was invalidated or replaced while it ran. Real Redis, manual clock.

use action_cache_core::{Cache, CacheKey, ManualClock, Policy, RefreshMode, StoreError};
use action_cache_testing::{eventually, RedisServer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

const DEADLINE: Duration = Duration::from_secs(10);

fn key(id: u32) -> CacheKey {
    let mut b = CacheKey::builder("refresh");
    b.arg("id", &id).unwrap();
    b.build()
}

fn policy() -> Policy {
    Policy::builder()
        .fresh(Duration::from_secs(10))
        .stale(Duration::from_secs(100))
        .jitter(0.0)
        .build()
        .unwrap()
}

struct Setup {
    _server: RedisServer,
    clock: ManualClock,
    cache: Cache,
}

async fn stale_entry(
    ids: &[u32],
    configure: impl FnOnce(action_cache_core::CacheBuilder) -> action_cache_core::CacheBuilder,
) -> Setup {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = configure(
        Cache::builder()
            .redis_url(server.url())
            // Generous: a timed-out read under load fails open into a miss, and these tests
            // count hits and refreshes.
            .op_timeout(Duration::from_secs(2))
            .clock(Arc::new(clock.clone())),
    )
    .build()
    .unwrap();
    for &id in ids {
        cache.put(&key(id), &policy(), "old").await.unwrap();
    }
    clock.advance(Duration::from_secs(10));
    Setup {
        _server: server,
        clock,
        cache,
    }
}

/// A loader that counts its calls and returns "new" once a permit is released.
fn gated(
    calls: &Arc<AtomicUsize>,
    gate: &Arc<Semaphore>,
) -> impl FnOnce()
    -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>
       + Send
       + 'static {
    let (calls, gate) = (Arc::clone(calls), Arc::clone(gate));
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            Ok("new".to_string())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_stale_hits_start_exactly_one_refresh() {
    let s = stale_entry(&[1], |b| b).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (cache, loader) = (s.cache.clone(), gated(&calls, &gate));
        tasks.push(tokio::spawn(async move {
            cache.get_or_load(&key(1), &policy(), loader).await
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap(),
            "old",
            "stale hits return at once"
        );
    }
    gate.add_permits(1000);
    eventually("the refresh stored its value", DEADLINE, || {
        s.cache.stats().refreshes_succeeded == 1
    })
    .await;
    let st = s.cache.stats();
    assert_eq!(
        (st.stale_hits, st.refreshes_started, st.misses),
        (1000, 1, 0)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let v: String = s
        .cache
        .get_or_load(&key(1), &policy(), || async {
            Ok::<_, String>("unused".into())
        })
        .await
        .unwrap();
    assert_eq!(v, "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_racing_an_invalidation_does_not_resurrect_the_entry() {
    let s = stale_entry(&[1], |b| b).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let v: String = s
        .cache
        .get_or_load(&key(1), &policy(), gated(&calls, &gate))
        .await
        .unwrap();
    assert_eq!(v, "old");
    eventually("the refresh is loading", DEADLINE, || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(s.cache.invalidate(&key(1)).await.unwrap());
    gate.add_permits(1);
    eventually("the refresh finished", DEADLINE, || {
        s.cache.stats().refreshes_discarded == 1
    })
    .await;
    assert_eq!(s.cache.stats().refreshes_succeeded, 0);
    let v: String = s
        .cache
        .get_or_load(&key(1), &policy(), || async {
            Ok::<_, String>("reloaded".into())
        })
        .await
        .unwrap();
    assert_eq!(
        v, "reloaded",
        "the invalidated entry stayed gone: this was a miss"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_racing_a_put_does_not_overwrite_it() {
    let s = stale_entry(&[1], |b| b).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let _: String = s
        .cache
        .get_or_load(&key(1), &policy(), gated(&calls, &gate))
        .await
        .unwrap();
    eventually("the refresh is loading", DEADLINE, || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    s.cache
        .put(&key(1), &policy(), "put by the CRM webhook")
        .await
        .unwrap();
    gate.add_permits(1);
    eventually("the refresh finished", DEADLINE, || {
        s.cache.stats().refreshes_discarded == 1
    })
    .await;
    let v: String = s
        .cache
        .get_or_load(&key(1), &policy(), || async {
            Ok::<_, String>("unused".into())
        })
        .await
        .unwrap();
    assert_eq!(v, "put by the CRM webhook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_the_old_entry() {
    let s = stale_entry(&[1], |b| b).await;
    let _: String = s
        .cache
        .get_or_load(&key(1), &policy(), || async {
            Err::<String, _>("crm down".to_string())
        })
        .await
        .unwrap();
    eventually("the refresh failed", DEADLINE, || {
        s.cache.stats().refreshes_failed == 1
    })
    .await;
    let v: String = s
        .cache
        .get_or_load(&key(1), &policy(), || async {
            Err::<String, _>("still down".to_string())
        })
        .await
        .unwrap();
    assert_eq!(v, "old");
    assert_eq!(s.cache.stats().stale_hits, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_over_capacity_are_dropped_and_counted() {
    let s = stale_entry(&[1, 2], |b| b.refresh_capacity(1)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let _: String = s
        .cache
        .get_or_load(&key(1), &policy(), gated(&calls, &gate))
        .await
        .unwrap();
    let _: String = s
        .cache
        .get_or_load(&key(2), &policy(), gated(&calls, &gate))
        .await
        .unwrap();
    assert_eq!(s.cache.stats().refreshes_dropped, 1);
    assert_eq!(s.cache.stats().refreshes_started, 1);
    gate.add_permits(10);
    eventually("the one refresh finished", DEADLINE, || {
        s.cache.stats().refreshes_succeeded == 1
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_is_bounded_by_the_refresh_timeout() {
    let s = stale_entry(&[1], |b| b.refresh_timeout(Duration::from_millis(100))).await;
    let _: String = s
        .cache
        .get_or_load(&key(1), &policy(), || async {
            std::future::pending::<Result<String, String>>().await
        })
        .await
        .unwrap();
    eventually("the refresh timed out", DEADLINE, || {
        s.cache.stats().refreshes_failed == 1
    })
    .await;
    let v: String = s
        .cache
        .get_or_load(&key(1), &policy(), || async {
            Ok::<_, String>("new".into())
        })
        .await
        .unwrap();
    assert_eq!(v, "old", "still stale, and a new refresh may start");
    eventually("the next refresh succeeded", DEADLINE, || {
        s.cache.stats().refreshes_succeeded == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_cache_stops_its_refreshes() {
    let s = stale_entry(&[1], |b| b).await;
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = SetOnDrop(Arc::clone(&dropped));
    let _: String = s
        .cache
        .get_or_load(&key(1), &policy(), move || async move {
            let _flag = flag;
            std::future::pending::<Result<String, String>>().await
        })
        .await
        .unwrap();
    assert_eq!(s.cache.stats().refreshes_started, 1);
    let Setup {
        cache,
        _server,
        clock,
    } = s;
    drop(cache);
    eventually("the refresh future was dropped", DEADLINE, || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    drop((clock, _server));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_refresh_reloads_before_returning_and_falls_back_to_stale() {
    let s = stale_entry(&[1, 2], |b| b).await;
    let inline = Policy::builder()
        .fresh(Duration::from_secs(10))
        .stale(Duration::from_secs(100))
        .refresh_mode(RefreshMode::Inline)
        .build()
        .unwrap();
    let v: String = s
        .cache
        .get_or_load(&key(1), &inline, || async { Ok::<_, String>("new".into()) })
        .await
        .unwrap();
    assert_eq!(v, "new");
    let v: String = s
        .cache
        .get_or_load(&key(2), &inline, || async {
            Err::<String, _>("down".to_string())
        })
        .await
        .unwrap();
    assert_eq!(v, "old", "stale-if-error");
    assert_eq!(s.cache.stats().refreshes_started, 0);
    s.clock.advance(Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refresh_refreshes_a_hot_key_just_before_it_goes_stale() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .redis_url(server.url())
        .clock(Arc::new(clock.clone()))
        .rng_seed(1)
        .build()
        .unwrap();
    let xfetch = Policy::builder()
        .fresh(Duration::from_secs(10))
        .stale(Duration::from_secs(100))
        .jitter(0.0)
        .early_refresh(1.0)
        .build()
        .unwrap();
    // The load takes ~200 ms (delta). XFetch refreshes when -delta·ln(U) reaches the time left:
    // with 9 s left that needs U < e^-45 (never); with 1 ms left it happens ~99.5 % of calls.
    let _: String = cache
        .get_or_load(&key(1), &xfetch, || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, String>("v1".into())
        })
        .await
        .unwrap();
    clock.advance(Duration::from_secs(1));
    for _ in 0..50 {
        let _: String = cache
            .get_or_load(&key(1), &xfetch, || async { Ok::<_, String>("v2".into()) })
            .await
            .unwrap();
    }
    assert_eq!(
        cache.stats().refreshes_started,
        0,
        "nothing refreshes 9 s early"
    );
    clock.advance(Duration::from_millis(8_999));
    for _ in 0..20 {
        let v: String = cache
            .get_or_load(&key(1), &xfetch, || async { Ok::<_, String>("v2".into()) })
            .await
            .unwrap();
        assert_eq!(v, "v1", "an early refresh still serves the current value");
        if cache.stats().refreshes_started > 0 {
            break;
        }
    }
    assert_eq!(
        cache.stats().refreshes_started,
        1,
        "a refresh started before the entry went stale"
    );
    assert_eq!(cache.stats().stale_hits, 0);
    eventually("the early refresh stored v2", DEADLINE, || {
        cache.stats().refreshes_succeeded == 1
    })
    .await;
}

/// The real Redis store, whose reads can be held after they reached Redis: a reader that read
/// an entry just before a refresh replaced it.
#[derive(Debug)]
struct HeldReads {
    redis: action_cache_core::store::RedisStore,
    hold: AtomicBool,
    held: AtomicUsize,
    release: Semaphore,
}

#[async_trait::async_trait]
impl action_cache_core::store::Store for HeldReads {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let got = self.redis.get(key).await;
        if self.hold.load(Ordering::SeqCst) {
            self.held.fetch_add(1, Ordering::SeqCst);
            let _pass = self.release.acquire().await.expect("release open");
        }
        got
    }
    async fn set(&self, k: &str, v: &[u8], ttl: Duration, t: &[String]) -> Result<(), StoreError> {
        self.redis.set(k, v, ttl, t).await
    }
    async fn set_guarded(
        &self,
        k: &str,
        v: &[u8],
        ttl: Duration,
        t: &[String],
        guards: &[(String, u64)],
    ) -> Result<bool, StoreError> {
        self.redis.set_guarded(k, v, ttl, t, guards).await
    }
    async fn replace_if(
        &self,
        k: &str,
        expected: &[u8],
        v: &[u8],
        ttl: Duration,
        t: &[String],
    ) -> Result<bool, StoreError> {
        self.redis.replace_if(k, expected, v, ttl, t).await
    }
    async fn generations(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        self.redis.generations(keys).await
    }
    async fn bump_generations(&self, keys: &[String], ttl: Duration) -> Result<(), StoreError> {
        self.redis.bump_generations(keys, ttl).await
    }
    async fn delete(&self, k: &str) -> Result<bool, StoreError> {
        self.redis.delete(k).await
    }
    async fn try_lock(&self, k: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.redis.try_lock(k, token, ttl).await
    }
    async fn renew_lock(&self, k: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.redis.renew_lock(k, token, ttl).await
    }
    async fn unlock(&self, k: &str, token: &str) -> Result<(), StoreError> {
        self.redis.unlock(k, token).await
    }
    async fn delete_tagged(&self, tag_key: &str) -> Result<u64, StoreError> {
        self.redis.delete_tagged(tag_key).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        self.redis.delete_prefix(prefix).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_the_old_entry_does_not_start_a_second_refresh_after_the_first_finished() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let store = Arc::new(HeldReads {
        redis: action_cache_core::store::RedisStore::open(&server.url()).unwrap(),
        hold: AtomicBool::new(false),
        held: AtomicUsize::new(0),
        release: Semaphore::new(0),
    });
    let cache = Cache::builder()
        .store(store.clone())
        .op_timeout(Duration::from_secs(2))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for episode in 0..12 {
        let gate = Arc::new(Semaphore::new(0));
        cache.put(&key(1), &policy(), "old").await.unwrap();
        clock.advance(Duration::from_secs(10));
        let started = cache.stats().refreshes_started;
        let before = calls.load(Ordering::SeqCst);

        // The first stale reader starts the episode's refresh, whose loader waits at the gate.
        let v = cache
            .get_or_load(&key(1), &policy(), gated(&calls, &gate))
            .await;
        assert_eq!(v.unwrap(), "old");
        eventually("the refresh's loader runs", DEADLINE, || {
            calls.load(Ordering::SeqCst) == before + 1
        })
        .await;
        // A second reader reads the old entry, and its answer is held up on the way back.
        store.hold.store(true, Ordering::SeqCst);
        let late = {
            let (cache, loader) = (cache.clone(), gated(&calls, &gate));
            tokio::spawn(async move { cache.get_or_load(&key(1), &policy(), loader).await })
        };
        eventually("the late read reached Redis", DEADLINE, || {
            store.held.load(Ordering::SeqCst) == episode + 1
        })
        .await;
        store.hold.store(false, Ordering::SeqCst);
        // Meanwhile the refresh stores its value and finishes.
        let succeeded = cache.stats().refreshes_succeeded;
        gate.add_permits(1);
        eventually("the refresh finished", DEADLINE, || {
            cache.stats().refreshes_succeeded == succeeded + 1
        })
        .await;
        store.release.add_permits(1);
        assert_eq!(late.await.unwrap().unwrap(), "old");
        assert_eq!(
            cache.stats().refreshes_started - started,
            1,
            "episode {episode}: a reader of the replaced entry started a second refresh"
        );
        assert_eq!(calls.load(Ordering::SeqCst) - before, 1);
        clock.advance(Duration::from_secs(1));
    }
}
