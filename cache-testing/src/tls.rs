//! TLS for test servers: a CA, a server and a client certificate made at test time with
//! `rcgen`, and a `redis-server` that speaks TLS with them.
//!
//! ```no_run
//! use action_cache_testing::tls::{TestCerts, TlsRedisServer};
//!
//! let certs = TestCerts::generate();
//! let server = TlsRedisServer::start(&certs, true); // mutual TLS: clients need a certificate
//! println!("talk to {} trusting {}", server.url(), certs.ca_path().display());
//! ```

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

use super::{free_port, RedisCluster, RedisServer};

/// A CA with a server certificate (for `localhost` and `127.0.0.1`) and a client certificate
/// it signed, as PEM files in a temporary directory removed on drop.
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// Makes a fresh CA and the two certificates it signs.
    ///
    /// # Panics
    ///
    /// When a key or certificate cannot be made or written.
    pub fn generate() -> TestCerts {
        let dir = tempfile::Builder::new()
            .prefix("action-cache-tls")
            .tempdir()
            .expect("create a temp dir for certificates");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "action-cache test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |name: &str, usage: &[ExtendedKeyUsagePurpose]| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                    .expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = usage.to_vec();
            let cert = params.signed_by(&key, &issuer).expect("sign a leaf");
            (cert.pem(), key.serialize_pem())
        };
        // The server's certificate is also its client certificate on a TLS cluster bus, where
        // nodes connect to each other: without clientAuth, nodes never meet and
        // `redis-cli --cluster create` waits forever.
        let (server_cert, server_key) = leaf(
            "redis-server",
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client_cert, client_key) =
            leaf("cache-client", &[ExtendedKeyUsagePurpose::ClientAuth]);
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write a certificate file")
        };
        write("ca.pem", &ca_cert.pem());
        write("server.pem", &server_cert);
        write("server.key", &server_key);
        write("client.pem", &client_cert);
        write("client.key", &client_key);
        TestCerts { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read a certificate file")
    }

    /// The CA certificate's PEM file.
    pub fn ca_path(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.read("ca.pem")
    }

    /// The client certificate's and key's PEM files.
    pub fn client_paths(&self) -> (PathBuf, PathBuf) {
        (self.path("client.pem"), self.path("client.key"))
    }

    /// The client certificate and its key, PEM.
    pub fn client_pem(&self) -> (String, String) {
        (self.read("client.pem"), self.read("client.key"))
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `redis-server` arguments that serve TLS on `tls_port` with these certificates;
    /// `verify_clients` asks every client for a certificate signed by this CA.
    pub fn server_args(&self, tls_port: u16, verify_clients: bool) -> Vec<String> {
        let path = |n: &str| self.path(n).display().to_string();
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            path("server.pem"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.pem"),
            "--tls-auth-clients".into(),
            if verify_clients { "yes" } else { "no" }.into(),
        ]
    }
}

/// A `redis-server` serving TLS on one port. It also listens in plain TCP on another loopback
/// port, for the harness's own readiness checks and `redis-cli` (never used by the cache under
/// test: its URL is the TLS port's).
#[derive(Debug)]
pub struct TlsRedisServer {
    server: RedisServer,
    tls_port: u16,
}

impl TlsRedisServer {
    /// Starts a server with `certs`; `verify_clients` is `--tls-auth-clients yes`.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start(certs: &TestCerts, verify_clients: bool) -> TlsRedisServer {
        let tls_port = free_port();
        let args = certs.server_args(tls_port, verify_clients);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TlsRedisServer {
            server: RedisServer::start_with_args(&args),
            tls_port,
        }
    }

    /// A `rediss://` URL for the TLS port, by host name (as managed services are reached).
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}/", self.tls_port)
    }

    /// The TLS port.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The underlying server (plain port, log, `redis-cli`, stop/restart).
    pub fn server(&self) -> &RedisServer {
        &self.server
    }

    /// The underlying server, to stop or restart it.
    pub fn server_mut(&mut self) -> &mut RedisServer {
        &mut self.server
    }
}

/// A Redis Cluster whose clients and cluster bus speak TLS (`--tls-cluster yes`), with the
/// certificates of a [`TestCerts`]. Each node also listens in plain TCP for the harness's own
/// checks; the cluster tells TLS clients the TLS ports.
///
/// ```no_run
/// use action_cache_testing::tls::{TestCerts, TlsRedisCluster};
///
/// let certs = TestCerts::generate();
/// let cluster = TlsRedisCluster::start(&certs, 3, 0);
/// println!("seed nodes: {:?}", cluster.seed_urls()); // rediss://localhost:…
/// ```
#[derive(Debug)]
pub struct TlsRedisCluster {
    cluster: RedisCluster,
    tls_ports: Vec<u16>,
}

impl TlsRedisCluster {
    /// Starts `masters` masters with `replicas` replicas each, over TLS (clients need not
    /// present a certificate).
    ///
    /// # Panics
    ///
    /// As [`RedisCluster::start`].
    pub fn start(certs: &TestCerts, masters: usize, replicas: usize) -> TlsRedisCluster {
        let mut tls_ports = Vec::new();
        let cluster = RedisCluster::start_with(masters, replicas, |_| {
            let port = free_port();
            tls_ports.push(port);
            let mut args = certs.server_args(port, false);
            args.extend(["--tls-cluster".into(), "yes".into()]);
            args.extend(["--tls-replication".into(), "yes".into()]);
            args
        });
        TlsRedisCluster { cluster, tls_ports }
    }

    /// `rediss://localhost:{tls port}` of every node, to seed a cluster client.
    pub fn seed_urls(&self) -> Vec<String> {
        self.tls_ports
            .iter()
            .map(|p| format!("rediss://localhost:{p}"))
            .collect()
    }

    /// The cluster underneath, for `masters`, `entry_count`, stopping nodes.
    pub fn cluster(&self) -> &RedisCluster {
        &self.cluster
    }
}
