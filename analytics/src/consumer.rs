//! The Kafka side of the analytics consumer: every partition of every events topic, assigned explicitly at the
//! offsets of the last checkpoint, so counts and offsets always move together.

use std::collections::BTreeSet;
use std::time::Duration;

use chorus_schemas::Topics;
use chorus_service::{clock, KafkaArgs, Readiness};
use prometheus::{IntCounter, IntCounterVec, Registry};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AnalyticsConfig;
use crate::state::{partition_key, State};
use crate::{report, AnalyticsError};

/// How often new mirrored topics are looked for.
const DISCOVERY: Duration = Duration::from_secs(10);

struct Metrics {
    counted: IntCounterVec,
    undecodable: IntCounter,
    repeats: IntCounter,
    checkpoints: IntCounter,
}

impl Metrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = chorus_service::metrics::Metrics::new(registry);
        Ok(Metrics {
            counted: m.counter_vec(
                "chorus_analytics_events_counted_total",
                "Events counted, by kind",
                &["kind"],
            )?,
            undecodable: m.counter(
                "chorus_analytics_events_undecodable_total",
                "Records that are not a valid StreamEvent",
            )?,
            repeats: m.counter(
                "chorus_analytics_repeats_skipped_total",
                "Records at an offset already counted",
            )?,
            checkpoints: m.counter("chorus_analytics_checkpoints_total", "Checkpoints written")?,
        })
    }
}

/// The topics this consumer reads: `events` and every MirrorMaker-named copy `<region>.events`.
fn events_topics(
    consumer: &StreamConsumer,
    topics: &Topics,
) -> Result<BTreeSet<String>, AnalyticsError> {
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|name| *name == topics.events || topics.mirrored_region(name).is_some())
        .collect())
}

fn assignment(
    consumer: &StreamConsumer,
    topics: &BTreeSet<String>,
    state: &State,
) -> Result<TopicPartitionList, AnalyticsError> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        for p in 0..partitions as i32 {
            let offset = state
                .offsets
                .get(&partition_key(topic, p))
                .map_or(Offset::Beginning, |next| Offset::Offset(*next));
            tpl.add_partition_offset(topic, p, offset)?;
        }
    }
    Ok(tpl)
}

/// Counts until `shutdown`, checkpointing every `checkpoint_ms`; returns the final state.
pub async fn run(
    config: AnalyticsConfig,
    kafka: KafkaArgs,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> Result<State, AnalyticsError> {
    let registry = Registry::new();
    let metrics = Metrics::register(&registry)?;
    let readiness = Readiness::waiting_for(&["assigned"]);
    let server = chorus_service::Server::new(&config.serve, &registry, "analytics")?;
    tokio::spawn(chorus_service::serve_admin(
        admin,
        server,
        registry,
        readiness.clone(),
        shutdown.clone(),
    ));
    let codec = kafka.stream_event_codec().await?;
    let mut state = State::load(&config.state)?;
    let consumer: StreamConsumer = kafka
        .consumer_config(&config.group)
        .set("enable.auto.commit", "false")
        .create()?;
    let names = kafka.topics();
    let mut topics = events_topics(&consumer, &names)?;
    if topics.is_empty() {
        return Err(AnalyticsError::NoTopics(kafka.brokers.clone()));
    }
    consumer.assign(&assignment(&consumer, &topics, &state)?)?;
    readiness.satisfy("assigned");
    tracing::info!(?topics, state = %config.state.display(), "analytics consumer started");

    let mut checkpoint = tokio::time::interval(config.checkpoint());
    let mut discovery = tokio::time::interval(DISCOVERY);
    discovery.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = checkpoint.tick() => save(&config, &mut state, &consumer, &metrics)?,
            _ = discovery.tick() => {
                let now = events_topics(&consumer, &names)?;
                if now != topics {
                    // Checkpoint first: the new assignment starts every known partition at the saved offsets.
                    save(&config, &mut state, &consumer, &metrics)?;
                    topics = now;
                    consumer.assign(&assignment(&consumer, &topics, &state)?)?;
                    tracing::info!(?topics, "reading new events topics");
                }
            }
            message = consumer.recv() => {
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(%error, "consume error");
                        continue;
                    }
                };
                let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
                match message.payload().map(|p| codec.decode(p)) {
                    Some(Ok(event)) => {
                        if state.count(topic, partition, offset, &event) {
                            let kind = format!("{:?}", event.kind).to_lowercase();
                            metrics.counted.with_label_values(&[kind.as_str()]).inc();
                        } else {
                            metrics.repeats.inc();
                        }
                    }
                    _ => {
                        metrics.undecodable.inc();
                        state.skip(topic, partition, offset);
                    }
                }
            }
        }
    }
    save(&config, &mut state, &consumer, &metrics)?;
    Ok(state)
}

/// Writes the checkpoint (counts and offsets together), the JSON lines and the table; then commits the same
/// offsets to the group, so its lag is visible to the usual Kafka tools.
fn save(
    config: &AnalyticsConfig,
    state: &mut State,
    consumer: &StreamConsumer,
    metrics: &Metrics,
) -> Result<(), AnalyticsError> {
    let now = clock::now_ms();
    state.forget_before(now, config.keep_minutes);
    state.save(&config.state)?;
    metrics.checkpoints.inc();
    if let Some(path) = &config.json_lines {
        report::append_changed(state, path)?;
    } else {
        state.changed.clear();
    }
    if !config.quiet {
        println!("{}", report::table(state, config.top, now));
    }
    let mut offsets = TopicPartitionList::new();
    for (key, next) in &state.offsets {
        if let Some((topic, partition)) = key.rsplit_once('/') {
            if let Ok(partition) = partition.parse::<i32>() {
                let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(*next));
            }
        }
    }
    if offsets.count() > 0 {
        if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!(%error, "group offsets not committed (the state file is authoritative)");
        }
    }
    Ok(())
}
