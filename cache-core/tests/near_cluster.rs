//! The near cache on a real Redis Cluster: every write and purge made by one process, wherever
//! its key's slot lives, reaches the other process's near cache; and when the node a near cache
//! listens on dies, that near cache is emptied and bypassed, then resumes on another node.

use action_cache_core::{Cache, CacheKey, Policy};
use action_cache_testing::{eventually, RedisCluster};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);
/// Enough ids that their entries (and the tags below) land on every master.
const IDS: u32 = 24;

fn key(id: u32) -> CacheKey {
    let mut b = CacheKey::builder("near.cluster");
    b.arg("id", &id)
        .unwrap()
        .tag(format!("item:{id}"))
        .tag(if id.is_multiple_of(2) { "even" } else { "odd" });
    b.build()
}

fn policy() -> Policy {
    Policy::builder()
        .fresh(Duration::from_secs(60))
        .stale(Duration::from_secs(120))
        .jitter(0.0)
        .build()
        .unwrap()
}

fn near_cache(cluster: &RedisCluster) -> Cache {
    Cache::builder()
        .redis_cluster(cluster.seed_urls())
        .op_timeout(Duration::from_secs(2))
        .near_cache(1_000)
        .build()
        .unwrap()
}

async fn get(cache: &Cache, id: u32, loaded: &str) -> String {
    let loaded = loaded.to_string();
    cache
        .get_or_load(&key(id), &policy(), move || async move {
            Ok::<_, String>(loaded)
        })
        .await
        .unwrap()
}

/// Reads `id` until the near cache answers it (subscribed, and holding the key).
async fn until_near_hit(cache: &Cache, id: u32) {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let before = cache.stats().near_hits;
        get(cache, id, "unused").await;
        if cache.stats().near_hits > before {
            return;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "no near hit for {id}: {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads `id` from `cache` until it returns `want`; returns how long that took.
async fn until_reads(cache: &Cache, id: u32, want: &str) -> Duration {
    let started = Instant::now();
    let end = tokio::time::Instant::now() + DEADLINE;
    while get(cache, id, want).await != want {
        assert!(
            tokio::time::Instant::now() < end,
            "{id}: the other near cache kept serving a replaced or purged value"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    started.elapsed()
}

/// Fills both caches' near tiers with `value` for every id.
async fn warm(a: &Cache, b: &Cache, value: &str) {
    for id in 0..IDS {
        a.put(&key(id), &policy(), value).await.unwrap();
    }
    for id in 0..IDS {
        until_near_hit(a, id).await;
        until_near_hit(b, id).await;
        assert_eq!(get(b, id, "unused").await, value);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_purges_on_any_slot_reach_the_other_processs_near_cache() {
    let cluster = RedisCluster::start(3, 0);
    let (a, b) = (near_cache(&cluster), near_cache(&cluster));
    let mut slowest = Duration::ZERO;

    // Puts: B's near copies are replaced, key by key, whatever master holds the key.
    warm(&a, &b, "v1").await;
    for id in 0..IDS {
        a.put(&key(id), &policy(), "v2").await.unwrap();
        slowest = slowest.max(until_reads(&b, id, "v2").await);
    }
    // Purges by key.
    for id in 0..IDS {
        assert!(a.invalidate(&key(id)).await.unwrap());
        slowest = slowest.max(until_reads(&b, id, &format!("after purge {id}")).await);
    }
    // Purges by tag: the "even" tag's entries live on several masters.
    warm(&a, &b, "v3").await;
    assert_eq!(a.invalidate_tag("even").await.unwrap(), u64::from(IDS / 2));
    for id in 0..IDS {
        if id.is_multiple_of(2) {
            until_reads(&b, id, "after tag purge").await;
        } else {
            until_near_hit(&b, id).await;
            assert_eq!(get(&b, id, "unused").await, "v3", "odd ids were not purged");
        }
    }
    // Purges by prefix reach every master, and every near copy.
    warm(&a, &b, "v4").await;
    assert_eq!(
        a.invalidate_prefix("near.cluster").await.unwrap(),
        u64::from(IDS)
    );
    for id in 0..IDS {
        until_reads(&b, id, "after prefix purge").await;
    }
    eprintln!("slowest put/purge propagation to the other near cache: {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_node_it_listens_on_empties_the_near_cache_until_it_resubscribes() {
    let mut cluster = RedisCluster::start(3, 1);
    let (a, b) = (near_cache(&cluster), near_cache(&cluster));
    warm(&a, &b, "v1").await;

    // The near cache subscribes on the first seed that answers: node 0. Stop it (a master or a
    // replica; its slots fail over to its peer when it is a master).
    let resets = b.stats().near_resets;
    cluster.node_mut(0).stop();
    eventually("B noticed its lost subscription", DEADLINE, || {
        b.stats().near_resets > resets
    })
    .await;
    cluster.wait_ok(DEADLINE);

    // Writes announced while B listens nowhere, or elsewhere, are never hidden by a stale near
    // copy: every read gets the new value.
    for id in 0..IDS {
        let want = format!("after failover {id}");
        let end = tokio::time::Instant::now() + DEADLINE;
        while a.put(&key(id), &policy(), &want).await.is_err() {
            assert!(
                tokio::time::Instant::now() < end,
                "the cluster never took writes again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        until_reads(&b, id, &want).await;
    }
    // B listens again on a live node: near hits come back, and announcements reach it.
    until_near_hit(&b, 0).await;
    a.put(&key(0), &policy(), "resubscribed").await.unwrap();
    until_reads(&b, 0, "resubscribed").await;
}
