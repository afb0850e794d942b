//! OAuth 2.0 client-credentials tokens (RFC 6749 §4.4) for any token endpoint: the request,
//! the mapping of its error responses (RFC 6749 §5.2), and a token cache that concurrent
//! callers share.
//!
//! Genesys Cloud's own login ([`Client`](crate::Client)) is built on this module, and so is
//! any other service that authenticates with client credentials (the caching proxy's
//! upstreams, for instance):
//!
//! * [`TokenEndpoint`]: where to ask (the token URL), with which [`Credentials`], optional
//!   `scope`, how the client authenticates ([`ClientAuth`]), and how long before its expiry
//!   a token is replaced. [`TokenEndpoint::request`] sends one token request.
//! * [`SharedToken`]: the one cached [`Token`] and at most one refresh in flight; callers
//!   that find the token missing or expiring join that refresh, and all of them get its
//!   outcome, a token or an error. Generic over the refresh's error, so a caller can wrap
//!   the request in its own retries.
//! * [`ClientCredentialsToken`]: the two together with an HTTP client, one request per
//!   refresh: `token()` and, after a 401 from the API, `invalidate(&token)`.
//!
//! Secrets never print: [`Credentials`] and [`Token`] show `***` for the secret and the
//! token, and no [`TokenError`] holds either (a token response's body is never kept).
//!
//! ```no_run
//! use genesys_client::oauth::{ClientCredentialsToken, TokenEndpoint};
//! use genesys_client::{ClientSecret, Credentials};
//!
//! # async fn run() -> Result<(), genesys_client::oauth::TokenError> {
//! let endpoint = TokenEndpoint::new(
//!     "https://login.example.com/oauth2/token".parse().unwrap(),
//!     Credentials::new("crm-proxy", ClientSecret::new("from-the-environment")),
//! )
//! .with_scope("accounts.read");
//! let tokens = ClientCredentialsToken::new(reqwest::Client::new(), endpoint);
//! let token = tokens.token().await?; // cached; concurrent callers share one refresh
//! let header = token.authorization()?; // "Bearer …", marked sensitive
//! # let _ = header;
//! // The API answered 401 to that token: drop it (only if it is still the cached one).
//! tokens.invalidate(&token);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::error::{Error, ErrorBody};
use crate::meta::ResponseMeta;
use crate::secret::{AccessToken, ClientSecret};
use crate::transfer::read_response;

/// The default safety margin: a token counts as expired 60 s before the endpoint says it
/// does (capped at half the token's lifetime).
pub const DEFAULT_TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The lifetime assumed for a token whose response gives no `expires_in` (one hour), unless
/// [`TokenEndpoint::with_default_lifetime`] says otherwise.
pub const DEFAULT_LIFETIME_WITHOUT_EXPIRY: Duration = Duration::from_secs(60 * 60);

/// An OAuth client id and secret. `Debug` shows the id and `***` for the secret.
///
/// ```
/// use genesys_client::{ClientSecret, Credentials};
///
/// let credentials = Credentials::new("my-client-id", ClientSecret::new("hunter2"));
/// let debug = format!("{credentials:?}");
/// assert!(debug.contains("my-client-id") && !debug.contains("hunter2"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    client_id: String,
    secret: ClientSecret,
}

