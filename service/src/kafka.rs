//! Kafka settings for every role, in one place: typed arguments become librdkafka configuration here, topics
//! are created here, and librdkafka's asynchronous errors are reported here.

use std::time::Duration;

use chorus_schemas::Topics;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

/// The Kafka cluster of this region and the shape of Chorus's topics on it.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Bootstrap servers of this region's Kafka cluster.
    #[arg(long = "kafka", env = "CHORUS_KAFKA", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Prefix of every topic name (several deployments or test runs can share one cluster).
    #[arg(long, env = "CHORUS_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// Partitions of `events` and `subscriptions` when Chorus creates them.
    #[arg(long, env = "CHORUS_PARTITIONS", default_value_t = 12)]
    pub partitions: i32,
    /// Replication factor when Chorus creates topics (3 on a production cluster).
    #[arg(long, env = "CHORUS_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: i32,
    /// Retention of `events`, in hours.
    #[arg(long, env = "CHORUS_EVENTS_RETENTION_HOURS", default_value_t = 24)]
    pub events_retention_hours: u64,
    /// Consumer group session timeout in milliseconds (the group rebalances this long after a member died).
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "CHORUS_KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 6000
    )]
    pub session_timeout_ms: u64,
    /// Confluent-compatible Schema Registry URL: when set, events are written in the registry's framing
    /// (single-object encoding otherwise); readers accept both.
    #[arg(long, env = "CHORUS_SCHEMA_REGISTRY")]
    pub schema_registry: Option<String>,
    /// Name of the region this cluster serves; written as `origin` on every event.
    #[arg(long, env = "CHORUS_REGION", default_value = "local")]
    pub region: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot create a Kafka client for {brokers}: {source}")]
    Client {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot create topic {topic}: {code:?}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic creation request failed: {0}")]
    Request(#[source] KafkaError),
}

impl KafkaArgs {
    pub fn topics(&self) -> Topics {
        Topics::with_prefix(&self.topic_prefix)
    }

    /// Settings common to every producer and consumer of Chorus.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("socket.keepalive.enable", "true")
            .set("reconnect.backoff.max.ms", "2000")
            .set("log_level", "3");
        config
    }

    /// A producer of durable records: idempotent, acks from all in-sync replicas, Kafka's default partitioner
    /// (so [`chorus_schemas::partition_for`] names the partition of every stream), bounded queue and timeout.
    pub fn producer_config(&self, message_timeout: Duration, queue_max: usize) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "2")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", queue_max.to_string())
            .set(
                "message.timeout.ms",
                message_timeout.as_millis().max(1).to_string(),
            );
        config
    }

    /// A consumer in `group`; offsets are stored by the caller once the work they cover is done.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            // A member learns of a rebalance at its next heartbeat: a tenth of the session timeout keeps a
            // takeover close to the session timeout itself.
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 10).max(100).to_string(),
            )
            // Around 100 ms gave the best latency; lower values make the broker spin on empty fetches.
            .set("fetch.wait.max.ms", "100")
            .set("fetch.min.bytes", "1");
        config
    }

    /// Creates one `delete`-policy topic like `events` (a mirrored `<region>.events`) if it is missing.
    pub async fn ensure_topic(
        &self,
        name: &str,
        partitions: i32,
        timeout: Duration,
    ) -> Result<(), KafkaSetupError> {
        let retention_ms = self.retention_ms();
        let topic = NewTopic::new(name, partitions, self.replication())
            .set("cleanup.policy", "delete")
            .set("retention.ms", &retention_ms);
        self.create_topics(&[topic], timeout).await
    }

    /// Creates Chorus's topics if they are missing. Safe to call from every role at every start.
    pub async fn ensure_topics(&self, timeout: Duration) -> Result<(), KafkaSetupError> {
        let topics = self.topics();
        let retention_ms = self.retention_ms();
        let new_topics = [
            NewTopic::new(&topics.events, self.partitions, self.replication())
                .set("cleanup.policy", "delete")
                .set("retention.ms", &retention_ms),
            NewTopic::new(&topics.subscriptions, self.partitions, self.replication())
                .set("cleanup.policy", "compact"),
            NewTopic::new(&topics.edges, 1, self.replication()).set("cleanup.policy", "compact"),
            NewTopic::new(&topics.like_totals, self.partitions, self.replication())
                .set("cleanup.policy", "compact"),
            NewTopic::new(&topics.bans, self.partitions, self.replication())
                .set("cleanup.policy", "compact"),
            NewTopic::new(&topics.stream_settings, self.partitions, self.replication())
                .set("cleanup.policy", "compact"),
            NewTopic::new(&topics.viewer_counts, self.partitions, self.replication())
                .set("cleanup.policy", "compact"),
        ];
        self.create_topics(&new_topics, timeout).await
    }

    /// Creates a compacted topic of `partitions` if it is missing (a mirrored copy of a state topic).
    pub async fn ensure_compacted(
        &self,
        name: &str,
        partitions: i32,
        timeout: Duration,
    ) -> Result<(), KafkaSetupError> {
        let topic =
            NewTopic::new(name, partitions, self.replication()).set("cleanup.policy", "compact");
        self.create_topics(&[topic], timeout).await
    }

    /// The mirrored copies from `regions` of every mirrored topic, created as the mirror would create them if
    /// they are missing (their mirror not started yet), so readers can assign them at start.
    pub async fn ensure_mirrored(
        &self,
        regions: &[String],
        timeout: Duration,
    ) -> Result<(), KafkaSetupError> {
        let topics = self.topics();
        for region in regions {
            for topic in topics.mirrored() {
                let name = Topics::mirrored_name(region, topic);
                if topic == topics.events {
                    self.ensure_topic(&name, self.partitions, timeout).await?;
                } else {
                    self.ensure_compacted(&name, self.partitions, timeout)
                        .await?;
                }
            }
        }
        Ok(())
    }

    fn replication(&self) -> TopicReplication<'static> {
        TopicReplication::Fixed(self.replication_factor)
    }

    fn retention_ms(&self) -> String {
        (self.events_retention_hours * 3_600_000).to_string()
    }

    /// Creates `topics`; one that already exists is fine.
    async fn create_topics(
        &self,
        topics: &[NewTopic<'_>],
        timeout: Duration,
    ) -> Result<(), KafkaSetupError> {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config()
                .create()
                .map_err(|source| KafkaSetupError::Client {
                    brokers: self.brokers.clone(),
                    source,
                })?;
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        let results = admin
            .create_topics(topics, &options)
            .await
            .map_err(KafkaSetupError::Request)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, code }),
            }
        }
        Ok(())
    }
}

/// How every Chorus client reports librdkafka's asynchronous errors: end-of-partition is an expected event,
/// not an error; a cluster that is away is a warning (clients reconnect by themselves); the rest are errors.
pub fn log_client_error(error: &KafkaError, reason: &str) {
    use RDKafkaErrorCode as C;
    let code = match error {
        KafkaError::PartitionEOF(_) => return,
        KafkaError::Global(code) | KafkaError::MessageConsumption(code) => Some(*code),
        _ => None,
    };
    match code {
        Some(C::PartitionEOF) => {}
        Some(C::AllBrokersDown | C::BrokerTransportFailure) => {
            tracing::warn!(target: "librdkafka", %error, reason, "kafka cluster unreachable")
        }
        _ => tracing::error!(target: "librdkafka", %error, reason, "kafka client error"),
    }
}

/// A client context with Chorus's error reporting and no other behaviour.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChorusContext;

impl rdkafka::ClientContext for ChorusContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for ChorusContext {}
