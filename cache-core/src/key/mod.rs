//! Deterministic cache keys: the function name and every argument, hashed.
//!
//! A key is `{prefix}:{name}:{hex(sha256(bytes))}`, where the bytes are the key-format version
//! ([`CacheKey::FORMAT_VERSION`]), the name, the schema version and each argument's name and
//! value in a canonical binary encoding of serde's data model (see the README's "Keys" section
//! for the byte layout). The encoding is injective: values that serde tells apart (`None` and
//! `Some(None)`, `1u32` and `1u64`, a unit and a unit struct, a map and a struct...) never share
//! bytes. Map entries are sorted at every depth, so a `HashMap` argument gives the same key
//! whatever its iteration order; sorting is done here, not left to `serde_json`, whose
//! `preserve_order` feature may be switched on by any crate in the build.
//!
//! ```
//! use action_cache_core::KeyBuilder;
//! use std::collections::HashMap;
//!
//! let mut a = KeyBuilder::new("crm.account");
//! a.arg("id", "42")?.arg("fields", &HashMap::from([("x", 1), ("y", 2)]))?;
//! let mut b = KeyBuilder::new("crm.account");
//! b.arg("fields", &HashMap::from([("y", 2), ("x", 1)]))?.arg("id", "42")?;
//! assert_eq!(a.build(), b.build());
//!
//! let (mut none, mut some_none) = (KeyBuilder::new("f"), KeyBuilder::new("f"));
//! none.arg("x", &None::<Option<u32>>)?;
//! some_none.arg("x", &Some(None::<u32>))?;
//! assert_ne!(none.build(), some_none.build());
//! # Ok::<(), action_cache_core::KeyError>(())
//! ```

mod canonical;

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use crate::error::KeyError;
use canonical::{EncodeError, Encoder};

/// The version of the key format, hashed first into every key. Bump it whenever the bytes
/// hashed for a given call change, so old and new keys never meet. 1 was canonical JSON; 2 is
/// the tagged binary encoding.
const KEY_FORMAT_VERSION: u32 = 2;

/// A cache key without its store prefix: a name, a SHA-256 digest of the arguments, and the tags
/// the entry will carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Borrowed when the name is a `&'static str` (the macro's), so building a key does not
    /// allocate it.
    name: Cow<'static, str>,
    /// Lowercase hex of the SHA-256, inline: building a key allocates no digest string.
    digest: Digest64,
    tags: Vec<String>,
}

impl CacheKey {
    /// The version of the byte layout that [`digest`](CacheKey::digest) hashes (its first four
    /// bytes, big-endian). It changes whenever the bytes hashed for a given call change, which
    /// gives every call a new key: entries stored under the old format are no longer read and
    /// expire with their TTL.
    pub const FORMAT_VERSION: u32 = KEY_FORMAT_VERSION;

    /// Starts a key for the function or data set `name`.
    pub fn builder(name: impl Into<String>) -> KeyBuilder {
        KeyBuilder::new(name)
    }

    /// The name the key was built for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lowercase hex SHA-256 digest of the canonical bytes of the name, version and
    /// arguments ([`KeyBuilder::canonical_bytes`]).
    pub fn digest(&self) -> &str {
        self.digest.as_str()
    }
    /// Tags the entry carries, for [`Cache::invalidate_tag`](crate::Cache::invalidate_tag).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The store key under `prefix`: `{prefix}:{name}:{digest}`.
    ///
    /// Braces in the name are written as parentheses, so a key never carries a Redis Cluster
    /// hash tag by accident (its lock must share its slot). The digest covers the name as given,
    /// so names that differ only there still get distinct keys.
    pub fn with_prefix(&self, prefix: &str) -> String {
        let digest = self.digest.as_str();
        let mut s = String::with_capacity(prefix.len() + self.name.len() + digest.len() + 2);
        s.push_str(prefix);
        s.push(':');
        if has_brace(self.name.as_bytes()) {
            s.extend(self.name.chars().map(|c| match c {
                '{' => '(',
                '}' => ')',
                c => c,
            }));
        } else {
            s.push_str(&self.name);
        }
        s.push(':');
        s.push_str(digest);
        s
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.digest.as_str())
    }
}

