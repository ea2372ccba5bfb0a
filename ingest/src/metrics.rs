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
    pub moderation_refused: IntCounterVec,
    pub controls: IntCounterVec,
    pub bans_in_force: IntGauge,
    pub state_records: IntCounterVec,
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
            moderation_refused: m.counter_vec(
                "chorus_ingest_moderation_refused_total",
                "Posts refused by a stream's moderation, by rule (banned, slow_mode, moderators_only, \
                 comments_closed, blocked_term)",
                &["rule"],
            )?,
            controls: m.counter_vec(
                "chorus_ingest_moderation_controls_total",
                "Moderation controls accepted (durable in Kafka), by control (take_down, ban, lift, \
                 settings)",
                &["control"],
            )?,
            bans_in_force: m.gauge(
                "chorus_ingest_bans_in_force",
                "Bans in force (per stream and platform-wide) as this ingest knows them, every region's",
            )?,
            state_records: m.counter_vec(
                "chorus_ingest_state_records_total",
                "Records of the followed state topics applied, by table and outcome",
                &["table", "outcome"],
            )?,
        })
    }

    /// A post refused by moderation (logged at debug: a banned user's retries are many).
    pub fn record_moderation_refused(&self, rule: &'static str, user_id: &str) {
        self.moderation_refused.with_label_values(&[rule]).inc();
        tracing::debug!(rule, user_id, "post refused by moderation");
    }

    /// A moderation control made durable (logged: a moderator acted).
    pub fn record_control(&self, control: &'static str, stream_id: Option<&str>, by: &str) {
        self.controls.with_label_values(&[control]).inc();
        tracing::info!(control, stream_id, by, "moderation control");
    }

    /// A record of a followed state topic.
    pub fn record_state_record(&self, table: &'static str, outcome: &'static str) {
        self.state_records
            .with_label_values(&[table, outcome])
            .inc();
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
