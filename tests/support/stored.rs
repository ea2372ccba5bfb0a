//! What Kafka stored, read back the way an analytics reader would: from the beginning, in a throwaway group.

use chorus_schemas::{Codec, StreamEvent};
use chorus_service::KafkaArgs;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use serde_json::Value;

use super::WAIT;

/// A consumer of `topic` from the beginning of `partitions`, in a throwaway group (it commits nothing).
pub fn read_from_start(
    kafka: &KafkaArgs,
    topic: &str,
    partitions: impl IntoIterator<Item = i32>,
) -> StreamConsumer {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", format!("check-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in partitions {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// One record of `events`: its key, `event_id` header, place, and the event it holds.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub event_id_header: String,
    pub partition: i32,
    pub offset: i64,
    pub event: StreamEvent,
}

impl Stored {
    fn read(message: &BorrowedMessage<'_>, codec: &Codec<StreamEvent>) -> Stored {
        let header = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "event_id"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        Stored {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            event_id_header: header,
            partition: message.partition(),
            offset: message.offset(),
            event: codec
                .decode(message.payload().unwrap_or_default())
                .expect("a StreamEvent"),
        }
    }
}

/// Reads `count` records of `events` from the beginning of every partition, within [`WAIT`] each.
pub async fn read_events(kafka: &KafkaArgs, count: usize) -> Vec<Stored> {
    let consumer = read_from_start(kafka, &kafka.topics().events, 0..kafka.partitions);
    let codec = Codec::stream_event().expect("codec");
    let mut found = Vec::new();
    while found.len() < count {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("events in Kafka in time")
            .expect("consume");
        found.push(Stored::read(&message, &codec));
    }
    found
}

/// The events stored before `sentinel` (a `202` body) on its partition, read from the beginning: everything
/// any earlier request to that partition wrote.
pub async fn stored_before(kafka: &KafkaArgs, sentinel: &Value) -> Vec<StreamEvent> {
    let partition = sentinel["partition"].as_i64().expect("partition");
    let partition = i32::try_from(partition).expect("partition");
    let consumer = read_from_start(kafka, &kafka.topics().events, [partition]);
    let codec = Codec::stream_event().expect("codec");
    let mut before = Vec::new();
    loop {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("the sentinel in Kafka in time")
            .expect("consume");
        let stored = Stored::read(&message, &codec);
        if sentinel["event_id"] == stored.event.event_id.as_str() {
            return before;
        }
        before.push(stored.event);
    }
}
