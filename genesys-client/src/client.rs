//! The client: the token-aware request path with retries, the limiter and the resend rules,
//! and the generic JSON and paging helpers that the endpoint methods build on.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, warn};
use url::Url;

use crate::auth::genesys_endpoint;
use crate::budget::{Budget, RetryBudget};
use crate::error::{snippet, Classification, Classifier, Doubt, Error, ErrorBody, Result};
use crate::limit::{Limiter, Limits};
use crate::meta::{ApiResponse, ResponseMeta};
use crate::oauth::{Credentials, SharedToken, Token, TokenEndpoint};
use crate::paging::{CursorListing, EntityListing, PageRequest, Paginator};
use crate::retry::{RetryDecision, RetryPolicy, StopReason};
use crate::secret::AccessToken;
use crate::transfer::read_response;

/// A Genesys Cloud Platform API client. Cheap to clone (one `Arc`); clones share the HTTP
/// connection pool and the cached token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    api_base: Url,
    login_base: Url,
    credentials: Credentials,
    endpoint: TokenEndpoint,
    tokens: SharedToken<Error>,
    retry: RetryPolicy,
    classifier: Classifier,
    token_margin: Duration,
    max_pages: u32,
    limits: Limits,
    limiter: Limiter,
    budget: Budget,
}

/// Everything a [`Client`] is made of, checked by the builder.
pub(crate) struct Settings {
    pub(crate) http: reqwest::Client,
    pub(crate) api_base: Url,
    pub(crate) login_base: Url,
    pub(crate) credentials: Credentials,
    pub(crate) retry: RetryPolicy,
    pub(crate) classifier: Classifier,
    pub(crate) token_margin: Duration,
    pub(crate) max_pages: u32,
    pub(crate) limits: Limits,
    pub(crate) retry_budget: RetryBudget,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_base", &self.inner.api_base.as_str())
            .field("login_base", &self.inner.login_base.as_str())
            .field("credentials", &self.inner.credentials)
            .field("retry", &self.inner.retry)
            .field("token_margin", &self.inner.token_margin)
            .field("max_pages", &self.inner.max_pages)
            .field("limits", &self.inner.limits)
            .field("budget", &self.inner.budget)
            .finish_non_exhaustive()
    }
}

/// One request as the retry loop resends it.
pub(crate) struct Request<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Option<&'a [u8]>,
    pub(crate) kind: Kind,
}

/// What a request does, which decides when it may be resent and which limits it counts
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Reads only (a `GET`, a query `POST`): resent after any transient failure.
    Read,
    /// May change something (a `POST`): resent only when it cannot have run.
    Write,
    /// Runs a data action (`…/execute`, `…/test`): counts against the execution limits, and
    /// is resent only when it cannot have run unless marked idempotent.
    Execution {
        /// Safe to run twice.
        idempotent: bool,
    },
}

impl Kind {
    fn resend(self) -> Resend {
        match self {
            Kind::Read | Kind::Execution { idempotent: true } => Resend::Transient,
            Kind::Write | Kind::Execution { idempotent: false } => Resend::NotRun,
        }
    }

    fn is_execution(self) -> bool {
        matches!(self, Kind::Execution { .. })
    }
}

/// When a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// After any transient failure: the request has no effect beyond its answer (a `GET`, a
    /// token request, a query `POST`, an execution marked idempotent).
    Transient,
    /// Only when the server cannot have acted on it: 429, 503, or a connection that failed
    /// before the request was written. Anything else ends the call with
    /// [`Error::MaybeExecuted`].
    NotRun,
}

/// Whether `err` proves the server did not act on the request: it refused it (429, 503) or
/// the connection failed before the request could be written.
fn cannot_have_run(err: &Error) -> bool {
    match err {
        Error::Api { meta, .. } => matches!(meta.status.as_u16(), 429 | 503),
        Error::Transport { source } => source.is_connect(),
        _ => false,
    }
}

