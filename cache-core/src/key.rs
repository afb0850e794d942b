//! Deterministic cache keys: the function name and every argument, hashed.
//!
//! A key is `{prefix}:{name}:{hex(sha256(canonical JSON))}` where the canonical JSON is
//! `{"func": name, "params": {arg: value, …}}` (plus `"version"` when one is set) with object
//! keys sorted at every depth, so a `HashMap` argument gives the same key whatever its iteration
//! order. Sorting is done here, not left to `serde_json`, whose `preserve_order` feature may be
//! switched on by any crate in the build.
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
//! # Ok::<(), action_cache_core::KeyError>(())
//! ```

use serde::ser::{self, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

use crate::error::KeyError;

/// A cache key without its store prefix: a name, a SHA-256 digest of the arguments, and the tags
/// the entry will carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: String,
    digest: String,
    tags: Vec<String>,
}

impl CacheKey {
    /// Starts a key for the function or data set `name`.
    pub fn builder(name: impl Into<String>) -> KeyBuilder {
        KeyBuilder::new(name)
    }

    /// The name the key was built for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hex SHA-256 digest of the canonical JSON of the name and arguments.
    pub fn digest(&self) -> &str {
        &self.digest
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
        let mut s = String::with_capacity(prefix.len() + self.name.len() + self.digest.len() + 2);
        s.push_str(prefix);
        s.push(':');
        s.extend(self.name.chars().map(|c| match c {
            '{' => '(',
            '}' => ')',
            c => c,
        }));
        s.push(':');
        s.push_str(&self.digest);
        s
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.digest)
    }
}

/// Builds a [`CacheKey`] from a name and named arguments.
///
/// Distinct argument sets give distinct keys: arguments are hashed with their names, `None` and
/// a non-finite float can never meet (non-finite floats are rejected with
/// [`KeyError::NonFiniteFloat`]), and map keys are sorted.
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
    name: String,
    version: Option<u32>,
    params: BTreeMap<String, Value>,
    tags: Vec<String>,
}

impl KeyBuilder {
    /// Starts a key for `name` (a stable function or data-set name).
    pub fn new(name: impl Into<String>) -> KeyBuilder {
        KeyBuilder {
            name: name.into(),
            version: None,
            params: BTreeMap::new(),
            tags: Vec::new(),
        }
    }

    /// Sets a schema version that is part of the hash, to retire values of an older shape.
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = Some(version);
        self
    }

    /// Adds a named argument.
    ///
    /// # Errors
    ///
    /// [`KeyError::NonFiniteFloat`] when the value holds NaN or ±Inf anywhere,
    /// [`KeyError::Serialize`] when its `Serialize` fails (e.g. a map with non-string keys that
    /// JSON cannot express), [`KeyError::DuplicateArg`] when `name` was added before.
    pub fn arg<V: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &V,
    ) -> Result<&mut Self, KeyError> {
        value.serialize(FiniteCheck::TOP).map_err(|e| match e {
            CheckError::NonFinite => KeyError::NonFiniteFloat {
                arg: name.to_string(),
            },
            CheckError::Custom(message) => KeyError::Serialize {
                arg: name.to_string(),
                message,
            },
        })?;
        let json = serde_json::to_value(value).map_err(|e| KeyError::Serialize {
            arg: name.to_string(),
            message: e.to_string(),
        })?;
        if self.params.insert(name.to_string(), json).is_some() {
            return Err(KeyError::DuplicateArg(name.to_string()));
        }
        Ok(self)
    }

    /// Adds a tag the entry will carry (tags are not part of the hash).
    pub fn tag(&mut self, tag: impl Into<String>) -> &mut Self {
        self.tags.push(tag.into());
        self
    }

    /// Hashes the name and arguments into a key.
    pub fn build(self) -> CacheKey {
        let mut canonical = String::with_capacity(64);
        canonical.push_str("{\"func\":");
        write_json_string(&mut canonical, &self.name);
        canonical.push_str(",\"params\":{");
        for (i, (k, v)) in self.params.iter().enumerate() {
            if i > 0 {
                canonical.push(',');
            }
            write_json_string(&mut canonical, k);
            canonical.push(':');
            write_canonical(&mut canonical, v);
        }
        canonical.push('}');
        if let Some(v) = self.version {
            canonical.push_str(",\"version\":");
            canonical.push_str(&v.to_string());
        }
        canonical.push('}');
        let digest = hex::encode(Sha256::digest(canonical.as_bytes()));
        CacheKey {
            name: self.name,
            digest,
            tags: self.tags,
        }
    }
}

