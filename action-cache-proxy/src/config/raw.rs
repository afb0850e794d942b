//! The configuration file as written: `serde` structs that keep each value's place in the file,
//! so that validation can point at the line of a mistake.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A duration as written: whole seconds (`300`) or a string with units (`"5m"`, `"1h 30m"`,
/// `"250ms"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDuration {
    Seconds(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) redis: RawRedis,
    #[serde(default)]
    pub(crate) upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    #[serde(default)]
    pub(crate) routes: Vec<Spanned<RawRoute>>,
    pub(crate) webhook: Option<Spanned<RawWebhook>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) max_request_bytes: Option<Spanned<i64>>,
    pub(crate) max_param_bytes: Option<Spanned<i64>>,
    pub(crate) access_log: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) url_env: Option<Spanned<String>>,
    pub(crate) prefix: Option<Spanned<String>>,
    pub(crate) near_cache: Option<Spanned<i64>>,
    pub(crate) op_timeout: Option<Spanned<RawDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) base_url: Spanned<String>,
    pub(crate) timeout: Option<Spanned<RawDuration>>,
    pub(crate) max_response_bytes: Option<Spanned<i64>>,
    pub(crate) max_concurrency: Option<Spanned<i64>>,
    pub(crate) shed_when_full: Option<bool>,
    pub(crate) pool_idle_per_host: Option<Spanned<i64>>,
    pub(crate) auth: Option<Spanned<RawAuth>>,
}

#[derive(Debug, Deserialize)]
/// Internally tagged, so its fields carry no spans of their own (the table's span is used).
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawAuth {
    None,
    Header {
        name: String,
        value: Option<String>,
        value_env: Option<String>,
    },
    Basic {
        username: String,
        password: Option<String>,
        password_env: Option<String>,
    },
    Bearer {
        token: Option<String>,
        token_env: Option<String>,
    },
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: Option<String>,
        client_secret_env: Option<String>,
        scope: Option<String>,
        client_auth: Option<String>,
        refresh_before: Option<RawDuration>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: Spanned<String>,
    pub(crate) path: Spanned<String>,
    pub(crate) upstream: Spanned<String>,
    pub(crate) upstream_path: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) key_query: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) key_headers: Vec<Spanned<String>>,
    pub(crate) fresh: Spanned<RawDuration>,
    pub(crate) stale: Option<Spanned<RawDuration>>,
    pub(crate) jitter: Option<Spanned<f64>>,
    #[serde(default)]
    pub(crate) tags: Vec<Spanned<String>>,
    pub(crate) stale_if_error: Option<Spanned<RawDuration>>,
    pub(crate) negative: Option<Spanned<RawNegative>>,
    pub(crate) purge_alias: Option<Spanned<String>>,
    pub(crate) cache_control: Option<Spanned<String>>,
    pub(crate) description: Option<String>,
    pub(crate) sample_response: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNegative {
    pub(crate) statuses: Vec<Spanned<i64>>,
    pub(crate) ttl: Spanned<RawDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) secret: Option<Spanned<String>>,
    pub(crate) secret_env: Option<Spanned<String>>,
    pub(crate) signature: Option<Spanned<String>>,
    pub(crate) tolerance: Option<Spanned<RawDuration>>,
    pub(crate) max_body_bytes: Option<Spanned<i64>>,
}
