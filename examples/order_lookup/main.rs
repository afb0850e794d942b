//! The order-lookup flow end to end: Genesys Cloud data actions behind `#[cached_action]`.
//!
//! ```sh
//! cargo run --example order_lookup                          # fake Genesys + in-memory cache
//! cargo run --example order_lookup -- --fresh 2s --stale 10s --fake-latency 200ms
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example order_lookup
//! GENESYS_CLIENT_ID=… GENESYS_CLIENT_SECRET=… GENESYS_REGION=eu_west_1 cargo run --example order_lookup
//! ```
//!
//! 1. Genesys: a real org from `GENESYS_*`, else the in-process fake server, which takes
//!    `--fake-latency` (80 ms) per request, about what a data action's round trip costs.
//! 2. Cache: Redis from `REDIS_URL`, else in memory. An unreachable Redis only warns: the
//!    cache fails open and every call goes to Genesys.
//! 3. A cached function lists the data actions whose name contains `order_lookup` (every
//!    page, sorted by name): a miss, then a hit.
//! 4. Stale-while-revalidate with short windows (`--fresh`, `--stale`): a stale hit returns at
//!    once while one refresh runs, then the refreshed value.
//! 5. A cached data-action execution for one order, purged with the generated `_invalidate`.

use action_cache::genesys::fake::FakeGenesys;
use action_cache::genesys::{self, Action, ClientBuilder, ExecuteOptions};
use action_cache::{cached_action, Cache, CacheKey, LoadError, ManualClock, Policy, Stats};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENVIRONMENT: &str = "\
Environment:
  GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET, GENESYS_REGION
        OAuth client credentials and region (e.g. eu_west_1 or mypurecloud.ie) of a real org.
        With none of them set, an in-process fake Genesys server is started.
  REDIS_URL
        Redis to cache in (e.g. redis://127.0.0.1:6379). Unset: an in-memory cache.
        Unreachable: a warning, and the run continues uncached (fail-open).";

/// Command-line flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "order_lookup",
    about = "Cached Genesys Cloud order lookups: miss, hit, stale-while-revalidate, purge.",
    after_help = ENVIRONMENT
)]
pub(crate) struct Args {
    /// Fresh window of the stale-while-revalidate demo (e.g. 500ms, 1s, 2m).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) fresh: Duration,
    /// Stale window of the demo, counted from the write; not shorter than --fresh.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) stale: Duration,
    /// The order to look up with the first `order_lookup` data action.
    #[arg(long, default_value = "A-1001")]
    pub(crate) order_id: String,
    /// Redis URL; the in-memory cache when unset.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,
    /// How long the fake Genesys server takes per API request (a data action's round trip),
    /// so that the miss and hit lines show what the cache saves. Ignored against a real org.
    #[arg(long, default_value = "80ms", value_parser = parse_duration)]
    pub(crate) fake_latency: Duration,
}

/// Parses `250ms`, `1s`, `2m`, `1h` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 1s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "unknown unit `{unit}` in `{text}`: use ms, s, m or h"
        )),
    }
}

/// Genesys and the cache, shared by the cached functions. Cheap to clone, as a background
/// refresh of a `&self` method needs.
#[derive(Debug, Clone)]
struct Orders {
    genesys: genesys::Client,
    cache: Cache,
}

impl Orders {
    /// Every data action whose name contains `order_lookup`, across every page, sorted by name.
    #[cached_action(fresh = 300, stale = 900, cache = &self.cache, name = "order_lookup.actions")]
    async fn order_lookup_actions(&self) -> Result<Vec<Action>, genesys::Error> {
        self.genesys
            .actions_with_name_containing("order_lookup")
            .await
    }

