//! The copying loop: consume the source's mirrored topics (`events` and the state topics `bans`,
//! `stream-settings`, `viewer-counts`), produce each record unchanged (a tombstone stays one) to
//! `<region>.<topic>` on the target, store the source offset once the target acknowledged it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::Topics;
use chorus_service::kafka::ChorusContext;
use chorus_service::{KafkaArgs, Readiness};
use futures_util::stream::{FuturesOrdered, StreamExt};
use prometheus::Registry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Timestamp};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::MirrorConfig;
use crate::metrics::MirrorMetrics;
use crate::MirrorError;

/// Header on every copy: the region the record was copied from.
pub const MIRRORED_FROM: &str = "chorus-mirrored-from";

type MirrorConsumer = StreamConsumer<ChorusContext>;

/// How often the lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// One copy on its way: (index of its source topic, source partition, source offset, value bytes,
/// acknowledged?).
type InFlightCopy = Pin<Box<dyn Future<Output = (usize, i32, i64, usize, bool)> + Send>>;

/// Copies until `shutdown`; then waits (bounded) for the copies in flight and commits.
pub async fn run(
    config: MirrorConfig,
    target: KafkaArgs,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), MirrorError> {
    let registry = Registry::new();
    let metrics = MirrorMetrics::register(&registry)?;
    let readiness = Readiness::waiting_for(&["topics"]);
    let server = chorus_service::Server::new(&config.serve, &registry, "mirror")?;
    tokio::spawn(chorus_service::serve_admin(
        admin,
        server,
        registry,
        readiness.clone(),
        shutdown.clone(),
    ));
    let (mirror, partitions) = Mirror::connect(&config, &target, metrics.clone()).await?;
    readiness.satisfy("topics");
    let lag = tokio::spawn(measure_lag(
        mirror.consumer.clone(),
        mirror.topics[0].0.clone(),
        partitions,
        metrics,
        shutdown.clone(),
    ));
    let mut in_flight = FuturesOrdered::new();
    mirror.copy_until(&mut in_flight, &shutdown).await?;
    mirror.finish(in_flight).await;
    // The lag task shares the consumer: the mirror has stopped once it let go of it too.
    if let Err(error) = lag.await {
        tracing::warn!(%error, "lag task failed");
    }
    Ok(())
}

/// The two ends of one mirror and what it counts.
struct Mirror {
    consumer: Arc<MirrorConsumer>,
    producer: FutureProducer,
    /// (source, target) of each mirrored topic, `events` first.
    topics: Vec<(String, String)>,
    source_region: String,
    max_in_flight: usize,
    metrics: MirrorMetrics,
}

