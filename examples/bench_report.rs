//! Measures the benchmark figures directly (no criterion) and prints them as a markdown table
//! with their targets, plus the machine they came from.
//!
//! ```text
//! cargo run --release --example bench_report
//! ```
//!
//! It starts its own `redis-server` (which must be installed) and runs for well under a minute.
//! The workload is the one the criterion benches in `benches/` use (the `bench-support` crate): the same
//! `#[cached_action]` functions, the same raw `GET` floor and the same `cached` crate function.

use action_cache_bench_support as support;

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use action_cache_testing::RedisServer;
use support::{RawRedis, ORDERS};

/// Timed calls per latency figure (after as many untimed ones).
const LATENCY_CALLS: usize = 8_000;
/// Timed calls per in-process latency figure.
const LOCAL_CALLS: usize = 50_000;
/// Hits per throughput run.
const BATCH: usize = 20_480;
/// Throughput rounds per figure (each runs every subject of the figure once); medians over the
/// rounds are reported.
const RUNS: usize = 9;
/// Stampedes per case; the most loader calls seen is reported.
const STAMPEDES: u64 = 5;

fn main() {
    let started = Instant::now();
    let load_before = support::load_average();
    let server = RedisServer::start();
    support::install(&server.url());
    let rt = support::runtime();
    let raw = rt.block_on(async {
        support::warm().await;
        RawRedis::connect().await
    });
    let ids = Arc::new(support::order_ids());
    let mut rows = Vec::new();

    // 1 and 3: hit latency on Redis, the three kinds interleaved call by call so a busy moment
    // hits them alike.
    let [raw_p50, timed_p50, macro_p50, crate_p50] = rt.block_on(async {
        let mut samples = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for i in 0..2 * LATENCY_CALLS {
            let id = &ids[i % ORDERS];
            let mut took = [Duration::ZERO; 4];
            let t = Instant::now();
            black_box(raw.get(i).await);
            took[0] = t.elapsed();
            // The floor inside the 50 ms `tokio::time::timeout` the cache puts around every
            // store operation.
            let t = Instant::now();
            let get = raw.get(i);
            black_box(
                tokio::time::timeout(Duration::from_millis(50), get)
                    .await
                    .ok(),
            );
            took[1] = t.elapsed();
            let t = Instant::now();
            black_box(support::order(id).await.expect("hit"));
            took[2] = t.elapsed();
            let t = Instant::now();
            black_box(support::cached_crate_order(id).await.expect("hit"));
            took[3] = t.elapsed();
            if i >= LATENCY_CALLS {
                for (s, t) in samples.iter_mut().zip(took) {
                    s.push(t);
                }
            }
        }
        samples.map(p50)
    });
    let ratio = ratio_of(macro_p50, raw_p50);
    rows.push(Row::new(
        "Redis hit latency, p50: `#[cached_action]` vs raw `GET`",
        format!("{} vs {}", us(macro_p50), us(raw_p50)),
        format!("{ratio:.2}×"),
        "≤ 1.05×",
        ratio <= 1.05,
    ));
    rows.push(Row::info(
        "Redis hit latency, p50: raw `GET` in a 50 ms `tokio::time::timeout` vs raw `GET`",
        format!("{} vs {}", us(timed_p50), us(raw_p50)),
        format!("{:.2}×", ratio_of(timed_p50, raw_p50)),
    ));
    rows.push(Row::info(
        "Redis hit latency, p50: `cached` crate vs raw `GET`",
        format!("{} vs {}", us(crate_p50), us(raw_p50)),
        format!("{:.2}×", ratio_of(crate_p50, raw_p50)),
    ));

    // 2 and 3: throughput at 1, 64 and 256 tasks, the three kinds side by side.
    for n in [1, 64, 256] {
        // At one task a run takes about a second; fewer calls keep the report short.
        let batch = if n == 1 { BATCH / 4 } else { BATCH };
        let mut runs = SideBySide::new(&rt, n);
        let raw_s = runs.add(batch, {
            let raw = raw.clone();
            move |i| {
                let raw = raw.clone();
                async move {
                    black_box(raw.get(i).await);
                }
            }
        });
        let macro_s = runs.add(batch, {
            let ids = Arc::clone(&ids);
            move |i| {
                let ids = Arc::clone(&ids);
                async move {
                    black_box(support::order(&ids[i % ORDERS]).await.expect("hit"));
                }
            }
        });
        let crate_s = runs.add(batch, {
            let ids = Arc::clone(&ids);
            move |i| {
                let ids = Arc::clone(&ids);
                async move {
                    black_box(
                        support::cached_crate_order(&ids[i % ORDERS])
                            .await
                            .expect("hit"),
                    );
                }
            }
        });
        let rounds = runs.measure();
        let [raw_ops, macro_ops, crate_ops] = [raw_s, macro_s, crate_s].map(|s| rounds.median(s));
        let figures = format!(
            "{} (raw `GET` {}, `cached` crate {})",
            ops(macro_ops),
            ops(raw_ops),
            ops(crate_ops)
        );
        let of_raw = format!("{:.2}× raw", rounds.ratio(macro_s, raw_s));
        if n == 256 {
            rows.push(Row::new(
                "Hit throughput, 256 tasks, one `Cache`: `#[cached_action]`",
                figures,
                of_raw,
                "≥ 150,000 hits/s",
                macro_ops >= 150_000.0,
            ));
        } else {
            rows.push(Row::info(
                &format!("Hit throughput, {n} task(s), one `Cache`: `#[cached_action]`"),
                figures,
                of_raw,
            ));
        }
    }

    // Many distinct keys (10,000) of a 2.1 KB value at 256 tasks, each against its floor: the
    // raw `GET` of the same entries plus the decode of the same bytes with the same codec.
    let (raw_json, raw_mp) = rt.block_on(async {
        support::warm_catalogs().await;
        (
            RawRedis::catalogs(support::catalog_key).await,
            RawRedis::catalogs(support::catalog_mp_key).await,
        )
    });
    let sizes = rt.block_on(async {
        (
            raw_json.get_nth(0).await.len(),
            raw_mp.get_nth(0).await.len(),
        )
    });
    // The seven kinds side by side, each round running every one in turn.
    let mut runs = SideBySide::new(&rt, 256);
    let raw_get_s = runs.add(BATCH, {
        let raw = raw_json.clone();
        move |i| {
            let raw = raw.clone();
            async move {
                black_box(raw.get_nth(i).await);
            }
        }
    });
    let raw_json_s = runs.add(BATCH, {
        let raw = raw_json.clone();
        move |i| {
            let raw = raw.clone();
            async move {
                black_box(support::decode_json_entry(&raw.get_nth(i).await));
            }
        }
    });
    let raw_mp_s = runs.add(BATCH, {
        let raw = raw_mp.clone();
        move |i| {
            let raw = raw.clone();
            async move {
                black_box(support::decode_message_pack_entry(&raw.get_nth(i).await));
            }
        }
    });
    let page = support::catalog_page;
    let json_s = runs.add(BATCH, move |i| async move {
        black_box(support::catalog(page(i)).await.expect("hit"));
    });
    let mp_s = runs.add(BATCH, move |i| async move {
        black_box(support::catalog_mp(page(i)).await.expect("hit"));
    });
    // In-process hits run 10× the calls: a batch of 20,480 takes only ~20 ms at these rates, and
    // spawning the 256 tasks and the warm-up of each run weigh on so short a run.
    let near_s = runs.add(10 * BATCH, move |i| async move {
        black_box(support::catalog_near(page(i)).await.expect("hit"));
    });
    let near_arc_s = runs.add(10 * BATCH, move |i| async move {
        black_box(support::catalog_near_shared(page(i)).await.expect("hit"));
    });
    let rounds = runs.measure();
    let [raw_get, raw_get_json, raw_get_mp, macro_json, macro_mp, macro_near, macro_near_shared] =
        [
            raw_get_s, raw_json_s, raw_mp_s, json_s, mp_s, near_s, near_arc_s,
        ]
        .map(|s| rounds.median(s));
    let label = "Hits/s, 10,000 keys, a 25-struct value, 256 tasks";
    let r = rounds.ratio(json_s, raw_json_s);
    rows.push(Row::new(
        &format!("{label}, JSON: `#[cached_action]` vs raw `GET` + JSON decode"),
        format!("{} vs {}", ops(macro_json), ops(raw_get_json)),
        format!("{r:.2}×"),
        "≥ 0.95×",
        r >= 0.95,
    ));
    let r = rounds.ratio(mp_s, raw_mp_s);
    rows.push(Row::new(
        &format!("{label}, MessagePack: `#[cached_action]` vs raw `GET` + MessagePack decode"),
        format!("{} vs {}", ops(macro_mp), ops(raw_get_mp)),
        format!("{r:.2}×"),
        "≥ 0.95×",
        r >= 0.95,
    ));
    let r = rounds.ratio(near_s, raw_get_s);
    rows.push(Row::new(
        &format!("{label}, near cache (typed): `#[cached_action]` vs raw `GET`"),
        format!("{} vs {}", ops(macro_near), ops(raw_get)),
        format!("{r:.2}×"),
        "≥ 5×",
        r >= 5.0,
    ));
    let r = rounds.ratio(near_arc_s, raw_get_s);
    rows.push(Row::new(
        &format!(
            "{label}, near cache (typed), the value returned as an `Arc`: `#[cached_action]` vs raw `GET`"
        ),
        format!("{} vs {}", ops(macro_near_shared), ops(raw_get)),
        format!("{r:.2}×"),
        "≥ 5×",
        r >= 5.0,
    ));
    rows.push(Row::info(
        &format!(
            "{label}: MessagePack vs JSON through `#[cached_action]` (entry {} B vs {} B)",
            sizes.1, sizes.0
        ),
        format!("{} vs {}", ops(macro_mp), ops(macro_json)),
        format!("{:.2}×", rounds.ratio(mp_s, json_s)),
    ));

    // 4: in-process figures.
    let keys: Vec<_> = ids.iter().map(|id| support::engine_key(id)).collect();
    let policy = support::policy();
    let memory = support::memory_cache();
    let (memory_engine, memory_macro, near, redis_engine) = rt.block_on(async {
        for (key, id) in keys.iter().zip(ids.iter()) {
            memory
                .put(key, &policy, &support::backend_order(id))
                .await
                .expect("put");
        }
        let engine = local_p50(|i| {
            let (key, policy) = (&keys[i % ORDERS], &policy);
            async move {
                let v: support::Order = memory
                    .get_or_load(key, policy, || async {
                        Err::<support::Order, _>("a hit never loads".to_string())
                    })
                    .await
                    .expect("hit");
                black_box(v);
            }
        })
        .await;
        let through_macro = local_p50(|i| {
            let id = &ids[i % ORDERS];
            async move {
                black_box(support::order_memory(id).await.expect("hit"));
            }
        })
        .await;
        let near = local_p50(|i| {
            let id = &ids[i % ORDERS];
            async move {
                black_box(support::order_near(id).await.expect("hit"));
            }
        })
        .await;
        (engine, through_macro, near, macro_p50)
    });
    rows.push(Row::new(
        "Memory-store hit, p50: `Cache::get_or_load` (key prebuilt)",
        us(memory_engine),
        String::new(),
        "≤ 1 µs",
        memory_engine <= Duration::from_micros(1),
    ));
    rows.push(Row::new(
        "Memory-store hit, p50: `#[cached_action]` (builds the key)",
        us(memory_macro),
        String::new(),
        "≤ 1 µs",
        memory_macro <= Duration::from_micros(1),
    ));
    let key_build = {
        let mut samples = Vec::with_capacity(LOCAL_CALLS);
        for _ in 0..LOCAL_CALLS {
            let t = Instant::now();
            black_box(memory.full_key(&support::typical_key()));
            samples.push(t.elapsed());
        }
        p50(samples)
    };
    // The floor: SHA-256 of the same canonical bytes (what any injective key must hash).
    let sha_floor = {
        use sha2::Digest as _;
        let bytes = support::typical_key_builder().canonical_bytes();
        let mut samples = Vec::with_capacity(LOCAL_CALLS);
        for _ in 0..LOCAL_CALLS {
            let t = Instant::now();
            black_box(sha2::Sha256::digest(black_box(&bytes)));
            samples.push(t.elapsed());
        }
        p50(samples)
    };
    let r = ratio_of(key_build, sha_floor);
    rows.push(Row::new(
        "Key building + entry key, p50: 3 strings, a number, a 2-entry map, vs SHA-256 of its canonical bytes",
        format!("{} vs {}", us(key_build), us(sha_floor)),
        format!("{r:.2}×"),
        "≤ 2.0×, and ≤ 0.4 µs",
        r <= 2.0 && key_build <= Duration::from_nanos(400),
    ));
    // In-process hits through the macro (which builds the key per call) against a floor of the
    // same key build and a raw `moka` lookup and clone of the same value, interleaved call by
    // call.
    let floor = support_floor(memory, &ids);
    let [near_macro, memory_macro_paired, moka_floor] = rt.block_on(async {
        // The floor's key is the macro's: the memory cache answers it from what the macro stored.
        let same: support::Order = memory
            .get_or_load(&MokaFloor::key(&ids[0]), &policy, || async {
                Err::<support::Order, _>("the floor's key is not the macro's".to_string())
            })
            .await
            .expect("the floor builds the macro's key");
        assert_eq!(same, floor.get(memory, &ids[0]));
        let mut samples = [Vec::new(), Vec::new(), Vec::new()];
        for i in 0..2 * LOCAL_CALLS {
            let id = &ids[i % ORDERS];
            let mut took = [Duration::ZERO; 3];
            let t = Instant::now();
            black_box(support::order_near(id).await.expect("hit"));
            took[0] = t.elapsed();
            let t = Instant::now();
            black_box(support::order_memory(id).await.expect("hit"));
            took[1] = t.elapsed();
            let t = Instant::now();
            black_box(floor.get(memory, id));
            took[2] = t.elapsed();
            if i >= LOCAL_CALLS {
                for (s, t) in samples.iter_mut().zip(took) {
                    s.push(t);
                }
            }
        }
        samples.map(p50)
    });
    let floor_label = "key build + raw `moka` `get` and clone of the same value";
    let r = ratio_of(near_macro, moka_floor);
    rows.push(Row::new(
        &format!(
            "Near-cache hit via `#[cached_action]` (key built per call), p50, vs {floor_label}"
        ),
        format!("{} vs {}", us(near_macro), us(moka_floor)),
        format!("{r:.2}×"),
        "≤ 1.3×",
        r <= 1.3,
    ));
    let r = ratio_of(memory_macro_paired, moka_floor);
    rows.push(Row::new(
        &format!(
            "Memory-store hit via `#[cached_action]` (key built per call), p50, vs {floor_label}"
        ),
        format!("{} vs {}", us(memory_macro_paired), us(moka_floor)),
        format!("{r:.2}×"),
        "≤ 1.5×",
        r <= 1.5,
    ));
    let faster = ratio_of(redis_engine, near);
    rows.push(Row::new(
        "Near-cache hit vs Redis hit, p50 (`#[cached_action]`)",
        format!("{} vs {}", us(near), us(redis_engine)),
        format!("{faster:.1}× faster"),
        "> 10× faster",
        faster > 10.0,
    ));

    // 5: stampedes, counted.
    let one = support::processes(&server.url(), 1);
    let four = support::processes(&server.url(), 4);
    for (case, label, caches, callers) in [
        (0, "Stampede: 10,000 callers, one process", &one, 10_000),
        (
            1,
            "Stampede: 4 `Cache` values × 2,500 callers",
            &four,
            2_500,
        ),
    ] {
        let (most, total, slowest) = rt.block_on(async {
            for cache in caches.iter() {
                cache.ping().await.expect("ping");
            }
            let (mut most, mut total, mut slowest) = (0, 0, Duration::ZERO);
            for round in 0..STAMPEDES {
                let t = Instant::now();
                // A new cold key for every stampede.
                let calls = support::stampede(caches, callers, case * STAMPEDES + round).await;
                slowest = slowest.max(t.elapsed());
                most = most.max(calls);
                total += calls;
            }
            (most, total, slowest)
        });
        let errors: u64 = caches.iter().map(|c| c.stats().store_errors).sum();
        rows.push(Row::new(
            label,
            format!(
                "max {most} loader call(s) per stampede ({total} in {STAMPEDES}; {errors} store errors; slowest settled in {} ms)",
                slowest.as_millis()
            ),
            String::new(),
            "1",
            most == 1,
        ));
    }

    let near = support::catalog_near_cache().stats();
    let fail_open = support::redis_cache().stats().store_errors;
    print_report(&rows, &load_before, fail_open, started.elapsed());
    println!(
        "Many-keys near cache over the run (warm-up included): {} near hits, {} decodes, {} misses.",
        near.near_hits, near.decodes, near.misses
    );
}

