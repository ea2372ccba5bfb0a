//! Every error a client can get, as an RFC 9457 problem document (`application/problem+json`).
//! Internal detail is logged where it happens, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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
            _ => None,
        };
        let body = Problem {
            kind: &kind,
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            field,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::Unavailable { retry_after_s } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        if let ApiError::Unauthenticated { .. } = self {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
