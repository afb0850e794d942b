//! A bounded soak: a mixed load of hits, misses, puts and purges across 4 `Cache` values (two
//! with a near cache) on one real Redis, restarted and paused at seeded random moments.
//! Callers get no error and never another key's value, every task ends, and resident memory
//! stays flat once warm.
//!
//! 20 s by default (inside CI's budget); `ACTION_CACHE_SOAK_SECS` runs it longer and
//! `ACTION_CACHE_SOAK_SEED` replays a run's fault schedule.

use action_cache_core::{Cache, CacheKey, InFlight, Policy};
use action_cache_testing::{bounded, eventually, RedisServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEYS: u64 = 200;

fn key(id: u64) -> CacheKey {
    let mut b = CacheKey::builder("soak");
    b.arg("id", &id).unwrap().tag(format!("group:{}", id % 10));
    b.build()
}

fn policy() -> Policy {
    Policy::builder()
        .fresh(Duration::from_millis(500))
        .stale(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    caller_errors: AtomicU64,
    wrong_values: AtomicU64,
    purge_or_put_errors: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_under_restarts_and_pauses_stays_correct_and_flat() {
    let secs = env_u64("ACTION_CACHE_SOAK_SECS").unwrap_or(20);
    let seed = env_u64("ACTION_CACHE_SOAK_SEED").unwrap_or(14);
    let server = Arc::new(Mutex::new(RedisServer::start()));
    let url = server.lock().unwrap().url();
    let caches: Vec<Cache> = (0..4)
        .map(|i| {
            let b = Cache::builder()
                .redis_url(url.clone())
                .op_timeout(Duration::from_millis(100))
                .circuit_breaker(5, Duration::from_millis(300))
                .lock_wait(Duration::from_secs(2))
                .rng_seed(seed + i);
            if i % 2 == 0 { b.near_cache(500) } else { b }
                .build()
                .unwrap()
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());

    let workers: Vec<_> = (0..8u64)
        .map(|w| {
            let (caches, stop, counts) = (caches.clone(), Arc::clone(&stop), Arc::clone(&counts));
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed * 1_000 + w);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let cache = &caches[rng.random_range(0..caches.len())];
                    let id = rng.random_range(0..KEYS);
                    n += 1;
                    match rng.random_range(0..100) {
                        0..75 => {
                            let loaded = format!("{id}:load:{w}:{n}");
                            let got = cache
                                .get_or_load(&key(id), &policy(), move || async move {
                                    Ok::<_, String>(loaded)
                                })
                                .await;
                            match got {
                                Ok(v) if v.starts_with(&format!("{id}:")) => {}
                                Ok(_) => {
                                    counts.wrong_values.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(_) => {
                                    counts.caller_errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        75..85 => {
                            let value = format!("{id}:put:{w}:{n}");
                            if cache.put(&key(id), &policy(), &value).await.is_err() {
                                counts.purge_or_put_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        85..95 => {
                            if cache.invalidate(&key(id)).await.is_err() {
                                counts.purge_or_put_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            if cache
                                .invalidate_tag(&format!("group:{}", id % 10))
                                .await
                                .is_err()
                            {
                                counts.purge_or_put_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    counts.calls.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            })
        })
        .collect();

    // Faults at seeded random moments: a restart (empty Redis) or a pause of every client.
    let started = Instant::now();
    let run = Duration::from_secs(secs);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut restarts, mut pauses) = (0u32, 0u32);
    let mut warm_rss = None;
    while started.elapsed() < run {
        let wait = Duration::from_millis(rng.random_range(700..2_500));
        tokio::time::sleep(wait.min(run.saturating_sub(started.elapsed()))).await;
        if warm_rss.is_none() && started.elapsed() >= run / 3 {
            warm_rss = Some(rss());
        }
        if started.elapsed() >= run {
            break;
        }
        let server = Arc::clone(&server);
        if rng.random_bool(0.4) {
            restarts += 1;
            tokio::task::spawn_blocking(move || server.lock().unwrap().restart())
                .await
                .unwrap();
        } else {
            pauses += 1;
            let ms = rng.random_range(100..800).to_string();
            tokio::task::spawn_blocking(move || {
                server.lock().unwrap().cli(&["CLIENT", "PAUSE", &ms, "ALL"])
            })
            .await
            .unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        bounded("a soak worker", Duration::from_secs(30), w)
            .await
            .unwrap();
    }
    // Every call has returned: the load flights, shared reads and refreshes drain to nothing
    // (refreshes spawned by the last calls may still be finishing).
    eventually("the in-flight maps drain", Duration::from_secs(30), || {
        caches.iter().all(|c| c.in_flight() == InFlight::default())
    })
    .await;
    let end_rss = rss();
    let warm = warm_rss.unwrap_or(end_rss);

    let stats: Vec<_> = caches.iter().map(Cache::stats).collect();
    let sum = |f: fn(&action_cache_core::Stats) -> u64| stats.iter().map(f).sum::<u64>();
    eprintln!(
        "soak: {secs} s, seed {seed}, {restarts} restarts, {pauses} pauses; {} calls \
         ({} caller errors, {} wrong values, {} put/purge errors reported to their callers); \
         hits {} fresh + {} stale + {} near, {} misses, {} loads, {} store errors, {} skipped \
         by the breaker, {} near resets; RSS warm {:.1} MiB, end {:.1} MiB",
        counts.calls.load(Ordering::Relaxed),
        counts.caller_errors.load(Ordering::Relaxed),
        counts.wrong_values.load(Ordering::Relaxed),
        counts.purge_or_put_errors.load(Ordering::Relaxed),
        sum(|s| s.fresh_hits),
        sum(|s| s.stale_hits),
        sum(|s| s.near_hits),
        sum(|s| s.misses),
        sum(|s| s.loads),
        sum(|s| s.store_errors),
        sum(|s| s.store_skipped),
        sum(|s| s.near_resets),
        warm as f64 / (1 << 20) as f64,
        end_rss as f64 / (1 << 20) as f64,
    );
    assert_eq!(
        counts.caller_errors.load(Ordering::Relaxed),
        0,
        "caller errors"
    );
    assert_eq!(
        counts.wrong_values.load(Ordering::Relaxed),
        0,
        "wrong values"
    );
    assert!(restarts + pauses > 0, "faults were injected");
    assert!(
        sum(|s| s.fresh_hits + s.near_hits) > 0,
        "the cache was used"
    );
    // Flat once warm: generous, since allocators keep freed pages; a leak per call would
    // grow far past this over tens of thousands of calls.
    assert!(
        end_rss <= warm + (32 << 20),
        "resident memory grew from {warm} to {end_rss} bytes"
    );
}
