//! RFC 9457 problem documents (`application/problem+json`): every refusal a client gets from ingest or an
//! edge is built here, so the body's fields, the `Retry-After` header and the Bearer challenge are written once.
//!
//! ```json
//! {"type":"urn:chorus:problem:rate-limited","title":"Too many requests","status":429,"detail":"...","limit":"user_comments"}
//! ```
//!
//! Each response also carries its [`ProblemType`] as an extension, so a middleware can count refusals by type
//! without parsing the body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The `type` URI of every Chorus problem starts with this.
pub const TYPE_PREFIX: &str = "urn:chorus:problem:";

/// `WWW-Authenticate` on a 401 (RFC 6750): no credentials were sent, or the token sent is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Missing,
    InvalidToken,
}

impl Challenge {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Challenge::Missing => "Bearer realm=\"chorus\"",
            Challenge::InvalidToken => "Bearer realm=\"chorus\", error=\"invalid_token\"",
        })
    }
}

/// The problem type of a response (the part of `type` after [`TYPE_PREFIX`]), as a response extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType(pub &'static str);

/// One problem document and the headers that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    field: Option<&'static str>,
    limit: Option<&'static str>,
    rule: Option<&'static str>,
    until_ms: Option<i64>,
    retry_after_s: Option<u64>,
    challenge: Option<Challenge>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// Which rate limit a 429 is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<&'a str>,
    /// Which moderation rule refused the request (banned, slow_mode, comments_closed, moderators_only,
    /// blocked_term).
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    /// Until when the refusal holds (a ban), milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    until_ms: Option<i64>,
}

impl Problem {
    /// `kind` is the problem type in kebab case (`bad-stream-id`); `title` is the same for every instance of
    /// it; `detail` says what is wrong with this request, for its sender (never internal detail).
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            field: None,
            limit: None,
            rule: None,
            until_ms: None,
            retry_after_s: None,
            challenge: None,
        }
    }

    /// The moderation rule that refused the request.
    pub fn rule(mut self, rule: &'static str) -> Self {
        self.rule = Some(rule);
        self
    }

    /// Until when the refusal holds, milliseconds since the Unix epoch.
    pub fn until_ms(mut self, until_ms: i64) -> Self {
        self.until_ms = Some(until_ms);
        self
    }

    /// The field (or header) of the request that is wrong.
    pub fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    /// The rate limit a 429 is about.
    pub fn limit(mut self, limit: &'static str) -> Self {
        self.limit = Some(limit);
        self
    }

    /// When to try again, in seconds (`Retry-After`).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// The Bearer challenge of a 401.
    pub fn challenge(mut self, challenge: Challenge) -> Self {
        self.challenge = Some(challenge);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: format!("{TYPE_PREFIX}{}", self.kind),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            field: self.field,
            limit: self.limit,
            rule: self.rule,
            until_ms: self.until_ms,
        };
        // Serialising this plain struct cannot fail.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, challenge.header());
        }
        response.extensions_mut().insert(ProblemType(self.kind));
        response
    }
}

/// The answer of a route that does not exist, for routers without a fallback of their own (admin ports,
/// the edge's internal port): a problem document like every other refusal.
pub async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "there is no such route here",
    )
}

/// The answer of a route asked with a method it does not take (axum adds `Allow`).
pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not take this method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_a_typed_json_body_with_its_headers() {
        let response = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            "slow down",
        )
        .limit("address")
        .retry_after(3)
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(headers[header::RETRY_AFTER], "3");
        assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(
            response.extensions().get::<ProblemType>(),
            Some(&ProblemType("rate-limited"))
        );
    }

    #[test]
    fn the_body_names_type_title_status_detail_and_the_optional_fields() {
        let body = Body {
            kind: format!("{TYPE_PREFIX}invalid-field"),
            title: "Invalid field",
            status: 422,
            detail: "too long",
            field: Some("text"),
            limit: None,
            rule: None,
            until_ms: None,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&body).expect("json")).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"type": "urn:chorus:problem:invalid-field", "title": "Invalid field",
                "status": 422, "detail": "too long", "field": "text"})
        );
    }

    #[test]
    fn unauthenticated_and_invalid_tokens_get_their_challenges() {
        let missing = Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Unauthenticated",
            "",
        )
        .challenge(Challenge::Missing)
        .into_response();
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"chorus\""
        );
        let invalid = Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid-token",
            "Invalid token",
            "",
        )
        .challenge(Challenge::InvalidToken)
        .into_response();
        assert_eq!(
            invalid.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"chorus\", error=\"invalid_token\""
        );
    }
}
