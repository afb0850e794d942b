//! Prometheus metrics (OpenMetrics text through `prometheus-client`): per route, responses by
//! cache outcome, cache events (fresh, stale, miss, load, refresh, error, shed, rejected) and a
//! latency histogram; webhook results; and the cache's own counters.
//!
//! The cache-wide counters come from [`action_cache::Cache::stats`]; per-route cache events are
//! counted here until the cache counts per name itself.

use action_cache::Cache;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    route: String,
    cache: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    route: String,
    event: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// A cache event counted per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Served from a fresh entry.
    Fresh,
    /// Served from a stale entry (a refresh was due).
    Stale,
    /// No usable entry.
    Miss,
    /// An upstream call for a miss.
    Load,
    /// An upstream call for a background refresh.
    Refresh,
    /// An upstream call that failed.
    Error,
    /// An upstream call not made because the bulkhead was full.
    Shed,
    /// A request refused with 400 before any lookup.
    Rejected,
}

impl Event {
    const ALL: [Event; 8] = [
        Event::Fresh,
        Event::Stale,
        Event::Miss,
        Event::Load,
        Event::Refresh,
        Event::Error,
        Event::Shed,
        Event::Rejected,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Event::Fresh => "fresh",
            Event::Stale => "stale",
            Event::Miss => "miss",
            Event::Load => "load",
            Event::Refresh => "refresh",
            Event::Error => "error",
            Event::Shed => "shed",
            Event::Rejected => "rejected",
        }
    }
}

/// The `X-Cache` values a route's responses are counted by.
const OUTCOMES: [&str; 6] = [
    "HIT",
    "STALE",
    "MISS",
    "STALE-IF-ERROR",
    "ERROR",
    "REJECTED",
];

/// One route's metric handles, created once so that a request updates atomics without
/// building label sets.
#[derive(Debug, Clone)]
pub(crate) struct RouteMetrics {
    events: Vec<Counter>,
    responses: Vec<Counter>,
    latency: Histogram,
}

impl RouteMetrics {
    /// Counts one cache event.
    pub(crate) fn event(&self, event: Event) {
        let i = Event::ALL
            .iter()
            .position(|e| *e == event)
            .expect("every event is listed");
        self.events[i].inc();
    }

    /// Counts one response by its `X-Cache` value, and its latency.
    pub(crate) fn response(&self, cache: &str, latency: Duration) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == cache) {
            self.responses[i].inc();
        }
        self.latency.observe(latency.as_secs_f64());
    }
}

/// The proxy's metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    responses: Family<ResponseLabels, Counter>,
    events: Family<EventLabels, Counter>,
    latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    webhooks: Family<ResultLabel, Counter>,
    registry: std::sync::Arc<Registry>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    ])
}

#[derive(Debug)]
struct StatsCollector(Cache);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        let counters = [
            (
                "fresh_hits",
                "Reads served from a fresh entry.",
                s.fresh_hits,
            ),
            (
                "stale_hits",
                "Reads served from a stale entry while it was refreshed.",
                s.stale_hits,
            ),
            ("misses", "Reads that found no usable entry", s.misses),
            ("loads", "Backend calls made on misses", s.loads),
            (
                "load_errors",
                "Backend calls on misses that failed.",
                s.load_errors,
            ),
            (
                "refreshes_started",
                "Background refreshes started.",
                s.refreshes_started,
            ),
            (
                "refreshes_succeeded",
                "Background refreshes that stored a new value.",
                s.refreshes_succeeded,
            ),
            (
                "refreshes_failed",
                "Background refreshes whose backend call failed.",
                s.refreshes_failed,
            ),
            (
                "store_errors",
                "Store operations that failed or timed out (fail-open).",
                s.store_errors,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let full = format!("action_cache_{name}");
            let metric = encoder.encode_descriptor(&full, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Metrics, including `cache`'s own counters.
    pub fn new(cache: &Cache) -> Metrics {
        let mut registry = Registry::default();
        let responses = Family::<ResponseLabels, Counter>::default();
        let events = Family::<EventLabels, Counter>::default();
        let latency = Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let webhooks = Family::<ResultLabel, Counter>::default();
        registry.register(
            "proxy_responses",
            "Responses by route and X-Cache outcome",
            responses.clone(),
        );
        registry.register(
            "proxy_cache_events",
            "Cache events by route: fresh, stale, miss, load, refresh, error, shed, rejected",
            events.clone(),
        );
        registry.register(
            "proxy_request_duration_seconds",
            "Request latency by route",
            latency.clone(),
        );
        registry.register(
            "proxy_webhook_requests",
            "Purge webhook requests by result",
            webhooks.clone(),
        );
        registry.register_collector(Box::new(StatsCollector(cache.clone())));
        Metrics {
            responses,
            events,
            latency,
            webhooks,
            registry: std::sync::Arc::new(registry),
        }
    }

    /// The handles of `route`'s metrics.
    pub(crate) fn route(&self, route: &str) -> RouteMetrics {
        let events = Event::ALL
            .iter()
            .map(|e| {
                self.events
                    .get_or_create(&EventLabels {
                        route: route.to_owned(),
                        event: e.as_str().to_owned(),
                    })
                    .clone()
            })
            .collect();
        let responses = OUTCOMES
            .iter()
            .map(|o| {
                self.responses
                    .get_or_create(&ResponseLabels {
                        route: route.to_owned(),
                        cache: (*o).to_owned(),
                    })
                    .clone()
            })
            .collect();
        let latency = self
            .latency
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .clone();
        RouteMetrics {
            events,
            responses,
            latency,
        }
    }

    /// Counts one webhook request by result.
    pub(crate) fn webhook(&self, result: &str) {
        self.webhooks
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
