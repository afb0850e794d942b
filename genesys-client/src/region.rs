//! Genesys Cloud regions and the hosts that serve them.
//!
//! Every region has one domain; the Platform API lives at `https://api.{domain}` and the OAuth
//! login service at `https://login.{domain}`.

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::error::Error;

/// A Genesys Cloud region (an AWS region that hosts an org).
///
/// Parse one from its name (`us_east_1`, `us-east-1`) or from its domain (`mypurecloud.ie`,
/// `api.mypurecloud.ie`, `https://login.mypurecloud.ie`):
///
/// ```
/// use genesys_client::Region;
///
/// let region: Region = "eu-west-1".parse()?;
/// assert_eq!(region, Region::EuWest1);
/// assert_eq!(region.domain(), "mypurecloud.ie");
/// assert_eq!(region.api_base_url().as_str(), "https://api.mypurecloud.ie/");
/// assert_eq!("login.mypurecloud.de".parse::<Region>()?, Region::EuCentral1);
/// # Ok::<(), genesys_client::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Region {
    /// `us_east_1`, Americas (US East): `mypurecloud.com`.
    UsEast1,
    /// `us_east_2`, Americas (US East 2, FedRAMP): `use2.us-gov-pure.cloud`.
    UsEast2,
    /// `us_west_2`, Americas (US West): `usw2.pure.cloud`.
    UsWest2,
    /// `ca_central_1`, Americas (Canada): `cac1.pure.cloud`.
    CaCentral1,
    /// `sa_east_1`, Americas (São Paulo): `sae1.pure.cloud`.
    SaEast1,
    /// `mx_central_1`, Americas (Mexico): `mxc1.pure.cloud`.
    MxCentral1,
    /// `eu_west_1`, EMEA (Dublin): `mypurecloud.ie`.
    EuWest1,
    /// `eu_west_2`, EMEA (London): `euw2.pure.cloud`.
    EuWest2,
    /// `eu_central_1`, EMEA (Frankfurt): `mypurecloud.de`.
    EuCentral1,
    /// `eu_central_2`, EMEA (Zurich): `euc2.pure.cloud`.
    EuCentral2,
    /// `me_central_1`, EMEA (UAE): `mec1.pure.cloud`.
    MeCentral1,
    /// `ap_south_1`, Asia Pacific (Mumbai): `aps1.pure.cloud`.
    ApSouth1,
    /// `ap_southeast_1`, Asia Pacific (Jakarta): `apse1.pure.cloud`.
    ApSoutheast1,
    /// `ap_southeast_2`, Asia Pacific (Sydney): `mypurecloud.com.au`.
    ApSoutheast2,
    /// `ap_northeast_1`, Asia Pacific (Tokyo): `mypurecloud.jp`.
    ApNortheast1,
    /// `ap_northeast_2`, Asia Pacific (Seoul): `apne2.pure.cloud`.
    ApNortheast2,
    /// `ap_northeast_3`, Asia Pacific (Osaka): `apne3.pure.cloud`.
    ApNortheast3,
}

impl Region {
    /// Every region, in the order of the Genesys documentation.
    pub const ALL: [Region; 17] = [
        Region::UsEast1,
        Region::UsEast2,
        Region::UsWest2,
        Region::CaCentral1,
        Region::SaEast1,
        Region::MxCentral1,
        Region::EuWest1,
        Region::EuWest2,
        Region::EuCentral1,
        Region::EuCentral2,
        Region::MeCentral1,
        Region::ApSouth1,
        Region::ApSoutheast1,
        Region::ApSoutheast2,
        Region::ApNortheast1,
        Region::ApNortheast2,
        Region::ApNortheast3,
    ];

