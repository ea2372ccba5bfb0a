//! What ingest counts. Names follow `chorus_ingest_<what>_<unit>`; no label carries a stream or user id.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct IngestMetrics {
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub events_produced: IntCounterVec,
    pub rejected: IntCounterVec,
    pub producer_in_flight: IntGauge,
    pub auth_failures: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub rate_limit_keys: IntGauge,
    pub idempotent_replays: IntCounter,
}

impl IngestMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = IngestMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "chorus_ingest_requests_total",
                    "HTTP requests by route and status",
                ),
                &["route", "status"],
            )?,
            request_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "chorus_ingest_request_duration_seconds",
                    "HTTP request latency by route, including Kafka's acknowledgement",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["route"],
            )?,
            events_produced: IntCounterVec::new(
                Opts::new(
                    "chorus_ingest_events_produced_total",
                    "Events acknowledged by Kafka, by kind",
                ),
                &["kind"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "chorus_ingest_rejected_total",
                    "Requests answered with a problem document, by reason",
                ),
                &["reason"],
            )?,
            producer_in_flight: IntGauge::new(
                "chorus_ingest_producer_in_flight_messages",
                "Messages produced and not yet acknowledged",
            )?,
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "chorus_ingest_auth_failures_total",
                    "Requests refused with 401 or 403, by reason (missing, expired, bad_signature, ...)",
                ),
                &["reason"],
            )?,
            rate_limited: IntCounterVec::new(
                Opts::new(
                    "chorus_ingest_rate_limited_total",
                    "Requests refused with 429, by limit (address, user_comments, user_likes, stream)",
                ),
                &["limit"],
            )?,
            rate_limit_keys: IntGauge::new(
                "chorus_ingest_rate_limit_keys",
                "Addresses, users and streams the rate limiters currently remember",
            )?,
            idempotent_replays: IntCounter::new(
                "chorus_ingest_idempotent_replays_total",
                "Retries with a known Idempotency-Key answered with the first answer, writing nothing",
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.request_seconds.clone()))?;
        registry.register(Box::new(metrics.events_produced.clone()))?;
        registry.register(Box::new(metrics.rejected.clone()))?;
        registry.register(Box::new(metrics.producer_in_flight.clone()))?;
        registry.register(Box::new(metrics.auth_failures.clone()))?;
        registry.register(Box::new(metrics.rate_limited.clone()))?;
        registry.register(Box::new(metrics.rate_limit_keys.clone()))?;
        registry.register(Box::new(metrics.idempotent_replays.clone()))?;
        Ok(metrics)
    }
}
