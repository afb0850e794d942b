//! The CRM's purge webhook: `X-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` and a
//! body naming an account or tags.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// The header carrying the body's signature.
pub(crate) const SIGNATURE_HEADER: &str = "x-signature-256";

/// The largest webhook body accepted; larger ones get 413.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The shared secret the CRM signs webhooks with. Never printed.
#[derive(Clone)]
pub(crate) struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Wraps the secret; `None` when it is empty.
    pub(crate) fn new(secret: &str) -> Option<WebhookSecret> {
        (!secret.is_empty()).then(|| WebhookSecret(secret.as_bytes().to_vec()))
    }

    /// The `X-Signature-256` value for `body` (what the CRM sends; also for tests and curl).
    pub(crate) fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Whether `headers` carry a valid signature of `body`, compared in constant time.
    pub(crate) fn verify(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let Some(signature) = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix("sha256="))
            .and_then(|hex_sig| hex::decode(hex_sig).ok())
        else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(&signature).is_ok()
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// What to purge: exactly one of the two fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    account_id: Option<String>,
    tags: Option<Vec<String>>,
}

/// A validated purge request, as the tags to invalidate.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Purge {
    /// The tags whose entries are removed (`account:{id}` for an account).
    pub(crate) tags: Vec<String>,
}

impl Purge {
    /// Parses `{"account_id": "…"}` or `{"tags": ["…", …]}`.
    pub(crate) fn parse(body: &[u8]) -> Result<Purge, String> {
        let body: PurgeBody =
            serde_json::from_slice(body).map_err(|e| format!("malformed purge body: {e}"))?;
        let tags = match body {
            PurgeBody {
                account_id: Some(id),
                tags: None,
            } if !id.trim().is_empty() => vec![super::app::account_tag(id.trim())],
            PurgeBody {
                account_id: None,
                tags: Some(tags),
            } if !tags.is_empty() && tags.iter().all(|t| !t.trim().is_empty()) => tags,
            _ => {
                return Err(
                    "a purge body is {\"account_id\": \"…\"} or {\"tags\": [\"…\"]} with non-empty values"
                        .to_owned(),
                )
            }
        };
        Ok(Purge { tags })
    }
}
