//! Real Redis processes for action-cache's tests: a `redis-server` started on a free port and
//! killed on drop, a Redis Cluster ([`RedisCluster`]), a TLS server with certificates made at
//! test time ([`tls`]) and a Sentinel deployment ([`sentinel`]), plus the polling helpers tests
//! wait with ([`eventually`], [`bounded`], [`until_coalesced`]) and a capture of what a test logs
//! ([`logs`]).
//!
//! A `publish = false` crate of the workspace, used as a dev-dependency only. Every test that
//! needs Redis starts its own server through [`RedisServer`], so tests are hermetic and run in
//! parallel: the port comes from binding `127.0.0.1:0`, readiness is polled (connect, then
//! `PING`) with a cap, every panic message carries the server's log, and `Drop` kills the
//! process and waits for it. (The `redis-test` crate offers a server and a cluster too, but
//! neither a restart nor `redis-cli`, TLS with generated certificates or Sentinel, which the
//! fault, TLS and failover suites need.)
//!
//! ```no_run
//! use action_cache_testing::RedisServer;
//!
//! let server = RedisServer::start();
//! println!("talk to {}", server.url());
//! // The server is killed when `server` goes out of scope.
//! ```

pub mod logs;
pub mod sentinel;
pub mod tls;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process owned by a test.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    extra_args: Vec<String>,
    dir: tempfile::TempDir,
    process: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port with persistence off.
    ///
    /// # Panics
    ///
    /// When `redis-server` cannot be started or does not answer `PING` within 10 s; the
    /// message includes the server's log.
    pub fn start() -> RedisServer {
        RedisServer::start_with_args(&[])
    }

    /// Starts a server with extra `redis-server` arguments, e.g. `["--maxmemory", "1mb"]`.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_with_args(args: &[&str]) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("action-cache-redis")
            .tempdir()
            .expect("create a temp dir for redis-server");
        let mut server = RedisServer {
            port: free_port(),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            dir,
            process: None,
        };
        // The port was free when `free_port` looked; a test running beside this one may take it
        // before redis-server binds it. Then the server exits at once: try another port.
        for _ in 0..PORT_ATTEMPTS {
            match server.try_spawn() {
                Ok(()) => return server,
                Err(Early::PortTaken) => {
                    // A fresh log, so the next attempt's failure is read from its own lines.
                    let _ = std::fs::remove_file(server.log_path());
                    server.port = free_port();
                }
                Err(Early::Failed(message)) => panic!("{message}"),
            }
        }
        panic!("redis-server found no free port in {PORT_ATTEMPTS} attempts");
    }

    /// The port the server listens on (kept across [`RedisServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL for this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the process is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Kills the server and waits for it to exit. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`RedisServer::stop`]), empty.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.try_spawn() {
            panic!(
                "{}",
                match e {
                    Early::PortTaken => format!(
                        "redis-server could not bind port {} again on restart; log:\n{}",
                        self.port,
                        self.log()
                    ),
                    Early::Failed(message) => message,
                }
            );
        }
    }

    /// Runs one command with `redis-cli` against this server and returns its output.
    ///
    /// # Panics
    ///
    /// When `redis-cli` cannot be run.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run redis-cli: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// How many keys this server holds besides purge generations (`…:gen`, `…#gen`), which
    /// purges and puts leave behind for a while by design.
    ///
    /// # Panics
    ///
    /// When `redis-cli` cannot be run.
    pub fn entry_count(&self) -> u64 {
        self.cli(&["--scan"])
            .lines()
            .filter(|k| !k.is_empty() && !k.ends_with(":gen") && !k.ends_with("#gen"))
            .count() as u64
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Starts redis-server on `self.port` and waits until it, and not another process on that
    /// port, answers.
    fn try_spawn(&mut self) -> Result<(), Early> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(["--enable-debug-command", "yes"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "could not start redis-server (is it installed? scripts/test.sh installs it): {e}"
            )
        });
        let pid = child.id();
        self.process = Some(child);
        self.wait_ready(pid)
    }

    fn wait_ready(&mut self, pid: u32) -> Result<(), Early> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.process.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.process = None;
                    let log = self.log();
                    if log.contains("Address already in use") {
                        return Err(Early::PortTaken);
                    }
                    return Err(Early::Failed(format!(
                        "redis-server on port {} exited early with {status}; log:\n{log}",
                        self.port
                    )));
                }
            }
            // Our process, not one a parallel test started on the same port.
            if ping(self.port) && served_by(self.port) == Some(pid) {
                return Ok(());
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of real `redis-server` processes, torn down on drop.
///
/// ```no_run
/// use action_cache_testing::RedisCluster;
///
/// let cluster = RedisCluster::start(3, 0); // three masters, no replicas
/// println!("seed nodes: {:?}", cluster.seed_urls());
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// How long a new cluster may take to agree on its slots.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each, joins them with
    /// `redis-cli --cluster create`, and waits until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// When a node does not start, the create command fails, or the cluster is not ready within
    /// 30 s; messages include the output or logs.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        RedisCluster::start_with(masters, replicas, |_| Vec::new())
    }

    /// As [`RedisCluster::start`], with `node_args(i)` added to node `i`'s command line (TLS,
    /// for instance).
    ///
    /// # Panics
    ///
    /// As [`RedisCluster::start`].
    pub fn start_with(
        masters: usize,
        replicas: usize,
        mut node_args: impl FnMut(usize) -> Vec<String>,
    ) -> RedisCluster {
        let count = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|i| {
                let bus = free_port().to_string();
                let mut args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "1000",
                ]
                .map(String::from)
                .into();
                args.extend(node_args(i));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                RedisServer::start_with_args(&args)
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("run redis-cli --cluster create: {e}"));
        if !out.status.success() {
            panic!(
                "redis-cli --cluster create failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(CLUSTER_READY_TIMEOUT);
        cluster
    }

    /// Waits until every running node reports `cluster_state:ok` and the replicas are in sync.
    ///
    /// # Panics
    ///
    /// When that does not happen within `deadline`.
    pub fn wait_ok(&self, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            let ok = self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    && !n
                        .cli(&["INFO", "replication"])
                        .contains("master_link_status:down")
            });
            if ok {
                return;
            }
            if Instant::now() > end {
                let logs: Vec<String> = self.nodes.iter().map(|n| n.log()).collect();
                panic!(
                    "cluster not ready within {deadline:?}; logs:\n{}",
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://` URLs of every node, to seed a cluster client.
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, masters and replicas alike.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One node, e.g. to stop it.
    pub fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        &mut self.nodes[index]
    }

    /// Indices of the nodes that are masters now.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].is_running()
                    && self.nodes[i]
                        .cli(&["INFO", "replication"])
                        .contains("role:master")
            })
            .collect()
    }

    /// The number of keys held by all running masters besides purge generations (see
    /// [`RedisServer::entry_count`]).
    pub fn entry_count(&self) -> u64 {
        self.masters()
            .iter()
            .map(|&i| self.nodes[i].entry_count())
            .sum()
    }

    /// The number of keys held by all running masters.
    pub fn key_count(&self) -> u64 {
        self.masters()
            .iter()
            .map(|&i| self.nodes[i].cli(&["DBSIZE"]).parse::<u64>().unwrap_or(0))
            .sum()
    }
}

