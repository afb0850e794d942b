//! The Redis store: one multiplexed connection that reconnects by itself.

use async_trait::async_trait;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncCommands, ConnectionAddr, IntoConnectionInfo, RedisError, RedisResult, Script};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

use super::{Store, Subscription};
use crate::error::StoreError;
use crate::keyspace::Keyspace;

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

/// Write the entry only if every purge generation still holds the value its load saw, and add
/// it to its tag sets. KEYS: entry, the n generation keys, then the tag sets; ARGV: value, TTL in
/// ms, n, then the n values seen. A generation that is absent counts as 0; one that holds
/// anything but a number never matches (when in doubt, do not store).
static SET_GUARDED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local n = tonumber(ARGV[3])
for i = 1, n do
  if tonumber(redis.call('GET', KEYS[1 + i]) or '0') ~= tonumber(ARGV[3 + i]) then return 0 end
end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for j = n + 2, #KEYS do
  redis.call('SADD', KEYS[j], KEYS[1])
  local t = redis.call('PTTL', KEYS[j])
  if t >= 0 and t < ttl or t == -1 then redis.call('PEXPIRE', KEYS[j], ttl) end
end
return 1",
    )
});

/// Delete the key only if it still holds exactly ARGV[1] (undoing our own write, not another's).
static DELETE_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0",
    )
});

/// Extend the lock's expiry only if we still hold it (a lease renewal).
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0",
    )
});

/// Move up to ARGV[1] members of the tag set KEYS[1] to the tag's set of entries being purged,
/// KEYS[2] (kept ARGV[2] ms), in one step; returns them.
static TAG_PURGE_BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local m = redis.call('SPOP', KEYS[1], ARGV[1])
if #m > 0 then
  redis.call('SADD', KEYS[2], unpack(m))
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return m",
    )
});

/// How long a tag's set of entries being purged outlives its last batch: a purge that died
/// between moving a batch and unlinking it leaves the batch for the next purge of the tag.
const TAG_PURGING_TTL_MS: u64 = 10 * 60 * 1000;

/// Extend a tag set's expiry to at least ARGV[1] ms (portable: `PEXPIRE … GT` needs Redis 7).
const EXTEND_TTL: &str = r"local t = redis.call('PTTL', KEYS[1])
if t >= 0 and t < tonumber(ARGV[1]) or t == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0";

/// A [`Store`] on Redis: a single server (or managed endpoint), a Sentinel-managed master, or a
/// Redis Cluster, in plain TCP or TLS (`rediss://`).
///
/// The connection is made on first use, so a cache can be built while Redis is down. A single
/// server is reached through the `redis` crate's `ConnectionManager`, a cluster through its async
/// cluster client; both reconnect after failures, and the cluster client follows `MOVED`/`ASK`
/// and failovers. Behind Sentinel, the master is asked of the sentinels on first use and again
/// after the connection to it fails or it answers `READONLY` (it was demoted), so a failover is
/// followed without a restart. Commands carry no timeout of their own: the cache bounds each one.
///
/// A configuration problem that no retry can fix (a certificate refused either way, a wrong
/// user name or password, an ACL user without a permission the cache needs) is logged once per
/// store at error level with what to change, and the calls meanwhile fail open. Passwords and
/// keys never appear in `Debug`, logs or errors.
///
/// In a cluster, an entry and its lock share a hash slot; tag sets live in their own slots and
/// are updated one slot at a time; prefix invalidation scans every master.
#[derive(Clone)]
pub struct RedisStore {
    target: Arc<Target>,
    reported: Arc<Reported>,
}

/// A connection attempt in progress: `None` until it ends, then its outcome.
type Attempt = watch::Receiver<Option<Result<(), RedisError>>>;

// One `Target` per store, behind an `Arc`: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Target {
    Single {
        client: redis::Client,
        conn: OnceLock<ConnectionManager>,
    },
    Sentinel {
        slot: Arc<SentinelSlot>,
        sentinels: Vec<String>,
        master: String,
    },
    Cluster {
        client: ClusterClient,
        /// One client per seed node, for pub/sub (which the cluster client does not carry).
        seeds: Vec<redis::Client>,
        nodes: Vec<String>,
        conn: Arc<OnceLock<ClusterConnection>>,
        connecting: Mutex<Option<Attempt>>,
    },
}