/// The floor of an in-process hit: what `#[cached_action]` must do at least, by hand. The same
/// key build (`KeyBuilder`, the function's name and argument, then the entry key), then a
/// `get` from a plain `moka` cache holding the same `Order` behind an `Arc`, and a clone of it
/// (the macro returns an owned value).
struct MokaFloor {
    cache: moka::sync::Cache<String, Arc<support::Order>>,
}

fn support_floor(keys_from: &action_cache::Cache, ids: &[String]) -> MokaFloor {
    let cache = moka::sync::Cache::builder().max_capacity(1_000).build();
    for id in ids {
        let full = keys_from.full_key(&MokaFloor::key(id));
        cache.insert(full, Arc::new(support::backend_order(id)));
    }
    MokaFloor { cache }
}

impl MokaFloor {
    fn key(id: &str) -> action_cache::CacheKey {
        let mut b = action_cache::KeyBuilder::new("bench.order");
        b.arg("order_id", id).expect("a valid key");
        b.build()
    }

    fn get(&self, keys_from: &action_cache::Cache, id: &str) -> support::Order {
        let full = keys_from.full_key(&MokaFloor::key(id));
        let held = self.cache.get(&full).expect("a held order");
        support::Order::clone(&held)
    }
}

/// One line of the table.
struct Row {
    figure: String,
    measured: String,
    ratio: String,
    target: String,
    met: Option<bool>,
}

