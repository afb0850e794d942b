//! The parts of a request that select an entry, checked before anything else happens.
//!
//! A path parameter is one percent-encoded segment. It is decoded once, must be valid UTF-8,
//! non-empty, at most `max_param_bytes` long, free of control characters (NUL, CR, LF, …) and
//! not `.` or `..` (raw or `%2e`). Key query values and key header values get the same checks
//! (they may be empty; a header must be visible ASCII). A parameter given twice is refused
//! rather than guessed at. Reads and purges both go through the same checks ([`Params::from_request`], [`Params::from_values`]), so a purge names
//! exactly the entry a read would have used.

use crate::config::RouteConfig;
use crate::template::Segment;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::percent_decode;
use std::fmt;

/// Why a request was refused with 400. The message never echoes the raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The checked values of one request to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Path parameters in template order, decoded.
    pub path: Vec<(String, String)>,
    /// Key query parameters in configuration order; `None` when absent.
    pub query: Vec<(String, Option<String>)>,
    /// Key headers in configuration order; `None` when absent.
    pub headers: Vec<(HeaderName, Option<String>)>,
}

/// Decodes and checks one value. `segment`: a path segment (non-empty, not `.`/`..`). `what`
/// names the value in an error; it is only formatted when there is one.
pub(crate) fn check_value(
    what: impl Fn() -> String,
    bytes: Vec<u8>,
    max: usize,
    segment: bool,
) -> Result<String, Invalid> {
    if bytes.len() > max {
        return Err(Invalid(format!("{} is longer than {max} bytes", what())));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| Invalid(format!("{} is not valid UTF-8", what())))?;
    if text.chars().any(char::is_control) {
        return Err(Invalid(format!(
            "{} contains a control character (NUL, CR, LF, …)",
            what()
        )));
    }
    if segment {
        if text.is_empty() {
            return Err(Invalid(format!("{} is empty", what())));
        }
        if text == "." || text == ".." {
            return Err(Invalid(format!("{} must not be `.` or `..`", what())));
        }
    }
    Ok(text)
}

/// Decodes a `application/x-www-form-urlencoded` component strictly (`+` is a space; invalid
/// UTF-8 is refused by [`check_value`], not replaced).
fn decode_query_part(raw: &str) -> Vec<u8> {
    let plus: Vec<u8> = raw
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&plus).collect()
}

