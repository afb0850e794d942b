//! A real `redis-server` for tests, started on a free port and killed on drop.
//!
//! Only with the `testing` feature. Every test that needs Redis starts its own server through
//! [`RedisServer`], so tests are hermetic and run in parallel: the port comes from binding
//! `127.0.0.1:0`, readiness is polled (connect, then `PING`) with a cap, every panic message
//! carries the server's log, and `Drop` kills the process and waits for it.
//!
//! ```no_run
//! use action_cache_core::testing::RedisServer;
//!
//! let server = RedisServer::start();
//! println!("talk to {}", server.url());
//! // The server is killed when `server` goes out of scope.
//! ```

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
        server.spawn();
        server
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
        self.spawn();
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

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) {
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
        self.process = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.process.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "redis-server on port {} exited early with {status}; log:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
            if ping(self.port) {
                return;
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
