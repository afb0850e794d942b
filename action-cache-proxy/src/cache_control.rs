//! The upstream's `Cache-Control` (RFC 9111 §5.2.2 and RFC 5861), for routes with
//! `cache_control = "honour"`: parsing the header, and turning it into the windows an answer
//! is kept for.
//!
//! Parsing follows RFC 9111's grammar, `#( token [ "=" ( token / quoted-string ) ] )`:
//! directive names are case-insensitive, several header lines are one list, commas inside a
//! quoted string do not split, and a directive that cannot be read (a bad number, a stray
//! token) is ignored rather than guessed at. A delta-seconds value over 2^31 counts as 2^31
//! (RFC 9111 §1.2.2). A directive given twice with different values is a conflict: for
//! `max-age` and `s-maxage` the answer then counts as already stale (§4.2.1), for
//! `stale-while-revalidate` and `stale-if-error` the directive is dropped.
//!
//! What the proxy does with it ([`CacheControl::decide`]) is in the crate's README.

use std::time::Duration;

/// The largest delta-seconds value kept (RFC 9111 §1.2.2).
const MAX_DELTA: u64 = 1 << 31;

/// The directives of one response that the proxy acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheControl {
    /// `max-age`, seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds (wins over `max-age` in a shared cache).
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`, seconds (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`, seconds (RFC 5861).
    pub stale_if_error: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (with or without field names).
    pub no_cache: bool,
    /// `private` (with or without field names).
    pub private: bool,
    /// `must-revalidate` or `proxy-revalidate`: never served stale.
    pub must_revalidate: bool,
}

/// A directive seen: its value, or a conflict between two values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Value(u64),
    Conflict,
}

fn note(slot: &mut Option<Seen>, value: Option<u64>) {
    let Some(v) = value else {
        return;
    };
    *slot = match *slot {
        None => Some(Seen::Value(v)),
        Some(Seen::Value(old)) if old == v => Some(Seen::Value(v)),
        _ => Some(Seen::Conflict),
    };
}

/// Splits a header value into directives at commas outside quoted strings; each directive is
/// `(name, value)` with the quotes and `\` escapes of a quoted value removed.
fn directives(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        // Name.
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == ',' || c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let mut value = None;
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            let mut v = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(e) = chars.next() {
                                v.push(e);
                            }
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => v.push(c),
                    }
                }
                // Anything after the closing quote, up to the next comma, makes it unreadable.
                let mut trailing = false;
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    if c != ' ' && c != '\t' {
                        trailing = true;
                    }
                    chars.next();
                }
                if !closed || trailing {
                    v = "\u{0}unreadable".to_owned();
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    v.push(c);
                    chars.next();
                }
                v = v.trim().to_owned();
            }
            value = Some(v);
        }
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() {
            out.push((name, value));
        }
        match chars.next() {
            Some(',') => continue,
            _ => return out,
        }
    }
}

/// `1*DIGIT`, capped at 2^31; anything else is unreadable.
fn delta_seconds(value: Option<&str>) -> Option<u64> {
    let v = value?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().map_or(MAX_DELTA, |n| n.min(MAX_DELTA)))
}

/// How an answer is kept, decided from its `Cache-Control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `no-store` or `private`: served, and kept nowhere (no entry, no last good copy).
    NotStored,
    /// Kept: served from the cache for `fresh`, then served stale for `stale` more while one
    /// refresh runs (nothing is kept for reads when both are zero); kept `error` past that as
    /// the last good copy (`None`: no last good copy).
    Keep {
        /// The fresh window.
        fresh: Duration,
        /// The stale-while-revalidate window after it.
        stale: Duration,
        /// The stale-if-error window after that.
        error: Option<Duration>,
    },
}

