//! The CRM's HTTP API, as the proxy calls it: `GET {base}/accounts/{id}`.

use reqwest::{StatusCode, Url};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// Why an account could not be read from the CRM. `Clone`, because callers waiting on one
/// shared load each receive a copy of its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CrmError {
    /// The CRM answered 404: there is no such account (an answer, not an outage).
    NotFound,
    /// The CRM did not answer within the timeout.
    Timeout,
    /// The CRM is unreachable or answered with an error.
    Unavailable(String),
}

impl fmt::Display for CrmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrmError::NotFound => f.write_str("the CRM has no such account"),
            CrmError::Timeout => f.write_str("the CRM did not answer in time"),
            CrmError::Unavailable(why) => write!(f, "the CRM is unavailable: {why}"),
        }
    }
}

/// A CRM client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub(crate) struct Crm {
    http: reqwest::Client,
    base: Url,
}

impl Crm {
    /// A client for the CRM at `base_url`; every call gives up after `timeout`.
    pub(crate) fn new(base_url: &str, timeout: Duration) -> Result<Crm, String> {
        let base = Url::parse(base_url).map_err(|e| format!("CRM_BASE_URL `{base_url}`: {e}"))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(format!("CRM_BASE_URL `{base_url}` is not an http(s) URL"));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Crm { http, base })
    }

    /// The account `id` as the CRM returns it.
    pub(crate) async fn account(&self, id: &str) -> Result<Value, CrmError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in Crm::new")
            .pop_if_empty()
            .extend(["accounts", id]); // percent-encodes the id
        let response = self.http.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                CrmError::Timeout
            } else {
                CrmError::Unavailable(e.without_url().to_string())
            }
        })?;
        match response.status() {
            StatusCode::NOT_FOUND => Err(CrmError::NotFound),
            status if !status.is_success() => Err(CrmError::Unavailable(format!("HTTP {status}"))),
            _ => response.json().await.map_err(|e| {
                if e.is_timeout() {
                    CrmError::Timeout
                } else {
                    CrmError::Unavailable(format!("unreadable answer: {}", e.without_url()))
                }
            }),
        }
    }
}