/// The master found through Sentinel, replaced after its connection fails.
struct SentinelSlot {
    /// Asks the sentinels; one discovery at a time.
    client: Arc<tokio::sync::Mutex<SentinelClient>>,
    /// The current master: an id (so a stale failure does not drop a newer connection), its
    /// connection, and a client for pub/sub on it.
    current: Mutex<Option<(u64, MultiplexedConnection, redis::Client)>>,
    next_id: AtomicU64,
}

impl SentinelSlot {
    fn current(&self) -> Option<(u64, MultiplexedConnection, redis::Client)> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets connection `id` (if it is still the current one): the next call asks the
    /// sentinels again.
    fn drop_conn(&self, id: u64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|(c, _, _)| *c == id) {
            *current = None;
        }
    }
}

/// Whether an error means the connection to a Sentinel-managed master is no longer worth
/// keeping: it broke, timed out, or the node was demoted to a replica.
fn master_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.code() == Some("READONLY")
        || e.code() == Some("MASTERDOWN")
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Connection info may hold a password: show only where it points.
        match &*self.target {
            Target::Single { client, .. } => f
                .debug_struct("RedisStore")
                .field("addr", &client.get_connection_info().addr().to_string())
                .finish(),
            Target::Sentinel {
                sentinels, master, ..
            } => f
                .debug_struct("RedisStore")
                .field("sentinels", sentinels)
                .field("master", master)
                .finish(),
            Target::Cluster { nodes, .. } => f
                .debug_struct("RedisStore")
                .field("cluster_nodes", nodes)
                .finish(),
        }
    }
}

/// TLS material for `rediss://` connections beyond the defaults (the public web PKI roots of
/// the `webpki-roots` crate, no client certificate). Its `Debug` never shows the material.
///
/// ```
/// use action_cache_core::store::RedisTls;
///
/// let tls = RedisTls::new(); // add .ca_cert(pem) and/or .client_cert(cert_pem, key_pem)
/// assert!(tls.is_default());
/// ```
#[derive(Clone, Default)]
pub struct RedisTls {
    ca_cert: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca_cert", &self.ca_cert.as_ref().map(|_| "<set>"))
            .field("client_cert", &self.client.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RedisTls {
    /// The defaults: public roots, no client certificate.
    pub fn new() -> RedisTls {
        RedisTls::default()
    }

    /// Trusts the CA certificates of this PEM bundle instead of the public roots (a private CA,
    /// as managed services and self-hosted TLS often use).
    pub fn ca_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_cert = Some(pem.into());
        self
    }

    /// Presents this PEM certificate chain and PEM private key to the server (mutual TLS, for a
    /// server run with `tls-auth-clients yes`).
    pub fn client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Whether nothing beyond the defaults is set.
    pub fn is_default(&self) -> bool {
        self.ca_cert.is_none() && self.client.is_none()
    }

    /// Checks that the material parses: a CA bundle with at least one certificate, a client
    /// chain with at least one, a private key.
    ///
    /// # Errors
    ///
    /// A message naming the part that does not parse (never its contents).
    pub fn check(&self) -> Result<(), String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = |pem: &[u8], what: &str| {
            let mut n = 0;
            for c in CertificateDer::pem_slice_iter(pem) {
                c.map_err(|_| format!("the {what} is not valid PEM"))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!("the {what} holds no PEM certificate"));
            }
            Ok(())
        };
        if let Some(ca) = &self.ca_cert {
            certs(ca, "CA certificate bundle")?;
        }
        if let Some((cert, key)) = &self.client {
            certs(cert, "client certificate")?;
            PrivateKeyDer::from_pem_slice(key)
                .map_err(|_| "the client key is not a PEM private key".to_string())?;
        }
        Ok(())
    }

    fn certificates(&self) -> Option<redis::TlsCertificates> {
        (!self.is_default()).then(|| redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca_cert.clone(),
        })
    }
}

/// A configuration problem that retrying cannot fix; each kind is logged once per store.
#[derive(Debug, Clone, Copy)]
enum Problem {
    Tls,
    Auth,
    NoPerm,
}

impl Problem {
    fn of(e: &RedisError) -> Option<Problem> {
        let code_is = |want: &[&str]| {
            e.code().is_some_and(|c| want.contains(&c))
                || e.clone()
                    .into_server_errors()
                    .is_some_and(|errs| errs.iter().any(|(_, s)| want.contains(&s.code())))
        };
        if code_is(&["NOPERM"]) {
            return Some(Problem::NoPerm);
        }
        if code_is(&["WRONGPASS", "NOAUTH"]) || e.kind() == redis::ErrorKind::AuthenticationFailed {
            return Some(Problem::Auth);
        }
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("certificate") || e.kind() == redis::ErrorKind::InvalidClientConfig {
            return Some(Problem::Tls);
        }
        None
    }