impl Row {
    fn new(figure: &str, measured: String, ratio: String, target: &str, met: bool) -> Row {
        Row {
            figure: figure.into(),
            measured,
            ratio,
            target: target.into(),
            met: Some(met),
        }
    }

    fn info(figure: &str, measured: String, ratio: String) -> Row {
        Row {
            figure: figure.into(),
            measured,
            ratio,
            target: "—".into(),
            met: None,
        }
    }
}

fn print_report(rows: &[Row], load_before: &str, fail_open: u64, took: Duration) {
    println!("| Figure | Measured | Ratio | Target | Met? |");
    println!("|---|---|---|---|---|");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        println!(
            "| {} | {} | {} | {} | {met} |",
            r.figure, r.measured, r.ratio, r.target
        );
    }
    println!();
    println!("Machine: {}", support::machine());
    println!(
        "Load average before the run: {}; Redis hits that failed open during the run: {fail_open}; run took {:.0} s.",
        load_before,
        took.as_secs_f64()
    );
}

/// Median of per-call timings of `op(i)` run in the calling task, after as many untimed calls.
async fn local_p50<F, Fut>(op: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for i in 0..LOCAL_CALLS {
        op(i).await;
    }
    let mut samples = Vec::with_capacity(LOCAL_CALLS);
    for i in 0..LOCAL_CALLS {
        let t = Instant::now();
        op(i).await;
        samples.push(t.elapsed());
    }
    p50(samples)
}

