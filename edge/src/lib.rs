//! Edge: holds the viewers' connections. Fanout pushes batches of events to it over an internal WebSocket;
//! the edge encodes each stream's frame once and writes it to every viewer of that stream.
//!
//! ```text
//! ingest --> Kafka `events` --> fanout --push--> [edge] --WebSocket--> viewers
//!                                  ^                |
//!                                  +-- Kafka `subscriptions`, `edges` (written by the edge)
//! ```
//!
//! - The viewer endpoints, only for their wire: [`ws`] (WebSocket), [`sse`] (Server-Sent Events), [`poll`]
//!   (long-poll), routed in [`viewer_router`] with the [`state`] they share. Each starts with the
//!   [`admission`] extractor (stream id, token, origin, limits; refusals as problem documents) and drives a
//!   [`session`]: presence, join and `hello` or resume from a [`cursor`], `gap`, `reconnect`;
//!   [`frames`]: the JSON frames viewers receive; [`inbound`]: what a WebSocket viewer may send.
//! - [`attendance`]: a viewer's presence in its stream's room, and the subscription a stream's first viewer
//!   writes and its last one's leaving withdraws after a linger; [`membership`]: lease and subscription
//!   records.
//! - [`rooms`]: the streams with viewers here and where fanout stands; [`room`]: one stream's state (join
//!   positions, buffered frames, waiting events and likes); [`kept`]: the frames a room keeps for viewers
//!   coming back with a cursor; [`replay`]: asking fanout for what a resuming viewer missed that the room
//!   does not hold; [`dedup`]: repeat suppression.
//! - [`push`]: the internal endpoint fanout pushes to (only with the internal token); [`positions`]: which of
//!   fanout's positions the edge believes, the rule over [`trust`]; [`broadcast`]: how its batches, likes
//!   and sampling notes reach the rooms, and the flush tick; [`coalesce`]: how long events wait to go out
//!   together; [`likes`]: at most one `likes` frame per stream per interval; [`takedowns`]: comments taken
//!   down, never sent after; [`viewers`]: viewer counts written to `viewer-counts`; [`viewer_count`]: paced to viewers.
//! - [`protocol`]: the JSON frames of the viewer protocol.
//! - [`occurrences`]: everything counted (and logged) happening, each in one place; [`metrics`]: the
//!   metrics they move; [`config`]; [`error`].

pub mod admission;
pub mod attendance;
pub mod broadcast;
pub mod coalesce;
pub mod config;
pub mod cursor;
pub mod dedup;
pub mod error;
pub mod frames;
pub mod inbound;
pub mod kept;
pub mod likes;
pub mod membership;
pub mod metrics;
pub mod occurrences;
pub mod poll;
pub mod positions;
pub mod protocol;
pub mod push;
pub mod replay;
pub mod room;
pub mod rooms;
pub mod session;
pub mod sse;
pub mod state;
pub mod takedowns;
pub mod trust;
pub mod viewer_count;
pub mod viewers;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use chorus_service::credential::Secret;
use chorus_service::{KafkaArgs, Readiness, Server};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::EdgeConfig;
pub use error::EdgeError;

use crate::admission::{Admission, Refusal};
use crate::attendance::Attendance;
use crate::broadcast::Broadcast;
use crate::membership::Membership;
use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;
use crate::replay::Replays;
use crate::rooms::Rooms;
use crate::state::ViewerState;

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

