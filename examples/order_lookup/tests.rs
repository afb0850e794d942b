//! The example run in-process: its report, embedded (fake Genesys, memory), on a real Redis,
//! fail-open on an unreachable one, and one clear line for bad configuration.

use super::{run, Args, Setup};
use action_cache::genesys::fake::FakeGenesys;
use action_cache::genesys::ClientSecret;
use action_cache::ManualClock;
use action_cache_testing::{free_port, RedisServer};
use std::time::Duration;

fn args(redis_url: Option<String>) -> Args {
    Args {
        fresh: Duration::from_secs(1),
        stale: Duration::from_secs(5),
        order_id: "A-1001".to_owned(),
        redis_url,
        // What a data action's round trip costs; the report's miss lines include it.
        fake_latency: Duration::from_millis(80),
    }
}

/// Runs the example with no GENESYS_* variables and a manual clock; returns its report.
async fn report(args: &Args) -> Result<String, String> {
    let no_env = |_: &str| None;
    let setup = Setup {
        env: &no_env,
        clock: Some(ManualClock::new()),
        genesys: None,
    };
    let mut out = Vec::new();
    run(args, setup, &mut out).await?;
    Ok(String::from_utf8(out).expect("the report is UTF-8"))
}

/// The lines of `report` that start with `prefix` (after indentation).
fn lines<'a>(report: &'a str, prefix: &str) -> Vec<&'a str> {
    report
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn embedded_run_shows_miss_hit_stale_refresh_and_purge() {
    let report = report(&args(None)).await.expect("the run succeeds");

    assert!(
        report.contains("using the in-process fake server"),
        "{report}"
    );
    assert!(report.contains("(80ms per request)"), "{report}");
    assert!(report.contains("using the in-memory store"), "{report}");
    // Step 1: the five `order_lookup` actions of the fake, a miss then a hit.
    let section: Vec<&str> = report
        .split("\n2.")
        .next()
        .unwrap()
        .lines()
        .map(str::trim)
        .collect();
    assert!(section
        .iter()
        .any(|l| l.starts_with("miss") && l.contains("5 actions")));
    assert!(section
        .iter()
        .any(|l| l.starts_with("hit") && l.contains("5 actions")));
    // The action names follow the two calls, one per line.
    let names: Vec<&str> = section
        .iter()
        .copied()
        .skip_while(|l| !l.starts_with("hit"))
        .skip(1)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(names.len(), 5, "{report}");
    assert!(names
        .iter()
        .all(|n| n.to_lowercase().contains("order_lookup")));
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted, "sorted by name");

    // Step 2: the stale hit serves load #1, the refresh then serves load #2.
    assert_eq!(lines(&report, "stale hit load #1").len(), 1, "{report}");
    let refreshed = lines(&report, "refreshed load #2");
    assert_eq!(refreshed.len(), 1, "{report}");
    assert!(
        refreshed[0].ends_with("loads so far: 2"),
        "one refresh: {report}"
    );

    // Step 3: execute (miss), hit, purge, miss again.
    let order: Vec<&str> = report
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("3."))
        .collect();
    assert!(order[0].ends_with("for order A-1001"), "{report}");
    assert!(order[1].starts_with("miss") && order[1].contains("A-1001 SHIPPED"));
    assert!(order[2].starts_with("hit") && order[2].contains("A-1001 SHIPPED"));
    assert!(order[3].starts_with("purged") && order[3].ends_with("true"));
    assert!(order[4].starts_with("miss") && order[4].contains("A-1001 SHIPPED"));

    let summary = lines(&report, "summary:");
    assert_eq!(summary.len(), 1, "{report}");
    assert!(summary[0].contains(" 1 background refreshes"), "{report}");
    assert!(summary[0].contains(" 0 store errors"), "{report}");
}

#[tokio::test]
async fn caches_in_redis_when_given_a_url() {
    let redis = RedisServer::start();
    let report = report(&args(Some(redis.url())))
        .await
        .expect("the run succeeds");
    assert!(report.contains("cache:   Redis at redis://"), "{report}");
    assert_eq!(lines(&report, "refreshed load #2").len(), 1, "{report}");
    assert!(redis.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap() > 0);
}

#[tokio::test]
async fn unreachable_redis_warns_and_runs_fail_open() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let report = report(&args(Some(url)))
        .await
        .expect("fail-open still succeeds");
    assert!(report.contains("warning: Redis at"), "{report}");
    assert!(report.contains("running fail-open"), "{report}");
    assert!(
        report.contains("(nothing stored: no stale value to serve)"),
        "{report}"
    );
    assert!(report.contains("purge     failed:"), "{report}");
    assert!(report.contains("summary:"), "{report}");
}

#[tokio::test]
async fn unknown_region_is_one_clear_error() {
    let env = |name: &str| match name {
        "GENESYS_CLIENT_ID" => Some("id".to_owned()),
        "GENESYS_CLIENT_SECRET" => Some("do-not-print-me".to_owned()),
        "GENESYS_REGION" => Some("mars".to_owned()),
        _ => None,
    };
    let setup = Setup {
        env: &env,
        clock: None,
        genesys: None,
    };
    let mut out = Vec::new();
    let err = run(&args(None), setup, &mut out).await.unwrap_err();
    assert!(
        err.contains("unknown Genesys Cloud region \"mars\""),
        "{err}"
    );
    assert!(
        !err.contains('\n') && !err.contains("do-not-print-me"),
        "{err}"
    );
}

#[tokio::test]
async fn unparsable_redis_url_is_one_clear_error() {
    let err = report(&args(Some("not a url".to_owned())))
        .await
        .unwrap_err();
    assert!(err.starts_with("REDIS_URL:"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn rejected_credentials_are_one_clear_error_naming_the_client_id() {
    let fake = FakeGenesys::start().await.unwrap();
    let no_env = |_: &str| None;
    let setup = Setup {
        env: &no_env,
        clock: None,
        genesys: Some(
            fake.client_builder()
                .credentials(fake.client_id(), ClientSecret::new("wrong-secret")),
        ),
    };
    let mut out = Vec::new();
    let err = run(&args(None), setup, &mut out).await.unwrap_err();
    assert!(
        err.contains("rejected the OAuth client credentials"),
        "{err}"
    );
    assert!(err.contains(fake.client_id()), "{err}");
    assert!(
        !err.contains('\n') && !err.contains("wrong-secret"),
        "{err}"
    );
}