impl Client {
    pub(crate) fn new(settings: Settings) -> Result<Self> {
        let endpoint = genesys_endpoint(
            &settings.login_base,
            settings.credentials.clone(),
            settings.token_margin,
        )?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoint,
                http: settings.http,
                api_base: settings.api_base,
                login_base: settings.login_base,
                credentials: settings.credentials,
                tokens: SharedToken::default(),
                retry: settings.retry,
                classifier: settings.classifier,
                token_margin: settings.token_margin,
                max_pages: settings.max_pages,
                limiter: Limiter::new(&settings.limits),
                limits: settings.limits,
                budget: Budget::new(settings.retry_budget),
            }),
        })
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> &str {
        self.inner.credentials.client_id()
    }

    /// The Platform API base URL.
    pub fn api_base_url(&self) -> &Url {
        &self.inner.api_base
    }

    /// The login base URL.
    pub fn login_base_url(&self) -> &Url {
        &self.inner.login_base
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The client-side limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// A valid access token: the cached one, or a new one. Concurrent callers share one refresh
    /// and its outcome: when it fails after its retries, every one of them gets that error.
    ///
    /// # Errors
    ///
    /// [`Error::Auth`] when the login host refuses the credentials, or the transport and retry
    /// errors of the token request.
    pub async fn access_token(&self) -> Result<AccessToken> {
        Ok(self.token().await?.access_token().clone())
    }

    /// Drops the cached token, so the next call fetches a new one.
    pub async fn clear_token(&self) {
        self.inner.tokens.clear();
    }

    async fn token(&self) -> Result<Token> {
        let client = self.clone();
        self.inner
            .tokens
            .get(move |generation| async move { client.fetch_token(generation).await })
            .await
    }

    /// One refresh: the token request with its retries.
    async fn fetch_token(&self, generation: u64) -> Result<Token> {
        debug!(
            client_id = self.client_id(),
            "requesting a Genesys Cloud access token"
        );
        self.with_retries("token request", Resend::Transient, None, || async {
            self.inner
                .endpoint
                .request(&self.inner.http, generation)
                .await
                .map_err(Error::from)
        })
        .await
    }

    /// Runs `op` until it succeeds, the classifier calls its error fatal, the policy stops, the
    /// client's retry budget is spent, or (for [`Resend::NotRun`]) the failure leaves open
    /// whether the server acted on it. With `limited`, each attempt first passes the limiter
    /// (`Some(true)` as an execution); time waiting there does not count against the policy's
    /// total time.
    async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        resend: Resend,
        limited: Option<bool>,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.inner.budget.deposit();
        let mut schedule = self.inner.retry.schedule();
        loop {
            let admission = match limited {
                Some(execution) => {
                    let queued = tokio::time::Instant::now();
                    let admission = self.inner.limiter.admit(execution).await;
                    schedule.exclude(queued.elapsed());
                    Some(admission)
                }
                None => None,
            };
            let outcome = op().await;
            drop(admission);
            let err = match outcome {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if (self.inner.classifier)(&err) == Classification::Fatal {
                return Err(err);
            }
            if resend == Resend::NotRun && !cannot_have_run(&err) {
                warn!(
                    what,
                    status = err.status().map(|s| s.as_u16()),
                    correlation_id = err.correlation_id(),
                    error = %err,
                    "Genesys request failed after it may have run; not resending a request \
                     that is not marked idempotent"
                );
                let doubt = Doubt::of(&err);
                return Err(Error::MaybeExecuted {
                    doubt,
                    attempts: schedule.failed_attempts() + 1,
                    source: Box::new(err),
                });
            }
            let retry_after = match err.status().map(|s| s.as_u16()) {
                Some(429 | 503) => err.retry_after(),
                _ => None,
            };
            match schedule.next_decision(retry_after) {
                RetryDecision::Retry { .. } if !self.inner.budget.withdraw() => {
                    warn!(
                        what,
                        status = err.status().map(|s| s.as_u16()),
                        attempts = schedule.failed_attempts(),
                        correlation_id = err.correlation_id(),
                        "Genesys request failed; the client's retry budget is spent, giving up"
                    );
                    return Err(Error::RetryBudgetExhausted {
                        attempts: schedule.failed_attempts(),
                        last: Box::new(err),
                    });
                }
                RetryDecision::Retry { after } => {
                    warn!(
                        what,
                        status = err.status().map(|s| s.as_u16()),
                        attempt = schedule.failed_attempts(),
                        wait_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                        correlation_id = err.correlation_id(),
                        error = %err,
                        "Genesys request failed; retrying"
                    );
                    tokio::time::sleep(after).await;
                }
                RetryDecision::DoNotRetry(StopReason::RetryAfterTooLong { wait }) => {
                    let meta = err.meta().cloned();
                    return Err(match meta {
                        Some(meta) => Error::RateLimited {
                            retry_after: wait,
                            cap: self.inner.retry.retry_after_cap(),
                            meta: Box::new(meta),
                        },
                        None => err,
                    });
                }
                RetryDecision::DoNotRetry(reason) => {
                    warn!(
                        what,
                        status = err.status().map(|s| s.as_u16()),
                        attempts = schedule.failed_attempts(),
                        ?reason,
                        correlation_id = err.correlation_id(),
                        "Genesys request failed; giving up"
                    );
                    return Err(Error::RetriesExhausted {
                        attempts: schedule.failed_attempts(),
                        elapsed: schedule.elapsed(),
                        last: Box::new(err),
                    });
                }
            }
        }
    }

    /// Sends an authenticated request with retries; a 401 drops the token it was sent with and
    /// repeats the whole call once with a new token.
    async fn call(&self, request: &Request<'_>) -> Result<(ResponseMeta, Bytes)> {
        let used = AtomicU64::new(0);
        let attempt = || async {
            let token = self.token().await?;
            used.store(token.generation(), Ordering::Relaxed);
            self.send_once(request, token.access_token()).await
        };
        let resend = request.kind.resend();
        let limited = Some(request.kind.is_execution());
        match self
            .with_retries("API request", resend, limited, attempt)
            .await
        {
            Err(err)
                if matches!(err, Error::Api { .. })
                    && err.status() == Some(StatusCode::UNAUTHORIZED) =>
            {
                warn!(
                    status = 401,
                    correlation_id = err.correlation_id(),
                    url = %request.url,
                    "Genesys rejected the access token; fetching a new one and retrying once"
                );
                self.inner.tokens.invalidate(used.load(Ordering::Relaxed));
                self.with_retries("API request", resend, limited, attempt)
                    .await
            }
            other => other,
        }
    }

    async fn send_once(
        &self,
        request: &Request<'_>,
        token: &AccessToken,
    ) -> Result<(ResponseMeta, Bytes)> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| Error::Auth {
                client_id: self.client_id().to_owned(),
                status: None,
                error: Some("invalid_token".to_owned()),
                description: Some("the access token is not a valid header value".to_owned()),
                meta: None,
            })?;
        authorization.set_sensitive(true);
        let mut builder = self
            .inner
            .http
            .request(request.method.clone(), request.url.clone())
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json");
        if let Some(body) = request.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let response = builder.send().await.map_err(Error::transport)?;
        let (meta, bytes) = read_response(response).await?;
        self.inner.limiter.observe(&meta);
        if meta.status.is_success() {
            return Ok((meta, bytes));
        }
        let body = Box::new(ErrorBody::parse(&bytes));
        if meta.status == StatusCode::FORBIDDEN {
            return Err(Error::Forbidden {
                client_id: self.client_id().to_owned(),
                missing_permission: likely_permission(request.url.path()),
                body,
                meta: Box::new(meta),
            });
        }
        Err(Error::Api {
            body,
            meta: Box::new(meta),
        })
    }

    /// The API URL of `path` (relative to the API base URL) with `query`.
    pub(crate) fn api_url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url> {
        let mut url = self
            .inner
            .api_base
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::InvalidInput {
                message: format!("bad API path {path:?}: {e}"),
            })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// The URL of a listing's `nextUri`: a path on the API host (kept under the API base URL's
    /// path prefix), or an absolute URL of exactly the API base URL's scheme, host and port.
    /// Anything else is refused, so that a response can never send the bearer token elsewhere.
    pub(crate) fn next_uri_url(&self, uri: &str) -> Result<Url> {
        let base = &self.inner.api_base;
        let uri = uri.trim();
        if let Some(path) = uri.strip_prefix('/').filter(|p| !p.starts_with('/')) {
            return base.join(path).map_err(|e| Error::Paging {
                message: format!("the listing's nextUri {uri:?} is not a valid path: {e}"),
            });
        }
        let url = Url::parse(uri).map_err(|_| Error::Paging {
            message: format!(
                "the listing's nextUri {uri:?} is neither a path on the API host nor a URL"
            ),
        })?;
        let origin = |u: &Url| {
            (
                u.scheme().to_owned(),
                u.host_str().map(str::to_owned),
                u.port_or_known_default(),
            )
        };
        if origin(&url) != origin(base) {
            return Err(Error::Paging {
                message: format!(
                    "the listing's nextUri {uri:?} points away from the API host {}; the \
                     paginator follows links on the API host only",
                    base.origin().ascii_serialization()
                ),
            });
        }
        Ok(url)
    }

    /// The API URL made of `segments`, each percent-encoded (for ids in paths).
    pub(crate) fn api_url_segments(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Url> {
        let mut url = self.inner.api_base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| Error::config("the API base URL cannot take a path"))?;
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        kind: Kind,
        what: &'static str,
    ) -> Result<ApiResponse<T>> {
        let request = Request {
            method,
            url,
            body,
            kind,
        };
        let (meta, bytes) = self.call(&request).await?;
        let body = serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            what,
            snippet: snippet(&bytes),
            meta: Box::new(meta.clone()),
            source: Arc::new(source),
        })?;
        Ok(ApiResponse::new(body, meta))
    }

    /// `GET` a Platform API path (such as `/api/v2/integrations/actions`) and decode the JSON
    /// body; the request carries the token and is retried per the policy.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] / [`Error::Forbidden`] for error statuses, [`Error::Decode`] for a body
    /// that is not a `T`, [`Error::RetriesExhausted`] / [`Error::RateLimited`] when retrying
    /// ends, and the token errors of [`Client::access_token`].
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<ApiResponse<T>> {
        let url = self.api_url(path, query)?;
        self.send_json(Method::GET, url, None, Kind::Read, "response body")
            .await
    }

    /// `POST` a JSON body to a Platform API path and decode the JSON response.
    ///
    /// A `POST` may change something, so after a failure that leaves open whether the server
    /// acted on it (a 500, 502 or 504, a timeout, a connection lost after the request was sent,
    /// a response cut off) it is not sent again: the call ends with [`Error::MaybeExecuted`].
    /// It is resent after a 429, a 503 or a failed connect, which prove it did not run. Use
    /// [`Client::post_json_idempotent`] for a `POST` that only reads (a query).
    ///
    /// # Errors
    ///
    /// As for [`Client::get_json`], plus [`Error::InvalidInput`] when `body` does not
    /// serialize and [`Error::MaybeExecuted`].
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &B,
    ) -> Result<ApiResponse<T>> {
        self.post(path, query, body, Kind::Write).await
    }

    /// Like [`Client::post_json`] for a `POST` that is safe to repeat (such as an analytics
    /// query): retried after every transient failure, as a `GET` is.
    ///
    /// # Errors
    ///
    /// As for [`Client::get_json`], plus [`Error::InvalidInput`] when `body` does not serialize.
    pub async fn post_json_idempotent<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &B,
    ) -> Result<ApiResponse<T>> {
        self.post(path, query, body, Kind::Read).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &B,
        kind: Kind,
    ) -> Result<ApiResponse<T>> {
        let url = self.api_url(path, query)?;
        let body = to_json(body)?;
        self.send_json(Method::POST, url, Some(&body), kind, "response body")
            .await
    }

    /// Every entity of a page-numbered listing at `path`, as a stream fetched page by page
    /// (`pageSize`, `pageNumber` added to `query`).
    pub fn paginate<T>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        page_size: u32,
    ) -> Paginator<'static, T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let client = self.clone();
        let path = path.to_owned();
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Paginator::new(
            PageRequest::Number(1),
            self.inner.max_pages,
            move |request| {
                let client = client.clone();
                let path = path.clone();
                let query = query.clone();
                async move {
                    let PageRequest::Number(number) = request else {
                        return Err(Error::Paging {
                            message: "a page-numbered listing was asked for a cursor".to_owned(),
                        });
                    };
                    let size = page_size.to_string();
                    let number_text = number.to_string();
                    let mut pairs: Vec<(&str, &str)> = query
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    pairs.push(("pageSize", &size));
                    pairs.push(("pageNumber", &number_text));
                    let listing: ApiResponse<EntityListing<T>> =
                        client.get_json(&path, &pairs).await?;
                    Ok(listing.into_body().into_page(number))
                }
            },
        )
    }

    /// Every entity of a cursor-paged listing at `path`, as a stream fetched page by page. The
    /// cursor of each response (`cursor`, `after`, `nextPageToken` or `cursors.after`) is sent
    /// back as the query parameter `cursor_param`; a response with no cursor but a `nextUri`
    /// (such as `GET /api/v2/externalcontacts/scan/contacts`) is followed to that URI, which must
    /// be on the API host.
    ///
    /// The stream ends with [`Error::Paging`] for a `nextUri` on another host, a body that
    /// names its next page in a way the paginator does not read, a repeated cursor or too many
    /// pages, and with [`Error::Decode`] for a body without an `entities` array: never with a
    /// short listing.
    pub fn paginate_cursor<T>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        cursor_param: &str,
    ) -> Paginator<'static, T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let client = self.clone();
        let path = path.to_owned();
        let cursor_param = cursor_param.to_owned();
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Paginator::new(
            PageRequest::Cursor(None),
            self.inner.max_pages,
            move |request| {
                let client = client.clone();
                let path = path.clone();
                let query = query.clone();
                let cursor_param = cursor_param.clone();
                async move {
                    let url = match &request {
                        PageRequest::Uri(uri) => client.next_uri_url(uri)?,
                        PageRequest::Cursor(cursor) => {
                            let mut pairs: Vec<(&str, &str)> = query
                                .iter()
                                .map(|(k, v)| (k.as_str(), v.as_str()))
                                .collect();
                            if let Some(cursor) = cursor {
                                pairs.push((&cursor_param, cursor));
                            }
                            client.api_url(&path, &pairs)?
                        }
                        PageRequest::Number(_) => {
                            return Err(Error::Paging {
                                message: "a cursor listing was asked for a page number".to_owned(),
                            })
                        }
                    };
                    let listing: ApiResponse<CursorListing<T>> = client
                        .send_json(Method::GET, url, None, Kind::Read, "cursor listing")
                        .await?;
                    listing.into_body().into_page()
                }
            },
        )
    }

    pub(crate) fn max_pages(&self) -> u32 {
        self.inner.max_pages
    }
}

