//! The `action-cache-proxy` binary: `--version`, `--help`, `check`, `serve` against a real
//! Redis and a local fake upstream (stopped with SIGTERM), and `genesys-actions`.

mod support;

use action_cache_testing::{free_port, RedisServer};
use serde_json::Value;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::FakeUpstream;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_action-cache-proxy"))
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

const ENV: [(&str, &str); 3] = [
    ("UPSTREAM", "http://127.0.0.1:9/api"),
    ("CRM_KEY", "k3y"),
    ("HOOK_SECRET", "s3cret"),
];

#[test]
fn version_and_help() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("action-cache-proxy {}", env!("CARGO_PKG_VERSION"))
    );
    let help = String::from_utf8(run(&["--help"], &[]).stdout).unwrap();
    for word in ["serve", "check", "genesys-actions"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn check_prints_the_routes_or_one_line_per_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "proxy.toml", support::CONFIG);
    let out = run(&["check", "--config", &good], &ENV);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok: route account GET /accounts/{id} -> crm /v1/accounts/{id}"),
        "{stdout}"
    );
    assert!(stdout.contains("ok: route order_lines"), "{stdout}");
    assert!(
        stdout.contains("ok: webhook POST /webhooks/crm"),
        "{stdout}"
    );

    let bad_text = support::CONFIG
        .replace("timeout = \"5s\"", "timeout = \"2m\"")
        .replace("fresh = \"30s\"", "fresh = \"30s\"\nstale = \"10s\"");
    let bad = write(&dir, "bad.toml", &bad_text);
    let out = run(&["check", "--config", &bad], &ENV);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("error: {bad}:8:11: upstreams.crm.timeout")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("error: {bad}:"))
            && lines[1].contains("stale (10s) is shorter than fresh (30s)"),
        "{stderr}"
    );

    let out = run(&["check", "--config", &good], &ENV[..2]);
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("HOOK_SECRET is not set"));
}

#[tokio::test]
async fn serve_runs_the_file_against_redis_and_stops_on_sigterm() {
    let redis = RedisServer::start();
    let upstream = FakeUpstream::start().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[redis]\nurl_env = \"REDIS_URL\"\n",
        support::CONFIG.replace(
            "[server]",
            &format!("[server]\nlisten = \"127.0.0.1:{port}\"")
        )
    );
    let path = write(&dir, "proxy.toml", &text);
    let mut child = bin()
        .args(["serve", "--config", &path])
        .env("UPSTREAM", &upstream.base)
        .env("CRM_KEY", "k3y")
        .env("HOOK_SECRET", "s3cret")
        .env("REDIS_URL", redis.url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the proxy never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for expect in ["MISS", "HIT"] {
        let r = http
            .get(format!("{base}/accounts/42"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-cache"], expect);
    }
    assert_eq!(upstream.calls(), 1);
    assert!(
        redis.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap() > 0,
        "cached in Redis"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut logs).unwrap();
    let request = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["path"] == "/accounts/42")
        .unwrap_or_else(|| panic!("a JSON request log line: {logs}"));
    assert_eq!(request["fields"]["status"], 200);
    assert_eq!(request["fields"]["cache"], "MISS");
    assert_eq!(request["level"], "INFO");
    let stamp = request["timestamp"].as_str().unwrap();
    assert!(
        stamp.len() == 27 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{stamp}"
    );
    assert!(request["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        !logs.contains("k3y") && !logs.contains("s3cret"),
        "secrets never logged"
    );
}

#[test]
fn genesys_actions_writes_one_importable_definition_per_route() {
    let dir = tempfile::tempdir().unwrap();
    let text = support::CONFIG.replace(
        "purge_alias = \"account_id\"",
        "purge_alias = \"account_id\"\nsample_response = '{\"id\":\"42\",\"name\":\"Ada\",\"open_cases\":2,\"vip\":true,\"tags\":[\"a\"]}'",
    );
    let path = write(&dir, "proxy.toml", &text);
    let out_dir = dir.path().join("actions");
    let out = run(
        &[
            "genesys-actions",
            "--config",
            &path,
            "--public-url",
            "https://proxy.example.com/",
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
        &ENV,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(out_dir.join(name)).unwrap()).unwrap()
    };
    let a = read("account.custom.json");
    // The shape Genesys Cloud exports and imports for Web Services Data Actions.
    assert_eq!(a["name"], "account");
    assert_eq!(a["integrationType"], "custom-rest-actions");
    assert_eq!(a["actionType"], "custom");
    assert_eq!(a["secure"], false);
    let request = &a["config"]["request"];
    assert_eq!(
        request["requestUrlTemplate"],
        "https://proxy.example.com/accounts/$esc.url(${input.id})?fields=$esc.url(${input.fields})"
    );
    assert_eq!(request["requestType"], "GET");
    assert_eq!(request["requestTemplate"], "${input.rawRequest}");
    assert_eq!(request["headers"]["x-tenant"], "${input.x_tenant}");
    let response = &a["config"]["response"];
    assert_eq!(response["successTemplate"], "${rawResult}");
    assert!(response["translationMap"].as_object().unwrap().is_empty());
    assert!(response["translationMapDefaults"]
        .as_object()
        .unwrap()
        .is_empty());
    let input = &a["contract"]["input"]["inputSchema"];
    assert_eq!(input["$schema"], "http://json-schema.org/draft-04/schema#");
    assert_eq!(input["type"], "object");
    assert_eq!(
        input["required"],
        serde_json::json!(["id", "fields", "x_tenant"])
    );
    assert_eq!(input["properties"]["id"]["type"], "string");
    let output = &a["contract"]["output"]["successSchema"];
    assert_eq!(output["type"], "object");
    assert_eq!(output["properties"]["open_cases"]["type"], "integer");
    assert_eq!(output["properties"]["vip"]["type"], "boolean");
    assert_eq!(output["properties"]["tags"]["items"]["type"], "string");

    let lines = read("order_lines.custom.json");
    assert_eq!(
        lines["config"]["request"]["requestUrlTemplate"],
        "https://proxy.example.com/orders/$esc.url(${input.order_id})/lines"
    );
    assert_eq!(
        lines["contract"]["output"]["successSchema"]["additionalProperties"],
        true
    );

    let out = run(
        &[
            "genesys-actions",
            "--config",
            &path,
            "--public-url",
            "http://proxy.example.com",
        ],
        &ENV,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("https"));
}
