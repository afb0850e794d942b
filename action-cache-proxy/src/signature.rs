//! Purge webhook signatures: `X-Signature-256`, HMAC-SHA256 under a shared secret.
//!
//! **Timestamped** (the default): `X-Signature-256: t=<unix seconds>,v1=<hex>`, where the HMAC
//! covers `"<t>.<raw body>"`, as Stripe-style webhook signers do. The header name is matched
//! case-insensitively (it is HTTP); its elements are separated by `,` with optional spaces or
//! tabs around each; the keys `t` and `v1` are lower case and each appears exactly once; the
//! hex digest may be upper or lower case. A timestamp further than the tolerance (default
//! 5 min) from now, in either direction, is refused. A valid signature is accepted once: its
//! digest is recorded in the store with `SET NX` for twice the tolerance, so a replay is refused
//! by every proxy instance sharing the Redis.
//!
//! **Body-only** (`signature = "body-only"`): `X-Signature-256: sha256=<hex HMAC of the body>`,
//! for CRMs that cannot sign a timestamp. It cannot tell a replay from a retry.
//!
//! Exactly one `X-Signature-256` header is accepted; two are refused, whatever they hold.
//! Digests are compared in constant time.

use crate::config::{Secret, SignatureScheme};
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-signature-256";

/// Why a webhook's signature was refused (401). Deliberately vague towards the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No header, two headers, or one that does not parse.
    Malformed,
    /// The digest does not match.
    Mismatch,
    /// The timestamp is outside the tolerance.
    Expired,
}

impl Refused {
    /// A short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::Mismatch => "forged",
            Refused::Expired => "stale",
        }
    }
}

/// A verified signature: what the replay guard records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The digest bytes (unique per timestamp and body).
    pub digest: Vec<u8>,
    /// Whether the scheme has a timestamp (and so a replay guard).
    pub timestamped: bool,
}

fn mac(secret: &Secret) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length")
}

/// The header value a sender puts on `body` at unix time `t` (for tests, scripts and CRMs).
pub fn sign_timestamped(secret: &Secret, t: u64, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()))
}

/// The body-only header value for `body`.
pub fn sign_body(secret: &Secret, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// Checks the one signature header on `body` at unix time `now_s`.
///
/// # Errors
///
/// [`Refused`] saying why.
pub fn verify(
    scheme: SignatureScheme,
    secret: &Secret,
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
    now_s: u64,
) -> Result<Verified, Refused> {
    let mut all = headers.get_all(SIGNATURE_HEADER).iter();
    let (Some(value), None) = (all.next(), all.next()) else {
        return Err(Refused::Malformed);
    };
    let value = value.to_str().map_err(|_| Refused::Malformed)?;
    match scheme {
        SignatureScheme::BodyOnly => {
            let hex_sig = value
                .trim_matches([' ', '\t'])
                .strip_prefix("sha256=")
                .ok_or(Refused::Malformed)?;
            let given = hex::decode(hex_sig).map_err(|_| Refused::Malformed)?;
            let mut m = mac(secret);
            m.update(body);
            check(&m.finalize().into_bytes(), &given)?;
            Ok(Verified {
                digest: given,
                timestamped: false,
            })
        }
        SignatureScheme::Timestamped => {
            let (mut t, mut v1) = (None, None);
            for element in value.split(',') {
                let (k, v) = element
                    .trim_matches([' ', '\t'])
                    .split_once('=')
                    .ok_or(Refused::Malformed)?;
                let slot = match k {
                    "t" => &mut t,
                    "v1" => &mut v1,
                    _ => return Err(Refused::Malformed),
                };
                if slot.replace(v).is_some() {
                    return Err(Refused::Malformed);
                }
            }
            let (Some(t), Some(v1)) = (t, v1) else {
                return Err(Refused::Malformed);
            };
            if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Refused::Malformed);
            }
            let t_num: u64 = t.parse().map_err(|_| Refused::Malformed)?;
            let given = hex::decode(v1).map_err(|_| Refused::Malformed)?;
            let mut m = mac(secret);
            m.update(t.as_bytes());
            m.update(b".");
            m.update(body);
            check(&m.finalize().into_bytes(), &given)?;
            if now_s.abs_diff(t_num) > tolerance.as_secs() {
                return Err(Refused::Expired);
            }
            Ok(Verified {
                digest: given,
                timestamped: true,
            })
        }
    }
}

fn check(expected: &[u8], given: &[u8]) -> Result<(), Refused> {
    if expected.len() == given.len() && bool::from(expected.ct_eq(given)) {
        Ok(())
    } else {
        Err(Refused::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SIGNATURE_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn timestamped_signatures_are_checked_strictly() {
        let secret = Secret::new("k");
        let tol = Duration::from_secs(300);
        let body = br#"{"tags":["a"]}"#;
        let good = sign_timestamped(&secret, 1000, body);
        let ok =
            |h: &HeaderMap, now| verify(SignatureScheme::Timestamped, &secret, tol, h, body, now);
        assert!(ok(&headers(&[&good]), 1000).is_ok());
        assert!(ok(&headers(&[&good]), 1300).is_ok());
        let spaced = good.replace(',', " ,\t ");
        assert!(ok(&headers(&[&format!(" {spaced} ")]), 1000).is_ok());
        assert!(
            ok(
                &headers(&[&good
                    .to_uppercase()
                    .replace("T=", "t=")
                    .replace("V1=", "v1=")]),
                1000
            )
            .is_ok(),
            "hex case-insensitive"
        );
        assert_eq!(ok(&headers(&[&good]), 1301), Err(Refused::Expired));
        assert_eq!(ok(&headers(&[&good]), 699), Err(Refused::Expired));
        assert_eq!(ok(&headers(&[&good, &good]), 1000), Err(Refused::Malformed));
        assert_eq!(ok(&headers(&[]), 1000), Err(Refused::Malformed));
        assert_eq!(
            ok(&headers(&[&good.replace("t=", "T=")]), 1000),
            Err(Refused::Malformed)
        );
        assert_eq!(
            ok(&headers(&[&format!("{good},v1=00")]), 1000),
            Err(Refused::Malformed)
        );
        let forged = sign_timestamped(&Secret::new("other"), 1000, body);
        assert_eq!(ok(&headers(&[&forged]), 1000), Err(Refused::Mismatch));
        let moved = good.replace("t=1000", "t=1001");
        assert_eq!(ok(&headers(&[&moved]), 1000), Err(Refused::Mismatch));
        assert_eq!(
            verify(
                SignatureScheme::Timestamped,
                &secret,
                tol,
                &headers(&[&sign_body(&secret, body)]),
                body,
                1000
            ),
            Err(Refused::Malformed),
            "the body-only form is refused unless configured"
        );
    }

    #[test]
    fn body_only_signatures() {
        let secret = Secret::new("k");
        let body = b"{}";
        let h = headers(&[&sign_body(&secret, body)]);
        assert!(verify(
            SignatureScheme::BodyOnly,
            &secret,
            Duration::from_secs(1),
            &h,
            body,
            0
        )
        .is_ok());
        assert_eq!(
            verify(
                SignatureScheme::BodyOnly,
                &secret,
                Duration::from_secs(1),
                &h,
                b"{ }",
                0
            ),
            Err(Refused::Mismatch)
        );
    }
}
