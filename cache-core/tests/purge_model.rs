//! A seeded, randomized model check of the purge guarantee against a real Redis: a caller never
//! gets a value that a purge (`invalidate`, `invalidate_tag`, `invalidate_prefix`) or a `put`
//! acknowledged before the call began has replaced.
//!
//! The model: a backend holds a version per key; an updater bumps a key's version, then purges
//! the key (by key, by tag, now and then by prefix) or puts the new version, on one of three
//! `Cache` values (processes) sharing one Redis, and records what it finished, on which cache,
//! and when. A reader snapshots the version a call must at least see before it starts it, then
//! checks what `get_or_load` returned: the requested key, at that version or newer.
//!
//! What a call must see depends on the cache that serves it. Without a near cache, every
//! acknowledged purge or put (from any process) is in Redis, so all of them count at once. With
//! a near cache, the process's own purges and puts count at once; another process's reach it
//! over pub/sub, eventually, and an entry is held near no longer than its fresh window: those
//! count once they are older than the longest fresh window (plus a margin for the clocks).
//! Soft purges (`mark_stale*`) serve the old value once by design and are left out.
//!
//! About 8 s (inside CI's budget); `ACTION_CACHE_PURGE_MODEL_SECS` runs it longer and
//! `ACTION_CACHE_PURGE_MODEL_SEED` replays a run's choices (the interleaving is the scheduler's).

mod support;

use action_cache_core::{Cache, CacheKey, LoadError, Outcome, Policy, Stats};
use action_cache_testing::{bounded, RedisServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

const KEYS: u64 = 16;
const TAGS: u64 = 5;
const READERS: u64 = 12;
const UPDATERS: u64 = 3;
/// Which caches have a near cache: two near-cached processes and one without.
const NEAR: [bool; 3] = [true, false, true];
const FRESH: Duration = Duration::from_millis(200);
const STALE: Duration = Duration::from_secs(1);
const JITTER: f64 = 0.1;
/// How long after another process's purge or put a near-cached process must no longer answer
/// what it replaced: the longest fresh window an entry can have, plus a margin for the
/// millisecond clock the entries are stamped with.
const NEAR_LAG: Duration = Duration::from_millis(200 * 11 / 10 + 50);
/// Bursts of updates alternate with quiet spells in which entries age into their stale window.
const BURST: Duration = Duration::from_millis(400);
const QUIET: Duration = Duration::from_millis(400);

/// What the backend returns: the key it was asked for and its version when the load began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Val {
    key: u64,
    version: u64,
}

fn name(k: u64) -> &'static str {
    if k.is_multiple_of(2) {
        "pm.even"
    } else {
        "pm.odd"
    }
}

fn tag(k: u64) -> String {
    format!("group:{}", k % TAGS)
}

fn key(k: u64) -> CacheKey {
    let mut b = CacheKey::builder(name(k));
    b.arg("id", &k).unwrap().tag(tag(k));
    b.build()
}

fn policy() -> Policy {
    Policy::builder()
        .fresh(FRESH)
        .stale(STALE)
        .jitter(JITTER)
        .build()
        .unwrap()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Key,
    Tag,
    Prefix,
    Put,
}

/// One acknowledged purge or put of a key: the version it made current.
#[derive(Debug, Clone, Copy)]
struct Done {
    version: u64,
    by: usize,
    op: Op,
    /// When the purge or put returned.
    at: Instant,
}

impl fmt::Display for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} by cache {} (version {})",
            self.op, self.by, self.version
        )
    }
}

/// The model: the backend's versions and, per key, every acknowledged purge or put.
struct Model {
    backend: Vec<AtomicU64>,
    /// Per key: purges take it shared, puts exclusive, so that a put never writes a version
    /// older than one another update of the key already acknowledged.
    updating: Vec<RwLock<()>>,
    done: Vec<Mutex<Vec<Done>>>,
    started: Instant,
}

impl Model {
    fn new() -> Model {
        Model {
            backend: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            updating: (0..KEYS).map(|_| RwLock::new(())).collect(),
            done: (0..KEYS).map(|_| Mutex::new(Vec::new())).collect(),
            started: Instant::now(),
        }
    }

    /// The update a read of `k` on cache `c` beginning `now` must see (or a newer one): any
    /// acknowledged one without a near cache; with one, its own at once and the others' once
    /// they are `NEAR_LAG` old.
    fn required(&self, c: usize, k: u64, now: Instant) -> Option<Done> {
        let done = self.done[k as usize].lock().unwrap();
        done.iter()
            .filter(|d| !NEAR[c] || d.by == c || d.at + NEAR_LAG <= now)
            .max_by_key(|d| d.version)
            .copied()
    }

    fn record(&self, k: u64, version: u64, by: usize, op: Op) {
        let mut done = self.done[k as usize].lock().unwrap();
        done.push(Done {
            version,
            by,
            op,
            at: Instant::now(),
        });
    }
}