    /// The region's name with underscores, as the Genesys SDKs spell it (`us_east_1`).
    pub fn name(self) -> &'static str {
        match self {
            Region::UsEast1 => "us_east_1",
            Region::UsEast2 => "us_east_2",
            Region::UsWest2 => "us_west_2",
            Region::CaCentral1 => "ca_central_1",
            Region::SaEast1 => "sa_east_1",
            Region::MxCentral1 => "mx_central_1",
            Region::EuWest1 => "eu_west_1",
            Region::EuWest2 => "eu_west_2",
            Region::EuCentral1 => "eu_central_1",
            Region::EuCentral2 => "eu_central_2",
            Region::MeCentral1 => "me_central_1",
            Region::ApSouth1 => "ap_south_1",
            Region::ApSoutheast1 => "ap_southeast_1",
            Region::ApSoutheast2 => "ap_southeast_2",
            Region::ApNortheast1 => "ap_northeast_1",
            Region::ApNortheast2 => "ap_northeast_2",
            Region::ApNortheast3 => "ap_northeast_3",
        }
    }

    /// The region's domain, e.g. `mypurecloud.com`.
    pub fn domain(self) -> &'static str {
        match self {
            Region::UsEast1 => "mypurecloud.com",
            Region::UsEast2 => "use2.us-gov-pure.cloud",
            Region::UsWest2 => "usw2.pure.cloud",
            Region::CaCentral1 => "cac1.pure.cloud",
            Region::SaEast1 => "sae1.pure.cloud",
            Region::MxCentral1 => "mxc1.pure.cloud",
            Region::EuWest1 => "mypurecloud.ie",
            Region::EuWest2 => "euw2.pure.cloud",
            Region::EuCentral1 => "mypurecloud.de",
            Region::EuCentral2 => "euc2.pure.cloud",
            Region::MeCentral1 => "mec1.pure.cloud",
            Region::ApSouth1 => "aps1.pure.cloud",
            Region::ApSoutheast1 => "apse1.pure.cloud",
            Region::ApSoutheast2 => "mypurecloud.com.au",
            Region::ApNortheast1 => "mypurecloud.jp",
            Region::ApNortheast2 => "apne2.pure.cloud",
            Region::ApNortheast3 => "apne3.pure.cloud",
        }
    }

    /// The Platform API host, `api.{domain}`.
    pub fn api_host(self) -> String {
        format!("api.{}", self.domain())
    }

    /// The OAuth login host, `login.{domain}`.
    pub fn login_host(self) -> String {
        format!("login.{}", self.domain())
    }

    /// `https://api.{domain}/`.
    pub fn api_base_url(self) -> Url {
        https_url(&self.api_host())
    }

    /// `https://login.{domain}/`.
    pub fn login_base_url(self) -> Url {
        https_url(&self.login_host())
    }

    /// The region whose domain is `domain` (a bare domain, `api.`/`login.` host or an `https://`
    /// URL of one), if any.
    pub fn from_domain(domain: &str) -> Option<Region> {
        let mut host = domain.trim().to_ascii_lowercase();
        for scheme in ["https://", "http://"] {
            if let Some(rest) = host.strip_prefix(scheme) {
                host = rest.to_owned();
            }
        }
        let host = host
            .split('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches('.');
        let bare = host
            .strip_prefix("api.")
            .or_else(|| host.strip_prefix("login."))
            .unwrap_or(host);
        Region::ALL.into_iter().find(|r| r.domain() == bare)
    }

    /// The region named `name`, accepting `us_east_1`, `us-east-1` and any letter case.
    pub fn from_name(name: &str) -> Option<Region> {
        let normal = name.trim().to_ascii_lowercase().replace('-', "_");
        Region::ALL.into_iter().find(|r| r.name() == normal)
    }
}

fn https_url(host: &str) -> Url {
    // Every host above is a valid DNS name, so this cannot fail; a test checks all of them.
    Url::parse(&format!("https://{host}/")).unwrap_or_else(|_| unreachable!("valid host {host}"))
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Region {
    type Err = Error;

    /// Parses a region name or domain.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the input when it is neither.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Region::from_name(s)
            .or_else(|| Region::from_domain(s))
            .ok_or_else(|| Error::Config {
                message: format!(
                    "unknown Genesys Cloud region {s:?}: expected a region name such as \
                     us_east_1 or a domain such as mypurecloud.com"
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_round_trips_by_name_and_domain() {
        for region in Region::ALL {
            assert_eq!(Region::from_name(region.name()), Some(region));
            assert_eq!(region.name().parse::<Region>().unwrap(), region);
            assert_eq!(Region::from_domain(region.domain()), Some(region));
            assert_eq!(region.api_host().parse::<Region>().unwrap(), region);
            assert_eq!(
                region.login_base_url().as_str().parse::<Region>().unwrap(),
                region
            );
            assert_eq!(
                region.api_base_url().host_str(),
                Some(region.api_host().as_str())
            );
        }
    }

    #[test]
    fn documented_domains() {
        assert_eq!(Region::UsEast1.domain(), "mypurecloud.com");
        assert_eq!(Region::UsEast2.domain(), "use2.us-gov-pure.cloud");
        assert_eq!(Region::ApSoutheast2.domain(), "mypurecloud.com.au");
        assert_eq!(Region::ApNortheast1.api_host(), "api.mypurecloud.jp");
        assert_eq!(Region::EuCentral1.login_host(), "login.mypurecloud.de");
    }

    #[test]
    fn unknown_region_is_a_config_error() {
        let err = "mars_north_1".parse::<Region>().unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(err.to_string().contains("mars_north_1"));
        assert!("".parse::<Region>().is_err());
        assert!("pure.cloud".parse::<Region>().is_err());
    }
}