impl Credentials {
    /// Pairs a client id with its secret.
    pub fn new(client_id: impl Into<String>, secret: ClientSecret) -> Self {
        Self {
            client_id: client_id.into(),
            secret,
        }
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client secret (prints as `***`).
    pub fn secret(&self) -> &ClientSecret {
        &self.secret
    }

    /// The value of the `Authorization` header of a token request: `Basic base64(id:secret)`.
    /// It holds the secret in clear, so it stays inside the crate.
    pub(crate) fn basic_authorization(&self) -> String {
        let raw = format!("{}:{}", self.client_id, self.secret.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Checks that the id and the secret can be sent: neither empty, no `:` in the id (Basic
    /// authentication could not carry it).
    ///
    /// # Errors
    ///
    /// [`TokenError::Config`] naming the client id (never the secret).
    pub fn validate(&self) -> Result<(), TokenError> {
        if self.client_id.trim().is_empty() {
            return Err(TokenError::config("the OAuth client id is empty"));
        }
        if self.client_id.contains(':') {
            return Err(TokenError::config(format!(
                "the OAuth client id {:?} contains ':', which Basic authentication cannot carry",
                self.client_id
            )));
        }
        if self.secret.is_empty() {
            return Err(TokenError::config(format!(
                "the OAuth client secret of client id {} is empty",
                self.client_id
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret)
            .finish()
    }
}

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `Authorization: Basic base64(id:secret)` (`client_secret_basic`, the default, which
    /// every server must support).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`), for servers
    /// that want them there.
    RequestBody,
}

/// Why no token could be had. `Clone`, so that one failed refresh reaches every caller that
/// waited for it. No variant holds the client secret, a token, or a token response's body.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The endpoint or the credentials cannot be used as configured.
    #[error("invalid OAuth configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// The endpoint refused the credentials: an RFC 6749 §5.2 error response (HTTP 400, 401
    /// or 403, with `error` such as `invalid_client`, `invalid_scope`,
    /// `unauthorized_client`).
    #[error("{}", rejected_message(endpoint, client_id, *status, error.as_deref(), description.as_deref()))]
    Rejected {
        /// The token URL.
        endpoint: String,
        /// The OAuth client id (never the secret).
        client_id: String,
        /// The HTTP status.
        status: StatusCode,
        /// The OAuth `error` code.
        error: Option<String>,
        /// The OAuth `error_description`.
        description: Option<String>,
        /// The response's metadata.
        meta: Box<ResponseMeta>,
    },
    /// The endpoint answered success with a token this client cannot use (not a bearer
    /// token, or one that expires at once).
    #[error("the token endpoint {endpoint} issued an unusable token: {error} - {description}")]
    Unusable {
        /// The token URL.
        endpoint: String,
        /// The OAuth client id.
        client_id: String,
        /// A short code: `unsupported_token_type`, `invalid_token_lifetime`.
        error: String,
        /// What is wrong with it.
        description: String,
        /// The response's metadata.
        meta: Box<ResponseMeta>,
    },
    /// A success response whose body is not a token response (its body is not kept: it may
    /// hold a token).
    #[error("the token endpoint {endpoint} answered {} with a body that is not a token response: {source}", meta.status)]
    Decode {
        /// The token URL.
        endpoint: String,
        /// The response's metadata.
        meta: Box<ResponseMeta>,
        /// The JSON error.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// Another status (a 5xx, a 429, a redirect): the endpoint failed, the credentials were
    /// not judged.
    #[error("the token endpoint {endpoint} answered {}: {body}", meta.status)]
    Status {
        /// The token URL.
        endpoint: String,
        /// The parsed error body, or a snippet of it.
        body: Box<ErrorBody>,
        /// The response's metadata.
        meta: Box<ResponseMeta>,
    },
    /// No answer in time.
    #[error("the token endpoint {endpoint} did not answer in time: {source}")]
    Timeout {
        /// The token URL.
        endpoint: String,
        /// The HTTP client's error.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// The endpoint could not be reached, or the connection failed before an answer.
    #[error(
        "the token endpoint {endpoint} could not be reached: {}",
        root_cause(source)
    )]
    Transport {
        /// The token URL.
        endpoint: String,
        /// The HTTP client's error.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// The answer's body was cut off in transit.
    #[error("the token endpoint {endpoint}'s answer ({}) was cut off after {received} byte(s)", meta.status)]
    BodyCutOff {
        /// The token URL.
        endpoint: String,
        /// How many bytes arrived.
        received: usize,
        /// The response's metadata.
        meta: Box<ResponseMeta>,
        /// The HTTP client's error.
        #[source]
        source: Arc<reqwest::Error>,
    },
}

fn rejected_message(
    endpoint: &str,
    client_id: &str,
    status: StatusCode,
    error: Option<&str>,
    description: Option<&str>,
) -> String {
    let mut out = format!(
        "the token endpoint {endpoint} refused the client credentials of client id {client_id} (HTTP {status})"
    );
    if let Some(error) = error {
        out.push_str(&format!(": {error}"));
    }
    if let Some(description) = description {
        out.push_str(&format!(" - {description}"));
    }
    out
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl TokenError {
    fn config(message: impl Into<String>) -> Self {
        TokenError::Config {
            message: message.into(),
        }
    }

    /// The HTTP status of the token response, if one arrived.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            TokenError::Rejected { status, .. } => Some(*status),
            TokenError::Unusable { meta, .. }
            | TokenError::Decode { meta, .. }
            | TokenError::Status { meta, .. }
            | TokenError::BodyCutOff { meta, .. } => Some(meta.status),
            _ => None,
        }
    }

    /// Whether the endpoint judged the credentials and refused them (retrying will not help
    /// until the configuration changes).
    pub fn is_rejected(&self) -> bool {
        matches!(self, TokenError::Rejected { .. })
    }
}

impl From<TokenError> for Error {
    /// Genesys's view of a failed token request: a refusal is [`Error::Auth`], the transport
    /// failures keep their variants (so the retry classifier sees them as before).
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Config { message } => Error::Config { message },
            TokenError::Rejected {
                client_id,
                status,
                error,
                description,
                meta,
                ..
            } => Error::Auth {
                client_id,
                status: Some(status),
                error,
                description,
                meta: Some(meta),
            },
            TokenError::Unusable {
                client_id,
                error,
                description,
                meta,
                ..
            } => Error::Auth {
                client_id,
                status: Some(meta.status),
                error: Some(error),
                description: Some(description),
                meta: Some(meta),
            },
            TokenError::Decode { meta, source, .. } => Error::Decode {
                what: "token response",
                snippet: "<withheld: token responses may hold secrets>".to_owned(),
                meta,
                source,
            },
            TokenError::Status { body, meta, .. } => Error::Api { body, meta },
            TokenError::Timeout { source, .. } => Error::Timeout { source },
            TokenError::Transport { source, .. } => Error::Transport { source },
            TokenError::BodyCutOff {
                received,
                meta,
                source,
                ..
            } => Error::BodyCutOff {
                received,
                meta,
                source,
            },
        }
    }
}

/// A token and when to stop using it. `Debug` shows `***` for the token.
#[derive(Clone, Debug)]
pub struct Token {
    token: AccessToken,
    /// When the token counts as expired (the margin already taken off).
    refresh_at: Instant,
    /// Which refresh produced it, so one 401 drops only the token it was sent with.
    generation: u64,
}

impl Token {
    /// A token issued now with `lifetime`, to be refreshed `margin` early. The margin is capped
    /// at half the lifetime, so a short-lived token is still used at all.
    pub fn new(token: AccessToken, lifetime: Duration, margin: Duration, generation: u64) -> Self {
        let margin = margin.min(lifetime / 2);
        Self {
            token,
            refresh_at: Instant::now() + lifetime - margin,
            generation,
        }
    }

    /// The access token.
    pub fn access_token(&self) -> &AccessToken {
        &self.token
    }

    /// When it stops being handed out (its expiry less the margin).
    pub fn refresh_at(&self) -> Instant {
        self.refresh_at
    }

    /// Which refresh of its [`SharedToken`] produced it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `Authorization: Bearer <token>` as a header value marked sensitive (so HTTP clients
    /// keep it out of their logs).
    ///
    /// # Errors
    ///
    /// [`TokenError::Config`] when the token is not a valid header value.
    pub fn authorization(&self) -> Result<HeaderValue, TokenError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
            .map_err(|_| TokenError::config("the access token is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn is_fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

/// The success body of a token endpoint (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
}

/// The error body of a token endpoint (RFC 6749 §5.2): `{"error":"invalid_client",
/// "error_description":…}`; `description` is what some servers (Genesys) send instead.
#[derive(Deserialize, Default)]
struct TokenErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
    description: Option<String>,
}

/// Where and how to ask for a client-credentials token.
#[derive(Debug, Clone)]
pub struct TokenEndpoint {
    url: Url,
    credentials: Credentials,
    scope: Option<String>,
    client_auth: ClientAuth,
    margin: Duration,
    default_lifetime: Duration,
}

impl TokenEndpoint {
    /// The token URL and the client's credentials; no scope, [`ClientAuth::Basic`],
    /// [`DEFAULT_TOKEN_MARGIN`] and [`DEFAULT_LIFETIME_WITHOUT_EXPIRY`].
    pub fn new(url: Url, credentials: Credentials) -> Self {
        Self {
            url,
            credentials,
            scope: None,
            client_auth: ClientAuth::Basic,
            margin: DEFAULT_TOKEN_MARGIN,
            default_lifetime: DEFAULT_LIFETIME_WITHOUT_EXPIRY,
        }
    }

    /// Asks for `scope` (space-separated scope names, sent as is).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// How the client authenticates.
    pub fn with_client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// How long before its expiry a token is replaced (capped at half its lifetime).
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The lifetime assumed when a response gives no `expires_in`.
    pub fn with_default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// The token URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The margin.
    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// Checks the URL (http or https, no credentials or fragment in it) and the credentials.
    ///
    /// # Errors
    ///
    /// [`TokenError::Config`] saying what is wrong.
    pub fn validate(&self) -> Result<(), TokenError> {
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err(TokenError::config(format!(
                "the token URL {} is not http(s)",
                self.endpoint()
            )));
        }
        if !self.url.username().is_empty() || self.url.password().is_some() {
            return Err(TokenError::config(
                "the token URL must not carry credentials; give them as the client id and secret",
            ));
        }
        if self.url.fragment().is_some() {
            return Err(TokenError::config(format!(
                "the token URL {} has a fragment",
                self.endpoint()
            )));
        }
        if self
            .scope
            .as_deref()
            .is_some_and(|s| s.trim().is_empty() || s.chars().any(|c| c.is_control()))
        {
            return Err(TokenError::config(
                "the scope is empty or has control characters",
            ));
        }
        self.credentials.validate()
    }

    /// The token URL as errors name it (scheme, host, port and path; no query).
    fn endpoint(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        url.to_string()
    }

    /// One token request (no retries): `POST` with `grant_type=client_credentials` (and the
    /// scope), the client authenticated as [`ClientAuth`] says. The token returned counts as
    /// expired the margin early, and carries `generation`.
    ///
    /// # Errors
    ///
    /// [`TokenError::Rejected`] for an RFC 6749 error response (400, 401, 403), and the
    /// other variants for everything else that keeps a token from being had.
    pub async fn request(
        &self,
        http: &reqwest::Client,
        generation: u64,
    ) -> Result<Token, TokenError> {
        let endpoint = || self.endpoint();
        let client_id = self.credentials.client_id();
        let mut request = http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        if self.client_auth == ClientAuth::Basic {
            let mut authorization = HeaderValue::from_str(&self.credentials.basic_authorization())
                .map_err(|_| {
                    TokenError::config(format!(
                        "the credentials of client id {client_id} do not fit in a header"
                    ))
                })?;
            authorization.set_sensitive(true);
            request = request.header(AUTHORIZATION, authorization);
        }
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if let Some(scope) = &self.scope {
                form.append_pair("scope", scope);
            }
            if self.client_auth == ClientAuth::RequestBody {
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", self.credentials.secret().expose());
            }
            form.finish()
        };
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| transport(endpoint(), e))?;
        let (meta, bytes) = read_response(response).await.map_err(|e| match e {
            Error::Timeout { source } => TokenError::Timeout {
                endpoint: endpoint(),
                source,
            },
            Error::BodyCutOff {
                received,
                meta,
                source,
            } => TokenError::BodyCutOff {
                endpoint: endpoint(),
                received,
                meta,
                source,
            },
            other => TokenError::config(other.to_string()),
        })?;
        if meta.status.is_success() {
            let parsed: TokenResponse =
                serde_json::from_slice(&bytes).map_err(|source| TokenError::Decode {
                    endpoint: endpoint(),
                    meta: Box::new(meta.clone()),
                    source: Arc::new(source),
                })?;
            let unusable =
                |error: &str, description: String, meta: ResponseMeta| TokenError::Unusable {
                    endpoint: endpoint(),
                    client_id: client_id.to_owned(),
                    error: error.to_owned(),
                    description,
                    meta: Box::new(meta),
                };
            let token_type = parsed.token_type.as_deref().unwrap_or("bearer");
            if !token_type.eq_ignore_ascii_case("bearer") {
                return Err(unusable(
                    "unsupported_token_type",
                    format!("expected a bearer token, got {token_type:?}"),
                    meta,
                ));
            }
            let lifetime = match parsed.expires_in {
                Some(0) => {
                    return Err(unusable(
                        "invalid_token_lifetime",
                        "the token expires immediately".to_owned(),
                        meta,
                    ))
                }
                Some(secs) => Duration::from_secs(secs),
                None => self.default_lifetime,
            };
            return Ok(Token::new(
                AccessToken::new(parsed.access_token),
                lifetime,
                self.margin,
                generation,
            ));
        }
        if matches!(meta.status.as_u16(), 400 | 401 | 403) {
            let body: TokenErrorResponse = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(TokenError::Rejected {
                endpoint: endpoint(),
                client_id: client_id.to_owned(),
                status: meta.status,
                error: body.error,
                description: body.error_description.or(body.description),
                meta: Box::new(meta),
            });
        }
        Err(TokenError::Status {
            endpoint: endpoint(),
            body: Box::new(ErrorBody::parse(&bytes)),
            meta: Box::new(meta),
        })
    }
}

fn transport(endpoint: String, e: reqwest::Error) -> TokenError {
    let source = Arc::new(e);
    if source.is_timeout() {
        TokenError::Timeout { endpoint, source }
    } else {
        TokenError::Transport { endpoint, source }
    }
}

/// A refresh in flight: the one token request (with whatever retries the caller wraps around
/// it) that every caller who finds the token expired waits for.
type Refresh<E> = Shared<BoxFuture<'static, Result<Token, E>>>;

/// The one cached token, and at most one refresh in flight.
///
/// Callers that find the token missing or expired join the refresh in flight, or start it:
/// one refresh per expiry, and its outcome, a token or an error, reaches every caller that
/// waited for it. The refresh does not depend on the caller that started it: if that caller
/// goes away, the others still drive it to its end. The next caller after a failed refresh
/// starts a new one.
pub struct SharedToken<E> {
    slot: Mutex<Slot<E>>,
}

impl<E> Default for SharedToken<E> {
    fn default() -> Self {
        Self {
            slot: Mutex::new(Slot {
                token: None,
                generation: 0,
                refresh: None,
            }),
        }
    }
}

impl<E> fmt::Debug for SharedToken<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slot = self.lock();
        f.debug_struct("SharedToken")
            .field("token", &slot.token)
            .field("generation", &slot.generation)
            .field("refreshing", &slot.refresh.is_some())
            .finish()
    }
}

