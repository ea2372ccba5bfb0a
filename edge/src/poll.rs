//! Viewers over HTTP long-poll: `GET /v1/streams/{stream_id}/poll?cursor=&wait_ms=`, for clients that can
//! hold neither a WebSocket nor an event stream. The first poll (no cursor) answers `hello` and a cursor at the
//! join position; each following poll answers the frames after its cursor (from the edge's buffer, or the
//! next ones, waiting up to `wait_ms`) and the cursor to send next. Between polls the stream's room lingers;
//! a cursor this edge no longer holds the rest of is resumed as any viewer's (see [`crate::session`]): with
//! a `hello` saying whether it was. The stream's viewer count rides along with an answer (the latest one
//! since the poll began), never ending a poll by itself.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::Utf8Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::admission::{Refusal, Viewer};
use crate::attendance::Transport;
use crate::frames::StreamFrame;
use crate::occurrences::Occurrence;
use crate::session::{Arrival, Next, Session};
use crate::state::ViewerState;

/// Longest a poll waits for news.
const MAX_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_WAIT: Duration = Duration::from_secs(25);

#[derive(Debug, Deserialize)]
pub struct PollQuery {
    /// Read by the [`Viewer`] extractor; named here so that a malformed one is a bad query.
    #[allow(dead_code)]
    cursor: Option<String>,
    wait_ms: Option<u64>,
}

pub async fn serve(
    State(state): State<ViewerState>,
    query: Result<Query<PollQuery>, QueryRejection>,
    viewer: Viewer,
) -> Response {
    let Ok(Query(query)) = query else {
        return Refusal::BadQuery.respond(&state.metrics);
    };
    let cursor = viewer.cursor.clone();
    let first = cursor.is_none();
    let opened = Arrival::new(&state, viewer, Transport::LongPoll)
        .open(cursor.as_deref())
        .await;
    let mut session = opened.session;
    // A poll that continues where the last one left off on this edge is the same session: no new hello.
    let mut texts: Vec<Utf8Bytes> = if opened.continued {
        Vec::new()
    } else {
        session.greeted();
        opened.opening
    };
    for frame in &opened.missed {
        take(&mut session, frame, &mut texts);
    }
    if first {
        return answer(&session.cursor(), &texts);
    }
    let wait = query
        .wait_ms
        .map_or(DEFAULT_WAIT, Duration::from_millis)
        .min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut draining = false;
    // The latest viewer count rides along with the answer; it does not end a poll by itself.
    let mut status: Option<Utf8Bytes> = None;
    while texts.is_empty() {
        let next = tokio::select! {
            () = state.shutdown.cancelled() => {
                // The edge drains: this client is asked to come back (elsewhere) with its cursor.
                texts.push(session.reconnect("drain"));
                draining = true;
                break;
            }
            next = tokio::time::timeout_at(deadline, session.next()) => next,
        };
        match next {
            Err(_) | Ok(Next::Closed) => break,
            Ok(Next::Frame(frame)) if frame.status => status = frame.comments.clone(),
            Ok(Next::Frame(frame)) => take(&mut session, &frame, &mut texts),
            Ok(Next::Gap(gap)) => texts.push(gap),
        }
    }
    texts.extend(status);
    for text in &texts {
        Occurrence::FrameSent { bytes: text.len() }.emit(&state.metrics);
    }
    let cursor = session.cursor();
    drop(session);
    let mut response = answer(&cursor, &texts);
    if draining {
        // Not on this connection either: the next poll goes to an edge that stays.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

fn take(session: &mut Session, frame: &StreamFrame, texts: &mut Vec<Utf8Bytes>) {
    let taken = session.take(frame);
    session.delivered(taken.events);
    texts.extend(taken.texts);
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