    fn summary(self) -> &'static str {
        match self {
            Problem::Tls => "TLS configuration error: a certificate was refused",
            Problem::Auth => "Redis authentication failed (wrong user name or password)",
            Problem::NoPerm => "the Redis ACL user lacks a permission the cache needs",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            Problem::Tls => {
                "TLS configuration error: check the CA bundle (REDIS_CA_CERT) and, for a server \
                 that verifies clients, the client certificate and key (REDIS_CLIENT_CERT, \
                 REDIS_CLIENT_KEY); calls fail open until it is fixed"
            }
            Problem::Auth => {
                "Redis refused the credentials (WRONGPASS/NOAUTH): check the user name and \
                 password in the Redis URL; calls fail open until it is fixed"
            }
            Problem::NoPerm => {
                "the Redis ACL user lacks a permission the cache needs (NOPERM): see README, \
                 'Redis ACL user', for the commands, keys and channel to allow; calls fail open \
                 until it is fixed"
            }
        }
    }
}

/// Which [`Problem`]s this store has logged already.
#[derive(Default)]
struct Reported([AtomicBool; 3]);

/// Makes sure rustls has a crypto provider: ring, unless the application installed one.
fn crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may win the race; either way one provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A client for one node, with the TLS material when there is any; warns when the URL turns
/// certificate checks off.
fn node_client(url: &str, tls: &RedisTls) -> RedisResult<redis::Client> {
    crypto_provider();
    let client = match tls.certificates() {
        Some(certs) => redis::Client::build_with_tls(url, certs)?,
        None => redis::Client::open(url)?,
    };
    if let ConnectionAddr::TcpTls {
        insecure: true,
        host,
        port,
        ..
    } = client.get_connection_info().addr()
    {
        tracing::warn!(
            addr = %format!("{host}:{port}"),
            "TLS certificate verification is OFF for this Redis (`#insecure` in the URL): \
             anyone on the path can read and change cached data"
        );
    }
    Ok(client)
}

/// `host:port` of a node URL, for `Debug` and logs (never credentials).
fn shown(url: &str) -> String {
    url.rsplit('@')
        .next()
        .unwrap_or(url)
        .trim_start_matches("rediss://")
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string()
}

