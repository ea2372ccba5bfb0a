//! The mirror: copies `events` and the state topics (`bans`, `stream-settings`, `viewer-counts`) of a source
//! region's cluster into `<source region>.<topic>` on this region's cluster, following MirrorMaker 2's naming, so it and MM2 are interchangeable. Local runs, tests and small
//! deployments use it; production uses MM2 (see `compose/`).
//!
//! - At-least-once: a record's source offset is stored for commit only after the target acknowledged it,
//!   in source order per partition; a crash re-copies what was not yet committed (readers drop repeats by
//!   event_id).
//! - Unchanged: key, value, headers, timestamp and partition number (so a stream keeps its partition).
//! - No loops: only a region's own topics are ever read, never a mirrored `<region>.<topic>`; every copy also
//!   carries the header `chorus-mirrored-from`, and a record that has it is never copied again.
//! - Bounded: at most `--max-in-flight` records copied and not yet acknowledged; when the target is away the
//!   producer retries and the mirror stops reading until it is back.
//!
//! - [`config`]: options; [`copy`]: the copying loop; [`metrics`].

pub mod config;
pub mod copy;
pub mod metrics;

pub use config::MirrorConfig;
pub use copy::run;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot set up topics: {0}")]
    Setup(#[from] chorus_service::KafkaSetupError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("source topic {0} not found")]
    MissingTopic(String),
}
