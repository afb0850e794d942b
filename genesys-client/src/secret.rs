//! Secrets: the OAuth client secret and the access tokens issued for it.
//!
//! Both types print as `***` through `Debug` and `Display`, so they never reach a log line, an
//! error message or a cache key by accident. Reading the value takes an explicit
//! [`ClientSecret::expose`] / [`AccessToken::expose`] call.

use std::fmt;

const REDACTED: &str = "***";

/// The OAuth client secret of a Genesys Cloud client-credentials grant.
///
/// ```
/// use genesys_client::ClientSecret;
///
/// let secret = ClientSecret::new("s3cr3t");
/// assert_eq!(format!("{secret:?}"), "ClientSecret(***)");
/// assert_eq!(secret.to_string(), "***");
/// assert_eq!(secret.expose(), "s3cr3t");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a client secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself. Call this only to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientSecret({REDACTED})")
    }
}

impl fmt::Display for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for ClientSecret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for ClientSecret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// An OAuth bearer token issued by the Genesys Cloud login host.
///
/// ```
/// use genesys_client::AccessToken;
///
/// let token = AccessToken::new("eyJ...");
/// assert_eq!(format!("{token:?}"), "AccessToken(***)");
/// assert_eq!(token.to_string(), "***");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a bearer token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself. Call this only to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken({REDACTED})")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}
