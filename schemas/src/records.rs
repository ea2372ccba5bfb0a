//! The records carried by Chorus's Kafka topics. Their Avro schemas live in `avro/*.avsc`.

use serde::{Deserialize, Serialize};

use crate::topics::TopicPartition;

/// What a [`StreamEvent`] is. New kinds may be added; readers map kinds they do not know to `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    Comment,
    Like,
    Other,
}

/// The poster's role in a stream, taken from their verified token. Readers map roles they do not know to
/// `Viewer`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserRole {
    #[default]
    Viewer,
    Moderator,
    Owner,
}

impl UserRole {
    /// The stream's owner and its moderators: their comments are never sampled out.
    pub fn is_privileged(self) -> bool {
        self != UserRole::Viewer
    }
}

/// One comment or like posted to a live stream: the value of topic `events`, keyed by `stream_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEvent {
    pub event_id: String,
    pub stream_id: String,
    pub user_id: String,
    pub kind: EventKind,
    pub text: Option<String>,
    pub created_ms: i64,
    pub origin: String,
    #[serde(default)]
    pub role: UserRole,
}

/// An edge has viewers of a stream: the value of compacted topic `subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub stream_id: String,
    pub edge_id: String,
    pub since_ms: i64,
    /// The first viewer's join positions: fanout sends the edge what it already passed from there on.
    #[serde(default)]
    pub positions: Vec<PartitionPosition>,
}

/// A topic-partition and the next offset in it: a join position in a subscription, and on the fanout-to-edge
/// link where fanout stands (it has handed on every event before `offset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl PartitionPosition {
    pub fn new(at: &TopicPartition, offset: i64) -> Self {
        PartitionPosition {
            topic: at.topic.clone(),
            partition: at.partition,
            offset,
        }
    }

    /// The topic-partition this position is in.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&self.topic, self.partition)
    }
}

impl Subscription {
    /// The record key: one per (stream, edge) pair, so compaction keeps the latest state of each.
    pub fn key(stream_id: &str, edge_id: &str) -> String {
        format!("{stream_id}/{edge_id}")
    }
}

/// An edge is alive and reachable at `push_url`: the value of compacted topic `edges`, keyed by `edge_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeLease {
    pub edge_id: String,
    pub region: String,
    pub push_url: String,
    pub started_ms: i64,
    pub expires_ms: i64,
}

/// A stream's like count from one events topic: the value of compacted topic `like-totals`, written by the
/// fanout instance that owns the stream's partition, so the count survives restarts and rebalances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LikeTotal {
    pub stream_id: String,
    pub topic: String,
    /// Every like before this offset of `topic` is in `total`, none after.
    pub next_offset: i64,
    pub total: i64,
    pub updated_ms: i64,
}

/// Keys of `like-totals` that start with NUL are read barriers (tombstones fanout writes to itself), never
/// counts: no stream id starts with NUL.
const BARRIER_PREFIX: &str = "\0barrier:";

impl LikeTotal {
    /// The record key: one per (stream, topic), so compaction keeps the latest count of each.
    pub fn key(stream_id: &str, topic: &str) -> String {
        format!("{stream_id}@{topic}")
    }

    /// The key of the `number`th read barrier `owner` writes to `partition` of `like-totals`.
    pub fn barrier_key(owner: &str, number: u64, partition: i32) -> String {
        format!("{BARRIER_PREFIX}{owner}:{number}:{partition}")
    }

    /// Whether a key of `like-totals` is a read barrier rather than a stream's count.
    pub fn is_barrier_key(key: &str) -> bool {
        key.starts_with(BARRIER_PREFIX)
    }
}