impl Params {
    /// Checks raw (still percent-encoded) path parameters, the raw query string and the
    /// headers of a request to `route`.
    ///
    /// # Errors
    ///
    /// The first problem found, as a message for a 400.
    pub fn from_request(
        route: &RouteConfig,
        raw_path: &[(&str, &str)],
        raw_query: Option<&str>,
        headers: &HeaderMap,
        max: usize,
    ) -> Result<Params, Invalid> {
        let mut path = Vec::with_capacity(raw_path.len());
        for segment in route.path.segments() {
            let Segment::Param(name) = segment else {
                continue;
            };
            let raw = raw_path
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| Invalid(format!("path parameter `{name}` is missing")))?;
            let value = check_value(
                || format!("path parameter `{name}`"),
                percent_decode(raw.as_bytes()).collect(),
                max,
                true,
            )?;
            path.push((name.clone(), value));
        }
        let mut query: Vec<(String, Option<String>)> =
            route.key_query.iter().map(|n| (n.clone(), None)).collect();
        if !query.is_empty() {
            for pair in raw_query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
                let name = decode_query_part(raw_name);
                let Some(slot) = query.iter_mut().find(|(n, _)| n.as_bytes() == name) else {
                    continue;
                };
                let what = || format!("query parameter `{}`", slot.0);
                if slot.1.is_some() {
                    return Err(Invalid(format!("{} is given more than once", what())));
                }
                let value = check_value(what, decode_query_part(raw_value), max, false)?;
                slot.1 = Some(value);
            }
        }
        let mut key_headers = Vec::with_capacity(route.key_headers.len());
        for name in &route.key_headers {
            let mut values = headers.get_all(name).iter();
            let value = match (values.next(), values.next()) {
                (None, _) => None,
                (Some(_), Some(_)) => {
                    return Err(Invalid(format!("header `{name}` is given more than once")))
                }
                (Some(v), None) => Some(header_value(name, v, max)?),
            };
            key_headers.push((name.clone(), value));
        }
        Ok(Params {
            path,
            query,
            headers: key_headers,
        })
    }

    /// Checks already-decoded values (a purge body) exactly as [`Params::from_request`] checks
    /// decoded request values: no trimming, no case folding.
    ///
    /// # Errors
    ///
    /// A missing path parameter, an unknown name, or a value a read would refuse.
    pub fn from_values(
        route: &RouteConfig,
        path: &[(String, String)],
        query: &[(String, String)],
        headers: &[(String, String)],
        max: usize,
    ) -> Result<Params, Invalid> {
        for (name, _) in path {
            if !route.path.params().any(|p| p == name) {
                return Err(Invalid(format!(
                    "route `{}` has no path parameter `{name}`",
                    route.name
                )));
            }
        }
        let mut checked = Vec::new();
        for name in route.path.params() {
            let value = path
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| Invalid(format!("path parameter `{name}` is missing")))?;
            checked.push((
                name.to_owned(),
                check_value(
                    || format!("path parameter `{name}`"),
                    value.1.clone().into_bytes(),
                    max,
                    true,
                )?,
            ));
        }
        let mut q = Vec::new();
        for (name, _) in query {
            if !route.key_query.contains(name) {
                return Err(Invalid(format!(
                    "route `{}` has no key_query `{name}`",
                    route.name
                )));
            }
        }
        for name in &route.key_query {
            let value = match query.iter().find(|(n, _)| n == name) {
                Some((_, v)) => Some(check_value(
                    || format!("query parameter `{name}`"),
                    v.clone().into_bytes(),
                    max,
                    false,
                )?),
                None => None,
            };
            q.push((name.clone(), value));
        }
        let mut h = Vec::new();
        for (name, _) in headers {
            if !route
                .key_headers
                .iter()
                .any(|k| k.as_str().eq_ignore_ascii_case(name))
            {
                return Err(Invalid(format!(
                    "route `{}` has no key_headers `{name}`",
                    route.name
                )));
            }
        }
        for name in &route.key_headers {
            let value = match headers
                .iter()
                .find(|(n, _)| name.as_str().eq_ignore_ascii_case(n))
            {
                Some((_, v)) => {
                    let hv = HeaderValue::from_str(v).map_err(|_| {
                        Invalid(format!("header `{name}` is not a valid header value"))
                    })?;
                    Some(header_value(name, &hv, max)?)
                }
                None => None,
            };
            h.push((name.clone(), value));
        }
        Ok(Params {
            path: checked,
            query: q,
            headers: h,
        })
    }

    /// The value of a path or key query parameter.
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.path
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| {
                self.query
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, v)| v.as_deref())
            })
    }
}

fn header_value(name: &HeaderName, value: &HeaderValue, max: usize) -> Result<String, Invalid> {
    let what = || format!("header `{name}`");
    let text = value
        .to_str()
        .map_err(|_| Invalid(format!("{} must be visible ASCII", what())))?;
    check_value(what, text.as_bytes().to_vec(), max, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_refused() {
        let max = 16;
        let seg = |raw: &str| {
            check_value(
                || "p".to_owned(),
                percent_decode(raw.as_bytes()).collect(),
                max,
                true,
            )
        };
        assert_eq!(seg("42").unwrap(), "42");
        assert_eq!(seg("a%2Fb").unwrap(), "a/b");
        assert_eq!(seg(" 42 ").unwrap(), " 42 ", "no trimming");
        for bad in [
            "..",
            ".",
            "%2e%2e",
            "%2E",
            "",
            "a%00b",
            "a%0d%0ab",
            "%ff",
            "a%09",
            &"x".repeat(17),
        ] {
            assert!(seg(bad).is_err(), "{bad}");
        }
        assert_eq!(decode_query_part("a+b%2Bc"), b"a b+c");
    }
}
