//! What the edge tells the cluster about itself: its lease in `edges` (renewed, tombstoned on clean stop)
//! and, per stream with viewers here, a record in `subscriptions` (tombstoned after the last viewer left) and
//! its viewer count in `viewer-counts` (see the `viewers` module).

use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::{Codec, EdgeLease, PartitionPosition, Subscription, ViewerCount};
use chorus_service::{clock, KafkaArgs};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use crate::error::EdgeError;
use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;

pub struct Membership {
    producer: FutureProducer,
    subscriptions_topic: String,
    edges_topic: String,
    viewer_counts_topic: String,
    subscriptions: Codec<Subscription>,
    leases: Codec<EdgeLease>,
    counts: Codec<ViewerCount>,
    lease: EdgeLease,
    metrics: EdgeMetrics,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("edge_id", &self.lease.edge_id)
            .finish()
    }
}

impl Membership {
    pub fn new(
        kafka: &KafkaArgs,
        edge_id: String,
        push_url: String,
        metrics: EdgeMetrics,
    ) -> Result<Self, EdgeError> {
        let topics = kafka.topics();
        let producer = kafka
            .producer_config(Duration::from_secs(10), 100_000)
            .create()
            .map_err(EdgeError::Producer)?;
        Ok(Membership {
            producer,
            subscriptions_topic: topics.subscriptions,
            edges_topic: topics.edges,
            viewer_counts_topic: topics.viewer_counts,
            subscriptions: Codec::subscription()?,
            leases: Codec::edge_lease()?,
            counts: Codec::viewer_count()?,
            lease: EdgeLease {
                edge_id,
                region: kafka.region.clone(),
                push_url,
                started_ms: clock::now_ms(),
                expires_ms: 0,
            },
            metrics,
        })
    }

    pub fn edge_id(&self) -> &str {
        &self.lease.edge_id
    }

    /// Where fanout pushes to this edge.
    pub fn push_url(&self) -> &str {
        &self.lease.push_url
    }

    /// Announces that this edge has viewers of `stream_id`, the first of whom joined at `positions`.
    pub fn subscribe(&self, stream_id: &str, positions: Vec<PartitionPosition>) {
        let record = Subscription {
            stream_id: stream_id.to_owned(),
            edge_id: self.lease.edge_id.clone(),
            since_ms: clock::now_ms(),
            positions,
        };
        match self.subscriptions.encode(&record) {
            Ok(payload) => self.send(
                "subscription",
                &self.subscriptions_topic,
                Subscription::key(stream_id, self.edge_id()),
                Some(payload),
                None,
            ),
            Err(error) => tracing::error!(%error, "cannot encode a subscription"),
        }
    }

    /// Withdraws the subscription of `stream_id` (a tombstone).
    pub fn unsubscribe(&self, stream_id: &str) {
        self.send(
            "subscription_tombstone",
            &self.subscriptions_topic,
            Subscription::key(stream_id, self.edge_id()),
            None,
            None,
        );
    }

    /// Writes how many viewers of `stream_id` this edge holds, counted until `ttl` from now unless renewed;
    /// in the stream's `partition`, as in `events`.
    pub fn count_viewers(&self, stream_id: &str, count: u64, partition: i32, ttl: Duration) {
        let now = clock::now_ms();
        let record = ViewerCount {
            stream_id: stream_id.to_owned(),
            edge_id: self.lease.edge_id.clone(),
            region: self.lease.region.clone(),
            count: i64::try_from(count).unwrap_or(i64::MAX),
            updated_ms: now,
            expires_ms: now + ttl.as_millis() as i64,
        };
        match self.counts.encode(&record) {
            Ok(payload) => self.send(
                "viewer_count",
                &self.viewer_counts_topic,
                ViewerCount::key(stream_id, self.edge_id()),
                Some(payload),
                Some(partition),
            ),
            Err(error) => tracing::error!(%error, "cannot encode a viewer count"),
        }
    }

    /// The room of `stream_id` is gone: its count's tombstone.
    pub fn uncount_viewers(&self, stream_id: &str, partition: i32) {
        self.send(
            "viewer_count_tombstone",
            &self.viewer_counts_topic,
            ViewerCount::key(stream_id, self.edge_id()),
            None,
            Some(partition),
        );
    }

    /// Writes the lease with a fresh expiry.
    pub fn renew_lease(&self, ttl: Duration) {
        let lease = EdgeLease {
            expires_ms: clock::now_ms() + ttl.as_millis() as i64,
            ..self.lease.clone()
        };
        match self.leases.encode(&lease) {
            Ok(payload) => self.send(
                "lease",
                &self.edges_topic,
                lease.edge_id.clone(),
                Some(payload),
                None,
            ),
            Err(error) => tracing::error!(%error, "cannot encode the edge lease"),
        }
    }

    /// Renews the lease every third of `ttl` until `shutdown`.
    pub async fn keep_lease(self: Arc<Self>, ttl: Duration, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(ttl / 3);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => self.renew_lease(ttl),
            }
        }
    }

    /// On clean stop: tombstones for the lease, the given subscriptions and their viewer counts (stream and
    /// partition), then a bounded flush.
    pub fn leave(&self, streams: &[(String, i32)]) {
        for (stream, partition) in streams {
            self.unsubscribe(stream);
            self.uncount_viewers(stream, *partition);
        }
        self.send(
            "lease_tombstone",
            &self.edges_topic,
            self.lease.edge_id.clone(),
            None,
            None,
        );
        if let Err(error) = self.producer.flush(Timeout::After(Duration::from_secs(5))) {
            tracing::warn!(%error, "membership records not flushed at shutdown");
        }
    }

    /// The id of the Kafka cluster the edge writes to (asked of it, within `timeout`): the cursor epoch's
    /// source. `None` when the cluster does not say.
    pub async fn cluster_id(self: &Arc<Self>, timeout: Duration) -> Option<String> {
        let membership = self.clone();
        tokio::task::spawn_blocking(move || {
            membership
                .producer
                .client()
                .fetch_cluster_id(Timeout::After(timeout))
        })
        .await
        .ok()
        .flatten()
    }

    /// Enqueues a record (order per key is kept by the idempotent producer) and counts its outcome.
    fn send(
        &self,
        what: &'static str,
        topic: &str,
        key: String,
        payload: Option<Vec<u8>>,
        partition: Option<i32>,
    ) {
        let mut record = FutureRecord::<String, Vec<u8>>::to(topic).key(&key);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(payload) = payload.as_ref() {
            record = record.payload(payload);
        }
        match self.producer.send_result(record) {
            Ok(delivery) => {
                let metrics = self.metrics.clone();
                tokio::spawn(async move {
                    let outcome = match delivery.await {
                        Ok(Ok(_)) => "ok",
                        Ok(Err((error, _))) => {
                            tracing::warn!(%error, record = what, "membership record not written");
                            "error"
                        }
                        Err(_) => "error",
                    };
                    Occurrence::MembershipWrite {
                        record: what,
                        outcome,
                    }
                    .emit(&metrics);
                });
            }
            Err((error, _)) => {
                tracing::warn!(%error, record = what, "membership record not queued");
                Occurrence::MembershipWrite {
                    record: what,
                    outcome: "error",
                }
                .emit(&self.metrics);
            }
        }
    }
}
