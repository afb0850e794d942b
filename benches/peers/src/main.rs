//! action-cache's Redis hit throughput beside its peers, side by side in one run.
//!
//! ```text
//! cargo run --release --manifest-path benches/peers/Cargo.toml
//! ```
//!
//! It starts its own `redis-server` (which must be installed), warms 10,000 distinct keys of the
//! many-keys value (`Vec<Item>`, 25 small structs, from `action-cache-bench-support`) for every
//! subject, then measures hits/s with 256 tokio tasks on a 2-worker multi-thread runtime,
//! uniform over the 10,000 keys. The subjects:
//!
//! * the ceiling: a raw `GET` of `cached`'s entries (the smallest), not decoded, which no
//!   Redis-backed cache hit of this value can beat; the report turns it into how much time per
//!   hit a ratio over a peer leaves for everything beyond the `GET`;
//! * the floors, one per stored format, each the raw read of that subject's own entries on its
//!   own connection plus their decode: `GET` + JSON and `GET` + MessagePack of action-cache's,
//!   `GET` + positional MessagePack of `cached`'s, `HGET d` + bincode of hitbox's;
//! * action-cache: bench-support's `catalog` (JSON) and `catalog_mp` (MessagePack);
//! * the `cached` crate: `#[concurrent_cached]` with its `AsyncRedisCache` (JSON values) on a
//!   `ConnectionManager`, as bench-support's `cached_crate_order` uses it;
//! * hitbox: `hitbox-fn`'s `#[cached]` on a `hitbox_fn::Cache` with the `hitbox-redis` backend,
//!   the `BroadcastConcurrencyManager` its docs recommend and its `OffloadManager` for
//!   stale-while-revalidate; its default value format (bincode) and, on another Redis database,
//!   its `JsonFormat`.
//!
//! Each subject runs three times, interleaved with the others, and the median is reported, with
//! each entry's size, the Redis commands each call cost (`INFO commandstats`) and the loader runs
//! while measured (a call that failed open or missed is not a hit: read only runs where it is 0).
//!
//! A `publish = false` crate outside the workspace (its own `Cargo.lock`), so the peers are
//! compiled only here, never by the workspace's `cargo test`.

use action_cache_bench_support as support;

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use action_cache_testing::RedisServer;
use hitbox::concurrency::BroadcastConcurrencyManager;
use hitbox::offload::OffloadManager;
use hitbox::policy::{ConcurrencyLimit, PolicyConfig, StalePolicy};
use hitbox_backend::format::JsonFormat;
use hitbox_backend::PassthroughCompressor;
use hitbox_fn::CacheableResponse;
use hitbox_redis::{ConnectionMode, RedisBackend};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use support::{Item, RawRedis, CATALOGS};

/// Concurrent callers.
const TASKS: usize = 256;
/// Hits per measured run (a multiple of [`TASKS`]: each task makes as many).
const HITS: usize = TASKS * 400;
/// Runs per subject, interleaved; the median is reported.
const REPEATS: usize = 3;
/// How fresh and how long stale an entry is, for every subject that has both.
const FRESH: Duration = Duration::from_secs(3600);
const STALE: Duration = Duration::from_secs(7200);

/// Loader runs of the `cached` crate's function.
static CACHED_LOADS: AtomicUsize = AtomicUsize::new(0);
/// Loader runs of the hitbox function (both of its caches).
static HITBOX_LOADS: AtomicUsize = AtomicUsize::new(0);

/// The many-keys value as hitbox caches it: `CacheableResponse` is hitbox's trait and `Item`
/// bench-support's type, so the value is wrapped in a local struct that derives it (no skipped
/// field: the cached form is the struct itself). The wrapper is free: it moves the `Vec`.
#[derive(Debug, Clone, Serialize, Deserialize, CacheableResponse)]
pub struct Catalog {
    items: Vec<Item>,
}

/// What the hitbox function returns (an `Err` is never cached).
type HitboxAnswer = Result<Catalog, String>;
/// A hitbox cache on Redis with a value format `F`.
type HitboxCache<F> = hitbox_fn::Cache<
    RedisBackend<F, PassthroughCompressor>,
    BroadcastConcurrencyManager<HitboxAnswer>,
    OffloadManager,
