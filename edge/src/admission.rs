//! Who may connect: a valid stream id; with `--require-token`, only a viewer with a valid watch token (a JWT,
//! see [`chorus_service::auth`], in `Authorization: Bearer`, or `?access_token=` for browsers, whose WebSocket
//! and EventSource APIs cannot set headers); allowed origins; at most `--max-connections` viewers on this edge
//! and `--max-connections-per-address` from one client address.
//!
//! [`Viewer`], the extractor every viewer endpoint starts with, decides before any upgrade; a [`Refusal`] is
//! an HTTP status with a problem document (and the one place refusals are counted); an admitted connection
//! gives its place back when it ends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chorus_service::auth::{AuthFailure, AuthSetupError, TokenVerifier};
use chorus_service::problem::{Challenge, Problem};

use crate::config::EdgeConfig;
use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadStreamId,
    Origin,
    EdgeFull,
    AddressFull,
    /// No watch token, or one that is not valid (the reason, e.g. `expired`).
    Token(&'static str),
    /// `--require-token` is on but the edge has no usable key.
    CannotVerify,
    /// A query string that does not parse (long-poll's `cursor` and `wait_ms`).
    BadQuery,
    /// No such route, or not with this method: viewers get problem documents for those too.
    NotFound,
    MethodNotAllowed,
}

impl Refusal {
    fn problem(self) -> Problem {
        let bad = |kind, detail| Problem::new(StatusCode::BAD_REQUEST, kind, "Bad request", detail);
        let refused =
            |status, kind, detail| Problem::new(status, kind, "Connection refused", detail);
        // A full edge, or one that cannot verify tokens, may have room again soon; another may have now.
        let busy = |status, kind, detail| refused(status, kind, detail).retry_after(5);
        match self {
            Refusal::BadStreamId => bad(
                "bad-stream-id",
                "a stream id is 1 to 128 characters from A-Z a-z 0-9 . _ - and starts with a letter or digit",
            ),
            Refusal::BadQuery => bad(
                "bad-query",
                "the query is not valid: `cursor` once, `wait_ms` milliseconds",
            ),
            Refusal::NotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "viewers connect at /v1/streams/{stream_id}/ws, /sse or /poll",
            ),
            Refusal::MethodNotAllowed => Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "the viewer endpoints take GET",
            ),
            Refusal::Origin => refused(
                StatusCode::FORBIDDEN,
                "origin-not-allowed",
                "this origin may not connect",
            ),
            Refusal::EdgeFull => busy(
                StatusCode::SERVICE_UNAVAILABLE,
                "edge-full",
                "this edge holds all the connections it may; connect to another",
            ),
            Refusal::AddressFull => busy(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-from-address",
                "too many connections from this address",
            ),
            Refusal::Token("missing") => refused(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "this edge needs a watch token: send `Authorization: Bearer <token>`",
            )
            .challenge(Challenge::Missing),
            Refusal::Token(_) => refused(
                StatusCode::UNAUTHORIZED,
                "invalid-token",
                "the watch token is not valid (malformed, expired, badly signed, or for another audience or issuer)",
            )
            .challenge(Challenge::InvalidToken),
            Refusal::CannotVerify => busy(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot-verify-tokens",
                "this edge cannot verify watch tokens; connect to another",
            ),
        }
    }

    /// Counts the refusal (by its problem type, in snake case) and answers it.
    pub fn respond(self, metrics: &EdgeMetrics) -> Response {
        let problem = self.problem();
        Occurrence::Refused {
            reason: &problem.kind().replace('-', "_"),
        }
        .emit(metrics);
        problem.into_response()
    }
}

/// A viewer let in: the stream it asked for, and its place on this edge. As an extractor it checks the
/// stream id and admits the connection, or answers with the refusal.
#[derive(Debug)]
pub struct Viewer {
    pub stream_id: String,
    pub admitted: Admitted,
    /// The cursor the viewer came back with: SSE's `Last-Event-ID`, else `?cursor=` (any transport).
    pub cursor: Option<String>,
}

/// The query members a viewer's cursor comes in (others are the transports' own).
#[derive(Debug, serde::Deserialize)]
struct CursorQuery {
    cursor: Option<String>,
}

impl<S> FromRequestParts<S> for Viewer
where
    S: Send + Sync,
    Arc<Admission>: FromRef<S>,
    EdgeMetrics: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let refuse = |refusal: Refusal| refusal.respond(&EdgeMetrics::from_ref(state));
        // A path segment that does not decode is no valid stream id either.
        let stream_id = Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| id)
            .ok()
            .filter(|id| chorus_schemas::is_valid_stream_id(id))
            .ok_or_else(|| refuse(Refusal::BadStreamId))?;
        let ConnectInfo(client) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let admitted = Arc::<Admission>::from_ref(state)
            .admit(client.ip(), &parts.headers, parts.uri.query())
            .map_err(refuse)?;
        let last_event_id = parts
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok());
        let cursor = last_event_id.map(str::to_owned).or_else(|| {
            axum::extract::Query::<CursorQuery>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.cursor)
        });
        Ok(Viewer {
            stream_id,
            admitted,
            cursor,
        })
    }
}

#[derive(Debug)]
pub struct Admission {
    counts: Mutex<Counts>,
    max_total: usize,
    max_per_address: usize,
    origins: Vec<String>,
    tokens: Tokens,
}

/// Whether viewers need a watch token.
#[derive(Debug)]
enum Tokens {
    NotRequired,
    Required(Box<TokenVerifier>),
    /// `--require-token` with keys that cannot be used: every viewer is refused (fail closed), see the log.
    Unverifiable,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// A connection's place; given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&self.address);
            }
        }
    }
}