    /// Executes a data action for one order.
    #[cached_action(
        fresh = 300,
        stale = 900,
        cache = &self.cache,
        name = "order_lookup.order",
        tags = ["order:{order_id}"]
    )]
    async fn order(&self, action_id: &str, order_id: &str) -> Result<Value, genesys::Error> {
        let input = json!({ "orderId": order_id });
        let output = self
            .genesys
            .execute_action(action_id, &input, &ExecuteOptions::default())
            .await?;
        Ok(output.into_body())
    }
}

/// What the stale-while-revalidate demo caches: which load produced it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Snapshot {
    load: u32,
    actions: usize,
}

/// Where the run's settings come from; tests replace the environment and the clock.
pub(crate) struct Setup<'a> {
    /// Reads an environment variable.
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
    /// A manual clock instead of real time: waits advance it instead of sleeping.
    pub(crate) clock: Option<ManualClock>,
    /// A configured Genesys client to use instead of the environment's.
    pub(crate) genesys: Option<ClientBuilder>,
}

const GENESYS_VARS: [&str; 3] = [
    "GENESYS_CLIENT_ID",
    "GENESYS_CLIENT_SECRET",
    "GENESYS_REGION",
];

/// Runs the whole flow, writing its report to `out`. `Err` is one line saying what is wrong.
pub(crate) async fn run(args: &Args, setup: Setup<'_>, out: &mut dyn Write) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot write the report: {e}");
    if args.stale < args.fresh {
        return Err(format!(
            "--stale ({:?}) must not be shorter than --fresh ({:?})",
            args.stale, args.fresh
        ));
    }

    // 1. Genesys: a real org when any GENESYS_* variable is set, else the fake server (kept
    //    alive in `_fake` for as long as the client talks to it).
    let env = setup.env;
    let configured = match setup.genesys {
        Some(builder) => Some(builder),
        None if GENESYS_VARS.iter().any(|v| env(v).is_some()) => Some(
            ClientBuilder::from_env_lookup(env)
                .map_err(|e| format!("Genesys configuration: {e}"))?,
        ),
        None => None,
    };
    let (client, _fake) = if let Some(builder) = configured {
        let client = builder
            .build()
            .map_err(|e| format!("Genesys configuration: {e}"))?;
        writeln!(out, "genesys: {}", client.api_base_url()).map_err(io)?;
        (client, None)
    } else {
        let fake = FakeGenesys::builder()
            .latency(args.fake_latency)
            .start()
            .await
            .map_err(|e| format!("cannot start the fake Genesys server: {e}"))?;
        let client = fake.client_builder().build().map_err(|e| e.to_string())?;
        writeln!(
            out,
            "genesys: no GENESYS_* variables set, using the in-process fake server at {} \
             ({:?} per request)",
            fake.base_url(),
            args.fake_latency
        )
        .map_err(io)?;
        (client, Some(fake))
    };

    // 2. The cache: Redis or memory. Building never connects; `ping` tells whether Redis answers.
    let mut builder = Cache::builder();
    if let Some(clock) = &setup.clock {
        builder = builder.clock(Arc::new(clock.clone()));
    }
    let cache = match &args.redis_url {
        Some(url) => {
            let cache = builder
                .redis_url(url)
                .build()
                .map_err(|e| format!("REDIS_URL: {e}"))?;
            match cache.ping().await {
                Ok(()) => writeln!(out, "cache:   Redis at {}", redact(url)),
                Err(e) => writeln!(
                    out,
                    "warning: Redis at {} is unreachable ({e}); running fail-open, every call goes to Genesys",
                    redact(url)
                ),
            }
            .map_err(io)?;
            cache
        }
        None => {
            writeln!(out, "cache:   no REDIS_URL set, using the in-memory store").map_err(io)?;
            builder.in_memory().build().map_err(|e| e.to_string())?
        }
    };
    let orders = Orders {
        genesys: client,
        cache: cache.clone(),
    };
    let demo_key = CacheKey::builder("order_lookup.swr_demo").build();
    // Start cold, so that a shared Redis tells the same story on every run.
    let _ = orders.order_lookup_actions_invalidate().await;
    let _ = cache.invalidate(&demo_key).await;
    let _ = cache
        .invalidate_tag(&format!("order:{}", args.order_id))
        .await;

    // 3. Miss, then hit.
    writeln!(out, "\n1. data actions whose name contains `order_lookup`").map_err(io)?;
    let mut actions = Vec::new();
    for _ in 0..2 {
        let (result, took, outcome) = timed(&cache, orders.order_lookup_actions()).await;
        actions = result.map_err(genesys_error)?;
        writeln!(
            out,
            "   {outcome:<9} {} actions in {}",
            actions.len(),
            ms(took)
        )
        .map_err(io)?;
    }
    for action in &actions {
        writeln!(
            out,
            "             {}",
            action.name.as_deref().unwrap_or("?")
        )
        .map_err(io)?;
    }

    // 4. Stale-while-revalidate, with windows from the flags (no jitter, so they are exact).
    writeln!(
        out,
        "\n2. stale-while-revalidate (fresh {:?}, stale {:?})",
        args.fresh, args.stale
    )
    .map_err(io)?;
    let policy = Policy::builder()
        .fresh(args.fresh)
        .stale(args.stale)
        .jitter(0.0)
        .build()
        .map_err(|e| e.to_string())?;
    let loads = Arc::new(AtomicU32::new(0));
    let snapshot = |orders: &Orders| {
        let (orders, loads) = (orders.clone(), loads.clone());
        || async move {
            let actions = orders
                .genesys
                .actions_with_name_containing("order_lookup")
                .await?;
            let load = loads.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, genesys::Error>(Snapshot {
                load,
                actions: actions.len(),
            })
        }
    };
    let (first, took, outcome) = timed(
        &cache,
        cache.get_or_load(&demo_key, &policy, snapshot(&orders)),
    )
    .await;
    let first = first.map_err(load_error)?;
    writeln!(out, "   {outcome:<9} load #{} in {}", first.load, ms(took)).map_err(io)?;

    writeln!(
        out,
        "   … waiting {:?} for the value to turn stale",
        args.fresh
    )
    .map_err(io)?;
    match &setup.clock {
        Some(clock) => clock.advance(args.fresh),
        None => tokio::time::sleep(args.fresh).await,
    }
    let stale_hit_at = Instant::now();
    let (stale, took, outcome) = timed(
        &cache,
        cache.get_or_load(&demo_key, &policy, snapshot(&orders)),
    )
    .await;
    let stale = stale.map_err(load_error)?;
    if outcome == "stale hit" {
        writeln!(
            out,
            "   {outcome:<9} load #{} in {} (returned at once; one refresh started)",
            stale.load,
            ms(took)
        )
        .map_err(io)?;
        let (refreshed, after) =
            wait_for_refresh(&cache, &demo_key, &policy, stale.load, stale_hit_at, || {
                snapshot(&orders)
            })
            .await?;
        writeln!(
            out,
            "   refreshed load #{} ({} actions), {} after the stale hit; loads so far: {}",
            refreshed.load,
            refreshed.actions,
            ms(after),
            loads.load(Ordering::SeqCst)
        )
        .map_err(io)?;
    } else {
        // Failing open, nothing was stored, so there is nothing to serve stale.
        writeln!(
            out,
            "   {outcome:<9} load #{} in {} (nothing stored: no stale value to serve)",
            stale.load,
            ms(took)
        )
        .map_err(io)?;
    }

    // 5. Execute a data action for one order through a cached function, then purge it.
    let Some(action) = actions.first() else {
        writeln!(
            out,
            "\nno `order_lookup` data action found; nothing to execute"
        )
        .map_err(io)?;
        return summary(&cache, out).map_err(io);
    };
    let name = action.name.as_deref().unwrap_or(&action.id);
    writeln!(out, "\n3. {name} for order {}", args.order_id).map_err(io)?;
    for step in 0..3 {
        if step == 2 {
            // A purge needs the store: with Redis down it fails (the entry expires on its own).
            match orders.order_invalidate(&action.id, &args.order_id).await {
                Ok(purged) => writeln!(out, "   purged    order_invalidate(..) -> {purged}"),
                Err(e) => writeln!(out, "   purge     failed: {e}"),
            }
            .map_err(io)?;
        }
        let (result, took, outcome) = timed(&cache, orders.order(&action.id, &args.order_id)).await;
        match result {
            Ok(body) => writeln!(out, "   {outcome:<9} {} in {}", order_line(&body), ms(took)),
            // A failing action is part of the story (an unknown order), not a crash.
            Err(e) => writeln!(out, "   {outcome:<9} failed: {}", genesys_error(e)),
        }
        .map_err(io)?;
    }

    summary(&cache, out).map_err(io)
}

