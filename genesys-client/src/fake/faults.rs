//! Scripted answers ([`Fault`]) that replace the fake's normal handling of the next request.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

/// A scripted answer to the next API request (not token requests, unless pushed with
/// [`FakeGenesys::push_token_fault`](super::FakeGenesys::push_token_fault)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status, body and content type, and a `Retry-After` if given.
    Respond {
        /// The HTTP status.
        status: u16,
        /// The body, sent as is.
        body: String,
        /// The `Content-Type`.
        content_type: String,
        /// The `Retry-After` header value.
        retry_after: Option<String>,
    },
    /// Wait this long (on tokio's clock), then handle the request normally.
    Delay(Duration),
    /// Send the status and headers with a `Content-Length` of `declared` bytes, then only
    /// `sent`, then drop the connection: a body cut off in transit (a reset, a proxy dying).
    CutOff {
        /// The HTTP status.
        status: u16,
        /// The part of the body that is sent.
        sent: String,
        /// The `Content-Length` announced; longer than `sent`.
        declared: usize,
    },
}

impl Fault {
    /// 429 `too.many.requests` with `Retry-After` in whole seconds.
    pub fn too_many_requests(retry_after: Duration) -> Self {
        Self::too_many_requests_raw(Some(retry_after.as_secs().to_string()))
    }

    /// 429 `too.many.requests` with `Retry-After` as an HTTP date.
    pub fn too_many_requests_until(at: SystemTime) -> Self {
        Self::too_many_requests_raw(Some(httpdate::fmt_http_date(at)))
    }

    /// 429 `too.many.requests` with this `Retry-After` value, or none.
    pub fn too_many_requests_raw(retry_after: Option<String>) -> Self {
        Fault::Respond {
            status: 429,
            body: platform_error(429, "too.many.requests", "Rate limit exceeded the maximum. [300] requests for [client_credentials] per minute").to_string(),
            content_type: "application/json".to_owned(),
            retry_after,
        }
    }

    /// A 5xx (or any status) with a Platform error body.
    pub fn server_error(status: u16) -> Self {
        let code = match status {
            501 => "not.implemented",
            502 => "bad.gateway",
            503 => "service.unavailable",
            504 => "gateway.timeout",
            _ => "internal.server.error",
        };
        Self::json(
            status,
            platform_error(status, code, "The server encountered an error"),
        )
    }

    /// 503 with a `Retry-After` in whole seconds.
    pub fn unavailable(retry_after: Duration) -> Self {
        Fault::Respond {
            status: 503,
            body: platform_error(503, "service.unavailable", "Service unavailable").to_string(),
            content_type: "application/json".to_owned(),
            retry_after: Some(retry_after.as_secs().to_string()),
        }
    }

    /// 401 `bad.credentials`, as for an expired or revoked token.
    pub fn unauthorized() -> Self {
        Self::json(
            401,
            platform_error(401, "bad.credentials", "Invalid login credentials."),
        )
    }

    /// Any status with a JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Fault::Respond {
            status,
            body: body.to_string(),
            content_type: "application/json".to_owned(),
            retry_after: None,
        }
    }

    /// A `status` response whose JSON body stops after `sent` and whose connection then drops,
    /// although `Content-Length` announced 1 KiB more.
    pub fn cut_off(status: u16, sent: impl Into<String>) -> Self {
        let sent = sent.into();
        let declared = sent.len() + 1024;
        Fault::CutOff {
            status,
            sent,
            declared,
        }
    }

    /// Any status with a body that claims to be JSON but is not (or is truncated).
    pub fn malformed(status: u16, body: impl Into<String>) -> Self {
        Fault::Respond {
            status,
            body: body.into(),
            content_type: "application/json".to_owned(),
            retry_after: None,
        }
    }
}

/// A Platform API error body.
pub(super) fn platform_error(status: u16, code: &str, message: &str) -> Value {
    json!({"message": message, "code": code, "status": status, "messageParams": {}, "details": [], "errors": []})
}
