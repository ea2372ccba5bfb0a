//! What fanout counts. Names follow `chorus_fanout_<what>_<unit>`; no label carries a stream, user or edge id.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct FanoutMetrics {
    pub events_consumed: IntCounter,
    pub event_age: HistogramVec,
    pub events_stale: IntCounter,
    pub events_undecodable: IntCounter,
    pub deliveries_pushed: IntCounter,
    pub link_queue_full: IntCounter,
    pub gap_fill_events: IntCounter,
    pub gap_fill_short: IntCounter,
    pub links_connected: IntGauge,
    pub link_connects: IntCounterVec,
    pub push_batches: IntCounter,
    pub push_bytes: IntCounter,
    pub edges_live: IntGauge,
    pub subscriptions: IntGauge,
    pub lease_expiries: IntCounter,
    pub rebalances: IntCounterVec,
    pub commits: IntCounterVec,
    pub table_records: IntCounterVec,
    pub likes_counted: IntCounter,
    pub comments_sampled_out: IntCounter,
    pub likes_frames: IntCounter,
    pub like_checkpoints: IntCounterVec,
}

impl FanoutMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let m = FanoutMetrics {
            events_consumed: counter(
                "chorus_fanout_events_consumed_total",
                "Events read from Kafka",
            )?,
            event_age: HistogramVec::new(
                HistogramOpts::new(
                    "chorus_fanout_event_age_seconds",
                    "Age of each event when fanout reads it (now minus its created_ms at ingest), by topic: \
                     Kafka's and the mirror's latency plus this group's lag, in time",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["topic"],
            )?,
            likes_counted: counter(
                "chorus_fanout_likes_counted_total",
                "Likes counted into stream totals (each Kafka offset once)",
            )?,
            comments_sampled_out: counter(
                "chorus_fanout_comments_sampled_out_total",
                "Comments left out of what viewers get by their stream's comment budget",
            )?,
            likes_frames: counter(
                "chorus_fanout_likes_frames_total",
                "Aggregated likes frames pushed to edges (at most one per stream, edge and tick)",
            )?,
            like_checkpoints: IntCounterVec::new(
                Opts::new(
                    "chorus_fanout_like_checkpoints_total",
                    "Like totals written to `like-totals`, by result (ok, error)",
                ),
                &["result"],
            )?,
            events_stale: counter(
                "chorus_fanout_events_stale_total",
                "Events older than the staleness bound, not pushed",
            )?,
            events_undecodable: counter(
                "chorus_fanout_events_undecodable_total",
                "Records of `events` that are not a valid StreamEvent, skipped",
            )?,
            deliveries_pushed: counter(
                "chorus_fanout_deliveries_pushed_total",
                "Events handed to edge links (one per event and edge)",
            )?,
            link_queue_full: counter(
                "chorus_fanout_link_queue_full_total",
                "Frames dropped because an edge link's queue was full",
            )?,
            gap_fill_events: counter(
                "chorus_fanout_gap_fill_events_total",
                "Buffered events sent to an edge for its new subscription's first viewer",
            )?,
            gap_fill_short: counter(
                "chorus_fanout_gap_fill_short_total",
                "New subscriptions whose join position was older than the buffer reaches",
            )?,
            links_connected: IntGauge::new(
                "chorus_fanout_links_connected",
                "Edge links currently connected",
            )?,
            link_connects: IntCounterVec::new(
                Opts::new(
                    "chorus_fanout_link_connects_total",
                    "Connection attempts to edges, by outcome",
                ),
                &["outcome"],
            )?,
            push_batches: counter(
                "chorus_fanout_push_batches_total",
                "Batches written to edges",
            )?,
            push_bytes: counter(
                "chorus_fanout_push_bytes_total",
                "Bytes of batches written to edges",
            )?,
            edges_live: IntGauge::new("chorus_fanout_edges_live", "Edges with a live lease")?,
            subscriptions: IntGauge::new(
                "chorus_fanout_subscriptions",
                "Known (stream, edge) subscriptions",
            )?,
            lease_expiries: counter(
                "chorus_fanout_lease_expiries_total",
                "Edges dropped because their lease expired",
            )?,
            rebalances: IntCounterVec::new(
                Opts::new(
                    "chorus_fanout_rebalances_total",
                    "Partition assignments and revocations",
                ),
                &["kind"],
            )?,
            commits: IntCounterVec::new(
                Opts::new(
                    "chorus_fanout_offset_commits_total",
                    "Offset commits, by outcome",
                ),
                &["outcome"],
            )?,
            table_records: IntCounterVec::new(
                Opts::new(
                    "chorus_fanout_table_records_total",
                    "Records read from the compacted topics, by topic and outcome",
                ),
                &["table", "outcome"],
            )?,
        };
        registry.register(Box::new(m.events_consumed.clone()))?;
        registry.register(Box::new(m.event_age.clone()))?;
        registry.register(Box::new(m.events_stale.clone()))?;
        registry.register(Box::new(m.events_undecodable.clone()))?;
        registry.register(Box::new(m.deliveries_pushed.clone()))?;
        registry.register(Box::new(m.link_queue_full.clone()))?;
        registry.register(Box::new(m.gap_fill_events.clone()))?;
        registry.register(Box::new(m.gap_fill_short.clone()))?;
        registry.register(Box::new(m.links_connected.clone()))?;
        registry.register(Box::new(m.link_connects.clone()))?;
        registry.register(Box::new(m.push_batches.clone()))?;
        registry.register(Box::new(m.push_bytes.clone()))?;
        registry.register(Box::new(m.edges_live.clone()))?;
        registry.register(Box::new(m.subscriptions.clone()))?;
        registry.register(Box::new(m.lease_expiries.clone()))?;
        registry.register(Box::new(m.rebalances.clone()))?;
        registry.register(Box::new(m.commits.clone()))?;
        registry.register(Box::new(m.table_records.clone()))?;
        registry.register(Box::new(m.likes_counted.clone()))?;
        registry.register(Box::new(m.comments_sampled_out.clone()))?;
        registry.register(Box::new(m.likes_frames.clone()))?;
        registry.register(Box::new(m.like_checkpoints.clone()))?;
        Ok(m)
    }
}
