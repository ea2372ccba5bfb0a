//! The public HTTP API of ingest.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chorus_schemas::{Codec, EventKind, StreamEvent};
use chorus_service::{clock, KafkaArgs};
use prometheus::Registry;
use serde::{Deserialize, Serialize};

use crate::config::IngestConfig;
use crate::metrics::IngestMetrics;
use crate::problem::ApiError;
use crate::producer::EventProducer;
use crate::{validate, IngestError};

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    pub producer: EventProducer,
    pub metrics: IngestMetrics,
    max_body_bytes: usize,
    user_header: String,
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
            max_body_bytes: config.max_body_bytes,
            user_header: config.user_header.to_ascii_lowercase(),
            region: kafka.region.clone(),
        })
    }
}

/// The ingest API: comments, likes, and its OpenAPI description.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/streams/{stream_id}/comments", post(post_comment))
        .route("/v1/streams/{stream_id}/likes", post(post_like))
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
#[derive(Debug, Serialize)]
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
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let stream_id = validate::stream_id(&stream_id)?;
    let user_id = state.user_id(&headers)?;
    let body = state.json_body(&headers, body)?;
    let request: CommentRequest = parse_json(&body)?;
    let text = validate::comment_text(&request.text)?;
    state
        .accept(stream_id, user_id, EventKind::Comment, Some(text))
        .await
}

async fn post_like(
    State(state): State<Arc<AppState>>,
    Path(stream_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let stream_id = validate::stream_id(&stream_id)?;
    let user_id = state.user_id(&headers)?;
    // A like needs no body; one that is sent must still be a JSON object.
    let body = body.map_err(|rejection| state.body_rejection(rejection))?;
    if !body.is_empty() {
        require_json(&headers)?;
        let _: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
    }
    state
        .accept(stream_id, user_id, EventKind::Like, None)
        .await
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
}

impl AppState {
    fn user_id<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, ApiError> {
        let raw = headers
            .get(self.user_header.as_str())
            .and_then(|v| v.to_str().ok());
        validate::user_id(raw).ok_or_else(|| ApiError::Unauthenticated {
            header: self.user_header.clone(),
        })
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

    /// Writes the event to Kafka and answers 202 once it is acknowledged.
    #[tracing::instrument(name = "ingest.accept", skip_all, fields(stream_id, event_id, ?kind))]
    async fn accept(
        &self,
        stream_id: &str,
        user_id: &str,
        kind: EventKind,
        text: Option<&str>,
    ) -> Result<(StatusCode, Json<Accepted>), ApiError> {
        let event = StreamEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            stream_id: stream_id.to_owned(),
            user_id: user_id.to_owned(),
            kind,
            text: text.map(str::to_owned),
            created_ms: clock::now_ms(),
            origin: self.region.clone(),
        };
        let span = tracing::Span::current();
        span.record("stream_id", stream_id);
        span.record("event_id", event.event_id.as_str());
        let result = self.producer.produce(&event).await;
        self.metrics
            .producer_in_flight
            .set(i64::from(self.producer.in_flight()));
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
                Ok((
                    StatusCode::ACCEPTED,
                    Json(Accepted {
                        event_id: event.event_id,
                        partition: stored.partition,
                        offset: stored.offset,
                    }),
                ))
            }
            Err(error) => {
                tracing::warn!(%error, reason = error.reason(), "event not stored");
                Err(ApiError::Unavailable { retry_after_s: 1 })
            }
        }
    }
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
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "invalid_field",
        429 => "rate_limited",
        503 => "unavailable",
        _ => "other",
    }
}
