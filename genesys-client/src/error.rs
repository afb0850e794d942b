//! The crate's one error type, the Genesys error bodies it parses, and the classification of
//! errors into transient and fatal (the one table of what is worth retrying).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::meta::{RateLimit, ResponseMeta};

/// The longest body excerpt an error keeps, in characters.
pub const SNIPPET_CHARS: usize = 200;

/// A shorthand for `Result<T, genesys_client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to Genesys Cloud.
///
/// The type is `Clone` (non-`Clone` sources sit behind an [`Arc`]) so that a cache can hand one
/// failure to many waiting callers. No variant holds or prints the client secret or a token.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client's configuration is invalid (bad URL, missing credentials, bad retry policy...).
    #[error("invalid Genesys client configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },

    /// A required environment variable is not set (see `Client::from_env`).
    #[error("environment variable {name} is not set")]
    MissingEnv {
        /// The variable's name.
        name: &'static str,
    },

    /// An argument was rejected before any request was sent (an empty id, unserializable input).
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong.
        message: String,
    },

    /// The login host refused to issue a token for the client credentials.
    #[error("{}", auth_message(client_id, .status, error.as_deref(), description.as_deref()))]
    Auth {
        /// The OAuth client id (never the secret).
        client_id: String,
        /// The HTTP status of the token response, if one arrived.
        status: Option<StatusCode>,
        /// The OAuth `error` code, such as `invalid_client`.
        error: Option<String>,
        /// The OAuth `error_description`.
        description: Option<String>,
        /// The token response's metadata.
        meta: Option<Box<ResponseMeta>>,
    },

    /// HTTP 403: the OAuth client lacks a permission.
    #[error(
        "Genesys Cloud returned 403 Forbidden for client id {client_id}{}: {}{}",
        missing_permission.map(|p| format!(" (likely missing permission {p})")).unwrap_or_default(),
        body,
        meta
    )]
    Forbidden {
        /// The OAuth client id that lacks the permission.
        client_id: String,
        /// The permission the request most likely needs, when the endpoint is known.
        missing_permission: Option<&'static str>,
        /// The parsed error body.
        body: Box<ErrorBody>,
        /// The response's metadata.
        meta: Box<ResponseMeta>,
    },

    /// Any other non-success HTTP status from the Platform API.
    #[error("Genesys Cloud returned {}: {}{}", meta.status, body, meta)]
    Api {
        /// The parsed error body (or a snippet of a body that is not JSON).
        body: Box<ErrorBody>,
        /// The response's metadata.
        meta: Box<ResponseMeta>,
    },

    /// Genesys asked to wait (`Retry-After`) longer than the policy's cap allows.
    #[error(
        "rate limited by Genesys Cloud: Retry-After {retry_after:?} exceeds the cap of {cap:?}{meta}"
    )]
    RateLimited {
        /// How long Genesys asked to wait.
        retry_after: Duration,
        /// The longest wait the retry policy accepts.
        cap: Duration,
        /// The response's metadata.
        meta: Box<ResponseMeta>,
    },

    /// A transient failure persisted until the retry policy gave up.
    #[error("gave up after {attempts} attempt(s) in {elapsed:?}: {last}")]
    RetriesExhausted {
        /// How many requests were sent.
        attempts: u32,
        /// Time from the first attempt until giving up.
        elapsed: Duration,
        /// The last attempt's error.
        #[source]
        last: Box<Error>,
    },

    /// A request that is not safe to resend (a data-action execution not marked idempotent,
    /// a `POST`) failed in a way that leaves open whether Genesys acted on it, so it was not
    /// sent again. [`Error::doubt`] says which case it was; the action may or may not have
    /// run.
    #[error(
        "not resent: the request may already have run on Genesys Cloud ({doubt}) and is not \
         marked idempotent (ExecuteOptions::idempotent); only a 429, a 503 or a failed connect \
         prove it did not run. After {attempts} attempt(s): {source}"
    )]
    MaybeExecuted {
        /// Why it may have run.
        doubt: Doubt,
        /// How many requests were sent.
        attempts: u32,
        /// The failure.
        #[source]
        source: Box<Error>,
    },

    /// A transient failure was not retried because the client's retry budget (shared by all
    /// its calls) is spent: Genesys is failing for many calls at once, and retrying every one
    /// would multiply the load.
    #[error(
        "gave up after {attempts} attempt(s): the client's retry budget is spent (retries stay \
         a bounded share of all calls): {last}"
    )]
    RetryBudgetExhausted {
        /// How many requests were sent.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: Box<Error>,
    },

    /// The request timed out.
    #[error("request to Genesys Cloud timed out: {source}")]
    Timeout {
        /// The HTTP client's error.
        #[source]
        source: Arc<reqwest::Error>,
    },

    /// The connection failed: it could not be made (refused, DNS, TLS), or it broke after the
    /// request was sent and before an answer came. The message says which.
    #[error("{}", transport_message(source))]
    Transport {
        /// The HTTP client's error.
        #[source]
        source: Arc<reqwest::Error>,
    },

    /// A response arrived, but its body was cut off in transit (the connection was reset or
    /// closed before `Content-Length` bytes or the last chunk came). Genesys was reached; the
    /// body is lost. Transient: retried for requests that are safe to resend.
    #[error(
        "the response from Genesys Cloud ({}) was cut off in transit after {received} byte(s) of its body: {}{meta}",
        meta.status,
        root_cause(source)
    )]
    BodyCutOff {
        /// How many bytes of the body arrived.
        received: usize,
        /// The response's metadata (status and headers arrived whole).
        meta: Box<ResponseMeta>,
        /// The HTTP client's error.
        #[source]
        source: Arc<reqwest::Error>,
    },

    /// A success response's body arrived whole but is not the JSON expected.
    #[error("could not decode {what} from Genesys Cloud ({}): {source}; body starts {snippet:?}{meta}", meta.status)]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The start of the body (at most [`SNIPPET_CHARS`] characters).
        snippet: String,
        /// The response's metadata.
        meta: Box<ResponseMeta>,
        /// The JSON error.
        #[source]
        source: Arc<serde_json::Error>,
    },

    /// A listing did not end: a page or cursor came back twice or the page limit was passed.
    #[error("paging stopped: {message}")]
    Paging {
        /// What went wrong.
        message: String,
    },
}

