//! Frames on the internal link from fanout to edge: one WebSocket binary message carries a [`PushBatch`],
//! encoded with postcard. The link is ordered, so a frame's effects apply in the order fanout sent them.
//! The edge asks back on the same link, one [`EdgeRequest`] a binary message (a resume's missed events).

use serde::{Deserialize, Serialize};

use crate::records::{PartitionPosition, StreamEvent};
use crate::topics::TopicPartition;

/// One event pushed to an edge, with where it sits in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedEvent {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event: StreamEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushFrame {
    /// First frame of a link: which fanout instance pushes, and the partition count of `events`.
    Hello { fanout_id: String, partitions: i32 },
    /// Events of streams the edge subscribed to, in offset order per partition.
    Events(Vec<PushedEvent>),
    /// Fanout now routes `stream_id` to this edge: every event at or after `positions` will be pushed.
    Subscribed {
        stream_id: String,
        positions: Vec<PartitionPosition>,
    },
    /// Heartbeat of the partitions this fanout instance owns: it has handed on every event before each
    /// position's offset.
    Positions(Vec<PartitionPosition>),
    /// Comments of a stream left out by its comment budget since the last `Sampled` frame (once per tick).
    Sampled { stream_id: String, left_out: u64 },
    /// Likes of a stream since its last `Likes` frame (at most one per stream per tick) and its total.
    Likes {
        stream_id: String,
        delta: u64,
        total: u64,
    },
    /// The answer to an [`EdgeRequest::Replay`]: the stream's events routed at or after the positions asked
    /// for, oldest first per partition; `short` names the partitions whose buffer no longer reaches back to
    /// the position asked for (or that this instance does not own): their events are not all here; `ahead`
    /// those where the position asked for is beyond this instance's (it names another log).
    Replayed {
        request: u64,
        events: Vec<PushedEvent>,
        short: Vec<TopicPartition>,
        ahead: Vec<TopicPartition>,
    },
    /// How many viewers the stream has on every edge of every region (sent when it changed).
    Viewers { stream_id: String, count: u64 },
}

impl PushFrame {
    /// A stream's likes since its last `Likes` frame, and its total.
    pub fn likes(stream_id: &str, delta: u64, total: u64) -> Self {
        PushFrame::Likes {
            stream_id: stream_id.to_owned(),
            delta,
            total,
        }
    }

    /// A stream's comments left out by its budget.
    pub fn sampled(stream_id: &str, left_out: u64) -> Self {
        PushFrame::Sampled {
            stream_id: stream_id.to_owned(),
            left_out,
        }
    }
}

/// What an edge asks of a fanout instance on its link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EdgeRequest {
    /// A viewer resumes at `since`: the events of `stream_id` routed at or after it, still held for the
    /// resume window.
    Replay {
        request: u64,
        stream_id: String,
        since: Vec<PartitionPosition>,
    },
}

impl EdgeRequest {
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        Ok(postcard::to_stdvec(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

/// What one binary message on the link carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushBatch {
    pub frames: Vec<PushFrame>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed push batch: {0}")]
pub struct WireError(#[from] postcard::Error);

impl PushBatch {
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        Ok(postcard::to_stdvec(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::EventKind;

    #[test]
    fn batches_round_trip_and_garbage_is_an_error() -> Result<(), WireError> {
        let batch = PushBatch {
            frames: vec![
                PushFrame::Hello {
                    fanout_id: "f1".into(),
                    partitions: 12,
                },
                PushFrame::Subscribed {
                    stream_id: "s".into(),
                    positions: vec![PartitionPosition {
                        topic: "events".into(),
                        partition: 3,
                        offset: 7,
                    }],
                },
                PushFrame::Events(vec![PushedEvent {
                    topic: "events".into(),
                    partition: 3,
                    offset: 7,
                    event: StreamEvent {
                        event_id: "e".into(),
                        stream_id: "s".into(),
                        user_id: "u".into(),
                        kind: EventKind::Comment,
                        text: Some("hi".into()),
                        created_ms: 1,
                        origin: "local".into(),
                        role: Default::default(),
                        retraction: None,
                    },
                }]),
            ],
        };
        let bytes = batch.encode()?;
        assert_eq!(PushBatch::decode(&bytes)?, batch);
        assert!(PushBatch::decode(&bytes[..bytes.len() / 2]).is_err());
        assert!(PushBatch::decode(&[0xff, 0xff, 0xff]).is_err());
        let ask = EdgeRequest::Replay {
            request: 9,
            stream_id: "s".into(),
            since: vec![PartitionPosition {
                topic: "events".into(),
                partition: 3,
                offset: 7,
            }],
        };
        assert_eq!(EdgeRequest::decode(&ask.encode()?)?, ask);
        assert!(EdgeRequest::decode(&[0xff]).is_err());
        Ok(())
    }
}
