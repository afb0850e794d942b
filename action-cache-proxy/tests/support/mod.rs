//! Shared by the proxy's integration tests: a real redis-server, a local fake upstream that
//! counts and records its calls, the proxy on a manual clock, and a raw HTTP/1.1 client (so
//! that hostile paths such as `/accounts/..` reach the proxy exactly as written). A test with
//! a fake of its own serves it with [`serve`] and puts the proxy in front with [`start_fake`];
//! [`Logs`] captures what is logged.

#![allow(dead_code, unreachable_pub)]

use action_cache::{Cache, ManualClock};
use action_cache_proxy::{Config, Proxy};
use action_cache_testing::RedisServer;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SECRET: &str = "test-webhook-secret";

#[derive(Debug)]
pub struct UpstreamState {
    pub calls: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// `hold-*` accounts wait for a permit here.
    pub gate: tokio::sync::Semaphore,
    pub down: AtomicBool,
    pub seen: Mutex<Vec<String>>,
    pub headers: Mutex<Vec<Option<String>>>,
}

/// The fake CRM. `GET /v1/accounts/{id}`: `missing` → 404, `gone` → 410, `boom` → 500,
/// `big` → 10 KiB; anything else a JSON body written with `1E2` and a big integer, so any
/// re-serialisation shows. `GET /v1/orders/{id}/lines` → a JSON array.
pub struct FakeUpstream {
    pub base: String,
    pub state: Arc<UpstreamState>,
    server: Served,
}

/// An axum server on a local port, stopped when dropped.
pub struct Served {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on a free local port.
pub async fn serve(router: Router) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Served { addr, task }
}

