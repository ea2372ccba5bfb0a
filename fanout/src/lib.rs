//! Fanout: consumes `events` in a consumer group and pushes each event to the edges that have viewers of its
//! stream, over one persistent connection per edge. It learns who watches what from the compacted topics
//! `subscriptions` and `edges`, which every instance reads whole. Likes are counted, not pushed one by one:
//! each stream's likes go out once per tick as a delta and a total that survives restarts (`like-totals`).
//!
//! ```text
//! ingest --> Kafka `events` --> [fanout] --push (WebSocket, binary batches)--> edges --> viewers
//!            Kafka `subscriptions`, `edges` --^
//! ```
//!
//! Where things live (no module imports one that imports it back):
//!
//! - I/O tasks: [`events`] the group consumer over `events` (offsets stored only after hand-off);
//!   [`table_reader`] the reader of the compacted tables, which starts the links new leases need;
//!   [`link`] one edge link's task, which asks its [`link::LinkOwner`] (the router) for its opening frames;
//!   [`like_totals`] the likes tick (announce, checkpoint to `like-totals`).
//! - [`router`]: the routing state under one lock (routing, subscriptions, leases, heartbeats, the likes
//!   tick); it decides and queues frames, and never spawns. Its pure parts, each unit-tested:
//!   [`edges`] the lease lifecycle of edges, lapsed ones included, over [`tables`] (last value per key) and
//!   [`links`] (the queue to each edge); [`recent`] the recent-event buffer, gap fill and refill;
//!   [`positions`] where owned partitions stand; [`handoff`] when an offset may be committed (sequence
//!   numbers, link progress, pending offsets); [`budget`] the comment budget of hot streams; [`likes`] exact
//!   like counts; [`viewers`] viewer counts of every edge of every region.
//! - [`config`], [`metrics`], [`FanoutError`].

pub mod budget;
pub mod config;
pub mod edges;
mod error;
pub mod events;
pub mod handoff;
pub mod like_totals;
pub mod likes;
pub mod link;
pub mod links;
pub mod metrics;
pub mod positions;
pub mod recent;
pub mod router;
pub mod table_reader;
pub mod tables;
pub mod viewers;

use std::sync::Arc;
use std::time::Duration;

use chorus_service::{KafkaArgs, Readiness};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::FanoutConfig;
pub use error::FanoutError;

use crate::link::Connector;
use crate::metrics::FanoutMetrics;
use crate::router::Router;

/// `--fanout-id`, or a random one.
fn fanout_id(config: &FanoutConfig) -> String {
    config
        .fanout_id
        .clone()
        .unwrap_or_else(|| format!("fanout-{}", uuid::Uuid::new_v4().simple()))
}

/// The reader of the compacted tables. Its metadata requests block: off the runtime, whose threads the rest
/// of the process needs meanwhile.
async fn table_reader_of(
    kafka: &KafkaArgs,
    fanout_id: &str,
    config: &FanoutConfig,
) -> Result<table_reader::TableReader, FanoutError> {
    let (kafka, id, regions) = (
        kafka.clone(),
        fanout_id.to_owned(),
        config.mirrored_regions.clone(),
    );
    tokio::task::spawn_blocking(move || table_reader::TableReader::new(&kafka, &id, &regions))
        .await?
}

/// Every `--viewer-count-tick-ms` until `shutdown`: the viewer counts of the owned streams, pushed where they changed.
async fn count_viewers(router: Arc<Router>, config: FanoutConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(config.viewer_count_tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => router.viewers_tick(chorus_service::clock::now_ms()),
        }
    }
}

/// Bound of each topic check or creation at start.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one fanout instance until `shutdown` is cancelled.
pub async fn run(
    config: FanoutConfig,
    kafka: KafkaArgs,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), FanoutError> {
    // Edges take pushes only with it: without one, fanout could deliver nothing.
    let token = config.internal.secret()?;
    let registry = Registry::new();
    let metrics = FanoutMetrics::register(&registry)?;
    let readiness = Readiness::waiting_for(&["tables", "partitions"]);
    let server = chorus_service::Server::new(&config.serve, &registry, "fanout")?;
    let admin = tokio::spawn(chorus_service::serve_admin(
        admin,
        server,
        registry,
        readiness.clone(),
        shutdown.clone(),
    ));
    kafka.ensure_topics(SETUP_TIMEOUT).await?;
    events::ensure_mirrored_topics(&kafka, &config, SETUP_TIMEOUT).await?;
    let fanout_id = fanout_id(&config);
    tracing::info!(%fanout_id, group = %config.group, "fanout starting");
    let router = Arc::new(Router::new(
        fanout_id.clone(),
        kafka.partitions,
        config.clone(),
        metrics.clone(),
    ));
    let connector = Connector::new(
        router.clone(),
        config.clone(),
        &token,
        metrics.clone(),
        shutdown.clone(),
    );
    let reader = table_reader_of(&kafka, &fanout_id, &config).await?;
    let tables = tokio::spawn(table_reader::run(
        reader,
        router.clone(),
        connector,
        metrics.clone(),
        readiness.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(count_viewers(
        router.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    let likes = tokio::spawn(like_totals::run(
        kafka.clone(),
        config.clone(),
        router.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let consumer = events::consumer(&kafka, &config, router.clone(), metrics.clone())?;
    let codec = kafka.stream_event_codec().await?;
    let events = events::run(
        consumer,
        codec,
        router,
        config,
        metrics,
        readiness,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    let (tables, likes) = (tables.await, likes.await);
    if let Ok(Err(error)) = admin.await {
        tracing::warn!(%error, "admin server ended with an error");
    }
    events?;
    tables??;
    likes??;
    Ok(())
}
