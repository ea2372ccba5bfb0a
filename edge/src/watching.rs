//! What every viewer transport shares: the stream id check and admission, presence in a room, the connection
//! gauge, and the `hello` and `reconnect` frames.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus::IntGauge;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::admission::Admitted;
use crate::frames::{JoinPosition, ServerFrame};
use crate::metrics::EdgeMetrics;
use crate::rooms::{Room, Rooms};
use crate::viewer::ViewerState;

/// 400 with a problem document, counted.
pub fn bad_request(metrics: &EdgeMetrics, reason: &'static str, detail: &str) -> Response {
    metrics.rejected.with_label_values(&[reason]).inc();
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/problem+json")],
        Json(serde_json::json!({
            "type": format!("urn:chorus:problem:{}", reason.replace('_', "-")),
            "title": "Bad request",
            "status": 400,
            "detail": detail,
        })),
    )
        .into_response()
}

/// Checks the stream id and admits the connection: the admission, or the response that refuses it.
pub fn admit(
    state: &ViewerState,
    stream_id: &str,
    address: IpAddr,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Admitted, Box<Response>> {
    if !chorus_schemas::is_valid_stream_id(stream_id) {
        return Err(Box::new(bad_request(
            &state.metrics,
            "bad_stream_id",
            "a stream id is 1 to 128 characters from A-Z a-z 0-9 . _ - and starts with a letter or digit",
        )));
    }
    state
        .admission
        .admit_with_query(address, headers, query)
        .map_err(|refusal| Box::new(refusal.into_response()))
}

/// A client in a room: it leaves the room, gives its admission back and lowers the connection gauge however
/// it ends; until then the edge's drain waits for it.
#[derive(Debug)]
pub struct Presence {
    rooms: Arc<Rooms>,
    pub room: Arc<Room>,
    gauge: IntGauge,
    _admitted: Admitted,
    _tracked: TaskTrackerToken,
}

impl Presence {
    pub fn enter(
        state: &ViewerState,
        admitted: Admitted,
        stream_id: &str,
        transport: &str,
    ) -> Self {
        let gauge = state.metrics.connections.with_label_values(&[transport]);
        gauge.inc();
        Presence {
            rooms: state.rooms.clone(),
            room: state.rooms.enter(stream_id),
            gauge,
            _admitted: admitted,
            _tracked: state.tracker.token(),
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.gauge.dec();
        self.rooms.leave(&self.room);
    }
}

pub fn hello(
    stream_id: &str,
    edge_id: &str,
    join: &[JoinPosition],
    heartbeat_ms: u64,
    likes_total: u64,
) -> Utf8Bytes {
    ServerFrame::Hello {
        stream_id,
        edge_id,
        join,
        heartbeat_ms,
        likes_total,
    }
    .to_text()
}

/// The frame that ends a connection, asking the client to come back after a random delay.
pub fn reconnect(state: &ViewerState, stream_id: &str, reason: &'static str) -> Utf8Bytes {
    state.metrics.reconnects.with_label_values(&[reason]).inc();
    ServerFrame::Reconnect {
        stream_id,
        reason,
        delay_ms: state.config.reconnect_delay(),
    }
    .to_text()
}
