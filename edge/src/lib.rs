//! Edge: holds the viewers' connections. Fanout pushes batches of events to it over an internal WebSocket;
//! the edge encodes each stream's frame once and writes it to every viewer of that stream.
//!
//! ```text
//! ingest --> Kafka `events` --> fanout --push--> [edge] --WebSocket--> viewers
//!                                  ^                |
//!                                  +-- Kafka `subscriptions`, `edges` (written by the edge)
//! ```
//!
//! - [`viewer`] (WebSocket), [`sse`] (Server-Sent Events), [`poll`] (long-poll): the viewer endpoints, with
//!   what they share in [`watching`] and [`cursor`]; [`frames`]: the JSON frames viewers receive;
//! - [`rooms`]: streams with viewers here, join positions and broadcast; [`dedup`]: repeat suppression;
//! - [`push`]: the internal endpoint fanout pushes to; [`membership`]: lease and subscription records;
//! - [`config`], [`metrics`].

pub mod config;
pub mod cursor;
pub mod dedup;
pub mod frames;
pub mod membership;
pub mod metrics;
pub mod poll;
pub mod push;
pub mod rooms;
pub mod sse;
pub mod viewer;
pub mod watching;

use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::CodecError;
use chorus_service::{KafkaArgs, Readiness};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::EdgeConfig;

use crate::membership::Membership;
use crate::metrics::EdgeMetrics;
use crate::rooms::Rooms;

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
}

/// The sockets an edge serves on.
#[derive(Debug)]
pub struct EdgeListeners {
    /// Viewers.
    pub public: TcpListener,
    /// Fanout's pushes.
    pub internal: TcpListener,
    /// Metrics and health.
    pub admin: TcpListener,
}

/// Runs an edge until `shutdown` is cancelled; then it closes viewers, withdraws its lease and subscriptions.
pub async fn run(
    config: EdgeConfig,
    kafka: KafkaArgs,
    listeners: EdgeListeners,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let registry = Registry::new();
    let metrics = EdgeMetrics::register(&registry)?;
    let readiness = Readiness::default();
    let edge_id = config
        .edge_id
        .clone()
        .unwrap_or_else(|| format!("edge-{}", uuid::Uuid::new_v4().simple()));
    let internal_addr = listeners.internal.local_addr()?;
    let host = config
        .advertised_host
        .clone()
        .unwrap_or_else(|| internal_addr.ip().to_string());
    let push_url = format!("ws://{host}:{}{}", internal_addr.port(), push::PUSH_PATH);
    let membership = Arc::new(Membership::new(
        &kafka,
        edge_id.clone(),
        push_url.clone(),
        metrics.clone(),
    )?);
    let rooms = Arc::new(Rooms::new(
        kafka.topics().events,
        kafka.partitions,
        config.stream_buffer_frames,
        config.dedup_window,
        config.linger(),
        membership.clone(),
        metrics.clone(),
    ));

    if let Err(error) = kafka.ensure_topics(Duration::from_secs(10)).await {
        tracing::warn!(%error, "topics not ensured; continuing");
    }
    tokio::spawn(
        membership
            .clone()
            .keep_lease(config.lease_ttl(), shutdown.clone()),
    );
    tracing::info!(%edge_id, %push_url, public = ?listeners.public.local_addr().ok(), "edge serving");

    let viewers = viewer::router(viewer::ViewerState {
        rooms: rooms.clone(),
        config: Arc::new(config),
        edge_id: edge_id.into(),
        metrics,
        shutdown: shutdown.clone(),
    });
    let internal = push::router(rooms.clone(), shutdown.clone());
    let admin = chorus_service::serve_admin(listeners.admin, registry, readiness, shutdown.clone());
    let public = axum::serve(listeners.public, viewers)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let internal = axum::serve(listeners.internal, internal)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let (public, internal, admin) = tokio::join!(public, internal, admin);
    membership.leave(&rooms.streams());
    public?;
    internal?;
    admin?;
    Ok(())
}
