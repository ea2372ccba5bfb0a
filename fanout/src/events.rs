//! The consumer group over `events`: each event is routed to the edges with viewers of its stream, and its
//! offset is stored for commit only after that hand-off (at-least-once; edges drop repeats by event_id).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chorus_schemas::{Codec, StreamEvent};
use chorus_service::{clock, KafkaArgs, Readiness};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Message};
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
    /// Partitions in the current assignment, for the readiness check in [`run`].
    assigned: AtomicUsize,
}

impl ClientContext for EventsContext {}

impl ConsumerContext for EventsContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                self.assigned.store(partitions.count(), Ordering::Relaxed);
                tracing::info!(count = partitions.count(), "partitions assigned");
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
            assigned: AtomicUsize::new(0),
        })
        .map_err(FanoutError::Consumer)?;
    consumer
        .subscribe(&[kafka.topics().events.as_str()])
        .map_err(FanoutError::Consumer)?;
    Ok(consumer)
}

/// Consumes until `shutdown`; sends position heartbeats between events. Fanout is ready once every assigned
/// partition was read to its end once: before that, a fresh group's start offsets may still be resolving, and
/// events produced meanwhile could be skipped.
pub async fn run(
    consumer: EventsConsumer,
    router: Arc<Router>,
    config: FanoutConfig,
    metrics: FanoutMetrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), FanoutError> {
    let mut reached_end: HashSet<i32> = HashSet::new();
    let codec = Codec::<StreamEvent>::stream_event()?;
    let mut heartbeat = tokio::time::interval(config.heartbeat());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = heartbeat.tick() => {
                router.heartbeat();
                continue;
            }
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                if reached_end.insert(partition)
                    && reached_end.len() >= consumer.context().assigned.load(Ordering::Relaxed)
                {
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
        match message.payload().map(|p| codec.decode(p)) {
            Some(Ok(event)) => {
                let _span =
                    tracing::debug_span!("fanout.route", event_id = %event.event_id).entered();
                router.route(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    event,
                    clock::now_ms(),
                );
            }
            Some(Err(error)) => {
                metrics.events_undecodable.inc();
                tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "skipping an undecodable event");
            }
            None => metrics.events_undecodable.inc(),
        }
        // Handed on (or deliberately skipped): now the offset may be committed.
        if let Err(error) = consumer.store_offset_from_message(&message) {
            tracing::warn!(%error, "cannot store offset");
        }
    }
    // Leave the group now so the partitions move at once rather than after the session timeout.
    consumer.unsubscribe();
    Ok(())
}
