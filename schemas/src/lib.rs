//! The floor every Chorus role stands on: the records of the Kafka topics and the frames fanout pushes to edges.
//!
//! - [`avro`]: the Avro schemas (`avro/*.avsc`, the source of truth for analytics readers too) and the
//!   single-object codec that reads and writes them.
//! - [`records`]: the Rust types of those records: [`StreamEvent`], [`Subscription`], [`EdgeLease`],
//!   [`LikeTotal`], and the moderation state: [`Ban`], [`StreamSettings`], [`ViewerCount`].
//! - [`tally`]: the sum of viewer-count records, which fanout and ingest compute alike.
//! - [`topics`]: topic names and the partitioner every producer and reader agrees on.
//! - [`wire`]: the binary frames on the internal fanout-to-edge link.
//!
//! This crate does no I/O and depends on neither tokio nor rdkafka.

pub mod avro;
pub mod records;
pub mod tally;
pub mod topics;
pub mod wire;

pub use avro::{Codec, CodecError};
pub use records::{
    Ban, CommentsOpenTo, EdgeLease, EventKind, LikeTotal, PartitionPosition, Retraction,
    StreamEvent, StreamSettings, Subscription, UserRole, ViewerCount,
};
pub use tally::ViewerTally;
pub use topics::{is_valid_stream_id, partition_for, TopicPartition, Topics};
