//! A Redis caching proxy between Genesys Cloud and a CRM.
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
//! `--help` lists every setting; each one can also come from the environment.

// The fake CRM's switches and `WebhookSecret::sign` are used by tests/example_crm_proxy.rs.
#[allow(dead_code)]
#[path = "crm_proxy/mod.rs"]
mod proxy;

use action_cache::{Cache, SystemClock};
use clap::Parser;
use proxy::app::App;
use proxy::crm::Crm;
use proxy::fake_crm::FakeCrm;
use proxy::webhook::WebhookSecret;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The longest a Genesys Data Action waits for its endpoint.
const GENESYS_ACTION_LIMIT: Duration = Duration::from_secs(60);

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
    /// Run without WEBHOOK_SECRET, accepting unsigned purges. For local demos only.
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
        Err(line) => {
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let secret = std::env::var("WEBHOOK_SECRET")
        .ok()
        .and_then(|s| WebhookSecret::new(s.trim()));
    if secret.is_none() {
        if !args.insecure_demo {
            return Err(
                "WEBHOOK_SECRET is not set: purge webhooks could not be authenticated \
                        (set it, or pass --insecure-demo for a local demo)"
                    .into(),
            );
        }
        tracing::warn!("insecure demo mode: purge webhooks are accepted without a signature");
    }

    let timeout = Duration::try_from_secs_f64(args.crm_timeout_secs)
        .ok()
        .filter(|t| !t.is_zero() && *t < GENESYS_ACTION_LIMIT)
        .ok_or("CRM_TIMEOUT_SECS must be above 0 and below Genesys's 60 s data-action limit")?;
    // Keep the fake CRM alive for as long as the proxy runs.
    let (crm, _fake) = match &args.crm_base_url {
        Some(url) => (Crm::new(url, timeout)?, None),
        None => {
            let fake = FakeCrm::start(Duration::from_millis(50))
                .await
                .map_err(|e| format!("cannot start the fake CRM: {e}"))?;
            tracing::info!(url = %fake.base_url(), "no CRM_BASE_URL set: using the built-in fake CRM (50 ms per call)");
            (Crm::new(&fake.base_url(), timeout)?, Some(fake))
        }
    };

    let cache = match &args.redis_url {
        Some(url) => Cache::builder()
            .redis_url(url)
            .build()
            .map_err(|e| format!("REDIS_URL: {e}"))?,
        None => {
            tracing::info!("no REDIS_URL set: using the in-memory cache");
            Cache::in_memory()
        }
    };
    if let Err(e) = cache.ping().await {
        tracing::warn!(error = %e, "Redis is unreachable; serving fail-open (every read goes to the CRM)");
    }

    let app = App::new(cache, crm, secret, Arc::new(SystemClock)).router();
    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen_addr))?;
    tracing::info!(addr = %args.listen_addr, "crm_proxy listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM; in-flight requests then finish before the process exits.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
