//! How a cached value is written inside its entry: JSON (the default) or MessagePack.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// The format of the value inside an entry, chosen per [`Cache`](crate::Cache)
/// ([`CacheBuilder::codec`](crate::CacheBuilder::codec)) and per function
/// ([`PolicyBuilder::codec`](crate::PolicyBuilder::codec)).
///
/// The codec is recorded in the entry's format tag: a reader expecting another codec treats
/// the entry as a miss (counted in `corrupt_entries`) and its load overwrites it, so switching
/// codecs costs one miss per key and never decodes one format as the other.
///
/// ```
/// use action_cache_core::{Cache, Codec};
///
/// let cache = Cache::builder().in_memory().codec(Codec::MessagePack).build()?;
/// # let _ = cache;
/// # Ok::<(), action_cache_core::CacheError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// JSON (`serde_json`): entries are readable from any language (the format tag is `AC1:`,
    /// then a JSON envelope). The default.
    #[default]
    Json,
    /// MessagePack (`rmp-serde`), structs written as maps with their field names: about a
    /// third smaller than JSON and faster to decode, and self-describing, so
    /// `#[serde(skip_serializing_if)]`, `#[serde(default)]`, untagged enums, `flatten` and
    /// `serde_json::Value` work as with JSON, and reordering or adding optional fields does not
    /// change what an entry means. The format tag is `AM2:`, then a fixed binary header with the
    /// windows and the tags, read without touching the value.
    MessagePack,
}

/// A value that could not be decoded with its codec.
#[derive(Debug)]
pub(crate) enum ValueError {
    Json(serde_json::Error),
    MessagePack(rmp_serde::decode::Error),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Json(e) => write!(f, "JSON: {e}"),
            ValueError::MessagePack(e) => write!(f, "MessagePack: {e}"),
        }
    }
}

/// Appends the MessagePack form of `value` (structs as maps with field names).
pub(crate) fn write_message_pack<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), rmp_serde::encode::Error> {
    rmp_serde::encode::write_named(out, value)
}

/// Reads a MessagePack value.
pub(crate) fn read_message_pack<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValueError> {
    rmp_serde::from_slice(bytes).map_err(ValueError::MessagePack)
}