>;

static HITBOX_BINCODE: OnceLock<HitboxCache<hitbox_backend::format::BincodeFormat>> =
    OnceLock::new();
static HITBOX_JSON: OnceLock<HitboxCache<JsonFormat>> = OnceLock::new();

/// hitbox's policy matching action-cache's `fresh = 3600, stale = 7200`: stale after an hour,
/// gone after three, stale answers served while one revalidation runs in the background, one
/// loader per key on a miss.
fn hitbox_policy() -> PolicyConfig {
    PolicyConfig::builder()
        .stale(FRESH)
        .ttl(FRESH + STALE)
        .stale_policy(StalePolicy::OffloadRevalidate)
        .concurrency(ConcurrencyLimit::new(1).expect("1 is in 1..=255"))
        .build()
}

/// Builds the two hitbox caches: the default value format (bincode) on database 0 and
/// `JsonFormat` on database 1 (the function and so the keys are the same). Inside the runtime:
/// the offload manager spawns its tasks there.
fn install_hitbox(port: u16) {
    let url = |db: u8| format!("redis://127.0.0.1:{port}/{db}");
    let bincode = RedisBackend::builder()
        .connection(ConnectionMode::single(url(0)))
        .build()
        .expect("hitbox redis backend");
    let json = RedisBackend::builder()
        .connection(ConnectionMode::single(url(1)))
        .value_format(JsonFormat)
        .build()
        .expect("hitbox redis backend (JSON)");
    let _ = HITBOX_BINCODE.set(hitbox_cache(bincode));
    let _ = HITBOX_JSON.set(hitbox_cache(json));
}

/// A hitbox cache on `backend` as its docs recommend it for production: the broadcast
/// concurrency manager (dogpile prevention) and the offload manager (background revalidation).
fn hitbox_cache<F>(backend: RedisBackend<F, PassthroughCompressor>) -> HitboxCache<F>
where
    F: hitbox_backend::format::Format + Send + Sync + 'static,
{
    hitbox_fn::Cache::builder()
        .backend(backend)
        .policy(hitbox_policy())
        .concurrency_manager(BroadcastConcurrencyManager::<HitboxAnswer>::new())
        .offload(OffloadManager::with_defaults())
        .build()
}

/// The many-keys function through hitbox.
#[hitbox_fn::cached(prefix = "peers.catalog")]
async fn hitbox_catalog(page: u32) -> HitboxAnswer {
    HITBOX_LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(Catalog {
        items: support::backend_catalog(page),
    })
}

/// The many-keys function through the `cached` crate, on Redis through a `ConnectionManager`.
#[cached::macros::concurrent_cached(
    map_error = r##"|e| format!("cached store: {e}")"##,
    ty = "cached::AsyncRedisCache<u32, Vec<Item>>",
    create = r##"{
        cached::AsyncRedisCache::builder("peers_cached")
            .ttl(FRESH + STALE)
            .connection_string(support::redis_url())
            .connection_manager(true)
            .build()
            .await
            .expect("cached crate redis store")
    }"##,
    convert = r##"{ page }"##
)]
async fn cached_catalog(page: u32) -> Result<Vec<Item>, String> {
    CACHED_LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(support::backend_catalog(page))
}

/// The page the `i`-th call asks for: uniform at random over the [`CATALOGS`] keys
/// (SplitMix64 of `i`), so concurrent tasks never walk the keys in step: a lockstep order
/// would put several tasks on one key at once and flatter whoever coalesces identical reads.
fn page(i: usize) -> u32 {
    let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % CATALOGS as u64) as u32
}

