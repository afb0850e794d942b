//! Miss coalescing in one process and across processes, and what happens when the shared load
//! fails, panics, is abandoned or never returns. Real Redis throughout.

mod support;

use action_cache_core::store::Store;
use action_cache_core::{Cache, CacheKey, LoadError, Policy, StoreError};
use action_cache_testing::{eventually, until_coalesced, RedisServer};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::hooked::{Hooked, Hooks};
use tokio::sync::Semaphore;

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
                    until_coalesced(&watcher, 999, DEADLINE).await;
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
                    until_coalesced(&a, 199, DEADLINE).await;
                    until_coalesced(&b, 199, DEADLINE).await;
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
                    until_coalesced(&watcher, 9, DEADLINE).await;
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
    until_coalesced(&cache, 10, DEADLINE).await;
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
                    until_coalesced(&watcher, 5, DEADLINE).await;
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
    // Each gave up after its wait with a typed error: never hung, never loaded on its own.
    for r in [same, other] {
        assert!(matches!(r, Err(LoadError::TimedOut { .. })), "{r:?}");
    }
    assert_eq!(cache.stats().loads + other_process.stats().loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_outlasting_the_lock_wait_get_a_time_out_and_none_loads() {
    // Process A holds the load lock with a slow load (1 s), renewing it. Process B's 50 callers
    // wait out `lock_wait` (300 ms): they must give up with a typed error, not each call the
    // loader (a slow backend must not get a herd), and A's caller still gets its value.
    let server = RedisServer::start();
    let build = || {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .lock_wait(Duration::from_millis(300))
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let k = key("outlasting");
    let (a_loads, b_loads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let slow_a = {
        let (a, k, loads) = (a.clone(), k.clone(), Arc::clone(&a_loads));
        tokio::spawn(async move {
            a.get_or_load(&k, &policy(), move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, String>("from A".to_string())
            })
            .await
        })
    };
    eventually("A holds the lock", DEADLINE, || {
        a_loads.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (b, k, loads) = (b.clone(), k.clone(), Arc::clone(&b_loads));
        tasks.push(tokio::spawn(async move {
            b.get_or_load(&k, &policy(), move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, String>("from B".to_string())
            })
            .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert!(matches!(r, Err(LoadError::TimedOut { .. })), "{r:?}");
    }
    assert_eq!(slow_a.await.unwrap().unwrap(), "from A");
    assert_eq!(b_loads.load(Ordering::SeqCst), 0, "B's waiters loaded");
}

/// Two injections into the real Redis store: its first read can answer "absent" (a read that
/// reached Redis just before another process's write), and reads can be held at a gate. It
/// counts the reads that reach it.
#[derive(Debug)]
struct Injected {
    first_read_absent: AtomicBool,
    gate: Semaphore,
    gets: AtomicUsize,
}

impl Injected {
    fn new(server: &RedisServer, first_read_absent: bool, gate_open: bool) -> Hooked<Injected> {
        let hooks = Injected {
            first_read_absent: AtomicBool::new(first_read_absent),
            gate: Semaphore::new(if gate_open { Semaphore::MAX_PERMITS } else { 0 }),
            gets: AtomicUsize::new(0),
        };
        Hooked::new(server, hooks)
    }
}

#[async_trait]
impl Hooks for Injected {
    async fn before_get(&self, _key: &str) -> Option<Result<Option<Vec<u8>>, StoreError>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let _pass = self.gate.acquire().await.expect("gate open");
        if self.first_read_absent.swap(false, Ordering::SeqCst) {
            return Some(Ok(None));
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_whose_read_raced_the_leaders_write_does_not_load_again() {
    // Process A loads and stores the value and releases its lock. Process B's read had reached
    // Redis just before A's write (injected: B's first read answers "absent"), so B misses and
    // finds the lock free. The double-check under the lock must find A's value: one loader call.
    let server = RedisServer::start();
    let a = Cache::builder()
        .redis_url(server.url())
        .op_timeout(LOADED)
        .build()
        .unwrap();
    let racing = Injected::new(&server, true, true);
    let b = Cache::builder()
        .store(Arc::new(racing))
        .op_timeout(LOADED)
        .build()
        .unwrap();
    let k = key("raced-write");
    let loads = Arc::new(AtomicUsize::new(0));
    for cache in [&a, &b] {
        let loads = Arc::clone(&loads);
        let v = cache
            .get_or_load(&k, &policy(), move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>("v".to_string())
            })
            .await
            .unwrap();
        assert_eq!(v, "v");
    }
    assert_eq!(b.stats().misses, 1, "B's raced read was a miss");
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "but B did not call the loader again"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_readers_of_one_key_share_the_next_get() {
    // 100 callers read one cached key while the first read is held at the gate. On this
    // single-threaded runtime each spawned caller runs up to its first wait before the next
    // starts, so all 100 are reading before the gate opens. The 99 that found the first read
    // in flight must not take its answer (it may predate a purge they saw acknowledged), nor
    // queue 99 identical commands: they share one more GET, sent once the first ended.
    let server = RedisServer::start();
    let store = Arc::new(Injected::new(&server, false, false));
    let cache = Cache::builder()
        .store(Arc::clone(&store) as Arc<dyn Store>)
        .op_timeout(LOADED)
        .build()
        .unwrap();
    let k = key("shared-read");
    cache.put(&k, &policy(), "v").await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (cache, k, started) = (cache.clone(), k.clone(), Arc::clone(&started));
        tasks.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            cache
                .get_or_load(&k, &policy(), || async {
                    Ok::<String, String>("unused".into())
                })
                .await
        }));
    }
    while started.load(Ordering::SeqCst) < 100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        store.hooks.gets.load(Ordering::SeqCst),
        1,
        "one read reached the store; the next waits for it"
    );
    store.hooks.gate.add_permits(Semaphore::MAX_PERMITS);
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "v");
    }
    assert_eq!(
        store.hooks.gets.load(Ordering::SeqCst),
        2,
        "the first read, then one shared by the 99 that arrived while it was in flight"
    );
    assert_eq!(cache.stats().fresh_hits, 100);
}
