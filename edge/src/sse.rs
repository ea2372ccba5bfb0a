//! Viewers over Server-Sent Events: `GET /v1/streams/{stream_id}/sse`, for browsers and networks where
//! WebSocket does not work. Same frames as the WebSocket, one per `data:` line; every frame's `id:` is the
//! client's cursor after it, so a browser that reconnects (sending `Last-Event-ID`, or `?cursor=`) resumes
//! where it left off, as any viewer with a cursor does (see [`crate::session`]).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::admission::Viewer;
use crate::attendance::Transport;
use crate::frames::StreamFrame;
use crate::occurrences::Occurrence;
use crate::session::{Arrival, Next, Session};
use crate::state::ViewerState;

/// What an SSE response owns while it streams.
#[derive(Debug)]
struct Streaming {
    session: Session,
    shutdown: CancellationToken,
    /// Frames to send before waiting for new ones (hello, or what a reconnecting client missed).
    pending: Vec<Event>,
    /// When the connection's lifetime ends (or, once the edge drains, this client's moment to leave).
    ends_at: tokio::time::Instant,
    draining: bool,
    /// Set once the `reconnect` frame is queued: the stream ends after it.
    ending: bool,
}

pub async fn serve(State(state): State<ViewerState>, viewer: Viewer) -> Response {
    let cursor = viewer.cursor.clone();
    let arrival = Arrival::new(&state, viewer, Transport::Sse);
    let opened = arrival.open(cursor.as_deref()).await;
    opened.session.greeted();
    let retry = Duration::from_millis(state.config.heartbeat_ms.min(5_000));
    let mut streaming = Streaming::new(opened.session);
    for (n, text) in opened.opening.iter().enumerate() {
        streaming.push(text);
        if n == 0 {
            if let Some(hello) = streaming.pending.pop() {
                streaming.pending.push(hello.retry(retry));
            }
        }
    }
    for frame in opened.missed {
        streaming.take(&frame);
    }
    let heartbeat = Duration::from_millis(state.config.heartbeat_ms.max(1_000));
    Sse::new(frames(streaming))
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .into_response()
}

fn event(text: &Utf8Bytes, cursor: &str) -> Event {
    Event::default().data(text.as_str()).id(cursor)
}

impl Streaming {
    fn new(session: Session) -> Self {
        let state = session.state();
        Streaming {
            shutdown: state.shutdown.clone(),
            ends_at: tokio::time::Instant::now() + state.config.connection_ttl(),
            session,
            pending: Vec::new(),
            draining: false,
            ending: false,
        }
    }

    /// Queues a frame of the edge's own (not counted as sent), with the cursor as it stands.
    fn push(&mut self, text: &Utf8Bytes) {
        let event = event(text, &self.session.cursor());
        self.pending.push(event);
    }

    /// Queues what `frame` holds for this client, each with its cursor after the frame.
    fn take(&mut self, frame: &StreamFrame) {
        let taken = self.session.take(frame);
        for text in taken.texts {
            Occurrence::FrameSent { bytes: text.len() }.emit(&self.session.state().metrics);
            self.push(&text);
        }
        self.session.delivered(taken.events);
    }

    /// Waits for what comes next: a frame, a gap, or the end of the connection's lifetime.
    async fn wait(&mut self) -> Option<()> {
        tokio::select! {
            () = self.shutdown.cancelled(), if !self.draining => {
                // Leave at a random moment of the drain window, or at the end of the lifetime if sooner.
                self.draining = true;
                let delay = self.session.state().config.drain_delay();
                self.ends_at = self.ends_at.min(tokio::time::Instant::now() + delay);
            }
            () = tokio::time::sleep_until(self.ends_at) => {
                let reason = if self.draining { "drain" } else { "ttl" };
                let reconnect = self.session.reconnect(reason);
                self.push(&reconnect);
                self.ending = true;
            }
            next = self.session.next() => match next {
                Next::Frame(frame) => self.take(&frame),
                Next::Gap(gap) => self.push(&gap),
                Next::Closed => return None,
            },
        }
        Some(())
    }
}

fn frames(streaming: Streaming) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(streaming, |mut s| async move {
        if s.ending && s.pending.is_empty() {
            return None;
        }
        while s.pending.is_empty() {
            s.wait().await?;
        }
        let batch = std::mem::take(&mut s.pending);
        Some((stream::iter(batch.into_iter().map(Ok)), s))
    })
    .flatten()
}
