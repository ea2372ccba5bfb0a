//! The likes tick: every `--likes-tick-ms`, announces each stream's new likes to its edges (through the
//! router) and writes the changed totals and any pending read barriers to `like-totals`.

use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::{Codec, LikeTotal};
use chorus_service::kafka::ChorusContext;
use chorus_service::{clock, KafkaArgs};
use futures_util::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::config::FanoutConfig;
use crate::error::FanoutError;
use crate::likes::Tick;
use crate::metrics::FanoutMetrics;
use crate::router::Router;

/// How long one checkpoint write may take before it is retried at a later tick.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(
    kafka: KafkaArgs,
    config: FanoutConfig,
    router: Arc<Router>,
    metrics: FanoutMetrics,
    shutdown: CancellationToken,
) -> Result<(), FanoutError> {
    let producer: FutureProducer<ChorusContext> = kafka
        .producer_config(WRITE_TIMEOUT, 100_000)
        .create_with_context(ChorusContext)
        .map_err(FanoutError::Consumer)?;
    let writer = Writer {
        producer,
        codec: Codec::<LikeTotal>::like_total()?,
        topic: kafka.topics().like_totals,
        router: &router,
        metrics: &metrics,
    };
    let mut tick = tokio::time::interval(config.likes_tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let work = router.likes_tick(clock::now_ms());
        if work.checkpoints.is_empty() && work.barriers.is_empty() {
            continue;
        }
        let span = tracing::debug_span!(
            "fanout.like_totals",
            checkpoints = work.checkpoints.len(),
            barriers = work.barriers.len()
        );
        let _entered = span.enter();
        writer.write(&work).await;
    }
}

/// Writes a tick's barriers and checkpoints to `like-totals` and reports each outcome to the like counts.
struct Writer<'r> {
    producer: FutureProducer<ChorusContext>,
    codec: Codec<LikeTotal>,
    topic: String,
    router: &'r Router,
    metrics: &'r FanoutMetrics,
}

impl Writer<'_> {
    async fn write(&self, work: &Tick) {
        let (topic, producer) = (&self.topic, &self.producer);
        let barriers = work.barriers.iter().map(|(partition, key)| {
            // A tombstone: compaction removes it once read.
            let record = FutureRecord::<str, [u8]>::to(topic)
                .partition(*partition)
                .key(key.as_str());
            producer.send(record, WRITE_TIMEOUT)
        });
        let encoded: Vec<_> = work
            .checkpoints
            .iter()
            .map(|(partition, record)| (partition, record, self.codec.encode(record)))
            .collect();
        let checkpoints = encoded.iter().filter_map(|(partition, record, payload)| {
            let payload = payload.as_ref().ok()?;
            let key = LikeTotal::key(&record.stream_id, &record.topic);
            Some(async move {
                let sent = FutureRecord::to(topic)
                    .partition(**partition)
                    .key(&key)
                    .payload(payload.as_slice());
                producer.send(sent, WRITE_TIMEOUT).await
            })
        });
        let (barriers, checkpoints) =
            futures_util::join!(join_all(barriers), join_all(checkpoints));
        for ((partition, _), result) in work.barriers.iter().zip(barriers) {
            if let Err((error, _)) = result {
                tracing::warn!(%error, partition, "like-totals barrier not written; retrying");
                self.router.with_likes(|l| l.barrier_failed(*partition));
            }
        }
        let mut results = checkpoints.into_iter();
        for (_, record, payload) in &encoded {
            let acknowledged = match payload {
                Ok(_) => match results.next() {
                    Some(Ok(_)) => true,
                    Some(Err((error, _))) => {
                        tracing::warn!(%error, stream_id = %record.stream_id, "like total not written; retrying");
                        false
                    }
                    None => false,
                },
                Err(error) => {
                    tracing::error!(%error, "like total cannot be encoded");
                    false
                }
            };
            self.metrics
                .tables
                .like_checkpoints
                .with_label_values(&[if acknowledged { "ok" } else { "error" }])
                .inc();
            let (stream, events) = (&record.stream_id, &record.topic);
            self.router
                .with_likes(|l| l.written(stream, events, acknowledged));
        }
    }
}
