//! The proxy's configuration: a TOML file, validated as a whole.
//!
//! [`Config::from_toml`] reports every mistake it finds, each on one line with its place in the
//! file (`proxy.toml:14:8: routes[1] "order_lines": stale (10s) is shorter than fresh (30s)`),
//! rather than stopping at the first.
//!
//! Secrets (upstream credentials, the webhook secret) come from the environment only: a `*_env`
//! key naming the variable, or the value written as exactly `"${VAR}"`. A literal secret in the
//! file is refused. Other strings may contain `${VAR}` anywhere.

mod expand;
mod raw;

use crate::template::{PathTemplate, TagTemplate};
use axum::http::HeaderName;
use raw::{RawAuth, RawConfig, RawDuration, RawRoute, RawUpstream, RawWebhook};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;
use url::Url;

/// The longest a Genesys Cloud Data Action waits for its endpoint; upstream timeouts must stay
/// below it so the proxy can still answer (stale-if-error, an error) in time.
pub const GENESYS_ACTION_LIMIT: Duration = Duration::from_secs(60);

/// Paths the proxy serves itself.
const RESERVED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// A value from the environment that must never be printed. `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The listening side.
    pub server: ServerConfig,
    /// Where the cache lives.
    pub redis: RedisConfig,
    /// The backends, by name.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// The cached routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// The signed purge webhook, when configured.
    pub webhook: Option<WebhookConfig>,
}

/// `[server]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on (`listen`, default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Largest request body accepted on any route (`max_request_bytes`, default 64 KiB); larger
    /// ones get 413.
    pub max_request_bytes: usize,
    /// Longest path parameter, key query value or key header value in bytes
    /// (`max_param_bytes`, default 256); longer ones get 400.
    pub max_param_bytes: usize,
    /// Whether every request is logged as one JSON line (`access_log`, default true).
    pub access_log: bool,
}

/// `[redis]`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `url` or the variable `url_env` names; `None`: an in-memory cache (one process only).
    pub url: Option<Secret>,
    /// Key prefix (`prefix`, default `ac`).
    pub prefix: Option<String>,
    /// Entries kept decoded in process as well (`near_cache`, default off).
    pub near_cache: Option<usize>,
    /// Timeout of each Redis operation (`op_timeout`), after which the proxy fails open.
    pub op_timeout: Option<Duration>,
}

/// How the proxy authenticates to an upstream (`auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials (`type = "none"`, the default).
    None,
    /// A static header, e.g. `X-Api-Key` (`type = "header"`, `name`, `value_env`).
    Header {
        /// The header's name.
        name: HeaderName,
        /// Its value.
        value: Secret,
    },
    /// HTTP Basic (`type = "basic"`, `username`, `password_env`).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer` with a static token (`type = "bearer"`, `token_env`).
    Bearer {
        /// The token.
        token: Secret,
    },
    /// OAuth 2.0 client credentials (`type = "oauth2"`, `token_url`, `client_id`,
    /// `client_secret_env`, optional `scope`, `client_auth` and `refresh_before`): a bearer
    /// token from the token endpoint, cached and replaced `refresh_before` its expiry, one
    /// refresh shared by concurrent calls; a 401 from the upstream drops it and the call is
    /// retried once with a new one.
    OAuth2(OAuth2),
}

/// The settings of [`Auth::OAuth2`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuth2 {
    /// The token endpoint (`token_url`, http or https).
    pub token_url: Url,
    /// The client id (`client_id`).
    pub client_id: String,
    /// The client secret (`client_secret_env`, or `client_secret = "${VAR}"`).
    pub client_secret: Secret,
    /// Space-separated scopes asked for (`scope`).
    pub scope: Option<String>,
    /// `client_auth = "basic"` (default: HTTP Basic) or `"body"` (id and secret in the form).
    pub secret_in_body: bool,
    /// How long before its expiry a token is replaced (`refresh_before`, default 60 s; at
    /// most half the token's lifetime).
    pub refresh_before: Duration,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// The name routes refer to.
    pub name: String,
    /// `base_url`: route upstream paths are appended to its path.
    pub base_url: Url,
    /// Whole-call timeout (`timeout`, default 5 s; must be below [`GENESYS_ACTION_LIMIT`]).
    pub timeout: Duration,
    /// Largest response body read (`max_response_bytes`, default 1 MiB); reading stops there
    /// and the call counts as failed.
    pub max_response_bytes: usize,
    /// Calls in flight at once (`max_concurrency`, default 50): the bulkhead.
    pub max_concurrency: usize,
    /// When the bulkhead is full: `false` (default) waits for a slot within the timeout;
    /// `true` sheds at once, serving the last good copy when there is one, else 503.
    pub shed_when_full: bool,
    /// Idle connections kept per host (`pool_idle_per_host`, default 32).
    pub pool_idle_per_host: usize,
    /// Credentials.
    pub auth: Auth,
}

