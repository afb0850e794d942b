//! Configuring a [`Client`]: [`ClientBuilder`], its validation, and the environment.

use std::time::Duration;

use url::Url;

use crate::auth::DEFAULT_TOKEN_MARGIN;
use crate::budget::RetryBudget;
use crate::client::{Client, Settings};
use crate::error::{default_classifier, Classifier, Error, Result};
use crate::limit::Limits;
use crate::oauth::Credentials;
use crate::paging::DEFAULT_MAX_PAGES;
use crate::region::Region;
use crate::retry::RetryPolicy;
use crate::secret::ClientSecret;

/// The environment variable holding the OAuth client id.
pub const ENV_CLIENT_ID: &str = "GENESYS_CLIENT_ID";
/// The environment variable holding the OAuth client secret.
pub const ENV_CLIENT_SECRET: &str = "GENESYS_CLIENT_SECRET";
/// The environment variable holding the region name or domain.
pub const ENV_REGION: &str = "GENESYS_REGION";

/// The default timeout of one HTTP request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The default timeout of establishing a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest token lifetime Genesys allows (48 hours); a longer margin makes no sense.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(48 * 60 * 60);

/// Configures a [`Client`]; [`ClientBuilder::build`] validates everything.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    region: Option<Region>,
    api_base: Option<String>,
    login_base: Option<String>,
    allow_http: bool,
    credentials: Option<Credentials>,
    retry: RetryPolicy,
    classifier: Classifier,
    token_margin: Duration,
    request_timeout: Duration,
    connect_timeout: Duration,
    max_pages: u32,
    user_agent: Option<String>,
    limits: Limits,
    retry_budget: RetryBudget,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            region: None,
            api_base: None,
            login_base: None,
            allow_http: false,
            credentials: None,
            retry: RetryPolicy::default(),
            classifier: default_classifier,
            token_margin: DEFAULT_TOKEN_MARGIN,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_pages: DEFAULT_MAX_PAGES,
            user_agent: None,
            limits: Limits::default(),
            retry_budget: RetryBudget::default(),
        }
    }
}

impl ClientBuilder {
    /// Talk to `region`'s hosts (`https://api.{domain}` and `https://login.{domain}`).
    pub fn region(mut self, region: Region) -> Self {
        self.region = Some(region);
        self
    }

    /// Send API and login requests to these base URLs instead of a region's (a proxy, a test
    /// server). Overrides [`ClientBuilder::region`]. A path prefix is kept.
    pub fn base_urls(mut self, api: impl Into<String>, login: impl Into<String>) -> Self {
        self.api_base = Some(api.into());
        self.login_base = Some(login.into());
        self
    }

    /// One base URL for both API and login requests (as the fake server serves both).
    pub fn base_url(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.base_urls(url.clone(), url)
    }

    /// Allow plain `http://` base URLs (default `false`: only `https://`).
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// The OAuth client-credentials grant's client id and secret.
    pub fn credentials(mut self, client_id: impl Into<String>, secret: ClientSecret) -> Self {
        self.credentials = Some(Credentials::new(client_id, secret));
        self
    }

    /// When to retry (default [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Whether to retry (default [`default_classifier`]).
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// How long before its expiry a token is replaced (default 60 s, at most half the token's
    /// lifetime is used).
    pub fn token_margin(mut self, margin: Duration) -> Self {
        self.token_margin = margin;
        self
    }

    /// The timeout of one HTTP request, retries not included (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The timeout of establishing a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The most pages one listing may walk (default 1000).
    pub fn max_pages(mut self, max_pages: u32) -> Self {
        self.max_pages = max_pages;
        self
    }

    /// The client-side limiter (default [`Limits::default`]: Genesys's documented per-org
    /// limits; [`Limits::off`] to send everything at once).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The retry budget shared by every call of the client (default [`RetryBudget::default`];
    /// [`RetryBudget::off`] to let each call retry as its policy allows).
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.retry_budget = budget;
        self
    }

    /// The `User-Agent` header (default `action-cache-genesys/{version}`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// A builder with credentials and region from `GENESYS_CLIENT_ID`, `GENESYS_CLIENT_SECRET`
    /// and `GENESYS_REGION` (a region name such as `eu_west_1` or a domain such as
    /// `mypurecloud.ie`).
    ///
    /// # Errors
    ///
    /// [`Error::MissingEnv`] naming the first variable that is unset or empty, or
    /// [`Error::Config`] for an unknown region.
    pub fn from_env() -> Result<Self> {
        Self::from_env_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`ClientBuilder::from_env`], reading variables through `lookup` (for tests, or
    /// another source of settings).
    ///
    /// ```
    /// use genesys_client::{ClientBuilder, Error};
    ///
    /// let err = ClientBuilder::from_env_lookup(|name| match name {
    ///     "GENESYS_CLIENT_ID" => Some("id".into()),
    ///     _ => None,
    /// })
    /// .unwrap_err();
    /// assert!(matches!(err, Error::MissingEnv { name: "GENESYS_CLIENT_SECRET" }));
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`ClientBuilder::from_env`].
    pub fn from_env_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(Error::MissingEnv { name })
        };
        let client_id = get(ENV_CLIENT_ID)?;
        let secret = ClientSecret::new(get(ENV_CLIENT_SECRET)?.trim());
        let region: Region = get(ENV_REGION)?.parse()?;
        Ok(ClientBuilder::default()
            .region(region)
            .credentials(client_id.trim(), secret))
    }

    /// Validates the configuration and builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when there are no credentials or an empty id or secret, no region or
    /// base URL, a base URL that does not parse, is `http://` without
    /// [`ClientBuilder::allow_http`], or has a query; a zero timeout or page limit; a token
    /// margin over 48 hours; or an invalid retry policy.
    pub fn build(self) -> Result<Client> {
        let credentials = self.credentials.ok_or_else(|| {
            Error::config("no OAuth credentials: call ClientBuilder::credentials")
        })?;
        credentials.validate()?;
        let (api_base, login_base) =
            match (&self.api_base, &self.login_base, self.region) {
                (Some(api), Some(login), _) => (
                    parse_base(api, "API", self.allow_http)?,
                    parse_base(login, "login", self.allow_http)?,
                ),
                (_, _, Some(region)) => (region.api_base_url(), region.login_base_url()),
                _ => return Err(Error::config(
                    "no region or base URL: call ClientBuilder::region or ClientBuilder::base_url",
                )),
            };
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::config("timeouts must be greater than zero"));
        }
        if self.token_margin >= MAX_TOKEN_LIFETIME {
            return Err(Error::config(format!(
                "token margin {:?} is not below the longest token lifetime of 48 hours",
                self.token_margin
            )));
        }
        if self.max_pages == 0 {
            return Err(Error::config("the page limit must be at least 1"));
        }
        self.retry
            .validate()
            .map_err(|e| Error::config(e.to_string()))?;
        self.limits.validate()?;
        if let Some(problem) = self.retry_budget.problem() {
            return Err(Error::config(problem));
        }
        let user_agent = self
            .user_agent
            .unwrap_or_else(|| format!("{}/{}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")));
        let http = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(user_agent)
            .build()
            .map_err(|e| Error::config(format!("could not build the HTTP client: {e}")))?;
        Client::new(Settings {
            http,
            api_base,
            login_base,
            credentials,
            retry: self.retry,
            classifier: self.classifier,
            token_margin: self.token_margin,
            max_pages: self.max_pages,
            limits: self.limits,
            retry_budget: self.retry_budget,
        })
    }
}