/// Builds a [`CacheKey`] from a name and named arguments.
///
/// Distinct argument sets give distinct keys: arguments are hashed with their names, in name
/// order (so the order of `arg` calls does not matter), each value in an injective, type-tagged
/// encoding of serde's data model, with map entries sorted at every depth. Struct fields keep
/// the order their type serializes them in. Floats are hashed bit for bit (`-0.0` and `0.0` are
/// distinct keys); NaN and ±infinity are rejected with [`KeyError::NonFiniteFloat`].
///
/// ```
/// use action_cache_core::KeyBuilder;
///
/// let mut b = KeyBuilder::new("orders.lookup");
/// b.version(2).arg("order_id", "A-1001")?.tag("order:A-1001");
/// let key = b.build();
/// assert_eq!(key.name(), "orders.lookup");
/// assert_eq!(key.digest().len(), 64);
/// assert!(key.with_prefix("ac").starts_with("ac:orders.lookup:"));
///
/// let mut nan = KeyBuilder::new("f");
/// assert!(nan.arg("x", &f64::NAN).is_err());
/// # Ok::<(), action_cache_core::KeyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    name: Cow<'static, str>,
    /// The canonical bytes and where each argument lies in them.
    scratch: Scratch,
    tags: Vec<String>,
}

/// A builder's buffers, reused by the next builder on the same thread once it is done.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// The header, then every argument (its length-prefixed name, then its value) in the order
    /// they were added: the canonical bytes themselves when that was name order.
    encoder: Encoder,
    /// Where each argument lies in `encoder`, in name order.
    args: Vec<ArgSpan>,
    /// Whether an argument was added before one added earlier (in name order), so that
    /// `encoder` no longer holds the arguments in name order.
    shuffled: bool,
}

/// Buffers larger than this are freed rather than kept for the next builder.
const KEEP_AT_MOST: usize = 16 * 1024;

thread_local! {
    /// The buffers of the last builder dropped on this thread.
    static SPARE: Cell<Option<Scratch>> = const { Cell::new(None) };
}

impl Scratch {
    /// Whether the arguments were added out of name order; if so, where the header ends (where
    /// the first one added starts).
    fn out_of_order(&self) -> Option<usize> {
        if !self.shuffled {
            return None;
        }
        self.args.iter().map(|a| a.start).min()
    }

    /// Writes the header (the bytes before `header`) and then the arguments in name order.
    fn write_sorted(&self, header: usize, out: &mut Vec<u8>) {
        let bytes = self.encoder.bytes();
        out.extend_from_slice(&bytes[..header]);
        for a in &self.args {
            out.extend_from_slice(&bytes[a.start..a.end]);
        }
    }

    /// SHA-256 of the canonical bytes: the header, then the arguments in name order, fed to the
    /// hasher straight from the buffer (span by span when they were added out of that order),
    /// without a sorted copy.
    fn digest(&self) -> [u8; 32] {
        let bytes = self.encoder.bytes();
        match self.out_of_order() {
            None => Sha256::digest(bytes).into(),
            Some(header) => {
                let mut hasher = Sha256::new();
                hasher.update(&bytes[..header]);
                for a in &self.args {
                    hasher.update(&bytes[a.start..a.end]);
                }
                hasher.finalize().into()
            }
        }
    }

    /// The spare buffers of this thread, emptied, or new ones.
    fn take() -> Scratch {
        let mut scratch = SPARE
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_default();
        scratch.encoder.reserve(256);
        scratch
    }

    /// Keeps these buffers for the next builder on this thread, unless they grew large.
    fn give_back(mut self) {
        if self.encoder.capacity() <= KEEP_AT_MOST && self.args.capacity() <= 256 {
            self.encoder.truncate(0);
            self.args.clear();
            self.shuffled = false;
            // Fails only while the thread is being torn down: the buffers are then just freed.
            let _ = SPARE.try_with(|spare| spare.set(Some(self)));
        }
    }
}

