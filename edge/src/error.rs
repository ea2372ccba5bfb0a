//! Why an edge cannot start or stops serving.

use chorus_schemas::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error(transparent)]
    Schema(#[from] CodecError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    #[error("cannot verify watch tokens: {0}")]
    Auth(#[from] chorus_service::auth::AuthSetupError),
    #[error(transparent)]
    Credential(#[from] chorus_service::credential::CredentialError),
}
