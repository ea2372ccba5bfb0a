//! Reads the compacted topics `subscriptions`, `edges`, `like-totals` and `viewer-counts` (local and
//! mirrored) from the beginning, every partition,
//! outside any consumer group: every fanout instance holds the whole table, so a partition taken over after a
//! rebalance is served at once.

use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::{Codec, CodecError, EdgeLease, LikeTotal, Subscription, Topics, ViewerCount};
use chorus_service::kafka::ChorusContext;
use chorus_service::{clock, KafkaArgs, Readiness};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::error::FanoutError;
use crate::link::Connector;
use crate::metrics::FanoutMetrics;
use crate::router::Router;

/// How often expired leases are looked for.
const EXPIRY_CHECK: Duration = Duration::from_millis(250);

/// Reads the compacted tables; its errors are reported the Chorus way (end of partition is no error).
pub type TableConsumer = StreamConsumer<ChorusContext>;

/// A consumer assigned every partition of the three tables, from the beginning.
pub struct TableReader {
    consumer: TableConsumer,
    /// How many partitions it reads: that many end-of-partition events mark the first pass complete.
    partitions: usize,
    topics: Topics,
    /// The local `viewer-counts` and every mirrored copy.
    viewer_counts: Vec<String>,
}

impl std::fmt::Debug for TableReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableReader")
            .field("partitions", &self.partitions)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl TableReader {
    pub fn new(
        kafka: &KafkaArgs,
        fanout_id: &str,
        mirrored_regions: &[String],
    ) -> Result<Self, FanoutError> {
        let mut config = kafka.consumer_config(&format!("chorus-fanout-tables-{fanout_id}"));
        config
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "50");
        let consumer: TableConsumer = config
            .create_with_context(ChorusContext)
            .map_err(FanoutError::Consumer)?;
        let topics = kafka.topics();
        let viewer_counts: Vec<String> = std::iter::once(topics.viewer_counts.clone())
            .chain(
                mirrored_regions
                    .iter()
                    .map(|region| Topics::mirrored_name(region, &topics.viewer_counts)),
            )
            .collect();
        let mut assignment = TopicPartitionList::new();
        let tables = [&topics.subscriptions, &topics.edges, &topics.like_totals];
        for topic in tables.into_iter().chain(&viewer_counts) {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .map_err(FanoutError::Consumer)?;
            let partitions = metadata
                .topics()
                .first()
                .map(|t| t.partitions().len())
                .unwrap_or(0);
            if partitions == 0 {
                return Err(FanoutError::MissingTopic(topic.clone()));
            }
            for p in 0..partitions as i32 {
                assignment
                    .add_partition_offset(topic, p, Offset::Beginning)
                    .map_err(FanoutError::Consumer)?;
            }
        }
        let partitions = assignment.count();
        consumer
            .assign(&assignment)
            .map_err(FanoutError::Consumer)?;
        Ok(TableReader {
            consumer,
            partitions,
            topics,
            viewer_counts,
        })
    }
}

/// Applies table records until `shutdown`; marks fanout ready once every partition was read to its end.
/// A lease that needs a link gets one started by `connector`.
pub async fn run(
    reader: TableReader,
    router: Arc<Router>,
    connector: Connector,
    metrics: FanoutMetrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), FanoutError> {
    let apply = Apply {
        topics: reader.topics,
        subscriptions: Codec::<Subscription>::subscription()?,
        leases: Codec::<EdgeLease>::edge_lease()?,
        like_totals: Codec::<LikeTotal>::like_total()?,
        viewer_counts: (reader.viewer_counts, Codec::<ViewerCount>::viewer_count()?),
        router: &router,
        connector: &connector,
        metrics: &metrics,
    };
    let consumer = reader.consumer;
    let mut eofs = 0usize;
    let mut expiry = tokio::time::interval(EXPIRY_CHECK);
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = expiry.tick() => {
                router.expire(clock::now_ms());
                continue;
            }
            message = consumer.recv() => message,
        };
        match message {
            Ok(message) => apply.record(&message),
            Err(KafkaError::PartitionEOF(_)) => {
                // The error names no topic, so end-of-partition events are counted: once there are as many
                // as assigned partitions, the first pass over the tables is (all but) complete.
                eofs += 1;
                if eofs == reader.partitions {
                    readiness.satisfy("tables");
                    tracing::info!("subscription, edge and like tables loaded");
                }
            }
            Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                return Err(FanoutError::MissingTopic(
                    "subscriptions/edges/like-totals".into(),
                ));
            }
            Err(error) => tracing::warn!(%error, "table read error"),
        }
    }
}

