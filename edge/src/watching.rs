//! What every viewer transport shares: the stream id check, presence in a room, the connection gauge, and
//! the `hello` frame.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus::IntGauge;

use crate::frames::{JoinPosition, ServerFrame};
use crate::metrics::EdgeMetrics;
use crate::rooms::{Room, Rooms};

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

/// The refusal for an invalid stream id, `None` when it is valid.
pub fn check_stream_id(metrics: &EdgeMetrics, stream_id: &str) -> Option<Response> {
    if chorus_schemas::is_valid_stream_id(stream_id) {
        None
    } else {
        Some(bad_request(
            metrics,
            "bad_stream_id",
            "a stream id is 1 to 128 characters from A-Z a-z 0-9 . _ - and starts with a letter or digit",
        ))
    }
}

/// A client in a room: it leaves the room, and the connection gauge goes down, however the client ends.
#[derive(Debug)]
pub struct Presence {
    rooms: Arc<Rooms>,
    pub room: Arc<Room>,
    gauge: IntGauge,
}

impl Presence {
    pub fn enter(
        rooms: &Arc<Rooms>,
        stream_id: &str,
        metrics: &EdgeMetrics,
        transport: &str,
    ) -> Self {
        let gauge = metrics.connections.with_label_values(&[transport]);
        gauge.inc();
        Presence {
            rooms: rooms.clone(),
            room: rooms.enter(stream_id),
            gauge,
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
) -> Utf8Bytes {
    ServerFrame::Hello {
        stream_id,
        edge_id,
        join,
        heartbeat_ms,
    }
    .to_text()
}