/// Negative caching of a route (`negative = { statuses = [404], ttl = "30s" }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negative {
    /// The upstream statuses cached as answers (4xx only).
    pub statuses: Vec<u16>,
    /// How long they are served without asking again.
    pub ttl: Duration,
}

/// `[[routes]]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouteConfig {
    /// A unique name (metrics label, purge target, Genesys action name).
    pub name: String,
    /// The incoming path template (`/accounts/{id}`).
    pub path: PathTemplate,
    /// The upstream's name.
    pub upstream: String,
    /// The upstream path template (`upstream_path`, default `path`), appended to the base URL.
    pub upstream_path: PathTemplate,
    /// Query parameters that are part of the key and forwarded (`key_query`); others are
    /// dropped.
    pub key_query: Vec<String>,
    /// Request headers that are part of the key and forwarded (`key_headers`, lower case).
    pub key_headers: Vec<HeaderName>,
    /// Fresh window.
    pub fresh: Duration,
    /// Stale window (`stale`, default `fresh`), counted from the write.
    pub stale: Duration,
    /// Jitter, `0.0..=1.0` (default 0.1): each write stretches its windows by up to this much.
    pub jitter: f64,
    /// Tags formatted from path and key query parameters (`account:{id}`).
    pub tags: Vec<TagTemplate>,
    /// How long the last good answer is kept to serve when the upstream fails.
    pub stale_if_error: Option<Duration>,
    /// Upstream error statuses cached as answers.
    pub negative: Option<Negative>,
    /// A purge body `{"<alias>": "<value>"}` purges this route with its one path parameter set
    /// to the value.
    pub purge_alias: Option<String>,
    /// `cache_control = "honour"`: the upstream's `Cache-Control` sets the windows of its 2xx
    /// answers (see [`crate::cache_control`]); `"ignore"` (the default): the route's windows.
    pub honour_cache_control: bool,
    /// Free text, used in the Genesys export.
    pub description: Option<String>,
    /// A sample upstream answer (JSON text), from which the Genesys export derives the output
    /// contract.
    pub sample_response: Option<serde_json::Value>,
}

/// How purge webhooks are signed (`signature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// `X-Signature-256: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` (the default,
    /// `"timestamped"`), with a tolerance and a replay guard.
    Timestamped,
    /// `X-Signature-256: sha256=<hex HMAC-SHA256 of the body>` (`"body-only"`), for CRMs that
    /// cannot sign a timestamp. No replay protection.
    BodyOnly,
}

/// `[webhook]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Where the webhook is served (`path`, default `/webhooks/purge`).
    pub path: String,
    /// The HMAC key (`secret_env`, or `secret = "${VAR}"`).
    pub secret: Secret,
    /// The signature format.
    pub scheme: SignatureScheme,
    /// How far a signed timestamp may be from now (`tolerance`, default 5 min).
    pub tolerance: Duration,
    /// Largest webhook body (`max_body_bytes`, default 64 KiB); larger ones get 413.
    pub max_body_bytes: usize,
}

/// One mistake in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `file:line:column`, or the file alone.
    pub place: String,
    /// What is wrong, naming the key.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Every mistake found in a configuration file, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The mistakes, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates the file at `path`, with `${VAR}` from the process environment.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or every mistake found in it.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                place: name.clone(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Config::from_toml(&text, &name, &|var| std::env::var(var).ok())
    }

    /// Parses and validates `text` (named `file` in messages); `env` resolves `${VAR}`.
    ///
    /// # Errors
    ///
    /// Every mistake found, each with its place.
    pub fn from_toml(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut v = Validator {
            text,
            file,
            env,
            problems: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let place = v.place(e.span());
                let message = e.message().trim().replace('\n', " ");
                return Err(ConfigError {
                    problems: vec![Problem { place, message }],
                });
            }
        };
        let config = v.config(raw);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            v.problems.sort_by_key(|p| natural(&p.place));
            Err(ConfigError {
                problems: v.problems,
            })
        }
    }

    /// The route named `name`.
    pub fn route(&self, name: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.name == name)
    }
}