/// One call of every cached subject for `page`, checking the value.
async fn call_all(page: u32) {
    let want = support::backend_catalog(page);
    assert_eq!(support::catalog(page).await.expect("catalog"), want);
    assert_eq!(support::catalog_mp(page).await.expect("catalog_mp"), want);
    assert_eq!(cached_catalog(page).await.expect("cached"), want);
    let hb = hitbox_catalog(page)
        .cache(HITBOX_BINCODE.get().expect("installed"))
        .await
        .expect("hitbox");
    assert_eq!(hb.items, want);
    let hj = hitbox_catalog(page)
        .cache(HITBOX_JSON.get().expect("installed"))
        .await
        .expect("hitbox json");
    assert_eq!(hj.items, want);
}

fn loads() -> usize {
    support::LOADS.load(Ordering::Relaxed)
        + CACHED_LOADS.load(Ordering::Relaxed)
        + HITBOX_LOADS.load(Ordering::Relaxed)
}

/// The Redis key the `cached` crate's store keeps `page` under (namespace, prefix, key).
fn cached_key(page: u32) -> String {
    format!("cached-redis-store:peers_cached:{page}")
}

/// Decodes a `cached` entry as its store writes it: a positional MessagePack array of the value
/// and a format version.
fn decode_cached_entry(bytes: &[u8]) -> Vec<Item> {
    rmp_serde::from_slice::<(Vec<Item>, Option<u64>)>(bytes)
        .expect("a cached entry")
        .0
}

/// A plain `HGET <key> d` of the entries hitbox stored (its data field) on one Redis
/// database, on its own `ConnectionManager`: the floor of a hitbox hit, which itself reads
/// `HMGET d s` and `PTTL` in one pipeline. hitbox's keys are its `CacheKey` in bitcode, so
/// they are found by type (every hash of the database is one).
#[derive(Clone)]
struct HitboxRaw {
    conn: ConnectionManager,
    keys: Arc<Vec<Vec<u8>>>,
}

impl HitboxRaw {
    async fn connect(url: &str) -> HitboxRaw {
        let client = redis::Client::open(url).expect("redis url");
        let mut conn = ConnectionManager::new(client).await.expect("connect");
        let all: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        let mut pipe = redis::pipe();
        for k in &all {
            pipe.cmd("TYPE").arg(k);
        }
        let types: Vec<String> = pipe.query_async(&mut conn).await.expect("TYPE");
        let keys: Vec<Vec<u8>> = all
            .into_iter()
            .zip(types)
            .filter(|(_, t)| t == "hash")
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.len(), CATALOGS, "one hitbox entry per page");
        HitboxRaw {
            conn,
            keys: Arc::new(keys),
        }
    }

    async fn get_nth(&self, i: usize) -> Vec<u8> {
        let mut conn = self.conn.clone();
        let bytes: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(&self.keys[i % self.keys.len()])
            .arg("d")
            .query_async(&mut conn)
            .await
            .expect("HGET");
        bytes.expect("warmed entry")
    }
}

/// Decodes hitbox's data field the way its `BincodeFormat` does (bincode 2, standard config).
fn decode_bincode(bytes: &[u8]) -> Catalog {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .expect("a hitbox bincode entry")
        .0
}

/// Loads every page into every subject, then reads them all again until a full pass runs no
/// loader (a write that timed out under the warm-up's load left a key cold: the next pass
/// loads it).
async fn warm() {
    support::spread(250, CATALOGS, |i| call_all(i as u32)).await;
    for pass in 0.. {
        assert!(pass < 10, "entries never all stayed in Redis");
        let before = loads();
        support::spread(250, CATALOGS, |i| call_all(i as u32)).await;
        if loads() == before {
            break;
        }
    }
}

/// Hits/s of one run of `op` over [`HITS`] calls from [`TASKS`] tasks.
async fn run<F, Fut>(op: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let t = Instant::now();
    support::spread(TASKS, HITS, op).await;
    HITS as f64 / t.elapsed().as_secs_f64()
}

/// The raw connections the floors read with, and one to read the server's command counts.
struct Floors {
    json: RawRedis,
    mp: RawRedis,
    cached: RawRedis,
    hitbox: HitboxRaw,
    admin: ConnectionManager,
}

