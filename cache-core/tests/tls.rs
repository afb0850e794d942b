//! Redis over TLS (`rediss://`) against a real `redis-server --tls-port …` with certificates
//! made at test time: a private CA, mutual TLS, and a wrong CA refused clearly while callers
//! keep getting their values (fail-open).

use action_cache_core::{Cache, CacheBuilder, CacheKey, Policy};
use action_cache_testing::tls::{TestCerts, TlsRedisCluster, TlsRedisServer};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn key(id: u32) -> CacheKey {
    let mut b = CacheKey::builder("tls");
    b.arg("id", &id).unwrap();
    b.build()
}

fn policy() -> Policy {
    Policy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap()
}

/// A TLS handshake in a debug build can outlast the 50 ms default; the breaker stays closed so
/// that `ping` reaches the store and shows its error.
fn builder(url: String) -> CacheBuilder {
    Cache::builder()
        .redis_url(url)
        .op_timeout(Duration::from_secs(2))
        .circuit_breaker(1_000, Duration::from_millis(100))
}

/// Reads `id` and returns its value and how many loader calls there were in all.
async fn get(cache: &Cache, id: u32, calls: &Arc<AtomicU32>) -> String {
    let calls = Arc::clone(calls);
    cache
        .get_or_load(&key(id), &policy(), move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(format!("value-{id}"))
        })
        .await
        .expect("fail-open: never an error")
}