/// The backend call: reads the version when it begins, then takes up to 3 ms (a slow backend,
/// so that purges land while loads run).
async fn load(model: Arc<Model>, k: u64, delay_us: u64) -> Result<Val, String> {
    let version = model.backend[k as usize].load(Ordering::SeqCst);
    if delay_us > 0 {
        tokio::time::sleep(Duration::from_micros(delay_us)).await;
    }
    Ok(Val { key: k, version })
}

#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    fresh: AtomicU64,
    stale: AtomicU64,
    miss: AtomicU64,
    coalesced: AtomicU64,
    checked_at_once: AtomicU64,
    key_purges: AtomicU64,
    tag_purges: AtomicU64,
    prefix_purges: AtomicU64,
    puts: AtomicU64,
    errors: AtomicU64,
    violations: AtomicU64,
}

impl Counts {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

struct Violation {
    cache: usize,
    key: u64,
    required: Done,
    got: Val,
    outcome: Outcome,
    /// From the required update's acknowledgement to the call's start.
    after: Duration,
    /// How long the call took.
    took: Duration,
    /// Since the run began, when the call started.
    at: Duration,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at {:?}: cache {} ({}) key {}: required version {} from {} acknowledged {:?} \
             before the call, got {:?} as {:?} (the call took {:?})",
            self.at,
            self.cache,
            if NEAR[self.cache] {
                "near cache"
            } else {
                "no near cache"
            },
            self.key,
            self.required.version,
            self.required,
            self.after,
            self.got,
            self.outcome,
            self.took,
        )
    }
}

fn in_burst(model: &Model) -> bool {
    let cycle = (BURST + QUIET).as_millis();
    model.started.elapsed().as_millis() % cycle < BURST.as_millis()
}

