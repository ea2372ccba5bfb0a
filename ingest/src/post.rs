//! Accepting a post: ingest's domain, without HTTP. A [`Post`] arrives already parsed and validated (stream
//! id, authenticated [`Caller`], text, `Idempotency-Key`); [`Ingest::accept`] applies the per-user and
//! per-stream limits and the idempotency rules, writes the event to Kafka, and answers where it is stored, or
//! the same answer again for a retry.

use std::sync::Arc;

use chorus_schemas::{Ban, Codec, EventKind, StreamEvent, StreamSettings, Topics, UserRole};
use chorus_service::{clock, KafkaArgs};
use serde::Serialize;
use tracing::Span;
use uuid::Uuid;

use crate::config::IngestConfig;
use crate::error::IngestError;
use crate::idempotency::{self, IdempotencyCache, KeyReused};
use crate::limits::{RateLimits, Refused};
use crate::metrics::IngestMetrics;
use crate::moderation::{Asked, Moderation, Refusal};
use crate::producer::EventProducer;

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    /// The caller's role on the stream (an administrator is its owner).
    pub role: UserRole,
    /// A platform administrator (`--admin-role`): moderates every stream, bans from all of them.
    pub admin: bool,
}

/// One valid post: a comment (with its text) or a like, by `caller` to `stream_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub stream_id: String,
    pub caller: Caller,
    pub kind: EventKind,
    pub text: Option<String>,
    /// The client's `Idempotency-Key`, if it sent one.
    pub key: Option<String>,
}

/// The body of `202 Accepted`: where the event now durably is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub event_id: String,
    pub partition: i32,
    pub offset: i64,
}

/// The answer to a post, and whether it repeats the answer to an earlier request with the same key (then
/// nothing new was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub accepted: Accepted,
    pub replayed: bool,
}