struct Slot<E> {
    token: Option<Token>,
    /// The generation of the newest refresh started.
    generation: u64,
    /// The refresh in flight and its generation.
    refresh: Option<(u64, Refresh<E>)>,
}

impl<E: Clone + Send + Sync + 'static> SharedToken<E> {
    /// The cached token while it is fresh, else the outcome of the refresh in flight, else the
    /// outcome of a new refresh made by `refresh` (given the new token's generation, which the
    /// token it returns should carry).
    ///
    /// # Errors
    ///
    /// The refresh's error, shared by every caller that waited for it.
    pub async fn get<F, Fut>(&self, refresh: F) -> Result<Token, E>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Token, E>> + Send + 'static,
    {
        let (generation, flight) = {
            let mut slot = self.lock();
            if let Some(token) = slot.token.as_ref().filter(|t| t.is_fresh()) {
                return Ok(token.clone());
            }
            slot.token = None;
            match &slot.refresh {
                Some((generation, flight)) => (*generation, flight.clone()),
                None => {
                    slot.generation += 1;
                    let generation = slot.generation;
                    let flight = refresh(generation).boxed().shared();
                    slot.refresh = Some((generation, flight.clone()));
                    (generation, flight)
                }
            }
        };
        let outcome = flight.await;
        let mut slot = self.lock();
        // The first waiter to see the outcome files it; the others find it filed.
        if slot.refresh.as_ref().map(|(g, _)| *g) == Some(generation) {
            slot.refresh = None;
            if let Ok(token) = &outcome {
                slot.token = Some(token.clone());
            }
        }
        outcome
    }
}