/// Polls until the background refresh's value (a load after `stale_load`) is served; gives up
/// after the stale window (at least 5 s) of real time. Returns it and the time since `since`.
async fn wait_for_refresh<L, F>(
    cache: &Cache,
    key: &CacheKey,
    policy: &Policy,
    stale_load: u32,
    since: Instant,
    loader: impl Fn() -> L,
) -> Result<(Snapshot, Duration), String>
where
    L: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = Result<Snapshot, genesys::Error>> + Send + 'static,
{
    let started = Instant::now();
    loop {
        let value = cache
            .get_or_load(key, policy, loader())
            .await
            .map_err(load_error)?;
        if value.load > stale_load {
            return Ok((value, since.elapsed()));
        }
        if started.elapsed() > policy.stale().max(Duration::from_secs(5)) {
            return Err("the background refresh did not complete within the stale window".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `call`, returning its result, its latency and what the cache did.
async fn timed<T>(
    cache: &Cache,
    call: impl std::future::Future<Output = T>,
) -> (T, Duration, &'static str) {
    let before = cache.stats();
    let started = Instant::now();
    let result = call.await;
    let took = started.elapsed();
    let after = cache.stats();
    let outcome = if after.misses > before.misses {
        "miss"
    } else if after.stale_hits > before.stale_hits {
        "stale hit"
    } else if after.fresh_hits > before.fresh_hits {
        "hit"
    } else {
        "uncached"
    };
    (result, took, outcome)
}

fn summary(cache: &Cache, out: &mut dyn Write) -> std::io::Result<()> {
    let Stats {
        fresh_hits,
        stale_hits,
        misses,
        loads,
        refreshes_succeeded,
        store_errors,
        ..
    } = cache.stats();
    writeln!(
        out,
        "\nsummary: {fresh_hits} fresh hits, {stale_hits} stale hits, {misses} misses, \
         {loads} loads, {refreshes_succeeded} background refreshes, {store_errors} store errors"
    )
}

/// One line for a failed cached call (the client's errors never print the secret).
fn genesys_error(e: genesys::Error) -> String {
    format!("Genesys: {e}")
}

/// The same, for a call through `Cache::get_or_load`.
fn load_error(e: LoadError<genesys::Error>) -> String {
    match e {
        LoadError::Loader(e) => genesys_error(e),
        other => other.to_string(),
    }
}

/// `A-1001 SHIPPED 129.95 EUR` for the fake's orders; the raw JSON for other shapes.
fn order_line(body: &Value) -> String {
    let field = |name: &str| match &body[name] {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    match (field("orderId"), field("status")) {
        (Some(id), Some(status)) => {
            let total = [field("total"), field("currency")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            format!("{id} {status} {total}")
        }
        _ => body.to_string(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let setup = Setup {
        env: &env,
        clock: None,
        genesys: None,
    };
    match run(&args, setup, &mut std::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}

// Run by `cargo test` (`test = true` for this example in Cargo.toml).
#[cfg(test)]
mod tests;
