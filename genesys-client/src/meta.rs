//! What every Genesys response carries besides its body: the status, the correlation id, the
//! `inin-ratelimit-*` headers and `Retry-After`; and a decoded body with that metadata.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// The header Genesys Cloud puts a request's correlation id in.
pub const CORRELATION_ID_HEADER: &str = "ININ-Correlation-Id";
/// How many requests the caller has made in the current rate-limit window.
pub const RATE_LIMIT_COUNT_HEADER: &str = "inin-ratelimit-count";
/// How many requests the current rate-limit window allows.
pub const RATE_LIMIT_ALLOWED_HEADER: &str = "inin-ratelimit-allowed";
/// Seconds until the current rate-limit window resets.
pub const RATE_LIMIT_RESET_HEADER: &str = "inin-ratelimit-reset";

/// What every Genesys response carries besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseMeta {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `ININ-Correlation-Id` header.
    pub correlation_id: Option<String>,
    /// The `inin-ratelimit-*` headers.
    pub rate_limit: RateLimit,
    /// The `Retry-After` header as a wait from when the response arrived (integer seconds or an
    /// HTTP date).
    pub retry_after: Option<Duration>,
}

impl ResponseMeta {
    /// Reads the metadata out of a status and its headers.
    pub(crate) fn from_headers(status: StatusCode, headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
        ResponseMeta {
            status,
            correlation_id: text(CORRELATION_ID_HEADER).map(str::to_owned),
            rate_limit: RateLimit {
                count: number(RATE_LIMIT_COUNT_HEADER),
                allowed: number(RATE_LIMIT_ALLOWED_HEADER),
                reset: number(RATE_LIMIT_RESET_HEADER),
            },
            retry_after: text("retry-after").and_then(|v| parse_retry_after(v, SystemTime::now())),
        }
    }
}

impl fmt::Display for ResponseMeta {
    /// Prints ` [correlation id …]` when there is one, and nothing otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.correlation_id {
            Some(id) => write!(f, " [correlation id {id}]"),
            None => Ok(()),
        }
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date (a date in the past means 0).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `inin-ratelimit-*` headers of a response; each is absent when Genesys did not send it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// `inin-ratelimit-count`: requests made in the current window.
    pub count: Option<u64>,
    /// `inin-ratelimit-allowed`: requests the window allows.
    pub allowed: Option<u64>,
    /// `inin-ratelimit-reset`: seconds until the window resets.
    pub reset: Option<u64>,
}

/// A decoded response body with its metadata (status, correlation id, rate-limit headers).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse<T> {
    body: T,
    meta: ResponseMeta,
}

impl<T> ApiResponse<T> {
    pub(crate) fn new(body: T, meta: ResponseMeta) -> Self {
        Self { body, meta }
    }

    /// The decoded body.
    pub fn body(&self) -> &T {
        &self.body
    }

    /// The decoded body, dropping the metadata.
    pub fn into_body(self) -> T {
        self.body
    }

    /// The body and the metadata.
    pub fn into_parts(self) -> (T, ResponseMeta) {
        (self.body, self.meta)
    }

    /// Status, correlation id and rate-limit headers.
    pub fn meta(&self) -> &ResponseMeta {
        &self.meta
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.meta.status
    }

    /// The `ININ-Correlation-Id` header.
    pub fn correlation_id(&self) -> Option<&str> {
        self.meta.correlation_id.as_deref()
    }

    /// The `inin-ratelimit-*` headers.
    pub fn rate_limit(&self) -> &RateLimit {
        &self.meta.rate_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meta_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(CORRELATION_ID_HEADER, "abc-123".parse().unwrap());
        headers.insert(RATE_LIMIT_COUNT_HEADER, "12".parse().unwrap());
        headers.insert(RATE_LIMIT_ALLOWED_HEADER, "300".parse().unwrap());
        headers.insert(RATE_LIMIT_RESET_HEADER, "41".parse().unwrap());
        headers.insert("retry-after", "3".parse().unwrap());
        let meta = ResponseMeta::from_headers(StatusCode::TOO_MANY_REQUESTS, &headers);
        assert_eq!(meta.correlation_id.as_deref(), Some("abc-123"));
        assert_eq!(meta.rate_limit.count, Some(12));
        assert_eq!(meta.rate_limit.allowed, Some(300));
        assert_eq!(meta.rate_limit.reset, Some(41));
        assert_eq!(meta.retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(
            parse_retry_after("7", SystemTime::now()),
            Some(Duration::from_secs(7))
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
