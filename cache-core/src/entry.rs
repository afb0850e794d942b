//! The stored form of a cached value: a format tag, a write id, the windows it was written with,
//! and the value.
//!
//! Layout: `AC1:` + 16 hex digits of a random write id + `\n` + JSON
//! `{"at":ms,"f":ms,"s":ms,"d":ms,"v":value}`. The first [`TOKEN_LEN`] bytes identify one write,
//! so a refresh can replace an entry only if it is still the one it read (compare-and-set).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The format tag; a different one is an older or foreign entry and reads as a miss.
pub(crate) const MAGIC: &[u8; 4] = b"AC1:";
/// Length of the write token (magic, write id, newline).
pub(crate) const TOKEN_LEN: usize = 4 + 16 + 1;

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

/// Encodes a value; returns the bytes (whose first [`TOKEN_LEN`] are the write token).
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    meta: Meta,
    write_id: u64,
) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(format!("{write_id:016x}\n").as_bytes());
    serde_json::to_writer(
        &mut out,
        &EnvelopeOut {
            at: meta.at,
            f: meta.fresh,
            s: meta.stale,
            d: meta.delta,
            v: value,
        },
    )?;
    Ok(out)
}

/// Why bytes could not be read as an entry.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Not our format (or an older version of it).
    Format,
    /// Our format, but the value does not fit the expected type.
    Json(serde_json::Error),
}

/// Decodes an entry written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, Meta), DecodeError> {
    if bytes.len() < TOKEN_LEN || &bytes[..4] != MAGIC || bytes[TOKEN_LEN - 1] != b'\n' {
        return Err(DecodeError::Format);
    }
    let e: EnvelopeIn<T> =
        serde_json::from_slice(&bytes[TOKEN_LEN..]).map_err(DecodeError::Json)?;
    Ok((
        e.v,
        Meta {
            at: e.at,
            fresh: e.f,
            stale: e.s,
            delta: e.d,
        },
    ))
}

/// The timing metadata of an encoded entry, without decoding its value.
pub(crate) fn meta(bytes: &[u8]) -> Option<Meta> {
    decode::<serde::de::IgnoredAny>(bytes).ok().map(|(_, m)| m)
}

/// The write token of an encoded entry.
/// The same entry with new windows and a new write id, its value bytes untouched; `None` when
/// the bytes are not exactly in the layout [`encode`] writes (then nothing is rewritten).
pub(crate) fn restamp(bytes: &[u8], meta: Meta, write_id: u64) -> Option<Vec<u8>> {
    if bytes.len() < TOKEN_LEN || &bytes[..4] != MAGIC || bytes[TOKEN_LEN - 1] != b'\n' {
        return None;
    }
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
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(format!("{write_id:016x}\n").as_bytes());
    let head = format!(
        "{{\"at\":{},\"f\":{},\"s\":{},\"d\":{},\"v\":",
        meta.at, meta.fresh, meta.stale, meta.delta
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(value);
    out.push(b'}');
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

    #[test]
    fn restamping_changes_the_windows_and_token_and_keeps_the_value_bytes() {
        let bytes = encode(&serde_json::json!({"n": 1E2, "s": "a,\"v\":}"}), META, 1).unwrap();
        let later = Meta { fresh: 0, ..META };
        let out = restamp(&bytes, later, 2).unwrap();
        assert_eq!(token(&out), b"AC1:0000000000000002\n");
        assert_eq!(meta(&out), Some(later));
        assert_eq!(out[out.len() - 20..], bytes[bytes.len() - 20..]);
        let (v, _): (serde_json::Value, Meta) = decode(&out).unwrap();
        assert_eq!(v["s"], "a,\"v\":}");
        for foreign in [
            &b"AC1:0000000000000001\n{\"v\":1,\"at\":1,\"f\":2,\"s\":3,\"d\":4}"[..],
            b"hello",
        ] {
            assert_eq!(restamp(foreign, later, 2), None);
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&vec!["a", "b"], META, 0xabc).unwrap();
        assert_eq!(token(&bytes), b"AC1:0000000000000abc\n");
        let (v, m): (Vec<String>, Meta) = decode(&bytes).unwrap();
        assert_eq!(v, ["a", "b"]);
        assert_eq!(m, META);
    }

    #[test]
    fn foreign_or_truncated_bytes_are_refused() {
        let good = encode(&1u32, META, 1).unwrap();
        for bad in [
            &b""[..],
            b"hello",
            b"AC0:0000000000000001\n{}",
            &good[..good.len() - 2],
            b"\xff\xfe\x00garbage",
        ] {
            assert!(decode::<u32>(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(decode::<String>(&good), Err(DecodeError::Json(_))));
    }
}
