//! Who may connect: allowed origins, at most `--max-connections` viewers on this edge and
//! `--max-connections-per-address` from one client address. A refusal is an HTTP status with a problem
//! document, decided before any upgrade; an admitted connection gives its place back when it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::config::EdgeConfig;
use crate::metrics::EdgeMetrics;

#[derive(Debug)]
pub struct Admission {
    counts: Mutex<Counts>,
    max_total: usize,
    max_per_address: usize,
    origins: Vec<String>,
    metrics: EdgeMetrics,
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
        if status != StatusCode::FORBIDDEN {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
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
    pub fn new(config: &EdgeConfig, metrics: EdgeMetrics) -> Self {
        Admission {
            counts: Mutex::default(),
            max_total: config.max_connections,
            max_per_address: config.max_connections_per_address,
            origins: config.allowed_origins.clone(),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `address` with these request headers, or says why not (counted).
    pub fn admit(
        self: &Arc<Self>,
        address: IpAddr,
        headers: &HeaderMap,
    ) -> Result<Admitted, Refusal> {
        let result = self.decide(address, headers);
        if let Err(refusal) = result {
            self.metrics
                .rejected
                .with_label_values(&[refusal.reason()])
                .inc();
        }
        result
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
