//! Reads the compacted topics `subscriptions`, `edges` and `like-totals` from the beginning, every partition,
//! outside any consumer group: every fanout instance holds the whole table, so a partition taken over after a
//! rebalance is served at once.

use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::{Codec, EdgeLease, LikeTotal, Subscription, Topics};
use chorus_service::kafka::ChorusContext;
use chorus_service::{clock, KafkaArgs, Readiness};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::metrics::FanoutMetrics;
use crate::router::Router;
use crate::FanoutError;

/// How often expired leases are looked for.
const EXPIRY_CHECK: Duration = Duration::from_millis(250);

/// Reads the compacted tables; its errors are reported the Chorus way (end of partition is no error).
pub type TableConsumer = StreamConsumer<ChorusContext>;

pub fn consumer(kafka: &KafkaArgs, fanout_id: &str) -> Result<(TableConsumer, usize), FanoutError> {
    let mut config = kafka.consumer_config(&format!("chorus-fanout-tables-{fanout_id}"));
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "50");
    let consumer: TableConsumer = config
        .create_with_context(ChorusContext)
        .map_err(FanoutError::Consumer)?;
    let topics = kafka.topics();
    let mut assignment = TopicPartitionList::new();
    for topic in [&topics.subscriptions, &topics.edges, &topics.like_totals] {
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
    let count = assignment.count();
    consumer
        .assign(&assignment)
        .map_err(FanoutError::Consumer)?;
    Ok((consumer, count))
}

/// Applies table records until `shutdown`; marks fanout ready once every partition was read to its end.
pub async fn run(
    consumer: TableConsumer,
    partitions: usize,
    topics: Topics,
    router: Arc<Router>,
    metrics: FanoutMetrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), FanoutError> {
    let subscriptions = Codec::<Subscription>::subscription()?;
    let leases = Codec::<EdgeLease>::edge_lease()?;
    let like_totals = Codec::<LikeTotal>::like_total()?;
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
        let message = match message {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(_)) => {
                // The error names no topic, so end-of-partition events are counted: once there are as many
                // as assigned partitions, the first pass over the tables is (all but) complete.
                eofs += 1;
                if eofs == partitions {
                    readiness.satisfy("tables");
                    tracing::info!("subscription, edge and like tables loaded");
                }
                continue;
            }
            Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                return Err(FanoutError::MissingTopic(
                    "subscriptions/edges/like-totals".into(),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "table read error");
                continue;
            }
        };
        let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            metrics
                .table_records
                .with_label_values(&["any", "no_key"])
                .inc();
            continue;
        };
        if message.topic() == topics.like_totals {
            if key.starts_with('\0') {
                router.like_barrier_read(message.partition(), key);
                continue;
            }
            let Some(payload) = message.payload() else {
                continue;
            };
            match like_totals.decode(payload) {
                Ok(record) => {
                    metrics
                        .table_records
                        .with_label_values(&["like_totals", "ok"])
                        .inc();
                    router.apply_like_total(&record, message.partition());
                }
                Err(error) => {
                    metrics
                        .table_records
                        .with_label_values(&["like_totals", "undecodable"])
                        .inc();
                    tracing::warn!(%error, "skipping an undecodable like total");
                }
            }
        } else if message.topic() == topics.subscriptions {
            match message
                .payload()
                .map(|p| subscriptions.decode(p))
                .transpose()
            {
                Ok(value) => {
                    metrics
                        .table_records
                        .with_label_values(&["subscriptions", "ok"])
                        .inc();
                    router.on_subscription(key, value);
                }
                Err(error) => {
                    metrics
                        .table_records
                        .with_label_values(&["subscriptions", "undecodable"])
                        .inc();
                    tracing::warn!(%error, "skipping an undecodable subscription");
                }
            }
        } else if message.topic() == topics.edges {
            match message.payload().map(|p| leases.decode(p)).transpose() {
                Ok(value) => {
                    metrics
                        .table_records
                        .with_label_values(&["edges", "ok"])
                        .inc();
                    router.on_lease(key, value, clock::now_ms());
                }
                Err(error) => {
                    metrics
                        .table_records
                        .with_label_values(&["edges", "undecodable"])
                        .inc();
                    tracing::warn!(%error, "skipping an undecodable lease");
                }
            }
        }
    }
}
