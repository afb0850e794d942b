//! The stored form of a cached value: a format tag naming its codec, a write id, the windows it
//! was written with, the tags it was written with, and the value.
//!
//! Both layouts start with a 21-byte write token: a 4-byte format tag, 16 hex digits of a
//! random write id and `\n`; a refresh replaces an entry only if it still starts with the token
//! it read (compare-and-set).
//!
//! - JSON ([`Codec::Json`]): `AC1:` + write id + `\n` +
//!   `{"at":ms,"f":ms,"s":ms,"d":ms,"t":[tags],"v":value}`, `"t"` only when there are tags.
//! - MessagePack ([`Codec::MessagePack`]): `AM2:` + write id + `\n` + a fixed 36-byte header
//!   (`at`, `f`, `s`, `d`: big-endian `u64` milliseconds; the tag block's length: big-endian
//!   `u32`) + the tag block (each tag a big-endian `u32` length and its UTF-8 bytes) + the
//!   MessagePack value. The header and tags are read without touching the value. `AM1:` entries
//!   (before tags were recorded: a 32-byte header, then the value) are still read.

use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Codec, ValueError};

/// The format tag of a JSON entry; any other tag is another codec, an older format or foreign.
pub(crate) const MAGIC: &[u8; 4] = b"AC1:";
/// The format tag of a MessagePack entry.
pub(crate) const MAGIC_MESSAGE_PACK: &[u8; 4] = b"AM2:";
/// The format tag of a MessagePack entry written before tags were recorded (read, not written).
const MAGIC_MESSAGE_PACK_1: &[u8; 4] = b"AM1:";
/// Length of the write token (format tag, write id, newline).
pub(crate) const TOKEN_LEN: usize = 4 + 16 + 1;
/// Length of the windows in a MessagePack entry's header.
const TIMES_LEN: usize = 4 * 8;
/// Length of the MessagePack entry's fixed header after the token: the windows and the length
/// of the tag block.
const HEADER_LEN: usize = TIMES_LEN + 4;

/// Timing metadata of an entry, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// When it was cached (Unix ms).
    pub(crate) at: u64,
    /// The fresh window it was written with.
    pub(crate) fresh: u64,
    /// The stale window it was written with.
    pub(crate) stale: u64,
    /// How long the load took.
    pub(crate) delta: u64,
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T: ?Sized> {
    at: u64,
    f: u64,
    s: u64,
    d: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    t: &'a [String],
    v: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn<T> {
    at: u64,
    f: u64,
    s: u64,
    d: u64,
    v: T,
}

fn magic(codec: Codec) -> &'static [u8; 4] {
    match codec {
        Codec::Json => MAGIC,
        Codec::MessagePack => MAGIC_MESSAGE_PACK,
    }
}

fn encode_error(message: &str) -> serde_json::Error {
    <serde_json::Error as serde::ser::Error>::custom(message)
}

/// Appends the 16 hex digits of a write id and the token's newline.
fn push_write_id(out: &mut Vec<u8>, write_id: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend(
        (0..16)
            .rev()
            .map(|i| HEX[((write_id >> (i * 4)) & 0xf) as usize]),
    );
    out.push(b'\n');
}

/// Appends a MessagePack entry's tag block length and tag block.
fn push_tag_block(out: &mut Vec<u8>, tags: &[String]) -> serde_json::Result<()> {
    let too_long = || encode_error("the entry's tags are over 4 GiB");
    let block: usize = tags.iter().map(|t| 4 + t.len()).sum();
    out.extend_from_slice(&u32::try_from(block).map_err(|_| too_long())?.to_be_bytes());
    for t in tags {
        out.extend_from_slice(
            &u32::try_from(t.len())
                .map_err(|_| too_long())?
                .to_be_bytes(),
        );
        out.extend_from_slice(t.as_bytes());
    }
    Ok(())
}

/// Encodes a value with the tags it carries; returns the bytes (whose first [`TOKEN_LEN`] are
/// the write token).
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    meta: Meta,
    tags: &[String],
    write_id: u64,
    codec: Codec,
) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(magic(codec));
    push_write_id(&mut out, write_id);
    match codec {
        Codec::Json => serde_json::to_writer(
            &mut out,
            &EnvelopeOut {
                at: meta.at,
                f: meta.fresh,
                s: meta.stale,
                d: meta.delta,
                t: tags,
                v: value,
            },
        )?,
        Codec::MessagePack => {
            for n in [meta.at, meta.fresh, meta.stale, meta.delta] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            push_tag_block(&mut out, tags)?;
            codec::write_message_pack(&mut out, value).map_err(|e| encode_error(&e.to_string()))?;
        }
    }
    Ok(out)
}

