//! The consumer group over `events`: each event is routed to the edges with viewers of its stream, and its
//! offset is stored for commit only after that hand-off (at-least-once; edges drop repeats by event_id).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chorus_schemas::{Codec, StreamEvent, TopicPartition};
use chorus_service::{clock, KafkaArgs, Readiness};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::FanoutConfig;
use crate::error::FanoutError;
use crate::handoff::Pending;
use crate::metrics::FanoutMetrics;
use crate::router::Router;

/// Rebalance callbacks: revoked partitions' positions are withdrawn, assignments counted.
#[derive(Debug)]
pub struct EventsContext {
    router: Arc<Router>,
    metrics: FanoutMetrics,
    /// The current assignment, for the readiness check and the position queries in [`run`].
    assigned: Mutex<Vec<TopicPartition>>,
}

impl ClientContext for EventsContext {
    fn error(&self, error: KafkaError, reason: &str) {
        chorus_service::kafka::log_client_error(&error, reason);
    }
}

impl ConsumerContext for EventsContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let commits = &self.metrics.consumer.commits;
        match result {
            Ok(()) => commits.with_label_values(&["ok"]).inc(),
            Err(error) => {
                commits.with_label_values(&["error"]).inc();
                tracing::warn!(%error, offsets = offsets.count(), "offset commit failed");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let list = self.rebalanced("assign", partitions);
                tracing::info!(partitions = ?list, "partitions assigned");
                self.router.assign(&list);
                *self.assigned.lock().unwrap_or_else(PoisonError::into_inner) = list;
            }
            Rebalance::Revoke(partitions) => {
                let revoked = self.rebalanced("revoke", partitions);
                self.router.revoke(&revoked);
                tracing::info!(count = revoked.len(), "partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

impl EventsContext {
    /// Counts a rebalance of `kind` (assign, revoke) and names the partitions it moves.
    fn rebalanced(&self, kind: &str, partitions: &TopicPartitionList) -> Vec<TopicPartition> {
        let rebalances = &self.metrics.consumer.rebalances;
        rebalances.with_label_values(&[kind]).inc();
        partitions
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect()
    }

    /// The current assignment.
    fn assigned(&self) -> Vec<TopicPartition> {
        self.assigned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub type EventsConsumer = StreamConsumer<EventsContext>;

/// Stores, for commit, the offset of every event handed off up to sequence number `done`.
fn store_handed_off(consumer: &EventsConsumer, pending: &mut Pending, done: u64) {
    for (at, offset) in pending.release(done) {
        // librdkafka commits the stored offset + 1, the next one to read.
        if let Err(error) = consumer.store_offset(&at.topic, at.partition, offset) {
            tracing::debug!(%error, "offset not stored (partition revoked?)");
        }
    }
}

/// Stores `next` as the offset to resume `at` from, for a partition nothing was read from yet. Without it the
/// group has no committed offset there, and a rebalance or restart would start at the end as it is by then
/// (`auto.offset.reset=latest`), skipping whatever arrived in between.
fn store_position(consumer: &EventsConsumer, at: &TopicPartition, next: i64) {
    let mut list = TopicPartitionList::new();
    let stored = list
        .add_partition_offset(&at.topic, at.partition, Offset::Offset(next))
        .and_then(|()| consumer.store_offsets(&list));
    if let Err(error) = stored {
        tracing::debug!(%error, topic = %at.topic, partition = at.partition, "start position not stored");
    }
}

/// Bound of the one end-offset query per partition that had no event yet.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);

pub fn consumer(
    kafka: &KafkaArgs,
    config: &FanoutConfig,
    router: Arc<Router>,
    metrics: FanoutMetrics,
) -> Result<EventsConsumer, FanoutError> {
    let consumer: EventsConsumer = kafka
        .consumer_config(&config.group)
        // End-of-partition events tell when the start offsets of a new assignment are resolved.
        .set("enable.partition.eof", "true")
        .create_with_context(EventsContext {
            router,
            metrics,
            assigned: Mutex::default(),
        })
        .map_err(FanoutError::Consumer)?;
    let topics = events_topics(kafka, config);
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(FanoutError::Consumer)?;
    Ok(consumer)
}

/// The local `events` and the mirrored `<region>.events` of every configured region.
pub fn events_topics(kafka: &KafkaArgs, config: &FanoutConfig) -> Vec<String> {
    let topics = kafka.topics();
    let mirrored = config
        .mirrored_regions
        .iter()
        .map(|region| topics.mirrored_events(region));
    std::iter::once(topics.events.clone())
        .chain(mirrored)
        .collect()
}

/// Mirrored topics (events and the state topics) may not exist yet (their mirror not started): creates them
/// as the mirror would.
pub async fn ensure_mirrored_topics(
    kafka: &KafkaArgs,
    config: &FanoutConfig,
    timeout: Duration,
) -> Result<(), FanoutError> {
    Ok(kafka
        .ensure_mirrored(&config.mirrored_regions, timeout)
        .await?)
}

/// Consumes until `shutdown`; sends position heartbeats between events. Fanout is ready once every assigned
/// partition was read to its end once: before that, a fresh group's start offsets may still be resolving, and
/// events produced meanwhile could be skipped.
pub async fn run(
    consumer: EventsConsumer,
    codec: Codec<StreamEvent>,
    router: Arc<Router>,
    config: FanoutConfig,
    metrics: FanoutMetrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), FanoutError> {
    let mut reached_end: HashSet<i32> = HashSet::new();
    let mut pending = Pending::default();
    let mut heartbeat = tokio::time::interval(config.heartbeat());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = heartbeat.tick() => {
                router.heartbeat();
                store_handed_off(&consumer, &mut pending, router.handed_off());
                continue;
            }
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                if caught_up(&consumer, &router, partition, &mut reached_end) {
                    readiness.satisfy("partitions");
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "consume error");
                continue;
            }
        };
        metrics.consumer.events_consumed.inc();
        let at = TopicPartition::new(message.topic(), message.partition());
        let seq = route(&message, &at, &codec, &router, &metrics);
        // The offset is stored for commit only once the event was written to every edge it was routed to.
        pending.push(seq, at, message.offset());
        store_handed_off(&consumer, &mut pending, router.handed_off());
    }
    // Leave the group now so the partitions move at once rather than after the session timeout.
    consumer.unsubscribe();
    Ok(())
}

/// Partition number `partition` was read to its end: the end offset is where the pipeline stands, even for a
/// partition no event passed through yet, so viewers joining now get a known join position. True the first
/// time every assigned partition has reached its end.
fn caught_up(
    consumer: &EventsConsumer,
    router: &Router,
    partition: i32,
    reached_end: &mut HashSet<i32>,
) -> bool {
    // End-of-partition events name the partition but not the topic, so both are handled per partition
    // number across the assigned topics.
    let assigned = consumer.context().assigned();
    for at in assigned
        .iter()
        .filter(|at| at.partition == partition && !router.knows_position(at))
    {
        let query = || consumer.fetch_watermarks(&at.topic, partition, WATERMARK_TIMEOUT);
        match tokio::task::block_in_place(query) {
            Ok((_, high)) => {
                router.seed_position(at, high);
                store_position(consumer, at, high);
            }
            Err(error) => tracing::debug!(%error, partition, "no end offset"),
        }
    }
    let numbers: HashSet<i32> = assigned.iter().map(|at| at.partition).collect();
    reached_end.insert(partition) && numbers.is_subset(reached_end)
}

/// Decodes and routes one event of `at`; returns its routing sequence number (0 for an undecodable one).
fn route(
    message: &BorrowedMessage<'_>,
    at: &TopicPartition,
    codec: &Codec<StreamEvent>,
    router: &Router,
    metrics: &FanoutMetrics,
) -> u64 {
    match message.payload().map(|p| codec.decode(p)) {
        Some(Ok(event)) => {
            let _span = tracing::debug_span!("fanout.route", event_id = %event.event_id).entered();
            let now = clock::now_ms();
            let age_ms = now.saturating_sub(event.created_ms).max(0);
            metrics
                .consumer
                .event_age
                .with_label_values(&[message.topic()])
                .observe(age_ms as f64 / 1000.0);
            router.route(at, message.offset(), event, now)
        }
        Some(Err(error)) => {
            metrics.consumer.events_undecodable.inc();
            tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "skipping an undecodable event");
            0
        }
        None => {
            metrics.consumer.events_undecodable.inc();
            0
        }
    }
}