/// Offsets of one argument in the builder's bytes: `start..end` is the argument (its
/// length-prefixed name, then its value); `name` is the name's own bytes.
#[derive(Debug, Clone)]
struct ArgSpan {
    start: usize,
    name: std::ops::Range<usize>,
    end: usize,
}

/// Where the schema version sits in the header: after the 4-byte format version, one byte
/// saying whether there is one, then the version as a big-endian `u32` (zero when there is none).
const VERSION_AT: usize = 4;

impl KeyBuilder {
    /// Starts a key for `name` (a stable function or data-set name).
    pub fn new(name: impl Into<String>) -> KeyBuilder {
        KeyBuilder::named(Cow::Owned(name.into()))
    }

    /// Like [`KeyBuilder::new`] for a name known at compile time, which the key then borrows
    /// instead of copying (what `#[cached_action]` uses). The key is the same as with `new`.
    ///
    /// ```
    /// use action_cache_core::KeyBuilder;
    ///
    /// let mut a = KeyBuilder::from_static("crm.account");
    /// a.arg("id", "42")?;
    /// let mut b = KeyBuilder::new(String::from("crm.account"));
    /// b.arg("id", "42")?;
    /// assert_eq!(a.build(), b.build());
    /// # Ok::<(), action_cache_core::KeyError>(())
    /// ```
    pub fn from_static(name: &'static str) -> KeyBuilder {
        KeyBuilder::named(Cow::Borrowed(name))
    }

    fn named(name: Cow<'static, str>) -> KeyBuilder {
        let mut scratch = Scratch::take();
        let encoder = &mut scratch.encoder;
        encoder.write_raw(&KEY_FORMAT_VERSION.to_be_bytes());
        encoder.write_raw(&[0; 5]);
        encoder.write_name(&name);
        KeyBuilder {
            name,
            scratch,
            tags: Vec::new(),
        }
    }

    /// Sets a schema version that is part of the hash, to retire values of an older shape.
    pub fn version(&mut self, version: u32) -> &mut Self {
        let mut slot = [1; 5];
        slot[1..].copy_from_slice(&version.to_be_bytes());
        self.scratch.encoder.overwrite(VERSION_AT, &slot);
        self
    }

    /// Adds a named argument. On an error the builder is as it was before the call.
    ///
    /// # Errors
    ///
    /// [`KeyError::NonFiniteFloat`] when the value holds NaN or ±Inf anywhere,
    /// [`KeyError::Serialize`] when its `Serialize` fails or it nests deeper than 128 levels,
    /// [`KeyError::DuplicateArg`] when `name` was added before.
    pub fn arg<V: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &V,
    ) -> Result<&mut Self, KeyError> {
        let Scratch {
            encoder,
            args,
            shuffled,
        } = &mut self.scratch;
        let bytes = encoder.bytes();
        // Arguments usually come in name order (the macro emits them so): then the new one goes
        // last, after one comparison.
        let after_last = args.last().is_none_or(|last| {
            cmp_names(&bytes[last.name.clone()], name.as_bytes()) == std::cmp::Ordering::Less
        });
        let at = if after_last {
            args.len()
        } else {
            match args.binary_search_by(|a| cmp_names(&bytes[a.name.clone()], name.as_bytes())) {
                Ok(_) => return Err(KeyError::DuplicateArg(name.to_string())),
                Err(at) => at,
            }
        };
        let start = encoder.len();
        encoder.write_name(name);
        let name_end = encoder.len();
        if let Err(e) = encoder.encode(value) {
            encoder.truncate(start);
            return Err(refused(name, e));
        }
        let span = ArgSpan {
            start,
            name: name_end - name.len()..name_end,
            end: encoder.len(),
        };
        if args.capacity() == 0 {
            args.reserve(8);
        }
        if after_last {
            args.push(span);
        } else {
            args.insert(at, span);
            *shuffled = true;
        }
        Ok(self)
    }

    /// Adds a tag the entry will carry (tags are not part of the hash).
    pub fn tag(&mut self, tag: impl Into<String>) -> &mut Self {
        self.tags.push(tag.into());
        self
    }

    /// The exact bytes [`build`](KeyBuilder::build) hashes, laid out as the README's "Keys"
    /// section describes: for checking a key by hand or computing it in another language.
    ///
    /// ```
    /// use action_cache_core::{CacheKey, KeyBuilder};
    /// use sha2::{Digest, Sha256};
    ///
    /// let mut b = KeyBuilder::new("f");
    /// b.arg("x", &Some(1u8))?;
    /// let bytes = b.canonical_bytes();
    /// // Format 2, no version, name "f", argument "x": Some (02) of a u8 (19) 1.
    /// assert_eq!(bytes, [0, 0, 0, 2, 0, 0, 0, 0, 0, 1, b'f', 1, b'x', 0x02, 0x19, 1]);
    /// assert_eq!(&bytes[..4], CacheKey::FORMAT_VERSION.to_be_bytes());
    /// assert_eq!(b.build().digest(), hex::encode(Sha256::digest(&bytes)));
    /// # Ok::<(), action_cache_core::KeyError>(())
    /// ```
    pub fn canonical_bytes(&self) -> Vec<u8> {
        match self.scratch.out_of_order() {
            None => self.scratch.encoder.bytes().to_vec(),
            Some(header) => {
                let mut out = Vec::with_capacity(self.scratch.encoder.len());
                self.scratch.write_sorted(header, &mut out);
                out
            }
        }
    }

    /// Hashes the name and arguments into a key.
    pub fn build(mut self) -> CacheKey {
        CacheKey {
            digest: lower_hex(&self.scratch.digest()),
            name: std::mem::take(&mut self.name),
            tags: std::mem::take(&mut self.tags),
        }
    }
}

