//! Sentinel on real processes: one master, one replica, three `redis-server --sentinel`. The
//! master is killed under load: callers see no error and no wrong value (fail-open), and caching
//! resumes on the promoted replica without a restart.

use action_cache_core::{Cache, CacheBuilder, CacheKey, Policy};
use action_cache_testing::sentinel::SentinelDeployment;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

fn key(id: u64) -> CacheKey {
    let mut b = CacheKey::builder("sentinel");
    b.arg("id", &id).unwrap();
    b.build()
}

fn policy() -> Policy {
    Policy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap()
}

async fn get(cache: &Cache, id: u64) -> Result<String, String> {
    cache
        .get_or_load(&key(id), &policy(), move || async move {
            Ok::<_, String>(format!("value-{id}"))
        })
        .await
        .map_err(|e| e.to_string())
}

/// Reads fresh keys until one read is answered from the store (a write then a hit).
async fn until_cached(cache: &Cache, first_id: u64, what: &str, logs: impl Fn() -> String) {
    let end = tokio::time::Instant::now() + FAILOVER_DEADLINE;
    let mut id = first_id;
    loop {
        let hits = cache.stats().fresh_hits;
        assert_eq!(get(cache, id).await.unwrap(), format!("value-{id}"));
        assert_eq!(get(cache, id).await.unwrap(), format!("value-{id}"));
        if cache.stats().fresh_hits > hits {
            return;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "{what}: never cached: {:?}\n{}",
            cache.stats(),
            logs()
        );
        id += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_load_gives_no_caller_error_and_caching_resumes_on_the_new_master() {
    let mut deployment = SentinelDeployment::start();
    let nodes = deployment.sentinel_urls().join(",");
    // Configured as production would: from the environment.
    let cache = CacheBuilder::from_env_lookup(move |name| match name {
        "REDIS_SENTINEL_NODES" => Some(nodes.clone()),
        "REDIS_SENTINEL_MASTER" => Some(SentinelDeployment::MASTER.into()),
        _ => None,
    })
    .op_timeout(Duration::from_millis(200))
    .circuit_breaker(3, Duration::from_millis(200))
    .build()
    .unwrap();
    assert!(format!("{cache:?}").contains("sentinels"), "{cache:?}");
    until_cached(&cache, 0, "before the failover", || deployment.logs()).await;
    assert!(deployment.master().entry_count() > 0);

    let stop = Arc::new(AtomicBool::new(false));
    let (errors, wrong, calls) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let load: Vec<_> = (0..4u64)
        .map(|task| {
            let (cache, stop) = (cache.clone(), Arc::clone(&stop));
            let (errors, wrong, calls) =
                (Arc::clone(&errors), Arc::clone(&wrong), Arc::clone(&calls));
            tokio::spawn(async move {
                let mut n = task;
                while !stop.load(Ordering::Relaxed) {
                    let id = 1_000 + n % 50;
                    match get(&cache, id).await {
                        Ok(v) if v == format!("value-{id}") => {}
                        Ok(_) => {
                            wrong.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                    n += 7;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let old = deployment.master().port();
    deployment.master_mut().stop();
    let promoted = deployment.replica().port();
    let end = tokio::time::Instant::now() + FAILOVER_DEADLINE;
    while deployment.reported_master_port() != Some(promoted) {
        assert!(
            tokio::time::Instant::now() < end,
            "no failover from {old}; sentinel logs:\n{}",
            deployment.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until_cached(&cache, 10_000, "after the failover", || deployment.logs()).await;
    assert!(deployment
        .replica()
        .cli(&["INFO", "replication"])
        .contains("role:master"));
    assert!(deployment.replica().entry_count() > 0);

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let calls = calls.load(Ordering::Relaxed);
    assert!(calls > 100, "the load ran: {calls} calls");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "caller errors");
    assert_eq!(wrong.load(Ordering::Relaxed), 0, "wrong values");
    assert!(
        cache.stats().store_errors > 0,
        "the failover was felt: {:?}",
        cache.stats()
    );
    eprintln!(
        "sentinel failover: {calls} calls under load, {:?}",
        cache.stats()
    );
}