impl Mirror {
    /// Subscribes to the source's mirrored topics and creates their copies on the target with as many
    /// partitions (`events` with the delete policy, the state topics compacted).
    async fn connect(
        config: &MirrorConfig,
        target: &KafkaArgs,
        metrics: MirrorMetrics,
    ) -> Result<(Mirror, i32), MirrorError> {
        let source = KafkaArgs {
            brokers: config.source_kafka.clone(),
            ..target.clone()
        };
        let group = config.group.clone().unwrap_or_else(|| {
            format!(
                "chorus-mirror-{}-to-{}",
                config.source_region, target.region
            )
        });
        let consumer: Arc<MirrorConsumer> = Arc::new(
            source
                .consumer_config(&group)
                // A new mirror copies what the source still retains; readers bound staleness by event time.
                .set("auto.offset.reset", "earliest")
                .create_with_context(ChorusContext)?,
        );
        let setup = Duration::from_secs(10);
        // The state topics of a source whose roles have not started yet: created as they would create them.
        source.ensure_topics(setup).await?;
        let names = source.topics();
        let mut topics = Vec::new();
        let mut events_partitions = 0;
        for topic in names.mirrored() {
            let metadata = consumer.fetch_metadata(Some(topic), setup)?;
            let partitions = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len() as i32);
            if partitions == 0 {
                return Err(MirrorError::MissingTopic(topic.to_owned()));
            }
            let copy = Topics::mirrored_name(&config.source_region, topic);
            if topic == names.events {
                events_partitions = partitions;
                target.ensure_topic(&copy, partitions, setup).await?;
            } else {
                target.ensure_compacted(&copy, partitions, setup).await?;
            }
            topics.push((topic.to_owned(), copy));
        }
        let producer: FutureProducer = target
            .producer_config(Duration::from_secs(1), config.max_in_flight.max(1))
            // Never give up on a copy: when the target is away, retry until it is back.
            .set("message.timeout.ms", "0")
            .create()?;
        let sources: Vec<&str> = topics.iter().map(|(source, _)| source.as_str()).collect();
        consumer.subscribe(&sources)?;
        tracing::info!(?topics, %group, "mirroring");
        let mirror = Mirror {
            consumer,
            producer,
            topics,
            source_region: config.source_region.clone(),
            max_in_flight: config.max_in_flight.max(1),
            metrics,
        };
        Ok((mirror, events_partitions))
    }

    /// Reads and copies until `shutdown`, at most `max_in_flight` copies unacknowledged at once.
    async fn copy_until(
        &self,
        in_flight: &mut FuturesOrdered<InFlightCopy>,
        shutdown: &CancellationToken,
    ) -> Result<(), MirrorError> {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    acknowledged(&self.consumer, &self.topics, done, &self.metrics);
                }
                message = self.consumer.recv(), if in_flight.len() < self.max_in_flight => {
                    match message {
                        Ok(message) => in_flight.push_back(self.copy(&message)?),
                        Err(error) => tracing::warn!(%error, "source consume error"),
                    }
                }
            }
            self.metrics.in_flight.set(in_flight.len() as i64);
        }
    }

    /// Queues the copy of one source record (key, value, headers, timestamp and partition unchanged); a
    /// record that is itself a copy is passed over, so regions never loop.
    fn copy(&self, message: &BorrowedMessage<'_>) -> Result<InFlightCopy, MirrorError> {
        let (partition, offset) = (message.partition(), message.offset());
        let Some(topic) = self
            .topics
            .iter()
            .position(|(source, _)| source == message.topic())
        else {
            return Ok(Box::pin(async move { (0, partition, offset, 0, true) }));
        };
        let already_mirrored = message
            .headers()
            .is_some_and(|h| h.iter().any(|h| h.key == MIRRORED_FROM));
        if already_mirrored {
            self.metrics.skipped_mirrored.inc();
            return Ok(Box::pin(async move { (topic, partition, offset, 0, true) }));
        }
        let mut headers = OwnedHeaders::new();
        for header in message.headers().into_iter().flat_map(|h| h.iter()) {
            headers = headers.insert(header);
        }
        headers = headers.insert(Header {
            key: MIRRORED_FROM,
            value: Some(self.source_region.as_bytes()),
        });
        let value = message.payload();
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topics[topic].1)
            .partition(partition)
            .headers(headers);
        // A tombstone (no value) is copied as a tombstone.
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) = message.timestamp() {
            record = record.timestamp(ms);
        }
        let len = value.map_or(0, <[u8]>::len);
        match self.producer.send_result(record) {
            Ok(delivery) => Ok(Box::pin(async move {
                let ok = matches!(delivery.await, Ok(Ok(_)));
                (topic, partition, offset, len, ok)
            })),
            Err((error, _)) => {
                // Only a full queue gets here, and the in-flight bound keeps it from filling.
                self.metrics.errors.inc();
                tracing::error!(%error, partition, offset, "copy not queued; it will be copied again after a restart");
                Err(MirrorError::Kafka(error))
            }
        }
    }

    /// Waits (bounded) for the copies in flight, then commits what they acknowledged.
    async fn finish(&self, mut in_flight: FuturesOrdered<InFlightCopy>) {
        let drain = async {
            while let Some(done) = in_flight.next().await {
                acknowledged(&self.consumer, &self.topics, done, &self.metrics);
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!("copies still in flight at shutdown; they will be copied again");
        }
        if let Err(error) = self
            .consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        {
            tracing::debug!(%error, "final commit");
        }
    }
}

/// A copy finished: on success its source offset may be committed (copies finish in source order).
fn acknowledged(
    consumer: &MirrorConsumer,
    topics: &[(String, String)],
    (topic, partition, offset, len, ok): (usize, i32, i64, usize, bool),
    metrics: &MirrorMetrics,
) {
    let Some((topic, _)) = topics.get(topic) else {
        return;
    };
    if !ok {
        // With no message timeout only a permanent refusal (e.g. a record too large for the target) lands
        // here: it is counted and logged, and the mirror moves on rather than stalling every partition.
        metrics.errors.inc();
        tracing::error!(partition, offset, "the target refused a copy");
    } else {
        metrics.records.inc();
        metrics.bytes.inc_by(len as u64);
    }
    if let Err(error) = consumer.store_offset(topic, partition, offset) {
        tracing::debug!(%error, "offset not stored (partition revoked?)");
    }
}

/// Measures, every second and off the copying task, the records in the source past what was consumed.
async fn measure_lag(
    consumer: Arc<MirrorConsumer>,
    topic: String,
    partitions: i32,
    metrics: MirrorMetrics,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(LAG_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let (consumer, topic) = (consumer.clone(), topic.clone());
        let measured =
            tokio::task::spawn_blocking(move || lag(&consumer, &topic, partitions)).await;
        if let Ok(Some(lag)) = measured {
            metrics.lag.set(lag);
        }
    }
}

fn lag(consumer: &MirrorConsumer, topic: &str, partitions: i32) -> Option<i64> {
    let positions = consumer.position().ok()?;
    let mut lag = 0;
    for p in 0..partitions {
        let Some(position) = positions
            .find_partition(topic, p)
            .and_then(|e| e.offset().to_raw())
        else {
            continue;
        };
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_millis(500))
            .ok()?;
        lag += (high - position.max(0)).max(0);
    }
    Some(lag)
}