fn parse_base(raw: &str, which: &str, allow_http: bool) -> Result<Url> {
    let mut url = Url::parse(raw.trim())
        .map_err(|e| Error::config(format!("the {which} base URL {raw:?} does not parse: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(Error::config(format!(
                "the {which} base URL {raw:?} is plain http; call ClientBuilder::allow_http(true) \
                 to allow it"
            )))
        }
        other => {
            return Err(Error::config(format!(
                "the {which} base URL {raw:?} has scheme {other:?}; expected https"
            )))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(format!(
            "the {which} base URL {raw:?} has no host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(format!(
            "the {which} base URL {raw:?} must not have a query or fragment"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(format!(
            "the {which} base URL must not carry credentials"
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

impl Client {
    /// A builder with the defaults; see [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured from `GENESYS_CLIENT_ID`, `GENESYS_CLIENT_SECRET` and
    /// `GENESYS_REGION`, with default settings otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::MissingEnv`] naming a missing variable, or [`Error::Config`].
    pub fn from_env() -> Result<Client> {
        ClientBuilder::from_env()?.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> ClientBuilder {
        Client::builder().credentials("id", ClientSecret::new("secret"))
    }

    #[test]
    fn region_sets_both_hosts() {
        let client = builder().region(Region::EuCentral1).build().unwrap();
        assert_eq!(
            client.api_base_url().as_str(),
            "https://api.mypurecloud.de/"
        );
        assert_eq!(
            client.login_base_url().as_str(),
            "https://login.mypurecloud.de/"
        );
    }

    #[test]
    fn bad_configuration_is_a_typed_error() {
        let cases = [
            Client::builder()
                .region(Region::UsEast1)
                .build()
                .unwrap_err(),
            builder().build().unwrap_err(),
            builder().base_url("not a url").build().unwrap_err(),
            builder().base_url("ftp://example.com").build().unwrap_err(),
            builder()
                .base_url("https://example.com/?q=1")
                .build()
                .unwrap_err(),
            builder()
                .region(Region::UsEast1)
                .request_timeout(Duration::ZERO)
                .build()
                .unwrap_err(),
            builder()
                .region(Region::UsEast1)
                .retry_policy(RetryPolicy::default().with_max_attempts(0))
                .build()
                .unwrap_err(),
            builder()
                .region(Region::UsEast1)
                .max_pages(0)
                .build()
                .unwrap_err(),
        ];
        for err in cases {
            assert!(matches!(err, Error::Config { .. }), "{err:?}");
        }
    }

    #[test]
    fn from_env_names_the_missing_variable() {
        let vars = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let err = ClientBuilder::from_env_lookup(vars(&[])).unwrap_err();
        assert!(matches!(
            err,
            Error::MissingEnv {
                name: "GENESYS_CLIENT_ID"
            }
        ));
        let err = ClientBuilder::from_env_lookup(vars(&[
            ("GENESYS_CLIENT_ID", "id"),
            ("GENESYS_CLIENT_SECRET", "s"),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            Error::MissingEnv {
                name: "GENESYS_REGION"
            }
        ));
        assert_eq!(
            err.to_string(),
            "environment variable GENESYS_REGION is not set"
        );
        let client = ClientBuilder::from_env_lookup(vars(&[
            ("GENESYS_CLIENT_ID", "id"),
            ("GENESYS_CLIENT_SECRET", "s"),
            ("GENESYS_REGION", "mypurecloud.com.au"),
        ]))
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            client.api_base_url().host_str(),
            Some("api.mypurecloud.com.au")
        );
        let err = ClientBuilder::from_env_lookup(vars(&[
            ("GENESYS_CLIENT_ID", "id"),
            ("GENESYS_CLIENT_SECRET", "s"),
            ("GENESYS_REGION", "atlantis"),
        ]))
        .unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
    }
}
