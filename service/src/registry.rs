//! The optional Confluent-compatible Schema Registry: when configured, each role registers the `StreamEvent`
//! schema under the subject `<events topic>-value` (the registry's topic-name strategy) and writes or reads the
//! registry framing with the id it gets back. Registering an already registered schema returns its id, so
//! every role may do it at start.

use std::time::Duration;

use chorus_schemas::{Codec, StreamEvent};
use serde::Deserialize;

use crate::kafka::KafkaArgs;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry request to {url} failed: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("schema registry at {url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error(transparent)]
    Schema(#[from] chorus_schemas::CodecError),
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

/// Registers `schema` (JSON text) under `subject` and returns its id.
pub async fn register(
    registry: &str,
    subject: &str,
    schema: &str,
    timeout: Duration,
) -> Result<u32, RegistryError> {
    let url = format!(
        "{}/subjects/{subject}/versions",
        registry.trim_end_matches('/')
    );
    let request_error = |source| RegistryError::Request {
        url: url.clone(),
        source,
    };
    let response = reqwest::Client::new()
        .post(&url)
        .timeout(timeout)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": schema }))
        .send()
        .await
        .map_err(request_error)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(RegistryError::Refused {
            url,
            status: status.as_u16(),
            body,
        });
    }
    let registered: Registered = response.json().await.map_err(request_error)?;
    Ok(registered.id)
}

impl KafkaArgs {
    /// The `StreamEvent` codec for this deployment: single-object encoding, or the registry framing when a
    /// registry is configured (reading both either way).
    pub async fn stream_event_codec(&self) -> Result<Codec<StreamEvent>, RegistryError> {
        let codec = Codec::stream_event()?;
        let Some(registry) = &self.schema_registry else {
            return Ok(codec);
        };
        let subject = format!("{}-value", self.topics().events);
        let id = register(
            registry,
            &subject,
            codec.schema_json(),
            Duration::from_secs(10),
        )
        .await?;
        tracing::info!(%registry, %subject, id, "StreamEvent schema registered");
        Ok(codec.with_registry_id(Some(id)))
    }
}
