//! What the cache holds for a route: the upstream's status, content type and body bytes, as
//! received, and when they were fetched. Served back byte for byte, never re-serialised.

use axum::body::Body;
use axum::body::Bytes;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The name this cache gives itself in `Cache-Status` (RFC 9211).
pub const CACHE_NAME: &str = "action-cache-proxy";

/// A body as stored: `{"base64": "…"}`. Entries written before also hold `{"text": "…"}`
/// (UTF-8 as a JSON string), which is still read.
///
/// Base64, because the near cache decodes an entry on every hit: a JSON body as a JSON string
/// is full of escaped quotes, whose unescaping cost 769 ns for a 68-byte body and 11.4 µs for
/// a 4 KiB one, where a base64 string is read without escapes and decoded straight from the
/// entry's bytes into the body (`benches/stored_decode.rs` prints the figures).
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredBody(Bytes);

impl Serialize for StoredBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(
            "base64",
            &base64::engine::general_purpose::STANDARD.encode(&self.0),
        )?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for StoredBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> serde::de::Visitor<'de> for BodyVisitor {
    type Value = StoredBody;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"{"base64": "…"} or {"text": "…"}"#)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StoredBody, A::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Field {
            Base64,
            Text,
        }
        let Some(key) = map.next_key::<Field>()? else {
            return Err(serde::de::Error::custom("an empty body object"));
        };
        let body = match key {
            Field::Base64 => map.next_value::<Base64Bytes>()?.0,
            Field::Text => Bytes::from(map.next_value::<String>()?),
        };
        if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            return Err(serde::de::Error::custom("a body object with two fields"));
        }
        Ok(StoredBody(body))
    }
}

/// Bytes read from a base64 string, decoded from the entry's bytes without an intermediate
/// `String` when the string has no escapes (base64 never needs any).
struct Base64Bytes(Bytes);

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Base64Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Base64Bytes, E> {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(|b| Base64Bytes(Bytes::from(b)))
                    .map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// One upstream answer as cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    body: StoredBody,
    /// When the upstream answered, in the cache clock's milliseconds.
    at: u64,
    /// The fresh window this copy was written with (jitter drawn), in milliseconds.
    fresh: u64,
}

/// How a response was produced, for `X-Cache`, `Cache-Status`, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A fresh copy from the cache.
    Hit,
    /// A stale copy, served while one background refresh asks the upstream.
    Stale,
    /// This request asked the upstream.
    Miss,
    /// This request waited for another request's upstream call (RFC 9211 `collapsed`); its
    /// `X-Cache` says `MISS`.
    Collapsed,
    /// The upstream failed; the last good copy was served.
    StaleIfError,
    /// The upstream failed and there was nothing to serve.
    Error,
}

impl Outcome {
    /// The `X-Cache` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Stale => "STALE",
            Outcome::Miss | Outcome::Collapsed => "MISS",
            Outcome::StaleIfError => "STALE-IF-ERROR",
            Outcome::Error => "ERROR",
        }
    }
}

impl Stored {
    /// An answer fetched at `at_ms`, fresh for `fresh_ms`.
    pub(crate) fn new(
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
        at_ms: u64,
        fresh_ms: u64,
    ) -> Stored {
        let body = StoredBody(Bytes::from(body));
        Stored {
            status,
            content_type,
            body,
            at: at_ms,
            fresh: fresh_ms,
        }
    }

    /// The upstream's status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The response: the stored status and bytes, `Content-Type`, `Age`, `X-Cache` and
    /// `Cache-Status`; `fwd_status` is the upstream status that made this request fall back
    /// (stale-if-error).
    pub(crate) fn respond(self, outcome: Outcome, now_ms: u64, detail: Option<&str>) -> Response {
        let age_ms = now_ms.saturating_sub(self.at);
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let body = Body::from(self.body.0);
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.reserve(6);
        // The stored string becomes the header's bytes: no copy.
        if let Some(ct) = self
            .content_type
            .and_then(|c| HeaderValue::from_maybe_shared(Bytes::from(c)).ok())
        {
            headers.insert(header::CONTENT_TYPE, ct);
        }
        headers.insert(header::AGE, HeaderValue::from(age_ms / 1000));
        let ttl_s = (self.fresh as i64 - age_ms as i64).div_euclid(1000);
        let cache_status = match outcome {
            Outcome::Hit | Outcome::Stale => format!("{CACHE_NAME}; hit; ttl={ttl_s}"),
            Outcome::Miss => format!(
                "{CACHE_NAME}; fwd=uri-miss; fwd-status={}{}",
                self.status,
                if self.fresh > 0 { "; stored" } else { "" }
            ),
            Outcome::Collapsed => format!(
                "{CACHE_NAME}; fwd=uri-miss; collapsed; fwd-status={}",
                self.status
            ),
            Outcome::StaleIfError => format!(
                "{CACHE_NAME}; hit; ttl={ttl_s}; detail={}",
                detail.unwrap_or("stale-if-error")
            ),
            Outcome::Error => format!("{CACHE_NAME}; fwd=uri-miss"),
        };
        set_status_headers(headers, outcome, cache_status);
        if outcome == Outcome::StaleIfError {
            headers.insert(
                header::WARNING,
                HeaderValue::from_static("110 - \"Response is Stale\""),
            );
        }
        response
    }
}

fn set_status_headers(headers: &mut axum::http::HeaderMap, outcome: Outcome, cache_status: String) {
    headers.insert(&X_CACHE, HeaderValue::from_static(outcome.as_str()));
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(cache_status)) {
        headers.insert(&CACHE_STATUS, v);
    }
}

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// A JSON error `{"error": "…"}`; with an outcome, also `X-Cache` and `Cache-Status`
/// (`detail` names why the upstream failed).
pub(crate) fn error(
    status: StatusCode,
    message: &str,
    outcome: Outcome,
    detail: Option<&str>,
) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    let cache_status = match detail {
        Some(d) => format!("{CACHE_NAME}; fwd=uri-miss; detail={d}"),
        None => format!("{CACHE_NAME}; fwd=uri-miss"),
    };
    set_status_headers(response.headers_mut(), outcome, cache_status);
    response
}

/// A JSON error without cache headers (bad requests, webhooks).
pub(crate) fn plain_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_survive_storage_byte_for_byte() {
        for body in [
            br#"{"b":1E2,"a":12345678901234567890123}"#.to_vec(),
            vec![0xff, 0x00, 0xfe],
        ] {
            let s = Stored::new(200, None, body.clone(), 0, 1);
            let json = serde_json::to_string(&s).unwrap();
            let back: Stored = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s);
            let back_body = back.body.0.to_vec();
            assert_eq!(back_body, body);
            assert!(json.contains(r#""body":{"base64":"#), "{json}");
        }
        // Entries written before hold UTF-8 bodies as text; they are still read.
        let old = r#"{"status":200,"body":{"text":"{\"a\":1E2}"},"at":0,"fresh":1}"#;
        let back: Stored = serde_json::from_str(old).unwrap();
        assert_eq!(&back.body.0[..], br#"{"a":1E2}"#);
        for bad in [
            r#"{"status":200,"body":{},"at":0,"fresh":1}"#,
            r#"{"status":200,"body":{"base64":"!!"},"at":0,"fresh":1}"#,
            r#"{"status":200,"body":{"hex":"00"},"at":0,"fresh":1}"#,
            r#"{"status":200,"body":{"base64":"","text":""},"at":0,"fresh":1}"#,
        ] {
            assert!(serde_json::from_str::<Stored>(bad).is_err(), "{bad}");
        }
    }
}