/// A connection to either kind of deployment.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    /// The master found through Sentinel, with its slot and id to drop it when it fails.
    Sentinel(MultiplexedConnection, Arc<SentinelSlot>, u64),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c, slot, id) => {
                let (slot, id) = (Arc::clone(slot), *id);
                let reply = c.req_packed_command(cmd);
                Box::pin(async move {
                    let reply = reply.await;
                    if reply.as_ref().is_err_and(master_lost) {
                        slot.drop_conn(id);
                    }
                    reply
                })
            }
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c, slot, id) => {
                let (slot, id) = (Arc::clone(slot), *id);
                let reply = c.req_packed_commands(pipeline, offset, count);
                Box::pin(async move {
                    let reply = reply.await;
                    if reply.as_ref().is_err_and(master_lost) {
                        slot.drop_conn(id);
                    }
                    reply
                })
            }
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Sentinel(c, _, _) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl RedisStore {
    /// `GET key`: the bytes, or `None` when the key is absent.
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn().await?;
        c.get(key).await.map_err(|e| self.classify("get", key, e))
    }

    /// A store for one server at `url` (`redis://[[user]:password@]host:port/db`, or
    /// `rediss://…` for TLS with the public roots). Nothing is connected yet.
    ///
    /// # Errors
    ///
    /// When the URL cannot be parsed.
    pub fn open(url: &str) -> Result<RedisStore, RedisError> {
        RedisStore::open_tls(url, &RedisTls::default())
    }

    /// Like [`RedisStore::open`], with a custom CA bundle and/or client certificate for a
    /// `rediss://` URL. A URL ending in `#insecure` turns certificate checks off (logged at
    /// warn).
    ///
    /// # Errors
    ///
    /// When the URL cannot be parsed, or TLS material is given for a `redis://` URL or does not
    /// parse.
    pub fn open_tls(url: &str, tls: &RedisTls) -> Result<RedisStore, RedisError> {
        Ok(RedisStore::with(Target::Single {
            client: node_client(url, tls)?,
            conn: OnceLock::new(),
        }))
    }

    /// A store for a Redis Cluster reached through any of the seed `nodes`
    /// (`redis://host:port` or `rediss://host:port` each). Nothing is connected yet.
    ///
    /// # Errors
    ///
    /// When a node URL cannot be parsed or none is given.
    pub fn open_cluster<S: AsRef<str>>(nodes: &[S]) -> Result<RedisStore, RedisError> {
        RedisStore::open_cluster_tls(nodes, &RedisTls::default())
    }

    /// Like [`RedisStore::open_cluster`], with a custom CA bundle and/or client certificate for
    /// `rediss://` seed nodes (every node of the cluster is then reached over TLS).
    ///
    /// # Errors
    ///
    /// As [`RedisStore::open_cluster`], and when the TLS material does not parse.
    pub fn open_cluster_tls<S: AsRef<str>>(
        nodes: &[S],
        tls: &RedisTls,
    ) -> Result<RedisStore, RedisError> {
        let nodes: Vec<String> = nodes.iter().map(|n| n.as_ref().to_string()).collect();
        // Each seed client also checks its URL and warns about `#insecure` once.
        let seeds = nodes
            .iter()
            .map(|n| node_client(n, tls))
            .collect::<Result<_, _>>()?;
        let mut builder = ClusterClient::builder(nodes.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .retries(2);
        if let Some(certs) = tls.certificates() {
            builder = builder.certs(certs);
        }
        Ok(RedisStore::with(Target::Cluster {
            client: builder.build()?,
            seeds,
            nodes: nodes.iter().map(|n| shown(n)).collect(),
            conn: Arc::new(OnceLock::new()),
            connecting: Mutex::new(None),
        }))
    }

    /// A store for the master that the sentinels at `sentinels` (`redis://host:port` each, or
    /// `rediss://`; a user name and password in the URLs are the sentinels' own) report for
    /// `master_name`. `master_auth` is the master's own user name (if an ACL user) and
    /// password, when it needs them. The master is asked for on first use and again whenever
    /// its connection fails or it was demoted, so a failover is followed. With `rediss://`
    /// sentinel URLs the master is reached over TLS too, with the same `tls` material. Nothing
    /// is connected yet.
    ///
    /// # Errors
    ///
    /// When a sentinel URL cannot be parsed or none is given.
    pub fn open_sentinel<S: AsRef<str>>(
        sentinels: &[S],
        master_name: &str,
        master_auth: Option<(Option<&str>, &str)>,
        tls: &RedisTls,
    ) -> Result<RedisStore, RedisError> {
        crypto_provider();
        let mut addrs = Vec::new();
        let mut sentinel_auth = None;
        for url in sentinels {
            let info = url.as_ref().into_connection_info()?;
            let settings = info.redis_settings();
            if let (None, Some(password)) = (&sentinel_auth, settings.password()) {
                sentinel_auth = Some((
                    settings.username().map(str::to_string),
                    password.to_string(),
                ));
            }
            addrs.push(info.addr().clone());
        }
        if addrs.is_empty() {
            return Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "Sentinel needs at least one sentinel node",
            )));
        }
        let over_tls = addrs
            .iter()
            .any(|a| matches!(a, ConnectionAddr::TcpTls { .. }));
        let insecure = addrs
            .iter()
            .any(|a| matches!(a, ConnectionAddr::TcpTls { insecure: true, .. }));
        let mut builder =
            SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)?;
        if let Some((user, password)) = sentinel_auth {
            if let Some(user) = user {
                builder = builder.set_client_to_sentinel_username(user);
            }
            builder = builder.set_client_to_sentinel_password(password);
        }
        if let Some((user, password)) = master_auth {
            if let Some(user) = user {
                builder = builder.set_client_to_redis_username(user);
            }
            builder = builder.set_client_to_redis_password(password);
        }
        if over_tls {
            let mode = if insecure {
                tracing::warn!(
                    master = master_name,
                    "TLS certificate verification is OFF for this Sentinel deployment \
                     (`#insecure` in a sentinel URL)"
                );
                redis::TlsMode::Insecure
            } else {
                redis::TlsMode::Secure
            };
            builder = builder.set_client_to_redis_tls_mode(mode);
            if let Some(certs) = tls.certificates() {
                builder = builder
                    .set_client_to_sentinel_certificates(certs.clone())
                    .set_client_to_redis_certificates(certs);
            }
        }
        Ok(RedisStore::with(Target::Sentinel {
            slot: Arc::new(SentinelSlot {
                client: Arc::new(tokio::sync::Mutex::new(builder.build()?)),
                current: Mutex::new(None),
                next_id: AtomicU64::new(1),
            }),
            sentinels: sentinels.iter().map(|n| shown(n.as_ref())).collect(),
            master: master_name.to_string(),
        }))
    }

    fn with(target: Target) -> RedisStore {
        RedisStore {
            target: Arc::new(target),
            reported: Arc::new(Reported::default()),
        }
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(*self.target, Target::Cluster { .. })
    }

    /// Wraps a client error, logging a configuration problem once per store; a refused
    /// certificate or credentials become a [`StoreError::Connect`] that says so.
    fn err(&self, op: &'static str, e: RedisError) -> StoreError {
        if let Some(problem) = Problem::of(&e) {
            if !self.reported.0[problem as usize].swap(true, Ordering::Relaxed) {
                tracing::error!(store = ?self, op, error = %e, "{}", problem.advice());
            }
            if !matches!(problem, Problem::NoPerm) {
                return StoreError::Connect {
                    message: format!("{}: {e}", problem.summary()),
                };
            }
        }
        redis_err(op, e)
    }

    fn classify(&self, op: &'static str, key: &str, e: RedisError) -> StoreError {
        match classify(op, key, e) {
            StoreError::Redis { op, source } => self.err(op, RedisError::clone(&source)),
            other => other,
        }
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        match &*self.target {
            Target::Single { client, conn } => {
                if let Some(c) = conn.get() {
                    return Ok(Conn::Single(c.clone()));
                }
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(|e| self.err("connect", e))?;
                Ok(Conn::Single(conn.get_or_init(|| manager).clone()))
            }
            Target::Sentinel { slot, .. } => {
                if let Some((id, c, _)) = slot.current() {
                    return Ok(Conn::Sentinel(c, Arc::clone(slot), id));
                }
                self.discover(slot).await?;
                match slot.current() {
                    Some((id, c, _)) => Ok(Conn::Sentinel(c, Arc::clone(slot), id)),
                    None => Err(StoreError::Connect {
                        message: "no master reachable through the sentinels".into(),
                    }),
                }
            }
            Target::Cluster {
                client,
                conn,
                connecting,
                ..
            } => {
                if let Some(c) = conn.get() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                // Connect in a task of its own, so a caller's timeout cannot cancel the attempt
                // half-way; every caller meanwhile waits on the same attempt.
                let mut rx = {
                    let mut slot = connecting.lock().unwrap_or_else(|p| p.into_inner());
                    match slot.as_ref() {
                        Some(rx) if !matches!(*rx.borrow(), Some(Err(_))) => rx.clone(),
                        _ => {
                            let (tx, rx) = watch::channel(None);
                            let (client, cell) = (client.clone(), Arc::clone(conn));
                            tokio::spawn(async move {
                                let result = match client.get_async_connection().await {
                                    Ok(c) => {
                                        let _ = cell.set(c);
                                        Ok(())
                                    }
                                    Err(e) => Err(e),
                                };
                                tx.send_replace(Some(result));
                            });
                            *slot = Some(rx.clone());
                            rx
                        }
                    }
                };
                let outcome = rx.wait_for(Option::is_some).await.map(|o| o.clone());
                match (outcome, conn.get()) {
                    (_, Some(c)) => Ok(Conn::Cluster(c.clone())),
                    (Ok(Some(Err(e))), None) => Err(match self.err("connect", e) {
                        StoreError::Redis { source, .. } => StoreError::Connect {
                            message: source.to_string(),
                        },
                        other => other,
                    }),
                    _ => Err(StoreError::Connect {
                        message: "cluster connection attempt was abandoned".into(),
                    }),
                }
            }
        }
    }

    /// Asks the sentinels for the master and connects to it, in a task of its own (a caller's
    /// timeout cannot cancel it half-way); callers arriving meanwhile wait for that attempt.
    async fn discover(&self, slot: &Arc<SentinelSlot>) -> Result<(), StoreError> {
        let Ok(guard) = Arc::clone(&slot.client).try_lock_owned() else {
            // Another caller is asking: wait for its outcome.
            drop(slot.client.lock().await);
            return Ok(());
        };
        let slot = Arc::clone(slot);
        let attempt = tokio::spawn(async move {
            let mut client = guard;
            if slot.current().is_some() {
                return Ok(());
            }
            let master = client.async_get_client().await?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(CONNECT_TIMEOUT));
            let conn = master
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let id = slot.next_id.fetch_add(1, Ordering::Relaxed);
            *slot.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, conn, master));
            Ok::<(), RedisError>(())
        });
        match attempt.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(match self.err("sentinel", e) {
                StoreError::Redis { source, .. } => StoreError::Connect {
                    message: format!("no master through the sentinels: {source}"),
                },
                other => other,
            }),
            Err(_) => Err(StoreError::Connect {
                message: "the master discovery task failed".into(),
            }),
        }
    }

    /// The addresses of the cluster's reachable masters.
    async fn masters(&self, c: &mut ClusterConnection) -> Result<Vec<(String, u16)>, StoreError> {
        let nodes: String = c
            .route_command(
                redis::cmd("CLUSTER").arg("NODES").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
            .and_then(|v| redis::from_redis_value(v).map_err(RedisError::from))
            .map_err(|e| self.err("cluster_nodes", e))?;
        Ok(parse_masters(&nodes))
    }
}

