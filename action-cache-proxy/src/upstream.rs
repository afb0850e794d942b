//! The HTTP client of one upstream: credentials, timeout, a bounded body read and a bulkhead.

use crate::cache_control::CacheControl;
use crate::config::{Auth, UpstreamConfig};
use crate::stored::Stored;
use action_cache::genesys::oauth::{ClientAuth, ClientCredentialsToken, Token, TokenEndpoint};
use action_cache::genesys::{ClientSecret, Credentials};
use axum::http::{HeaderName, HeaderValue};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use url::Url;

/// Why an upstream call gave no answer the proxy can serve. `Clone`, because callers waiting on
/// one shared load each receive a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No answer within the upstream's timeout.
    Timeout,
    /// The connection failed, or the answer could not be read.
    Unavailable(String),
    /// The body was larger than `max_response_bytes`; reading stopped there.
    TooLarge(usize),
    /// An answer that is not served as-is (5xx, a redirect).
    Status(u16),
    /// The bulkhead was full and the upstream sheds load.
    Shed,
    /// No access token could be had from the upstream's OAuth token endpoint (the message
    /// names the endpoint and the client id, never the secret).
    Token(String),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Timeout => f.write_str("the upstream did not answer in time"),
            UpstreamError::Unavailable(why) => write!(f, "the upstream is unavailable: {why}"),
            UpstreamError::TooLarge(max) => {
                write!(f, "the upstream's answer is larger than {max} bytes")
            }
            UpstreamError::Status(s) => write!(f, "the upstream answered HTTP {s}"),
            UpstreamError::Shed => f.write_str("the upstream is at its concurrency limit"),
            UpstreamError::Token(why) => {
                write!(f, "no access token for the upstream: {why}")
            }
        }
    }
}

/// One upstream. Cheap to clone: clones share the connection pool and the bulkhead.
#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: UpstreamConfig,
    http: reqwest::Client,
    bulkhead: Semaphore,
    /// The cached OAuth token, for `auth = { type = "oauth2", … }`.
    oauth: Option<ClientCredentialsToken>,
}

/// What an upstream call produced: a response the proxy may serve.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
    /// The answer's `Cache-Control` directives.
    pub(crate) cache_control: CacheControl,
    /// Its `Age` header, in seconds (0 when absent or unreadable).
    pub(crate) age: u64,
}