/// Why a valid post was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error(transparent)]
    RateLimited(#[from] Refused),
    #[error(transparent)]
    IdempotencyKeyReused(#[from] KeyReused),
    #[error("the event could not be stored; retry after {retry_after_s} s")]
    Unavailable { retry_after_s: u64 },
    #[error(transparent)]
    Moderated(#[from] Refusal),
}

/// What accepting a post needs: the limits, the recent keys and the producer of this instance.
#[derive(Debug)]
pub struct Ingest {
    pub(crate) producer: EventProducer,
    limits: RateLimits,
    idempotency: IdempotencyCache<Accepted>,
    pub(crate) metrics: IngestMetrics,
    pub(crate) region: String,
    /// Bans and chat settings of every region, and the streams' counts.
    pub moderation: Arc<Moderation>,
    pub(crate) topics: Topics,
    pub(crate) codecs: StateCodecs,
}

/// The codecs of the state records ingest writes.
#[derive(Debug)]
pub(crate) struct StateCodecs {
    pub bans: Codec<Ban>,
    pub settings: Codec<StreamSettings>,
}

impl Ingest {
    pub fn new(
        config: &IngestConfig,
        kafka: &KafkaArgs,
        codec: Codec<StreamEvent>,
        metrics: IngestMetrics,
    ) -> Result<Self, IngestError> {
        Ok(Ingest {
            producer: EventProducer::new(
                kafka,
                codec,
                config.produce_timeout(),
                config.producer_queue_max,
            )?,
            limits: RateLimits::new(&config.limits),
            idempotency: IdempotencyCache::new(
                config.idempotency_max_keys,
                config.idempotency_window(),
            ),
            metrics,
            region: kafka.region.clone(),
            moderation: Arc::default(),
            topics: kafka.topics(),
            codecs: StateCodecs {
                bans: Codec::ban()?,
                settings: Codec::stream_settings()?,
            },
        })
    }

    /// Answers a post: a replay of an earlier answer for a known `Idempotency-Key`, a refusal over a limit,
    /// or the event written to Kafka and where it is once acknowledged.
    #[tracing::instrument(
        name = "ingest.accept",
        skip_all,
        fields(stream_id = post.stream_id.as_str(), event_id, kind = ?post.kind, replay = tracing::field::Empty)
    )]
    pub async fn accept(&self, post: &Post) -> Result<Answer, PostError> {
        let Some(key) = post.key.as_deref() else {
            self.check_limits(post)?;
            let accepted = self.produce(Uuid::now_v7(), post).await?;
            return Ok(Answer {
                accepted,
                replayed: false,
            });
        };
        let event_id = idempotency::event_id(&post.caller.user_id, &post.stream_id, key);
        let fingerprint = idempotency::fingerprint(post.kind, post.text.as_deref());
        let slot = self.idempotency.slot(event_id, fingerprint)?;
        // A retry of a request already answered: the same answer, no limit spent, nothing written.
        if slot.get().is_none() {
            self.check_limits(post)?;
        }
        let mut produced = false;
        // Concurrent retries wait here for the first (bounded by the produce timeout); if it fails, the next
        // one tries to produce.
        let accepted = slot
            .get_or_try_init(|| {
                produced = true;
                self.produce(event_id, post)
            })
            .await?
            .clone();
        Span::current().record("replay", !produced);
        if !produced {
            self.metrics.record_replay(&accepted.event_id);
        }
        Ok(Answer {
            accepted,
            replayed: !produced,
        })
    }

    /// Counts one request from `address` against its limit, before anything else about it is looked at.
    pub fn check_address(&self, address: std::net::IpAddr) -> Result<(), Refused> {
        self.limits
            .check_address(address)
            .inspect_err(|refused| self.metrics.record_rate_limited(refused))
    }

    /// The rate limits, then the stream's moderation (bans, who may comment, blocked terms, slow mode).
    fn check_limits(&self, post: &Post) -> Result<(), PostError> {
        self.limits
            .check_event(post.kind, &post.caller.user_id, &post.stream_id)
            .inspect_err(|refused| self.metrics.record_rate_limited(refused))?;
        let asked = Asked {
            stream_id: &post.stream_id,
            user_id: &post.caller.user_id,
            role: post.caller.role,
            kind: post.kind,
            text: post.text.as_deref(),
        };
        self.moderation
            .check(&asked, clock::now_ms(), std::time::Instant::now())
            .inspect_err(|refusal| {
                let user = &post.caller.user_id;
                self.metrics.record_moderation_refused(refusal.rule(), user);
            })?;
        Ok(())
    }

    /// Writes the event to Kafka and returns where it is once acknowledged.
    async fn produce(&self, event_id: Uuid, post: &Post) -> Result<Accepted, PostError> {
        let event = StreamEvent {
            event_id: event_id.to_string(),
            stream_id: post.stream_id.clone(),
            user_id: post.caller.user_id.clone(),
            kind: post.kind,
            text: post.text.clone(),
            created_ms: clock::now_ms(),
            origin: self.region.clone(),
            role: post.caller.role,
            retraction: None,
        };
        Span::current().record("event_id", event.event_id.as_str());
        self.store(event).await
    }

    /// Writes `event` to `events` and answers where it is once acknowledged (`503` when it is not).
    pub(crate) async fn store(&self, event: StreamEvent) -> Result<Accepted, PostError> {
        let result = self.producer.produce(&event).await;
        self.record_queue_depth();
        match result {
            Ok(stored) => {
                self.metrics.record_produced(event.kind);
                Ok(Accepted {
                    event_id: event.event_id,
                    partition: stored.partition,
                    offset: stored.offset,
                })
            }
            Err(error) => {
                // A full queue is answered at once (the producer never waits for room): back off and retry.
                tracing::warn!(%error, reason = error.reason(), "event not stored");
                Err(PostError::Unavailable { retry_after_s: 1 })
            }
        }
    }

    /// Samples the producer queue into its gauge (per post, and every second by the housekeeping task).
    pub fn record_queue_depth(&self) {
        let depth = i64::from(self.producer.in_flight());
        self.metrics.producer_in_flight.set(depth);
    }

    /// Forgets rate-limit keys that are idle again, and reports how many are left.
    pub fn forget_idle_limits(&self) {
        self.limits.forget_idle();
        let keys = i64::try_from(self.limits.tracked_keys()).unwrap_or(i64::MAX);
        self.metrics.rate_limit_keys.set(keys);
    }

    /// Waits (bounded) for queued events to be acknowledged, at shutdown.
    pub fn flush(&self, timeout: std::time::Duration) {
        self.producer.flush(timeout);
    }
}
