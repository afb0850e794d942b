//! Key identity: the bytes hashed into a key are injective over serde's data model, independent
//! of map iteration order and of the order of `arg` calls, refuse what cannot be keyed, and stay
//! the same from one build to the next (a pinned digest and a byte layout checked by hand).

use action_cache_core::{CacheKey, KeyBuilder, KeyError};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The digest of `f(x = value)`.
fn digest<V: Serialize + ?Sized>(value: &V) -> String {
    let mut b = KeyBuilder::new("f");
    b.arg("x", value).expect("keyable");
    b.build().digest().to_string()
}

/// Asserts that every value gives its own key.
macro_rules! all_distinct {
    ($($value:expr),+ $(,)?) => {{
        let digests = [$(($crate::digest(&$value), stringify!($value))),+];
        for (i, (a, name_a)) in digests.iter().enumerate() {
            for (b, name_b) in &digests[i + 1..] {
                assert_ne!(a, b, "`{name_a}` and `{name_b}` share a key");
            }
        }
    }};
}

#[derive(Serialize)]
struct UnitStruct;

#[derive(Serialize)]
struct Newtype(u32);

#[derive(Serialize)]
struct Pair(u8, u8);

#[derive(Serialize)]
struct Fields {
    a: u32,
}

#[derive(Serialize)]
enum Shape {
    Unit,
    Newtype(u32),
    Tuple(u8, u8),
    Struct { a: u32 },
}

#[derive(Serialize)]
enum Other {
    // Same variant name as `Shape::Tuple`, but one tuple-typed field.
    Tuple((u8, u8)),
}

/// Bytes that serialize as serde bytes (what `serde_bytes` does), not as a sequence.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A unit variant with the given index and name, as a hand-written `Serialize` may emit.
struct Variant(u32, &'static str);

impl Serialize for Variant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit_variant("E", self.0, self.1)
    }
}

/// A map whose entries come out in insertion order, as `serde_json::Map` with the
/// `preserve_order` feature (or an `IndexMap`) writes them.
struct InsertionOrder<K, V>(Vec<(K, V)>);

impl<K: Serialize, V: Serialize> Serialize for InsertionOrder<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[test]
fn none_and_some_none_are_distinct() {
    all_distinct!(
        None::<Option<u32>>,
        Some(None::<u32>),
        Some(Some(0u32)),
        Some(Some(Some(()))),
    );
}

#[test]
fn unit_unit_struct_unit_variant_and_none_are_distinct() {
    all_distinct!((), UnitStruct, Shape::Unit, None::<()>, Some(()));
}

#[test]
fn a_unit_variant_is_not_its_name_as_a_string() {
    all_distinct!(Shape::Unit, "Unit");
}

#[test]
fn newtype_structs_and_variants_are_not_what_they_wrap() {
    all_distinct!(
        Newtype(5),
        5u32,
        Shape::Newtype(5),
        BTreeMap::from([("Newtype", 5u32)]),
    );
}

#[test]
fn enum_variants_are_told_apart_by_index_and_by_name() {
    all_distinct!(Variant(0, "A"), Variant(1, "A"), Variant(0, "B"),);
}

#[test]
fn sequences_tuples_tuple_structs_and_bytes_are_distinct() {
    all_distinct!(
        vec![1u8, 2],
        (1u8, 2u8),
        Pair(1, 2),
        Bytes(&[1, 2]),
        Shape::Tuple(1, 2),
        Other::Tuple((1, 2)),
    );
    // `[T; N]` serializes as a tuple: the same value as the tuple, so the same key.
    assert_eq!(digest(&[1u8, 2]), digest(&(1u8, 2u8)));
}

#[test]
fn maps_structs_and_struct_variants_are_distinct() {
    all_distinct!(
        BTreeMap::from([("a", 1u32)]),
        Fields { a: 1 },
        Shape::Struct { a: 1 },
        BTreeMap::from([("Struct", BTreeMap::from([("a", 1u32)]))]),
    );
}

