//! What ingest counts. Names follow `chorus_ingest_<what>_<unit>`; no label carries a stream or user id.
//!
//! Each metric is listed once ([`IngestMetrics::register`]); an occurrence that is both counted and logged
//! (a rate limit, an authentication failure, a replay, a stored event) is recorded by one method here, so the
//! count and the log line cannot drift apart.

use std::fmt::Display;

use chorus_schemas::EventKind;
use chorus_service::metrics::Metrics;
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::limits::Refused;

const REQUEST_SECONDS_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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
        let m = Metrics::new(registry);
        Ok(IngestMetrics {
            requests: m.counter_vec(
                "chorus_ingest_requests_total",
                "HTTP requests by route and status",
                &["route", "status"],
            )?,
            request_seconds: m.histogram_vec(
                "chorus_ingest_request_duration_seconds",
                "HTTP request latency by route, including Kafka's acknowledgement",
                &["route"],
                REQUEST_SECONDS_BUCKETS.to_vec(),
            )?,
            events_produced: m.counter_vec(
                "chorus_ingest_events_produced_total",
                "Events acknowledged by Kafka, by kind",
                &["kind"],
            )?,
            rejected: m.counter_vec(
                "chorus_ingest_rejected_total",
                "Requests answered with a problem document, by reason",
                &["reason"],
            )?,
            producer_in_flight: m.gauge(
                "chorus_ingest_producer_in_flight_messages",
                "Messages produced and not yet acknowledged",
            )?,
            auth_failures: m.counter_vec(
                "chorus_ingest_auth_failures_total",
                "Requests refused with 401 or 403, by reason (missing, expired, bad_signature, ...)",
                &["reason"],
            )?,
            rate_limited: m.counter_vec(
                "chorus_ingest_rate_limited_total",
                "Requests refused with 429, by limit (address, user_comments, user_likes, stream)",
                &["limit"],
            )?,
            rate_limit_keys: m.gauge(
                "chorus_ingest_rate_limit_keys",
                "Addresses, users and streams the rate limiters currently remember",
            )?,
            idempotent_replays: m.counter(
                "chorus_ingest_idempotent_replays_total",
                "Retries with a known Idempotency-Key answered with the first answer, writing nothing",
            )?,
        })
    }

    /// A request over a rate limit.
    pub fn record_rate_limited(&self, refused: &Refused) {
        let limit = refused.limit.label();
        self.rate_limited.with_label_values(&[limit]).inc();
        tracing::debug!(
            limit,
            retry_after_ms = refused.retry_after.as_millis() as u64,
            "rate limited"
        );
    }

    /// A request refused with 401 or 403; `reason` is the bounded label, `error` the detail for the log.
    pub fn record_auth_failure(&self, reason: &'static str, error: &dyn Display) {
        self.auth_failures.with_label_values(&[reason]).inc();
        tracing::debug!(reason, %error, "request not authenticated");
    }

    /// A retry answered with the first answer.
    pub fn record_replay(&self, event_id: &str) {
        self.idempotent_replays.inc();
        tracing::debug!(%event_id, "idempotent replay");
    }

    /// An event Kafka acknowledged.
    pub fn record_produced(&self, kind: EventKind) {
        self.events_produced
            .with_label_values(&[kind.label()])
            .inc();
    }

    /// A response with `status` to a request on `route`, after `seconds`; an error response also by its problem type
    /// (`reason`: the problem's slug, or `other` for an error that is not a problem document).
    pub fn record_response(&self, route: &str, status: &str, seconds: f64, reason: Option<&str>) {
        self.request_seconds
            .with_label_values(&[route])
            .observe(seconds);
        self.requests.with_label_values(&[route, status]).inc();
        if let Some(reason) = reason {
            self.rejected.with_label_values(&[reason]).inc();
        }
    }
}
