//! OAuth client credentials and the shared token cache.
//!
//! The client asks `POST https://login.{domain}/oauth/token` with
//! `Authorization: Basic base64(id:secret)` and the form body `grant_type=client_credentials`.
//! The token is cached and treated as expired a margin before Genesys says it expires;
//! concurrent callers share one refresh, and its outcome: when the refresh fails (after its
//! retries), every caller that waited for it gets that error, instead of each trying again in
//! turn.

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use std::sync::Arc;

use base64::Engine as _;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::error::{Error, ErrorBody, Result};
use crate::secret::{AccessToken, ClientSecret};
use crate::transfer::read_response;

/// The default safety margin: a token counts as expired 60 s before Genesys says it does.
pub const DEFAULT_TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The token lifetime Genesys uses when a response gives none (24 hours).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

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

    pub(crate) fn validate(&self) -> Result<()> {
        if self.client_id.trim().is_empty() {
            return Err(Error::config("the OAuth client id is empty"));
        }
        if self.client_id.contains(':') {
            return Err(Error::config(format!(
                "the OAuth client id {:?} contains ':', which Basic authentication cannot carry",
                self.client_id
            )));
        }
        if self.secret.is_empty() {
            return Err(Error::config(format!(
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

/// The success body of the token endpoint.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
}

/// The error body of the token endpoint: `{"error":"invalid_client","error_description":…}`.
#[derive(Deserialize, Default)]
struct TokenErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
    description: Option<String>,
}

/// A token and when to stop using it.
#[derive(Clone, Debug)]
pub(crate) struct CachedToken {
    pub(crate) token: AccessToken,
    /// When the token counts as expired (the margin already taken off).
    pub(crate) refresh_at: Instant,
    /// Which refresh produced it, so one 401 drops only the token it was sent with.
    pub(crate) generation: u64,
}

impl CachedToken {
    /// A token issued now with `lifetime`, to be refreshed `margin` early. The margin is capped
    /// at half the lifetime, so a short-lived token is still used at all.
    pub(crate) fn new(
        token: AccessToken,
        lifetime: Duration,
        margin: Duration,
        generation: u64,
    ) -> Self {
        let margin = margin.min(lifetime / 2);
        Self {
            token,
            refresh_at: Instant::now() + lifetime - margin,
            generation,
        }
    }

    fn is_fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

/// A refresh in flight: the one token request (with its retries) that every caller who finds
/// the token expired waits for.
type Refresh = Shared<BoxFuture<'static, Result<CachedToken>>>;

/// The one cached token of a client, and at most one refresh in flight.
///
/// Callers that find the token missing or expired join the refresh in flight, or start it:
/// one token request (with its retries) per expiry, and its outcome, a token or an error,
/// reaches every caller that waited for it. The refresh does not depend on the caller that
/// started it: if that caller goes away, the others still drive it to its end. The next
/// caller after a failed refresh starts a new one.
#[derive(Default)]
pub(crate) struct TokenCache {
    slot: Mutex<Slot>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slot = self.lock();
        f.debug_struct("TokenCache")
            .field("token", &slot.token)
            .field("generation", &slot.generation)
            .field("refreshing", &slot.refresh.is_some())
            .finish()
    }
}

#[derive(Default)]
struct Slot {
    token: Option<CachedToken>,
    /// The generation of the newest refresh started.
    generation: u64,
    /// The refresh in flight and its generation.
    refresh: Option<(u64, Refresh)>,
}

impl TokenCache {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // The slot holds plain values that every step leaves consistent; keep serving.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached token while it is fresh, else the outcome of the refresh in flight, else the
    /// outcome of a new refresh made by `refresh` (given the new token's generation).
    pub(crate) async fn get<F, Fut>(&self, refresh: F) -> Result<CachedToken>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<CachedToken>> + Send + 'static,
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

    /// Drops the cached token, whichever it is.
    pub(crate) fn clear(&self) {
        self.lock().token = None;
    }

    /// Drops the cached token if it is still the one of `generation` (the one a 401 answered).
    pub(crate) fn invalidate(&self, generation: u64) {
        let mut slot = self.lock();
        if slot.token.as_ref().map(|t| t.generation) == Some(generation) {
            slot.token = None;
        }
    }
}

/// One token request (no retries): `POST {login}/oauth/token` with Basic authentication and
/// `grant_type=client_credentials`. The token it returns counts as expired `margin` early.
pub(crate) async fn request_token(
    http: &reqwest::Client,
    url: &Url,
    credentials: &Credentials,
    margin: Duration,
    generation: u64,
) -> Result<CachedToken> {
    let client_id = credentials.client_id();
    let mut authorization =
        HeaderValue::from_str(&credentials.basic_authorization()).map_err(|_| {
            Error::config(format!(
                "the credentials of client id {client_id} do not fit in a header"
            ))
        })?;
    authorization.set_sensitive(true);
    let response = http
        .post(url.clone())
        .header(AUTHORIZATION, authorization)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body("grant_type=client_credentials")
        .send()
        .await
        .map_err(Error::transport)?;
    let (meta, bytes) = read_response(response).await?;
    if meta.status.is_success() {
        let parsed: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
                what: "token response",
                // The body may hold a token: never keep any of it.
                snippet: "<withheld: token responses may hold secrets>".to_owned(),
                meta: Box::new(meta.clone()),
                source: Arc::new(source),
            })?;
        let token_type = parsed.token_type.as_deref().unwrap_or("bearer");
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(Error::Auth {
                client_id: client_id.to_owned(),
                status: Some(meta.status),
                error: Some("unsupported_token_type".to_owned()),
                description: Some(format!("expected a bearer token, got {token_type:?}")),
                meta: Some(Box::new(meta)),
            });
        }
        let lifetime = match parsed.expires_in {
            Some(0) => {
                return Err(Error::Auth {
                    client_id: client_id.to_owned(),
                    status: Some(meta.status),
                    error: Some("invalid_token_lifetime".to_owned()),
                    description: Some("the token expires immediately".to_owned()),
                    meta: Some(Box::new(meta)),
                })
            }
            Some(secs) => Duration::from_secs(secs),
            None => DEFAULT_TOKEN_LIFETIME,
        };
        return Ok(CachedToken::new(
            AccessToken::new(parsed.access_token),
            lifetime,
            margin,
            generation,
        ));
    }
    if matches!(meta.status.as_u16(), 400 | 401 | 403) {
        let body: TokenErrorResponse = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(Error::Auth {
            client_id: client_id.to_owned(),
            status: Some(meta.status),
            error: body.error,
            description: body.error_description.or(body.description),
            meta: Some(Box::new(meta)),
        });
    }
    Err(Error::Api {
        body: Box::new(ErrorBody::parse(&bytes)),
        meta: Box::new(meta),
    })
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

    #[tokio::test(start_paused = true)]
    async fn margin_is_capped_at_half_the_lifetime() {
        let start = Instant::now();
        let t = CachedToken::new(
            AccessToken::new("t"),
            Duration::from_secs(100),
            Duration::from_secs(60),
            1,
        );
        assert_eq!(t.refresh_at - start, Duration::from_secs(50));
        let t = CachedToken::new(
            AccessToken::new("t"),
            Duration::from_secs(3600),
            Duration::from_secs(60),
            1,
        );
        assert_eq!(t.refresh_at - start, Duration::from_secs(3540));
    }
}