#[test]
fn integer_widths_floats_strings_chars_and_bools_are_distinct() {
    all_distinct!(
        1u8, 1u16, 1u32, 1u64, 1u128, 1i8, 1i16, 1i32, 1i64, 1i128, 1.0f32, 1.0f64, "1", '1', true,
        "true",
    );
    all_distinct!('a', "a", Bytes(b"a"));
}

#[test]
fn wide_integers_are_keyed_in_full() {
    all_distinct!(
        u128::MAX,
        u128::MAX - 1,
        i128::MIN,
        i128::MIN + 1,
        u64::MAX as u128
    );
}

#[test]
fn floats_are_keyed_bit_for_bit() {
    all_distinct!(0.0f64, -0.0f64, f64::MIN_POSITIVE, 0.0f32, -0.0f32);
}

#[test]
fn non_finite_floats_are_refused_with_the_argument_named() {
    for bad in [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut b = KeyBuilder::new("f");
        let nested = HashMap::from([("k", vec![Some(1.0f32), Some(bad as f32)])]);
        assert_eq!(
            b.arg("m", &nested).unwrap_err(),
            KeyError::NonFiniteFloat { arg: "m".into() }
        );
        assert_eq!(
            b.arg("x", &bad).unwrap_err().to_string(),
            "argument `x` holds a non-finite float, which cannot be keyed without colliding \
             with null"
        );
    }
}

#[test]
fn string_boundaries_are_part_of_the_key() {
    all_distinct!(
        ("ab", "c"),
        ("a", "bc"),
        vec!["abc"],
        vec!["ab", "c"],
        vec!["a", "", "bc"]
    );
    let mut a = KeyBuilder::new("f");
    a.arg("a", "b").unwrap();
    let mut b = KeyBuilder::new("f");
    b.arg("ab", "").unwrap();
    let mut c = KeyBuilder::new("fa");
    c.arg("", "b").unwrap();
    let keys: HashSet<CacheKey> = [a.build(), b.build(), c.build()].into();
    assert_eq!(keys.len(), 3);
}

#[test]
fn maps_with_non_string_keys_are_keyed_whatever_their_order() {
    let forward: HashMap<(u8, i64), Vec<u32>> = (0..32)
        .map(|i| ((i, -(i as i64)), vec![i as u32]))
        .collect();
    let backward: HashMap<(u8, i64), Vec<u32>> = (0..32)
        .rev()
        .map(|i| ((i, -(i as i64)), vec![i as u32]))
        .collect();
    assert_eq!(digest(&forward), digest(&backward));
    let sorted: BTreeMap<_, _> = forward.clone().into_iter().collect();
    assert_eq!(digest(&forward), digest(&sorted));
}

#[test]
fn map_order_does_not_matter_at_any_depth() {
    // Each `HashMap` gets its own random hasher state, so iteration orders differ.
    type Nested = HashMap<String, Vec<HashMap<String, HashMap<u32, bool>>>>;
    let build = || -> Nested {
        (0..12)
            .map(|i| {
                let inner = (0..6)
                    .map(|j| {
                        (
                            format!("n{j}"),
                            (0..5).map(|k| (k * j, k % 2 == 0)).collect(),
                        )
                    })
                    .collect();
                (format!("k{i}"), vec![inner, HashMap::new()])
            })
            .collect()
    };
    let digests: HashSet<String> = (0..16).map(|_| digest(&build())).collect();
    assert_eq!(digests.len(), 1);
}

