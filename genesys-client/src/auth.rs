//! Genesys Cloud's login: OAuth client credentials against `login.{domain}`, on top of the
//! generic [`oauth`](crate::oauth) module.
//!
//! The client asks `POST https://login.{domain}/oauth/token` with
//! `Authorization: Basic base64(id:secret)` and the form body `grant_type=client_credentials`.
//! The token is cached and treated as expired a margin before Genesys says it expires;
//! concurrent callers share one refresh, and its outcome: when the refresh fails (after its
//! retries), every caller that waited for it gets that error, instead of each trying again in
//! turn.

use std::time::Duration;

use url::Url;

use crate::error::{Error, Result};
use crate::oauth::{Credentials, TokenEndpoint};

pub use crate::oauth::DEFAULT_TOKEN_MARGIN;

/// The token lifetime Genesys uses when a response gives none (24 hours).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The token endpoint of the login host `login_base`, for `credentials`.
pub(crate) fn genesys_endpoint(
    login_base: &Url,
    credentials: Credentials,
    margin: Duration,
) -> Result<TokenEndpoint> {
    let url = login_base
        .join("oauth/token")
        .map_err(|e| Error::config(format!("bad login URL: {e}")))?;
    Ok(TokenEndpoint::new(url, credentials)
        .with_margin(margin)
        .with_default_lifetime(DEFAULT_TOKEN_LIFETIME))
}