/// Why a failed request may have been acted on by Genesys (see [`Error::MaybeExecuted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Doubt {
    /// Genesys answered 500, 502 or 504: it may have run the action before failing.
    ServerError(StatusCode),
    /// No answer came in time: the request may be running still.
    Timeout,
    /// The connection failed after the request was written, before an answer came.
    ConnectionLost,
    /// The answer's body was cut off in transit: the action ran, its output is lost.
    ResponseLost,
    /// Another transient failure (from a custom classifier).
    Other,
}

impl Doubt {
    pub(crate) fn of(err: &Error) -> Self {
        match err {
            Error::Api { meta, .. } if meta.status.is_server_error() => {
                Doubt::ServerError(meta.status)
            }
            Error::Timeout { .. } => Doubt::Timeout,
            Error::Transport { .. } => Doubt::ConnectionLost,
            Error::BodyCutOff { .. } => Doubt::ResponseLost,
            _ => Doubt::Other,
        }
    }
}

impl fmt::Display for Doubt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Doubt::ServerError(status) => write!(f, "Genesys answered {status}"),
            Doubt::Timeout => f.write_str("no answer came in time"),
            Doubt::ConnectionLost => {
                f.write_str("the connection failed after the request was sent")
            }
            Doubt::ResponseLost => f.write_str("the response was cut off in transit"),
            Doubt::Other => f.write_str("a transient failure after sending"),
        }
    }
}

fn transport_message(source: &reqwest::Error) -> String {
    if source.is_connect() {
        format!(
            "could not connect to Genesys Cloud: {source} ({})",
            root_cause(source)
        )
    } else {
        format!(
            "the connection to Genesys Cloud failed before an answer came: {source} ({})",
            root_cause(source)
        )
    }
}