impl CacheControl {
    /// Parses every `Cache-Control` line of a response (unreadable bytes are skipped).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> CacheControl {
        let mut cc = CacheControl::default();
        let (mut max_age, mut s_maxage, mut swr, mut sie) = (None, None, None, None);
        for line in lines {
            let Ok(text) = std::str::from_utf8(line) else {
                continue;
            };
            for (name, value) in directives(text) {
                let value = value.as_deref();
                match name.as_str() {
                    "max-age" => note(&mut max_age, delta_seconds(value)),
                    "s-maxage" => note(&mut s_maxage, delta_seconds(value)),
                    "stale-while-revalidate" => note(&mut swr, delta_seconds(value)),
                    "stale-if-error" => note(&mut sie, delta_seconds(value)),
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    _ => {}
                }
            }
        }
        let lifetime = |s: Option<Seen>| match s {
            None => None,
            Some(Seen::Value(v)) => Some(v),
            // Conflicting lifetimes: the answer counts as stale.
            Some(Seen::Conflict) => Some(0),
        };
        let extension = |s: Option<Seen>| match s {
            Some(Seen::Value(v)) => Some(v),
            _ => None,
        };
        cc.max_age = lifetime(max_age);
        cc.s_maxage = lifetime(s_maxage);
        cc.stale_while_revalidate = extension(swr);
        cc.stale_if_error = extension(sie);
        cc
    }

    /// How to keep an answer that is `age` seconds old (its `Age` header), given the route's
    /// own windows (used where the answer says nothing):
    ///
    /// - `no-store` or `private`: [`Decision::NotStored`];
    /// - fresh: `s-maxage`, else `max-age`, less `age`; `no-cache` makes it 0; neither: the
    ///   route's `fresh`;
    /// - stale: `stale-while-revalidate`; when the answer gives no lifetime and no
    ///   `no-cache`, the route's stale window unless `stale-while-revalidate` overrides it;
    ///   otherwise 0 (RFC 9111 allows no stale serving the origin did not allow). 0 with
    ///   `no-cache` and with `must-revalidate` / `proxy-revalidate`;
    /// - error: `stale-if-error`, else (no lifetime given) the route's; `None` with
    ///   `must-revalidate` / `proxy-revalidate`.
    pub fn decide(
        &self,
        age: u64,
        route_fresh: Duration,
        route_stale: Duration,
        route_error: Option<Duration>,
    ) -> Decision {
        if self.no_store || self.private {
            return Decision::NotStored;
        }
        let secs = Duration::from_secs;
        let lifetime = self.s_maxage.or(self.max_age);
        let explicit = lifetime.is_some() || self.no_cache;
        let mut fresh = match lifetime {
            Some(l) => secs(l.saturating_sub(age)),
            None => route_fresh,
        };
        if self.no_cache {
            fresh = Duration::ZERO;
        }
        let mut stale = match (self.stale_while_revalidate, explicit) {
            (Some(s), _) => secs(s),
            (None, false) => route_stale,
            (None, true) => Duration::ZERO,
        };
        let mut error = match (self.stale_if_error, explicit) {
            (Some(s), _) => Some(secs(s)),
            (None, false) => route_error,
            (None, true) => None,
        };
        if self.no_cache || self.must_revalidate {
            stale = Duration::ZERO;
        }
        if self.must_revalidate {
            error = None;
        }
        Decision::Keep {
            fresh,
            stale,
            error: error.filter(|e| !e.is_zero()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(lines: &[&str]) -> CacheControl {
        CacheControl::parse(lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn directives_are_read_case_insensitively_across_lines() {
        let c = cc(&[
            "Max-Age=60, S-MAXAGE=30",
            "stale-while-revalidate=5,STALE-IF-ERROR=600",
        ]);
        assert_eq!(c.max_age, Some(60));
        assert_eq!(c.s_maxage, Some(30));
        assert_eq!(c.stale_while_revalidate, Some(5));
        assert_eq!(c.stale_if_error, Some(600));
        assert!(!c.no_store && !c.no_cache && !c.private && !c.must_revalidate);
        let c = cc(&["No-Store", "PRIVATE", "no-cache", "Proxy-Revalidate"]);
        assert!(c.no_store && c.private && c.no_cache && c.must_revalidate);
    }

    #[test]
    fn quoted_values_and_commas_inside_them() {
        // A comma inside a quoted field list does not start a directive.
        let c = cc(&[r#"private="set-cookie, max-age=5", max-age="60""#]);
        assert!(c.private);
        assert_eq!(
            c.max_age,
            Some(60),
            "the quoted max-age inside private is not read"
        );
        let c = cc(&[r#"no-cache="x\"y, z", s-maxage=7"#]);
        assert!(c.no_cache);
        assert_eq!(c.s_maxage, Some(7));
    }

    #[test]
    fn repeated_directives() {
        assert_eq!(cc(&["max-age=60", "max-age=60"]).max_age, Some(60));
        assert_eq!(
            cc(&["max-age=60, max-age=120"]).max_age,
            Some(0),
            "conflicting lifetimes: stale"
        );
        assert_eq!(
            cc(&["stale-if-error=10, stale-if-error=20"]).stale_if_error,
            None
        );
    }

    #[test]
    fn garbage_is_ignored() {
        for bad in [
            "max-age=-1",
            "max-age=1.5",
            "max-age=",
            "max-age=abc",
            r#"max-age="60"x"#,
            r#"max-age="60"#,
            "=,,, ,",
            "max-age 60",
        ] {
            let c = cc(&[bad]);
            assert_eq!(c.max_age, None, "{bad}");
        }
        let c = cc(&["bogus, max-age=10, \u{7f}junk=\"", "no-store"]);
        assert_eq!(c.max_age, Some(10));
        assert!(c.no_store);
        assert_eq!(
            CacheControl::parse([&[0xff, 0xfe][..]]),
            CacheControl::default()
        );
        assert_eq!(
            cc(&["max-age=99999999999999999999"]).max_age,
            Some(MAX_DELTA)
        );
    }

    #[test]
    fn decisions() {
        let s = Duration::from_secs;
        let route = |c: &CacheControl, age| c.decide(age, s(300), s(600), Some(s(3600)));
        assert_eq!(route(&cc(&["no-store"]), 0), Decision::NotStored);
        assert_eq!(route(&cc(&["private, max-age=60"]), 0), Decision::NotStored);
        assert_eq!(
            route(&cc(&[]), 0),
            Decision::Keep {
                fresh: s(300),
                stale: s(600),
                error: Some(s(3600))
            },
            "nothing said: the route's windows"
        );
        assert_eq!(
            route(&cc(&["max-age=60, s-maxage=10"]), 0),
            Decision::Keep {
                fresh: s(10),
                stale: s(0),
                error: None
            }
        );
        assert_eq!(
            route(
                &cc(&["max-age=60, stale-while-revalidate=30, stale-if-error=90"]),
                50
            ),
            Decision::Keep {
                fresh: s(10),
                stale: s(30),
                error: Some(s(90))
            },
            "Age is taken off"
        );
        assert_eq!(
            route(&cc(&["no-cache, stale-while-revalidate=30"]), 0),
            Decision::Keep {
                fresh: s(0),
                stale: s(0),
                error: None
            }
        );
        assert_eq!(
            route(
                &cc(&["max-age=10, must-revalidate, stale-while-revalidate=5, stale-if-error=5"]),
                0
            ),
            Decision::Keep {
                fresh: s(10),
                stale: s(0),
                error: None
            }
        );
        assert_eq!(
            route(&cc(&["stale-while-revalidate=5"]), 0),
            Decision::Keep {
                fresh: s(300),
                stale: s(5),
                error: Some(s(3600))
            }
        );
    }
}