/// Sort key of a place: line and column as numbers.
fn natural(place: &str) -> (u64, u64) {
    let mut nums = place.rsplit(':').filter_map(|p| p.parse::<u64>().ok());
    let col = nums.next().unwrap_or(0);
    let line = nums.next().unwrap_or(0);
    (line, col)
}

struct Validator<'a> {
    text: &'a str,
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn place(&self, span: Option<Range<usize>>) -> String {
        let Some(span) = span else {
            return self.file.to_owned();
        };
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{}:{line}:{col}", self.file)
    }

    fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        let place = self.place(Some(span));
        self.problems.push(Problem {
            place,
            message: message.into(),
        });
    }

    fn duration(&mut self, what: &str, value: &Spanned<RawDuration>) -> Option<Duration> {
        let parsed = match value.get_ref() {
            RawDuration::Seconds(s) if *s >= 0 => Ok(Duration::from_secs(*s as u64)),
            RawDuration::Seconds(s) => Err(format!("{what}: {s} is negative")),
            RawDuration::Text(t) => match expand::expand(t, self.env) {
                Err(m) => Err(format!("{what}: {m}")),
                Ok(t) => humantime::parse_duration(&t).map_err(|e| {
                    format!("{what}: `{t}` is not a duration ({e}; e.g. 300, \"5m\", \"250ms\")")
                }),
            },
        };
        match parsed {
            Ok(d) => Some(d),
            Err(m) => {
                self.problem(value.span(), m);
                None
            }
        }
    }

    fn size(&mut self, what: &str, value: &Spanned<i64>, min: i64, max: i64) -> Option<usize> {
        let n = *value.get_ref();
        if n < min || n > max {
            self.problem(
                value.span(),
                format!("{what}: {n} is outside {min}..={max}"),
            );
            None
        } else {
            Some(n as usize)
        }
    }

    fn expand(&mut self, what: &str, value: &Spanned<String>) -> Option<String> {
        match expand::expand(value.get_ref(), self.env) {
            Ok(s) => Some(s),
            Err(m) => {
                self.problem(value.span(), format!("{what}: {m}"));
                None
            }
        }
    }

    /// A secret from `value = "${VAR}"` or `value_env = "VAR"`, exactly one of them.
    fn secret(
        &mut self,
        what: &str,
        at: Range<usize>,
        inline: Option<&Spanned<String>>,
        env_key: Option<&Spanned<String>>,
    ) -> Option<Secret> {
        match (inline, env_key) {
            (Some(_), Some(e)) => {
                self.problem(
                    e.span(),
                    format!("{what}: give `{what}` or `{what}_env`, not both"),
                );
                None
            }
            (None, None) => {
                self.problem(at, format!("{what}: missing (`{what}_env = \"VAR\"`)"));
                None
            }
            (Some(v), None) => {
                if !expand::is_single_reference(v.get_ref()) {
                    self.problem(
                        v.span(),
                        format!(
                            "{what}: secrets are not written in the file; use `{what}_env = \"VAR\"` or `{what} = \"${{VAR}}\"`"
                        ),
                    );
                    return None;
                }
                self.expand(what, v).map(Secret)
            }
            (None, Some(e)) => {
                let name = e.get_ref();
                if !expand::is_var_name(name) {
                    self.problem(
                        e.span(),
                        format!("{what}_env: `{name}` is not a variable name"),
                    );
                    return None;
                }
                match (self.env)(name) {
                    Some(v) if !v.is_empty() => Some(Secret(v)),
                    _ => {
                        self.problem(
                            e.span(),
                            format!("{what}_env: environment variable {name} is not set"),
                        );
                        None
                    }
                }
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let server = self.server(&raw.server);
        let redis = self.redis(&raw.redis);
        let mut upstreams = BTreeMap::new();
        for (name, up) in &raw.upstreams {
            if let Some(u) = self.upstream(name, up) {
                upstreams.insert(name.clone(), u);
            }
        }
        let mut routes: Vec<RouteConfig> = Vec::new();
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        let mut aliases = HashSet::new();
        for (i, route) in raw.routes.iter().enumerate() {
            let r = route.get_ref();
            let label = format!("routes[{i}] \"{}\"", r.name.get_ref());
            if !names.insert(r.name.get_ref().clone()) {
                self.problem(
                    r.name.span(),
                    format!("{label}: name is used by another route"),
                );
            }
            // Routes whose paths differ only in parameter names would match the same requests.
            if let Ok(template) = PathTemplate::parse(r.path.get_ref()) {
                let shape: Vec<&str> = template
                    .segments()
                    .iter()
                    .map(|s| match s {
                        crate::template::Segment::Literal(l) => l.as_str(),
                        crate::template::Segment::Param(_) => "{}",
                    })
                    .collect();
                if !paths.insert(shape.join("/")) {
                    self.problem(
                        r.path.span(),
                        format!("{label}: path is used by another route"),
                    );
                }
            }
            if RESERVED_PATHS.contains(&r.path.get_ref().as_str()) {
                self.problem(
                    r.path.span(),
                    format!("{label}: path {} is the proxy's own", r.path.get_ref()),
                );
            }
            if let Some(a) = &r.purge_alias {
                if !aliases.insert(a.get_ref().clone()) {
                    self.problem(
                        a.span(),
                        format!("{label}: purge_alias is used by another route"),
                    );
                }
            }
            if !raw.upstreams.contains_key(r.upstream.get_ref()) {
                let known: Vec<_> = raw.upstreams.keys().map(String::as_str).collect();
                self.problem(
                    r.upstream.span(),
                    format!(
                        "{label}: upstream `{}` is not defined (defined: {})",
                        r.upstream.get_ref(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            if let Some(r) = self.route(&label, r) {
                routes.push(r);
            }
        }
        if raw.routes.is_empty() {
            self.problems.push(Problem {
                place: self.file.to_owned(),
                message: "no [[routes]]: the proxy would serve nothing".to_owned(),
            });
        }
        let webhook = raw.webhook.as_ref().and_then(|w| self.webhook(w));
        if let Some(w) = &webhook {
            if RESERVED_PATHS.contains(&w.path.as_str())
                || routes.iter().any(|r| r.path.as_str() == w.path)
            {
                self.problems.push(Problem {
                    place: self.file.to_owned(),
                    message: format!(
                        "webhook.path `{}` is also a route's or the proxy's own path",
                        w.path
                    ),
                });
            }
        }
        Config {
            server,
            redis,
            upstreams,
            routes,
            webhook,
        }
    }

    fn server(&mut self, raw: &raw::RawServer) -> ServerConfig {
        let listen = match &raw.listen {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(l) => match self
                .expand("server.listen", l)
                .map(|s| s.parse::<SocketAddr>())
            {
                Some(Ok(addr)) => addr,
                Some(Err(e)) => {
                    self.problem(
                        l.span(),
                        format!("server.listen: not an address like 0.0.0.0:8080 ({e})"),
                    );
                    SocketAddr::from(([127, 0, 0, 1], 8080))
                }
                None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            },
        };
        let max_request_bytes = raw
            .max_request_bytes
            .as_ref()
            .and_then(|v| self.size("server.max_request_bytes", v, 0, 64 << 20))
            .unwrap_or(64 << 10);
        let max_param_bytes = raw
            .max_param_bytes
            .as_ref()
            .and_then(|v| self.size("server.max_param_bytes", v, 1, 8192))
            .unwrap_or(256);
        ServerConfig {
            listen,
            max_request_bytes,
            max_param_bytes,
            access_log: raw.access_log.unwrap_or(true),
        }
    }

    fn redis(&mut self, raw: &raw::RawRedis) -> RedisConfig {
        let url = match (&raw.url, &raw.url_env) {
            (Some(_), Some(e)) => {
                self.problem(e.span(), "redis: give `url` or `url_env`, not both");
                None
            }
            (Some(u), None) => self.expand("redis.url", u).map(Secret),
            (None, Some(e)) => (self.env)(e.get_ref())
                .filter(|v| !v.is_empty())
                .map(Secret),
            (None, None) => None,
        };
        RedisConfig {
            url,
            prefix: raw.prefix.as_ref().map(|p| p.get_ref().clone()),
            near_cache: raw
                .near_cache
                .as_ref()
                .and_then(|v| self.size("redis.near_cache", v, 1, 10_000_000)),
            op_timeout: raw
                .op_timeout
                .as_ref()
                .and_then(|d| self.duration("redis.op_timeout", d)),
        }
    }

    fn upstream(&mut self, name: &str, up: &Spanned<RawUpstream>) -> Option<UpstreamConfig> {
        let label = format!("upstreams.{name}");
        let raw = up.get_ref();
        let base_url = self
            .expand(&format!("{label}.base_url"), &raw.base_url)
            .and_then(|text| match Url::parse(&text) {
                Ok(u) if !u.cannot_be_a_base() && matches!(u.scheme(), "http" | "https") => {
                    if u.query().is_some() || u.fragment().is_some() {
                        self.problem(
                            raw.base_url.span(),
                            format!("{label}.base_url: `{text}` must not have a query or fragment"),
                        );
                        None
                    } else {
                        Some(u)
                    }
                }
                Ok(_) => {
                    self.problem(
                        raw.base_url.span(),
                        format!("{label}.base_url: `{text}` is not an http(s) URL"),
                    );
                    None
                }
                Err(e) => {
                    self.problem(
                        raw.base_url.span(),
                        format!("{label}.base_url: `{text}`: {e}"),
                    );
                    None
                }
            });
        let timeout = match &raw.timeout {
            None => Some(Duration::from_secs(5)),
            Some(t) => self.duration(&format!("{label}.timeout"), t).and_then(|d| {
                if d.is_zero() || d >= GENESYS_ACTION_LIMIT {
                    self.problem(
                        t.span(),
                        format!(
                            "{label}.timeout: {} must be above 0 and below Genesys's 60 s data-action limit",
                            humantime::format_duration(d)
                        ),
                    );
                    None
                } else {
                    Some(d)
                }
            }),
        };
        let max_response_bytes = match &raw.max_response_bytes {
            None => Some(1 << 20),
            Some(v) => self.size(&format!("{label}.max_response_bytes"), v, 1, 256 << 20),
        };
        let max_concurrency = match &raw.max_concurrency {
            None => Some(50),
            Some(v) => self.size(&format!("{label}.max_concurrency"), v, 1, 100_000),
        };
        let pool_idle_per_host = match &raw.pool_idle_per_host {
            None => Some(32),
            Some(v) => self.size(&format!("{label}.pool_idle_per_host"), v, 0, 100_000),
        };
        let auth = match &raw.auth {
            None => Some(Auth::None),
            Some(a) => self.auth(&label, a),
        };
        Some(UpstreamConfig {
            name: name.to_owned(),
            base_url: base_url?,
            timeout: timeout?,
            max_response_bytes: max_response_bytes?,
            max_concurrency: max_concurrency?,
            shed_when_full: raw.shed_when_full.unwrap_or(false),
            pool_idle_per_host: pool_idle_per_host?,
            auth: auth?,
        })
    }

    fn auth(&mut self, label: &str, a: &Spanned<RawAuth>) -> Option<Auth> {
        let at = a.span();
        // Internally tagged tables lose their fields' spans: point at the `auth` table.
        let here = |v: &Option<String>| v.clone().map(|v| Spanned::new(at.clone(), v));
        match a.get_ref() {
            RawAuth::None => Some(Auth::None),
            RawAuth::Header {
                name,
                value,
                value_env,
            } => {
                let header = match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(h) => Some(h),
                    Err(_) => {
                        self.problem(
                            at.clone(),
                            format!("{label}.auth.name: `{name}` is not a header name"),
                        );
                        None
                    }
                };
                let value = self.secret(
                    "value",
                    at.clone(),
                    here(value).as_ref(),
                    here(value_env).as_ref(),
                );
                if let Some(v) = &value {
                    if axum::http::HeaderValue::from_str(v.expose()).is_err() {
                        self.problem(at, format!("{label}.auth: the header value from the environment is not a valid header value"));
                        return None;
                    }
                }
                Some(Auth::Header {
                    name: header?,
                    value: value?,
                })
            }
            RawAuth::Basic {
                username,
                password,
                password_env,
            } => {
                let username = self.expand(
                    &format!("{label}.auth.username"),
                    &Spanned::new(at.clone(), username.clone()),
                );
                let password = self.secret(
                    "password",
                    at.clone(),
                    here(password).as_ref(),
                    here(password_env).as_ref(),
                );
                Some(Auth::Basic {
                    username: username?,
                    password: password?,
                })
            }
            RawAuth::Oauth2 {
                token_url,
                client_id,
                client_secret,
                client_secret_env,
                scope,
                client_auth,
                refresh_before,
            } => {
                let token_url = self
                    .expand(
                        &format!("{label}.auth.token_url"),
                        &Spanned::new(at.clone(), token_url.clone()),
                    )
                    .and_then(|text| match Url::parse(&text) {
                        Ok(u)
                            if matches!(u.scheme(), "http" | "https")
                                && u.username().is_empty()
                                && u.password().is_none()
                                && u.fragment().is_none() =>
                        {
                            Some(u)
                        }
                        _ => {
                            self.problem(
                                at.clone(),
                                format!("{label}.auth.token_url: `{text}` is not an http(s) URL without credentials or fragment"),
                            );
                            None
                        }
                    });
                let client_id = self
                    .expand(
                        &format!("{label}.auth.client_id"),
                        &Spanned::new(at.clone(), client_id.clone()),
                    )
                    .and_then(|id| {
                        if id.trim().is_empty() || id.contains(':') || id.chars().any(char::is_control) {
                            self.problem(at.clone(), format!("{label}.auth.client_id must be non-empty, without `:` or control characters"));
                            None
                        } else {
                            Some(id)
                        }
                    });
                let client_secret = self.secret(
                    "client_secret",
                    at.clone(),
                    here(client_secret).as_ref(),
                    here(client_secret_env).as_ref(),
                );
                if scope
                    .as_deref()
                    .is_some_and(|s| s.trim().is_empty() || s.chars().any(char::is_control))
                {
                    self.problem(
                        at.clone(),
                        format!("{label}.auth.scope is empty or has control characters"),
                    );
                }
                let secret_in_body = match client_auth.as_deref() {
                    None | Some("basic") => Some(false),
                    Some("body") => Some(true),
                    Some(other) => {
                        self.problem(
                            at.clone(),
                            format!(
                                "{label}.auth.client_auth: `{other}` is not \"basic\" or \"body\""
                            ),
                        );
                        None
                    }
                };
                let refresh_before = match refresh_before {
                    None => Some(Duration::from_secs(60)),
                    Some(d) => self.duration(
                        &format!("{label}.auth.refresh_before"),
                        &Spanned::new(at.clone(), d.clone()),
                    ),
                };
                Some(Auth::OAuth2(OAuth2 {
                    token_url: token_url?,
                    client_id: client_id?,
                    client_secret: client_secret?,
                    scope: scope.clone(),
                    secret_in_body: secret_in_body?,
                    refresh_before: refresh_before?,
                }))
            }
            RawAuth::Bearer { token, token_env } => {
                let token = self.secret(
                    "token",
                    at.clone(),
                    here(token).as_ref(),
                    here(token_env).as_ref(),
                )?;
                Some(Auth::Bearer { token })
            }
        }
    }

    fn route(&mut self, label: &str, r: &RawRoute) -> Option<RouteConfig> {
        let name = r.name.get_ref();
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !name_ok {
            self.problem(
                r.name.span(),
                format!("{label}: name must be 1-64 of A-Z a-z 0-9 _ - ."),
            );
        }
        let path = match PathTemplate::parse(r.path.get_ref()) {
            Ok(p) => Some(p),
            Err(m) => {
                self.problem(r.path.span(), format!("{label}: path {m}"));
                None
            }
        };
        let up_raw = r.upstream_path.as_ref().unwrap_or(&r.path);
        let upstream_path = match PathTemplate::parse(up_raw.get_ref()) {
            Ok(p) => Some(p),
            Err(m) => {
                self.problem(up_raw.span(), format!("{label}: upstream_path {m}"));
                None
            }
        };
        if let (Some(p), Some(u)) = (&path, &upstream_path) {
            for param in u.params() {
                if !p.params().any(|x| x == param) {
                    self.problem(
                        up_raw.span(),
                        format!("{label}: upstream_path uses `{{{param}}}`, which path `{p}` does not have"),
                    );
                }
            }
        }
        let mut key_query = Vec::new();
        for q in &r.key_query {
            let n = q.get_ref();
            if n.is_empty()
                || n.len() > 128
                || n.chars().any(|c| c.is_control() || c == '&' || c == '=')
            {
                self.problem(
                    q.span(),
                    format!("{label}: key_query `{n}` is not a query parameter name"),
                );
            } else if key_query.contains(n) {
                self.problem(
                    q.span(),
                    format!("{label}: key_query `{n}` is listed twice"),
                );
            } else {
                key_query.push(n.clone());
            }
        }
        let mut key_headers = Vec::new();
        for h in &r.key_headers {
            match HeaderName::from_bytes(h.get_ref().as_bytes()) {
                Ok(name) if key_headers.contains(&name) => {
                    self.problem(
                        h.span(),
                        format!("{label}: key_headers `{}` is listed twice", h.get_ref()),
                    );
                }
                Ok(name)
                    if matches!(
                        name.as_str(),
                        "host"
                            | "connection"
                            | "content-length"
                            | "transfer-encoding"
                            | "te"
                            | "upgrade"
                            | "keep-alive"
                            | "proxy-authorization"
                            | "trailer"
                    ) =>
                {
                    self.problem(h.span(), format!("{label}: key_headers `{name}` is a hop-by-hop header and cannot be forwarded"));
                }
                Ok(name) => key_headers.push(name),
                Err(_) => self.problem(
                    h.span(),
                    format!(
                        "{label}: key_headers `{}` is not a header name",
                        h.get_ref()
                    ),
                ),
            }
        }
        let fresh = self
            .duration(&format!("{label}: fresh"), &r.fresh)
            .and_then(|f| {
                if f < Duration::from_millis(1) {
                    self.problem(r.fresh.span(), format!("{label}: fresh must be above 0"));
                    None
                } else {
                    Some(f)
                }
            });
        let stale = match &r.stale {
            None => fresh,
            Some(s) => self
                .duration(&format!("{label}: stale"), s)
                .and_then(|st| match fresh {
                    Some(f) if st < f => {
                        self.problem(
                            s.span(),
                            format!(
                                "{label}: stale ({}) is shorter than fresh ({})",
                                humantime::format_duration(st),
                                humantime::format_duration(f)
                            ),
                        );
                        None
                    }
                    _ => Some(st),
                }),
        };
        let jitter = match &r.jitter {
            None => Some(0.1),
            Some(j) if (0.0..=1.0).contains(j.get_ref()) => Some(*j.get_ref()),
            Some(j) => {
                self.problem(
                    j.span(),
                    format!("{label}: jitter {} is outside 0.0..=1.0", j.get_ref()),
                );
                None
            }
        };
        let mut tags = Vec::new();
        for t in &r.tags {
            match TagTemplate::parse(t.get_ref()) {
                Ok(tag) => {
                    for p in tag.params() {
                        let known = path
                            .as_ref()
                            .is_some_and(|path| path.params().any(|x| x == p))
                            || key_query.iter().any(|q| q == p);
                        if !known {
                            self.problem(t.span(), format!("{label}: tag `{}` uses `{{{p}}}`, which is neither a path parameter nor a key_query", t.get_ref()));
                        }
                    }
                    tags.push(tag);
                }
                Err(m) => self.problem(t.span(), format!("{label}: {m}")),
            }
        }
        let stale_if_error = r.stale_if_error.as_ref().and_then(|d| {
            let v = self.duration(&format!("{label}: stale_if_error"), d)?;
            if v.is_zero() {
                self.problem(
                    d.span(),
                    format!(
                        "{label}: stale_if_error must be above 0 (leave it out to turn it off)"
                    ),
                );
                None
            } else {
                Some(v)
            }
        });
        let negative = r.negative.as_ref().and_then(|n| {
            let raw = n.get_ref();
            let mut statuses = Vec::new();
            for s in &raw.statuses {
                let code = *s.get_ref();
                if (400..500).contains(&code) {
                    statuses.push(code as u16);
                } else {
                    self.problem(s.span(), format!("{label}: negative.statuses: {code} is not a 4xx status (5xx are failures, served by stale_if_error)"));
                }
            }
            if raw.statuses.is_empty() {
                self.problem(n.span(), format!("{label}: negative.statuses is empty"));
            }
            let ttl = self.duration(&format!("{label}: negative.ttl"), &raw.ttl)?;
            if ttl < Duration::from_millis(1) {
                self.problem(raw.ttl.span(), format!("{label}: negative.ttl must be above 0"));
                return None;
            }
            Some(Negative { statuses, ttl })
        });
        if let (Some(a), Some(p)) = (&r.purge_alias, &path) {
            if p.params().count() != 1 {
                self.problem(
                    a.span(),
                    format!("{label}: purge_alias needs a path with exactly one parameter"),
                );
            }
            if matches!(
                a.get_ref().as_str(),
                "route" | "params" | "query" | "headers" | "tags" | "mode"
            ) || a.get_ref().is_empty()
            {
                self.problem(
                    a.span(),
                    format!(
                        "{label}: purge_alias `{}` is a reserved purge field",
                        a.get_ref()
                    ),
                );
            }
        }
        let honour_cache_control = match r
            .cache_control
            .as_ref()
            .map(|c| (c.get_ref().as_str(), c.span()))
        {
            None | Some(("ignore", _)) => false,
            Some(("honour" | "honor", _)) => true,
            Some((other, span)) => {
                self.problem(
                    span,
                    format!("{label}: cache_control `{other}` is not \"honour\" or \"ignore\""),
                );
                false
            }
        };
        let sample_response = r.sample_response.as_ref().and_then(|s| {
            match serde_json::from_str::<serde_json::Value>(s.get_ref()) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.problem(
                        s.span(),
                        format!("{label}: sample_response is not JSON: {e}"),
                    );
                    None
                }
            }
        });
        Some(RouteConfig {
            name: name.clone(),
            path: path?,
            upstream: r.upstream.get_ref().clone(),
            upstream_path: upstream_path?,
            key_query,
            key_headers,
            fresh: fresh?,
            stale: stale?,
            jitter: jitter?,
            tags,
            stale_if_error,
            negative,
            purge_alias: r.purge_alias.as_ref().map(|a| a.get_ref().clone()),
            honour_cache_control,
            description: r.description.clone(),
            sample_response,
        })
    }

    fn webhook(&mut self, w: &Spanned<RawWebhook>) -> Option<WebhookConfig> {
        let raw = w.get_ref();
        let path = raw
            .path
            .as_ref()
            .map_or("/webhooks/purge".to_owned(), |p| p.get_ref().clone());
        if let Some(p) = &raw.path {
            if PathTemplate::parse(&path).map_or(true, |t| t.params().next().is_some()) {
                self.problem(
                    p.span(),
                    "webhook.path must be a plain path such as /webhooks/purge",
                );
            }
        }
        let secret = self.secret(
            "secret",
            w.span(),
            raw.secret.as_ref(),
            raw.secret_env.as_ref(),
        );
        let scheme = match raw
            .signature
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span()))
        {
            None | Some(("timestamped", _)) => Some(SignatureScheme::Timestamped),
            Some(("body-only", _)) => Some(SignatureScheme::BodyOnly),
            Some((other, span)) => {
                self.problem(
                    span,
                    format!("webhook.signature: `{other}` is not \"timestamped\" or \"body-only\""),
                );
                None
            }
        };
        let tolerance = match &raw.tolerance {
            None => Some(Duration::from_secs(300)),
            Some(t) => self.duration("webhook.tolerance", t).and_then(|d| {
                if d.is_zero() || d > Duration::from_secs(24 * 3600) {
                    self.problem(
                        t.span(),
                        "webhook.tolerance must be above 0 and at most 24h",
                    );
                    None
                } else {
                    Some(d)
                }
            }),
        };
        let max_body_bytes = match &raw.max_body_bytes {
            None => Some(64 << 10),
            Some(v) => self.size("webhook.max_body_bytes", v, 2, 16 << 20),
        };
        Some(WebhookConfig {
            path,
            secret: secret?,
            scheme: scheme?,
            tolerance: tolerance?,
            max_body_bytes: max_body_bytes?,
        })
    }
}

#[cfg(test)]
mod tests;
