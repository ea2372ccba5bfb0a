//! The consumer group over `events`: each event is routed to the edges with viewers of its stream, and its
//! offset is stored for commit only after that hand-off (at-least-once; edges drop repeats by event_id).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use chorus_schemas::{Codec, StreamEvent};
use chorus_service::{clock, KafkaArgs, Readiness};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::FanoutConfig;
use crate::metrics::FanoutMetrics;
use crate::router::Router;
use crate::FanoutError;

/// Rebalance callbacks: revoked partitions' positions are withdrawn, assignments counted.
#[derive(Debug)]
pub struct EventsContext {
    router: Arc<Router>,
    metrics: FanoutMetrics,
    /// The current assignment, for the readiness check and the position queries in [`run`].
    assigned: Mutex<Vec<(String, i32)>>,
}

impl ClientContext for EventsContext {
    fn error(&self, error: KafkaError, reason: &str) {
        chorus_service::kafka::log_client_error(&error, reason);
    }
}

impl ConsumerContext for EventsContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.metrics.commits.with_label_values(&["ok"]).inc(),
            Err(error) => {
                self.metrics.commits.with_label_values(&["error"]).inc();
                tracing::warn!(%error, offsets = offsets.count(), "offset commit failed");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                let list: Vec<(String, i32)> = partitions
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                tracing::info!(partitions = ?list, "partitions assigned");
                self.router.assign(&list);
                *self.assigned.lock().unwrap_or_else(PoisonError::into_inner) = list;
            }
            Rebalance::Revoke(partitions) => {
                self.metrics.rebalances.with_label_values(&["revoke"]).inc();
                let revoked: Vec<(String, i32)> = partitions
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                self.router.revoke(&revoked);
                tracing::info!(count = revoked.len(), "partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

pub type EventsConsumer = StreamConsumer<EventsContext>;

/// Offsets consumed but not yet written to every edge they were routed to, in routing order.
#[derive(Debug, Default)]
struct PendingOffsets {
    queue: VecDeque<(u64, String, i32, i64)>,
}

impl PendingOffsets {
    fn push(&mut self, seq: u64, topic: &str, partition: i32, offset: i64) {
        self.queue
            .push_back((seq, topic.to_owned(), partition, offset));
    }

    /// Stores, for commit, the offset of every event handed off up to sequence number `done`.
    fn store_handed_off(&mut self, consumer: &EventsConsumer, done: u64) {
        while let Some((seq, topic, partition, offset)) = self.queue.front() {
            if *seq > done {
                break;
            }
            // librdkafka commits the stored offset + 1, the next one to read.
            if let Err(error) = consumer.store_offset(topic, *partition, *offset) {
                tracing::debug!(%error, "offset not stored (partition revoked?)");
            }
            self.queue.pop_front();
        }
    }

    /// Stores `next` as the offset to resume `topic`/`partition` from, for a partition nothing was read from
    /// yet. Without it the group has no committed offset there, and a rebalance or restart would start at the
    /// end as it is by then (`auto.offset.reset=latest`), skipping whatever arrived in between.
    fn store_position(consumer: &EventsConsumer, topic: &str, partition: i32, next: i64) {
        let mut list = TopicPartitionList::new();
        let stored = list
            .add_partition_offset(topic, partition, Offset::Offset(next))
            .and_then(|()| consumer.store_offsets(&list));
        if let Err(error) = stored {
            tracing::debug!(%error, topic, partition, "start position not stored");
        }
    }
}

/// Bound of the one end-offset query per partition that had no event yet.
const WATERMARK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

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
    let events = kafka.topics().events;
    let mirrored = config
        .mirrored_regions
        .iter()
        .map(|region| format!("{region}.{events}"));
    std::iter::once(events.clone()).chain(mirrored).collect()
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
    let mut pending = PendingOffsets::default();
    let mut heartbeat = tokio::time::interval(config.heartbeat());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = heartbeat.tick() => {
                router.heartbeat();
                pending.store_handed_off(&consumer, router.handed_off());
                continue;
            }
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                // End-of-partition events name the partition but not the topic, so both are handled per
                // partition number across the assigned topics.
                let assigned: Vec<(String, i32)> = consumer
                    .context()
                    .assigned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                // Caught up: the end offset is where the pipeline stands, even for a partition no event passed
                // through yet, so viewers joining now get a known join position.
                for (topic, _) in assigned
                    .iter()
                    .filter(|(t, p)| *p == partition && !router.knows_position(t, *p))
                {
                    let query = || consumer.fetch_watermarks(topic, partition, WATERMARK_TIMEOUT);
                    match tokio::task::block_in_place(query) {
                        Ok((_, high)) => {
                            router.seed_position(topic, partition, high);
                            PendingOffsets::store_position(&consumer, topic, partition, high);
                        }
                        Err(error) => tracing::debug!(%error, partition, "no end offset"),
                    }
                }
                let numbers: HashSet<i32> = assigned.iter().map(|(_, p)| *p).collect();
                if reached_end.insert(partition) && numbers.is_subset(&reached_end) {
                    readiness.satisfy("partitions");
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "consume error");
                continue;
            }
        };
        metrics.events_consumed.inc();
        let seq = match message.payload().map(|p| codec.decode(p)) {
            Some(Ok(event)) => {
                let _span =
                    tracing::debug_span!("fanout.route", event_id = %event.event_id).entered();
                let now = clock::now_ms();
                let age_ms = now.saturating_sub(event.created_ms).max(0);
                metrics
                    .event_age
                    .with_label_values(&[message.topic()])
                    .observe(age_ms as f64 / 1000.0);
                router.route(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    event,
                    now,
                )
            }
            Some(Err(error)) => {
                metrics.events_undecodable.inc();
                tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "skipping an undecodable event");
                0
            }
            None => {
                metrics.events_undecodable.inc();
                0
            }
        };
        // The offset is stored for commit only once the event was written to every edge it was routed to.
        pending.push(seq, message.topic(), message.partition(), message.offset());
        pending.store_handed_off(&consumer, router.handed_off());
    }
    // Leave the group now so the partitions move at once rather than after the session timeout.
    consumer.unsubscribe();
    Ok(())
}