/// Two reads of one key: one loader call, the second read a hit from the TLS server.
async fn assert_caches(cache: &Cache, server: &TlsRedisServer) {
    let calls = Arc::new(AtomicU32::new(0));
    assert_eq!(get(cache, 1, &calls).await, "value-1");
    assert_eq!(get(cache, 1, &calls).await, "value-1");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{:?}", cache.stats());
    assert_eq!(cache.stats().fresh_hits, 1, "{:?}", cache.stats());
    assert_eq!(cache.stats().store_errors, 0, "{:?}", cache.stats());
    assert_eq!(
        server.server().entry_count(),
        1,
        "the entry is on the server"
    );
    cache.ping().await.expect("ping over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_caches_values() {
    let certs = TestCerts::generate();
    let server = TlsRedisServer::start(&certs, false);
    let cache = builder(server.url())
        .redis_ca_cert_file(certs.ca_path())
        .build()
        .unwrap();
    assert_caches(&cache, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_works_with_the_client_certificate_from_the_environment() {
    let certs = TestCerts::generate();
    let server = TlsRedisServer::start(&certs, true);
    let (cert_path, key_path) = certs.client_paths();
    let (cert_pem, _) = certs.client_pem();
    let url = server.url();
    let ca = certs.ca_path().display().to_string();
    let key = key_path.display().to_string();
    // The certificate inline, the CA and key as paths: both forms are accepted.
    let vars = move |name: &str| match name {
        "REDIS_URL" => Some(url.clone()),
        "REDIS_CA_CERT" => Some(ca.clone()),
        "REDIS_CLIENT_CERT" => Some(cert_pem.clone()),
        "REDIS_CLIENT_KEY" => Some(key.clone()),
        _ => None,
    };
    let cache = CacheBuilder::from_env_lookup(vars)
        .op_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert_caches(&cache, &server).await;
    assert!(cert_path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_without_a_client_certificate_is_a_clear_error_and_fails_open() {
    let certs = TestCerts::generate();
    let server = TlsRedisServer::start(&certs, true);
    let cache = builder(server.url())
        .redis_ca_cert_pem(certs.ca_pem())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    for _ in 0..3 {
        assert_eq!(get(&cache, 2, &calls).await, "value-2");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "nothing cached");
    assert!(cache.stats().store_errors > 0, "{:?}", cache.stats());
    let err = cache.ping().await.unwrap_err().to_string();
    assert!(err.contains("TLS configuration error"), "{err}");
    assert_eq!(server.server().entry_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused_clearly_and_calls_fail_open() {
    let certs = TestCerts::generate();
    let other = TestCerts::generate();
    let server = TlsRedisServer::start(&certs, false);
    let cache = builder(server.url())
        .redis_ca_cert_file(other.ca_path())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    for _ in 0..3 {
        assert_eq!(get(&cache, 3, &calls).await, "value-3");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "nothing cached");
    assert!(cache.stats().store_errors > 0, "{:?}", cache.stats());
    let err = cache.ping().await.unwrap_err().to_string();
    assert!(err.contains("TLS configuration error"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(server.server().entry_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_roots_do_not_trust_a_private_ca() {
    let certs = TestCerts::generate();
    let server = TlsRedisServer::start(&certs, false);
    let cache = builder(server.url()).build().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    assert_eq!(get(&cache, 4, &calls).await, "value-4");
    let err = cache.ping().await.unwrap_err().to_string();
    assert!(err.contains("TLS configuration error"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_only_when_the_url_asks_for_it() {
    let certs = TestCerts::generate();
    let server = TlsRedisServer::start(&certs, false);
    let url = format!("{}#insecure", server.url());
    let cache = builder(url).build().unwrap();
    assert_caches(&cache, &server).await;
}

#[test]
fn tls_settings_that_cannot_work_are_refused_when_built() {
    let certs = TestCerts::generate();
    let (cert, key) = certs.client_pem();
    let err = |b: CacheBuilder| b.build().unwrap_err().to_string();
    let plain = Cache::builder()
        .redis_url("redis://127.0.0.1:6379/")
        .redis_ca_cert_pem(certs.ca_pem());
    assert!(err(plain).contains("rediss://"));
    let tls = || Cache::builder().redis_url("rediss://localhost:6380/");
    let missing = err(tls().redis_ca_cert_file(certs.dir().join("absent.pem")));
    assert!(missing.contains("absent.pem"), "{missing}");
    assert!(err(tls().redis_ca_cert_pem("not a certificate")).contains("CA certificate"));
    let bad_key = err(tls().redis_client_cert_pem(cert.clone(), "-----BEGIN NOPE-----"));
    assert!(bad_key.contains("client key"), "{bad_key}");
    assert!(!bad_key.contains("NOPE"), "{bad_key}");
    let only_cert = CacheBuilder::from_env_lookup(move |n| match n {
        "REDIS_URL" => Some("rediss://localhost:6380/".into()),
        "REDIS_CLIENT_CERT" => Some(cert.clone()),
        _ => None,
    });
    assert!(err(only_cert).contains("REDIS_CLIENT_KEY"));
    // The key never shows in the builder's Debug output.
    let shown = format!("{:?}", tls().redis_client_cert_pem("c", key.clone()));
    assert!(!shown.contains(key.trim()), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_caches_coalesces_and_purges_across_masters() {
    let certs = TestCerts::generate();
    let tls = TlsRedisCluster::start(&certs, 3, 0);
    let cache = Cache::builder()
        .redis_cluster(tls.seed_urls())
        .redis_ca_cert_file(certs.ca_path())
        .op_timeout(Duration::from_secs(2))
        .circuit_breaker(1_000, Duration::from_millis(100))
        .build()
        .unwrap();
    cache.ping().await.expect("ping over TLS");

    // Enough keys to land on every master; each loaded once, then served from the cluster.
    let calls = Arc::new(AtomicU32::new(0));
    for id in 0..30 {
        assert_eq!(get(&cache, id, &calls).await, format!("value-{id}"));
    }
    for id in 0..30 {
        assert_eq!(get(&cache, id, &calls).await, format!("value-{id}"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 30, "{:?}", cache.stats());
    assert_eq!(cache.stats().fresh_hits, 30, "{:?}", cache.stats());
    assert_eq!(cache.stats().store_errors, 0, "{:?}", cache.stats());
    let cluster = tls.cluster();
    assert_eq!(cluster.entry_count(), 30);
    let holding = cluster
        .masters()
        .into_iter()
        .filter(|&i| cluster.nodes()[i].entry_count() > 0)
        .count();
    assert_eq!(holding, 3, "the entries are spread over every master");

    // Concurrent misses of one key over TLS: one loader call.
    let calls = Arc::new(AtomicU32::new(0));
    let gets: Vec<_> = (0..20)
        .map(|_| {
            let (cache, calls) = (cache.clone(), Arc::clone(&calls));
            tokio::spawn(async move { get(&cache, 99, &calls).await })
        })
        .collect();
    for g in gets {
        assert_eq!(g.await.unwrap(), "value-99");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{:?}", cache.stats());

    // A prefix purge reaches every master over TLS.
    assert_eq!(cache.invalidate_prefix("tls").await.unwrap(), 31);
    assert_eq!(cluster.entry_count(), 0);
}
