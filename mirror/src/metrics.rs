//! What the mirror counts. Names follow `chorus_mirror_<what>_<unit>`.

use chorus_service::metrics::Metrics;
use prometheus::{IntCounter, IntGauge, Registry};

#[derive(Debug, Clone)]
pub struct MirrorMetrics {
    pub records: IntCounter,
    pub bytes: IntCounter,
    pub skipped_mirrored: IntCounter,
    pub errors: IntCounter,
    pub in_flight: IntGauge,
    pub lag: IntGauge,
}

impl MirrorMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Metrics::new(registry);
        Ok(MirrorMetrics {
            records: m.counter(
                "chorus_mirror_records_total",
                "Records copied and acknowledged by the target",
            )?,
            bytes: m.counter("chorus_mirror_bytes_total", "Value bytes copied")?,
            skipped_mirrored: m.counter(
                "chorus_mirror_skipped_mirrored_total",
                "Records skipped because they were already a mirror's copy",
            )?,
            errors: m.counter(
                "chorus_mirror_errors_total",
                "Copies the target refused (retried)",
            )?,
            in_flight: m.gauge(
                "chorus_mirror_in_flight_records",
                "Records copied and not yet acknowledged",
            )?,
            lag: m.gauge(
                "chorus_mirror_lag_records",
                "Records in the source not yet copied (from the source's end offsets)",
            )?,
        })
    }
}
