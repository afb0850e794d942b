//! The engine on a real Redis Cluster: windows, coalescing, tags across slots, prefix
//! invalidation across masters, and a master failover under load.

use action_cache_core::{Cache, CacheKey, ManualClock, Policy};
use action_cache_testing::{eventually, RedisCluster};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn key(name: &str, id: u32, tags: &[&str]) -> CacheKey {
    let mut b = CacheKey::builder(name);
    b.arg("id", &id).unwrap();
    for t in tags {
        b.tag(*t);
    }
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

fn cache_on(cluster: &RedisCluster, clock: Option<&ManualClock>) -> Cache {
    let mut b = Cache::builder()
        .redis_cluster(cluster.seed_urls())
        .op_timeout(Duration::from_secs(2));
    if let Some(c) = clock {
        b = b.clock(Arc::new(c.clone()));
    }
    b.build().unwrap()
}

async fn get(cache: &Cache, k: &CacheKey, calls: &Arc<AtomicUsize>, tag: &str) -> String {
    let (calls, tag) = (Arc::clone(calls), tag.to_string());
    cache
        .get_or_load(k, &policy(), move || async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, String>(format!("{tag}{n}"))
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_coalescing_tags_and_prefix_work_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let clock = ManualClock::new();
    let cache = cache_on(&cluster, Some(&clock));

    // Windows, with a stale hit refreshing through the lock and compare-and-set.
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("cluster.windows", 1, &[]);
    assert_eq!(get(&cache, &k, &calls, "v").await, "v1");
    assert_eq!(get(&cache, &k, &calls, "v").await, "v1");
    clock.advance(Duration::from_secs(10));
    assert_eq!(get(&cache, &k, &calls, "v").await, "v1");
    eventually("refresh", DEADLINE, || {
        cache.stats().refreshes_succeeded == 1
    })
    .await;
    assert_eq!(get(&cache, &k, &calls, "v").await, "v2");
    clock.advance(Duration::from_secs(100));
    assert_eq!(get(&cache, &k, &calls, "v").await, "v3");

    // Two caches (two processes) coalesce their misses through the cluster lock.
    let other = cache_on(&cluster, Some(&clock));
    let loads = Arc::new(AtomicUsize::new(0));
    let k = key("cluster.stampede", 1, &[]);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = if i % 2 == 0 {
            cache.clone()
        } else {
            other.clone()
        };
        let (k, loads, a, b) = (k.clone(), Arc::clone(&loads), cache.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            c.get_or_load(&k, &policy(), move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                let end = tokio::time::Instant::now() + DEADLINE;
                while a.stats().coalesced_waits < 99 || b.stats().coalesced_waits < 99 {
                    assert!(tokio::time::Instant::now() < end);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok::<_, String>("shared".to_string())
            })
            .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "shared");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // Tags: entries of one account spread over many slots, the tag set in yet another.
    let p = policy();
    for id in 0..30 {
        cache
            .put(&key("cluster.summary", id, &["account:42"]), &p, &id)
            .await
            .unwrap();
        cache
            .put(&key("cluster.orders", id, &["account:42"]), &p, &id)
            .await
            .unwrap();
    }
    cache
        .put(&key("cluster.summary", 99, &["account:7"]), &p, &99)
        .await
        .unwrap();
    let masters_with_entries = cluster
        .masters()
        .into_iter()
        .filter(|&i| cluster.nodes()[i].cli(&["DBSIZE"]).parse::<u64>().unwrap() > 0)
        .count();
    assert_eq!(
        masters_with_entries, 3,
        "entries are spread over every master"
    );
    assert_eq!(cache.invalidate_tag("account:42").await.unwrap(), 60);
    assert_eq!(cache.invalidate_tag("account:7").await.unwrap(), 1);

    // Prefix invalidation scans every master.
    for id in 0..100 {
        cache
            .put(&key("cluster.bulk", id, &[]), &p, &id)
            .await
            .unwrap();
    }
    assert_eq!(cache.invalidate_prefix("cluster.bulk").await.unwrap(), 100);
    assert_eq!(
        cache.invalidate_prefix("cluster.").await.unwrap(),
        2,
        "the windows and stampede entries"
    );
    assert_eq!(cluster.entry_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_master_under_load_loses_no_caller_and_the_cache_resumes() {
    let mut cluster = RedisCluster::start(3, 1);
    let cache = Cache::builder()
        .redis_cluster(cluster.seed_urls())
        .op_timeout(Duration::from_millis(200))
        .circuit_breaker(5, Duration::from_millis(200))
        .build()
        .unwrap();
    let value = |id: u32| format!("value-{id}");
    let call = |cache: Cache, id: u32| async move {
        cache
            .get_or_load(&key("failover", id, &[]), &policy(), move || async move {
                Ok::<_, String>(format!("value-{id}"))
            })
            .await
            .expect("fail-open: never an error")
    };
    for id in 0..50 {
        assert_eq!(call(cache.clone(), id).await, value(id));
    }
    let victim = cluster.masters()[0];
    cluster.node_mut(victim).stop();

    // Keep the load going through the failover: every answer correct, none an error.
    let end = tokio::time::Instant::now() + DEADLINE;
    let mut resumed = false;
    while tokio::time::Instant::now() < end {
        let before = cache.stats().fresh_hits;
        for id in 0..50 {
            assert_eq!(call(cache.clone(), id).await, value(id));
        }
        let hits = cache.stats().fresh_hits - before;
        if hits == 50 {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        resumed,
        "the cache never served all keys from the cluster again: {:?}",
        cache.stats()
    );
    assert!(
        cache.stats().store_errors > 0,
        "the failover was felt (and survived)"
    );
}