#[test]
fn insertion_ordered_maps_give_the_key_of_sorted_ones() {
    // What `serde_json` with `preserve_order` (or an `IndexMap`) hands the serializer.
    let inner_ab = InsertionOrder(vec![("a", 1u8), ("b", 2)]);
    let inner_ba = InsertionOrder(vec![("b", 2u8), ("a", 1)]);
    let outer_1 = InsertionOrder(vec![("y", &inner_ab), ("x", &inner_ba)]);
    let outer_2 = InsertionOrder(vec![("x", &inner_ab), ("y", &inner_ab)]);
    let sorted = BTreeMap::from([
        ("x", BTreeMap::from([("a", 1u8), ("b", 2)])),
        ("y", BTreeMap::from([("a", 1u8), ("b", 2)])),
    ]);
    assert_eq!(digest(&outer_1), digest(&sorted));
    assert_eq!(digest(&outer_2), digest(&sorted));
    // A JSON object, whichever map type serde_json was built with.
    let json: serde_json::Value =
        serde_json::from_str(r#"{"y":{"b":2,"a":1},"x":{"a":1,"b":2}}"#).unwrap();
    let json_sorted: serde_json::Value =
        serde_json::from_str(r#"{"x":{"a":1,"b":2},"y":{"a":1,"b":2}}"#).unwrap();
    assert_eq!(digest(&json), digest(&json_sorted));
}

#[test]
fn the_order_of_arg_calls_does_not_matter() {
    let long = "L".repeat(300);
    let args: [(&str, &dyn erased_serde_free::Arg); 4] = [
        ("b", &2u8),
        ("a", &long),
        ("ab", &HashMap::from([(1, "x"), (2, "y")])),
        ("", &None::<u8>),
    ];
    let mut seen = HashSet::new();
    for perm in permutations(args.len()) {
        let mut b = KeyBuilder::new("f");
        for &i in &perm {
            let (name, value) = args[i];
            value.add(&mut b, name);
        }
        seen.insert((b.canonical_bytes(), b.build()));
    }
    assert_eq!(seen.len(), 1, "24 orders, one key");
}

/// Every ordering of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for at in 0..=p.len() {
            let mut q = p.clone();
            q.insert(at, n - 1);
            out.push(q);
        }
    }
    out
}

/// Arguments of different types in one list.
mod erased_serde_free {
    use action_cache_core::KeyBuilder;
    use serde::Serialize;

    pub(crate) trait Arg {
        fn add(&self, b: &mut KeyBuilder, name: &str);
    }

    impl<T: Serialize> Arg for T {
        fn add(&self, b: &mut KeyBuilder, name: &str) {
            b.arg(name, self).expect("keyable");
        }
    }
}

/// A map nested `depth` levels deep, produced on the fly so the test holds nothing deep.
struct Deep(usize);

impl Serialize for Deep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        if self.0 <= 1 {
            m.serialize_entry("k", &0)?;
        } else {
            m.serialize_entry("k", &Deep(self.0 - 1))?;
        }
        m.end()
    }
}

#[test]
fn nesting_is_bounded_at_128_levels() {
    assert!(KeyBuilder::new("f").arg("d", &Deep(128)).is_ok());
    let err = KeyBuilder::new("f").arg("d", &Deep(129)).unwrap_err();
    assert_eq!(
        err,
        KeyError::Serialize {
            arg: "d".into(),
            message: "nested deeper than 128 levels".into()
        }
    );
    // Every kind of nesting counts.
    assert!(KeyBuilder::new("f").arg("v", &Nest::new(128)).is_ok());
    assert!(matches!(
        KeyBuilder::new("f").arg("v", &Nest::new(129)),
        Err(KeyError::Serialize { message, .. }) if message == "nested deeper than 128 levels"
    ));
}

#[test]
fn ten_thousand_levels_give_an_error_not_a_stack_overflow() {
    // A small stack: the refusal must come long before the recursion could exhaust it.
    let result = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| KeyBuilder::new("f").arg("d", &Deep(10_000)).map(|_| ()))
        .unwrap()
        .join()
        .expect("no overflow");
    assert!(
        matches!(&result, Err(KeyError::Serialize { message, .. }) if message.contains("nested deeper than 128")),
        "{result:?}"
    );
}

/// A value nested through each of serde's wrapping forms in turn: `Some`, a newtype struct, a
/// newtype variant, a sequence, a tuple, a struct and a map.
enum Nest {
    Leaf,
    Level(usize, Box<Nest>),
}

