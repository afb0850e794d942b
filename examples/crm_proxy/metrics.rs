//! Prometheus text exposition: the cache's counters, responses by cache outcome, and a request
//! latency histogram kept in atomics.

use action_cache::Stats;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The `X-Cache` outcomes counted per response.
pub(crate) const OUTCOMES: [&str; 5] = ["HIT", "STALE", "MISS", "STALE-IF-ERROR", "ERROR"];

/// Request metrics of the proxy.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Per bucket (not cumulative), plus one for `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
    outcomes: [AtomicU64; OUTCOMES.len()],
}

impl Metrics {
    /// Records one request's latency and, for account reads, its `X-Cache` outcome.
    pub(crate) fn record(&self, latency: Duration, outcome: Option<&str>) {
        let seconds = latency.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = outcome.and_then(|o| OUTCOMES.iter().position(|&known| known == o)) {
            self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The exposition text (format 0.0.4).
    pub(crate) fn render(&self, stats: &Stats) -> String {
        let mut out = String::new();
        let counters = [
            (
                "fresh_hits",
                "Reads served from a fresh entry.",
                stats.fresh_hits,
            ),
            (
                "stale_hits",
                "Reads served from a stale entry while it was refreshed.",
                stats.stale_hits,
            ),
            ("misses", "Reads that found no usable entry.", stats.misses),
            ("loads", "Backend calls made on misses.", stats.loads),
            (
                "load_errors",
                "Backend calls on misses that failed.",
                stats.load_errors,
            ),
            (
                "refreshes_started",
                "Background refreshes started.",
                stats.refreshes_started,
            ),
            (
                "refreshes_succeeded",
                "Background refreshes that stored a new value.",
                stats.refreshes_succeeded,
            ),
            (
                "refreshes_failed",
                "Background refreshes whose backend call failed.",
                stats.refreshes_failed,
            ),
            (
                "store_errors",
                "Store operations that failed or timed out (fail-open).",
                stats.store_errors,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP action_cache_{name}_total {help}");
            let _ = writeln!(out, "# TYPE action_cache_{name}_total counter");
            let _ = writeln!(out, "action_cache_{name}_total {value}");
        }

        let _ = writeln!(
            out,
            "# HELP crm_proxy_responses_total Account responses by X-Cache outcome."
        );
        let _ = writeln!(out, "# TYPE crm_proxy_responses_total counter");
        for (name, count) in OUTCOMES.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "crm_proxy_responses_total{{cache=\"{name}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }

        let name = "crm_proxy_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Request latency.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {}", self.count.load(Ordering::Relaxed));
        out
    }
}
