//! Path templates (`/orders/{order_id}/lines`) and tag templates (`order:{order_id}`).
//!
//! A path parameter is always one whole segment. When an upstream URL is built, each value is
//! percent-encoded as a single segment, so a `/` inside a value can never add a segment.

use std::fmt;
use url::Url;

/// One segment of a [`PathTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matched and sent as written.
    Literal(String),
    /// A parameter, named between braces.
    Param(String),
}

/// A path template such as `/orders/{order_id}/lines`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    segments: Vec<Segment>,
}

/// Whether `name` can name a parameter: ASCII letters, digits and `_`, not starting with a
/// digit.
pub(crate) fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl PathTemplate {
    /// Parses a template; `/` alone is the root.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: it must start with `/`; segments are non-empty, made of
    /// unreserved characters (`A-Z a-z 0-9 - . _ ~`) and not `.` or `..`, or are a whole
    /// `{name}`; names are unique.
    pub fn parse(text: &str) -> Result<PathTemplate, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("`{text}` must start with `/`"));
        };
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for part in rest.split('/') {
                if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    if !is_param_name(name) {
                        return Err(format!(
                            "`{text}`: `{{{name}}}` is not a parameter name (letters, digits, `_`)"
                        ));
                    }
                    if segments.contains(&Segment::Param(name.to_owned())) {
                        return Err(format!("`{text}`: parameter `{name}` appears twice"));
                    }
                    segments.push(Segment::Param(name.to_owned()));
                } else if part.is_empty() {
                    return Err(format!("`{text}` has an empty segment"));
                } else if part == "." || part == ".." {
                    return Err(format!("`{text}` has a `{part}` segment"));
                } else if !part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
                {
                    return Err(format!(
                        "`{text}`: segment `{part}` must be a whole `{{name}}` or only A-Z a-z 0-9 - . _ ~"
                    ));
                } else {
                    segments.push(Segment::Literal(part.to_owned()));
                }
            }
        }
        Ok(PathTemplate {
            text: text.to_owned(),
            segments,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The parameter names, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Appends this template's segments to `url`'s path, each parameter taken from `value` and
    /// percent-encoded as one segment.
    ///
    /// # Panics
    ///
    /// When `url` cannot be a base (upstream base URLs are checked when the configuration is
    /// loaded), or when `value` has no value for a parameter (checked there too).
    pub(crate) fn append_to<'a>(&self, url: &mut Url, value: impl Fn(&str) -> &'a str) {
        let mut path = url
            .path_segments_mut()
            .expect("upstream base URLs are checked to be http(s) bases");
        path.pop_if_empty();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => path.push(text),
                Segment::Param(name) => path.push(value(name)),
            };
        }
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A tag template such as `account:{id}`: literal text and `{name}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTemplate {
    text: String,
    parts: Vec<Segment>,
}

impl TagTemplate {
    /// Parses a tag template.
    ///
    /// # Errors
    ///
    /// An unclosed `{`, a stray `}`, or a placeholder that is not a parameter name.
    pub fn parse(text: &str) -> Result<TagTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Segment::Literal(rest.to_owned()));
                    break;
                }
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!("tag `{text}` has a `}}` without `{{`"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Segment::Literal(rest[..i].to_owned()));
                    }
                    let Some(end) = rest[i..].find('}') else {
                        return Err(format!("tag `{text}` has an unclosed `{{`"));
                    };
                    let name = &rest[i + 1..i + end];
                    if !is_param_name(name) {
                        return Err(format!(
                            "tag `{text}`: `{{{name}}}` is not a parameter name"
                        ));
                    }
                    parts.push(Segment::Param(name.to_owned()));
                    rest = &rest[i + end + 1..];
                }
            }
        }
        if parts.is_empty() {
            return Err("a tag must not be empty".to_owned());
        }
        Ok(TagTemplate {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The placeholder names.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The tag with each placeholder replaced by `value(name)` (an absent value is empty).
    pub(crate) fn render<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Segment::Literal(text) => out.push_str(text),
                Segment::Param(name) => out.push_str(value(name).unwrap_or("")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates_parse_whole_segment_params_only() {
        let t = PathTemplate::parse("/orders/{order_id}/lines").unwrap();
        assert_eq!(t.params().collect::<Vec<_>>(), ["order_id"]);
        assert!(PathTemplate::parse("/").unwrap().segments().is_empty());
        for bad in [
            "orders",
            "/orders/{id",
            "/a/x{id}",
            "/a//b",
            "/a/{id}/{id}",
            "/a/..",
            "/a/{1x}",
            "/a/b%2f",
            "/a/",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_encoded_as_one_segment() {
        let t = PathTemplate::parse("/v1/accounts/{id}").unwrap();
        let mut url = Url::parse("http://127.0.0.1:1/api/").unwrap();
        t.append_to(&mut url, |_| "a/b?c#d e");
        assert_eq!(url.path(), "/api/v1/accounts/a%2Fb%3Fc%23d%20e");
        assert_eq!(url.query(), None);
    }

    #[test]
    fn tags_render_placeholders() {
        let t = TagTemplate::parse("account:{id}:{tenant}").unwrap();
        let tag = t.render(|n| (n == "id").then_some("42"));
        assert_eq!(tag, "account:42:");
        assert!(TagTemplate::parse("a:{id").is_err());
        assert!(TagTemplate::parse("a}").is_err());
        assert!(TagTemplate::parse("").is_err());
    }
}
