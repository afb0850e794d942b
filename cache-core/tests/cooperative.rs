//! Hits answered without I/O (the memory store, the near cache) spend tokio's cooperative
//! budget: a hot loop of them must not starve other tasks or the timers.

use action_cache_core::{Cache, CacheKey, Policy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Each task's bound, so a starved timer makes the test fail instead of hang.
const MAX_HITS: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_in_process_hits_let_a_timer_fire() {
    let cache = Cache::in_memory();
    let policy = Policy::new(Duration::from_secs(300), Duration::from_secs(900)).unwrap();
    let mut b = CacheKey::builder("coop");
    b.arg("id", &1).unwrap();
    let key = b.build();
    let v: String = cache
        .get_or_load(&key, &policy, || async { Ok::<_, String>("v".into()) })
        .await
        .unwrap();
    assert_eq!(v, "v");

    let stop = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for _ in 0..64 {
        let (cache, policy, key) = (cache.clone(), policy.clone(), key.clone());
        let (stop, hits) = (Arc::clone(&stop), Arc::clone(&hits));
        loops.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < MAX_HITS {
                let v: String = cache
                    .get_or_load(&key, &policy, || async { Ok::<_, String>("x".into()) })
                    .await
                    .unwrap();
                assert_eq!(v, "v");
                n += 1;
            }
            hits.fetch_add(n, Ordering::Relaxed);
            n
        }));
    }
    // A timer that must fire while the hit loops run.
    let timer = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut finished_by_bound = 0;
    for l in loops {
        if l.await.unwrap() == MAX_HITS {
            finished_by_bound += 1;
        }
    }
    timer.await.unwrap();
    assert_eq!(
        finished_by_bound,
        0,
        "the timer did not fire until {finished_by_bound} hit loops ran to their bound ({} hits)",
        hits.load(Ordering::Relaxed)
    );
}
