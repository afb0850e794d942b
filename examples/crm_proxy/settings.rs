//! The example's settings as an `action-cache-proxy` configuration file.

use action_cache_proxy::Config;
use std::time::Duration;

/// The configuration the example serves: `GET /accounts/{id}` read through the cache from
/// `{crm_base_url}/accounts/{id}` (fresh 300 s, stale 900 s, jitter 0.1, the last good copy
/// kept 24 h for stale-if-error), purged by `POST /webhooks/crm` signed with the body-only
/// `sha256=` form under `WEBHOOK_SECRET` (no webhook when `webhook_secret` is `None`).
pub(crate) const TOML: &str = r#"
[server]
listen = "${LISTEN_ADDR}"

[redis]
url_env = "REDIS_URL"

[upstreams.crm]
base_url = "${CRM_BASE_URL}"
timeout = "${CRM_TIMEOUT}"

[[routes]]
name = "account"
path = "/accounts/{id}"
upstream = "crm"
upstream_path = "/accounts/{id}"
fresh = "300s"
stale = "900s"
jitter = 0.1
tags = ["account:{id}"]
stale_if_error = "24h"
purge_alias = "account_id"
"#;

/// The webhook section, added when a secret is set.
const WEBHOOK: &str = r#"
[webhook]
path = "/webhooks/crm"
secret_env = "WEBHOOK_SECRET"
signature = "body-only"
max_body_bytes = 65536
"#;

/// The example's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) listen_addr: String,
    pub(crate) crm_base_url: String,
    pub(crate) crm_timeout: Duration,
    pub(crate) redis_url: Option<String>,
    pub(crate) webhook_secret: Option<String>,
}

/// The validated configuration for `settings`.
///
/// # Errors
///
/// One line per mistake (an unparsable URL, a timeout at or above 60 s, …).
pub(crate) fn config(settings: &Settings) -> Result<Config, String> {
    let text = match settings.webhook_secret {
        Some(_) => format!("{TOML}{WEBHOOK}"),
        None => TOML.to_owned(),
    };
    let s = settings.clone();
    Config::from_toml(&text, "crm_proxy settings", &move |name| match name {
        "LISTEN_ADDR" => Some(s.listen_addr.clone()),
        "CRM_BASE_URL" => Some(s.crm_base_url.clone()),
        "CRM_TIMEOUT" => Some(format!("{}ms", s.crm_timeout.as_millis())),
        "REDIS_URL" => s.redis_url.clone(),
        "WEBHOOK_SECRET" => s.webhook_secret.clone(),
        _ => None,
    })
    .map_err(|e| {
        e.problems
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>()
            .join("\n")
    })
}
