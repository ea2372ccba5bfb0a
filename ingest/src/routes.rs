//! The public HTTP API of ingest.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chorus_schemas::{Codec, EventKind, StreamEvent};
use chorus_service::{clock, KafkaArgs};
use prometheus::Registry;
use serde::{Deserialize, Serialize};

use crate::config::IngestConfig;
use crate::idempotency::{self, IdempotencyCache};
use crate::identity::{Authenticator, Caller};
use crate::limits::{RateLimits, Refused};
use crate::metrics::IngestMetrics;
use crate::problem::ApiError;
use crate::producer::EventProducer;
use crate::{validate, IngestError};

/// Set on a `202` that answers a retry with the first answer (nothing new was written).
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    pub producer: EventProducer,
    pub metrics: IngestMetrics,
    pub limits: RateLimits,
    authenticator: Authenticator,
    idempotency: IdempotencyCache,
    trust_forwarded_for: bool,
    max_body_bytes: usize,
    region: String,
}

impl AppState {
    pub fn new(
        config: &IngestConfig,
        kafka: &KafkaArgs,
        codec: Codec<StreamEvent>,
        registry: &Registry,
    ) -> Result<Self, IngestError> {
        Ok(AppState {
            producer: EventProducer::new(
                kafka,
                codec,
                config.produce_timeout(),
                config.producer_queue_max,
            )?,
            metrics: IngestMetrics::register(registry)?,
            limits: RateLimits::new(&config.limits),
            authenticator: Authenticator::new(config)?,
            idempotency: IdempotencyCache::new(
                config.idempotency_max_keys,
                config.idempotency_window(),
            ),
            trust_forwarded_for: config.limits.trust_forwarded_for,
            max_body_bytes: config.max_body_bytes,
            region: kafka.region.clone(),
        })
    }
}

/// The ingest API: comments, likes, and its OpenAPI description. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that the per-address limit sees the client address.
pub fn app(state: Arc<AppState>) -> Router {
    let posts = Router::new()
        .route("/v1/streams/{stream_id}/comments", post(post_comment))
        .route("/v1/streams/{stream_id}/likes", post(post_like))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_address));
    Router::new()
        .merge(posts)
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct CommentRequest {
    text: String,
}

/// The body of `202 Accepted`: where the event now durably is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub event_id: String,
    pub partition: i32,
    pub offset: i64,
}

