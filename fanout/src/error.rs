//! How a fanout instance fails to start or run.

use chorus_schemas::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    #[error("kafka consumer error: {0}")]
    Consumer(#[source] rdkafka::error::KafkaError),
    #[error("topic {0} does not exist")]
    MissingTopic(String),
    #[error("cannot set up topics: {0}")]
    Setup(#[from] chorus_service::KafkaSetupError),
    #[error(transparent)]
    Schema(#[from] CodecError),
    #[error(transparent)]
    Registry(#[from] chorus_service::registry::RegistryError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    #[error("a fanout task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Credential(#[from] chorus_service::credential::CredentialError),
}
