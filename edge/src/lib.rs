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

pub mod admission;
pub mod coalesce;
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

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use chorus_schemas::CodecError;
use chorus_service::{KafkaArgs, Readiness};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::EdgeConfig;

use crate::coalesce::Coalescing;
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
    #[error("cannot verify watch tokens: {0}")]
    Auth(#[from] chorus_service::auth::AuthSetupError),
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
        &config,
        kafka.topics().events,
        kafka.partitions,
        membership.clone(),
        metrics.clone(),
    ));

    if let Err(error) = kafka.ensure_topics(Duration::from_secs(10)).await {
        tracing::warn!(%error, "topics not ensured; continuing");
    }
    // Draining starts on shutdown or on `POST /drain` at the admin port; once every viewer left (or the
    // drain window and a grace period passed) the edge stops for good.
    let draining = CancellationToken::new();
    let finished = CancellationToken::new();
    tokio::spawn({
        let (shutdown, draining) = (shutdown.clone(), draining.clone());
        async move {
            shutdown.cancelled().await;
            draining.cancel();
        }
    });
    tokio::spawn(
        membership
            .clone()
            .keep_lease(config.lease_ttl(), finished.clone()),
    );
    if let Some(coalescing) = Coalescing::from_config(&config) {
        tokio::spawn(rooms.clone().flush_every(coalescing, finished.clone()));
    }
    tracing::info!(%edge_id, %push_url, public = ?listeners.public.local_addr().ok(), "edge serving");

    let drain_window = Duration::from_millis(config.drain_ms);
    let config_send_buffer = config.socket_send_buffer_bytes;
    let tracker = TaskTracker::new();
    let viewers = viewer::router(viewer::ViewerState {
        rooms: rooms.clone(),
        admission: Arc::new(admission::Admission::try_new(&config, metrics.clone())?),
        config: Arc::new(config),
        edge_id: edge_id.into(),
        metrics: metrics.clone(),
        tracker: tracker.clone(),
        shutdown: draining.clone(),
    });
    let internal = push::router(rooms.clone(), finished.clone());
    let drain_route = Router::new().route(
        "/drain",
        post({
            let draining = draining.clone();
            move || async move {
                draining.cancel();
                "draining\n"
            }
        }),
    );
    let admin = tokio::spawn(chorus_service::admin::serve_admin_with(
        listeners.admin,
        registry,
        readiness,
        drain_route,
        finished.clone(),
    ));
    let internal = tokio::spawn(
        axum::serve(listeners.internal, internal)
            .with_graceful_shutdown(finished.clone().cancelled_owned())
            .into_future(),
    );
    let send_buffer = config_send_buffer;
    let public = listeners.public.tap_io(move |tcp| {
        // Frames are small and latency matters: no Nagle delay.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        if send_buffer > 0 {
            if let Err(error) = socket2::SockRef::from(&*tcp).set_send_buffer_size(send_buffer) {
                tracing::debug!(%error, "cannot set the socket send buffer");
            }
        }
    });
    axum::serve(
        public,
        viewers.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(draining.clone().cancelled_owned())
    .await?;
    // No new viewers from here on; the connected ones leave at random moments of the drain window.
    metrics.draining.set(1);
    tracker.close();
    let grace = drain_window + Duration::from_secs(5);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            left = tracker.len(),
            "viewers still connected after the drain window"
        );
    }
    finished.cancel();
    membership.leave(&rooms.streams());
    for task in [internal, admin] {
        match task.await {
            Ok(result) => result?,
            Err(error) => tracing::error!(%error, "edge server task failed"),
        }
    }
    Ok(())
}