/// How often [`RedisServer::start`] tries a new port when another process took the one it
/// picked.
const PORT_ATTEMPTS: usize = 5;

/// Why a redis-server did not come up.
enum Early {
    /// It could not bind its port (another process holds it).
    PortTaken,
    /// Anything else, with the server's log.
    Failed(String),
}

/// The process id of the redis-server answering on `port` (`INFO server`'s `process_id`).
fn served_by(port: u16) -> Option<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // The reply is one bulk string of a few hundred bytes; read until the field is in.
    while reply.len() < 64 * 1024 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some(rest) = text.split("process_id:").nth(1) {
            if let Some((id, _)) = rest.split_once("\r\n") {
                return id.trim().parse().ok();
            }
        }
    }
    None
}

/// A port that was free a moment ago (bind `127.0.0.1:0`, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// Polls `condition` every 5 ms until it holds, for at most `deadline`.
///
/// # Panics
///
/// When the deadline passes first; the message names `what`.
pub async fn eventually(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    while !condition() {
        if tokio::time::Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `future` for at most `deadline`, so that a hang fails the test instead of blocking it.
///
/// # Panics
///
/// When the deadline passes first; the message names `what` hung.
pub async fn bounded<F: std::future::Future>(
    what: &str,
    deadline: Duration,
    future: F,
) -> F::Output {
    tokio::time::timeout(deadline, future)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for more than {deadline:?}"))
}

/// Waits (polling, at most `deadline`) until `cache` counts `n` coalesced waiters, e.g. to hold
/// a load until every other caller is waiting on it.
///
/// # Panics
///
/// When fewer than `n` callers are waiting by the deadline.
pub async fn until_coalesced(cache: &action_cache_core::Cache, n: u64, deadline: Duration) {
    let what = format!("{n} coalesced waiters");
    eventually(&what, deadline, || cache.stats().coalesced_waits >= n).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_server_is_the_one_answering_its_port() {
        let server = RedisServer::start();
        let pid = server.process.as_ref().map(Child::id);
        assert!(pid.is_some());
        assert_eq!(served_by(server.port()), pid);
    }

    #[test]
    fn a_port_another_server_holds_is_not_taken_for_ours() {
        let other = RedisServer::start();
        let mut server = RedisServer {
            port: other.port(),
            extra_args: Vec::new(),
            dir: tempfile::tempdir().expect("a temp dir"),
            process: None,
        };
        // `other` answers PING on that port at once; only the process id tells them apart.
        assert!(matches!(server.try_spawn(), Err(Early::PortTaken)));
        assert!(!server.is_running());
        assert!(ping(other.port()));
    }
}
