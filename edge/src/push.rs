//! The internal endpoint on which fanout instances push batches to this edge: one WebSocket per fanout
//! instance, binary messages each carrying a [`PushBatch`], applied in the order they arrive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chorus_schemas::wire::{PushBatch, PushFrame};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::broadcast::Broadcast;
use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;
use crate::rooms::Rooms;

pub const PUSH_PATH: &str = "/internal/v1/push";

/// Largest batch a fanout instance may send.
const MAX_BATCH_BYTES: usize = 16 << 20;

/// A session id: one per fanout connection.
type SessionId = u64;

#[derive(Debug, Clone)]
struct PushState {
    rooms: Arc<Rooms>,
    broadcast: Arc<Broadcast>,
    metrics: EdgeMetrics,
    next_session: Arc<AtomicU64>,
    shutdown: CancellationToken,
}

pub fn router(
    rooms: Arc<Rooms>,
    broadcast: Arc<Broadcast>,
    metrics: EdgeMetrics,
    shutdown: CancellationToken,
) -> Router {
    Router::new()
        .route(PUSH_PATH, get(upgrade))
        .with_state(PushState {
            rooms,
            broadcast,
            metrics,
            next_session: Arc::new(AtomicU64::new(1)),
            shutdown,
        })
}

async fn upgrade(State(state): State<PushState>, ws: WebSocketUpgrade) -> Response {
    let session = state.next_session.fetch_add(1, Ordering::Relaxed);
    ws.max_message_size(MAX_BATCH_BYTES)
        .on_upgrade(move |socket| serve(state, session, socket))
}

#[tracing::instrument(name = "edge.push_session", skip_all, fields(session = session))]
async fn serve(state: PushState, session: SessionId, mut socket: WebSocket) {
    let mut opened = false;
    loop {
        let message = tokio::select! {
            () = state.shutdown.cancelled() => break,
            message = socket.next() => message,
        };
        let bytes = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                tracing::info!(%error, "push session ended");
                break;
            }
        };
        let batch = match PushBatch::decode(&bytes) {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "dropping a push session that sent a malformed batch");
                break;
            }
        };
        Occurrence::BatchReceived.emit(&state.metrics);
        for frame in batch.frames {
            opened |= state.apply(frame);
        }
    }
    if opened {
        Occurrence::FanoutDisconnected.emit(&state.metrics);
    }
}

impl PushState {
    /// Applies one frame of a batch; true for the session's hello.
    fn apply(&self, frame: PushFrame) -> bool {
        match frame {
            PushFrame::Hello {
                fanout_id,
                partitions,
            } => {
                Occurrence::FanoutConnected {
                    fanout_id: &fanout_id,
                    partitions,
                }
                .emit(&self.metrics);
                self.rooms.set_partitions(partitions);
                return true;
            }
            PushFrame::Subscribed { positions, .. } => self.rooms.advance(positions),
            PushFrame::Positions(positions) => self.rooms.advance(positions),
            PushFrame::Events(events) => self.broadcast.deliver(events),
            PushFrame::Sampled {
                stream_id,
                left_out,
            } => self.broadcast.sampled(&stream_id, left_out),
            PushFrame::Likes {
                stream_id,
                delta,
                total,
            } => self.broadcast.likes(&stream_id, delta, total),
        }
        false
    }
}
