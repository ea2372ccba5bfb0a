//! Viewers over WebSocket: `GET /v1/streams/{stream_id}/ws`. The server sends `hello` (with the join position),
//! then `events` and `likes` frames as they come, and `gap` when the viewer fell behind.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::config::EdgeConfig;
use crate::frames::ServerFrame;
use crate::metrics::EdgeMetrics;
use crate::rooms::{Room, Rooms};

#[derive(Debug, Clone)]
pub struct ViewerState {
    pub rooms: Arc<Rooms>,
    pub config: Arc<EdgeConfig>,
    pub edge_id: Arc<str>,
    pub metrics: EdgeMetrics,
    pub shutdown: CancellationToken,
}

pub fn router(state: ViewerState) -> Router {
    Router::new()
        .route("/v1/streams/{stream_id}/ws", get(upgrade))
        .with_state(state)
}

async fn upgrade(
    State(state): State<ViewerState>,
    Path(stream_id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    if !chorus_schemas::is_valid_stream_id(&stream_id) {
        state
            .metrics
            .rejected
            .with_label_values(&["bad_stream_id"])
            .inc();
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/problem+json")],
            Json(serde_json::json!({
                "type": "urn:chorus:problem:bad-stream-id",
                "title": "Invalid stream id",
                "status": 400,
                "detail": "a stream id is 1 to 128 characters from A-Z a-z 0-9 . _ - and starts with a letter or digit",
            })),
        )
            .into_response();
    }
    ws.max_message_size(state.config.max_inbound_bytes)
        .max_frame_size(state.config.max_inbound_bytes)
        .write_buffer_size(0)
        .on_upgrade(move |socket| watch(state, stream_id, socket))
}

/// Leaves the room however the connection ends.
struct Presence {
    rooms: Arc<Rooms>,
    room: Arc<Room>,
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.rooms.leave(&self.room);
    }
}

#[tracing::instrument(name = "edge.viewer", skip_all, fields(stream_id = %stream_id))]
async fn watch(state: ViewerState, stream_id: String, mut socket: WebSocket) {
    let metrics = state.metrics.clone();
    let connections = metrics.connections.with_label_values(&["websocket"]);
    connections.inc();
    let room = state.rooms.enter(&stream_id);
    let _presence = Presence {
        rooms: state.rooms.clone(),
        room: room.clone(),
    };

    let mut joined = state.rooms.join(&room);
    let hello = ServerFrame::Hello {
        stream_id: &stream_id,
        edge_id: &state.edge_id,
        join: &joined.join,
        heartbeat_ms: state.config.heartbeat_ms,
    }
    .to_text();
    if send(&mut socket, &metrics, hello).await.is_err() {
        connections.dec();
        return;
    }
    metrics.joins.inc();
    let joined_at = Instant::now();
    let mut first_event_seen = false;
    let join = joined.join;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            frame = joined.frames.recv() => match frame {
                Ok(frame) => {
                    let delivered = frame.event_count(&join) as u64;
                    let mut failed = false;
                    for text in frame.for_viewer(&stream_id, &join) {
                        if send(&mut socket, &metrics, text).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        break;
                    }
                    metrics.events_delivered.inc_by(delivered);
                    if delivered > 0 && !first_event_seen {
                        first_event_seen = true;
                        metrics.join_to_first_event.observe(joined_at.elapsed().as_secs_f64());
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    metrics.gaps.inc();
                    let gap = ServerFrame::Gap { stream_id: &stream_id, missed_frames: missed, reason: "slow_viewer" };
                    if send(&mut socket, &metrics, gap.to_text()).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Closed) => break,
            },
            inbound = socket.next() => match inbound {
                // Pings are answered by the WebSocket layer; anything else from a viewer is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    connections.dec();
}

async fn send(
    socket: &mut WebSocket,
    metrics: &EdgeMetrics,
    text: Utf8Bytes,
) -> Result<(), axum::Error> {
    let len = text.len() as u64;
    socket.send(Message::Text(text)).await?;
    metrics.frames_sent.inc();
    metrics.bytes_sent.inc_by(len);
    Ok(())
}
