//! Why ingest could not start or keep serving (a refused request is an `ApiError`, in `problem`).
//! Its own module so that the modules building ingest's parts name it without importing the crate root.

use chorus_schemas::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error(transparent)]
    Schema(#[from] CodecError),
    #[error(transparent)]
    Registry(#[from] chorus_service::registry::RegistryError),
    #[error(transparent)]
    Auth(#[from] chorus_service::auth::AuthSetupError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    #[error("cannot set up topics: {0}")]
    Topics(#[from] chorus_service::KafkaSetupError),
}