/// The innermost cause of an error, which says what happened ("unexpected EOF during chunk
/// size line") where the outer ones only say where ("error decoding response body").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn auth_message(
    client_id: &str,
    status: &Option<StatusCode>,
    error: Option<&str>,
    description: Option<&str>,
) -> String {
    let mut out =
        format!("Genesys Cloud rejected the OAuth client credentials of client id {client_id}");
    if let Some(status) = status {
        out.push_str(&format!(" (HTTP {status})"));
    }
    if let Some(error) = error {
        out.push_str(&format!(": {error}"));
    }
    if let Some(description) = description {
        out.push_str(&format!(" - {description}"));
    }
    out
}

impl Error {
    /// The HTTP status behind the error, if a response arrived (for
    /// [`Error::RetriesExhausted`], the last attempt's status).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Auth { status, .. } => *status,
            Error::Forbidden { meta, .. }
            | Error::Api { meta, .. }
            | Error::RateLimited { meta, .. }
            | Error::BodyCutOff { meta, .. }
            | Error::Decode { meta, .. } => Some(meta.status),
            Error::RetriesExhausted { last, .. } | Error::RetryBudgetExhausted { last, .. } => {
                last.status()
            }
            Error::MaybeExecuted { source, .. } => source.status(),
            Error::Timeout { source } | Error::Transport { source } => source.status(),
            _ => None,
        }
    }

    /// The response metadata (correlation id, rate-limit headers), if a response arrived.
    pub fn meta(&self) -> Option<&ResponseMeta> {
        match self {
            Error::Auth { meta, .. } => meta.as_deref(),
            Error::Forbidden { meta, .. }
            | Error::Api { meta, .. }
            | Error::RateLimited { meta, .. }
            | Error::BodyCutOff { meta, .. }
            | Error::Decode { meta, .. } => Some(meta),
            Error::RetriesExhausted { last, .. } | Error::RetryBudgetExhausted { last, .. } => {
                last.meta()
            }
            Error::MaybeExecuted { source, .. } => source.meta(),
            _ => None,
        }
    }

    /// The `ININ-Correlation-Id` of the failed response, to quote to Genesys support. Falls back
    /// to the `correlationId` of a data-action error body.
    pub fn correlation_id(&self) -> Option<&str> {
        self.meta()
            .and_then(|m| m.correlation_id.as_deref())
            .or_else(|| self.body().and_then(|b| b.correlation_id.as_deref()))
    }

    /// The rate-limit headers of the failed response.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.meta().map(|m| &m.rate_limit)
    }

    /// The parsed Platform / data-action error body, for HTTP errors.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            Error::Forbidden { body, .. } | Error::Api { body, .. } => Some(body),
            Error::RetriesExhausted { last, .. } | Error::RetryBudgetExhausted { last, .. } => {
                last.body()
            }
            Error::MaybeExecuted { source, .. } => source.body(),
            _ => None,
        }
    }

    /// Whether the request timed out (also when retries of timeouts ran out).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::RetriesExhausted { last, .. } | Error::RetryBudgetExhausted { last, .. } => {
                last.is_timeout()
            }
            Error::MaybeExecuted { source, .. } => source.is_timeout(),
            _ => false,
        }
    }

    /// Whether the default classifier calls the error transient (worth retrying later). After
    /// retries ran out this is about the last attempt.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::RetriesExhausted { last, .. } | Error::RetryBudgetExhausted { last, .. } => {
                last.is_transient()
            }
            Error::MaybeExecuted { source, .. } => source.is_transient(),
            other => default_classifier(other) == Classification::Transient,
        }
    }

    /// Why the request may have run although it failed, for [`Error::MaybeExecuted`]: the
    /// caller must find out (or accept) whether the data action ran before running it again.
    pub fn doubt(&self) -> Option<Doubt> {
        match self {
            Error::MaybeExecuted { doubt, .. } => Some(*doubt),
            _ => None,
        }
    }

    /// Whether the error is about credentials: a refused token request or an API 401.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth { .. }) || self.status() == Some(StatusCode::UNAUTHORIZED)
    }

    /// Whether Genesys rate limited the call (HTTP 429, or a `Retry-After` over the cap).
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Error::RateLimited { .. })
            || self.status() == Some(StatusCode::TOO_MANY_REQUESTS)
    }

    /// How long Genesys asked to wait, if it sent `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => self.meta().and_then(|m| m.retry_after),
        }
    }

    /// How many requests were sent before giving up, for [`Error::RetriesExhausted`] and
    /// [`Error::MaybeExecuted`].
    pub fn attempts(&self) -> Option<u32> {
        match self {
            Error::RetriesExhausted { attempts, .. }
            | Error::RetryBudgetExhausted { attempts, .. }
            | Error::MaybeExecuted { attempts, .. } => Some(*attempts),
            _ => None,
        }
    }

    /// The data-action error code (`errorCode`, or the first `details[].errorCode`), such as
    /// `ACTION.REMOTE_ENDPOINT`.
    pub fn action_error_code(&self) -> Option<&str> {
        let body = self.body()?;
        body.error_code.as_deref().or_else(|| {
            body.details
                .iter()
                .flatten()
                .find_map(|d| d.error_code.as_deref())
        })
    }

    pub(crate) fn transport(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            Error::Timeout {
                source: Arc::new(err),
            }
        } else {
            Error::Transport {
                source: Arc::new(err),
            }
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }
}

