//! Follows the state topics ingest decides with, from the beginning of every partition and outside any
//! consumer group: `bans` and `stream-settings` of this region and their mirrored copies (`<region>.bans`, ...),
//! `viewer-counts` likewise, and this region's `like-totals`. Ingest is ready once every partition was read
//! to its end once, so a restarted ingest never lets a banned user through.

use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::{Ban, Codec, LikeTotal, StreamSettings, Topics, ViewerCount};
use chorus_service::kafka::ChorusContext;
use chorus_service::{KafkaArgs, Readiness};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::error::IngestError;
use crate::metrics::IngestMetrics;
use crate::moderation::Moderation;

/// What a followed topic holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Bans,
    Settings,
    ViewerCounts,
    LikeTotals,
}

impl Table {
    fn label(self) -> &'static str {
        match self {
            Table::Bans => "bans",
            Table::Settings => "stream_settings",
            Table::ViewerCounts => "viewer_counts",
            Table::LikeTotals => "like_totals",
        }
    }
}

/// The topics followed, with what each holds.
fn followed(topics: &Topics, regions: &[String]) -> Vec<(String, Table)> {
    let mut followed = vec![(topics.like_totals.clone(), Table::LikeTotals)];
    let tables = [
        (&topics.bans, Table::Bans),
        (&topics.stream_settings, Table::Settings),
        (&topics.viewer_counts, Table::ViewerCounts),
    ];
    for (topic, table) in tables {
        followed.push((topic.clone(), table));
        for region in regions {
            followed.push((Topics::mirrored_name(region, topic), table));
        }
    }
    followed
}

struct Codecs {
    bans: Codec<Ban>,
    settings: Codec<StreamSettings>,
    counts: Codec<ViewerCount>,
    likes: Codec<LikeTotal>,
}

/// Creates the mirrored copies that are missing, assigns every partition from the beginning, then applies records until
/// `shutdown`; satisfies `moderation` in `readiness` once the first pass is complete.
pub async fn run(
    kafka: KafkaArgs,
    regions: Vec<String>,
    moderation: Arc<Moderation>,
    metrics: IngestMetrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let setup = Duration::from_secs(10);
    // This region's topics exist (ingest made sure before); the mirrored copies may not, yet.
    kafka.ensure_mirrored(&regions, setup).await?;
    let mut config =
        kafka.consumer_config(&format!("chorus-ingest-state-{}", uuid::Uuid::new_v4()));
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "50");
    let consumer: StreamConsumer<ChorusContext> = config
        .create_with_context(ChorusContext)
        .map_err(IngestError::Producer)?;
    let followed = followed(&kafka.topics(), &regions);
    let topics: Vec<String> = followed.iter().map(|(topic, _)| topic.clone()).collect();
    // Metadata requests block: off the runtime, whose threads the rest of the process needs meanwhile.
    let (consumer, partitions) =
        tokio::task::spawn_blocking(move || assign(consumer, &topics, setup))
            .await
            .map_err(|error| IngestError::Serve(std::io::Error::other(error)))??;
    let codecs = Codecs {
        bans: Codec::ban()?,
        settings: Codec::stream_settings()?,
        counts: Codec::viewer_count()?,
        likes: Codec::like_total()?,
    };
    let mut ends = 0usize;
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = consumer.recv() => message,
        };
        match message {
            Ok(message) => {
                let table = followed
                    .iter()
                    .find(|(topic, _)| topic == message.topic())
                    .map(|(_, table)| *table);
                if let Some(table) = table {
                    let outcome = apply(&moderation, &codecs, table, &message);
                    metrics.record_state_record(table.label(), outcome);
                }
            }
            Err(KafkaError::PartitionEOF(_)) => {
                ends += 1;
                if ends == partitions {
                    readiness.satisfy("moderation");
                    tracing::info!(partitions, "bans, chat settings and counts loaded");
                }
            }
            Err(error) => tracing::warn!(%error, "moderation state read error"),
        }
    }
}

/// Assigns every partition of `topics` from the beginning; how many there are.
fn assign(
    consumer: StreamConsumer<ChorusContext>,
    topics: &[String],
    timeout: Duration,
) -> Result<(StreamConsumer<ChorusContext>, usize), IngestError> {
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(IngestError::Producer)?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        for p in 0..partitions as i32 {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .map_err(IngestError::Producer)?;
        }
    }
    consumer
        .assign(&assignment)
        .map_err(IngestError::Producer)?;
    Ok((consumer, assignment.count()))
}

/// Applies one record; its outcome for the metric (`ok`, `no_key`, `undecodable`).
fn apply(
    moderation: &Moderation,
    codecs: &Codecs,
    table: Table,
    message: &BorrowedMessage<'_>,
) -> &'static str {
    let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
        return "no_key";
    };
    let topic = message.topic();
    let payload = message.payload();
    let decoded = match table {
        Table::Bans => payload
            .map(|p| codecs.bans.decode(p))
            .transpose()
            .map(|v| moderation.apply_ban(topic, key, v)),
        Table::Settings => payload
            .map(|p| codecs.settings.decode(p))
            .transpose()
            .map(|v| moderation.apply_settings(topic, key, v)),
        Table::ViewerCounts => payload
            .map(|p| codecs.counts.decode(p))
            .transpose()
            .map(|v| moderation.apply_viewer_count(topic, key, v)),
        Table::LikeTotals => match payload {
            // Read barriers and tombstones carry no count.
            None => Ok(()),
            Some(p) => codecs
                .likes
                .decode(p)
                .map(|v| moderation.apply_like_total(v)),
        },
    };
    match decoded {
        Ok(()) => "ok",
        Err(error) => {
            tracing::warn!(%error, table = table.label(), "skipping an undecodable state record");
            "undecodable"
        }
    }
}
