//! Viewers over HTTP long-poll: `GET /v1/streams/{stream_id}/poll?cursor=&wait_ms=`, for clients that can
//! hold neither a WebSocket nor an event stream. The first poll (no cursor) answers `hello` and a cursor at the
//! join position; each following poll answers the frames after its cursor (from the edge's buffer, or the
//! next ones, waiting up to `wait_ms`) and the cursor to send next. Between polls the stream's room lingers,
//! so a client polling back at once misses nothing; one that comes back too late gets a `gap` frame.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::Utf8Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::admission::{Refusal, Viewer};
use crate::attendance::Transport;
use crate::cursor;
use crate::frames::StreamFrame;
use crate::occurrences::Occurrence;
use crate::session::{Arrival, Next, Session};
use crate::state::ViewerState;

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
    query: Result<Query<PollQuery>, QueryRejection>,
    viewer: Viewer,
) -> Response {
    let Ok(Query(query)) = query else {
        return Refusal::BadQuery.respond(&state.metrics);
    };
    let Some(text) = query.cursor else {
        let (session, hello) = Arrival::new(&state, viewer, Transport::LongPoll).join();
        session.greeted();
        return answer(&session.cursor(), &[hello]);
    };
    // Checked before the viewer enters the room: a made-up cursor does not subscribe the edge to a stream.
    let at = cursor::decode(&text).filter(|at| state.attendance.carries(&viewer.stream_id, at));
    let Some(at) = at else {
        return Refusal::BadCursor("`cursor` is not a cursor this edge gave out")
            .respond(&state.metrics);
    };
    let arrival = Arrival::new(&state, viewer, Transport::LongPoll);
    let (mut session, missed) = arrival.resume(at, "polled_after_buffer");
    let mut texts: Vec<Utf8Bytes> = missed.gap.into_iter().collect();
    for frame in &missed.frames {
        take(&mut session, frame, &mut texts);
    }
    let wait = query
        .wait_ms
        .map_or(DEFAULT_WAIT, Duration::from_millis)
        .min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    while texts.is_empty() {
        let next = tokio::select! {
            () = state.shutdown.cancelled() => break,
            next = tokio::time::timeout_at(deadline, session.next()) => next,
        };
        match next {
            Err(_) | Ok(Next::Closed) => break,
            Ok(Next::Frame(frame)) => take(&mut session, &frame, &mut texts),
            Ok(Next::Gap(gap)) => texts.push(gap),
        }
    }
    for text in &texts {
        Occurrence::FrameSent { bytes: text.len() }.emit(&state.metrics);
    }
    let cursor = session.cursor();
    drop(session);
    answer(&cursor, &texts)
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
