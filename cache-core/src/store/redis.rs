//! The Redis store: one multiplexed connection that reconnects by itself.

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisError, Script};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use super::Store;
use crate::error::StoreError;

/// Replace the value only if it still starts with the expected write token.
static REPLACE_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0",
    )
});

/// Delete the lock only if we still hold it.
static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0",
    )
});

/// Extend a tag set's expiry to at least ARGV[1] ms (portable: `PEXPIRE … GT` needs Redis 7).
const EXTEND_TTL: &str = r"local t = redis.call('PTTL', KEYS[1])
if t >= 0 and t < tonumber(ARGV[1]) or t == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0";

/// A [`Store`] on a single Redis server (or a managed Redis endpoint).
///
/// The connection is made on first use, so a cache can be built while Redis is down; the
/// `redis` crate's `ConnectionManager` reconnects after failures. Commands carry no timeout of
/// their own: the cache bounds each one.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    conn: Arc<OnceLock<ConnectionManager>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection info may hold a password: show only where it points.
        let info = self.client.get_connection_info();
        f.debug_struct("RedisStore")
            .field("addr", &info.addr().to_string())
            .finish()
    }
}

impl RedisStore {
    /// A store for `url` (`redis://host:port/db`, `rediss://` for TLS when the crate is built
    /// with TLS). Nothing is connected yet.
    ///
    /// # Errors
    ///
    /// When the URL cannot be parsed.
    pub fn open(url: &str) -> Result<RedisStore, RedisError> {
        Ok(RedisStore {
            client: redis::Client::open(url)?,
            conn: Arc::new(OnceLock::new()),
            connect_timeout: Duration::from_secs(1),
        })
    }

    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| redis_err("connect", e))?;
        Ok(self.conn.get_or_init(|| manager).clone())
    }
}

fn redis_err(op: &'static str, e: RedisError) -> StoreError {
    StoreError::Redis {
        op,
        source: Arc::new(e),
    }
}

fn classify(op: &'static str, key: &str, e: RedisError) -> StoreError {
    if e.code() == Some("WRONGTYPE") {
        StoreError::WrongType {
            key: key.to_string(),
        }
    } else {
        redis_err(op, e)
    }
}

fn tag_commands(pipe: &mut redis::Pipeline, key: &str, ttl_ms: u64, tag_keys: &[String]) {
    for t in tag_keys {
        pipe.sadd(t, key).ignore();
        pipe.cmd("EVAL")
            .arg(EXTEND_TTL)
            .arg(1)
            .arg(t)
            .arg(ttl_ms)
            .ignore();
    }
}

/// Escapes glob characters so a prefix matches literally in `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn()?;
        c.get(key).await.map_err(|e| classify("get", key, e))
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
    ) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
        tag_commands(&mut pipe, key, ttl_ms, tag_keys);
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| classify("set", key, e))
    }

    async fn replace_if(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
    ) -> Result<bool, StoreError> {
        let mut c = self.conn()?;
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let replaced: i64 = REPLACE_IF
            .key(key)
            .arg(expected)
            .arg(value)
            .arg(ttl_ms)
            .invoke_async(&mut c)
            .await
            .map_err(|e| classify("replace_if", key, e))?;
        if replaced == 1 && !tag_keys.is_empty() {
            let mut pipe = redis::pipe();
            tag_commands(&mut pipe, key, ttl_ms, tag_keys);
            pipe.query_async::<()>(&mut c)
                .await
                .map_err(|e| redis_err("tag", e))?;
        }
        Ok(replaced == 1)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut c = self.conn()?;
        let n: u64 = c.del(key).await.map_err(|e| redis_err("delete", e))?;
        Ok(n > 0)
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn()?;
        let ok: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut c)
            .await
            .map_err(|e| classify("lock", key, e))?;
        Ok(ok.is_some())
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        UNLOCK
            .key(key)
            .arg(token)
            .invoke_async::<i64>(&mut c)
            .await
            .map(drop)
            .map_err(|e| classify("unlock", key, e))
    }

    async fn delete_tagged(&self, tag_key: &str) -> Result<u64, StoreError> {
        let mut c = self.conn()?;
        let mut deleted = 0;
        // SPOP in batches: members added while we work stay in the set for the next purge
        // instead of being lost between a read and a delete.
        loop {
            let members: Vec<String> = redis::cmd("SPOP")
                .arg(tag_key)
                .arg(500)
                .query_async(&mut c)
                .await
                .map_err(|e| classify("delete_tagged", tag_key, e))?;
            if members.is_empty() {
                return Ok(deleted);
            }
            let n: u64 = c
                .unlink(&members)
                .await
                .map_err(|e| redis_err("delete_tagged", e))?;
            deleted += n;
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut c = self.conn()?;
        let pattern = format!("{}*", glob_escape(prefix));
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .map_err(|e| redis_err("delete_prefix", e))?;
            if !keys.is_empty() {
                let n: u64 = c
                    .unlink(&keys)
                    .await
                    .map_err(|e| redis_err("delete_prefix", e))?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(drop)
            .map_err(|e| redis_err("ping", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape(r"a*b?[c]\"), r"a\*b\?\[c\]\\");
    }

    #[test]
    fn debug_hides_the_password() {
        let s = RedisStore::open("redis://:hunter2@127.0.0.1:6379/0").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
