//! Viewers over WebSocket: `GET /v1/streams/{stream_id}/ws`. The server sends `hello` (with the join position),
//! then `events` and `likes` frames as they come, `gap` when the viewer fell behind, and `reconnect` when the
//! connection's lifetime ends or the edge drains. The same stream is served over Server-Sent Events
//! ([`crate::sse`]) and long-poll ([`crate::poll`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, Admitted};
use crate::config::EdgeConfig;
use crate::frames::ServerFrame;
use crate::metrics::EdgeMetrics;
use crate::rooms::Rooms;
use crate::watching::{admit, hello, reconnect, Presence};

#[derive(Debug, Clone)]
pub struct ViewerState {
    pub rooms: Arc<Rooms>,
    pub config: Arc<EdgeConfig>,
    pub edge_id: Arc<str>,
    pub metrics: EdgeMetrics,
    pub admission: Arc<Admission>,
    /// Every viewer connection holds a token of it, so a draining edge knows when all are gone.
    pub tracker: TaskTracker,
    /// Cancelled when the edge starts draining.
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
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let admitted = match admit(&state, &stream_id, client.ip(), &headers, uri.query()) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    // Viewers send only small control frames: a small read buffer keeps an idle connection cheap, and with
    // no write buffer each frame goes straight to the socket.
    ws.max_message_size(state.config.max_inbound_bytes)
        .max_frame_size(state.config.max_inbound_bytes)
        .read_buffer_size(state.config.max_inbound_bytes.clamp(512, 8192))
        .write_buffer_size(0)
        .on_upgrade(move |socket| watch(state, admitted, stream_id, socket))
}

/// Frames written between two flushes, at most.
const MAX_FRAMES_PER_FLUSH: usize = 16;