/// Writes `value` as JSON with object keys sorted at every depth.
pub(crate) fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, k);
                out.push(':');
                write_canonical(out, v);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, v);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push_str(&Value::String(s.to_string()).to_string());
}

/// Why [`FiniteCheck`] refused a value.
#[derive(Debug)]
enum CheckError {
    NonFinite,
    Custom(String),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::NonFinite => f.write_str("non-finite float"),
            CheckError::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CheckError {}

impl ser::Error for CheckError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CheckError::Custom(msg.to_string())
    }
}

/// A serializer that produces nothing and fails on the first NaN or infinite float, which
/// `serde_json` would otherwise silently write as `null`, and on nesting deeper than
/// [`MAX_DEPTH`], which would otherwise recurse (here, in `serde_json` and in hashing) until the
/// stack overflows and aborts the process.
#[derive(Clone, Copy)]
struct FiniteCheck {
    depth: usize,
}

/// How deeply an argument may nest (as deep as `serde_json` parses).
const MAX_DEPTH: usize = 128;

impl FiniteCheck {
    const TOP: FiniteCheck = FiniteCheck { depth: 0 };

    fn deeper(self) -> Result<FiniteCheck, CheckError> {
        if self.depth >= MAX_DEPTH {
            return Err(CheckError::Custom(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(FiniteCheck {
            depth: self.depth + 1,
        })
    }
}

macro_rules! ok_scalars {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(fn $method(self, _v: $ty) -> Result<(), CheckError> { Ok(()) })*
    };
}

impl ser::Serializer for FiniteCheck {
    type Ok = ();
    type Error = CheckError;
    type SerializeSeq = FiniteCheck;
    type SerializeTuple = FiniteCheck;
    type SerializeTupleStruct = FiniteCheck;
    type SerializeTupleVariant = FiniteCheck;
    type SerializeMap = FiniteCheck;
    type SerializeStruct = FiniteCheck;
    type SerializeStructVariant = FiniteCheck;

    ok_scalars!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_char: char,
        serialize_str: &str, serialize_bytes: &[u8],
    );

    fn serialize_f32(self, v: f32) -> Result<(), CheckError> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(CheckError::NonFinite)
        }
    }
    fn serialize_f64(self, v: f64) -> Result<(), CheckError> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(CheckError::NonFinite)
        }
    }
    fn serialize_none(self) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CheckError> {
        value.serialize(self.deeper()?)
    }
    fn serialize_unit(self) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(self.deeper()?)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(self.deeper()?)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<FiniteCheck, CheckError> {
        self.deeper()
    }
    fn serialize_tuple(self, _: usize) -> Result<FiniteCheck, CheckError> {
        self.deeper()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<FiniteCheck, CheckError> {
        self.deeper()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<FiniteCheck, CheckError> {
        self.deeper()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<FiniteCheck, CheckError> {
        self.deeper()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<FiniteCheck, CheckError> {
        self.deeper()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<FiniteCheck, CheckError> {
        self.deeper()
    }
}

impl ser::SerializeSeq for FiniteCheck {
    type Ok = ();
    type Error = CheckError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeTuple for FiniteCheck {
    type Ok = ();
    type Error = CheckError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for FiniteCheck {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for FiniteCheck {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeMap for FiniteCheck {
    type Ok = ();
    type Error = CheckError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CheckError> {
        key.serialize(*self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeStruct for FiniteCheck {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for FiniteCheck {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn canonical_json_is_sorted_at_every_depth() {
        let v: Value = serde_json::json!({"b": {"z": 1, "a": [ {"y": 1, "x": 2} ]}, "a": null});
        let mut out = String::new();
        write_canonical(&mut out, &v);
        assert_eq!(out, r#"{"a":null,"b":{"a":[{"x":2,"y":1}],"z":1}}"#);
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
    }

    #[test]
    fn known_digest_is_stable() {
        // Pin the format: changing it silently would orphan every stored entry.
        let mut b = KeyBuilder::new("f");
        b.arg("x", &1).unwrap();
        let expected = hex::encode(Sha256::digest(br#"{"func":"f","params":{"x":1}}"#));
        assert_eq!(b.build().digest(), expected);
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