/// Why bytes could not be read as an entry.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Not our format (or an older version of it).
    Format,
    /// Our format, written with another codec than the reader's.
    OtherCodec,
    /// Our format, but the value does not fit the expected type.
    Value(ValueError),
}

/// Where the parts of one of our entries are.
enum Layout {
    /// A JSON envelope after the token.
    Json,
    /// A MessagePack entry: where its tag block and its value are.
    MessagePack { tags: Range<usize>, value: usize },
}

impl Layout {
    fn codec(&self) -> Codec {
        match self {
            Layout::Json => Codec::Json,
            Layout::MessagePack { .. } => Codec::MessagePack,
        }
    }
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn be_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 4)?;
    usize::try_from(u32::from_be_bytes(b.try_into().expect("4 bytes"))).ok()
}

/// The layout of an entry, if it is one of ours and its header is whole.
fn layout(bytes: &[u8]) -> Option<Layout> {
    if bytes.len() < TOKEN_LEN || bytes[TOKEN_LEN - 1] != b'\n' {
        return None;
    }
    let times = TOKEN_LEN + TIMES_LEN;
    match &bytes[..4] {
        m if m == MAGIC => Some(Layout::Json),
        m if m == MAGIC_MESSAGE_PACK => {
            let block = be_u32(bytes, times)?;
            let start = TOKEN_LEN + HEADER_LEN;
            let end = start.checked_add(block).filter(|&end| end <= bytes.len())?;
            // The block must be whole tags, or the value would be read from the wrong place.
            let mut at = start;
            while at < end {
                at = at.checked_add(4)?.checked_add(be_u32(bytes, at)?)?;
            }
            if at != end {
                return None;
            }
            Some(Layout::MessagePack {
                tags: start..end,
                value: end,
            })
        }
        m if m == MAGIC_MESSAGE_PACK_1 && bytes.len() >= times => Some(Layout::MessagePack {
            tags: times..times,
            value: times,
        }),
        _ => None,
    }
}

/// The windows in a MessagePack entry's header (checked by [`layout`] to be there).
fn header(bytes: &[u8]) -> Meta {
    let n = |i: usize| be_u64(bytes, TOKEN_LEN + 8 * i);
    Meta {
        at: n(0),
        fresh: n(1),
        stale: n(2),
        delta: n(3),
    }
}

/// Decodes an entry written by [`encode`] with `codec`.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    codec: Codec,
) -> Result<(T, Meta), DecodeError> {
    let found = layout(bytes).ok_or(DecodeError::Format)?;
    if found.codec() != codec {
        return Err(DecodeError::OtherCodec);
    }
    match found {
        Layout::Json => {
            let e: EnvelopeIn<T> = serde_json::from_slice(&bytes[TOKEN_LEN..])
                .map_err(|e| DecodeError::Value(ValueError::Json(e)))?;
            let meta = Meta {
                at: e.at,
                fresh: e.f,
                stale: e.s,
                delta: e.d,
            };
            Ok((e.v, meta))
        }
        Layout::MessagePack { value, .. } => {
            let value = codec::read_message_pack(&bytes[value..]).map_err(DecodeError::Value)?;
            Ok((value, header(bytes)))
        }
    }
}

/// The timing metadata of an encoded entry of any codec, without decoding its value (a
/// MessagePack entry's fixed header is read as is). The write path keeps the metadata it
/// encoded instead; the tests check that it reads back, and soft purges read it.
pub(crate) fn meta(bytes: &[u8]) -> Option<Meta> {
    match layout(bytes)? {
        Layout::Json => decode::<serde::de::IgnoredAny>(bytes, Codec::Json)
            .ok()
            .map(|(_, m)| m),
        Layout::MessagePack { .. } => Some(header(bytes)),
    }
}

