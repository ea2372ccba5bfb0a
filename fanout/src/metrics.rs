//! What fanout counts, one group per room that counts it. Names follow `chorus_fanout_<what>_<unit>`; no label
//! carries a stream, user or edge id. Each metric is named once: created and registered in the same call.

use chorus_service::metrics::Metrics;
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

#[derive(Debug, Clone)]
pub struct FanoutMetrics {
    pub consumer: ConsumerMetrics,
    pub routing: RoutingMetrics,
    pub edges: EdgeMetrics,
    pub tables: TableMetrics,
}

impl FanoutMetrics {
    /// Creates every fanout metric in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Metrics::new(registry);
        Ok(FanoutMetrics {
            consumer: ConsumerMetrics::new(&m)?,
            routing: RoutingMetrics::new(&m)?,
            edges: EdgeMetrics::new(&m)?,
            tables: TableMetrics::new(&m)?,
        })
    }
}

/// The consumer of `events`: what it reads, its rebalances and commits.
#[derive(Debug, Clone)]
pub struct ConsumerMetrics {
    pub events_consumed: IntCounter,
    pub event_age: HistogramVec,
    pub events_undecodable: IntCounter,
    pub rebalances: IntCounterVec,
    pub commits: IntCounterVec,
}

impl ConsumerMetrics {
    fn new(m: &Metrics<'_>) -> Result<Self, prometheus::Error> {
        Ok(ConsumerMetrics {
            events_consumed: m.counter(
                "chorus_fanout_events_consumed_total",
                "Events read from Kafka",
            )?,
            event_age: m.histogram_vec(
                "chorus_fanout_event_age_seconds",
                "Age of each event when fanout reads it (now minus its created_ms at ingest), by topic: \
                 Kafka's and the mirror's latency plus this group's lag, in time",
                &["topic"],
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )?,
            events_undecodable: m.counter(
                "chorus_fanout_events_undecodable_total",
                "Records of `events` that are not a valid StreamEvent, skipped",
            )?,
            rebalances: m.counter_vec(
                "chorus_fanout_rebalances_total",
                "Partition assignments and revocations",
                &["kind"],
            )?,
            commits: m.counter_vec(
                "chorus_fanout_offset_commits_total",
                "Offset commits, by outcome",
                &["outcome"],
            )?,
        })
    }
}

/// Routing: what reaches edges, what is left out, what gap fill sends.
#[derive(Debug, Clone)]
pub struct RoutingMetrics {
    pub events_stale: IntCounter,
    pub deliveries_pushed: IntCounter,
    pub comments_sampled_out: IntCounter,
    pub likes_counted: IntCounter,
    pub likes_frames: IntCounter,
    pub gap_fill_events: IntCounter,
    pub gap_fill_short: IntCounter,
    pub replayed_events: IntCounter,
    pub viewer_counts_pushed: IntCounter,
}

impl RoutingMetrics {
    fn new(m: &Metrics<'_>) -> Result<Self, prometheus::Error> {
        Ok(RoutingMetrics {
            events_stale: m.counter(
                "chorus_fanout_events_stale_total",
                "Events older than the staleness bound, not pushed",
            )?,
            deliveries_pushed: m.counter(
                "chorus_fanout_deliveries_pushed_total",
                "Events handed to edge links (one per event and edge)",
            )?,
            comments_sampled_out: m.counter(
                "chorus_fanout_comments_sampled_out_total",
                "Comments left out of what viewers get by their stream's comment budget",
            )?,
            likes_counted: m.counter(
                "chorus_fanout_likes_counted_total",
                "Likes counted into stream totals (each Kafka offset once)",
            )?,
            likes_frames: m.counter(
                "chorus_fanout_likes_frames_total",
                "Aggregated likes frames pushed to edges (at most one per stream, edge and tick)",
            )?,
            gap_fill_events: m.counter(
                "chorus_fanout_gap_fill_events_total",
                "Buffered events sent to an edge for its new subscription's first viewer",
            )?,
            gap_fill_short: m.counter(
                "chorus_fanout_gap_fill_short_total",
                "New subscriptions whose join position was older than the buffer reaches",
            )?,
            viewer_counts_pushed: m.counter(
                "chorus_fanout_viewer_counts_pushed_total",
                "Viewer counts (a stream's total on every edge of every region) pushed to edges, one per edge",
            )?,
            replayed_events: m.counter(
                "chorus_fanout_resume_replayed_events_total",
                "Buffered events sent to an edge for viewers resuming with a cursor",
            )?,
        })
    }
}

/// The edges: leases, subscriptions and the links to them.
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    pub edges_live: IntGauge,
    pub subscriptions: IntGauge,
    pub lease_expiries: IntCounter,
    pub link_queue_full: IntCounter,
    pub links_connected: IntGauge,
    pub link_connects: IntCounterVec,
    pub push_batches: IntCounter,
    pub push_bytes: IntCounter,
}

impl EdgeMetrics {
    fn new(m: &Metrics<'_>) -> Result<Self, prometheus::Error> {
        Ok(EdgeMetrics {
            edges_live: m.gauge("chorus_fanout_edges_live", "Edges with a live lease")?,
            subscriptions: m.gauge(
                "chorus_fanout_subscriptions",
                "Known (stream, edge) subscriptions",
            )?,
            lease_expiries: m.counter(
                "chorus_fanout_lease_expiries_total",
                "Edges dropped because their lease expired",
            )?,
            link_queue_full: m.counter(
                "chorus_fanout_link_queue_full_total",
                "Frames dropped because an edge link's queue was full",
            )?,
            links_connected: m.gauge(
                "chorus_fanout_links_connected",
                "Edge links currently connected",
            )?,
            link_connects: m.counter_vec(
                "chorus_fanout_link_connects_total",
                "Connection attempts to edges, by outcome (ok, error, timeout, unauthorized: the edge \
                 refused the internal token)",
                &["outcome"],
            )?,
            push_batches: m.counter(
                "chorus_fanout_push_batches_total",
                "Batches written to edges",
            )?,
            push_bytes: m.counter(
                "chorus_fanout_push_bytes_total",
                "Bytes of batches written to edges",
            )?,
        })
    }
}

/// The compacted topics read and written.
#[derive(Debug, Clone)]
pub struct TableMetrics {
    pub table_records: IntCounterVec,
    pub like_checkpoints: IntCounterVec,
}

impl TableMetrics {
    fn new(m: &Metrics<'_>) -> Result<Self, prometheus::Error> {
        Ok(TableMetrics {
            table_records: m.counter_vec(
                "chorus_fanout_table_records_total",
                "Records read from the compacted topics, by topic and outcome",
                &["table", "outcome"],
            )?,
            like_checkpoints: m.counter_vec(
                "chorus_fanout_like_checkpoints_total",
                "Like totals written to `like-totals`, by result (ok, error)",
                &["result"],
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_once() {
        let registry = Registry::new();
        let metrics = FanoutMetrics::register(&registry).expect("registered");
        metrics
            .tables
            .table_records
            .with_label_values(&["any", "no_key"])
            .inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(names.contains(&"chorus_fanout_table_records_total".to_owned()));
        assert!(
            FanoutMetrics::register(&registry).is_err(),
            "a name registered twice"
        );
    }
}
