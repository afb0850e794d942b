//! Purges and puts win over loads already in flight: a miss whose load began before an
//! `invalidate`, `invalidate_tag`, `invalidate_prefix` or `put` of its entry, from this process
//! or another, and ended after it, hands its value to its own caller but does not store it.
//! Real Redis throughout; "another process" is a second `Cache` value sharing nothing in process.

mod support;

use action_cache_core::store::Store;
use action_cache_core::{Cache, CacheKey, Loaded, ManualClock, Policy, RefreshFuture};
use action_cache_testing::{bounded, eventually, RedisServer};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::hooked::{Hooked, Hooks};
use tokio::sync::{oneshot, Notify};

const DEADLINE: Duration = Duration::from_secs(10);

fn key(name: &str, id: u32) -> CacheKey {
    let mut b = CacheKey::builder(name);
    b.arg("id", &id).unwrap().tag(format!("account:{id}"));
    b.build()
}

fn policy() -> Policy {
    Policy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap()
}

fn cache(server: &RedisServer) -> Cache {
    Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// How a purge reaches the entry whose load is in flight.
#[derive(Clone, Copy, Debug)]
enum Purge {
    Key,
    Tag,
    Prefix,
}

async fn purge(cache: &Cache, how: Purge, k: &CacheKey) {
    match how {
        Purge::Key => {
            cache.invalidate(k).await.unwrap();
        }
        Purge::Tag => {
            cache.invalidate_tag(&k.tags()[0]).await.unwrap();
        }
        Purge::Prefix => {
            cache.invalidate_prefix(k.name()).await.unwrap();
        }
    }
}

/// Starts a load of `k` on `loader_cache` that returns `"old"` once `release` is notified, and
/// returns when the loader is running.
async fn slow_load(
    loader_cache: &Cache,
    k: &CacheKey,
    release: Arc<Notify>,
) -> tokio::task::JoinHandle<String> {
    let (started_tx, started_rx) = oneshot::channel();
    let (cache, k) = (loader_cache.clone(), k.clone());
    let handle = tokio::spawn(async move {
        cache
            .get_or_load(&k, &policy(), move || async move {
                let _ = started_tx.send(());
                release.notified().await;
                Ok::<_, String>("old".to_string())
            })
            .await
            .unwrap()
    });
    bounded("the slow load to start", DEADLINE, started_rx)
        .await
        .unwrap();
    handle
}

/// The value a later caller sees (its loader answers `"new"`), and how often that loader ran.
async fn next_read(cache: &Cache, k: &CacheKey) -> (String, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let v = cache
        .get_or_load(k, &policy(), move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>("new".to_string())
        })
        .await
        .unwrap();
    (v, calls.load(Ordering::SeqCst))
}

