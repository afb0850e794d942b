//! Every store-key shape, in one place.
//!
//! | key | shape | cluster slot |
//! |---|---|---|
//! | entry | `{prefix}:{name}:{digest}` (braces in the name written as parentheses) | its own |
//! | load/refresh lock | `{{entry}}:lock` | the entry's |
//! | entry purge generation | `{{entry}}:gen` | the entry's |
//! | tag set | `{prefix}#tag:{tag}`, or `{prefix}#tag#{sha256(tag)}` for a tag that is long or not plain printable ASCII | its own |
//! | tag purge generation | `{{tag set}}:gen` | the tag set's |
//! | entries of a tag being purged | `{{tag set}}:purging` | the tag set's |
//! | prefix purge generation | `{prefix}#gen` | its own |
//! | near-cache channel | `{prefix}:__near` | (pub/sub) |
//!
//! Nothing but entries lives under `{prefix}:`, so a prefix purge (`SCAN MATCH {prefix}:…*`)
//! only ever deletes entries.

use sha2::Digest;
use std::time::Duration;

use crate::key::CacheKey;

/// How long a purge generation is kept after its last purge or put: a load that takes longer
/// than this is not stored, since a purge during it might no longer be seen.
pub(crate) const GENERATION_TTL: Duration = Duration::from_secs(10 * 60);

/// The key shapes of one cache prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keyspace {
    prefix: String,
}

impl Keyspace {
    pub(crate) fn new(prefix: String) -> Keyspace {
        Keyspace { prefix }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The entry key of `key`: `{prefix}:{name}:{digest}`.
    pub(crate) fn entry(&self, key: &CacheKey) -> String {
        key.with_prefix(&self.prefix)
    }

    /// The lock key of an entry, in the entry's cluster hash slot: the whole entry key (which
    /// never contains braces) is the lock's hash tag.
    pub(crate) fn lock(full: &str) -> String {
        format!("{{{full}}}:lock")
    }

    /// The purge generation of one entry, in the entry's hash slot (like its lock).
    pub(crate) fn generation(full: &str) -> String {
        format!("{{{full}}}:gen")
    }

    /// The entries of a tag set that a purge has taken off it and not yet deleted, in the tag
    /// set's hash slot (see `Store::delete_tagged` of the Redis store).
    #[cfg(feature = "redis")]
    pub(crate) fn tag_purging(tag_set: &str) -> String {
        format!("{{{tag_set}}}:purging")
    }

    /// The tag set of `tag`. Not under `{prefix}:` so prefix invalidation never eats the tag
    /// sets. Tags are often made of call arguments: one that is long, or holds anything but
    /// printable ASCII without braces (a Redis Cluster hash tag), is hashed, so tag-set keys are
    /// as safe and bounded as entry keys. `#tag#` keeps hashed tags apart from plain ones.
    pub(crate) fn tag(&self, tag: &str) -> String {
        let plain = tag.len() <= 100
            && tag
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if plain {
            format!("{}#tag:{tag}", self.prefix)
        } else {
            let digest = hex::encode(sha2::Sha256::digest(tag.as_bytes()));
            format!("{}#tag#{digest}", self.prefix)
        }
    }

    /// The tag sets of every tag `key` carries.
    pub(crate) fn tags(&self, key: &CacheKey) -> Vec<String> {
        key.tags().iter().map(|t| self.tag(t)).collect()
    }

    /// The purge generation of a tag, beside its tag set.
    pub(crate) fn tag_generation(tag_key: &str) -> String {
        format!("{{{tag_key}}}:gen")
    }

    /// The generation bumped by every prefix purge of this cache. Not under `{prefix}:`, so a
    /// prefix purge never deletes it.
    pub(crate) fn prefix_generation(&self) -> String {
        format!("{}#gen", self.prefix)
    }

    /// What a prefix purge of names starting with `name_prefix` matches.
    pub(crate) fn entries_named(&self, name_prefix: &str) -> String {
        format!("{}:{name_prefix}", self.prefix)
    }

    /// Every generation a load of `full` must find unchanged to store its value: the entry's
    /// own first (it shares the entry's slot), then its tags', then the prefix purges'.
    pub(crate) fn guards(&self, full: &str, key: &CacheKey) -> Vec<String> {
        let mut keys = Vec::with_capacity(key.tags().len() + 2);
        keys.push(Keyspace::generation(full));
        keys.extend(self.tags(key).iter().map(|t| Keyspace::tag_generation(t)));
        keys.push(self.prefix_generation());
        keys
    }

    /// The pub/sub channel of the near caches of this prefix.
    pub(crate) fn near_channel(&self) -> String {
        format!("{}:__near", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Keyspace;

    /// CRC16/XMODEM hash slot, as Redis Cluster computes it (only for checking lock keys).
    fn slot(key: &str) -> u16 {
        let bytes = key.as_bytes();
        let hashed = match bytes.iter().position(|&b| b == b'{') {
            Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
                Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
                _ => bytes,
            },
            None => bytes,
        };
        let mut crc: u16 = 0;
        for &b in hashed {
            crc ^= (b as u16) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn lock_keys_share_the_entrys_hash_slot() {
        assert_eq!(slot("123456789"), 0x31C3, "CRC16/XMODEM check value");
        for name in ["crm.account", "{weird}name", "a{}b", "a}b{c", "x"] {
            let full = crate::CacheKey::builder(name).build().with_prefix("ac");
            assert!(!full.contains(['{', '}']), "{full}");
            let lock = Keyspace::lock(&full);
            assert_eq!(slot(&lock), slot(&full), "{full} -> {lock}");
            assert_ne!(lock, full);
            let generation = Keyspace::generation(&full);
            assert_eq!(slot(&generation), slot(&full), "{full} -> {generation}");
        }
    }
}