impl<E> SharedToken<E> {
    fn lock(&self) -> MutexGuard<'_, Slot<E>> {
        // The slot holds plain values that every step leaves consistent; keep serving.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the cached token, whichever it is.
    pub fn clear(&self) {
        self.lock().token = None;
    }

    /// Drops the cached token if it is still the one of `generation` (the one a 401
    /// answered); a newer token, fetched meanwhile by another caller, stays.
    pub fn invalidate(&self, generation: u64) {
        let mut slot = self.lock();
        if slot.token.as_ref().map(|t| t.generation) == Some(generation) {
            slot.token = None;
        }
    }
}

/// A [`TokenEndpoint`] with its [`SharedToken`] and HTTP client: one token request per
/// refresh, no retries (a caller that fails retries the call, and the next call starts a new
/// refresh). Cheap to clone; clones share the token.
#[derive(Debug, Clone)]
pub struct ClientCredentialsToken {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    endpoint: TokenEndpoint,
    token: SharedToken<TokenError>,
}

impl ClientCredentialsToken {
    /// Tokens from `endpoint`, asked for with `http`.
    pub fn new(http: reqwest::Client, endpoint: TokenEndpoint) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                endpoint,
                token: SharedToken::default(),
            }),
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.inner.endpoint
    }

    /// A token that is not about to expire: the cached one, or the outcome of the one refresh
    /// that concurrent callers share.
    ///
    /// # Errors
    ///
    /// The refresh's [`TokenError`].
    pub async fn token(&self) -> Result<Token, TokenError> {
        let inner = self.inner.clone();
        self.inner
            .token
            .get(move |generation| async move {
                inner.endpoint.request(&inner.http, generation).await
            })
            .await
    }

    /// Drops `token` if it is still the cached one (the API answered 401 to it), so the next
    /// [`ClientCredentialsToken::token`] fetches a new one.
    pub fn invalidate(&self, token: &Token) {
        self.inner.token.invalidate(token.generation);
    }

    /// Drops the cached token, whichever it is.
    pub fn clear(&self) {
        self.inner.token.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_authorization_is_base64_of_id_colon_secret() {
        let c = Credentials::new("id", ClientSecret::new("secret"));
        assert_eq!(c.basic_authorization(), "Basic aWQ6c2VjcmV0");
    }

    #[test]
    fn credentials_are_validated() {
        assert!(Credentials::new("", ClientSecret::new("s"))
            .validate()
            .is_err());
        assert!(Credentials::new("a:b", ClientSecret::new("s"))
            .validate()
            .is_err());
        let err = Credentials::new("id-1", ClientSecret::new(""))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("id-1"));
    }

    #[test]
    fn endpoints_are_validated_without_printing_the_secret() {
        let c = || Credentials::new("id", ClientSecret::new("hunter2"));
        let ok = TokenEndpoint::new("https://login.example/token".parse().unwrap(), c());
        assert!(ok.validate().is_ok());
        for bad in [
            "ftp://login.example/token",
            "https://user:pw@login.example/token",
            "https://login.example/token#x",
        ] {
            let err = TokenEndpoint::new(bad.parse().unwrap(), c())
                .validate()
                .unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        assert!(ok.clone().with_scope(" ").validate().is_err());
        assert!(!format!("{ok:?}").contains("hunter2"));
    }

    #[tokio::test(start_paused = true)]
    async fn margin_is_capped_at_half_the_lifetime() {
        let start = Instant::now();
        let t = Token::new(
            AccessToken::new("t"),
            Duration::from_secs(100),
            Duration::from_secs(60),
            1,
        );
        assert_eq!(t.refresh_at - start, Duration::from_secs(50));
        let t = Token::new(
            AccessToken::new("t"),
            Duration::from_secs(3600),
            Duration::from_secs(60),
            1,
        );
        assert_eq!(t.refresh_at - start, Duration::from_secs(3540));
        assert_eq!(format!("{:?}", t.access_token()), "AccessToken(***)");
    }
}