async fn purge_during_load(how: Purge, same_process: bool) {
    let server = RedisServer::start();
    let a = cache(&server);
    let b = if same_process {
        a.clone()
    } else {
        cache(&server)
    };
    let k = key(&format!("race.{how:?}.{same_process}"), 42);
    let release = Arc::new(Notify::new());
    let load = slow_load(&a, &k, Arc::clone(&release)).await;

    // The CRM says account 42 changed while the old answer is still on its way.
    purge(&b, how, &k).await;
    release.notify_one();
    assert_eq!(
        bounded("the slow load", DEADLINE, load).await.unwrap(),
        "old",
        "the load's own caller gets its value"
    );

    // Every later caller, in either process, must get post-purge data.
    for cache in [&b, &a] {
        let (v, _) = next_read(cache, &k).await;
        assert_eq!(
            v, "new",
            "{how:?} purge was undone by a load already in flight"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_purge_from_this_process_wins_over_a_load_in_flight() {
    purge_during_load(Purge::Key, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_purge_from_another_process_wins_over_a_load_in_flight() {
    purge_during_load(Purge::Key, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_purge_from_another_process_wins_over_a_load_in_flight() {
    purge_during_load(Purge::Tag, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_purge_from_this_process_wins_over_a_load_in_flight() {
    purge_during_load(Purge::Tag, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_purge_from_another_process_wins_over_a_load_in_flight() {
    purge_during_load(Purge::Prefix, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_during_a_load_survives_it() {
    for same_process in [true, false] {
        let server = RedisServer::start();
        let a = cache(&server);
        let b = if same_process {
            a.clone()
        } else {
            cache(&server)
        };
        let k = key("race.put", 7);
        let release = Arc::new(Notify::new());
        let load = slow_load(&a, &k, Arc::clone(&release)).await;

        b.put(&k, &policy(), "put").await.unwrap();
        release.notify_one();
        assert_eq!(
            bounded("the slow load", DEADLINE, load).await.unwrap(),
            "old"
        );

        for cache in [&a, &b] {
            let (v, calls) = next_read(cache, &k).await;
            assert_eq!(
                v, "put",
                "the slow load replaced the put (same process: {same_process})"
            );
            assert_eq!(calls, 0, "the put value is a fresh hit");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_joins_a_load_after_a_purge_gets_post_purge_data() {
    let server = RedisServer::start();
    let a = cache(&server);
    let k = key("race.join", 1);
    let release = Arc::new(Notify::new());
    let load = slow_load(&a, &k, Arc::clone(&release)).await;
    a.invalidate(&k).await.unwrap();

    // This caller arrives after the purge returned, while the pre-purge load is still running.
    let late = {
        let (a, k) = (a.clone(), k.clone());
        tokio::spawn(async move { next_read(&a, &k).await })
    };
    action_cache_testing::until_coalesced(&a, 1, DEADLINE).await;
    release.notify_one();
    assert_eq!(
        bounded("the slow load", DEADLINE, load).await.unwrap(),
        "old"
    );
    let (v, _) = bounded("the late caller", DEADLINE, late).await.unwrap();
    assert_eq!(
        v, "new",
        "a caller that arrived after the purge got the purged value"
    );
}

/// The same for a value its loader says not to store: it was never in Redis, but it was loaded
/// before the purge, and a caller that arrived after the purge returned must not be given it.
/// Without a purge, every caller that joined the load shares it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_joins_an_unstored_load_after_a_purge_gets_post_purge_data() {
    let server = RedisServer::start();
    let a = cache(&server);
    for purged in [true, false] {
        let k = key(&format!("race.join.no_store.{purged}"), 2);
        let (started_tx, started_rx) = oneshot::channel();
        let release = Arc::new(Notify::new());
        let leader = {
            let (a, k, release) = (a.clone(), k.clone(), Arc::clone(&release));
            tokio::spawn(async move {
                let load = move || async move {
                    let _ = started_tx.send(());
                    release.notified().await;
                    Ok::<_, String>(Loaded::no_store("old".to_string()))
                };
                let refresh = || -> RefreshFuture<_, _> { unreachable!("no entry to refresh") };
                a.get_or_load_with_loader_policy(&k, &policy(), load, refresh)
                    .await
                    .unwrap()
            })
        };
        bounded("the load to start", DEADLINE, started_rx)
            .await
            .unwrap();
        let waits = a.stats().coalesced_waits;
        let early = {
            let (a, k) = (a.clone(), k.clone());
            tokio::spawn(async move { next_read(&a, &k).await })
        };
        action_cache_testing::until_coalesced(&a, waits + 1, DEADLINE).await;
        if purged {
            a.invalidate(&k).await.unwrap();
        }
        let late = {
            let (a, k) = (a.clone(), k.clone());
            tokio::spawn(async move { next_read(&a, &k).await })
        };
        action_cache_testing::until_coalesced(&a, waits + 2, DEADLINE).await;
        release.notify_one();
        let (v, _) = bounded("the load", DEADLINE, leader).await.unwrap();
        assert_eq!(v, "old");
        let early = bounded("the early caller", DEADLINE, early).await.unwrap();
        let late = bounded("the late caller", DEADLINE, late).await.unwrap();
        if purged {
            // The early caller joined during the load too, before the purge: the value is one
            // it may take, but nothing tells the two apart, so it may load again as well, and
            // the late caller may share that load.
            assert_eq!(
                late.0, "new",
                "a caller that arrived after the purge got a value loaded before it"
            );
        } else {
            let old = ("old".to_string(), 0);
            assert_eq!((early, late), (old.clone(), old), "nothing to reload for");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_did_not_race_a_purge_is_stored() {
    // The guard must not turn every miss into an uncached call.
    let server = RedisServer::start();
    let a = cache(&server);
    let b = cache(&server);
    let k = key("race.none", 3);
    let release = Arc::new(Notify::new());
    let load = slow_load(&a, &k, Arc::clone(&release)).await;
    // A purge of another key and another tag does not concern this load.
    b.invalidate(&key("race.none", 4)).await.unwrap();
    b.invalidate_tag("account:4").await.unwrap();
    release.notify_one();
    assert_eq!(
        bounded("the slow load", DEADLINE, load).await.unwrap(),
        "old"
    );
    let (v, calls) = next_read(&b, &k).await;
    assert_eq!((v.as_str(), calls), ("old", 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_guarded_by_a_purge_mark_loses_to_a_purge_in_between() {
    let server = RedisServer::start();
    let a = cache(&server);
    let b = cache(&server);
    for how in [Purge::Key, Purge::Tag, Purge::Prefix] {
        let k = key(&format!("mark.{how:?}"), 9);
        let mark = a.purge_mark(&k).await.unwrap();
        // The value is fetched; meanwhile another process purges.
        purge(&b, how, &k).await;
        let stored = a
            .put_unless_purged(&k, &policy(), "old", &mark)
            .await
            .unwrap();
        assert!(!stored, "{how:?}: the guarded write undid the purge");
        let (v, _) = next_read(&b, &k).await;
        assert_eq!(v, "new", "{how:?}");
    }
    // Without a purge in between it stores.
    let k = key("mark.none", 10);
    let mark = a.purge_mark(&k).await.unwrap();
    assert!(a
        .put_unless_purged(&k, &policy(), "kept", &mark)
        .await
        .unwrap());
    assert_eq!(next_read(&b, &k).await, ("kept".to_string(), 0));
    // A mark guards only the key it was taken for.
    assert!(a
        .put_unless_purged(&key("mark.other", 11), &policy(), "x", &mark)
        .await
        .is_err());
}

/// Once armed, holds a guarded write that succeeded after Redis applied it, before the cache
/// hears back, until released. That is the moment a purge can slip in between a load's write
/// and its fill of the near cache.
#[derive(Debug, Default)]
struct HeldWrite {
    armed: AtomicBool,
    written: Notify,
    release: Notify,
}

impl HeldWrite {
    async fn hold(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.written.notify_one();
            self.release.notified().await;
        }
    }
}

#[async_trait]
impl Hooks for HeldWrite {
    async fn after_set_guarded(&self, _key: &str) {
        self.hold().await;
    }
    async fn after_replace_if(&self, _key: &str) {
        self.hold().await;
    }
}

/// A near-cached cache on `store`, its subscription up (a warm-up key answered from process).
async fn near_cache_on(store: &Arc<Hooked<HeldWrite>>, clock: Option<&ManualClock>) -> Cache {
    let mut builder = Cache::builder()
        .store(Arc::clone(store) as Arc<dyn Store>)
        .op_timeout(Duration::from_secs(2))
        .near_cache(100);
    if let Some(clock) = clock {
        builder = builder.clock(Arc::new(clock.clone()));
    }
    let cache = builder.build().unwrap();
    let warm = key("race.near.warm", 1);
    let end = tokio::time::Instant::now() + DEADLINE;
    while cache.stats().near_hits == 0 {
        assert!(
            tokio::time::Instant::now() < end,
            "no near hit: {:?}",
            cache.stats()
        );
        next_read(&cache, &warm).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cache
}

/// Starts a load of `k` that answers `"old"` and holds its write once Redis applied it, then
/// purges `k` (the CRM says it changed): Redis no longer holds "old", but the load, still held,
/// has not handed out its value. Returns the load; the caller releases it.
async fn purge_a_held_write(
    cache: &Cache,
    store: &Hooked<HeldWrite>,
    k: &CacheKey,
) -> tokio::task::JoinHandle<String> {
    store.hooks.armed.store(true, Ordering::SeqCst);
    let written = store.hooks.written.notified();
    let load = {
        let (cache, k) = (cache.clone(), k.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&k, &policy(), || async {
                    Ok::<_, String>("old".to_string())
                })
                .await
                .unwrap()
        })
    };
    bounded("the load's write", DEADLINE, written).await;
    assert!(
        cache.invalidate(k).await.unwrap(),
        "the load's entry was in Redis"
    );
    load
}

/// A purge that lands after a load's write reached Redis but before the load kept its value in
/// the near cache: the write is undone by the purge in Redis, and must not live on in the near
/// cache either (it would be served until its fresh window ended).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_between_a_loads_write_and_its_near_fill_keeps_the_value_out_of_the_near_cache() {
    let server = RedisServer::start();
    let store = Arc::new(Hooked::new(&server, HeldWrite::default()));
    let cache = near_cache_on(&store, None).await;

    let k = key("race.near", 42);
    let load = purge_a_held_write(&cache, &store, &k).await;
    store.hooks.release.notify_one();
    assert_eq!(bounded("the load", DEADLINE, load).await.unwrap(), "old");

    let (v, loads) = next_read(&cache, &k).await;
    assert_eq!(
        (v.as_str(), loads),
        ("new", 1),
        "the near cache served a value the purge removed"
    );
}

/// A caller that arrives after a purge returned and joins, in its own process, a load whose
/// write reached Redis just before that purge and which has not handed out its value yet: the
/// purge removed that value, so the caller must not be given it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_joins_a_load_whose_write_a_purge_then_removed_gets_post_purge_data() {
    let server = RedisServer::start();
    let store = Arc::new(Hooked::new(&server, HeldWrite::default()));
    let cache = Cache::builder()
        .store(Arc::clone(&store) as Arc<dyn Store>)
        .op_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let k = key("race.join.written", 5);
    let load = purge_a_held_write(&cache, &store, &k).await;

    // This caller arrives after the purge returned, misses, and joins the load still in flight.
    let late = {
        let (cache, k) = (cache.clone(), k.clone());
        tokio::spawn(async move { next_read(&cache, &k).await })
    };
    action_cache_testing::until_coalesced(&cache, 1, DEADLINE).await;
    store.hooks.release.notify_one();
    assert_eq!(bounded("the load", DEADLINE, load).await.unwrap(), "old");
    let (v, loads) = bounded("the late caller", DEADLINE, late).await.unwrap();
    assert_eq!(
        (v.as_str(), loads),
        ("new", 1),
        "a caller that arrived after the purge got the value it removed"
    );
}

/// The same moment for a background refresh: its compare-and-set write reached Redis, then a
/// purge removed it before the refresh kept its value near.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_between_a_refreshs_write_and_its_near_fill_keeps_the_value_out_of_the_near_cache()
{
    let server = RedisServer::start();
    let store = Arc::new(Hooked::new(&server, HeldWrite::default()));
    let clock = ManualClock::new();
    let cache = near_cache_on(&store, Some(&clock)).await;
    let k = key("race.near.refresh", 7);
    let windows = Policy::builder()
        .fresh(Duration::from_secs(10))
        .stale(Duration::from_secs(60))
        .jitter(0.0)
        .build()
        .unwrap();
    let read = |loaded: &'static str| {
        let (cache, k, windows) = (cache.clone(), k.clone(), windows.clone());
        async move {
            cache
                .get_or_load(&k, &windows, move || async move {
                    Ok::<_, String>(loaded.to_string())
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(read("v1").await, "v1");

    // Past the fresh window: the read answers stale and starts a refresh, whose write is held
    // after Redis applied it.
    clock.advance(Duration::from_secs(11));
    store.hooks.armed.store(true, Ordering::SeqCst);
    let written = store.hooks.written.notified();
    assert_eq!(read("refreshed").await, "v1", "a stale hit answers at once");
    bounded("the refresh's write", DEADLINE, written).await;
    assert!(
        cache.invalidate(&k).await.unwrap(),
        "the refreshed entry was in Redis"
    );
    store.hooks.release.notify_one();
    eventually("the refresh to end", DEADLINE, || {
        cache.stats().refreshes_succeeded == 1
    })
    .await;

    assert_eq!(
        read("post-purge").await,
        "post-purge",
        "the near cache served a refreshed value the purge removed"
    );
}

/// Concurrent purges of one tag, from several processes: each returns only once the tagged
/// entry is gone, so a read that begins after any of them returned gets post-purge data. The
/// tag set holds thousands of other members, so the purges overlap over many batches; a purge
/// that took members out of the set before deleting them let the others find it empty and
/// return while the entry still existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_purges_of_one_tag_each_return_only_once_its_entry_is_gone() {
    const ROUNDS: usize = 30;
    const PURGES: usize = 4;
    let server = RedisServer::start();
    // Each purge with a reader of its own, which shares no read with the others.
    let caches: Vec<(Cache, Cache)> = (0..PURGES)
        .map(|_| (cache(&server), cache(&server)))
        .collect();
    let reader = cache(&server);
    let k = key("tagrace", 1);
    let tag = k.tags()[0].clone();
    let tag_set = format!("{}#tag:{tag}", reader.prefix());
    let others: Vec<String> = (0..3_000).map(|i| format!("ac:other:{i}")).collect();
    let mut early = Vec::new();
    for round in 0..ROUNDS {
        reader.put(&k, &policy(), &"old".to_string()).await.unwrap();
        let mut sadd = vec!["SADD", tag_set.as_str()];
        sadd.extend(others.iter().map(String::as_str));
        server.cli(&sadd);
        let purges: Vec<_> = caches
            .iter()
            .map(|(c, reader)| {
                let (c, reader, k, tag) = (c.clone(), reader.clone(), k.clone(), tag.clone());
                tokio::spawn(async move {
                    c.invalidate_tag(&tag).await.unwrap();
                    // Begins after this purge was acknowledged.
                    next_read(&reader, &k).await.0
                })
            })
            .collect();
        for p in purges {
            let seen = bounded("a purge and the read after it", DEADLINE, p)
                .await
                .unwrap();
            if seen != "new" {
                early.push(round);
            }
        }
    }
    assert!(
        early.is_empty(),
        "a read begun after an acknowledged invalidate_tag got the purged value in rounds {early:?}"
    );
}