/// How a connection ended, when the server ended it.
enum Ending {
    Reconnect(&'static str),
    Silent,
    Gone,
}

#[tracing::instrument(name = "edge.viewer", skip_all, fields(stream_id = %stream_id))]
async fn watch(state: ViewerState, admitted: Admitted, stream_id: String, mut socket: WebSocket) {
    let metrics = state.metrics.clone();
    let presence = Presence::enter(&state, admitted, &stream_id, "websocket");
    let mut joined = state.rooms.join(&presence.room);
    let hello = hello(
        &stream_id,
        &state.edge_id,
        &joined.join,
        state.config.heartbeat_ms,
        joined.likes_total,
    );
    if send(&mut socket, &metrics, hello).await.is_err() {
        return;
    }
    metrics.joins.inc();
    let joined_at = Instant::now();
    let mut first_event_seen = false;
    let join = joined.join;
    let lifetime = tokio::time::sleep(state.config.connection_ttl());
    tokio::pin!(lifetime);
    // On drain, each viewer leaves at a random moment of the window: no reconnect storm.
    let drain = async {
        state.shutdown.cancelled().await;
        tokio::time::sleep(state.config.drain_delay()).await;
    };
    tokio::pin!(drain);
    let heartbeat = std::time::Duration::from_millis(state.config.heartbeat_ms.max(10));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last_heard = tokio::time::Instant::now();
    // Since the gap from which this viewer has not caught up, if any: a bounded lag, then it is let go.
    let mut behind_since: Option<Instant> = None;
    let slow_bound = std::time::Duration::from_millis(state.config.slow_viewer_ms);
    let behind_frames = state.config.stream_buffer_frames / 2;
    let write_timeout = std::time::Duration::from_millis(state.config.write_timeout_ms.max(1));
    let ending = loop {
        tokio::select! {
            () = &mut lifetime => break Ending::Reconnect("ttl"),
            () = &mut drain => break Ending::Reconnect("drain"),
            _ = ping.tick() => {
                if last_heard.elapsed() > heartbeat * 2 {
                    metrics.liveness_timeouts.inc();
                    break Ending::Silent;
                }
                match tokio::time::timeout(write_timeout, socket.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break Ending::Gone,
                    Err(_) => {
                        // Not even a ping fits: the viewer stopped reading.
                        metrics.slow_disconnects.inc();
                        break Ending::Gone;
                    }
                }
            }
            frame = joined.frames.recv() => match frame {
                Ok(frame) => {
                    // Everything already queued for this viewer goes out together, then one flush.
                    metrics.queue_depth.observe((joined.frames.len() + 1) as f64);
                    let mut queued = vec![frame];
                    while queued.len() < MAX_FRAMES_PER_FLUSH {
                        match joined.frames.try_recv() {
                            Ok(frame) => queued.push(frame),
                            Err(_) => break,
                        }
                    }
                    let delivered: u64 = queued.iter().map(|f| f.event_count(&join) as u64).sum();
                    let texts = queued.iter().flat_map(|f| f.for_viewer(&stream_id, &join));
                    match write_all(&mut socket, &metrics, texts, write_timeout).await {
                        Ok(()) => {}
                        Err(Stuck::Gone) => break Ending::Gone,
                        Err(Stuck::Stalled) => {
                            // It stopped reading: nothing more can reach it, not even a reconnect frame.
                            metrics.slow_disconnects.inc();
                            break Ending::Gone;
                        }
                    }
                    metrics.events_delivered.inc_by(delivered);
                    if delivered > 0 && !first_event_seen {
                        first_event_seen = true;
                        metrics.join_to_first_event.observe(joined_at.elapsed().as_secs_f64());
                    }
                    if joined.frames.len() <= behind_frames {
                        // Caught up: at most half the buffer still waiting.
                        behind_since = None;
                    }
                    if behind_since.is_some_and(|since| since.elapsed() >= slow_bound) {
                        metrics.slow_disconnects.inc();
                        break Ending::Reconnect("too_slow");
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    metrics.gaps.inc();
                    let since = *behind_since.get_or_insert_with(Instant::now);
                    let gap = ServerFrame::Gap { stream_id: &stream_id, missed_frames: missed, reason: "slow_viewer" };
                    match tokio::time::timeout(write_timeout, send(&mut socket, &metrics, gap.to_text())).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break Ending::Gone,
                        Err(_) => {
                            metrics.slow_disconnects.inc();
                            break Ending::Gone;
                        }
                    }
                    if since.elapsed() >= slow_bound {
                        metrics.slow_disconnects.inc();
                        break Ending::Reconnect("too_slow");
                    }
                }
                Err(RecvError::Closed) => break Ending::Gone,
            },
            inbound = socket.next() => match inbound {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break Ending::Gone,
                // Pongs, pings (answered by the WebSocket layer) and anything else: the viewer is alive.
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
            },
        }
    };
    match ending {
        Ending::Reconnect(reason) => {
            let goodbye = async {
                send(&mut socket, &metrics, reconnect(&state, &stream_id, reason)).await?;
                socket.send(Message::Close(None)).await
            };
            let _ = tokio::time::timeout(write_timeout, goodbye).await;
        }
        Ending::Silent => {
            let _ = tokio::time::timeout(write_timeout, socket.send(Message::Close(None))).await;
        }
        Ending::Gone => {}
    }
    drop(presence);
}

/// Why writing to a viewer stopped.
enum Stuck {
    /// The connection is gone.
    Gone,
    /// One frame could not be written within the write timeout: the viewer stopped reading.
    Stalled,
}

/// Writes every text, then flushes once. Each frame must go out within `timeout`: a viewer that reads, however
/// slowly, keeps up with that (and falls behind, to be told with `gap`); one that stopped reading does not.
async fn write_all(
    socket: &mut WebSocket,
    metrics: &EdgeMetrics,
    texts: impl Iterator<Item = Utf8Bytes>,
    timeout: std::time::Duration,
) -> Result<(), Stuck> {
    let step = |result: Result<Result<(), axum::Error>, _>| match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stuck::Gone),
        Err(_) => Err(Stuck::Stalled),
    };
    for text in texts {
        let len = text.len() as u64;
        step(tokio::time::timeout(timeout, socket.feed(Message::Text(text))).await)?;
        metrics.frames_sent.inc();
        metrics.bytes_sent.inc_by(len);
    }
    step(tokio::time::timeout(timeout, socket.flush()).await)
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