/// Whether a failed attempt is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// The same request may well succeed later.
    Transient,
    /// Repeating the request will fail the same way.
    Fatal,
}

/// A function that classifies a failed attempt; [`default_classifier`] is the default.
pub type Classifier = fn(&Error) -> Classification;

/// Classifies an HTTP status: 429, 500, 502, 503 and 504 are transient, everything else fatal.
///
/// ```
/// use genesys_client::{default_classify_status, Classification};
/// use genesys_client::StatusCode;
///
/// assert_eq!(default_classify_status(StatusCode::TOO_MANY_REQUESTS), Classification::Transient);
/// assert_eq!(default_classify_status(StatusCode::NOT_IMPLEMENTED), Classification::Fatal);
/// assert_eq!(default_classify_status(StatusCode::BAD_REQUEST), Classification::Fatal);
/// ```
pub fn default_classify_status(status: StatusCode) -> Classification {
    match status.as_u16() {
        429 | 500 | 502 | 503 | 504 => Classification::Transient,
        _ => Classification::Fatal,
    }
}

/// Classifies a transport error: connect errors, timeouts and broken connections (the request
/// or the body failed mid-flight, e.g. a reset) are transient; anything else (a bad URL, a
/// redirect loop, a body that could not be built) is fatal.
pub fn default_classify_transport(err: &reqwest::Error) -> Classification {
    if err.is_connect() || err.is_timeout() || err.is_request() || err.is_body() {
        Classification::Transient
    } else {
        Classification::Fatal
    }
}

/// The default classifier, the one table of what is worth retrying:
///
/// * Transient: HTTP 429, 500, 502, 503, 504 ([`default_classify_status`]); connect errors,
///   timeouts and connection resets ([`default_classify_transport`]); a body cut off in
///   transit ([`Error::BodyCutOff`]).
/// * Fatal: every other status (other 4xx, 501); a body that arrived whole but is not the
///   JSON expected ([`Error::Decode`]); auth, configuration and input errors.
///
/// Whether a transient failure is then *resent* also depends on the request: an execution
/// that is not idempotent is resent only when Genesys cannot have run it (see
/// [`Error::MaybeExecuted`]).
pub fn default_classifier(err: &Error) -> Classification {
    match err {
        Error::Api { meta, .. } => default_classify_status(meta.status),
        Error::Timeout { .. } | Error::BodyCutOff { .. } => Classification::Transient,
        Error::Transport { source } => default_classify_transport(source),
        _ => Classification::Fatal,
    }
}

/// A Genesys error body: the Platform API's error and the data-action error in one struct.
///
/// Every field is optional; a body that is not JSON (or not this shape) keeps only
/// [`ErrorBody::snippet`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ErrorBody {
    /// Platform: a human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Platform: a machine-readable code such as `bad.request` or `too.many.requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Platform: the HTTP status repeated in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Platform: the id of the request's context (often equal to the correlation id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// Platform and data actions: details such as `{"errorCode":"ACTION.REMOTE_ENDPOINT"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<ErrorDetail>>,
    /// Platform: nested errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ErrorBody>>,
    /// Data actions: the error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Data actions: a message meant for end users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_message: Option<String>,
    /// Data actions: the correlation id repeated in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The start of a body that could not be parsed as an error body.
    #[serde(skip)]
    pub snippet: Option<String>,
}