/// Applies one table record to the router.
struct Apply<'r> {
    topics: Topics,
    subscriptions: Codec<Subscription>,
    leases: Codec<EdgeLease>,
    like_totals: Codec<LikeTotal>,
    viewer_counts: (Vec<String>, Codec<ViewerCount>),
    router: &'r Router,
    connector: &'r Connector,
    metrics: &'r FanoutMetrics,
}

impl Apply<'_> {
    fn record(&self, message: &BorrowedMessage<'_>) {
        let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            TableRecord::NoKey.emit(self.metrics);
            return;
        };
        let (topic, partition) = (message.topic(), message.partition());
        if topic == self.topics.like_totals {
            if LikeTotal::is_barrier_key(key) {
                if self.router.with_likes(|l| l.barrier_read(partition, key)) {
                    tracing::debug!(partition, "like totals of partition settled");
                }
                return;
            }
            let Some(payload) = message.payload() else {
                return;
            };
            let record = self.like_totals.decode(payload);
            if let Some(record) = self.decoded(Table::LikeTotals, record) {
                self.router.with_likes(|l| l.apply(&record, partition));
            }
        } else if topic == self.topics.subscriptions {
            let value = message.payload().map(|p| self.subscriptions.decode(p));
            if let Some(value) = self.decoded(Table::Subscriptions, value.transpose()) {
                self.router.on_subscription(key, value);
            }
        } else if self.viewer_counts.0.iter().any(|t| t == topic) {
            let value = message.payload().map(|p| self.viewer_counts.1.decode(p));
            if let Some(value) = self.decoded(Table::ViewerCounts, value.transpose()) {
                self.router.on_viewer_count(topic, key, value);
            }
        } else if topic == self.topics.edges {
            let value = message.payload().map(|p| self.leases.decode(p));
            if let Some(value) = self.decoded(Table::Edges, value.transpose()) {
                if let Some(link) = self.router.on_lease(key, value, clock::now_ms()) {
                    self.connector.spawn(link);
                }
            }
        }
    }

    /// Counts (and for an undecodable record, logs) the outcome; the value when there is one to apply.
    fn decoded<T>(&self, table: Table, decoded: Result<T, CodecError>) -> Option<T> {
        match decoded {
            Ok(value) => {
                TableRecord::Applied(table).emit(self.metrics);
                Some(value)
            }
            Err(error) => {
                TableRecord::Undecodable(table, &error).emit(self.metrics);
                None
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Table {
    LikeTotals,
    ViewerCounts,
    Subscriptions,
    Edges,
}

impl Table {
    fn label(self) -> &'static str {
        match self {
            Table::LikeTotals => "like_totals",
            Table::ViewerCounts => "viewer_counts",
            Table::Subscriptions => "subscriptions",
            Table::Edges => "edges",
        }
    }
}

/// What became of one table record: counted in `table_records{table,outcome}`, and an undecodable one logged,
/// here and nowhere else (Vector's `internal_events` style).
#[derive(Debug)]
enum TableRecord<'e> {
    /// No key, or one that is not UTF-8: a record of no table.
    NoKey,
    Applied(Table),
    Undecodable(Table, &'e CodecError),
}

impl TableRecord<'_> {
    fn emit(&self, metrics: &FanoutMetrics) {
        let (table, outcome) = match self {
            TableRecord::NoKey => ("any", "no_key"),
            TableRecord::Applied(table) => (table.label(), "ok"),
            TableRecord::Undecodable(table, _) => (table.label(), "undecodable"),
        };
        metrics
            .tables
            .table_records
            .with_label_values(&[table, outcome])
            .inc();
        if let TableRecord::Undecodable(table, error) = self {
            let what = match table {
                Table::LikeTotals => "like total",
                Table::ViewerCounts => "viewer count",
                Table::Subscriptions => "subscription",
                Table::Edges => "lease",
            };
            tracing::warn!(%error, "skipping an undecodable {what}");
        }
    }
}
