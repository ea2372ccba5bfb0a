//! The reference analytics consumer: reads `events` and every mirrored `<region>.events` in its own consumer
//! group, and counts comments and likes per stream and per minute. It shows how a data team reads Chorus's
//! topics with nothing but the schemas, and never touches the delivery path (its own group, its own offsets).
//!
//! Counts are exact across restarts: the counts and the offsets they cover are checkpointed together in one
//! state file (written atomically), and a restart resumes from the offsets in that file.
//!
//! - [`config`]: options; [`state`]: counts, offsets and the checkpoint file; [`consumer`]: the Kafka side;
//!   [`report`]: the live table and JSON lines.

pub mod config;
pub mod consumer;
pub mod report;
pub mod state;

pub use config::AnalyticsConfig;
pub use consumer::run;
pub use state::{Counts, State};

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Schema(#[from] chorus_schemas::CodecError),
    #[error(transparent)]
    Registry(#[from] chorus_service::registry::RegistryError),
    #[error("state file {path}: {source}")]
    State {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    StateFormat {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("no events topic matches on {0}")]
    NoTopics(String),
}
