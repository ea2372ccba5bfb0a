//! The internal endpoint on which fanout instances push batches to this edge: one WebSocket per fanout
//! instance, binary messages each carrying a [`PushBatch`], applied in the order they arrive.
//!
//! Only fanout may push: the upgrade must carry the internal token (`Authorization: Bearer <token>`,
//! `--internal-token`), checked before anything else; without it, or with another, the answer is 401 and
//! nothing is upgraded. A session must open with `Hello`. Positions it announces are believed only as far as
//! the `positions` module's rule allows, under the session's id. The edge writes its requests (a resume's
//! replay, see [`crate::replay`]) on the same socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chorus_schemas::wire::{PushBatch, PushFrame};
use chorus_service::credential::Secret;
use futures_util::{SinkExt, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::broadcast::Broadcast;
use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;
use crate::positions::SessionId;
use crate::replay::Replays;
use crate::rooms::Rooms;

pub const PUSH_PATH: &str = "/internal/v1/push";

/// Largest batch a fanout instance may send.
const MAX_BATCH_BYTES: usize = 16 << 20;

#[derive(Debug, Clone)]
struct PushState {
    rooms: Arc<Rooms>,
    broadcast: Arc<Broadcast>,
    replays: Arc<Replays>,
    metrics: EdgeMetrics,
    token: Arc<Secret>,
    next_session: Arc<AtomicU64>,
    shutdown: CancellationToken,
}

/// The internal port's routes: pushes go to `broadcast` (and its rooms) from fanouts presenting `token`;
/// `replays` writes its requests on their links.
pub fn router(
    broadcast: Arc<Broadcast>,
    replays: Arc<Replays>,
    token: Secret,
    shutdown: CancellationToken,
) -> Router {
    Router::new()
        .route(PUSH_PATH, get(upgrade))
        .fallback(chorus_service::problem::not_found)
        .method_not_allowed_fallback(chorus_service::problem::method_not_allowed)
        .with_state(PushState {
            rooms: broadcast.rooms().clone(),
            metrics: broadcast.metrics().clone(),
            broadcast,
            replays,
            token: Arc::new(token),
            next_session: Arc::new(AtomicU64::new(1)),
            shutdown,
        })
}

/// The credential first: a request without the internal token is refused whatever else it is.
async fn upgrade(
    State(state): State<PushState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(refusal) = state.token.check(&headers) {
        Occurrence::PushRefused {
            reason: refusal.reason(),
        }
        .emit(&state.metrics);
        return refusal.problem().into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let session = state.next_session.fetch_add(1, Ordering::Relaxed);
    ws.max_message_size(MAX_BATCH_BYTES)
        .on_upgrade(move |socket| serve(state, session, socket))
}

#[tracing::instrument(name = "edge.push_session", skip_all, fields(session = session))]
async fn serve(state: PushState, session: SessionId, socket: WebSocket) {
    let (mut sink, mut socket) = socket.split();
    let mut requests = state.replays.attach(session);
    let mut opened = false;
    loop {
        let message = tokio::select! {
            () = state.shutdown.cancelled() => break,
            Some(request) = requests.recv() => {
                if let Err(error) = sink.send(Message::Binary(request.into())).await {
                    tracing::info!(%error, "push session ended");
                    break;
                }
                continue;
            }
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
        let Ok(batch) = PushBatch::decode(&bytes) else {
            Occurrence::PushRefused {
                reason: "malformed_batch",
            }
            .emit(&state.metrics);
            break;
        };
        Occurrence::BatchReceived.emit(&state.metrics);
        if !state.apply_all(session, batch.frames, &mut opened) {
            break;
        }
    }
    state.replays.detach(session);
    state.rooms.session_ended(session);
    if opened {
        Occurrence::FanoutDisconnected.emit(&state.metrics);
    }
}

impl PushState {
    /// Applies a batch's frames in order; false when the session must end (it did not open with `Hello`).
    fn apply_all(&self, session: SessionId, frames: Vec<PushFrame>, opened: &mut bool) -> bool {
        for frame in frames {
            let hello = matches!(frame, PushFrame::Hello { .. });
            if !*opened && !hello {
                Occurrence::PushRefused { reason: "no_hello" }.emit(&self.metrics);
                return false;
            }
            // A session says hello once (it is counted once).
            if !(*opened && hello) {
                *opened |= self.apply(session, frame);
            }
        }
        true
    }

    /// Applies one frame of a batch; true for the session's hello.
    fn apply(&self, session: SessionId, frame: PushFrame) -> bool {
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
            PushFrame::Subscribed { positions, .. } => {
                self.rooms.announce(session, positions, false)
            }
            PushFrame::Positions(positions) => self.rooms.announce(session, positions, true),
            PushFrame::Events(events) => self.broadcast.deliver(session, events),
            PushFrame::Sampled {
                stream_id,
                left_out,
            } => self.broadcast.sampled(&stream_id, left_out),
            PushFrame::Likes {
                stream_id,
                delta,
                total,
            } => self.broadcast.likes(&stream_id, delta, total),
            PushFrame::Viewers { stream_id, count } => self.broadcast.viewers(&stream_id, count),
            PushFrame::Replayed {
                request,
                events,
                short,
                ahead,
            } => {
                let events = self.rooms.admit(session, events);
                self.replays
                    .answered(session, request, events, &short, &ahead);
            }
        }
        false
    }
}