impl Admission {
    /// The admission of `config`; `Err` when `--require-token` is on and its keys cannot be used.
    pub fn try_new(config: &EdgeConfig) -> Result<Self, AuthSetupError> {
        let tokens = if config.require_token {
            Tokens::Required(Box::new(TokenVerifier::new(&config.auth)?))
        } else {
            Tokens::NotRequired
        };
        Ok(Self::with_tokens(config, tokens))
    }

    /// Like [`Admission::try_new`], but with keys that cannot be used it refuses every viewer (and logs why)
    /// instead of failing.
    pub fn new(config: &EdgeConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|error| {
            tracing::error!(%error, "--require-token: cannot verify watch tokens; refusing every viewer");
            Self::with_tokens(config, Tokens::Unverifiable)
        })
    }

    fn with_tokens(config: &EdgeConfig, tokens: Tokens) -> Self {
        Admission {
            counts: Mutex::default(),
            max_total: config.max_connections,
            max_per_address: config.max_connections_per_address,
            origins: config.allowed_origins.clone(),
            tokens,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `address` with these request headers, taking a watch token from
    /// `Authorization` or else from `access_token` in the request's `query`; or says why not.
    pub fn admit(
        self: &Arc<Self>,
        address: IpAddr,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Admitted, Refusal> {
        self.check_token(headers, query)?;
        self.decide(address, headers)
    }

    fn check_token(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
        let verifier = match &self.tokens {
            Tokens::NotRequired => return Ok(()),
            Tokens::Unverifiable => return Err(Refusal::CannotVerify),
            Tokens::Required(verifier) => verifier,
        };
        let from_query = query.and_then(|q| {
            q.split('&')
                .find_map(|pair| pair.strip_prefix("access_token="))
        });
        let verified = match (chorus_service::auth::bearer_token(headers), from_query) {
            (Ok(token), _) => verifier.verify(token),
            (Err(AuthFailure::Missing), Some(token)) => verifier.verify(token),
            (Err(failure), _) => Err(failure),
        };
        verified.map(|_| ()).map_err(|failure| {
            tracing::debug!(reason = failure.reason(), %failure, "watch token refused");
            Refusal::Token(failure.reason())
        })
    }

    fn decide(self: &Arc<Self>, address: IpAddr, headers: &HeaderMap) -> Result<Admitted, Refusal> {
        if !self.origins.is_empty() {
            // Browsers always send Origin; other clients may not, and are not subject to the check.
            if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
                if !self.origins.iter().any(|allowed| allowed == origin) {
                    return Err(Refusal::Origin);
                }
            }
        }
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(Refusal::EdgeFull);
        }
        let from_address = counts.per_address.entry(address).or_default();
        if *from_address >= self.max_per_address {
            return Err(Refusal::AddressFull);
        }
        *from_address += 1;
        counts.total += 1;
        Ok(Admitted {
            admission: self.clone(),
            address,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(metrics: &EdgeMetrics, reason: &str) -> u64 {
        metrics.viewers.rejected.with_label_values(&[reason]).get()
    }

    async fn answer(refusal: Refusal) -> (Response, serde_json::Value, EdgeMetrics) {
        let metrics = EdgeMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let response = refusal.respond(&metrics);
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 16).await.expect("body");
        let json = serde_json::from_slice(&body).expect("problem JSON");
        (
            Response::from_parts(parts, axum::body::Body::empty()),
            json,
            metrics,
        )
    }

    #[tokio::test]
    async fn refusals_are_problem_documents_with_their_headers_and_are_counted() {
        let (full, body, metrics) = answer(Refusal::EdgeFull).await;
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(full.headers()[header::RETRY_AFTER], "5");
        assert_eq!(
            body,
            serde_json::json!({"type": "urn:chorus:problem:edge-full", "title": "Connection refused",
                "status": 503, "detail": "this edge holds all the connections it may; connect to another"})
        );
        assert_eq!(rejected(&metrics, "edge_full"), 1);

        let (missing, _, _) = answer(Refusal::Token("missing")).await;
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"chorus\""
        );
        let (expired, body, metrics) = answer(Refusal::Token("expired")).await;
        assert_eq!(body["type"], "urn:chorus:problem:invalid-token");
        assert!(expired.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(rejected(&metrics, "invalid_token"), 1);

        let (bad, body, metrics) = answer(Refusal::BadQuery).await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert!(bad.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(body["title"], "Bad request");
        assert!(body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("wait_ms")));
        assert_eq!(rejected(&metrics, "bad_query"), 1);
    }

    #[test]
    fn places_are_limited_per_edge_and_per_address_and_given_back() {
        let config: EdgeConfig =
            chorus_service::parse_args(&["--max-connections=2", "--max-connections-per-address=1"])
                .expect("edge options");
        let admission = Arc::new(Admission::new(&config));
        let (a, b, c) = (
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            [10, 0, 0, 3].into(),
        );
        let headers = HeaderMap::new();
        let first = admission.admit(a, &headers, None).expect("admitted");
        assert_eq!(
            admission.admit(a, &headers, None).err(),
            Some(Refusal::AddressFull)
        );
        let _second = admission.admit(b, &headers, None).expect("admitted");
        assert_eq!(
            admission.admit(c, &headers, None).err(),
            Some(Refusal::EdgeFull)
        );
        drop(first);
        admission
            .admit(c, &headers, None)
            .expect("a place was given back");
    }
}