/// Every viewer transport: WebSocket, SSE and long-poll; SSE and long-poll answers carry the CORS grant
/// of the `--allowed-origins` (a browser page on another origin reads them).
pub fn viewer_router(state: ViewerState) -> Router {
    let cors = chorus_service::cors::layer(&state.config.allowed_origins, &[Method::GET]);
    let router = Router::new()
        .route("/v1/streams/{stream_id}/ws", get(ws::upgrade))
        .route("/v1/streams/{stream_id}/sse", get(sse::serve))
        .route("/v1/streams/{stream_id}/poll", get(poll::serve))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

async fn not_found(State(state): State<ViewerState>) -> Response {
    Refusal::NotFound.respond(&state.metrics)
}

async fn method_not_allowed(State(state): State<ViewerState>) -> Response {
    Refusal::MethodNotAllowed.respond(&state.metrics)
}

/// Runs an edge until `shutdown` is cancelled; then it closes viewers, withdraws its lease and subscriptions.
pub async fn run(
    config: EdgeConfig,
    kafka: KafkaArgs,
    listeners: EdgeListeners,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let (internal_token, admin_token) = (config.internal.secret()?, config.admin.secret()?);
    let registry = Registry::new();
    let metrics = EdgeMetrics::register(&registry)?;
    let server = Server::new(&config.serve, &registry, "edge")?;
    let membership = Arc::new(cluster_membership(&config, &kafka, &listeners, &metrics)?);
    if let Err(error) = kafka.ensure_topics(Duration::from_secs(10)).await {
        tracing::warn!(%error, "topics not ensured; continuing");
    }
    let epoch = cursor_epoch(&membership).await;
    let rooms = Arc::new(Rooms::new(
        &config,
        kafka.topics().events,
        kafka.partitions,
        &epoch,
        metrics.clone(),
    ));
    let broadcast = Arc::new(Broadcast::new(&config, rooms.clone(), metrics.clone()));
    let replays = Arc::new(Replays::default());
    // Draining starts on shutdown or on `POST /drain` at the admin port; once every viewer left (or the
    // drain window and a grace period passed) the edge stops for good.
    let draining = shutdown.child_token();
    let finished = CancellationToken::new();
    keep_up(&config, &membership, &rooms, &broadcast, &finished);
    tracing::info!(
        edge_id = membership.edge_id(),
        push_url = membership.push_url(),
        public = ?listeners.public.local_addr().ok(),
        "edge serving"
    );

    let tracker = TaskTracker::new();
    let viewers = ViewerState {
        attendance: Arc::new(Attendance::new(
            rooms.clone(),
            membership.clone(),
            config.linger(),
            tracker.clone(),
            metrics.clone(),
        )),
        admission: Arc::new(Admission::try_new(&config)?),
        config: Arc::new(config),
        edge_id: membership.edge_id().into(),
        replays: replays.clone(),
        metrics: metrics.clone(),
        shutdown: draining.clone(),
    };
    let internal = push::router(broadcast, replays, internal_token, finished.clone());
    let admin = tokio::spawn(chorus_service::admin::serve_admin_with(
        listeners.admin,
        server.clone(),
        registry,
        Readiness::default(),
        drain_route(draining.clone(), admin_token, metrics.clone()),
        finished.clone(),
    ));
    let internal =
        tokio::spawn(server.serve(listeners.internal, "internal", internal, finished.clone()));
    serve_viewers(listeners.public, &server, viewers, tracker).await?;
    finished.cancel();
    leave(&membership, &rooms);
    for task in [internal, admin] {
        match task.await {
            Ok(result) => result?,
            Err(error) => tracing::error!(%error, "edge server task failed"),
        }
    }
    Ok(())
}

/// The edge's own periodic work until `finished`: its lease, the flush tick, its viewer counts.
fn keep_up(
    config: &EdgeConfig,
    membership: &Arc<Membership>,
    rooms: &Arc<Rooms>,
    broadcast: &Arc<Broadcast>,
    finished: &CancellationToken,
) {
    let lease = membership
        .clone()
        .keep_lease(config.lease_ttl(), finished.clone());
    tokio::spawn(lease);
    tokio::spawn(broadcast.clone().flush_every(finished.clone()));
    tokio::spawn(viewers::count_every(
        rooms.clone(),
        membership.clone(),
        config.viewer_count_period(),
        config.lease_ttl(),
        finished.clone(),
    ));
}

/// On clean stop: the lease's, the subscriptions' and the viewer counts' tombstones.
fn leave(membership: &Membership, rooms: &Rooms) {
    let here: Vec<(String, i32)> = rooms
        .all()
        .iter()
        .map(|room| (room.stream_id.clone(), room.partition()))
        .collect();
    membership.leave(&here);
}

/// The epoch of the cursors this edge gives out: from the cluster's id, so every edge of the region agrees
/// and a new cluster starts a new one.
async fn cursor_epoch(membership: &Arc<Membership>) -> String {
    match membership.cluster_id(Duration::from_secs(10)).await {
        Some(id) => cursor::epoch(&id),
        None => {
            tracing::warn!(
                "the Kafka cluster gave no id: cursors from other edges will not resume here"
            );
            cursor::epoch(membership.edge_id())
        }
    }
}

/// This edge's records in the cluster: its id (fresh per process unless configured) and the URL fanout pushes
/// to (the internal listener, at the advertised host if one is set).
fn cluster_membership(
    config: &EdgeConfig,
    kafka: &KafkaArgs,
    listeners: &EdgeListeners,
    metrics: &EdgeMetrics,
) -> Result<Membership, EdgeError> {
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
    Membership::new(kafka, edge_id, push_url, metrics.clone())
}

/// `POST /drain` at the admin port: the edge starts draining. With an admin token configured, only a request
/// bearing it (401 otherwise).
fn drain_route(draining: CancellationToken, token: Option<Secret>, metrics: EdgeMetrics) -> Router {
    Router::new().route(
        "/drain",
        post(move |headers: HeaderMap| async move {
            if let Err(refusal) = token.as_ref().map_or(Ok(()), |t| t.check(&headers)) {
                Occurrence::AdminRefused {
                    reason: refusal.reason(),
                }
                .emit(&metrics);
                return refusal.problem().into_response();
            }
            draining.cancel();
            "draining\n".into_response()
        }),
    )
}

/// Serves viewers until the edge drains, then waits for the connected ones to leave (they do at random
/// moments of the drain window), at most the window and a grace period.
async fn serve_viewers(
    public: TcpListener,
    server: &Server,
    state: ViewerState,
    tracker: TaskTracker,
) -> Result<(), EdgeError> {
    let (draining, metrics) = (state.shutdown.clone(), state.metrics.clone());
    let grace = Duration::from_millis(state.config.drain_ms) + Duration::from_secs(5);
    let send_buffer = state.config.socket_send_buffer_bytes;
    let public = public.tap_io(move |tcp| {
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
    server
        .serve(public, "public", viewer_router(state), draining)
        .await?;
    // No new viewers from here on.
    Occurrence::Draining.emit(&metrics);
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            left = tracker.len(),
            "viewers still connected after the drain window"
        );
    }
    Ok(())
}