impl Drop for KeyBuilder {
    fn drop(&mut self) {
        std::mem::take(&mut self.scratch).give_back();
    }
}

/// Whether `name` holds `{` or `}`. Braces are ASCII, and no byte of a multi-byte UTF-8
/// character is, so a byte scan finds them without decoding characters; it looks at eight bytes
/// at a time, testing each word for a byte equal to either brace.
fn has_brace(name: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Exact: some byte of `x` is zero if and only if this is non-zero.
    let has_zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let mut words = name.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_ne_bytes(word.try_into().unwrap_or_default());
        if has_zero_byte(x ^ (ONES * u64::from(b'{')))
            || has_zero_byte(x ^ (ONES * u64::from(b'}')))
        {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b == b'{' || b == b'}')
}

/// The error for argument `name`, whose value could not be encoded. Out of line, so that the
/// code of [`KeyBuilder::arg`] that runs when the value is fine stays short.
#[cold]
#[inline(never)]
fn refused(name: &str, e: EncodeError) -> KeyError {
    match e {
        EncodeError::NonFinite => KeyError::NonFiniteFloat {
            arg: name.to_string(),
        },
        EncodeError::Custom(message) => KeyError::Serialize {
            arg: name.to_string(),
            message,
        },
    }
}

/// Compares argument names in byte order, deciding on the first byte without a call when it
/// differs (it usually does).
fn cmp_names(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// A SHA-256 digest as lowercase hex, two digits per byte from one table lookup.
fn lower_hex(digest: &[u8; 32]) -> Digest64 {
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0u8; 2]; 256];
        let mut b = 0;
        while b < 256 {
            pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
            b += 1;
        }
        pairs
    };
    let mut out = [0u8; 64];
    for (pair, &b) in out.chunks_exact_mut(2).zip(digest) {
        pair.copy_from_slice(&PAIRS[usize::from(b)]);
    }
    Digest64(out)
}

/// 64 lowercase hex digits, held inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Digest64([u8; 64]);

