//! Parsing of the `#[cached_action(...)]` attribute arguments.

use std::time::Duration;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{bracketed, parenthesized, Expr, Ident, LitBool, LitFloat, LitInt, LitStr, Path, Token};

/// Every option the attribute accepts, in the order the error message lists them.
pub(crate) const VALID_OPTIONS: &str = "`fresh`, `stale`, `jitter`, `name`, `version`, `skip`, \
     `tags`, `cache`, `refresh`, `coalesce`, `cache_none`, `returns`, `codec`, `include_self`, \
     `companions`, `crate`";

/// A duration option together with the span of its literal.
#[derive(Clone, Debug)]
pub(crate) struct DurationArg {
    pub(crate) value: Duration,
    pub(crate) span: Span,
}

/// How a stale entry is refreshed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    Background,
    Inline,
}

/// An explicit `returns = "..."`: how the return type maps onto stored values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Returns {
    /// A `Result`: `Ok` values are stored.
    Result,
    /// An `Option`: `Some` values are stored (and `None` with `cache_none`).
    Option,
    /// The whole value is stored.
    Value,
}

/// One `tags = [...]` entry: a literal split into text and argument placeholders.
#[derive(Clone, Debug)]
pub(crate) struct TagTemplate {
    /// The literal as written (for spans).
    pub(crate) lit: LitStr,
    /// `format!`-style string with every placeholder replaced by `{}`.
    pub(crate) format: String,
    /// The argument named by each placeholder, in order.
    pub(crate) args: Vec<Ident>,
}

/// A value codec named by `codec = "…"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    /// `"json"`.
    Json,
    /// `"messagepack"` (or `"msgpack"`).
    MessagePack,
}

/// The parsed attribute.
#[derive(Debug, Default)]
pub(crate) struct CachedArgs {
    pub(crate) fresh: Option<DurationArg>,
    pub(crate) stale: Option<DurationArg>,
    pub(crate) jitter: Option<(f64, Span)>,
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<u32>,
    pub(crate) skip: Vec<Ident>,
    pub(crate) tags: Vec<TagTemplate>,
    pub(crate) cache: Option<Expr>,
    pub(crate) refresh: Option<Refresh>,
    pub(crate) coalesce: Option<bool>,
    pub(crate) cache_none: Option<bool>,
    /// `cache_none`'s name, for errors.
    pub(crate) cache_none_span: Option<Span>,
    pub(crate) returns: Option<(Returns, LitStr)>,
    /// `codec = "json" | "messagepack"`: how this function's values are stored.
    pub(crate) codec: Option<Codec>,
    pub(crate) include_self: Option<bool>,
    pub(crate) companions: Option<bool>,
    pub(crate) krate: Option<Path>,
}

impl CachedArgs {
    /// The crate path generated code refers to.
    pub(crate) fn krate(&self) -> Path {
        self.krate
            .clone()
            .unwrap_or_else(|| syn::parse_quote!(::action_cache))
    }

    pub(crate) fn refresh(&self) -> Refresh {
        self.refresh.unwrap_or(Refresh::Background)
    }

    pub(crate) fn coalesce(&self) -> bool {
        self.coalesce.unwrap_or(true)
    }

    pub(crate) fn cache_none(&self) -> bool {
        self.cache_none.unwrap_or(false)
    }

    pub(crate) fn include_self(&self) -> bool {
        self.include_self.unwrap_or(false)
    }

    pub(crate) fn companions(&self) -> bool {
        self.companions.unwrap_or(true)
    }
}

fn duplicate(ident: &Ident) -> syn::Error {
    syn::Error::new_spanned(ident, format!("duplicate `{ident}` option"))
}

/// Sets `slot` once; a second occurrence is an error on the option's name.
fn set_once<T>(slot: &mut Option<T>, value: T, ident: &Ident) -> syn::Result<()> {
    if slot.is_some() {
        return Err(duplicate(ident));
    }
    *slot = Some(value);
    Ok(())
}

