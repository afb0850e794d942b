//! The canonical bytes of one key argument: a `serde::Serializer` that writes every value of
//! serde's data model as type-tagged, self-delimiting bytes, in one pass.
//!
//! Two values get the same bytes only if serde sees them as the same value: every value starts
//! with a tag byte naming its kind in serde's data model, numbers have the fixed width of their
//! type, strings, byte arrays and names carry their length, and sequences, maps and structs end
//! with [`tag::END`] (which no value starts with). So no encoding is a prefix of another, and a
//! sequence of encodings can be split back into its values.
//!
//! Map entries are sorted by their encoded bytes at every depth, so a `HashMap` (or a
//! `serde_json::Map` with `preserve_order`) gives the same bytes whatever its iteration order.
//! Struct fields keep the order the type serializes them in (its declaration order), which the
//! type fixes. The exact layout is in the README's "Keys" section; `tests/keys.rs` pins it.
//!
//! Everything is written into one growing buffer: a map's entries are written in place, sorted
//! in place when they came out of order, and the entry offsets live on one stack shared by every
//! depth, so nested maps allocate nothing of their own.

use serde::ser::{self, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// How deeply an argument may nest (as deep as `serde_json` parses). Deeper values are refused
/// before they can recurse until the stack overflows, which would abort the process.
pub(super) const MAX_DEPTH: usize = 128;

/// The tag byte that starts each value (and [`END`](tag::END), which closes a list).
pub(super) mod tag {
    pub(crate) const END: u8 = 0x00;
    pub(crate) const NONE: u8 = 0x01;
    pub(crate) const SOME: u8 = 0x02;
    pub(crate) const UNIT: u8 = 0x03;
    pub(crate) const UNIT_STRUCT: u8 = 0x04;
    pub(crate) const UNIT_VARIANT: u8 = 0x05;
    pub(crate) const NEWTYPE_STRUCT: u8 = 0x06;
    pub(crate) const NEWTYPE_VARIANT: u8 = 0x07;
    pub(crate) const SEQ: u8 = 0x08;
    pub(crate) const TUPLE: u8 = 0x09;
    pub(crate) const TUPLE_STRUCT: u8 = 0x0a;
    pub(crate) const TUPLE_VARIANT: u8 = 0x0b;
    pub(crate) const MAP: u8 = 0x0c;
    pub(crate) const STRUCT: u8 = 0x0d;
    pub(crate) const STRUCT_VARIANT: u8 = 0x0e;
    pub(crate) const BOOL: u8 = 0x10;
    pub(crate) const I8: u8 = 0x11;
    pub(crate) const I16: u8 = 0x12;
    pub(crate) const I32: u8 = 0x13;
    pub(crate) const I64: u8 = 0x14;
    pub(crate) const I128: u8 = 0x15;
    pub(crate) const U8: u8 = 0x19;
    pub(crate) const U16: u8 = 0x1a;
    pub(crate) const U32: u8 = 0x1b;
    pub(crate) const U64: u8 = 0x1c;
    pub(crate) const U128: u8 = 0x1d;
    pub(crate) const F32: u8 = 0x20;
    pub(crate) const F64: u8 = 0x21;
    pub(crate) const CHAR: u8 = 0x22;
    pub(crate) const STR: u8 = 0x23;
    pub(crate) const BYTES: u8 = 0x24;
}

/// Why a value could not be encoded.
#[derive(Debug, PartialEq)]
pub(super) enum EncodeError {
    /// A NaN or infinite float.
    NonFinite,
    /// Nesting deeper than [`MAX_DEPTH`], a protocol error, or the value's own `Serialize` error.
    Custom(String),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::NonFinite => f.write_str("non-finite float"),
            EncodeError::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncodeError::Custom(msg.to_string())
    }
}

/// An unsigned LEB128 number (7 bits a byte, low bits first, minimal length).
#[derive(Clone, Copy)]
struct Varint {
    bytes: [u8; 10],
    len: u8,
}

impl Varint {
    /// Encodes `n`.
    #[inline]
    fn new(mut n: u64) -> Varint {
        let mut v = Varint {
            bytes: [0; 10],
            len: 0,
        };
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                v.bytes[v.len as usize] = low;
                v.len += 1;
                return v;
            }
            v.bytes[v.len as usize] = low | 0x80;
            v.len += 1;
        }
    }
}

