//! A Redis caching proxy between Genesys Cloud and a CRM: a thin wrapper over the
//! `action-cache-proxy` crate with one route and the settings below.
//!
//! Point a Genesys Data Action at this service instead of the CRM: account reads are served
//! from the cache (fresh 5 min, then stale for up to 15 min while one background refresh asks
//! the CRM), and the CRM purges changed accounts through a signed webhook.
//!
//! ```sh
//! WEBHOOK_SECRET=change-me cargo run --example crm_proxy   # built-in fake CRM, in-memory cache
//! curl -i http://127.0.0.1:8080/accounts/42                # X-Cache: MISS, then HIT
//! body='{"account_id":"42"}'
//! sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac change-me | sed 's/^.* //')
//! curl -i -X POST http://127.0.0.1:8080/webhooks/crm \
//!      -H "X-Signature-256: sha256=$sig" -H 'Content-Type: application/json' -d "$body"
//! ```
//!
//! `--help` lists every setting; each one can also come from the environment. For any other
//! CRM, routes and upstreams, run the crate's binary with a configuration file instead:
//! `cargo run -p action-cache-proxy -- serve --config proxy.toml`.

mod fake_crm;
mod settings;
// Run by `cargo test` (`test = true` for this example in Cargo.toml).
#[cfg(test)]
mod tests;

use action_cache_proxy::Proxy;
use clap::Parser;
use fake_crm::FakeCrm;
use settings::Settings;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Settings, from flags or the environment.
#[derive(Debug, Parser)]
#[command(
    name = "crm_proxy",
    about = "A Redis caching proxy between Genesys Cloud Data Actions and a CRM.",
    after_help = "Environment: WEBHOOK_SECRET (required unless --insecure-demo) is the HMAC-SHA256 \
key the CRM signs purge webhooks with; RUST_LOG filters the JSON logs (default info)."
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    listen_addr: SocketAddr,
    /// The CRM's base URL (accounts are read from {CRM_BASE_URL}/accounts/{id}). Unset: a
    /// built-in fake CRM that takes 50 ms per call.
    #[arg(long, env = "CRM_BASE_URL")]
    crm_base_url: Option<String>,
    /// How long to wait for the CRM, in seconds (below Genesys's 60 s data-action limit).
    #[arg(long, env = "CRM_TIMEOUT_SECS", default_value_t = 5.0)]
    crm_timeout_secs: f64,
    /// Redis URL. Unset: an in-memory cache. Unreachable: a warning, then fail-open.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Run without WEBHOOK_SECRET; the purge webhook is then off. For local demos only.
    #[arg(long, env = "INSECURE_DEMO")]
    insecure_demo: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(lines) => {
            for line in lines.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let secret = std::env::var("WEBHOOK_SECRET")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if secret.is_none() {
        if !args.insecure_demo {
            return Err(
                "WEBHOOK_SECRET is not set: purge webhooks could not be authenticated \
                        (set it, or pass --insecure-demo for a local demo without purges)"
                    .into(),
            );
        }
        tracing::warn!("insecure demo mode: no WEBHOOK_SECRET, so the purge webhook is off");
    }
    let timeout = Duration::try_from_secs_f64(args.crm_timeout_secs).map_err(|_| {
        "CRM_TIMEOUT_SECS must be above 0 and below Genesys's 60 s data-action limit"
    })?;
    // Keep the fake CRM alive for as long as the proxy runs.
    let (crm_base_url, _fake) = match &args.crm_base_url {
        Some(url) => (url.clone(), None),
        None => {
            let fake = FakeCrm::start(Duration::from_millis(50))
                .await
                .map_err(|e| format!("cannot start the fake CRM: {e}"))?;
            tracing::info!(url = %fake.base_url(), "no CRM_BASE_URL set: using the built-in fake CRM (50 ms per call)");
            (fake.base_url(), Some(fake))
        }
    };
    if args.redis_url.is_none() {
        tracing::info!("no REDIS_URL set: using the in-memory cache");
    }
    let config = settings::config(&Settings {
        listen_addr: args.listen_addr.to_string(),
        crm_base_url,
        crm_timeout: timeout,
        redis_url: args.redis_url.clone(),
        webhook_secret: secret,
    })?;
    Proxy::builder(config)
        .build()
        .map_err(|e| e.to_string())?
        .run()
        .await
}