impl Parse for CachedArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = CachedArgs::default();
        let mut seen_skip = false;
        let mut seen_tags = false;
        while !input.is_empty() {
            // `crate` is a keyword, so read any identifier-like token.
            let ident = input.call(Ident::parse_any)?;
            let key = ident.to_string();
            match key.as_str() {
                "fresh" => {
                    input.parse::<Token![=]>()?;
                    let d = parse_duration(input)?;
                    set_once(&mut args.fresh, d, &ident)?;
                }
                "stale" => {
                    input.parse::<Token![=]>()?;
                    let d = parse_duration(input)?;
                    set_once(&mut args.stale, d, &ident)?;
                }
                "jitter" => {
                    input.parse::<Token![=]>()?;
                    let j = parse_jitter(input)?;
                    set_once(&mut args.jitter, j, &ident)?;
                }
                "name" => {
                    input.parse::<Token![=]>()?;
                    let lit: LitStr = input.parse()?;
                    if lit.value().trim().is_empty() {
                        return Err(syn::Error::new_spanned(&lit, "`name` must not be empty"));
                    }
                    set_once(&mut args.name, lit, &ident)?;
                }
                "version" => {
                    input.parse::<Token![=]>()?;
                    let lit: LitInt = input.parse()?;
                    let v = lit.base10_parse::<u32>().map_err(|_| {
                        syn::Error::new_spanned(
                            &lit,
                            "`version` must be an integer that fits in u32",
                        )
                    })?;
                    set_once(&mut args.version, v, &ident)?;
                }
                "skip" => {
                    if seen_skip {
                        return Err(duplicate(&ident));
                    }
                    seen_skip = true;
                    let content;
                    parenthesized!(content in input);
                    let names = Punctuated::<Ident, Token![,]>::parse_terminated_with(
                        &content,
                        Ident::parse_any,
                    )?;
                    for n in names {
                        if args.skip.iter().any(|s| s == &n) {
                            return Err(syn::Error::new_spanned(
                                &n,
                                format!("`{n}` is listed twice in `skip`"),
                            ));
                        }
                        args.skip.push(n);
                    }
                }
                "tags" => {
                    if seen_tags {
                        return Err(duplicate(&ident));
                    }
                    seen_tags = true;
                    input.parse::<Token![=]>()?;
                    let content;
                    bracketed!(content in input);
                    let lits = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
                    for lit in lits {
                        args.tags.push(parse_tag(lit)?);
                    }
                }
                "cache" => {
                    input.parse::<Token![=]>()?;
                    let e: Expr = input.parse()?;
                    set_once(&mut args.cache, e, &ident)?;
                }
                "refresh" => {
                    input.parse::<Token![=]>()?;
                    let lit: LitStr = input.parse()?;
                    let mode = match lit.value().as_str() {
                        "background" => Refresh::Background,
                        "inline" => Refresh::Inline,
                        _ => {
                            return Err(syn::Error::new_spanned(
                                &lit,
                                "`refresh` must be \"background\" or \"inline\"",
                            ))
                        }
                    };
                    set_once(&mut args.refresh, mode, &ident)?;
                }
                "coalesce" => {
                    let b = parse_bool(input)?;
                    set_once(&mut args.coalesce, b, &ident)?;
                }
                "cache_none" => {
                    let b = parse_bool(input)?;
                    set_once(&mut args.cache_none, b, &ident)?;
                    args.cache_none_span = Some(ident.span());
                }
                "returns" => {
                    input.parse::<Token![=]>()?;
                    let lit: LitStr = input.parse()?;
                    let kind = match lit.value().as_str() {
                        "result" => Returns::Result,
                        "option" => Returns::Option,
                        "value" => Returns::Value,
                        _ => {
                            return Err(syn::Error::new_spanned(
                                &lit,
                                "`returns` must be \"result\" (only `Ok` values are stored), \"option\" (only `Some` values) or \"value\" (the whole value); without it the return type decides",
                            ))
                        }
                    };
                    set_once(&mut args.returns, (kind, lit), &ident)?;
                }
                "codec" => {
                    input.parse::<Token![=]>()?;
                    let lit: LitStr = input.parse()?;
                    let codec = match lit.value().as_str() {
                        "json" => Codec::Json,
                        "messagepack" | "msgpack" => Codec::MessagePack,
                        _ => {
                            return Err(syn::Error::new_spanned(
                                &lit,
                                "`codec` must be \"json\" (the default: entries any language can read) or \"messagepack\" (smaller, faster to decode)",
                            ))
                        }
                    };
                    set_once(&mut args.codec, codec, &ident)?;
                }
                "include_self" => {
                    let b = parse_bool(input)?;
                    set_once(&mut args.include_self, b, &ident)?;
                }
                "companions" => {
                    let b = parse_bool(input)?;
                    set_once(&mut args.companions, b, &ident)?;
                }
                "crate" => {
                    input.parse::<Token![=]>()?;
                    let lit: LitStr = input.parse()?;
                    let path: Path = lit.parse().map_err(|_| {
                        syn::Error::new_spanned(
                            &lit,
                            "`crate` must be a path such as \"::action_cache\"",
                        )
                    })?;
                    set_once(&mut args.krate, path, &ident)?;
                }
                _ => {
                    return Err(syn::Error::new_spanned(
                        &ident,
                        format!(
                        "unknown `cached_action` option `{key}`; valid options are {VALID_OPTIONS}"
                    ),
                    ))
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        args.validate()?;
        Ok(args)
    }
}

impl CachedArgs {
    fn validate(&self) -> syn::Result<()> {
        let Some(fresh) = &self.fresh else {
            return Err(syn::Error::new(
                Span::call_site(),
                "`cached_action` needs a `fresh` duration, e.g. `#[cached_action(fresh = 300)]`",
            ));
        };
        if let (Some(span), Some((kind, lit))) = (self.cache_none_span, &self.returns) {
            let why = match kind {
                Returns::Result => Some("`cache_none` is about `Option` returns; with `returns = \"result\"` only `Ok` values are stored"),
                Returns::Value => Some("`returns = \"value\"` already stores the whole value, `None` included; drop `cache_none`"),
                Returns::Option => None,
            };
            if let Some(why) = why {
                let mut e = syn::Error::new(span, why);
                e.combine(syn::Error::new_spanned(lit, "`returns` is set here"));
                return Err(e);
            }
        }
        if let Some(stale) = &self.stale {
            if stale.value < fresh.value {
                return Err(syn::Error::new(
                    stale.span,
                    format!(
                        "`stale` ({:?}) must not be shorter than `fresh` ({:?}): `stale` is how long an entry may still be served, counted from when it was written",
                        stale.value, fresh.value
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn parse_bool(input: ParseStream<'_>) -> syn::Result<bool> {
    input.parse::<Token![=]>()?;
    let b: LitBool = input.parse()?;
    Ok(b.value)
}

fn parse_jitter(input: ParseStream<'_>) -> syn::Result<(f64, Span)> {
    let (value, span) = if input.peek(LitFloat) {
        let lit: LitFloat = input.parse()?;
        (lit.base10_parse::<f64>()?, lit.span())
    } else if input.peek(LitInt) {
        let lit: LitInt = input.parse()?;
        (lit.base10_parse::<f64>()?, lit.span())
    } else {
        return Err(
            input.error("`jitter` must be a number between 0.0 and 1.0, e.g. `jitter = 0.2`")
        );
    };
    if !(0.0..=1.0).contains(&value) {
        return Err(syn::Error::new(
            span,
            "`jitter` must be between 0.0 and 1.0",
        ));
    }
    Ok((value, span))
}

fn parse_duration(input: ParseStream<'_>) -> syn::Result<DurationArg> {
    let (value, span) = if input.peek(LitInt) {
        let lit: LitInt = input.parse()?;
        let secs = lit.base10_parse::<u64>().map_err(|_| {
            syn::Error::new_spanned(&lit, "a duration is a whole number of seconds or a string such as \"250ms\", \"5m\", \"1h\"")
        })?;
        (Duration::from_secs(secs), lit.span())
    } else if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        let d =
            parse_duration_str(&lit.value()).map_err(|msg| syn::Error::new_spanned(&lit, msg))?;
        (d, lit.span())
    } else {
        return Err(input.error(
            "a duration is a whole number of seconds or a string such as \"250ms\", \"5m\", \"1h\"",
        ));
    };
    if value.is_zero() {
        return Err(syn::Error::new(
            span,
            "a duration must be greater than zero",
        ));
    }
    Ok(DurationArg { value, span })
}

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`, or a bare number of seconds.
pub(crate) fn parse_duration_str(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("cannot parse duration {s:?}: expected a number followed by `ms`, `s`, `m`, `h` or `d`, e.g. \"250ms\" or \"5m\"")
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let per_unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(per_unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

/// Splits a tag template into a `format!` string and the arguments it names.
fn parse_tag(lit: LitStr) -> syn::Result<TagTemplate> {
    let value = lit.value();
    let mut format = String::new();
    let mut args = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                format.push_str("{{");
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                format.push_str("}}");
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                let name = name.trim();
                if !closed || name.is_empty() {
                    return Err(syn::Error::new_spanned(
                        &lit,
                        "a tag placeholder is an argument name in braces, e.g. \"account:{account_id}\"",
                    ));
                }
                let ident = syn::parse_str::<Ident>(name).map_err(|_| {
                    syn::Error::new_spanned(
                        &lit,
                        format!("tag placeholder `{{{name}}}` must be a plain argument name"),
                    )
                })?;
                format.push_str("{}");
                args.push(Ident::new(&ident.to_string(), lit.span()));
            }
            '}' => {
                return Err(syn::Error::new_spanned(
                    &lit,
                    "unmatched `}` in tag; write `}}` for a literal brace",
                ))
            }
            c => format.push(c),
        }
    }
    Ok(TagTemplate { lit, format, args })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> syn::Result<CachedArgs> {
        syn::parse_str::<CachedArgs>(s)
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn full_attribute_parses() {
        let a = parse(
            r#"fresh = 300, stale = "15m", jitter = 0.2, name = "orders.lookup", version = 2,
               skip(client, other), tags = ["account:{account_id}", "all"], cache = my_cache(),
               refresh = "inline", coalesce = false, cache_none = true, returns = "option",
               include_self = true,
               companions = false, crate = "::my::reexport""#,
        )
        .unwrap();
        assert_eq!(a.fresh.unwrap().value, Duration::from_secs(300));
        assert_eq!(a.stale.unwrap().value, Duration::from_secs(900));
        assert_eq!(a.jitter.unwrap().0, 0.2);
        assert_eq!(a.name.unwrap().value(), "orders.lookup");
        assert_eq!(a.version, Some(2));
        assert_eq!(a.skip.len(), 2);
        assert_eq!(a.tags.len(), 2);
        assert_eq!(a.tags[0].format, "account:{}");
        assert_eq!(a.tags[0].args[0], "account_id");
        assert!(a.tags[1].args.is_empty());
        assert!(a.cache.is_some());
        assert_eq!(a.refresh, Some(Refresh::Inline));
        assert_eq!(a.coalesce, Some(false));
        assert_eq!(a.cache_none, Some(true));
        assert_eq!(a.returns.unwrap().0, Returns::Option);
        assert_eq!(a.include_self, Some(true));
        assert_eq!(a.companions, Some(false));
        assert!(a.krate.is_some());
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration_str("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration_str("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration_str("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse_duration_str("2d").unwrap(),
            Duration::from_secs(172_800)
        );
        assert_eq!(parse_duration_str("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration_str("5 parsecs").is_err());
        assert!(parse_duration_str("ms").is_err());
        assert!(parse_duration_str("").is_err());
        assert!(err(r#"fresh = "0s""#).contains("greater than zero"));
        assert!(err("fresh = 0").contains("greater than zero"));
        assert!(err(r#"fresh = "soon""#).contains("cannot parse duration"));
    }

    #[test]
    fn codec_names_json_or_messagepack() {
        assert_eq!(
            parse("fresh = 1, codec = \"messagepack\"").unwrap().codec,
            Some(Codec::MessagePack)
        );
        assert_eq!(
            parse("fresh = 1, codec = \"json\"").unwrap().codec,
            Some(Codec::Json)
        );
        assert!(err("fresh = 1, codec = \"xml\"").contains("`codec` must be"));
    }

    #[test]
    fn stale_shorter_than_fresh_is_rejected() {
        assert!(err("fresh = 60, stale = 30").contains("must not be shorter"));
        assert!(parse("fresh = 60, stale = 60").is_ok());
    }

    #[test]
    fn unknown_and_duplicate_options() {
        let e = err("fresh = 1, ttl = 3");
        assert!(e.contains("unknown `cached_action` option `ttl`"), "{e}");
        assert!(e.contains("`crate`") && e.contains("`skip`"), "{e}");
        assert!(err("fresh = 1, fresh = 2").contains("duplicate `fresh`"));
        assert!(err("fresh = 1, skip(a), skip(b)").contains("duplicate `skip`"));
        assert!(err("fresh = 1, skip(a, a)").contains("listed twice"));
        assert!(err("stale = 2").contains("needs a `fresh`"));
    }

    #[test]
    fn bad_values() {
        assert!(err(r#"fresh = 1, refresh = "later""#).contains("background"));
        assert!(err("fresh = 1, jitter = 1.5").contains("between 0.0 and 1.0"));
        assert!(err(r#"fresh = 1, tags = ["a:{}"]"#).contains("placeholder"));
        assert!(err(r#"fresh = 1, tags = ["a:{x"]"#).contains("placeholder"));
        assert!(err(r#"fresh = 1, tags = ["a:}"]"#).contains("unmatched"));
        assert!(err(r#"fresh = 1, crate = "not a path""#).contains("must be a path"));
        assert!(err(r#"fresh = 1, returns = "results""#).contains("`returns` must be"));
        assert!(
            err(r#"fresh = 1, returns = "result", cache_none = true"#).contains("about `Option`")
        );
        assert!(err(r#"fresh = 1, cache_none = false, returns = "value""#)
            .contains("drop `cache_none`"));
    }

    #[test]
    fn escaped_braces_in_tags() {
        let a = parse(r#"fresh = 1, tags = ["{{lit}}:{id}"]"#).unwrap();
        assert_eq!(a.tags[0].format, "{{lit}}:{}");
        assert_eq!(a.tags[0].args[0], "id");
    }
}
