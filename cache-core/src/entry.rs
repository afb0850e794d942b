//! The stored form of a cached value: a format tag naming its codec, a write id, the windows it
//! was written with, and the value.
//!
//! Both layouts start with a 21-byte write token: a 4-byte format tag, 16 hex digits of a
//! random write id and `\n`; a refresh replaces an entry only if it still starts with the token
//! it read (compare-and-set).
//!
//! - JSON ([`Codec::Json`]): `AC1:` + write id + `\n` + `{"at":ms,"f":ms,"s":ms,"d":ms,"v":value}`.
//! - MessagePack ([`Codec::MessagePack`]): `AM1:` + write id + `\n` + a fixed 32-byte header
//!   (`at`, `f`, `s`, `d`: big-endian `u64` milliseconds) + the MessagePack value. The header is
//!   read without touching the value.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Codec, ValueError};

/// The format tag of a JSON entry; any other tag is another codec, an older format or foreign.
pub(crate) const MAGIC: &[u8; 4] = b"AC1:";
/// The format tag of a MessagePack entry.
pub(crate) const MAGIC_MESSAGE_PACK: &[u8; 4] = b"AM1:";
/// Length of the write token (format tag, write id, newline).
pub(crate) const TOKEN_LEN: usize = 4 + 16 + 1;
/// Length of the MessagePack entry's fixed header after the token.
const HEADER_LEN: usize = 4 * 8;

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

/// Encodes a value; returns the bytes (whose first [`TOKEN_LEN`] are the write token).
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    meta: Meta,
    write_id: u64,
    codec: Codec,
) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(magic(codec));
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend(
        (0..16)
            .rev()
            .map(|i| HEX[((write_id >> (i * 4)) & 0xf) as usize]),
    );
    out.push(b'\n');
    match codec {
        Codec::Json => serde_json::to_writer(
            &mut out,
            &EnvelopeOut {
                at: meta.at,
                f: meta.fresh,
                s: meta.stale,
                d: meta.delta,
                v: value,
            },
        )?,
        Codec::MessagePack => {
            for n in [meta.at, meta.fresh, meta.stale, meta.delta] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            codec::write_message_pack(&mut out, value)
                .map_err(<serde_json::Error as serde::ser::Error>::custom)?;
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

/// The codec an entry was written with, if it is one of ours.
fn codec_of(bytes: &[u8]) -> Option<Codec> {
    if bytes.len() < TOKEN_LEN || bytes[TOKEN_LEN - 1] != b'\n' {
        return None;
    }
    match &bytes[..4] {
        m if m == MAGIC => Some(Codec::Json),
        m if m == MAGIC_MESSAGE_PACK && bytes.len() >= TOKEN_LEN + HEADER_LEN => {
            Some(Codec::MessagePack)
        }
        _ => None,
    }
}

/// The fixed header of a MessagePack entry (checked by [`codec_of`] to be there).
fn header(bytes: &[u8]) -> Meta {
    let n = |i: usize| {
        let at = TOKEN_LEN + 8 * i;
        u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    };
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
    let found = codec_of(bytes).ok_or(DecodeError::Format)?;
    if found != codec {
        return Err(DecodeError::OtherCodec);
    }
    match codec {
        Codec::Json => {
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
        Codec::MessagePack => {
            let value = codec::read_message_pack(&bytes[TOKEN_LEN + HEADER_LEN..])
                .map_err(DecodeError::Value)?;
            Ok((value, header(bytes)))
        }
    }
}

/// The timing metadata of an encoded entry of any codec, without decoding its value (a
/// MessagePack entry's fixed header is read as is). The write path keeps the metadata it
/// encoded instead; the tests check that it reads back, and soft purges read it.
pub(crate) fn meta(bytes: &[u8]) -> Option<Meta> {
    match codec_of(bytes)? {
        Codec::Json => decode::<serde::de::IgnoredAny>(bytes, Codec::Json)
            .ok()
            .map(|(_, m)| m),
        Codec::MessagePack => Some(header(bytes)),
    }
}

/// The write token of an encoded entry.
/// The same entry with new windows and a new write id, its value bytes untouched; `None` when
/// the bytes are not exactly in a layout [`encode`] writes (then nothing is rewritten).
pub(crate) fn restamp(bytes: &[u8], meta: Meta, write_id: u64) -> Option<Vec<u8>> {
    let codec = codec_of(bytes)?;
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(&bytes[..4]);
    out.extend_from_slice(format!("{write_id:016x}\n").as_bytes());
    match codec {
        Codec::Json => {
            let mut rest = bytes[TOKEN_LEN..].strip_prefix(b"{")?;
            for field in [&b"\"at\":"[..], b",\"f\":", b",\"s\":", b",\"d\":"] {
                rest = rest.strip_prefix(field)?;
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                rest = &rest[digits..];
            }
            let value = rest.strip_prefix(b",\"v\":")?.strip_suffix(b"}")?;
            let head = format!(
                "{{\"at\":{},\"f\":{},\"s\":{},\"d\":{},\"v\":",
                meta.at, meta.fresh, meta.stale, meta.delta
            );
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(value);
            out.push(b'}');
        }
        Codec::MessagePack => {
            for n in [meta.at, meta.fresh, meta.stale, meta.delta] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            out.extend_from_slice(&bytes[TOKEN_LEN + HEADER_LEN..]);
        }
    }
    // Only what reads back with exactly these windows is written.
    (self::meta(&out) == Some(meta)).then_some(out)
}

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

    #[test]
    fn restamping_changes_the_windows_and_token_and_keeps_the_value_bytes() {
        let value = serde_json::json!({"n": 1E2, "s": "a,\"v\":}"});
        let later = Meta { fresh: 0, ..META };
        for codec in CODECS {
            let bytes = encode(&value, META, 1, codec).unwrap();
            let out = restamp(&bytes, later, 2).unwrap();
            assert_eq!(&token(&out)[..4], &token(&bytes)[..4], "same codec");
            assert_eq!(&token(&out)[4..], b"0000000000000002\n");
            assert_eq!(meta(&out), Some(later));
            assert_eq!(out[out.len() - 20..], bytes[bytes.len() - 20..]);
            let (v, _): (serde_json::Value, Meta) = decode(&out, codec).unwrap();
            assert_eq!(v["s"], "a,\"v\":}");
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
        let bytes = encode(&vec!["a", "b"], META, 0xabc, Codec::Json).unwrap();
        assert_eq!(token(&bytes), b"AC1:0000000000000abc\n");
        let bytes = encode(&vec!["a", "b"], META, 0xabc, Codec::MessagePack).unwrap();
        assert_eq!(token(&bytes), b"AM1:0000000000000abc\n");
        for codec in CODECS {
            let bytes = encode(&vec!["a", "b"], META, u64::MAX, codec).unwrap();
            let (v, m): (Vec<String>, Meta) = decode(&bytes, codec).unwrap();
            assert_eq!(v, ["a", "b"]);
            assert_eq!(m, META);
            assert_eq!(meta(&bytes), Some(META));
        }
    }

    #[test]
    fn foreign_or_truncated_bytes_are_refused() {
        for codec in CODECS {
            let good = encode(&1u32, META, 1, codec).unwrap();
            for bad in [
                &b""[..],
                b"hello",
                b"AC0:0000000000000001\n{}",
                b"AM1:0000000000000001\n\x00",
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
            let bytes = encode(&5u8, META, 1, written).unwrap();
            assert!(matches!(
                decode::<u8>(&bytes, read),
                Err(DecodeError::OtherCodec)
            ));
            assert_eq!(meta(&bytes), Some(META));
        }
    }
}
