//! Every error a client can get from ingest, and the problem document ([`Problem`], RFC 9457) each one is
//! answered with. Internal detail is logged where it happens, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chorus_service::{AuthFailure, Challenge, Problem};

use crate::limits::Refused;
use crate::post::PostError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the stream id {0:?} is not valid: 1 to 128 characters from A-Z a-z 0-9 . _ - and not starting with a symbol")]
    BadStreamId(String),
    #[error("the request path cannot be read: {0}")]
    BadPath(String),
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
    /// Over the per-address limit (the per-user and per-stream limits are a [`PostError`]).
    #[error(transparent)]
    RateLimited(#[from] Refused),
    #[error("the Idempotency-Key header must be 1 to 128 visible ASCII characters")]
    BadIdempotencyKey,
    /// An identity header sent more than once: a gateway that appends instead of replacing it would otherwise
    /// let the client's own value through.
    #[error("the `{0}` header is sent more than once; send it once")]
    DuplicateHeader(String),
    #[error("there is no {method} {path} here; see /openapi.json")]
    NotFound { method: String, path: String },
    #[error("{path} does not take {method}; see /openapi.json")]
    MethodNotAllowed { method: String, path: String },
    #[error(transparent)]
    Post(#[from] PostError),
}

/// The header a problem about `Idempotency-Key` points at.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

impl ApiError {
    /// Status, problem type and title.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadStreamId(_) => (
                StatusCode::BAD_REQUEST,
                "bad-stream-id",
                "Invalid stream id",
            ),
            ApiError::BadPath(_) => (StatusCode::BAD_REQUEST, "bad-path", "Invalid path"),
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
            ApiError::Unauthenticated { .. } | ApiError::Token(AuthFailure::Missing) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
            ),
            ApiError::Token(_) => (StatusCode::UNAUTHORIZED, "invalid-token", "Invalid token"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::RateLimited(_) | ApiError::Post(PostError::RateLimited(_)) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            ApiError::BadIdempotencyKey => (
                StatusCode::BAD_REQUEST,
                "bad-idempotency-key",
                "Invalid Idempotency-Key",
            ),
            ApiError::DuplicateHeader(_) => (
                StatusCode::BAD_REQUEST,
                "duplicate-header",
                "Duplicate header",
            ),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Post(PostError::IdempotencyKeyReused(_)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            ),
            ApiError::Post(PostError::Unavailable { .. }) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
            ApiError::Post(PostError::Moderated(refusal)) => refusal.parts(),
        }
    }

    /// The problem document, with the member or header that goes with each kind of error.
    pub fn problem(&self) -> Problem {
        let (status, kind, title) = self.parts();
        let problem = Problem::new(status, kind, title, self.to_string());
        match self {
            ApiError::InvalidField { field, .. } => problem.field(field),
            ApiError::BadIdempotencyKey | ApiError::Post(PostError::IdempotencyKeyReused(_)) => {
                problem.field(IDEMPOTENCY_KEY)
            }
            ApiError::RateLimited(refused) | ApiError::Post(PostError::RateLimited(refused)) => {
                problem
                    .limit(refused.limit.label())
                    .retry_after(refused.retry_after_s())
            }
            ApiError::Post(PostError::Unavailable { retry_after_s }) => {
                problem.retry_after(*retry_after_s)
            }
            ApiError::Post(PostError::Moderated(refusal)) => refusal.annotate(problem),
            ApiError::Unauthenticated { .. } | ApiError::Token(AuthFailure::Missing) => {
                problem.challenge(Challenge::Missing)
            }
            // RFC 6750: a token was sent and is not acceptable.
            ApiError::Token(_) => problem.challenge(Challenge::InvalidToken),
            _ => problem,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::header;
    use chorus_service::ProblemType;

    use super::*;
    use crate::idempotency::KeyReused;
    use crate::limits::Limit;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("a JSON body")
    }

    #[tokio::test]
    async fn a_user_limit_is_a_429_naming_the_limit_with_retry_after() {
        let refused = Refused {
            limit: Limit::UserComments,
            retry_after: Duration::from_millis(1500),
        };
        let response = ApiError::from(PostError::from(refused)).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            response.extensions().get::<ProblemType>(),
            Some(&ProblemType("rate-limited"))
        );
        assert_eq!(
            body(response).await,
            serde_json::json!({"type": "urn:chorus:problem:rate-limited", "title": "Too many requests",
                "status": 429, "detail": "too many comments from this user; retry after 2 s",
                "limit": "user_comments"})
        );
    }

    #[tokio::test]
    async fn a_reused_key_points_at_the_header() {
        let response = ApiError::from(PostError::from(KeyReused)).into_response();
        let problem = body(response).await;
        assert_eq!(problem["type"], "urn:chorus:problem:idempotency-key-reused");
        assert_eq!(problem["status"], 422);
        assert_eq!(problem["field"], "Idempotency-Key");
    }

    #[test]
    fn a_missing_identity_and_a_bad_token_get_their_challenges() {
        let missing = ApiError::Unauthenticated {
            header: "x-user-id".into(),
        }
        .into_response();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"chorus\""
        );
        let expired = ApiError::Token(AuthFailure::Expired).into_response();
        assert_eq!(
            expired.extensions().get::<ProblemType>(),
            Some(&ProblemType("invalid-token"))
        );
        assert_eq!(
            expired.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"chorus\", error=\"invalid_token\""
        );
    }

    #[test]
    fn an_unstored_event_is_a_503_with_retry_after_and_no_challenge() {
        let response = ApiError::from(PostError::Unavailable { retry_after_s: 1 }).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