impl AsRef<[u8]> for Varint {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Length-prefixed bytes: a [`Varint`] length, then the bytes.
///
/// Always inlined: names and most strings are shorter than 128 bytes, and their one-byte length
/// is then a push, where a call would cost more than the write. Longer ones take a call.
#[inline(always)]
pub(super) fn write_len_prefixed(buf: &mut Vec<u8>, bytes: &[u8]) {
    match u8::try_from(bytes.len()) {
        Ok(short) if short < 0x80 => {
            buf.push(short);
            buf.extend_from_slice(bytes);
        }
        _ => write_long_len_prefixed(buf, bytes),
    }
}

/// [`write_len_prefixed`] for 128 bytes or more: a length of two bytes or more.
#[inline(never)]
fn write_long_len_prefixed(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(Varint::new(bytes.len() as u64).as_ref());
    buf.extend_from_slice(bytes);
}

/// The growing buffer values are encoded into, with the scratch state of the map being written.
#[derive(Debug, Clone, Default)]
pub(super) struct Encoder {
    buf: Vec<u8>,
    /// `(start, end)` offsets in `buf` of the entries of every map being written, innermost last.
    entries: Vec<(usize, usize)>,
    depth: usize,
}

impl Encoder {
    /// Makes room for at least `additional` more bytes.
    pub(super) fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    /// How many bytes the buffer holds without growing.
    #[inline]
    pub(super) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends `bytes` as they are.
    #[inline]
    pub(super) fn write_raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Replaces the bytes at `at..at + bytes.len()` (which must have been written).
    #[inline]
    pub(super) fn overwrite(&mut self, at: usize, bytes: &[u8]) {
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Everything encoded so far.
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// How many bytes are encoded so far.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Drops everything written from `len` on (an argument that failed half way).
    pub(super) fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
        self.entries.clear();
        self.depth = 0;
    }

    /// Appends length-prefixed `bytes` (no tag: for names whose place says what they are).
    #[inline]
    pub(super) fn write_name(&mut self, name: &str) {
        write_len_prefixed(&mut self.buf, name.as_bytes());
    }

    /// Appends the encoding of `value`. On an error the buffer holds a partial encoding: the
    /// caller truncates it.
    pub(super) fn encode<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), EncodeError> {
        self.depth = 0;
        self.entries.clear();
        value.serialize(&mut *self)
    }

