//! Ingest: the HTTP front door of Chorus. A client POSTs a comment or a like; ingest validates it, writes it to
//! the `events` topic (keyed by stream id, idempotent producer, acks from all replicas) and answers
//! `202 Accepted` with the event's id, partition and offset only once Kafka has acknowledged it.
//!
//! ```text
//! client --HTTP--> [ingest] --produce--> Kafka `events` --> fanout --> edge --> viewers
//! ```
//!
//! - [`config`]: options; [`routes`]: the handlers; [`validate`]: field rules; [`problem`]: RFC 9457 errors;
//!   [`producer`]: the Kafka side; [`metrics`]: what is counted.

pub mod config;
pub mod metrics;
pub mod problem;
pub mod producer;
pub mod routes;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::CodecError;
use chorus_service::{KafkaArgs, Readiness};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::IngestConfig;
pub use routes::app;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error(transparent)]
    Schema(#[from] CodecError),
    #[error(transparent)]
    Registry(#[from] chorus_service::registry::RegistryError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
}

/// Runs ingest on `listener` (public API) and `admin` (metrics, health) until `shutdown` is cancelled.
pub async fn run(
    config: IngestConfig,
    kafka: KafkaArgs,
    listener: TcpListener,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let registry = Registry::new();
    let readiness = Readiness::waiting_for(&["topics"]);
    let codec = kafka.stream_event_codec().await?;
    let state = Arc::new(routes::AppState::new(&config, &kafka, codec, &registry)?);
    tokio::spawn(ensure_topics_until_done(
        kafka.clone(),
        readiness.clone(),
        shutdown.clone(),
    ));
    let admin_task = tokio::spawn(chorus_service::serve_admin(
        admin,
        registry,
        readiness,
        shutdown.clone(),
    ));
    tracing::info!(addr = ?listener.local_addr().ok(), "ingest listening");
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    state.producer.flush(Duration::from_secs(5));
    shutdown.cancel();
    match admin_task.await {
        Ok(result) => result?,
        Err(error) => tracing::error!(%error, "admin server task failed"),
    }
    Ok(())
}

/// Creates the topics (retrying while the cluster is away); ingest is ready once they exist.
async fn ensure_topics_until_done(
    kafka: KafkaArgs,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match kafka.ensure_topics(Duration::from_secs(5)).await {
            Ok(()) => {
                readiness.satisfy("topics");
                return;
            }
            Err(error) => tracing::warn!(%error, "topics not ensured yet; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
