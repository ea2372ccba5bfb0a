//! Viewers over HTTP long-poll: `GET /v1/streams/{stream_id}/poll?cursor=&wait_ms=`, for clients that can
//! hold neither a WebSocket nor an event stream. The first poll (no cursor) answers `hello` and a cursor at the
//! join position; each following poll answers the frames after its cursor (from the edge's buffer, or the
//! next ones, waiting up to `wait_ms`) and the cursor to send next. Between polls the stream's room lingers,
//! so a client polling back at once misses nothing; one that comes back too late gets a `gap` frame.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::cursor;
use crate::frames::ServerFrame;
use crate::viewer::ViewerState;
use crate::watching::{admit, bad_request, hello, Presence};

/// Longest a poll waits for news.
const MAX_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_WAIT: Duration = Duration::from_secs(25);

#[derive(Debug, Deserialize)]
pub struct PollQuery {
    cursor: Option<String>,
    wait_ms: Option<u64>,
}

pub async fn serve(
    State(state): State<ViewerState>,
    Path(stream_id): Path<String>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(query): Query<PollQuery>,
) -> Response {
    let admitted = match admit(&state, &stream_id, client.ip(), &headers, uri.query()) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let metrics = state.metrics.clone();
    let presence = Presence::enter(&state, admitted, &stream_id, "long_poll");
    let Some(text) = query.cursor else {
        let joined = state.rooms.join(&presence.room);
        metrics.joins.inc();
        let hello = hello(
            &stream_id,
            &state.edge_id,
            &joined.join,
            state.config.heartbeat_ms,
            joined.likes_total,
        );
        return answer(&cursor::encode(&joined.join), &[hello]);
    };
    let Some(mut at) = cursor::decode(&text) else {
        return bad_request(
            &metrics,
            "bad_cursor",
            "`cursor` is not a cursor this edge gave out",
        );
    };
    let mut resumed = state.rooms.resume(&presence.room, &at);
    let mut texts: Vec<Utf8Bytes> = Vec::new();
    if resumed.gap {
        metrics.gaps.inc();
        let gap = ServerFrame::Gap {
            stream_id: &stream_id,
            missed_frames: 0,
            reason: "polled_after_buffer",
        };
        texts.push(gap.to_text());
    }
    let mut take = |frame: &crate::frames::StreamFrame, texts: &mut Vec<Utf8Bytes>| {
        metrics
            .events_delivered
            .inc_by(frame.event_count(&at) as u64);
        texts.extend(frame.for_viewer(&stream_id, &at));
        cursor::advance(&mut at, frame);
    };
    for frame in &resumed.frames {
        take(frame, &mut texts);
    }
    let wait = query
        .wait_ms
        .map_or(DEFAULT_WAIT, Duration::from_millis)
        .min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    while texts.is_empty() {
        let next = tokio::select! {
            () = state.shutdown.cancelled() => break,
            next = tokio::time::timeout_at(deadline, resumed.next.recv()) => next,
        };
        match next {
            Err(_elapsed) => break,
            Ok(Ok(frame)) => take(&frame, &mut texts),
            Ok(Err(RecvError::Lagged(missed))) => {
                metrics.gaps.inc();
                let gap = ServerFrame::Gap {
                    stream_id: &stream_id,
                    missed_frames: missed,
                    reason: "slow_viewer",
                };
                texts.push(gap.to_text());
            }
            Ok(Err(RecvError::Closed)) => break,
        }
    }
    for text in &texts {
        metrics.frames_sent.inc();
        metrics.bytes_sent.inc_by(text.len() as u64);
    }
    drop(presence);
    answer(&cursor::encode(&at), &texts)
}

/// `{"cursor": "...", "frames": [...]}`, the frames spliced in as they were encoded once for every client.
fn answer(cursor: &str, frames: &[Utf8Bytes]) -> Response {
    let frames: Vec<&str> = frames.iter().map(|f| f.as_str()).collect();
    let cursor = serde_json::to_string(cursor).unwrap_or_else(|_| "\"\"".to_owned());
    let body = format!("{{\"cursor\":{cursor},\"frames\":[{}]}}", frames.join(","));
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
