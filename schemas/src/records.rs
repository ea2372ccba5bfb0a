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
    /// Takes comments down (see [`Retraction`]).
    Retract,
}

impl EventKind {
    /// The kind as viewers and metric labels name it.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::Comment => "comment",
            EventKind::Like => "like",
            EventKind::Other => "other",
            EventKind::Retract => "retract",
        }
    }
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
    /// What a [`EventKind::Retract`] event takes down; `None` on every other kind.
    #[serde(default)]
    pub retraction: Option<Retraction>,
}

/// The comments a take-down removes: by id, and every comment of `author` created at or after `since_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retraction {
    #[serde(default)]
    pub event_ids: Vec<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub since_ms: Option<i64>,
}

impl Retraction {
    /// Whether `event` (a comment) is one this take-down removes.
    pub fn covers(&self, event: &StreamEvent) -> bool {
        self.event_ids.contains(&event.event_id)
            || self
                .author
                .as_deref()
                .zip(self.since_ms)
                .is_some_and(|(author, since)| author == event.user_id && event.created_ms >= since)
    }
}

/// A user may not post to a stream (or any stream): the value of compacted topic `bans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// `None`: every stream.
    pub stream_id: Option<String>,
    pub user_id: String,
    /// `None`: until lifted.
    pub until_ms: Option<i64>,
    pub reason: Option<String>,
    pub lifted: bool,
    pub by: String,
    pub updated_ms: i64,
}

impl Ban {
    /// The record key: `<stream_id>/<user_id>`, `*/<user_id>` for every stream (no stream id is `*`).
    pub fn key(stream_id: Option<&str>, user_id: &str) -> String {
        format!("{}/{user_id}", stream_id.unwrap_or("*"))
    }

    /// Whether the ban is in force at `now_ms`.
    pub fn in_force(&self, now_ms: i64) -> bool {
        !self.lifted && self.until_ms.is_none_or(|until| until > now_ms)
    }
}

/// Who may comment on a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommentsOpenTo {
    #[default]
    Open,
    Moderators,
    Closed,
}

/// A stream's chat settings: the value of compacted topic `stream-settings`, keyed by `stream_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSettings {
    pub stream_id: String,
    pub slow_mode_s: i32,
    pub comments: CommentsOpenTo,
    pub blocked_terms: Vec<String>,
    pub by: String,
    pub updated_ms: i64,
}

/// How many viewers of a stream one edge holds: the value of compacted topic `viewer-counts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerCount {
    pub stream_id: String,
    pub edge_id: String,
    pub region: String,
    pub count: i64,
    pub updated_ms: i64,
    pub expires_ms: i64,
}

impl ViewerCount {
    /// The record key: one per (stream, edge).
    pub fn key(stream_id: &str, edge_id: &str) -> String {
        format!("{stream_id}/{edge_id}")
    }

    /// The stream of a key, when it is one.
    pub fn stream_of(key: &str) -> Option<&str> {
        key.split_once('/').map(|(stream, _)| stream)
    }
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
