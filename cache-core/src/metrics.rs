//! Reporting the counters through the `metrics` facade (feature `metrics`), so that whatever
//! exporter the application installed (Prometheus, StatsD, ...) shows them.

use crate::cache::Cache;

/// The per-name counters: `action_cache_events_total{prefix, name, event}`.
pub const EVENTS: &str = "action_cache_events_total";
/// The whole cache's counters (names past the first 1,000, and events of no name such as
/// store errors included): `action_cache_all_events_total{prefix, event}`.
pub const ALL_EVENTS: &str = "action_cache_all_events_total";
/// What runs now: `action_cache_in_flight{prefix, kind}`, `kind` one of `loads`, `reads`,
/// `refreshes`.
pub const IN_FLIGHT: &str = "action_cache_in_flight";

impl Cache {
    /// Records this cache's counters in the `metrics` recorder the application installed:
    /// [`EVENTS`](crate::metrics::EVENTS) per key name and event (`fresh_hits`, `stale_hits`,
    /// `misses`, `loads`, ... as in [`Stats`](crate::Stats)), [`ALL_EVENTS`](crate::metrics::ALL_EVENTS)
    /// for the whole cache, and the [`IN_FLIGHT`](crate::metrics::IN_FLIGHT) gauges; every series
    /// is labelled with the cache's prefix. Counters are set to their absolute values, so call
    /// it as often as you like: periodically from a task, or before rendering a scrape. It
    /// costs the hit path nothing.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = action_cache_core::Cache::in_memory();
    /// // With a recorder installed (e.g. metrics-exporter-prometheus), this fills it.
    /// cache.record_metrics();
    /// # });
    /// ```
    pub fn record_metrics(&self) {
        let prefix = self.prefix().to_string();
        for (name, stats) in self.stats_by_name() {
            for (event, n) in stats.counters() {
                metrics::counter!(EVENTS, "prefix" => prefix.clone(), "name" => name.clone(), "event" => event)
                    .absolute(n);
            }
        }
        for (event, n) in self.stats().counters() {
            metrics::counter!(ALL_EVENTS, "prefix" => prefix.clone(), "event" => event).absolute(n);
        }
        let in_flight = self.in_flight();
        for (kind, n) in [
            ("loads", in_flight.loads),
            ("reads", in_flight.reads),
            ("refreshes", in_flight.refreshes),
        ] {
            metrics::gauge!(IN_FLIGHT, "prefix" => prefix.clone(), "kind" => kind).set(n as f64);
        }
    }
}
