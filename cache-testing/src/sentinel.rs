//! A Sentinel deployment of real processes for tests: one master, one replica and three
//! `redis-server --sentinel` processes watching them, torn down on drop.
//!
//! ```no_run
//! use action_cache_testing::sentinel::SentinelDeployment;
//!
//! let mut deployment = SentinelDeployment::start();
//! println!("sentinels {:?} watch {}", deployment.sentinel_urls(), SentinelDeployment::MASTER);
//! deployment.master_mut().stop(); // the sentinels promote the replica
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, ping, RedisServer};

/// How long the deployment may take to be watched by every sentinel.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A master, its replica, and three sentinels with quorum 2 that declare the master down after
/// 1 s without an answer.
#[derive(Debug)]
pub struct SentinelDeployment {
    master: RedisServer,
    replica: RedisServer,
    sentinels: Vec<SentinelProcess>,
}

/// One `redis-server --sentinel` process.
#[derive(Debug)]
struct SentinelProcess {
    port: u16,
    dir: tempfile::TempDir,
    process: Child,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl SentinelProcess {
    fn start(master_port: u16) -> SentinelProcess {
        let dir = tempfile::Builder::new()
            .prefix("action-cache-sentinel")
            .tempdir()
            .expect("create a temp dir for a sentinel");
        let port = free_port();
        let name = SentinelDeployment::MASTER;
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
             sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n\
             sentinel parallel-syncs {name} 1\n",
            dir = dir.path().display()
        );
        let path = dir.path().join("sentinel.conf");
        std::fs::write(&path, conf).expect("write sentinel.conf");
        let process = Command::new("redis-server")
            .arg(&path)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start redis-server --sentinel: {e}"));
        let sentinel = SentinelProcess { port, dir, process };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !ping(port) {
            assert!(
                Instant::now() < deadline,
                "sentinel on port {port} did not answer PING; log:\n{}",
                sentinel.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        sentinel
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sentinel.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run redis-cli: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl SentinelDeployment {
    /// The name the sentinels know the master by.
    pub const MASTER: &'static str = "mymaster";

    /// Starts the master, the replica (waiting until it is in sync) and three sentinels
    /// (waiting until each sees the replica and the two other sentinels).
    ///
    /// # Panics
    ///
    /// When a process does not start or the deployment is not ready within 30 s; the message
    /// carries the logs.
    pub fn start() -> SentinelDeployment {
        let master = RedisServer::start();
        let mport = master.port().to_string();
        let replica = RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &mport]);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(
                Instant::now() < deadline,
                "replica never synced; log:\n{}",
                replica.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(master.port()))
            .collect();
        let deployment = SentinelDeployment {
            master,
            replica,
            sentinels,
        };
        deployment.wait_watched(deadline);
        deployment
    }

    fn wait_watched(&self, deadline: Instant) {
        loop {
            let ready = self.sentinels.iter().all(|s| {
                let info = s.cli(&["SENTINEL", "MASTER", Self::MASTER]);
                let replicas = s.cli(&["SENTINEL", "REPLICAS", Self::MASTER]);
                info.contains("num-other-sentinels\n2") && replicas.contains("ip")
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sentinels not ready; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://` URLs of the three sentinels.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}/", s.port))
            .collect()
    }

    /// The port of the master as the first sentinel reports it now.
    pub fn reported_master_port(&self) -> Option<u16> {
        let out = self.sentinels[0].cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::MASTER]);
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// The server started as master.
    pub fn master(&self) -> &RedisServer {
        &self.master
    }

    /// The server started as master, e.g. to kill it.
    pub fn master_mut(&mut self) -> &mut RedisServer {
        &mut self.master
    }

    /// The server started as replica (the master after a failover).
    pub fn replica(&self) -> &RedisServer {
        &self.replica
    }

    /// Every sentinel's log, for failure messages.
    pub fn logs(&self) -> String {
        self.sentinels
            .iter()
            .map(SentinelProcess::log)
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}