/// Commands the server has run (`INFO commandstats`, every command summed), not counting the
/// `INFO` calls themselves.
async fn commands_run(admin: &ConnectionManager) -> u64 {
    let mut conn = admin.clone();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The subjects, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    CeilingGet,
    FloorJson,
    FloorMp,
    FloorCached,
    FloorHitbox,
    ActionJson,
    ActionMp,
    Cached,
    Hitbox,
    HitboxJson,
}

impl Subject {
    const ALL: [Subject; 10] = [
        Subject::CeilingGet,
        Subject::FloorJson,
        Subject::FloorMp,
        Subject::FloorCached,
        Subject::FloorHitbox,
        Subject::ActionJson,
        Subject::ActionMp,
        Subject::Cached,
        Subject::Hitbox,
        Subject::HitboxJson,
    ];

    fn label(self) -> &'static str {
        match self {
            Subject::CeilingGet => {
                "ceiling: raw `GET` of `cached`'s entry, not decoded (no Redis-backed cache hit of this value can be faster)"
            }
            Subject::FloorJson => "floor: raw `GET` + JSON decode (action-cache's JSON entry)",
            Subject::FloorMp => {
                "floor: raw `GET` + MessagePack decode (action-cache's MessagePack entry)"
            }
            Subject::FloorCached => {
                "floor: raw `GET` + positional MessagePack decode (`cached`'s entry)"
            }
            Subject::FloorHitbox => "floor: raw `HGET d` + bincode decode (hitbox's entry)",
            Subject::ActionJson => "action-cache `#[cached_action]`, JSON",
            Subject::ActionMp => "action-cache `#[cached_action]`, MessagePack",
            Subject::Cached => "`cached` 4.1 `#[concurrent_cached]` + `AsyncRedisCache`",
            Subject::Hitbox => {
                "hitbox 0.2 `#[cached]` + `RedisBackend` + `BroadcastConcurrencyManager` (bincode, default)"
            }
            Subject::HitboxJson => {
                "hitbox 0.2, the same with `value_format(JsonFormat)`"
            }
        }
    }

    /// The floor this subject is compared with.
    fn floor(self) -> Option<Subject> {
        match self {
            Subject::CeilingGet
            | Subject::FloorJson
            | Subject::FloorMp
            | Subject::FloorCached
            | Subject::FloorHitbox => None,
            // hitbox's JSON is compared with the JSON floor of action-cache's entry.
            Subject::ActionJson | Subject::HitboxJson => Some(Subject::FloorJson),
            Subject::ActionMp => Some(Subject::FloorMp),
            Subject::Cached => Some(Subject::FloorCached),
            Subject::Hitbox => Some(Subject::FloorHitbox),
        }
    }

    /// The subject whose stored entries this one reads (a floor reads its cache's).
    fn entry_of(self) -> Subject {
        match self {
            Subject::FloorJson => Subject::ActionJson,
            Subject::FloorMp => Subject::ActionMp,
            Subject::CeilingGet | Subject::FloorCached => Subject::Cached,
            Subject::FloorHitbox => Subject::Hitbox,
            s => s,
        }
    }

    async fn measure(self, floors: &Floors) -> f64 {
        match self {
            Subject::CeilingGet => {
                let raw = floors.cached.clone();
                run(move |i| {
                    let raw = raw.clone();
                    async move {
                        black_box(raw.get_nth(page(i) as usize).await);
                    }
                })
                .await
            }
            Subject::FloorJson => {
                let raw = floors.json.clone();
                run(move |i| {
                    let raw = raw.clone();
                    async move {
                        let bytes = raw.get_nth(page(i) as usize).await;
                        black_box(support::decode_json_entry(&bytes));
                    }
                })
                .await
            }
            Subject::FloorMp => {
                let raw = floors.mp.clone();
                run(move |i| {
                    let raw = raw.clone();
                    async move {
                        let bytes = raw.get_nth(page(i) as usize).await;
                        black_box(support::decode_message_pack_entry(&bytes));
                    }
                })
                .await
            }
            Subject::FloorCached => {
                let raw = floors.cached.clone();
                run(move |i| {
                    let raw = raw.clone();
                    async move {
                        let bytes = raw.get_nth(page(i) as usize).await;
                        black_box(decode_cached_entry(&bytes));
                    }
                })
                .await
            }
            Subject::FloorHitbox => {
                let raw = floors.hitbox.clone();
                run(move |i| {
                    let raw = raw.clone();
                    async move {
                        let bytes = raw.get_nth(page(i) as usize).await;
                        black_box(decode_bincode(&bytes));
                    }
                })
                .await
            }
            Subject::ActionJson => {
                run(|i| async move {
                    black_box(support::catalog(page(i)).await.expect("hit"));
                })
                .await
            }
            Subject::ActionMp => {
                run(|i| async move {
                    black_box(support::catalog_mp(page(i)).await.expect("hit"));
                })
                .await
            }
            Subject::Cached => {
                run(|i| async move {
                    black_box(cached_catalog(page(i)).await.expect("hit"));
                })
                .await
            }
            Subject::Hitbox => {
                run(|i| async move {
                    let cache = HITBOX_BINCODE.get().expect("installed");
                    black_box(hitbox_catalog(page(i)).cache(cache).await.expect("hit"));
                })
                .await
            }
            Subject::HitboxJson => {
                run(|i| async move {
                    let cache = HITBOX_JSON.get().expect("installed");
                    black_box(hitbox_catalog(page(i)).cache(cache).await.expect("hit"));
                })
                .await
            }
        }
    }
}