/// Parses `CLUSTER NODES` output into the addresses of masters that are not failed.
fn parse_masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = *fields.get(2)?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            let addr = fields.get(1)?.split('@').next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        })
        .collect()
}

fn redis_err(op: &'static str, e: RedisError) -> StoreError {
    StoreError::Redis {
        op,
        source: Arc::new(e),
    }
}

fn classify(op: &'static str, key: &str, e: RedisError) -> StoreError {
    // A pipeline (an entry's `SET` with its tag sets) reports its commands' errors inside one
    // "pipeline failure" whose own code is empty: look inside, or a foreign value under a tag
    // set would count as the store failing and open the breaker for every key.
    let in_pipeline = || {
        e.clone()
            .into_server_errors()
            .is_some_and(|errs| errs.iter().any(|(_, s)| s.code() == "WRONGTYPE"))
    };
    if e.code() == Some("WRONGTYPE") || in_pipeline() {
        StoreError::WrongType {
            key: key.to_string(),
        }
    } else {
        redis_err(op, e)
    }
}

/// Adds `key` to each tag set and extends the set's expiry. Each tag set may live in its own
/// cluster slot, so each gets its own two-command pipeline (one round trip per tag, on writes
/// only); a single server takes them all in one.
async fn tag(
    c: &mut Conn,
    key: &str,
    ttl_ms: u64,
    tag_keys: &[String],
    mut pipe: redis::Pipeline,
) -> redis::RedisResult<()> {
    let per_slot = matches!(c, Conn::Cluster(_));
    for t in tag_keys {
        pipe.sadd(t, key).ignore();
        pipe.cmd("EVAL")
            .arg(EXTEND_TTL)
            .arg(1)
            .arg(t)
            .arg(ttl_ms)
            .ignore();
        if per_slot {
            pipe.query_async::<()>(c).await?;
            pipe = redis::pipe();
        }
    }
    if !pipe.is_empty() {
        pipe.query_async::<()>(c).await?;
    }
    Ok(())
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
        self.get_bytes(key).await
    }

    /// The default's answer, in one boxed future instead of two (it would await `get`'s): this
    /// is every Redis hit's read.
    async fn get_shared(&self, key: &str) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        Ok(self.get_bytes(key).await?.map(Arc::new))
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
        if matches!(c, Conn::Cluster(_)) {
            // The entry's slot first, then each tag set's.
            pipe.query_async::<()>(&mut c)
                .await
                .map_err(|e| self.classify("set", key, e))?;
            pipe = redis::pipe();
        }
        tag(&mut c, key, ttl_ms, tag_keys, pipe)
            .await
            .map_err(|e| self.classify("set", key, e))
    }

    async fn replace_if(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let replaced: i64 = REPLACE_IF
            .key(key)
            .arg(expected)
            .arg(value)
            .arg(ttl_ms)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.classify("replace_if", key, e))?;
        if replaced == 1 {
            tag(&mut c, key, ttl_ms, tag_keys, redis::pipe())
                .await
                .map_err(|e| self.err("tag", e))?;
        }
        Ok(replaced == 1)
    }

    async fn set_guarded(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tag_keys: &[String],
        guards: &[(String, u64)],
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let cluster = matches!(c, Conn::Cluster(_));
        // On one server every guard and tag set goes into one atomic script. In a cluster the
        // script may only touch the entry's slot: its own generation (the first guard).
        let (checked, later) = if cluster {
            guards.split_at(guards.len().min(1))
        } else {
            (guards, &[][..])
        };
        let mut inv = SET_GUARDED.key(key);
        for (g, _) in checked {
            inv.key(g);
        }
        if !cluster {
            for t in tag_keys {
                inv.key(t);
            }
        }
        inv.arg(value).arg(ttl_ms).arg(checked.len());
        for (_, seen) in checked {
            inv.arg(*seen);
        }
        let wrote: i64 = inv
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.classify("set_guarded", key, e))?;
        if wrote != 1 {
            return Ok(false);
        }
        if !cluster {
            return Ok(true);
        }
        tag(&mut c, key, ttl_ms, tag_keys, redis::pipe())
            .await
            .map_err(|e| self.classify("set_guarded", key, e))?;
        // The other generations live in other slots: a purge that bumped one of them after the
        // load began and before now may have missed this write, so undo it.
        let names: Vec<String> = later.iter().map(|(g, _)| g.clone()).collect();
        let now = self.generations(&names).await?;
        if later.iter().zip(&now).all(|((_, seen), now)| seen == now) {
            return Ok(true);
        }
        DELETE_IF
            .key(key)
            .arg(value)
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(|e| self.classify("set_guarded", key, e))?;
        Ok(false)
    }

    async fn generations(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let parse = |v: Option<String>| v.map_or(0, |s| s.parse().unwrap_or(u64::MAX));
        let values: Vec<Option<String>> = if matches!(c, Conn::Cluster(_)) {
            // One GET per key: each may live in its own slot.
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(
                    c.get(k)
                        .await
                        .map_err(|e| self.classify("generations", k, e))?,
                );
            }
            out
        } else {
            redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut c)
                .await
                .map_err(|e| self.classify("generations", &keys[0], e))?
        };
        Ok(values.into_iter().map(parse).collect())
    }

    async fn bump_generations(&self, keys: &[String], ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let ttl_ms = ttl.as_millis().max(1) as u64;
        // Per key, so each pipeline stays in one cluster slot.
        for k in keys {
            redis::pipe()
                .cmd("INCR")
                .arg(k)
                .ignore()
                .cmd("PEXPIRE")
                .arg(k)
                .arg(ttl_ms)
                .ignore()
                .query_async::<()>(&mut c)
                .await
                .map_err(|e| self.classify("bump_generations", k, e))?;
        }
        Ok(())
    }

    async fn renew_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        RENEW
            .key(key)
            .arg(token)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async::<i64>(&mut c)
            .await
            .map(|n| n == 1)
            .map_err(|e| self.classify("renew_lock", key, e))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let n: u64 = c.del(key).await.map_err(|e| self.err("delete", e))?;
        Ok(n > 0)
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let ok: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut c)
            .await
            .map_err(|e| self.classify("lock", key, e))?;
        Ok(ok.is_some())
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        UNLOCK
            .key(key)
            .arg(token)
            .invoke_async::<i64>(&mut c)
            .await
            .map(drop)
            .map_err(|e| self.classify("unlock", key, e))
    }

    async fn delete_tagged(&self, tag_key: &str) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let purging = Keyspace::tag_purging(tag_key);
        let mut deleted = 0;
        // Members are moved, a batch at a time and atomically, from the tag set to the tag's
        // set of entries being purged, unlinked, and only then taken off that second set. A
        // member is never in neither set before its entry is gone, so a concurrent purge of the
        // same tag, which also unlinks what the second set holds, returns only once every entry
        // tagged before it began is gone. Writes add to the tag set alone: one landing while
        // this runs stays a member for the next purge (taking members off the tag set after the
        // unlink would drop it). In a cluster, UNLINK of keys in several slots is split per slot
        // by the client; both sets share the tag set's slot.
        loop {
            let members: Vec<String> = TAG_PURGE_BATCH
                .key(tag_key)
                .key(&purging)
                .arg(500)
                .arg(TAG_PURGING_TTL_MS)
                .invoke_async(&mut c)
                .await
                .map_err(|e| self.classify("delete_tagged", tag_key, e))?;
            if members.is_empty() {
                break;
            }
            let n: u64 = c
                .unlink(&members)
                .await
                .map_err(|e| self.err("delete_tagged", e))?;
            deleted += n;
            c.srem::<_, _, ()>(&purging, &members)
                .await
                .map_err(|e| self.classify("delete_tagged", &purging, e))?;
        }
        // What other purges of the tag took off the tag set and may not have unlinked yet.
        let pending: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&purging)
            .query_async(&mut c)
            .await
            .map_err(|e| self.classify("delete_tagged", &purging, e))?;
        if !pending.is_empty() {
            let n: u64 = c
                .unlink(&pending)
                .await
                .map_err(|e| self.err("delete_tagged", e))?;
            deleted += n;
        }
        Ok(deleted)
    }

    async fn tag_members(&self, tag_key: &str) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn().await?;
        redis::cmd("SMEMBERS")
            .arg(tag_key)
            .query_async(&mut c)
            .await
            .map_err(|e| self.classify("tag_members", tag_key, e))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let pattern = format!("{}*", glob_escape(prefix));
        match self.conn().await? {
            c @ (Conn::Single(_) | Conn::Sentinel(..)) => {
                scan_delete(&mut c.clone(), None, &pattern)
                    .await
                    .map_err(|e| self.err("delete_prefix", e))
            }
            Conn::Cluster(mut c) => {
                let mut deleted = 0;
                for (host, port) in self.masters(&mut c).await? {
                    let node = SingleNodeRoutingInfo::ByAddress { host, port };
                    deleted += scan_delete(&mut Conn::Cluster(c.clone()), Some(node), &pattern)
                        .await
                        .map_err(|e| self.err("delete_prefix", e))?;
                }
                Ok(deleted)
            }
        }
    }

    async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        c.publish::<_, _, ()>(channel, message)
            .await
            .map_err(|e| self.err("publish", e))
    }

    async fn subscribe(&self, channel: &str) -> Result<Option<Subscription>, StoreError> {
        // A cluster propagates classic PUBLISH to every node, so one node's subscription hears
        // all of them; try the seeds in turn.
        let clients: Vec<redis::Client> = match &*self.target {
            Target::Single { client, .. } => vec![client.clone()],
            Target::Sentinel { slot, .. } => {
                // The current master; after a failover its connection ends, the stream with
                // it, and the next subscription asks the sentinels again.
                self.conn().await?;
                slot.current().map(|(_, _, c)| c).into_iter().collect()
            }
            Target::Cluster { seeds, .. } => seeds.clone(),
        };
        let mut last = None;
        for client in clients {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    pubsub
                        .subscribe(channel)
                        .await
                        .map_err(|e| self.err("subscribe", e))?;
                    let stream = futures_util::StreamExt::map(pubsub.into_on_message(), |m| {
                        m.get_payload_bytes().to_vec()
                    });
                    return Ok(Some(Box::pin(stream)));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or(
            StoreError::Connect {
                message: "no node to subscribe to".into(),
            },
            |e| self.err("subscribe", e),
        ))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(drop)
            .map_err(|e| self.err("ping", e))
    }
}

