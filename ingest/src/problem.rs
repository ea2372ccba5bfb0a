//! Every error a client can get, as an RFC 9457 problem document (`application/problem+json`).
//! Internal detail is logged where it happens, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chorus_service::AuthFailure;
use serde::Serialize;

use crate::limits::Refused;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the stream id {0:?} is not valid: 1 to 128 characters from A-Z a-z 0-9 . _ - and not starting with a symbol")]
    BadStreamId(String),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body must be `application/json`")]
    UnsupportedMediaType,
    #[error("the request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("no user identity: the `{header}` header is missing or not valid")]
    Unauthenticated { header: String },
    #[error("{0}")]
    Token(AuthFailure),
    #[error("{0}")]
    Forbidden(String),
    #[error("{}; retry after {} s", .0.limit.describe(), .0.retry_after_s())]
    RateLimited(Refused),
    #[error("the Idempotency-Key header must be 1 to 128 visible ASCII characters")]
    BadIdempotencyKey,
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("the event could not be stored; retry after {retry_after_s} s")]
    Unavailable { retry_after_s: u64 },
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// Which rate limit a 429 is about: `address`, `user_comments`, `user_likes` or `stream`.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<&'a str>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadStreamId(_) => (
                StatusCode::BAD_REQUEST,
                "bad-stream-id",
                "Invalid stream id",
            ),
            ApiError::MalformedJson(_) => (
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON body",
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Body too large",
            ),
            ApiError::InvalidField { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                "Invalid field",
            ),
            ApiError::Unauthenticated { .. } => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
            ),
            ApiError::Token(AuthFailure::Missing) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
            ),
            ApiError::Token(_) => (StatusCode::UNAUTHORIZED, "invalid-token", "Invalid token"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            ApiError::BadIdempotencyKey => (
                StatusCode::BAD_REQUEST,
                "bad-idempotency-key",
                "Invalid Idempotency-Key",
            ),
            ApiError::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            ),
            ApiError::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        let kind = format!("urn:chorus:problem:{slug}");
        let field = match &self {
            ApiError::InvalidField { field, .. } => Some(*field),
            ApiError::BadIdempotencyKey | ApiError::IdempotencyKeyReused => Some("Idempotency-Key"),
            _ => None,
        };
        let limit = match &self {
            ApiError::RateLimited(refused) => Some(refused.limit.label()),
            _ => None,
        };
        let body = Problem {
            kind: &kind,
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            field,
            limit,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::Unavailable { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            ApiError::RateLimited(refused) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(refused.retry_after_s()),
                );
            }
            ApiError::Unauthenticated { .. } | ApiError::Token(AuthFailure::Missing) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"chorus\""),
                );
            }
            // RFC 6750: a token was sent and is not acceptable.
            ApiError::Token(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"chorus\", error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        response
    }
}