impl Digest64 {
    fn as_str(&self) -> &str {
        // Always ASCII hex digits: the fallback is never taken.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Digest64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::canonical::MAX_DEPTH;
    use super::*;
    use serde_json::Value;
    use std::collections::HashMap;

    fn key(args: &[(&str, Value)]) -> CacheKey {
        let mut b = KeyBuilder::new("f");
        for (n, v) in args {
            b.arg(n, v).unwrap();
        }
        b.build()
    }

    #[test]
    fn nesting_deeper_than_serde_json_parses_is_refused() {
        let mut v = Value::from(0);
        for _ in 0..MAX_DEPTH {
            v = Value::Array(vec![v]);
        }
        assert!(KeyBuilder::new("f").arg("x", &v).is_ok());
        let v = Value::Array(vec![v]);
        let e = KeyBuilder::new("f").arg("x", &v).unwrap_err();
        assert!(matches!(e, KeyError::Serialize { .. }), "{e}");
    }

    #[test]
    fn hashmap_order_does_not_change_the_key() {
        let mut digests = std::collections::HashSet::new();
        for _ in 0..20 {
            // Each HashMap gets a fresh random hasher state, so iteration order varies.
            let map: HashMap<String, HashMap<String, i32>> = (0..16)
                .map(|i| {
                    (
                        format!("k{i}"),
                        HashMap::from([(format!("n{i}"), i), ("z".into(), 0)]),
                    )
                })
                .collect();
            let mut b = KeyBuilder::new("f");
            b.arg("m", &map).unwrap();
            digests.insert(b.build().digest().to_string());
        }
        assert_eq!(digests.len(), 1);
    }

    #[test]
    fn distinct_arguments_give_distinct_keys() {
        let cases = [
            key(&[("a", Value::from("1"))]),
            key(&[("a", Value::from(1))]),
            key(&[("b", Value::from("1"))]),
            key(&[("a", Value::Null)]),
            key(&[("a", Value::from(""))]),
            key(&[("a", Value::from("1")), ("b", Value::Null)]),
            key(&[]),
        ];
        let set: std::collections::HashSet<_> = cases.iter().map(|k| k.digest()).collect();
        assert_eq!(set.len(), cases.len());
    }

    #[test]
    fn argument_names_cannot_be_confused_with_values() {
        // {"a": "b:c"} vs {"a:b": "c"}: a naive "name=value" join could collide.
        assert_ne!(
            key(&[("a", Value::from("b:c"))]),
            key(&[("a:b", Value::from("c"))])
        );
    }

    #[test]
    fn function_name_and_version_are_part_of_the_key() {
        let mut a = KeyBuilder::new("f");
        a.arg("x", &1).unwrap();
        let mut b = KeyBuilder::new("g");
        b.arg("x", &1).unwrap();
        let mut c = KeyBuilder::new("f");
        c.version(2).arg("x", &1).unwrap();
        let (a, b, c) = (a.build(), b.build(), c.build());
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn non_finite_floats_are_rejected_not_confused_with_none() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut b = KeyBuilder::new("f");
            let err = b.arg("x", &Some(bad)).unwrap_err();
            assert_eq!(err, KeyError::NonFiniteFloat { arg: "x".into() });
            let mut nested = KeyBuilder::new("f");
            let err = nested.arg("m", &HashMap::from([("k", vec![1.0f32, bad as f32])]));
            assert!(matches!(err, Err(KeyError::NonFiniteFloat { .. })));
        }
        let mut b = KeyBuilder::new("f");
        assert!(b.arg("x", &Option::<f64>::None).is_ok());
    }

    #[test]
    fn duplicate_argument_names_are_an_error() {
        let mut b = KeyBuilder::new("f");
        b.arg("x", &1).unwrap();
        assert_eq!(
            b.arg("x", &2).unwrap_err(),
            KeyError::DuplicateArg("x".into())
        );
        // Not only the last one: the in-order fast path must not skip the search.
        b.arg("y", &3).unwrap();
        assert_eq!(
            b.arg("x", &4).unwrap_err(),
            KeyError::DuplicateArg("x".into())
        );
    }

    #[test]
    fn arguments_in_any_order_hash_the_same_bytes() {
        let build = |order: &[usize]| {
            let args: [(&str, u32); 4] = [("a", 1), ("bb", 2), ("b", 3), ("c", 4)];
            let mut b = KeyBuilder::from_static("f");
            for &i in order {
                b.arg(args[i].0, &args[i].1).unwrap();
            }
            (b.canonical_bytes(), b.build())
        };
        let sorted = build(&[0, 2, 1, 3]);
        for order in [[3, 2, 1, 0], [1, 0, 3, 2], [0, 1, 2, 3], [2, 3, 0, 1]] {
            let other = build(&order);
            assert_eq!(other.0, sorted.0, "{order:?}");
            assert_eq!(other.1, sorted.1, "{order:?}");
        }
        assert_eq!(
            sorted.1.digest(),
            hex::encode(Sha256::digest(&sorted.0)),
            "the streamed digest is SHA-256 of the canonical bytes"
        );
    }

