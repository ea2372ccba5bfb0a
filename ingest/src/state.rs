//! What every request of the HTTP layer shares: the domain ([`Ingest`]) and what only HTTP needs around it.

use chorus_schemas::{Codec, StreamEvent};
use chorus_service::KafkaArgs;
use prometheus::Registry;

use crate::config::IngestConfig;
use crate::error::IngestError;
use crate::identity::Authenticator;
use crate::metrics::IngestMetrics;
use crate::openapi;
use crate::post::Ingest;

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    pub ingest: Ingest,
    pub metrics: IngestMetrics,
    pub authenticator: Authenticator,
    /// Take the client address from `X-Forwarded-For` (`--trust-forwarded-for`).
    pub trust_forwarded_for: bool,
    pub max_body_bytes: usize,
    /// Browser origins whose pages may post (`--allowed-origins`).
    pub allowed_origins: Vec<String>,
    /// The OpenAPI document of this instance ([`crate::openapi`]).
    pub openapi: String,
}

impl AppState {
    pub fn new(
        config: &IngestConfig,
        kafka: &KafkaArgs,
        codec: Codec<StreamEvent>,
        registry: &Registry,
    ) -> Result<Self, IngestError> {
        let metrics = IngestMetrics::register(registry)?;
        let authenticator = Authenticator::new(config)?;
        Ok(AppState {
            ingest: Ingest::new(config, kafka, codec, metrics.clone())?,
            metrics,
            openapi: openapi::document(&authenticator),
            authenticator,
            trust_forwarded_for: config.limits.trust_forwarded_for,
            max_body_bytes: config.max_body_bytes,
            allowed_origins: config.allowed_origins.clone(),
        })
    }
}