async fn upstream(State(state): State<Arc<UpstreamState>>, request: Request) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let uri = request.uri().to_string();
    state.seen.lock().unwrap().push(uri.clone());
    state.headers.lock().unwrap().push(
        request
            .headers()
            .get("x-tenant")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    if state.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if request.uri().path().contains("/hold-") {
        state.gate.acquire().await.unwrap().forget();
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let path = request.uri().path();
    if let Some(id) = path.strip_prefix("/api/v1/accounts/") {
        return match id {
            "missing" => (StatusCode::NOT_FOUND, r#"{"error":"no such account"}"#).into_response(),
            "gone" => (StatusCode::GONE, r#"{"error":"gone"}"#).into_response(),
            "boom" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
            "big" => ([("content-type", "application/json")], "x".repeat(10 * 1024)).into_response(),
            _ => (
                [("content-type", "application/json")],
                format!(
                    r#"{{"z":1E2,"id":"{id}","big":123456789012345678901234567890,"call":{},"uri":"{uri}"}}"#,
                    state.calls.load(Ordering::SeqCst)
                ),
            )
                .into_response(),
        };
    }
    if path.starts_with("/api/v1/orders/") && path.ends_with("/lines") {
        return (
            [("content-type", "application/json")],
            r#"[{"sku":"A","qty":1}]"#,
        )
            .into_response();
    }
    (StatusCode::NOT_FOUND, "unknown upstream path").into_response()
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let state = Arc::new(UpstreamState {
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            down: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
            headers: Mutex::new(Vec::new()),
        });
        let server = serve(Router::new().fallback(upstream).with_state(state.clone())).await;
        let base = format!("http://{}/api", server.addr);
        FakeUpstream {
            base,
            state,
            server,
        }
    }

    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().unwrap().clone()
    }
}

/// The multi-route configuration the tests run; `${UPSTREAM}` is the fake's base URL.
pub const CONFIG: &str = r#"
[server]
max_param_bytes = 64
max_request_bytes = 1024

[upstreams.crm]
base_url = "${UPSTREAM}"
timeout = "5s"
max_response_bytes = 4096
auth = { type = "header", name = "x-api-key", value_env = "CRM_KEY" }

[[routes]]
name = "account"
path = "/accounts/{id}"
upstream = "crm"
upstream_path = "/v1/accounts/{id}"
key_query = ["fields"]
key_headers = ["x-tenant"]
fresh = "5m"
stale = "15m"
jitter = 0.0
tags = ["account:{id}"]
stale_if_error = "1h"
negative = { statuses = [404], ttl = "30s" }
purge_alias = "account_id"

[[routes]]
name = "order_lines"
path = "/orders/{order_id}/lines"
upstream = "crm"
upstream_path = "/v1/orders/{order_id}/lines"
fresh = "30s"
tags = ["order:{order_id}"]

[webhook]
path = "/webhooks/crm"
secret_env = "HOOK_SECRET"
"#;

/// `text` with `${UPSTREAM}` the fake at `upstream`, and the key and secret [`CONFIG`] reads.
pub fn config(text: &str, upstream: &str) -> Config {
    config_with(
        text,
        &[
            ("UPSTREAM", upstream),
            ("CRM_KEY", "k3y"),
            ("HOOK_SECRET", SECRET),
        ],
    )
}

/// `text` with these environment variables, and no others.
pub fn config_with(text: &str, vars: &[(&str, &str)]) -> Config {
    Config::from_toml(text, "test.toml", &|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
}

/// The proxy, served, in front of `upstream`: the shared [`FakeUpstream`] or a test's own fake.
pub struct Running<U = FakeUpstream> {
    pub addr: std::net::SocketAddr,
    pub upstream: U,
    pub clock: ManualClock,
    pub proxy: Proxy,
    /// The proxy's cache (a clone), for its counters.
    pub cache: Cache,
    pub redis: Arc<RedisServer>,
    /// The proxy's server, and a test's own fake when it brought one.
    servers: Vec<Served>,
}

pub async fn start() -> Running {
    start_with(CONFIG).await
}

pub async fn start_with(text: &str) -> Running {
    let redis = Arc::new(RedisServer::start());
    start_on(text, redis, ManualClock::new()).await
}

/// Another instance on the same Redis and clock (for cross-instance checks).
pub async fn start_on(text: &str, redis: Arc<RedisServer>, clock: ManualClock) -> Running {
    let upstream = FakeUpstream::start().await;
    let config = config(text, &upstream.base);
    run(config, upstream, None, redis, clock).await
}

/// The proxy on `config`, a fresh Redis and a manual clock, in front of a test's own `fake`;
/// `upstream` is what the test reads of that fake (its state, say).
pub async fn start_fake<U>(config: Config, upstream: U, fake: Served) -> Running<U> {
    let redis = Arc::new(RedisServer::start());
    run(config, upstream, Some(fake), redis, ManualClock::new()).await
}

async fn run<U>(
    config: Config,
    upstream: U,
    fake: Option<Served>,
    redis: Arc<RedisServer>,
    clock: ManualClock,
) -> Running<U> {
    let cache = Cache::builder()
        .redis_url(redis.url())
        .op_timeout(Duration::from_secs(2))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let guard = Arc::new(action_cache::store::RedisStore::open(&redis.url()).unwrap());
    let proxy = Proxy::builder(config)
        .cache(cache.clone())
        .clock(Arc::new(clock.clone()))
        .replay_guard(guard)
        .build()
        .unwrap();
    let server = serve(proxy.router()).await;
    Running {
        addr: server.addr,
        upstream,
        clock,
        proxy,
        cache,
        redis,
        servers: std::iter::once(server).chain(fake).collect(),
    }
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn cache(&self) -> &str {
        self.header("x-cache").unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl<U> Running<U> {
    /// Sends `request_head` (without the final blank line) and `body` as written.
    pub async fn raw(&self, head: &str, body: &[u8]) -> Raw {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut bytes = head.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\nHost: proxy\r\nConnection: close\r\n");
        if !body.is_empty() || head.starts_with("POST") {
            bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        stream.write_all(&bytes).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
            .await
            .expect("the proxy answers")
            .unwrap();
        parse(&out)
    }

    /// Moves the proxy's clock on by `secs` seconds.
    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

impl Running {
    /// `GET path` with extra header lines (`"X-Tenant: t1"`).
    pub async fn get(&self, path: &str, headers: &[&str]) -> Raw {
        let mut head = format!("GET {path} HTTP/1.1");
        for h in headers {
            head.push_str("\r\n");
            head.push_str(h);
        }
        self.raw(&head, b"").await
    }

    /// `POST /webhooks/crm` with these signature header values.
    pub async fn purge(&self, body: &[u8], signatures: &[String]) -> Raw {
        let mut head = "POST /webhooks/crm HTTP/1.1\r\nContent-Type: application/json".to_owned();
        for s in signatures {
            head.push_str(&format!("\r\nX-Signature-256: {s}"));
        }
        self.raw(&head, body).await
    }

    pub fn now_s(&self) -> u64 {
        use action_cache::Clock;
        self.clock.now_ms() / 1000
    }

    pub fn sign(&self, body: &[u8]) -> String {
        action_cache_proxy::signature::sign_timestamped(
            &action_cache_proxy::config::Secret::new(SECRET),
            self.now_s(),
            body,
        )
    }
}

fn parse(out: &[u8]) -> Raw {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = out[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Raw {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
}

/// What a test logged (shared with the other crates' tests).
#[allow(unused_imports)] // not every test binary that includes `support` captures logs
pub use action_cache_testing::logs::Logs;
