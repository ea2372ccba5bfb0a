//! Building a role's metrics: each metric is named once, created and registered in the same call, so a
//! metric can never be declared and then forgotten at registration (or registered twice).
//!
//! ```
//! # fn main() -> Result<(), prometheus::Error> {
//! let registry = prometheus::Registry::new();
//! let m = chorus_service::metrics::Metrics::new(&registry);
//! let records = m.counter("chorus_example_records_total", "Records copied")?;
//! let by_outcome = m.counter_vec("chorus_example_commits_total", "Commits, by outcome", &["outcome"])?;
//! records.inc();
//! by_outcome.with_label_values(&["ok"]).inc();
//! assert_eq!(registry.gather().len(), 2);
//! # Ok(()) }
//! ```

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Creates metrics in `registry`; every method returns the metric already registered.
#[derive(Debug, Clone, Copy)]
pub struct Metrics<'r> {
    registry: &'r Registry,
}

impl<'r> Metrics<'r> {
    pub fn new(registry: &'r Registry) -> Self {
        Metrics { registry }
    }

    fn register<C: Collector + Clone + 'static>(&self, metric: C) -> Result<C, prometheus::Error> {
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    pub fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.register(IntCounter::new(name, help)?)
    }

    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    pub fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.register(IntGauge::new(name, help)?)
    }

    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    /// A histogram with these bucket upper bounds.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
    ) -> Result<Histogram, prometheus::Error> {
        self.register(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets),
        )?)
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> Result<HistogramVec, prometheus::Error> {
        self.register(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets),
            labels,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_once_and_a_second_one_of_a_name_is_refused() {
        let registry = Registry::new();
        let m = Metrics::new(&registry);
        m.counter("chorus_test_a_total", "a").expect("a");
        m.gauge_vec("chorus_test_b", "b", &["kind"]).expect("b");
        m.histogram("chorus_test_c_seconds", "c", vec![0.1, 1.0])
            .expect("c");
        assert!(m.counter("chorus_test_a_total", "again").is_err());
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert_eq!(names.len(), 2, "families with no sample yet: {names:?}");
    }
}
