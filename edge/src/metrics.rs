//! What the edge counts. Names follow `chorus_edge_<what>_<unit>`; no label carries a stream, user or
//! connection id.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    pub connections: IntGaugeVec,
    pub rejected: IntCounterVec,
    pub streams: IntGauge,
    pub push_sessions: IntGauge,
    pub push_batches: IntCounter,
    pub events_received: IntCounter,
    pub duplicates_dropped: IntCounter,
    pub events_unrouted: IntCounter,
    pub frames_sent: IntCounter,
    pub bytes_sent: IntCounter,
    pub events_delivered: IntCounter,
    pub gaps: IntCounter,
    pub likes_frames: IntCounter,
    pub reconnects: IntCounterVec,
    pub liveness_timeouts: IntCounter,
    pub slow_disconnects: IntCounter,
    pub draining: IntGauge,
    pub joins: IntCounter,
    pub join_to_first_event: Histogram,
    pub event_age: HistogramVec,
    pub queue_depth: Histogram,
    pub membership_writes: IntCounterVec,
}

impl EdgeMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let m = EdgeMetrics {
            connections: IntGaugeVec::new(
                Opts::new(
                    "chorus_edge_connections",
                    "Open viewer connections by transport",
                ),
                &["transport"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "chorus_edge_connections_rejected_total",
                    "Viewer connections refused, by reason",
                ),
                &["reason"],
            )?,
            streams: IntGauge::new(
                "chorus_edge_streams",
                "Streams with viewers (or lingering) on this edge",
            )?,
            push_sessions: IntGauge::new(
                "chorus_edge_push_sessions",
                "Fanout instances connected to this edge",
            )?,
            push_batches: counter(
                "chorus_edge_push_batches_total",
                "Batches received from fanout",
            )?,
            events_received: counter(
                "chorus_edge_events_received_total",
                "Events received from fanout",
            )?,
            duplicates_dropped: counter(
                "chorus_edge_duplicates_dropped_total",
                "Events dropped because their event_id was already delivered",
            )?,
            events_unrouted: counter(
                "chorus_edge_events_unrouted_total",
                "Events received for a stream without viewers here",
            )?,
            frames_sent: counter("chorus_edge_frames_sent_total", "Frames written to viewers")?,
            bytes_sent: counter(
                "chorus_edge_sent_bytes_total",
                "Bytes of frames written to viewers",
            )?,
            events_delivered: counter(
                "chorus_edge_events_delivered_total",
                "Events written to viewers (one per viewer)",
            )?,
            gaps: counter(
                "chorus_edge_gaps_total",
                "Gap frames sent to viewers that fell behind",
            )?,
            likes_frames: counter(
                "chorus_edge_likes_frames_total",
                "Aggregated likes frames from fanout broadcast to a stream's viewers",
            )?,
            reconnects: IntCounterVec::new(
                Opts::new(
                    "chorus_edge_reconnects_total",
                    "Reconnect frames sent, by reason (ttl, drain)",
                ),
                &["reason"],
            )?,
            liveness_timeouts: counter(
                "chorus_edge_liveness_timeouts_total",
                "Viewers closed after two heartbeats without a sign of life",
            )?,
            slow_disconnects: counter(
                "chorus_edge_slow_disconnects_total",
                "Viewers disconnected because they kept falling behind",
            )?,
            draining: IntGauge::new(
                "chorus_edge_draining",
                "1 while the edge drains its viewers",
            )?,
            joins: counter("chorus_edge_joins_total", "Viewers that received hello")?,
            queue_depth: Histogram::with_opts(
                HistogramOpts::new(
                    "chorus_edge_viewer_queue_frames",
                    "Frames waiting for a viewer when it starts a write (its backlog in its stream's buffer)",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            )?,
            join_to_first_event: Histogram::with_opts(
                HistogramOpts::new(
                    "chorus_edge_join_to_first_event_seconds",
                    "Time from a viewer's hello to its first event",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )?,
            event_age: HistogramVec::new(
                HistogramOpts::new(
                    "chorus_edge_event_age_seconds",
                    "Age of each event as it reaches this edge from fanout (now minus its created_ms at ingest), \
                     by the topic it was read from: end-to-end latency up to the viewers' queues",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["topic"],
            )?,
            membership_writes: IntCounterVec::new(
                Opts::new(
                    "chorus_edge_membership_writes_total",
                    "Subscription and lease records written, by record and outcome",
                ),
                &["record", "outcome"],
            )?,
        };
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.streams.clone()))?;
        registry.register(Box::new(m.push_sessions.clone()))?;
        registry.register(Box::new(m.push_batches.clone()))?;
        registry.register(Box::new(m.events_received.clone()))?;
        registry.register(Box::new(m.duplicates_dropped.clone()))?;
        registry.register(Box::new(m.events_unrouted.clone()))?;
        registry.register(Box::new(m.frames_sent.clone()))?;
        registry.register(Box::new(m.likes_frames.clone()))?;
        registry.register(Box::new(m.bytes_sent.clone()))?;
        registry.register(Box::new(m.events_delivered.clone()))?;
        registry.register(Box::new(m.gaps.clone()))?;
        registry.register(Box::new(m.reconnects.clone()))?;
        registry.register(Box::new(m.liveness_timeouts.clone()))?;
        registry.register(Box::new(m.draining.clone()))?;
        registry.register(Box::new(m.slow_disconnects.clone()))?;
        registry.register(Box::new(m.joins.clone()))?;
        registry.register(Box::new(m.join_to_first_event.clone()))?;
        registry.register(Box::new(m.event_age.clone()))?;
        registry.register(Box::new(m.queue_depth.clone()))?;
        registry.register(Box::new(m.membership_writes.clone()))?;
        Ok(m)
    }
}
