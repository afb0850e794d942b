//! `Cache::record_metrics` (feature `metrics`): the counters reach the `metrics` recorder, per
//! key name and for the whole cache.
#![cfg(feature = "metrics")]

use action_cache_core::{Cache, CacheKey, Policy};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use std::time::Duration;

/// The value of the series `metric` whose labels include all of `labels`.
fn value<'a>(
    snapshot: &'a [(metrics_util::CompositeKey, DebugValue)],
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshot.iter().find_map(|(key, value)| {
        let k = key.key();
        let has = |(n, v): &(&str, &str)| k.labels().any(|l| l.key() == *n && l.value() == *v);
        (k.name() == metric && labels.iter().all(has)).then_some(value)
    })
}

#[tokio::test]
async fn record_metrics_reports_each_names_counters_and_the_whole_caches() {
    let cache = Cache::builder().prefix("mt").build().unwrap();
    let policy = Policy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap();
    let key = CacheKey::builder("crm.account").build();
    for _ in 0..3 {
        let v: u32 = cache
            .get_or_load(&key, &policy, || async { Ok::<_, String>(7) })
            .await
            .unwrap();
        assert_eq!(v, 7);
    }

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || cache.record_metrics());
    let snapshot: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();
    assert!(snapshot
        .iter()
        .all(|(key, _)| key.kind() != MetricKind::Histogram));

    let named = |event| {
        value(
            &snapshot,
            action_cache_core::metrics::EVENTS,
            &[("prefix", "mt"), ("name", "crm.account"), ("event", event)],
        )
    };
    assert_eq!(named("misses"), Some(&DebugValue::Counter(1)));
    assert_eq!(named("fresh_hits"), Some(&DebugValue::Counter(2)));
    assert_eq!(named("loads"), Some(&DebugValue::Counter(1)));
    let all = value(
        &snapshot,
        action_cache_core::metrics::ALL_EVENTS,
        &[("prefix", "mt"), ("event", "fresh_hits")],
    );
    assert_eq!(all, Some(&DebugValue::Counter(2)));
    let loads_now = value(
        &snapshot,
        action_cache_core::metrics::IN_FLIGHT,
        &[("prefix", "mt"), ("kind", "loads")],
    );
    assert!(matches!(loads_now, Some(DebugValue::Gauge(g)) if g.into_inner() == 0.0));
}