    #[test]
    fn a_refused_argument_leaves_the_builder_as_it_was() {
        let mut a = KeyBuilder::new("f");
        a.arg("x", &1).unwrap();
        assert!(a.arg("m", &HashMap::from([("k", f64::NAN)])).is_err());
        assert!(a.arg("x", &2).is_err());
        a.arg("y", "z").unwrap();
        let mut b = KeyBuilder::new("f");
        b.arg("y", "z").unwrap().arg("x", &1).unwrap();
        assert_eq!(a.canonical_bytes(), b.canonical_bytes());
        assert_eq!(a.build(), b.build());
    }

    #[test]
    fn reused_buffers_start_empty() {
        let mut a = KeyBuilder::new("f");
        a.version(9).arg("z", &"x".repeat(1000)).unwrap();
        a.arg("a", &HashMap::from([(1, 2), (3, 4)])).unwrap();
        let copy = a.clone();
        drop(a);
        let _ = KeyBuilder::new("g").arg("m", &HashMap::from([(1, f64::NAN)]));
        let mut b = KeyBuilder::new("f");
        b.arg("x", &()).unwrap();
        assert_eq!(b.canonical_bytes(), b"\0\0\0\x02\0\0\0\0\0\x01f\x01x\x03");
        let expected = hex::encode(Sha256::digest(copy.canonical_bytes()));
        assert_eq!(copy.build().digest(), expected);
    }

    #[test]
    fn build_hashes_the_canonical_bytes() {
        let mut b = KeyBuilder::new("f");
        b.version(3)
            .arg("x", &1)
            .unwrap()
            .arg("m", &HashMap::from([(1, 2)]))
            .unwrap();
        let expected = hex::encode(Sha256::digest(b.canonical_bytes()));
        assert_eq!(b.build().digest(), expected);
    }

    #[test]
    fn braces_in_the_name_are_written_as_parentheses_in_the_store_key() {
        let braced = KeyBuilder::new("é{t}.x}{").build();
        let digest = braced.digest().to_string();
        assert_eq!(braced.with_prefix("ac"), format!("ac:é(t).x)(:{digest}"));
        let plain = KeyBuilder::new("é(t).x)(").build();
        assert_ne!(
            plain.digest(),
            digest,
            "the digest covers the name as given"
        );
        assert_eq!(
            plain.with_prefix("ac"),
            format!("ac:é(t).x)(:{}", plain.digest())
        );
        let k = KeyBuilder::from_static("crm.search").build();
        assert_eq!(k.with_prefix("p"), format!("p:crm.search:{}", k.digest()));
    }

    #[test]
    fn braces_are_found_at_every_position() {
        // Every byte value but the braces, then each brace at each position of each length.
        let others: Vec<u8> = (0..=255u8).filter(|b| !b"{}".contains(b)).collect();
        for start in 0..others.len() {
            assert!(!has_brace(&others[start..]), "{start}");
        }
        for len in 1..40 {
            for at in 0..len {
                for brace in [b'{', b'}'] {
                    let mut name = others[..len].to_vec();
                    name[at] = brace;
                    assert!(has_brace(&name), "{len} {at} {brace}");
                }
            }
        }
    }

    #[test]
    fn hostile_arguments_give_bounded_keys() {
        let long = "x".repeat(1 << 20);
        let mut b = KeyBuilder::new("f");
        b.arg("s", &long)
            .unwrap()
            .arg("nul", "a\0b\u{202e}😀")
            .unwrap();
        let k = b.build().with_prefix("ac");
        assert_eq!(k.len(), "ac:f:".len() + 64);
        assert!(k.bytes().all(|c| c.is_ascii_graphic()));
    }
}