/// Throughput figures measured side by side: each of [`RUNS`] rounds runs every subject once,
/// in turn (starting one further each round), so a busy moment of the machine (or of
/// `redis-server`, on the same two cores) falls on all of them alike rather than on whichever
/// ran then.
struct SideBySide<'a> {
    rt: &'a tokio::runtime::Runtime,
    tasks: usize,
    /// One run of each subject: its calls per second.
    subjects: Vec<Box<dyn Fn() -> f64 + 'a>>,
}

impl<'a> SideBySide<'a> {
    fn new(rt: &'a tokio::runtime::Runtime, tasks: usize) -> SideBySide<'a> {
        SideBySide {
            rt,
            tasks,
            subjects: Vec::new(),
        }
    }

    /// Adds a subject: `batch` calls of `op(i)` spread over the tasks.
    fn add<F, Fut>(&mut self, batch: usize, op: F) -> Subject
    where
        F: Fn(usize) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (rt, tasks) = (self.rt, self.tasks);
        self.subjects.push(Box::new(move || {
            let t = Instant::now();
            rt.block_on(support::spread(tasks, batch, op.clone()));
            batch as f64 / t.elapsed().as_secs_f64()
        }));
        Subject(self.subjects.len() - 1)
    }

    /// Runs the rounds: every subject's calls per second in each.
    fn measure(self) -> Rounds {
        let n = self.subjects.len();
        let rounds = (0..RUNS)
            .map(|round| {
                let mut ops = vec![0.0; n];
                for k in 0..n {
                    let i = (round + k) % n;
                    ops[i] = (self.subjects[i])();
                }
                ops
            })
            .collect();
        Rounds(rounds)
    }
}

/// One subject of a [`SideBySide`], as [`SideBySide::add`] returned it.
#[derive(Clone, Copy)]
struct Subject(usize);

/// What [`SideBySide::measure`] saw: calls per second of every subject, round by round.
struct Rounds(Vec<Vec<f64>>);

impl Rounds {
    /// The subject's median over the rounds.
    fn median(&self, s: Subject) -> f64 {
        p50(self.0.iter().map(|r| r[s.0]).collect())
    }

    /// The median over the rounds of `a`'s rate over `b`'s in the same round: each ratio
    /// compares runs made moments apart.
    fn ratio(&self, a: Subject, b: Subject) -> f64 {
        p50(self.0.iter().map(|r| r[a.0] / r[b.0]).collect())
    }
}

/// The median of per-call timings or of per-round rates (never NaN).
fn p50<T: PartialOrd + Copy>(mut samples: Vec<T>) -> T {
    samples.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    samples[samples.len() / 2]
}

fn ratio_of(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn ops(per_second: f64) -> String {
    // Digits in groups of three: 1,208,342.
    let digits = (per_second.round() as u64).to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(d);
    }
    format!("{grouped} hits/s")
}
