//! One viewer's session, whichever transport carries it: the WebSocket, SSE and long-poll endpoints drive
//! it and write what it gives them. Its opening (presence in the stream's room, then either a join
//! with `hello`, or a resume from a cursor with what the client missed and a `gap` if the buffer no longer
//! reaches back), the frames that follow as this viewer must see them (a `gap` when it fell behind), and the
//! `reconnect` frame that ends it.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use crate::admission::Viewer;
use crate::attendance::{Presence, Transport};
use crate::cursor;
use crate::frames::{JoinPosition, ServerFrame, StreamFrame};
use crate::occurrences::Occurrence;
use crate::state::ViewerState;

/// A viewer in its stream's room, not yet subscribed to its frames.
#[derive(Debug)]
pub struct Arrival {
    state: ViewerState,
    stream_id: String,
    transport: Transport,
    presence: Presence,
}

/// What a client coming back with a cursor missed.
#[derive(Debug)]
pub struct Missed {
    /// A `gap` frame, when the edge's buffer no longer reaches back to the cursor.
    pub gap: Option<Utf8Bytes>,
    /// Buffered frames with events after the cursor, oldest first.
    pub frames: Vec<Arc<StreamFrame>>,
}

impl Arrival {
    pub fn new(state: &ViewerState, viewer: Viewer, transport: Transport) -> Self {
        let presence = state
            .attendance
            .enter(viewer.admitted, &viewer.stream_id, transport);
        Arrival {
            state: state.clone(),
            stream_id: viewer.stream_id,
            transport,
            presence,
        }
    }

    /// Joins at the stream's current position: the session and its `hello`, to be counted with
    /// [`Session::greeted`] once it is on its way.
    pub fn join(self) -> (Session, Utf8Bytes) {
        let joined = self.presence.join();
        let hello = ServerFrame::Hello {
            stream_id: &self.stream_id,
            edge_id: &self.state.edge_id,
            join: &joined.join,
            heartbeat_ms: self.state.config.heartbeat_ms,
            likes_total: joined.likes_total,
        }
        .to_text();
        (self.into_session(joined.frames, joined.join), hello)
    }

    /// Resumes at `cursor` (where the client's last response left it); a `gap` frame, if there is one, says
    /// `gap_reason`.
    pub fn resume(self, cursor: Vec<JoinPosition>, gap_reason: &'static str) -> (Session, Missed) {
        let resumed = self.presence.resume(&cursor);
        let session = self.into_session(resumed.next, cursor);
        let gap = resumed.gap.then(|| session.gap(0, gap_reason));
        let missed = Missed {
            gap,
            frames: resumed.frames,
        };
        (session, missed)
    }

    fn into_session(
        self,
        frames: Receiver<Arc<StreamFrame>>,
        position: Vec<JoinPosition>,
    ) -> Session {
        Session {
            state: self.state,
            stream_id: self.stream_id,
            transport: self.transport,
            frames,
            position,
            _presence: self.presence,
        }
    }
}

/// A viewer subscribed to its stream's frames; it leaves the room when dropped.
#[derive(Debug)]
pub struct Session {
    state: ViewerState,
    stream_id: String,
    transport: Transport,
    frames: Receiver<Arc<StreamFrame>>,
    /// Where the viewer joined (WebSocket: each frame is filtered against it), or the cursor of an SSE or
    /// long-poll client, moved past each frame it takes.
    position: Vec<JoinPosition>,
    _presence: Presence,
}

/// What one frame holds for this viewer.
#[derive(Debug)]
pub struct Taken {
    pub texts: Vec<Utf8Bytes>,
    /// Events among them.
    pub events: u64,
}

/// What comes next from the stream.
#[derive(Debug)]
pub enum Next {
    Frame(Arc<StreamFrame>),
    /// The viewer fell behind the stream's buffer: a `gap` frame (counted) to send it.
    Gap(Utf8Bytes),
    /// The room is gone.
    Closed,
}

impl Session {
    pub fn state(&self) -> &ViewerState {
        &self.state
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub fn position(&self) -> &[JoinPosition] {
        &self.position
    }

    /// The position as a cursor for the client to come back with.
    pub fn cursor(&self) -> String {
        cursor::encode(&self.position)
    }

    /// The `hello` is on its way.
    pub fn greeted(&self) {
        Occurrence::Joined {
            transport: self.transport.label(),
        }
        .emit(&self.state.metrics);
    }

    /// The next frame of the stream (cancel safe: nothing is lost when it is dropped before it is ready).
    pub async fn next(&mut self) -> Next {
        match self.frames.recv().await {
            Ok(frame) => Next::Frame(frame),
            Err(RecvError::Lagged(missed)) => Next::Gap(self.gap(missed, "slow_viewer")),
            Err(RecvError::Closed) => Next::Closed,
        }
    }

    /// A frame already waiting, if any. A lag met here only ends the caller's batch: the receiver moves on to
    /// the oldest frame still buffered, with no `gap` frame (as the WebSocket writer has always done).
    pub fn try_next(&mut self) -> Option<Arc<StreamFrame>> {
        self.frames.try_recv().ok()
    }

    /// Frames waiting for this viewer in the stream's buffer.
    pub fn backlog(&self) -> usize {
        self.frames.len()
    }

    /// What `frame` holds for this viewer; a cursor moves past it.
    pub fn take(&mut self, frame: &StreamFrame) -> Taken {
        let taken = Taken {
            texts: frame.for_viewer(&self.stream_id, &self.position),
            events: frame.event_count(&self.position) as u64,
        };
        if self.transport != Transport::WebSocket {
            cursor::advance(&mut self.position, frame);
        }
        taken
    }

    /// `events` reached the viewer (or its transport's buffer).
    pub fn delivered(&self, events: u64) {
        Occurrence::Delivered { events }.emit(&self.state.metrics);
    }

    /// The frame that ends the session, asking the client to come back after a random delay.
    pub fn reconnect(&self, reason: &'static str) -> Utf8Bytes {
        Occurrence::Reconnect { reason }.emit(&self.state.metrics);
        ServerFrame::Reconnect {
            stream_id: &self.stream_id,
            reason,
            delay_ms: self.state.config.reconnect_delay(),
        }
        .to_text()
    }

    fn gap(&self, missed_frames: u64, reason: &'static str) -> Utf8Bytes {
        Occurrence::Gap {
            missed: missed_frames,
            reason,
        }
        .emit(&self.state.metrics);
        ServerFrame::Gap {
            stream_id: &self.stream_id,
            missed_frames,
            reason,
        }
        .to_text()
    }
}