async fn post_comment(
    State(state): State<Arc<AppState>>,
    Path(stream_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let stream_id = validate::stream_id(&stream_id)?;
    let caller = state.caller(&headers, stream_id)?;
    let key = idempotency::key(&headers)?;
    let body = state.json_body(&headers, body)?;
    let request: CommentRequest = parse_json(&body)?;
    let text = validate::comment_text(&request.text)?;
    state
        .accept(stream_id, &caller, EventKind::Comment, Some(text), key)
        .await
}

async fn post_like(
    State(state): State<Arc<AppState>>,
    Path(stream_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let stream_id = validate::stream_id(&stream_id)?;
    let caller = state.caller(&headers, stream_id)?;
    let key = idempotency::key(&headers)?;
    // A like needs no body; one that is sent must still be a JSON object.
    let body = body.map_err(|rejection| state.body_rejection(rejection))?;
    if !body.is_empty() {
        require_json(&headers)?;
        let _: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
    }
    state
        .accept(stream_id, &caller, EventKind::Like, None, key)
        .await
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
}

impl AppState {
    /// Who sent the request; counts and logs every refusal.
    #[tracing::instrument(name = "ingest.authenticate", level = "debug", skip_all)]
    fn caller(&self, headers: &HeaderMap, stream_id: &str) -> Result<Caller, ApiError> {
        self.authenticator
            .authenticate(headers, stream_id)
            .inspect_err(|error| {
                if let Some(reason) = error.auth_failure_reason() {
                    self.metrics
                        .auth_failures
                        .with_label_values(&[reason])
                        .inc();
                    tracing::debug!(reason, %error, "request not authenticated");
                }
            })
    }

    /// Turns a limit refusal into its 429; counts and logs it.
    fn rate_limited(&self, refused: Refused) -> ApiError {
        let limit = refused.limit.label();
        self.metrics.rate_limited.with_label_values(&[limit]).inc();
        tracing::debug!(
            limit,
            retry_after_ms = refused.retry_after.as_millis() as u64,
            "rate limited"
        );
        ApiError::RateLimited(refused)
    }

    /// The client's address: the connection's peer, or with `--trust-forwarded-for` the last
    /// `X-Forwarded-For` entry (the one the trusted proxy in front added).
    fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        if self.trust_forwarded_for {
            let forwarded = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .last()
                .and_then(|last| last.trim().parse().ok());
            if forwarded.is_some() {
                return forwarded;
            }
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
    }

    fn body_rejection(&self, rejection: BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                limit: self.max_body_bytes,
            }
        } else {
            ApiError::MalformedJson(rejection.body_text())
        }
    }

    fn json_body(
        &self,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Bytes, ApiError> {
        require_json(headers)?;
        body.map_err(|rejection| self.body_rejection(rejection))
    }

    /// Answers a valid post: a replay of an earlier answer for a known `Idempotency-Key`, a 429 over a
    /// limit, or the event written to Kafka and a 202 once it is acknowledged.
    #[tracing::instrument(
        name = "ingest.accept",
        skip_all,
        fields(stream_id, event_id, ?kind, replay = tracing::field::Empty)
    )]
    async fn accept(
        &self,
        stream_id: &str,
        caller: &Caller,
        kind: EventKind,
        text: Option<&str>,
        key: Option<&str>,
    ) -> Result<Response, ApiError> {
        let span = tracing::Span::current();
        span.record("stream_id", stream_id);
        let Some(key) = key else {
            self.limits
                .check_event(kind, &caller.user_id, stream_id)
                .map_err(|refused| self.rate_limited(refused))?;
            let accepted = self
                .produce(uuid::Uuid::now_v7(), stream_id, caller, kind, text)
                .await?;
            return Ok(accepted_response(accepted, false));
        };
        let event_id = idempotency::event_id(&caller.user_id, stream_id, key);
        let slot = self
            .idempotency
            .slot(event_id, idempotency::fingerprint(kind, text))?;
        // A retry of a request already answered: the same answer, no limit spent, nothing written.
        if slot.get().is_none() {
            self.limits
                .check_event(kind, &caller.user_id, stream_id)
                .map_err(|refused| self.rate_limited(refused))?;
        }
        let mut produced = false;
        // Concurrent retries wait here for the first (bounded by the produce timeout); if it fails, the next
        // one tries to produce.
        let accepted = slot
            .get_or_try_init(|| {
                produced = true;
                self.produce(event_id, stream_id, caller, kind, text)
            })
            .await?
            .clone();
        span.record("replay", !produced);
        if !produced {
            self.metrics.idempotent_replays.inc();
            tracing::debug!(event_id = %accepted.event_id, "idempotent replay");
        }
        Ok(accepted_response(accepted, !produced))
    }

    /// Writes the event to Kafka and returns where it is once acknowledged.
    async fn produce(
        &self,
        event_id: uuid::Uuid,
        stream_id: &str,
        caller: &Caller,
        kind: EventKind,
        text: Option<&str>,
    ) -> Result<Accepted, ApiError> {
        let event = StreamEvent {
            event_id: event_id.to_string(),
            stream_id: stream_id.to_owned(),
            user_id: caller.user_id.clone(),
            kind,
            text: text.map(str::to_owned),
            created_ms: clock::now_ms(),
            origin: self.region.clone(),
            role: caller.role,
        };
        tracing::Span::current().record("event_id", event.event_id.as_str());
        let result = self.producer.produce(&event).await;
        self.record_queue_depth();
        match result {
            Ok(stored) => {
                let label = match kind {
                    EventKind::Comment => "comment",
                    EventKind::Like => "like",
                    EventKind::Other => "other",
                };
                self.metrics
                    .events_produced
                    .with_label_values(&[label])
                    .inc();
                Ok(Accepted {
                    event_id: event.event_id,
                    partition: stored.partition,
                    offset: stored.offset,
                })
            }
            Err(error) => {
                // A full queue is answered at once (the producer never waits for room): back off and retry.
                tracing::warn!(%error, reason = error.reason(), "event not stored");
                Err(ApiError::Unavailable { retry_after_s: 1 })
            }
        }
    }

    /// Samples the producer queue into its gauges (per request, and every second by the housekeeping task).
    pub fn record_queue_depth(&self) {
        let depth = i64::from(self.producer.in_flight());
        self.metrics.producer_in_flight.set(depth);
    }
}

fn accepted_response(accepted: Accepted, replayed: bool) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(accepted)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// The per-address limit, before anything else is looked at.
async fn limit_address(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(ip) = state.client_ip(&request) {
        if let Err(refused) = state.limits.check_address(ip) {
            return state.rate_limited(refused).into_response();
        }
    }
    next.run(request).await
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Syntax errors (including invalid UTF-8) are 400; well-formed JSON of the wrong shape is 422.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ApiError::InvalidField {
            field: "body",
            detail: format!("the body does not have the expected fields: {error}"),
        },
        _ => ApiError::MalformedJson(error.to_string()),
    })
}

/// Counts and times every request by matched route and status.
async fn observe(
    State(state): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched
        .as_ref()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    state
        .metrics
        .request_seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .with_label_values(&[route.as_str(), status.as_str()])
        .inc();
    if status.is_client_error() || status.is_server_error() {
        let reason = response
            .headers()
            .get(header::CONTENT_TYPE)
            .filter(|ct| *ct == "application/problem+json")
            .map_or("other", |_| status_reason(status));
        state.metrics.rejected.with_label_values(&[reason]).inc();
    }
    response
}

fn status_reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthenticated",
        403 => "forbidden",
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "invalid_field",
        429 => "rate_limited",
        503 => "unavailable",
        _ => "other",
    }
}
