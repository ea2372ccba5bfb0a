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
//! - [`events`]: the group consumer (offsets stored only after hand-off); [`table_reader`]: the tables' reader;
//! - [`tables`]: last value per key; [`router`]: routing, confirmations, positions; [`link`]: one edge link;
//! - [`budget`]: the comment budget of hot streams; [`likes`]: exact like counts; [`like_totals`]: the likes tick (announce, checkpoint to `like-totals`);
//! - [`config`], [`metrics`].

pub mod budget;
pub mod config;
pub mod events;
pub mod like_totals;
pub mod likes;
pub mod link;
pub mod metrics;
pub mod router;
pub mod table_reader;
pub mod tables;

use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::CodecError;
use chorus_service::{KafkaArgs, Readiness};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::FanoutConfig;

use crate::metrics::FanoutMetrics;
use crate::router::Router;

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
}

/// Runs one fanout instance until `shutdown` is cancelled.
pub async fn run(
    config: FanoutConfig,
    kafka: KafkaArgs,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), FanoutError> {
    let registry = Registry::new();
    let metrics = FanoutMetrics::register(&registry)?;
    let readiness = Readiness::waiting_for(&["tables", "partitions"]);
    let admin = tokio::spawn(chorus_service::serve_admin(
        admin,
        registry,
        readiness.clone(),
        shutdown.clone(),
    ));
    kafka.ensure_topics(Duration::from_secs(10)).await?;
    // Mirrored topics may not exist yet (their mirror not started): create them as the mirror would.
    for topic in events::events_topics(&kafka, &config).iter().skip(1) {
        kafka
            .ensure_topic(topic, kafka.partitions, Duration::from_secs(10))
            .await?;
    }
    let fanout_id = config
        .fanout_id
        .clone()
        .unwrap_or_else(|| format!("fanout-{}", uuid::Uuid::new_v4().simple()));
    tracing::info!(%fanout_id, group = %config.group, "fanout starting");
    let router = Arc::new(Router::new(
        fanout_id.clone(),
        kafka.partitions,
        config.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let (tables_consumer, table_partitions) = table_reader::consumer(&kafka, &fanout_id)?;
    let tables = tokio::spawn(table_reader::run(
        tables_consumer,
        table_partitions,
        kafka.topics(),
        router.clone(),
        metrics.clone(),
        readiness.clone(),
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
    let tables = tables.await;
    let likes = likes.await;
    if let Ok(Err(error)) = admin.await {
        tracing::warn!(%error, "admin server ended with an error");
    }
    events?;
    tables??;
    likes??;
    Ok(())
}