pub(crate) fn to_json<B: Serialize + ?Sized>(body: &B) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| Error::InvalidInput {
        message: format!("the request body does not serialize to JSON: {e}"),
    })
}

/// The permission a 403 on `path` most likely lacks.
fn likely_permission(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    if !path.contains("/api/v2/integrations/actions") {
        return None;
    }
    if path.ends_with("/execute") || path.ends_with("/test") {
        Some("integrations:action:execute")
    } else {
        Some("integrations:action:view")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ClientBuilder;
    use crate::region::Region;
    use crate::secret::ClientSecret;

    fn builder() -> ClientBuilder {
        Client::builder().credentials("id", ClientSecret::new("secret"))
    }

    #[test]
    fn http_needs_opt_in() {
        let err = builder()
            .base_url("http://127.0.0.1:9")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("allow_http"), "{err}");
        let client = builder()
            .base_url("http://127.0.0.1:9/proxy")
            .allow_http(true)
            .build()
            .unwrap();
        assert_eq!(client.api_base_url().as_str(), "http://127.0.0.1:9/proxy/");
        assert_eq!(
            client
                .api_url("/api/v2/x", &[("a", "b c")])
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/proxy/api/v2/x?a=b+c"
        );
        assert_eq!(
            client
                .api_url_segments(&["api", "v2", "actions", "a/b"], &[])
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/proxy/api/v2/actions/a%2Fb"
        );
    }

    #[test]
    fn permission_hints() {
        assert_eq!(
            likely_permission("/api/v2/integrations/actions"),
            Some("integrations:action:view")
        );
        assert_eq!(
            likely_permission("/api/v2/integrations/actions/abc/execute"),
            Some("integrations:action:execute")
        );
        assert_eq!(likely_permission("/api/v2/users"), None);
    }

    #[test]
    fn client_is_clone_send_sync_debug() {
        fn check<T: Clone + Send + Sync + fmt::Debug + 'static>() {}
        check::<Client>();
        let client = Client::builder()
            .credentials("my-id", ClientSecret::new("hunter2-value"))
            .region(Region::UsEast1)
            .build()
            .unwrap();
        let debug = format!("{client:?}");
        assert!(debug.contains("my-id"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
