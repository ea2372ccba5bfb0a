//! The axum extractors of a post: [`PostTarget`] (stream id, caller, `Idempotency-Key`), shared by the
//! comment and like routes, and the two bodies ([`CommentText`], [`LikeBody`]).
//!
//! The order of the checks is part of the API (a request wrong in two ways gets the first error): the stream
//! id, then the caller, then the key, all in [`PostTarget`]; then the body, which axum extracts last.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use chorus_schemas::EventKind;

use crate::identity::Authenticator;
use crate::metrics::IngestMetrics;
use crate::post::{Caller, Post};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validate;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Where a post goes, who sends it, and its `Idempotency-Key`, each checked.
#[derive(Debug)]
pub struct PostTarget {
    pub stream_id: String,
    pub caller: Caller,
    pub key: Option<String>,
}

impl PostTarget {
    /// The post of `kind` (with `text` for a comment) to this target.
    pub fn post(self, kind: EventKind, text: Option<String>) -> Post {
        Post {
            stream_id: self.stream_id,
            caller: self.caller,
            kind,
            text,
            key: self.key,
        }
    }
}

impl FromRequestParts<Arc<AppState>> for PostTarget {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        // A path segment that does not decode (bad percent-encoding, not UTF-8) is no valid stream id either.
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::BadStreamId(rejection.body_text()))?;
        checked(&raw, &parts.headers, state)
    }
}

/// The stream id, then the caller, then the key.
fn checked(raw: &str, headers: &HeaderMap, state: &AppState) -> Result<PostTarget, ApiError> {
    let stream_id = validate::stream_id(raw)?;
    let caller = authenticate(&state.authenticator, &state.metrics, headers, stream_id)?;
    let key = idempotency_key(headers)?;
    Ok(PostTarget {
        stream_id: stream_id.to_owned(),
        caller,
        key,
    })
}

/// Who sent the request; counts and logs every refusal.
#[tracing::instrument(name = "ingest.authenticate", level = "debug", skip_all)]
pub(crate) fn authenticate(
    authenticator: &Authenticator,
    metrics: &IngestMetrics,
    headers: &HeaderMap,
    stream_id: &str,
) -> Result<Caller, ApiError> {
    authenticator
        .authenticate(headers, stream_id)
        .inspect_err(|error| {
            if let Some(reason) = error.auth_failure_reason() {
                metrics.record_auth_failure(reason, error);
            }
        })
}

/// The `Idempotency-Key` header, if sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    validate::idempotency_key(value.to_str().ok())
        .map(|key| Some(key.to_owned()))
        .ok_or(ApiError::BadIdempotencyKey)
}

/// The text of a comment: a JSON body `{"text": ...}` with valid text.
#[derive(Debug)]
pub struct CommentText(pub String);

impl FromRequest<Arc<AppState>> for CommentText {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let is_json = is_json(request.headers());
        let body = Bytes::from_request(request, state).await;
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body = body.map_err(|rejection| body_rejection(rejection, state.max_body_bytes))?;
        let text = comment_text(&body)?;
        validate::comment_text(&text)?;
        Ok(CommentText(text))
    }
}

/// The `text` of a comment's body, which must be a JSON object (other members are ignored).
fn comment_text(body: &[u8]) -> Result<String, ApiError> {
    let mut object: serde_json::Map<String, serde_json::Value> = parse_json(body)?;
    match object.remove("text") {
        Some(serde_json::Value::String(text)) => Ok(text),
        Some(_) => Err(ApiError::InvalidField {
            field: "text",
            detail: "`text` must be a string".into(),
        }),
        None => Err(ApiError::InvalidField {
            field: "text",
            detail: "the body must have a `text` string".into(),
        }),
    }
}

/// The body of a like: none, or a JSON object (whose members mean nothing yet).
#[derive(Debug)]
pub struct LikeBody;

impl FromRequest<Arc<AppState>> for LikeBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let is_json = is_json(request.headers());
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_rejection(rejection, state.max_body_bytes))?;
        if !body.is_empty() {
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let _: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
        }
        Ok(LikeBody)
    }
}

pub(crate) fn body_rejection(rejection: BytesRejection, max_body_bytes: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge {
            limit: max_body_bytes,
        }
    } else {
        ApiError::MalformedJson(rejection.body_text())
    }
}

/// `application/json` or any `application/*+json`, parameters ignored.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
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
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Syntax errors (including invalid UTF-8) are 400; well-formed JSON of the wrong shape is 422.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ApiError::InvalidField {
            field: "body",
            detail: format!("the body must be a JSON object: {error}"),
        },
        _ => ApiError::MalformedJson(error.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_media_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers), "no content type");
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/jsonp", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json(&headers), json, "{value}");
        }
    }

    #[test]
    fn keys_are_checked_only_when_sent() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers).ok(), Some(None));
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("retry-1"));
        assert_eq!(
            idempotency_key(&headers).ok(),
            Some(Some("retry-1".to_owned()))
        );
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("a b"));
        assert!(matches!(
            idempotency_key(&headers),
            Err(ApiError::BadIdempotencyKey)
        ));
    }

    #[test]
    fn a_comment_body_is_an_object_with_a_text_string() {
        assert_eq!(
            comment_text(br#"{"text":"hi","extra":1}"#).ok().as_deref(),
            Some("hi")
        );
        for (body, field) in [
            (&br#"{"text":5}"#[..], "text"),
            (br#"{}"#, "text"),
            (br#"["hi"]"#, "body"),
            (br#"["a","b"]"#, "body"),
            (br#""hi""#, "body"),
        ] {
            match comment_text(body) {
                Err(ApiError::InvalidField { field: got, .. }) => {
                    assert_eq!(got, field, "{}", String::from_utf8_lossy(body))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        assert!(matches!(
            comment_text(br#"{"text":"#),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
