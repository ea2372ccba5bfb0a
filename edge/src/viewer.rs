//! Viewers over WebSocket: `GET /v1/streams/{stream_id}/ws`. The server sends `hello` (with the join position),
//! then `events` and `likes` frames as they come, and `gap` when the viewer fell behind. The same stream is
//! served over Server-Sent Events ([`crate::sse`]) and long-poll ([`crate::poll`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::config::EdgeConfig;
use crate::frames::ServerFrame;
use crate::metrics::EdgeMetrics;
use crate::rooms::Rooms;
use crate::watching::{check_stream_id, hello, Presence};

#[derive(Debug, Clone)]
pub struct ViewerState {
    pub rooms: Arc<Rooms>,
    pub config: Arc<EdgeConfig>,
    pub edge_id: Arc<str>,
    pub metrics: EdgeMetrics,
    pub shutdown: CancellationToken,
}

/// Every viewer transport: WebSocket, SSE and long-poll.
pub fn router(state: ViewerState) -> Router {
    Router::new()
        .route("/v1/streams/{stream_id}/ws", get(upgrade))
        .route("/v1/streams/{stream_id}/sse", get(crate::sse::serve))
        .route("/v1/streams/{stream_id}/poll", get(crate::poll::serve))
        .with_state(state)
}

async fn upgrade(
    State(state): State<ViewerState>,
    Path(stream_id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(refused) = check_stream_id(&state.metrics, &stream_id) {
        return refused;
    }
    ws.max_message_size(state.config.max_inbound_bytes)
        .max_frame_size(state.config.max_inbound_bytes)
        .write_buffer_size(0)
        .on_upgrade(move |socket| watch(state, stream_id, socket))
}

#[tracing::instrument(name = "edge.viewer", skip_all, fields(stream_id = %stream_id))]
async fn watch(state: ViewerState, stream_id: String, mut socket: WebSocket) {
    let metrics = state.metrics.clone();
    let presence = Presence::enter(&state.rooms, &stream_id, &metrics, "websocket");
    let mut joined = state.rooms.join(&presence.room);
    let hello = hello(
        &stream_id,
        &state.edge_id,
        &joined.join,
        state.config.heartbeat_ms,
    );
    if send(&mut socket, &metrics, hello).await.is_err() {
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