impl Nest {
    fn new(depth: usize) -> Nest {
        (0..depth).fold(Nest::Leaf, |inner, i| Nest::Level(i % 7, Box::new(inner)))
    }
}

impl Serialize for Nest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct, SerializeTuple};
        let Nest::Level(form, inner) = self else {
            return s.serialize_u8(0);
        };
        match form {
            0 => s.serialize_some(inner),
            1 => s.serialize_newtype_struct("N", inner),
            2 => s.serialize_newtype_variant("E", 0, "V", inner),
            3 => {
                let mut seq = s.serialize_seq(Some(1))?;
                seq.serialize_element(inner)?;
                seq.end()
            }
            4 => {
                let mut t = s.serialize_tuple(1)?;
                t.serialize_element(inner)?;
                t.end()
            }
            5 => {
                let mut st = s.serialize_struct("S", 1)?;
                st.serialize_field("f", inner)?;
                st.end()
            }
            _ => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(&(), inner)?;
                m.end()
            }
        }
    }
}

#[test]
fn the_byte_layout_is_the_documented_one() {
    // README, "Keys": version, name, schema version, then arguments in name order.
    let mut b = KeyBuilder::new("crm.search");
    b.version(3)
        .arg("tenant", "acme")
        .unwrap()
        .arg("filters", &BTreeMap::from([("status", Some('o'))]))
        .unwrap()
        .arg("limit", &50u32)
        .unwrap()
        .arg("shape", &Shape::Tuple(1, 2))
        .unwrap();
    let mut expected = vec![0, 0, 0, 2]; // key-format version 2, u32 big-endian
    expected.extend([1, 0, 0, 0, 3]); // schema version: present, u32 big-endian
    expected.extend(b"\x0acrm.search"); // name: LEB128 length, UTF-8
    expected.extend(b"\x07filters\x0c"); // argument name, then a map
    expected.extend(b"\x23\x06status"); // key: a string
    expected.extend([0x02, 0x22, 0, 0, 0, b'o']); // value: Some(char)
    expected.extend([0x00]); // end of map
    expected.extend(b"\x05limit\x1b\x00\x00\x00\x32"); // u32 50
    expected.extend(b"\x05shape\x0b\x00\x00\x00\x02\x05Tuple"); // tuple variant 2 "Tuple"
    expected.extend([0x19, 1, 0x19, 2, 0x00]); // u8 1, u8 2, end
    expected.extend(b"\x06tenant\x23\x04acme"); // a string
    assert_eq!(b.canonical_bytes(), expected);
    assert_eq!(CacheKey::FORMAT_VERSION, 2);
    // Without a version, its slot is zeros.
    let mut b = KeyBuilder::new("f");
    b.arg("x", &()).unwrap();
    assert_eq!(b.canonical_bytes(), b"\0\0\0\x02\0\0\0\0\0\x01f\x01x\x03");
}

#[test]
fn keys_are_stable_across_builds() {
    // Pinned: a change here changes every key in every deployed cache. If the change is
    // intended, bump `CacheKey::FORMAT_VERSION`, update the README's "Keys" section and this pin.
    let mut b = KeyBuilder::new("crm.search");
    b.arg("tenant", "acme-eu")
        .unwrap()
        .arg("query", "open orders for account")
        .unwrap()
        .arg("region", "eu-west-1")
        .unwrap()
        .arg("limit", &50u32)
        .unwrap()
        .arg(
            "filters",
            &HashMap::from([("status", "open"), ("channel", "voice")]),
        )
        .unwrap()
        .arg(
            "page",
            &(None::<Option<u8>>, Some(-1.5f64), Shape::Struct { a: 7 }),
        )
        .unwrap();
    let key = b.build();
    assert_eq!(
        key.digest(),
        "af3d9f19a605866ffb2f83e06a0bcad08276967ca1d0ea163d0aba5016ab7201"
    );
    assert_eq!(
        key.with_prefix("ac"),
        format!("ac:crm.search:{}", key.digest())
    );
}