/// Walks one server's keys with `SCAN MATCH` and unlinks them batch by batch. In a cluster,
/// `node` pins the scan to one master (cursors are per node); the unlinks are routed by key.
async fn scan_delete(
    c: &mut Conn,
    node: Option<SingleNodeRoutingInfo>,
    pattern: &str,
) -> RedisResult<u64> {
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let reply = match (&mut *c, &node) {
            (Conn::Cluster(cc), Some(node)) => cc
                .route_command(scan, RoutingInfo::SingleNode(node.clone()))
                .await
                .and_then(|v| redis::from_redis_value(v).map_err(RedisError::from)),
            _ => scan.query_async(&mut *c).await,
        };
        let (next, keys): (u64, Vec<String>) = reply?;
        if !keys.is_empty() {
            let n: u64 = c.unlink(&keys).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
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
    fn masters_are_parsed_from_cluster_nodes() {
        let nodes = "07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 disconnected 10923-16383
e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            parse_masters(nodes),
            [
                ("127.0.0.1".to_string(), 30002),
                ("127.0.0.1".to_string(), 30001)
            ]
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let s = RedisStore::open("redis://:hunter2@127.0.0.1:6379/0").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        let c = RedisStore::open_cluster(&["redis://:hunter2@127.0.0.1:7000"]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
