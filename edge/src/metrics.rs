//! What the edge counts. Names follow `chorus_edge_<what>_<unit>`; no label carries a stream, user or
//! connection id. Each metric is named here once (created and registered in one call); what moves it is the
//! `occurrences` module.

use chorus_service::metrics::Metrics;
use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    pub viewers: ViewerMetrics,
    pub feed: FeedMetrics,
}

impl EdgeMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Metrics::new(registry);
        Ok(EdgeMetrics {
            viewers: ViewerMetrics::register(&m)?,
            feed: FeedMetrics::register(&m)?,
        })
    }
}

/// The viewers: their connections, refusals and joins, and what is written to them.
#[derive(Debug, Clone)]
pub struct ViewerMetrics {
    pub connections: IntGaugeVec,
    pub rejected: IntCounterVec,
    pub joins: IntCounter,
    pub frames_sent: IntCounter,
    pub bytes_sent: IntCounter,
    pub events_delivered: IntCounter,
    pub gaps: IntCounter,
    pub reconnects: IntCounterVec,
    pub liveness_timeouts: IntCounter,
    pub violations: IntCounterVec,
    pub slow_disconnects: IntCounter,
    pub draining: IntGauge,
    pub join_to_first_event: Histogram,
    pub queue_depth: Histogram,
    pub resumes: IntCounterVec,
    pub resume_replayed: IntCounter,
    pub resume_to_replay: Histogram,
}

impl ViewerMetrics {
    fn register(m: &Metrics<'_>) -> Result<Self, prometheus::Error> {
        Ok(ViewerMetrics {
            connections: m.gauge_vec(
                "chorus_edge_connections",
                "Open viewer connections by transport",
                &["transport"],
            )?,
            rejected: m.counter_vec(
                "chorus_edge_connections_rejected_total",
                "Viewer connections refused, by reason",
                &["reason"],
            )?,
            joins: m.counter("chorus_edge_joins_total", "Viewers that received hello")?,
            frames_sent: m.counter("chorus_edge_frames_sent_total", "Frames written to viewers")?,
            bytes_sent: m.counter(
                "chorus_edge_sent_bytes_total",
                "Bytes of frames written to viewers",
            )?,
            events_delivered: m.counter(
                "chorus_edge_events_delivered_total",
                "Events written to viewers (one per viewer)",
            )?,
            gaps: m.counter(
                "chorus_edge_gaps_total",
                "Gap frames sent to viewers that fell behind",
            )?,
            reconnects: m.counter_vec(
                "chorus_edge_reconnects_total",
                "Reconnect frames sent, by reason (ttl, drain)",
                &["reason"],
            )?,
            liveness_timeouts: m.counter(
                "chorus_edge_liveness_timeouts_total",
                "Viewers closed after two heartbeats without a sign of life",
            )?,
            violations: m.counter_vec(
                "chorus_edge_viewer_violations_total",
                "WebSocket viewers closed for what they sent (with close code 1008, 1009, 1007 or 1002), \
                 by reason (too_many_frames, too_big, invalid_utf8, protocol_error)",
                &["reason"],
            )?,
            slow_disconnects: m.counter(
                "chorus_edge_slow_disconnects_total",
                "Viewers disconnected because they kept falling behind",
            )?,
            draining: m.gauge(
                "chorus_edge_draining",
                "1 while the edge drains its viewers",
            )?,
            join_to_first_event: m.histogram(
                "chorus_edge_join_to_first_event_seconds",
                "Time from a viewer's hello to its first event",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            )?,
            queue_depth: m.histogram(
                "chorus_edge_viewer_queue_frames",
                "Frames waiting for a viewer when it starts a write (its backlog in its stream's buffer)",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            )?,
            resumes: m.counter_vec(
                "chorus_edge_resumes_total",
                "Viewers that came back with a cursor, by outcome (resumed, window, epoch, malformed)",
                &["outcome"],
            )?,
            resume_replayed: m.counter(
                "chorus_edge_resume_replayed_events_total",
                "Events a resuming viewer missed, sent to it before the live stream",
            )?,
            resume_to_replay: m.histogram(
                "chorus_edge_resume_replay_seconds",
                "Time from a resuming viewer's connect to what it missed being ready to send",
                vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            )?,
        })
    }
}