/// The tags an entry says it was written with, without decoding its value; `None` when the
/// bytes are not one of our entries (a JSON entry must be in the layout [`encode`] writes).
pub(crate) fn tags(bytes: &[u8]) -> Option<Vec<String>> {
    match layout(bytes)? {
        Layout::Json => {
            let parts = split_json(&bytes[TOKEN_LEN..])?;
            match parts.tags {
                None => Some(Vec::new()),
                Some(raw) => serde_json::from_slice(raw).ok(),
            }
        }
        Layout::MessagePack { tags, .. } => {
            // `layout` checked that the block is whole tags.
            let mut block = &bytes[tags];
            let mut out = Vec::new();
            while let Some(len) = be_u32(block, 0) {
                out.push(std::str::from_utf8(&block[4..4 + len]).ok()?.to_string());
                block = &block[4 + len..];
            }
            Some(out)
        }
    }
}

/// A JSON envelope as [`encode`] writes it, taken apart without parsing the value.
struct JsonParts<'a> {
    /// The raw `"t"` array, when there is one.
    tags: Option<&'a [u8]>,
    /// The raw value.
    value: &'a [u8],
}

/// Takes apart `{"at":ms,"f":ms,"s":ms,"d":ms[,"t":[...]],"v":value}`; `None` for any other
/// layout (another field order, spaces, a foreign writer).
fn split_json(body: &[u8]) -> Option<JsonParts<'_>> {
    let mut rest = body.strip_prefix(b"{")?;
    for field in [&b"\"at\":"[..], b",\"f\":", b",\"s\":", b",\"d\":"] {
        rest = rest.strip_prefix(field)?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &rest[digits..];
    }
    let mut tags = None;
    if let Some(after) = rest.strip_prefix(b",\"t\":") {
        let mut stream = serde_json::Deserializer::from_slice(after).into_iter::<Vec<String>>();
        stream.next()?.ok()?;
        let end = stream.byte_offset();
        tags = Some(&after[..end]);
        rest = &after[end..];
    }
    let value = rest.strip_prefix(b",\"v\":")?.strip_suffix(b"}")?;
    Some(JsonParts { tags, value })
}

/// The same entry with new windows and a new write id, its tags and value bytes untouched;
/// `None` when the bytes are not exactly in a layout [`encode`] writes (then nothing is
/// rewritten).
pub(crate) fn restamp(bytes: &[u8], meta: Meta, write_id: u64) -> Option<Vec<u8>> {
    let found = layout(bytes)?;
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(&bytes[..4]);
    push_write_id(&mut out, write_id);
    match found {
        Layout::Json => {
            let parts = split_json(&bytes[TOKEN_LEN..])?;
            let head = format!(
                "{{\"at\":{},\"f\":{},\"s\":{},\"d\":{}",
                meta.at, meta.fresh, meta.stale, meta.delta
            );
            out.extend_from_slice(head.as_bytes());
            if let Some(tags) = parts.tags {
                out.extend_from_slice(b",\"t\":");
                out.extend_from_slice(tags);
            }
            out.extend_from_slice(b",\"v\":");
            out.extend_from_slice(parts.value);
            out.push(b'}');
        }
        Layout::MessagePack { .. } => {
            for n in [meta.at, meta.fresh, meta.stale, meta.delta] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            out.extend_from_slice(&bytes[TOKEN_LEN + TIMES_LEN..]);
        }
    }
    // Only what reads back with exactly these windows is written.
    (self::meta(&out) == Some(meta)).then_some(out)
}

