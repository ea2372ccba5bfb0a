//! Who may connect: with `--require-token`, only a viewer with a valid watch token (a JWT, see
//! [`chorus_service::auth`], in `Authorization: Bearer`, or `?access_token=` where the transport passes its
//! query to [`Admission::admit_with_query`]); allowed origins; at most
//! `--max-connections` viewers on this edge and `--max-connections-per-address` from one client address. A refusal is an HTTP status with a problem
//! document, decided before any upgrade; an admitted connection gives its place back when it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use chorus_service::auth::{AuthFailure, AuthSetupError, TokenVerifier};

use crate::config::EdgeConfig;
use crate::metrics::EdgeMetrics;

#[derive(Debug)]
pub struct Admission {
    counts: Mutex<Counts>,
    max_total: usize,
    max_per_address: usize,
    origins: Vec<String>,
    tokens: Tokens,
    metrics: EdgeMetrics,
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

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Origin,
    EdgeFull,
    AddressFull,
    /// No watch token, or one that is not valid (the reason, e.g. `expired`).
    Token(&'static str),
    /// `--require-token` is on but the edge has no usable key.
    CannotVerify,
}

impl Refusal {
    fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Refusal::Origin => (
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this origin may not connect",
            ),
            Refusal::EdgeFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                "edge_full",
                "this edge holds all the connections it may; connect to another",
            ),
            Refusal::AddressFull => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_from_address",
                "too many connections from this address",
            ),
            Refusal::Token("missing") => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "this edge needs a watch token: send `Authorization: Bearer <token>`",
            ),
            Refusal::Token(_) => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the watch token is not valid (malformed, expired, badly signed, or for another audience or issuer)",
            ),
            Refusal::CannotVerify => (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot_verify_tokens",
                "this edge cannot verify watch tokens; connect to another",
            ),
        }
    }

    pub fn reason(self) -> &'static str {
        self.parts().1
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, reason, detail) = self.parts();
        let body = Json(serde_json::json!({
            "type": format!("urn:chorus:problem:{}", reason.replace('_', "-")),
            "title": "Connection refused",
            "status": status.as_u16(),
            "detail": detail,
        }));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            Refusal::Origin => {}
            Refusal::Token(reason) => {
                let challenge = if reason == "missing" {
                    "Bearer realm=\"chorus\""
                } else {
                    "Bearer realm=\"chorus\", error=\"invalid_token\""
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            _ => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
        }
        response
    }
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
    /// Like [`Admission::try_new`], but with keys that cannot be used it refuses every viewer (and logs why)
    /// instead of failing.
    pub fn new(config: &EdgeConfig, metrics: EdgeMetrics) -> Self {
        let (admission, error) = Self::build(config, metrics);
        if let Some(error) = error {
            tracing::error!(%error, "--require-token: cannot verify watch tokens; refusing every viewer");
        }
        admission
    }

    /// The admission of `config`; `Err` when `--require-token` is on and its keys cannot be used.
    pub fn try_new(config: &EdgeConfig, metrics: EdgeMetrics) -> Result<Self, AuthSetupError> {
        match Self::build(config, metrics) {
            (admission, None) => Ok(admission),
            (_, Some(error)) => Err(error),
        }
    }

    fn build(config: &EdgeConfig, metrics: EdgeMetrics) -> (Self, Option<AuthSetupError>) {
        let (tokens, error) = if !config.require_token {
            (Tokens::NotRequired, None)
        } else {
            match TokenVerifier::new(&config.auth) {
                Ok(verifier) => (Tokens::Required(Box::new(verifier)), None),
                Err(error) => (Tokens::Unverifiable, Some(error)),
            }
        };
        let admission = Admission {
            counts: Mutex::default(),
            max_total: config.max_connections,
            max_per_address: config.max_connections_per_address,
            origins: config.allowed_origins.clone(),
            tokens,
            metrics,
        };
        (admission, error)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `address` with these request headers, or says why not (counted).
    /// A watch token is looked for in `Authorization` only; see [`Admission::admit_with_query`].
    pub fn admit(
        self: &Arc<Self>,
        address: IpAddr,
        headers: &HeaderMap,
    ) -> Result<Admitted, Refusal> {
        self.admit_with_query(address, headers, None)
    }

    /// [`Admission::admit`], also taking a watch token from `access_token` in the request's `query` (for
    /// browsers, whose WebSocket and EventSource APIs cannot set headers).
    pub fn admit_with_query(
        self: &Arc<Self>,
        address: IpAddr,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Admitted, Refusal> {
        let result = self
            .check_token(headers, query)
            .and_then(|()| self.decide(address, headers));
        if let Err(refusal) = result {
            self.metrics
                .rejected
                .with_label_values(&[refusal.reason()])
                .inc();
        }
        result
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
