//! Viewers over Server-Sent Events: `GET /v1/streams/{stream_id}/sse`, for browsers and networks where
//! WebSocket does not work. Same frames as the WebSocket, one per `data:` line; every frame's `id:` is the
//! client's cursor after it, so a browser that reconnects (sending `Last-Event-ID`) gets what it missed from
//! the edge's buffer, and a `gap` frame when the buffer no longer reaches back that far.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use crate::cursor;
use crate::frames::{JoinPosition, ServerFrame, StreamFrame};
use crate::viewer::ViewerState;
use crate::watching::{admit, bad_request, hello, reconnect, Presence};

/// What an SSE response owns while it streams.
struct Streaming {
    state: ViewerState,
    stream_id: String,
    _presence: Presence,
    cursor: Vec<JoinPosition>,
    next: Receiver<Arc<StreamFrame>>,
    /// Frames to send before waiting for new ones (hello, or what a reconnecting client missed).
    pending: Vec<Event>,
    /// When the connection's lifetime ends (or, once the edge drains, this client's moment to leave).
    ends_at: tokio::time::Instant,
    draining: bool,
    /// Set once the `reconnect` frame is queued: the stream ends after it.
    ending: bool,
}

pub async fn serve(
    State(state): State<ViewerState>,
    Path(stream_id): Path<String>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let admitted = match admit(&state, &stream_id, client.ip(), &headers, uri.query()) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let resume_at = match last_event_id.map(cursor::decode) {
        Some(None) => {
            return bad_request(
                &state.metrics,
                "bad_cursor",
                "Last-Event-ID is not a cursor of this stream",
            )
        }
        Some(Some(at)) => Some(at),
        None => None,
    };
    let presence = Presence::enter(&state, admitted, &stream_id, "sse");
    let ends_at = tokio::time::Instant::now() + state.config.connection_ttl();
    let retry = Duration::from_millis(state.config.heartbeat_ms.min(5_000));
    let streaming = match resume_at {
        Some(at) => {
            let resumed = state.rooms.resume(&presence.room, &at);
            let mut streaming = Streaming {
                stream_id: stream_id.clone(),
                cursor: at,
                next: resumed.next,
                pending: Vec::new(),
                _presence: presence,
                state: state.clone(),
                ends_at,
                draining: false,
                ending: false,
            };
            if resumed.gap {
                state.metrics.gaps.inc();
                let gap = ServerFrame::Gap {
                    stream_id: &stream_id,
                    missed_frames: 0,
                    reason: "resumed_after_buffer",
                };
                streaming
                    .pending
                    .push(event(&gap.to_text(), &streaming.cursor));
            }
            for frame in resumed.frames {
                streaming.take(&frame);
            }
            streaming
        }
        None => {
            let joined = state.rooms.join(&presence.room);
            let text = hello(
                &stream_id,
                &state.edge_id,
                &joined.join,
                state.config.heartbeat_ms,
                joined.likes_total,
            );
            state.metrics.joins.inc();
            Streaming {
                pending: vec![event(&text, &joined.join).retry(retry)],
                stream_id,
                cursor: joined.join,
                next: joined.frames,
                _presence: presence,
                state,
                ends_at,
                draining: false,
                ending: false,
            }
        }
    };
    let heartbeat = Duration::from_millis(streaming.state.config.heartbeat_ms.max(1_000));
    Sse::new(frames(streaming))
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .into_response()
}

fn event(text: &Utf8Bytes, cursor: &[JoinPosition]) -> Event {
    Event::default()
        .data(text.as_str())
        .id(cursor::encode(cursor))
}

impl Streaming {
    /// Queues what `frame` holds for this client and moves its cursor past it.
    fn take(&mut self, frame: &StreamFrame) {
        let texts = frame.for_viewer(&self.stream_id, &self.cursor);
        let delivered = frame.event_count(&self.cursor) as u64;
        cursor::advance(&mut self.cursor, frame);
        for text in texts {
            self.state.metrics.frames_sent.inc();
            self.state.metrics.bytes_sent.inc_by(text.len() as u64);
            self.pending.push(event(&text, &self.cursor));
        }
        self.state.metrics.events_delivered.inc_by(delivered);
    }
}

fn frames(streaming: Streaming) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(streaming, |mut s| async move {
        if s.ending && s.pending.is_empty() {
            return None;
        }
        while s.pending.is_empty() {
            let frame = tokio::select! {
                () = s.state.shutdown.cancelled(), if !s.draining => {
                    // Leave at a random moment of the drain window, or at the end of the lifetime if sooner.
                    s.draining = true;
                    s.ends_at = s.ends_at.min(tokio::time::Instant::now() + s.state.config.drain_delay());
                    continue;
                }
                () = tokio::time::sleep_until(s.ends_at) => {
                    let reason = if s.draining { "drain" } else { "ttl" };
                    let text = reconnect(&s.state, &s.stream_id, reason);
                    s.pending.push(event(&text, &s.cursor));
                    s.ending = true;
                    break;
                }
                frame = s.next.recv() => frame,
            };
            match frame {
                Ok(frame) => s.take(&frame),
                Err(RecvError::Lagged(missed)) => {
                    s.state.metrics.gaps.inc();
                    let gap = ServerFrame::Gap {
                        stream_id: &s.stream_id,
                        missed_frames: missed,
                        reason: "slow_viewer",
                    };
                    let gap = event(&gap.to_text(), &s.cursor);
                    s.pending.push(gap);
                }
                Err(RecvError::Closed) => return None,
            }
        }
        let batch = std::mem::take(&mut s.pending);
        Some((stream::iter(batch.into_iter().map(Ok)), s))
    })
    .flatten()
}
