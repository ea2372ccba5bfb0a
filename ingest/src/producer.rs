//! The Kafka side of ingest: encodes a [`StreamEvent`] and waits for the cluster's acknowledgement.

use std::time::Duration;

use chorus_schemas::{Codec, StreamEvent};
use chorus_service::KafkaArgs;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::error::IngestError;

/// Where Kafka stored an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("the producer queue is full")]
    QueueFull,
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("kafka refused the write: {0}")]
    Kafka(#[source] KafkaError),
    #[error("cannot encode the event: {0}")]
    Encode(#[from] chorus_schemas::CodecError),
}

impl ProduceError {
    /// Short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProduceError::QueueFull => "queue_full",
            ProduceError::Timeout(_) => "timeout",
            ProduceError::Kafka(_) => "kafka",
            ProduceError::Encode(_) => "encode",
        }
    }
}

pub struct EventProducer {
    producer: FutureProducer,
    codec: Codec<StreamEvent>,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer")
            .field("topic", &self.topic)
            .finish()
    }
}

impl EventProducer {
    pub fn new(
        kafka: &KafkaArgs,
        codec: Codec<StreamEvent>,
        timeout: Duration,
        queue_max: usize,
    ) -> Result<Self, IngestError> {
        let producer = kafka
            .producer_config(timeout, queue_max)
            .create()
            .map_err(IngestError::Producer)?;
        Ok(EventProducer {
            producer,
            codec,
            topic: kafka.topics().events,
            timeout,
        })
    }

    /// Writes `event` and resolves once Kafka acknowledged it (or failed to within the timeout).
    pub async fn produce(&self, event: &StreamEvent) -> Result<Stored, ProduceError> {
        let payload = self.codec.encode(event)?;
        let headers = OwnedHeaders::new().insert(Header {
            key: "event_id",
            value: Some(event.event_id.as_bytes()),
        });
        let record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .key(event.stream_id.as_bytes())
            .payload(&payload)
            .headers(headers)
            .timestamp(event.created_ms);
        self.deliver(record).await
    }

    /// Writes a record of a state topic (`bans`, `stream-settings`): `payload`, or a tombstone; resolves once
    /// Kafka acknowledged it.
    pub async fn produce_state(
        &self,
        topic: &str,
        key: &str,
        payload: Option<&[u8]>,
    ) -> Result<Stored, ProduceError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).key(key.as_bytes());
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        self.deliver(record).await
    }

    async fn deliver(&self, record: FutureRecord<'_, [u8], [u8]>) -> Result<Stored, ProduceError> {
        // Never wait for room in the queue: a full queue means the cluster is slow, and the client is better
        // served by a quick 503 than by a request that hangs.
        let delivery = self.producer.send(record, Timeout::After(Duration::ZERO));
        // librdkafka bounds delivery by message.timeout.ms; this outer bound guards against anything else.
        let outcome = tokio::time::timeout(self.timeout + Duration::from_secs(1), delivery)
            .await
            .map_err(|_| ProduceError::Timeout(self.timeout))?;
        match outcome {
            Ok(delivery) => Ok(Stored {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                _,
            )) => Err(ProduceError::QueueFull),
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::MessageTimedOut),
                _,
            )) => Err(ProduceError::Timeout(self.timeout)),
            Err((error, _)) => Err(ProduceError::Kafka(error)),
        }
    }

    /// Messages not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Waits (bounded) for queued messages to be acknowledged, at shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(Timeout::After(timeout)) {
            tracing::warn!(%error, "producer queue not fully flushed at shutdown");
        }
    }
}