/// The write token of an encoded entry.
pub(crate) fn token(bytes: &[u8]) -> &[u8] {
    &bytes[..TOKEN_LEN.min(bytes.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: Meta = Meta {
        at: 1,
        fresh: 2,
        stale: 3,
        delta: 4,
    };
    const CODECS: [Codec; 2] = [Codec::Json, Codec::MessagePack];

    fn tags() -> Vec<String> {
        vec![
            "order:42".into(),
            "a \"quoted\" ,\"v\": tag\n".into(),
            String::new(),
        ]
    }

    #[test]
    fn restamping_changes_the_windows_and_token_and_keeps_the_value_bytes() {
        let value = serde_json::json!({"n": 1E2, "s": "a,\"v\":}"});
        let later = Meta { fresh: 0, ..META };
        for codec in CODECS {
            let bytes = encode(&value, META, &tags(), 1, codec).unwrap();
            let out = restamp(&bytes, later, 2).unwrap();
            assert_eq!(&token(&out)[..4], &token(&bytes)[..4], "same codec");
            assert_eq!(&token(&out)[4..], b"0000000000000002\n");
            assert_eq!(meta(&out), Some(later));
            assert_eq!(out[out.len() - 20..], bytes[bytes.len() - 20..]);
            let (v, _): (serde_json::Value, Meta) = decode(&out, codec).unwrap();
            assert_eq!(v["s"], "a,\"v\":}");
            assert_eq!(super::tags(&out), Some(tags()), "{codec:?} keeps its tags");
        }
        for foreign in [
            &b"AC1:0000000000000001\n{\"v\":1,\"at\":1,\"f\":2,\"s\":3,\"d\":4}"[..],
            b"hello",
        ] {
            assert_eq!(restamp(foreign, later, 2), None);
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&vec!["a", "b"], META, &[], 0xabc, Codec::Json).unwrap();
        assert_eq!(token(&bytes), b"AC1:0000000000000abc\n");
        assert!(
            !String::from_utf8_lossy(&bytes).contains("\"t\""),
            "no tags, no field"
        );
        let bytes = encode(&vec!["a", "b"], META, &[], 0xabc, Codec::MessagePack).unwrap();
        assert_eq!(token(&bytes), b"AM2:0000000000000abc\n");
        for codec in CODECS {
            let bytes = encode(&vec!["a", "b"], META, &tags(), u64::MAX, codec).unwrap();
            let (v, m): (Vec<String>, Meta) = decode(&bytes, codec).unwrap();
            assert_eq!(v, ["a", "b"]);
            assert_eq!(m, META);
            assert_eq!(meta(&bytes), Some(META));
            assert_eq!(super::tags(&bytes), Some(tags()));
            let untagged = encode(&1u8, META, &[], 1, codec).unwrap();
            assert_eq!(super::tags(&untagged), Some(vec![]));
        }
    }

    #[test]
    fn an_entry_of_the_first_message_pack_layout_still_reads() {
        let mut old = b"AM1:0000000000000001\n".to_vec();
        for n in [META.at, META.fresh, META.stale, META.delta] {
            old.extend_from_slice(&n.to_be_bytes());
        }
        codec::write_message_pack(&mut old, &vec!["a", "b"]).unwrap();
        let (v, m): (Vec<String>, Meta) = decode(&old, Codec::MessagePack).unwrap();
        assert_eq!((v, m), (vec!["a".to_string(), "b".to_string()], META));
        assert_eq!(super::tags(&old), Some(vec![]));
        let later = Meta { fresh: 0, ..META };
        let restamped = restamp(&old, later, 2).unwrap();
        assert_eq!(&restamped[..4], b"AM1:", "restamped in its own layout");
        assert_eq!(
            decode::<Vec<String>>(&restamped, Codec::MessagePack)
                .unwrap()
                .1,
            later
        );
    }

    #[test]
    fn a_tag_block_that_overruns_its_entry_is_refused() {
        let good = encode(&1u8, META, &tags(), 1, Codec::MessagePack).unwrap();
        let block_len = TOKEN_LEN + TIMES_LEN;
        for claimed in [u32::MAX, 1_000, 3] {
            let mut bad = good.clone();
            bad[block_len..block_len + 4].copy_from_slice(&claimed.to_be_bytes());
            assert!(matches!(
                decode::<u8>(&bad, Codec::MessagePack),
                Err(DecodeError::Format)
            ));
            assert_eq!(super::tags(&bad), None, "claimed {claimed}");
        }
    }

    #[test]
    fn foreign_or_truncated_bytes_are_refused() {
        for codec in CODECS {
            let good = encode(&1u32, META, &tags(), 1, codec).unwrap();
            for bad in [
                &b""[..],
                b"hello",
                b"AC0:0000000000000001\n{}",
                b"AM1:0000000000000001\n\x00",
                b"AM2:0000000000000001\n\x00",
                &good[..good.len() - 1],
                b"\xff\xfe\x00garbage",
            ] {
                assert!(decode::<u32>(bad, codec).is_err(), "{codec:?} {bad:?}");
            }
            assert!(matches!(
                decode::<String>(&good, codec),
                Err(DecodeError::Value(_))
            ));
        }
    }

    #[test]
    fn an_entry_of_another_codec_is_never_read_as_this_one() {
        // `{` is also MessagePack's fixint 123: only the format tag tells them apart.
        for (written, read) in [
            (Codec::Json, Codec::MessagePack),
            (Codec::MessagePack, Codec::Json),
        ] {
            let bytes = encode(&5u8, META, &[], 1, written).unwrap();
            assert!(matches!(
                decode::<u8>(&bytes, read),
                Err(DecodeError::OtherCodec)
            ));
            assert_eq!(meta(&bytes), Some(META));
        }
    }
}