/// What reaches the edge: fanout's push sessions, batches, events and likes, the rooms they go to, and the
/// membership records the edge writes.
#[derive(Debug, Clone)]
pub struct FeedMetrics {
    pub streams: IntGauge,
    pub push_sessions: IntGauge,
    pub push_refused: IntCounterVec,
    pub positions_refused: IntCounterVec,
    pub admin_refused: IntCounterVec,
    pub push_batches: IntCounter,
    pub events_received: IntCounter,
    pub duplicates_dropped: IntCounter,
    pub events_unrouted: IntCounter,
    pub likes_frames: IntCounter,
    pub taken_down: IntCounter,
    pub viewers_frames: IntCounter,
    pub event_age: HistogramVec,
    pub membership_writes: IntCounterVec,
}

impl FeedMetrics {
    fn register(m: &Metrics<'_>) -> Result<Self, prometheus::Error> {
        Ok(FeedMetrics {
            streams: m.gauge(
                "chorus_edge_streams",
                "Streams with viewers (or lingering) on this edge",
            )?,
            push_sessions: m.gauge(
                "chorus_edge_push_sessions",
                "Fanout instances connected to this edge",
            )?,
            push_refused: m.counter_vec(
                "chorus_edge_push_refused_total",
                "Connections to the internal port refused or push sessions dropped, by reason \
                 (missing_token, invalid_token, malformed_batch, no_hello)",
                &["reason"],
            )?,
            positions_refused: m.counter_vec(
                "chorus_edge_positions_refused_total",
                "Positions from fanout not adopted, and events dropped, by reason (not_owner, backwards, \
                 ahead, invalid)",
                &["reason"],
            )?,
            admin_refused: m.counter_vec(
                "chorus_edge_admin_refused_total",
                "Requests to the admin port's mutating routes refused, by reason (missing_token, invalid_token)",
                &["reason"],
            )?,
            push_batches: m.counter(
                "chorus_edge_push_batches_total",
                "Batches received from fanout",
            )?,
            events_received: m.counter(
                "chorus_edge_events_received_total",
                "Events received from fanout",
            )?,
            duplicates_dropped: m.counter(
                "chorus_edge_duplicates_dropped_total",
                "Events dropped because their event_id was already delivered",
            )?,
            events_unrouted: m.counter(
                "chorus_edge_events_unrouted_total",
                "Events received for a stream without viewers here",
            )?,
            likes_frames: m.counter(
                "chorus_edge_likes_frames_total",
                "Aggregated likes frames from fanout broadcast to a stream's viewers",
            )?,
            taken_down: m.counter(
                "chorus_edge_comments_taken_down_total",
                "Comments taken down in a room here (by id or by author), each once",
            )?,
            viewers_frames: m.counter(
                "chorus_edge_viewer_count_frames_total",
                "Viewer count updates broadcast to a stream's viewers (at most one a second per stream)",
            )?,
            event_age: m.histogram_vec(
                "chorus_edge_event_age_seconds",
                "Age of each event as it reaches this edge from fanout (now minus its created_ms at ingest), \
                 by the topic it was read from: end-to-end latency up to the viewers' queues",
                &["topic"],
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )?,
            membership_writes: m.counter_vec(
                "chorus_edge_membership_writes_total",
                "Subscription and lease records written, by record and outcome",
                &["record", "outcome"],
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_under_its_name() {
        let registry = Registry::new();
        let m = EdgeMetrics::register(&registry).expect("metrics");
        m.viewers
            .connections
            .with_label_values(&["websocket"])
            .inc();
        m.viewers.rejected.with_label_values(&["edge_full"]).inc();
        m.viewers.reconnects.with_label_values(&["ttl"]).inc();
        m.viewers
            .violations
            .with_label_values(&["too_many_frames"])
            .inc();
        m.feed.event_age.with_label_values(&["events"]).observe(0.1);
        m.feed
            .membership_writes
            .with_label_values(&["lease", "ok"])
            .inc();
        for refused in [
            &m.feed.push_refused,
            &m.feed.positions_refused,
            &m.feed.admin_refused,
        ] {
            refused.with_label_values(&["invalid"]).inc();
        }
        m.viewers.resumes.with_label_values(&["resumed"]).inc();
        assert_eq!(registry.gather().len(), 31, "every metric once");
        assert!(EdgeMetrics::register(&registry).is_err(), "a name twice");
    }
}