    /// Enters one level of nesting, refusing to go deeper than [`MAX_DEPTH`].
    #[inline]
    fn enter(&mut self) -> Result<(), EncodeError> {
        if self.depth >= MAX_DEPTH {
            return Err(EncodeError::Custom(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    /// Opens a list (sequence, tuple, map or struct): checks the depth, then writes `tag`.
    #[inline]
    fn open(&mut self, tag: u8) -> Result<&mut Self, EncodeError> {
        self.enter()?;
        self.buf.push(tag);
        Ok(self)
    }

    /// Closes the list opened last.
    #[inline]
    fn close(&mut self) {
        self.buf.push(tag::END);
        self.depth -= 1;
    }

    /// Writes `tag`, then `value` one level deeper.
    #[inline]
    fn wrap<T: Serialize + ?Sized>(&mut self, tag: u8, value: &T) -> Result<(), EncodeError> {
        self.enter()?;
        self.buf.push(tag);
        value.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }

    /// An enum variant: its index (`u32`, big-endian), then its name, length-prefixed.
    #[inline]
    fn write_variant(&mut self, index: u32, variant: &str) {
        self.buf.extend_from_slice(&index.to_be_bytes());
        self.write_name(variant);
    }

    /// A string value, tagged.
    #[inline]
    fn write_str(&mut self, s: &str) {
        self.buf.push(tag::STR);
        self.write_name(s);
    }

    /// Puts the entries recorded from `entries[base]` on (one map's, all written one after the
    /// other up to the end of the buffer) into byte order, in place, and forgets them.
    fn sort_entries(&mut self, base: usize) {
        let Encoder { buf, entries, .. } = self;
        let mine = &mut entries[base..];
        let out_of_order = mine
            .windows(2)
            .any(|w| cmp_bytes(&buf[w[0].0..w[0].1], &buf[w[1].0..w[1].1]).is_gt());
        if out_of_order && mine.len() == 2 {
            // Two entries, written one after the other to the end of the buffer: copy the first
            // after the second, then move both back to where the first started.
            let (start, end) = (mine[0].0, buf.len());
            buf.extend_from_within(start..mine[0].1);
            buf.copy_within(mine[0].1.., start);
            buf.truncate(end);
        } else if out_of_order {
            let (start, end) = (mine[0].0, buf.len());
            mine.sort_unstable_by(|a, b| cmp_bytes(&buf[a.0..a.1], &buf[b.0..b.1]));
            for &(s, e) in mine.iter() {
                buf.extend_from_within(s..e);
            }
            buf.copy_within(end.., start);
            buf.truncate(end);
        }
        entries.truncate(base);
    }
}

/// Compares byte strings in byte order, deciding on their first eight bytes, read as one
/// big-endian number, without a call when those differ (for map entries they usually do: the
/// key's tag, length and first bytes).
#[inline]
fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    if let (Some(x), Some(y)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
    }
    a.cmp(b)
}

macro_rules! fixed_width {
    ($($method:ident: $ty:ty => $tag:ident),* $(,)?) => {
        $(#[inline]
        fn $method(self, v: $ty) -> Result<(), EncodeError> {
            self.buf.push(tag::$tag);
            self.buf.extend_from_slice(&v.to_be_bytes());
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for &'a mut Encoder {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = MapEncoder<'a>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fixed_width!(
        serialize_i8: i8 => I8, serialize_i16: i16 => I16, serialize_i32: i32 => I32,
        serialize_i64: i64 => I64, serialize_i128: i128 => I128,
        serialize_u8: u8 => U8, serialize_u16: u16 => U16, serialize_u32: u32 => U32,
        serialize_u64: u64 => U64, serialize_u128: u128 => U128,
    );

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.buf.extend_from_slice(&[tag::BOOL, u8::from(v)]);
        Ok(())
    }
    // Floats are written bit for bit, so -0.0 and 0.0 are distinct keys. NaN (whose payloads
    // differ from one computation to the next) and the infinities are refused.
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        if !v.is_finite() {
            return Err(EncodeError::NonFinite);
        }
        self.buf.push(tag::F32);
        self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        if !v.is_finite() {
            return Err(EncodeError::NonFinite);
        }
        self.buf.push(tag::F64);
        self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        self.buf.push(tag::CHAR);
        self.buf.extend_from_slice(&u32::from(v).to_be_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.write_str(v);
        Ok(())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        self.buf.push(tag::BYTES);
        write_len_prefixed(&mut self.buf, v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.buf.push(tag::NONE);
        Ok(())
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        self.wrap(tag::SOME, value)
    }
    #[inline]
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.buf.push(tag::UNIT);
        Ok(())
    }
    // Type names are not written: renaming a type keeps its keys, and the type of each argument
    // is fixed by the function anyway. Variant and field names are written.
    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.buf.push(tag::UNIT_STRUCT);
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.buf.push(tag::UNIT_VARIANT);
        self.write_variant(index, variant);
        Ok(())
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.wrap(tag::NEWTYPE_STRUCT, value)
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.enter()?;
        self.buf.push(tag::NEWTYPE_VARIANT);
        self.write_variant(index, variant);
        value.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }
    // Lists end with `END` rather than starting with the length a `Serialize` impl announces,
    // which a hand-written impl may get wrong.
    #[inline]
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, EncodeError> {
        self.open(tag::SEQ)
    }
    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Self, EncodeError> {
        self.open(tag::TUPLE)
    }
    #[inline]
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, EncodeError> {
        self.open(tag::TUPLE_STRUCT)
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self, EncodeError> {
        let this = self.open(tag::TUPLE_VARIANT)?;
        this.write_variant(index, variant);
        Ok(this)
    }
    #[inline]
    fn serialize_map(self, _len: Option<usize>) -> Result<MapEncoder<'a>, EncodeError> {
        let enc = self.open(tag::MAP)?;
        if enc.entries.capacity() == 0 {
            enc.entries.reserve(8);
        }
        Ok(MapEncoder {
            base: enc.entries.len(),
            key_start: None,
            enc,
        })
    }
    // What `HashMap`, `BTreeMap` and most maps call: each entry is written and recorded in one
    // step, without `SerializeMap`'s key-then-value protocol to check. The same bytes as
    // through `serialize_map`.
    #[inline]
    fn collect_map<K, V, I>(self, iter: I) -> Result<(), EncodeError>
    where
        K: Serialize,
        V: Serialize,
        I: IntoIterator<Item = (K, V)>,
    {
        let enc = self.open(tag::MAP)?;
        if enc.entries.capacity() == 0 {
            enc.entries.reserve(8);
        }
        let base = enc.entries.len();
        for (key, value) in iter {
            let start = enc.len();
            key.serialize(&mut *enc)?;
            value.serialize(&mut *enc)?;
            enc.entries.push((start, enc.len()));
        }
        enc.sort_entries(base);
        enc.close();
        Ok(())
    }
    #[inline]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, EncodeError> {
        self.open(tag::STRUCT)
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self, EncodeError> {
        let this = self.open(tag::STRUCT_VARIANT)?;
        this.write_variant(index, variant);
        Ok(this)
    }
}

/// Sequences, tuples, tuple structs and tuple variants: each element's encoding, then `END`.
macro_rules! list_of_elements {
    ($($trait:ident::$method:ident),* $(,)?) => {
        $(impl ser::$trait for &mut Encoder {
            type Ok = ();
            type Error = EncodeError;
            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
                value.serialize(&mut **self)
            }
            #[inline]
            fn end(self) -> Result<(), EncodeError> {
                self.close();
                Ok(())
            }
        })*
    };
}

list_of_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

/// Structs and struct variants: each field's name (as a tagged string) and value, in the order
/// the type serializes them, then `END`. A skipped field is simply absent.
macro_rules! list_of_fields {
    ($($trait:ident),* $(,)?) => {
        $(impl ser::$trait for &mut Encoder {
            type Ok = ();
            type Error = EncodeError;
            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), EncodeError> {
                self.write_str(key);
                value.serialize(&mut **self)
            }
            #[inline]
            fn end(self) -> Result<(), EncodeError> {
                self.close();
                Ok(())
            }
        })*
    };
}

list_of_fields!(SerializeStruct, SerializeStructVariant);

/// A map being written: entries (key encoding, then value encoding) go straight into the
/// buffer, and are put into byte order when the map ends.
#[derive(Debug)]
pub(super) struct MapEncoder<'a> {
    enc: &'a mut Encoder,
    /// Where this map's entries start on the encoder's entry stack.
    base: usize,
    /// Where the entry whose key was written last starts, until its value is written.
    key_start: Option<usize>,
}

impl ser::SerializeMap for MapEncoder<'_> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        if self.key_start.is_some() {
            return Err(ser::Error::custom("a map key without a value"));
        }
        self.key_start = Some(self.enc.len());
        key.serialize(&mut *self.enc)
    }
    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        let Some(start) = self.key_start.take() else {
            return Err(ser::Error::custom("a map value without a key"));
        };
        value.serialize(&mut *self.enc)?;
        self.enc.entries.push((start, self.enc.len()));
        Ok(())
    }
    #[inline]
    fn end(self) -> Result<(), EncodeError> {
        if self.key_start.is_some() {
            return Err(ser::Error::custom("a map key without a value"));
        }
        self.enc.sort_entries(self.base);
        self.enc.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::ser::{SerializeMap, Serializer};

    fn encode<V: Serialize + ?Sized>(v: &V) -> Vec<u8> {
        let mut e = Encoder::default();
        e.encode(v).unwrap();
        e.bytes().to_vec()
    }

    #[test]
    fn varints_are_minimal_leb128() {
        assert_eq!(Varint::new(0).as_ref(), [0]);
        assert_eq!(Varint::new(127).as_ref(), [0x7f]);
        assert_eq!(Varint::new(128).as_ref(), [0x80, 0x01]);
        assert_eq!(Varint::new(300).as_ref(), [0xac, 0x02]);
        assert_eq!(Varint::new(u64::MAX).as_ref().len(), 10);
    }

    #[test]
    fn lengths_of_128_bytes_and_more_take_a_longer_varint() {
        for (len, prefix) in [
            (0, &[0x00][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (1 << 14, &[0x80, 0x80, 0x01]),
        ] {
            let s = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let mut expected = vec![tag::STR];
            expected.extend_from_slice(prefix);
            expected.extend_from_slice(s.as_bytes());
            assert_eq!(encode(&s), expected, "{len}");
            let mut e = Encoder::default();
            e.write_name(&s);
            assert_eq!(e.bytes(), &expected[1..], "{len}");
        }
    }

    /// A map whose entries come out in the order given, like a `preserve_order` JSON object.
    struct Ordered<'a>(&'a [(&'a str, Vec<(u8, u8)>)]);

    struct Inner<'a>(&'a [(u8, u8)]);

    impl Serialize for Inner<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            for (k, v) in self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }

    impl Serialize for Ordered<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            for (k, v) in self.0 {
                m.serialize_entry(k, &Inner(v))?;
            }
            m.end()
        }
    }

    #[test]
    fn map_entries_are_sorted_in_place_at_every_depth() {
        let sorted = encode(&Ordered(&[
            ("a", vec![(1, 9), (2, 8)]),
            ("b", vec![(3, 7)]),
        ]));
        let shuffled = encode(&Ordered(&[
            ("b", vec![(3, 7)]),
            ("a", vec![(2, 8), (1, 9)]),
        ]));
        assert_eq!(sorted, shuffled);
        let entry = |k: u8, v: u8| [tag::U8, k, tag::U8, v];
        let mut expected = vec![tag::MAP, tag::STR, 1, b'a', tag::MAP];
        expected.extend(entry(1, 9));
        expected.extend(entry(2, 8));
        expected.extend([tag::END, tag::STR, 1, b'b', tag::MAP]);
        expected.extend(entry(3, 7));
        expected.extend([tag::END, tag::END]);
        assert_eq!(sorted, expected);
    }

    #[test]
    fn collected_maps_are_written_as_maps_entry_by_entry_are() {
        use std::collections::{BTreeMap, HashMap};
        // `BTreeMap` and `HashMap` go through `collect_map`, `Ordered` through `serialize_map`.
        let collected = BTreeMap::from([
            ("status", HashMap::from([(2u8, 8u8), (1, 9), (3, 7)])),
            ("channel", HashMap::from([(4, 6)])),
            ("b", HashMap::new()),
        ]);
        let one_by_one = Ordered(&[
            ("channel", vec![(4, 6)]),
            ("status", vec![(3, 7), (1, 9), (2, 8)]),
            ("b", vec![]),
        ]);
        assert_eq!(encode(&collected), encode(&one_by_one));
        let entry = |k: u8, v: u8| [tag::U8, k, tag::U8, v];
        let mut expected = vec![tag::MAP, tag::STR, 1, b'b', tag::MAP, tag::END];
        expected.extend([tag::STR, 6]);
        expected.extend(b"status\x0c");
        expected.extend(entry(1, 9));
        expected.extend(entry(2, 8));
        expected.extend(entry(3, 7));
        expected.extend([tag::END, tag::STR, 7]);
        expected.extend(b"channel\x0c");
        expected.extend(entry(4, 6));
        expected.extend([tag::END, tag::END]);
        assert_eq!(encode(&collected), expected);
        let mut e = Encoder::default();
        let bad = BTreeMap::from([(1u8, 1.0f64), (2, f64::NAN)]);
        assert_eq!(e.encode(&(&collected, bad)), Err(EncodeError::NonFinite));
    }

    #[test]
    fn a_value_after_a_sorted_map_is_kept() {
        let shuffled = (Ordered(&[("b", vec![]), ("a", vec![])]), 5u8);
        let sorted = (Ordered(&[("a", vec![]), ("b", vec![])]), 5u8);
        assert_eq!(encode(&shuffled), encode(&sorted));
        assert_eq!(encode(&shuffled).last(), Some(&tag::END));
    }

    /// A map that breaks the `SerializeMap` protocol.
    struct KeyWithoutValue;

    impl Serialize for KeyWithoutValue {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            m.serialize_key("k")?;
            m.end()
        }
    }

    #[test]
    fn a_map_key_without_a_value_is_an_error() {
        let mut e = Encoder::default();
        assert!(matches!(
            e.encode(&KeyWithoutValue),
            Err(EncodeError::Custom(m)) if m.contains("without a value")
        ));
    }
}