/// Bytes of one stored value (page 0) for each subject: the entry, or hitbox's data field.
async fn entry_sizes(port: u16, floors: &Floors) -> [(Subject, usize); 5] {
    let hash_field = |db: u8| async move {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/{db}")).expect("url");
        let mut conn = ConnectionManager::new(client).await.expect("connect");
        let raw = HitboxRaw::connect(&format!("redis://127.0.0.1:{port}/{db}")).await;
        let len: usize = redis::cmd("HSTRLEN")
            .arg(&raw.keys[0])
            .arg("d")
            .query_async(&mut conn)
            .await
            .expect("HSTRLEN");
        len
    };
    [
        (Subject::ActionJson, floors.json.get_nth(0).await.len()),
        (Subject::ActionMp, floors.mp.get_nth(0).await.len()),
        (Subject::Cached, floors.cached.get_nth(0).await.len()),
        (Subject::Hitbox, hash_field(0).await),
        (Subject::HitboxJson, hash_field(1).await),
    ]
}

fn main() {
    let started = Instant::now();
    let load_before = support::load_average();
    let server = RedisServer::start();
    support::install(&server.url());
    let rt = support::runtime();
    let (floors, sizes) = rt.block_on(async {
        install_hitbox(server.port());
        warm().await;
        let floors = Floors {
            json: RawRedis::catalogs(support::catalog_key).await,
            mp: RawRedis::catalogs(support::catalog_mp_key).await,
            cached: RawRedis::catalogs(cached_key).await,
            hitbox: HitboxRaw::connect(&server.url()).await,
            admin: ConnectionManager::new(redis::Client::open(server.url()).expect("url"))
                .await
                .expect("connect"),
        };
        // Every floor finds every entry.
        for i in 0..CATALOGS {
            black_box(floors.json.get_nth(i).await);
            black_box(floors.mp.get_nth(i).await);
            black_box(floors.cached.get_nth(i).await);
            black_box(floors.hitbox.get_nth(i).await);
        }
        let sizes = entry_sizes(server.port(), &floors).await;
        (floors, sizes)
    });
    let warmed = started.elapsed();

    let stats_before = [
        support::catalog_cache().stats(),
        support::catalog_mp_cache().stats(),
    ];
    let n = Subject::ALL.len();
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut loaded = vec![0usize; n];
    let mut commands = vec![0u64; n];
    for _ in 0..REPEATS {
        for (k, s) in Subject::ALL.iter().enumerate() {
            let before = loads();
            let commands_before = rt.block_on(commands_run(&floors.admin));
            runs[k].push(rt.block_on(s.measure(&floors)));
            commands[k] += rt.block_on(commands_run(&floors.admin)) - commands_before;
            loaded[k] += loads() - before;
        }
    }
    let index = |s: Subject| {
        Subject::ALL
            .iter()
            .position(|x| *x == s)
            .expect("a subject")
    };
    let median = |s: Subject| {
        let mut r = runs[index(s)].clone();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };

    println!(
        "Hits/s, {} keys of a 25-struct value (`Vec<Item>`), {TASKS} tasks, median of {REPEATS} interleaved runs of {} hits each:",
        thousands(CATALOGS as f64),
        thousands(HITS as f64)
    );
    println!();
    println!("| Subject | Stored value | Redis commands per call | Hits/s | Of its floor | Loader runs while measured |");
    println!("|---|---|---|---|---|---|");
    for s in Subject::ALL {
        let size = sizes
            .iter()
            .find(|(x, _)| *x == s.entry_of())
            .map_or("—".to_string(), |(_, b)| format!("{b} B"));
        let of_floor = s.floor().map_or("—".to_string(), |f| {
            format!("{:.2}×", median(s) / median(f))
        });
        let per_call = commands[index(s)] as f64 / (REPEATS * HITS) as f64;
        println!(
            "| {} | {size} | {per_call:.2} | {} | {of_floor} | {} |",
            s.label(),
            thousands(median(s)),
            loaded[index(s)]
        );
    }
    let mp = median(Subject::ActionMp);
    let of_floor = mp / median(Subject::FloorMp);
    let of_cached = mp / median(Subject::Cached);
    let of_hitbox = mp / median(Subject::Hitbox);
    let met = |ok: bool| if ok { "met" } else { "**not met**" };
    println!();
    println!(
        "action-cache MessagePack: {of_floor:.2}× its floor (target ≥ 0.95×: {}), {of_cached:.2}× `cached` (target ≥ 1.3×: {}), {of_hitbox:.2}× hitbox (target ≥ 1.3×: {}); {:.2}× hitbox with `JsonFormat`. action-cache JSON: {:.2}× hitbox with `JsonFormat`.",
        met(of_floor >= 0.95),
        met(of_cached >= 1.3),
        met(of_hitbox >= 1.3),
        mp / median(Subject::HitboxJson),
        median(Subject::ActionJson) / median(Subject::HitboxJson),
    );
    let ceiling = median(Subject::CeilingGet);
    println!(
        "1.3× `cached` is {} hits/s; a raw `GET` of its (smaller) entry with no decode at all ran {} ({:.2}× `cached`), so what a hit may spend beyond that `GET` to meet it is {:.1} µs of the 2 cores' time per hit, against {:.1} µs that `cached`'s own hit spends.",
        thousands(1.3 * median(Subject::Cached)),
        thousands(ceiling),
        ceiling / median(Subject::Cached),
        (2.0 / (1.3 * median(Subject::Cached)) - 2.0 / ceiling) * 1e6,
        (2.0 / median(Subject::Cached) - 2.0 / ceiling) * 1e6,
    );
    for (name, cache, before) in [
        ("JSON", support::catalog_cache(), &stats_before[0]),
        ("MessagePack", support::catalog_mp_cache(), &stats_before[1]),
    ] {
        let now = cache.stats();
        println!(
            "action-cache {name} while measured: {} fresh hits, {} misses, {} store errors (timeouts that failed open to the loader), {} store calls skipped by the open circuit breaker.",
            now.fresh_hits - before.fresh_hits,
            now.misses - before.misses,
            now.store_errors - before.store_errors,
            now.store_skipped - before.store_skipped,
        );
    }
    println!();
    println!("Every run (hits/s, in the order run):");
    println!();
    for (k, s) in Subject::ALL.iter().enumerate() {
        let r: Vec<String> = runs[k].iter().map(|x| thousands(*x)).collect();
        println!("- {}: {}", s.label(), r.join(", "));
    }
    println!();
    println!("Machine: {}", support::machine());
    println!(
        "Load average before the run: {load_before}; after: {}; warm-up {:.0} s, whole run {:.0} s.",
        support::load_average(),
        warmed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(rt);
    drop(server);
}

/// `12345.6` as `12,346`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (n, c) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