async fn reader(
    caches: Vec<Cache>,
    model: Arc<Model>,
    counts: Arc<Counts>,
    violations: Arc<Mutex<Vec<Violation>>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let policy = policy();
    while !stop.load(Ordering::Relaxed) {
        let c = rng.random_range(0..caches.len());
        let k = rng.random_range(0..KEYS);
        let delay_us = if rng.random_bool(0.3) {
            0
        } else {
            rng.random_range(0..3_000)
        };
        let start = Instant::now();
        let required = model.required(c, k, start);
        let (m1, m2) = (Arc::clone(&model), Arc::clone(&model));
        let got = caches[c]
            .get_or_load_with_outcome(
                &key(k),
                &policy,
                move || load(m1, k, delay_us),
                move || Box::pin(load(m2, k, delay_us)),
            )
            .await;
        counts.reads.fetch_add(1, Ordering::Relaxed);
        let (got, outcome) = match got {
            Ok(got) => got,
            Err(e) => {
                let e: LoadError<String> = e;
                counts.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("purge_model: read of key {k} on cache {c} failed: {e}");
                continue;
            }
        };
        let counter = match outcome {
            Outcome::Fresh => &counts.fresh,
            Outcome::Stale => &counts.stale,
            Outcome::Miss => &counts.miss,
            _ => &counts.coalesced,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if required.is_some_and(|r| r.at + NEAR_LAG > start) {
            counts.checked_at_once.fetch_add(1, Ordering::Relaxed);
        }
        let wrong_key = got.key != k;
        let too_old = required.is_some_and(|r| got.version < r.version);
        let too_new = got.version > model.backend[k as usize].load(Ordering::SeqCst);
        if wrong_key || too_old || too_new {
            counts.violations.fetch_add(1, Ordering::Relaxed);
            let v = Violation {
                cache: c,
                key: k,
                required: required.unwrap_or(Done {
                    version: 0,
                    by: usize::MAX,
                    op: Op::Key,
                    at: start,
                }),
                got,
                outcome,
                after: required.map_or(Duration::ZERO, |r| start - r.at),
                took: start.elapsed(),
                at: start - model.started,
            };
            let mut all = violations.lock().unwrap();
            if all.len() < 20 {
                all.push(v);
            }
        }
        // Near hits answer without I/O: let the updaters and the other readers run.
        tokio::task::yield_now().await;
    }
}

async fn updater(
    caches: Vec<Cache>,
    model: Arc<Model>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let policy = policy();
    while !stop.load(Ordering::Relaxed) {
        let burst = in_burst(&model);
        if !burst && !rng.random_bool(0.05) {
            // Quiet: an update now and then (one key at a time), so entries turn stale and
            // refresh, and some refreshes race a purge.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let c = rng.random_range(0..caches.len());
        let cache = &caches[c];
        let k = rng.random_range(0..KEYS);
        let roll = rng.random_range(0..100);
        let op = match roll {
            0..35 => Op::Key,
            35..60 if burst => Op::Tag,
            60..64 if burst => Op::Prefix,
            35..64 => Op::Key,
            _ => Op::Put,
        };
        let ok = {
            let lock = &model.updating[k as usize];
            let (_shared, _exclusive) = if op == Op::Put {
                (None, Some(lock.write().await))
            } else {
                (Some(lock.read().await), None)
            };
            let version = model.backend[k as usize].fetch_add(1, Ordering::SeqCst) + 1;
            let result = match op {
                Op::Key => cache.invalidate(&key(k)).await.map(|_| ()),
                Op::Tag => cache.invalidate_tag(&tag(k)).await.map(|_| ()),
                Op::Prefix => cache.invalidate_prefix(name(k)).await.map(|_| ()),
                Op::Put => {
                    let value = Val { key: k, version };
                    cache.put(&key(k), &policy, &value).await
                }
            };
            match result {
                Ok(()) => {
                    model.record(k, version, c, op);
                    true
                }
                Err(e) => {
                    eprintln!("purge_model: {op:?} of key {k} on cache {c} failed: {e}");
                    false
                }
            }
        };
        let counter = match (ok, op) {
            (false, _) => &counts.errors,
            (true, Op::Key) => &counts.key_purges,
            (true, Op::Tag) => &counts.tag_purges,
            (true, Op::Prefix) => &counts.prefix_purges,
            (true, Op::Put) => &counts.puts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let pause = rng.random_range(0..2_000);
        tokio::time::sleep(Duration::from_micros(pause)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_gets_a_value_an_acknowledged_purge_or_put_replaced() {
    let secs = env_u64("ACTION_CACHE_PURGE_MODEL_SECS").unwrap_or(8);
    let seed = env_u64("ACTION_CACHE_PURGE_MODEL_SEED").unwrap_or(7);
    let server = RedisServer::start();
    let caches: Vec<Cache> = NEAR
        .iter()
        .enumerate()
        .map(|(i, &near)| {
            let b = support::on_redis(&server).rng_seed(seed * 10 + i as u64);
            if near { b.near_cache(1_000) } else { b }.build().unwrap()
        })
        .collect();
    let model = Arc::new(Model::new());
    let counts = Arc::new(Counts::default());
    let violations = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let mut tasks = Vec::new();
    for r in 0..READERS {
        tasks.push(tokio::spawn(reader(
            caches.clone(),
            Arc::clone(&model),
            Arc::clone(&counts),
            Arc::clone(&violations),
            Arc::clone(&stop),
            seed * 1_000 + r,
        )));
    }
    for u in 0..UPDATERS {
        tasks.push(tokio::spawn(updater(
            caches.clone(),
            Arc::clone(&model),
            Arc::clone(&counts),
            Arc::clone(&stop),
            seed * 1_000 + 500 + u,
        )));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        bounded("a purge-model task", Duration::from_secs(30), t)
            .await
            .unwrap();
    }

    let stats: Vec<Stats> = caches.iter().map(Cache::stats).collect();
    let sum = |f: fn(&Stats) -> u64| stats.iter().map(f).sum::<u64>();
    let n = Counts::get;
    eprintln!(
        "purge_model: {secs} s, seed {seed}: {} reads ({} fresh, {} stale, {} misses, {} \
         coalesced; {} checked against an update under {NEAR_LAG:?} old), {} key purges, {} \
         tag purges, {} prefix purges, {} puts, {} errors, {} violations; caches: {} fresh \
         hits ({} near), {} stale hits, {} misses, {} loads, {} coalesced waits, {} superseded \
         loads, {} refreshes ({} discarded)",
        n(&counts.reads),
        n(&counts.fresh),
        n(&counts.stale),
        n(&counts.miss),
        n(&counts.coalesced),
        n(&counts.checked_at_once),
        n(&counts.key_purges),
        n(&counts.tag_purges),
        n(&counts.prefix_purges),
        n(&counts.puts),
        n(&counts.errors),
        n(&counts.violations),
        sum(|s| s.fresh_hits),
        sum(|s| s.near_hits),
        sum(|s| s.stale_hits),
        sum(|s| s.misses),
        sum(|s| s.loads),
        sum(|s| s.coalesced_waits),
        sum(|s| s.superseded_loads),
        sum(|s| s.refreshes_started),
        sum(|s| s.refreshes_discarded),
    );
    let found = violations.lock().unwrap();
    assert!(
        found.is_empty(),
        "seed {seed}: {} violations; the first:\n{}",
        n(&counts.violations),
        found
            .iter()
            .map(|v| format!("  {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(n(&counts.errors), 0, "no call, purge or put failed");
    // The run exercised what it claims to check.
    for (what, count) in [
        ("fresh hits", sum(|s| s.fresh_hits - s.near_hits)),
        ("near hits", sum(|s| s.near_hits)),
        ("stale hits", sum(|s| s.stale_hits)),
        ("misses", sum(|s| s.misses)),
        ("coalesced waits", sum(|s| s.coalesced_waits)),
        ("superseded loads", sum(|s| s.superseded_loads)),
        ("refreshes", sum(|s| s.refreshes_started)),
        ("key purges", n(&counts.key_purges)),
        ("tag purges", n(&counts.tag_purges)),
        ("prefix purges", n(&counts.prefix_purges)),
        ("puts", n(&counts.puts)),
        (
            "reads checked against a recent update",
            n(&counts.checked_at_once),
        ),
    ] {
        assert!(count > 0, "seed {seed}: the run had no {what}");
    }
}
