//! The admin port every role serves: Prometheus metrics, liveness and readiness.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::serve::Server;

/// Whether a role is ready for traffic (`/readyz`): the named conditions it still waits for. Cheap to clone;
/// every clone sees the same state.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<BTreeSet<&'static str>>>);

impl Readiness {
    /// Not ready until each of `conditions` was satisfied.
    pub fn waiting_for(conditions: &[&'static str]) -> Self {
        Readiness(Arc::new(Mutex::new(conditions.iter().copied().collect())))
    }

    pub fn satisfy(&self, condition: &'static str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(condition);
    }

    /// The conditions not yet satisfied.
    pub fn missing(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    pub fn is_ready(&self) -> bool {
        self.missing().is_empty()
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    readiness: Readiness,
}

/// The admin routes, for serving or for driving with `oneshot` in tests.
pub fn admin_router(registry: Registry, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(AdminState {
            registry,
            readiness,
        })
}

/// Serves the admin routes on `listener` until `shutdown` is cancelled, with the role's timeouts and pending
/// cap (`server`).
pub async fn serve_admin(
    listener: TcpListener,
    server: Server,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_admin_with(
        listener,
        server,
        registry,
        readiness,
        Router::new(),
        shutdown,
    )
    .await
}

/// Serves the admin routes and a role's own (`extra`, e.g. the edge's `POST /drain`).
pub async fn serve_admin_with(
    listener: TcpListener,
    server: Server,
    registry: Registry,
    readiness: Readiness,
    extra: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = admin_router(registry, readiness)
        .merge(extra)
        .fallback(crate::problem::not_found)
        .method_not_allowed_fallback(crate::problem::method_not_allowed);
    server.serve(listener, "admin", router, shutdown).await
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        ),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain".to_owned())],
                b"metrics unavailable\n".to_vec(),
            )
        }
    }
}

async fn ready(State(state): State<AdminState>) -> impl IntoResponse {
    let missing = state.readiness.missing();
    if missing.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for: {}\n", missing.join(", ")),
        )
    }
}