impl Upstream {
    /// A client for `config`.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built (no TLS roots, for instance).
    pub fn new(config: UpstreamConfig) -> Result<Upstream, String> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(config.pool_idle_per_host)
            // A redirect is passed on as a failure, never followed to somewhere unconfigured.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                format!(
                    "upstream {}: cannot build the HTTP client: {e}",
                    config.name
                )
            })?;
        let bulkhead = Semaphore::new(config.max_concurrency);
        let oauth = match &config.auth {
            Auth::OAuth2(o) => {
                let mut endpoint = TokenEndpoint::new(
                    o.token_url.clone(),
                    Credentials::new(
                        o.client_id.clone(),
                        ClientSecret::new(o.client_secret.expose()),
                    ),
                )
                .with_margin(o.refresh_before)
                .with_client_auth(if o.secret_in_body {
                    ClientAuth::RequestBody
                } else {
                    ClientAuth::Basic
                });
                if let Some(scope) = &o.scope {
                    endpoint = endpoint.with_scope(scope.clone());
                }
                endpoint
                    .validate()
                    .map_err(|e| format!("upstream {}: {e}", config.name))?;
                Some(ClientCredentialsToken::new(http.clone(), endpoint))
            }
            _ => None,
        };
        Ok(Upstream {
            inner: Arc::new(Inner {
                config,
                http,
                bulkhead,
                oauth,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &UpstreamConfig {
        &self.inner.config
    }

    /// Calls currently in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.config.max_concurrency - self.inner.bulkhead.available_permits()
    }

    /// The URL for `upstream_path` with its parameters, and the key query parameters.
    pub(crate) fn url(&self) -> Url {
        self.inner.config.base_url.clone()
    }

    /// `GET url` with `headers`, inside the bulkhead, reading at most `max_response_bytes`.
    pub(crate) async fn get(
        &self,
        url: Url,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Answer, UpstreamError> {
        let inner = &self.inner;
        let _permit = if inner.config.shed_when_full {
            inner
                .bulkhead
                .try_acquire()
                .map_err(|_| UpstreamError::Shed)?
        } else {
            tokio::time::timeout(inner.config.timeout, inner.bulkhead.acquire())
                .await
                .map_err(|_| UpstreamError::Timeout)?
                .map_err(|_| UpstreamError::Shed)?
        };
        let call = async {
            let token = self.token().await?;
            let mut response = self
                .request(&url, headers, token.as_ref().map(|(_, h)| h))
                .send()
                .await
                .map_err(classify)?;
            if let (Some(tokens), Some(used), reqwest::StatusCode::UNAUTHORIZED) = (
                &inner.oauth,
                token.as_ref().map(|(t, _)| t),
                response.status(),
            ) {
                tracing::warn!(
                    upstream = %inner.config.name,
                    "the upstream refused its access token (401); fetching a new one and retrying once"
                );
                tokens.invalidate(used);
                let token = self.token().await?;
                response = self
                    .request(&url, headers, token.as_ref().map(|(_, h)| h))
                    .send()
                    .await
                    .map_err(classify)?;
            }
            let status = response.status().as_u16();
            let max = inner.config.max_response_bytes;
            if response.content_length().is_some_and(|n| n > max as u64) {
                return Err(UpstreamError::TooLarge(max));
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let cache_control = CacheControl::parse(
                response
                    .headers()
                    .get_all(reqwest::header::CACHE_CONTROL)
                    .iter()
                    .map(|v| v.as_bytes()),
            );
            let age = response
                .headers()
                .get(reqwest::header::AGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > max {
                    return Err(UpstreamError::TooLarge(max));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Answer {
                status,
                content_type,
                body,
                cache_control,
                age,
            })
        };
        tokio::time::timeout(inner.config.timeout, call)
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }
}

impl Upstream {
    /// The OAuth token to send, for an upstream with `type = "oauth2"` auth.
    async fn token(&self) -> Result<Option<(Token, HeaderValue)>, UpstreamError> {
        match &self.inner.oauth {
            None => Ok(None),
            Some(tokens) => match tokens.token().await.and_then(|t| {
                let header = t.authorization()?;
                Ok((t, header))
            }) {
                Ok(t) => Ok(Some(t)),
                Err(e) => {
                    tracing::warn!(upstream = %self.inner.config.name, error = %e, "no access token");
                    Err(UpstreamError::Token(e.to_string()))
                }
            },
        }
    }

    /// One `GET url` with the forwarded headers and the credentials.
    fn request(
        &self,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        token: Option<&HeaderValue>,
    ) -> reqwest::RequestBuilder {
        let inner = &self.inner;
        let mut request = inner.http.get(url.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match &inner.config.auth {
            Auth::None | Auth::OAuth2(_) => {}
            Auth::Header { name, value } => request = request.header(name, value.expose()),
            Auth::Basic { username, password } => {
                request = request.basic_auth(username, Some(password.expose()))
            }
            Auth::Bearer { token } => request = request.bearer_auth(token.expose()),
        }
        if let Some(token) = token {
            request = request.header(reqwest::header::AUTHORIZATION, token.clone());
        }
        request
    }
}

fn classify(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout
    } else {
        UpstreamError::Unavailable(e.without_url().to_string())
    }
}

impl Answer {
    /// The answer as a cache entry fetched at `now_ms` with these windows.
    pub(crate) fn into_stored(self, now_ms: u64, fresh_ms: u64) -> Stored {
        Stored::new(self.status, self.content_type, self.body, now_ms, fresh_ms)
    }
}