impl ErrorBody {
    /// Parses a response body, keeping a snippet when it is not a JSON error body.
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(body) => body,
            Err(_) => ErrorBody {
                snippet: Some(snippet(bytes)),
                ..ErrorBody::default()
            },
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(code) = &self.code {
            parts.push(format!("code {code}"));
        }
        if let Some(code) = &self.error_code {
            parts.push(format!("errorCode {code}"));
        }
        if let Some(detail) = self
            .details
            .iter()
            .flatten()
            .find_map(|d| d.error_code.as_deref())
        {
            if self.error_code.as_deref() != Some(detail) {
                parts.push(format!("detail {detail}"));
            }
        }
        if let Some(message) = self.user_message.as_ref().or(self.message.as_ref()) {
            parts.push(message.clone());
        }
        if let Some(snippet) = &self.snippet {
            parts.push(format!("body starts {snippet:?}"));
        }
        if parts.is_empty() {
            f.write_str("no error details")
        } else {
            f.write_str(&parts.join(": "))
        }
    }
}

/// One entry of an error body's `details` array.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ErrorDetail {
    /// The detail's error code, such as `ACTION.REMOTE_ENDPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The field the detail is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_name: Option<String>,
    /// The entity id the detail is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// The entity name the detail is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
}

/// The first [`SNIPPET_CHARS`] characters of a body, lossily decoded.
pub(crate) fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(SNIPPET_CHARS).collect();
    if text.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_platform_and_action_bodies() {
        let body = ErrorBody::parse(
            br#"{"message":"REST call for action execute failed","code":"bad.request","status":400,
                "contextId":"c-1","details":[{"errorCode":"ACTION.REMOTE_ENDPOINT","fieldName":""}],
                "errors":[{"message":"inner"}],"errorCode":"ACTION.REMOTE_ENDPOINT",
                "userMessage":"The order was not found","correlationId":"corr-1","extra":true}"#,
        );
        assert_eq!(body.code.as_deref(), Some("bad.request"));
        assert_eq!(body.status, Some(400));
        assert_eq!(body.context_id.as_deref(), Some("c-1"));
        assert_eq!(
            body.details.as_ref().unwrap()[0].error_code.as_deref(),
            Some("ACTION.REMOTE_ENDPOINT")
        );
        assert_eq!(
            body.errors.as_ref().unwrap()[0].message.as_deref(),
            Some("inner")
        );
        assert_eq!(
            body.user_message.as_deref(),
            Some("The order was not found")
        );
        assert_eq!(body.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(body.snippet, None);
    }

    #[test]
    fn status_classification_matches_the_issue() {
        for code in [429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(
                default_classify_status(status),
                Classification::Transient,
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 409, 422, 501, 505] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(
                default_classify_status(status),
                Classification::Fatal,
                "{code}"
            );
        }
    }

    #[test]
    fn every_field_is_optional() {
        assert_eq!(ErrorBody::parse(b"{}"), ErrorBody::default());
    }

    #[test]
    fn non_json_keeps_a_short_snippet() {
        let html = format!("<html>{}</html>", "x".repeat(1000));
        let body = ErrorBody::parse(html.as_bytes());
        let snippet = body.snippet.unwrap();
        assert!(snippet.starts_with("<html>xxx"));
        assert_eq!(snippet.chars().count(), SNIPPET_CHARS + 1);
        // A JSON body of the wrong shape is treated like any other unparsable body.
        assert!(ErrorBody::parse(br#"{"status":"broken"}"#)
            .snippet
            .is_some());
    }

    #[test]
    fn error_is_clone_send_sync_static() {
        fn check<T: Clone + Send + Sync + 'static + std::error::Error>() {}
        check::<Error>();
    }
}
