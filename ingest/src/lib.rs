//! Ingest: the HTTP front door of Chorus. A client POSTs a comment or a like; ingest validates it, writes it to
//! the `events` topic (keyed by stream id, idempotent producer, acks from all replicas) and answers
//! `202 Accepted` with the event's id, partition and offset only once Kafka has acknowledged it.
//!
//! ```text
//! client --HTTP--> [ingest] --produce--> Kafka `events` --> fanout --> edge --> viewers
//! ```
//!
//! The domain, without HTTP types:
//! - [`post`]: accepting a post ([`post::Ingest::accept`]): limits, idempotency, the write to Kafka, and the
//!   answer (where the event is stored, or that it is a replay).
//! - [`validate`]: field rules; [`limits`]: rate limits per address, user and stream; [`idempotency`]: safe
//!   retries with `Idempotency-Key` (derived event ids, the cache of recent answers); [`producer`]: the Kafka
//!   side; [`metrics`]: what is counted, and each occurrence counted and logged in one place.
//!
//! The HTTP layer, which turns requests into posts and answers into responses:
//! - [`routes`]: the router and the handlers; [`openapi`]: the OpenAPI document, narrowed to the auth mode;
//!   [`extract`]: the extractors (stream id, caller and key shared by both post routes; the two bodies);
//!   [`middleware`]: the per-address limit and request metrics; [`state`]: what every request shares.
//! - [`moderation`]: bans, chat settings (slow mode, who may comment, blocked terms) and counts, followed from
//!   Kafka, and the checks every post passes; [`moderate`]: the controls (take-down, ban, lift, settings) as
//!   ingest's domain; [`controls`]: the moderation API over HTTP.
//! - [`identity`]: who is posting (a verified bearer token, or a trusted gateway's header) and their role;
//!   [`problem`]: every refusal and the RFC 9457 problem document it is answered with.
//!
//! And [`config`]: options; [`error`]: why ingest cannot start or serve.

pub mod config;
pub mod controls;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod moderate;
pub mod moderation;
pub mod openapi;
pub mod post;
pub mod problem;
pub mod producer;
pub mod routes;
pub mod state;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use chorus_service::{KafkaArgs, Readiness, Server};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::IngestConfig;
pub use error::IngestError;
pub use routes::app;
use state::AppState;

/// Runs ingest on `listener` (public API) and `admin` (metrics, health) until `shutdown` is cancelled.
pub async fn run(
    config: IngestConfig,
    kafka: KafkaArgs,
    listener: TcpListener,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let registry = Registry::new();
    let readiness = Readiness::waiting_for(&["topics", "moderation"]);
    let codec = kafka.stream_event_codec().await?;
    let state = Arc::new(AppState::new(&config, &kafka, codec, &registry)?);
    let server = Server::new(&config.serve, &registry, "ingest")?;
    // The topics first (retried while the cluster is away), then the moderation state read from them.
    tokio::spawn({
        let (kafka, regions) = (kafka.clone(), config.mirrored_regions.clone());
        let (state, readiness, shutdown) = (state.clone(), readiness.clone(), shutdown.clone());
        async move {
            ensure_topics_until_done(kafka.clone(), readiness.clone(), shutdown.clone()).await;
            follow_moderation(kafka, regions, state, readiness, shutdown).await;
        }
    });
    let admin_task = tokio::spawn(chorus_service::serve_admin(
        admin,
        server.clone(),
        registry,
        readiness,
        shutdown.clone(),
    ));
    tokio::spawn(keep_house(state.clone(), shutdown.clone()));
    tracing::info!(addr = ?listener.local_addr().ok(), "ingest listening");
    server
        .serve(listener, "public", app(state.clone()), shutdown.clone())
        .await?;
    state.ingest.flush(Duration::from_secs(5));
    shutdown.cancel();
    match admin_task.await {
        Ok(result) => result?,
        Err(error) => tracing::error!(%error, "admin server task failed"),
    }
    Ok(())
}

/// Follows bans, settings and counts (see [`moderation::follow`]), starting over after a failure.
async fn follow_moderation(
    kafka: KafkaArgs,
    regions: Vec<String>,
    state: Arc<AppState>,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let moderation = state.ingest.moderation.clone();
    while !shutdown.is_cancelled() {
        let run = moderation::follow::run(
            kafka.clone(),
            regions.clone(),
            moderation.clone(),
            state.metrics.clone(),
            readiness.clone(),
            shutdown.clone(),
        );
        if let Err(error) = run.await {
            tracing::warn!(%error, "moderation state not followed; retrying");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Every second samples the producer queue and the bans in force; every ten forgets rate-limit and
/// slow-mode keys that are idle again.
async fn keep_house(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        state.ingest.record_queue_depth();
        let moderation = &state.ingest.moderation;
        let bans = moderation.bans_in_force(chorus_service::clock::now_ms());
        state.metrics.bans_in_force.set(bans as i64);
        if round % 10 == 9 {
            state.ingest.forget_idle_limits();
            let longest = Duration::from_secs(u64::from(controls::MAX_SLOW_MODE_S));
            moderation.forget_idle(longest, std::time::Instant::now());
        }
    }
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
