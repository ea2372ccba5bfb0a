//! One viewer's session, whichever transport carries it: the WebSocket, SSE and long-poll endpoints drive
//! it and write what it gives them. Its opening (presence in the stream's room, then a live-only join, or a
//! resume from the viewer's cursor: every event after it from the room's buffer or fanout's, and when that
//! cannot be, a live-only join told so with a `not_resumed` gap), the frames that follow as this viewer must
//! see them (a `gap` when it fell behind), and the `reconnect` frame that ends it. What the viewer has been
//! sent is its cursor, moved past every frame it takes.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use chorus_schemas::wire::PushedEvent;
use chorus_schemas::{PartitionPosition, TopicPartition};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use crate::admission::Viewer;
use crate::attendance::{Presence, Transport};
use crate::cursor::{self, Cursor, Outcome};
use crate::frames::{JoinPosition, ServerFrame, StreamFrame};
use crate::occurrences::Occurrence;
use crate::positions::SessionId;
use crate::room::Held;
use crate::state::ViewerState;
use crate::takedowns;

/// A viewer in its stream's room, not yet subscribed to its frames.
#[derive(Debug)]
pub struct Arrival {
    state: ViewerState,
    stream_id: String,
    transport: Transport,
    presence: Presence,
}

/// A session as it opens: the edge's own frames to send first (`hello`, and a `gap` when a cursor could not
/// be resumed), then what the viewer missed, to pass through [`Session::take`].
#[derive(Debug)]
pub struct Opened {
    pub session: Session,
    pub opening: Vec<Utf8Bytes>,
    pub missed: Vec<Arc<StreamFrame>>,
    /// Resumed from this edge's own buffer (a long-poll client polling again, or a viewer back to the same
    /// edge): for long-poll, no new `hello`.
    pub continued: bool,
}

/// A resume that can be made: the subscription, where the viewer stands, what it missed.
struct Resume {
    frames: Receiver<Arc<StreamFrame>>,
    cursor: Vec<JoinPosition>,
    missed: Vec<Arc<StreamFrame>>,
    likes_total: u64,
    viewers: u64,
    continued: bool,
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

    /// Opens the session: a live-only join without a cursor; with one, a resume if everything after it is
    /// still held, else a live-only join and a `not_resumed` gap. Count it with [`Session::greeted`] once
    /// its opening is on its way.
    pub async fn open(self, cursor: Option<&str>) -> Opened {
        let Some(text) = cursor else {
            return self.join(None);
        };
        let started = Instant::now();
        match self.resume(text).await {
            Ok(resume) => {
                // A long-poll client polling on where its last poll left it is no comeback.
                if !(resume.continued && self.transport == Transport::LongPoll) {
                    Occurrence::Resume {
                        outcome: Outcome::Resumed,
                        replayed: resume.missed.iter().map(|f| f.events.len()).sum(),
                        after: started.elapsed(),
                    }
                    .emit(&self.state.metrics);
                }
                let hello = self.hello(&resume.cursor, (resume.likes_total, resume.viewers), true);
                let (missed, continued) = (resume.missed, resume.continued);
                let session = self.into_session(resume.frames, resume.cursor);
                Opened {
                    session,
                    opening: vec![hello],
                    missed,
                    continued,
                }
            }
            Err(outcome) => {
                Occurrence::Resume {
                    outcome,
                    replayed: 0,
                    after: started.elapsed(),
                }
                .emit(&self.state.metrics);
                self.join(Some(outcome))
            }
        }
    }

    /// A live-only join at the stream's current position; after a failed resume, with its `gap`.
    fn join(self, not_resumed: Option<Outcome>) -> Opened {
        let joined = self.presence.join();
        let hello = self.hello(&joined.join, (joined.likes_total, joined.viewers), false);
        let session = self.into_session(joined.frames, joined.join);
        let mut opening = vec![hello];
        opening.extend(not_resumed.map(|_| session.gap(0, "not_resumed")));
        Opened {
            session,
            opening,
            missed: Vec::new(),
            continued: false,
        }
    }

    /// `counts`: the stream's likes so far and its viewers everywhere.
    fn hello(&self, at: &[JoinPosition], counts: (u64, u64), resumed: bool) -> Utf8Bytes {
        let (likes_total, viewers) = counts;
        ServerFrame::Hello {
            stream_id: &self.stream_id,
            edge_id: &self.state.edge_id,
            join: at,
            heartbeat_ms: self.state.config.heartbeat_ms,
            likes_total,
            cursor: &cursor::encode(self.presence.epoch(), &self.stream_id, at),
            resumed,
            viewers,
        }
        .to_text()
    }

    /// What the room or, when it does not reach back, fanout holds of what the viewer missed since `text`.
    async fn resume(&self, text: &str) -> Result<Resume, Outcome> {
        let Cursor {
            epoch,
            stream,
            positions,
        } = cursor::decode(text).ok_or(Outcome::Malformed)?;
        let foreign = stream != cursor::tag(&self.stream_id);
        if foreign || !self.state.attendance.carries(&self.stream_id, &positions) {
            return Err(Outcome::Malformed);
        }
        if epoch != self.presence.epoch() {
            return Err(Outcome::Epoch);
        }
        let joined = match self.presence.resume(&positions) {
            Held::Whole {
                frames,
                next,
                likes_total,
                viewers,
            } => {
                return Ok(Resume {
                    frames: next,
                    cursor: positions,
                    missed: frames,
                    likes_total,
                    viewers,
                    continued: true,
                })
            }
            Held::Partly(joined) => joined,
        };
        let since = positions
            .iter()
            .map(|p| self.holder_of(p))
            .collect::<Option<Vec<_>>>()
            .ok_or(Outcome::Window)?;
        let timeout = self.state.config.resume_timeout();
        let events = self
            .state
            .replays
            .ask(&self.stream_id, since, timeout)
            .await?;
        let missed = self.replayed(&positions, events);
        Ok(Resume {
            frames: joined.frames,
            cursor: positions,
            missed: missed.into_iter().collect(),
            likes_total: joined.likes_total,
            viewers: joined.viewers,
            continued: false,
        })
    }

    /// Who to ask for the events at or after `p` (a position must be known to be resumed from).
    fn holder_of(&self, p: &JoinPosition) -> Option<(SessionId, PartitionPosition)> {
        let at = TopicPartition::new(&p.topic, p.partition);
        let holder = self.state.attendance.holder(&at)?;
        Some((holder, PartitionPosition::new(&at, p.offset?)))
    }

    /// Fanout's replay as one frame, in offset order per topic, each event once, without what was taken down
    /// (the cursor still moves past it).
    fn replayed(
        &self,
        cursor: &[JoinPosition],
        mut events: Vec<PushedEvent>,
    ) -> Option<Arc<StreamFrame>> {
        events.sort_by(|a, b| (&a.topic, a.offset).cmp(&(&b.topic, b.offset)));
        events.dedup_by(|a, b| a.topic == b.topic && a.offset == b.offset);
        let after = cursor::past(cursor, &events);
        let events = takedowns::without_taken_down(events, &|id| self.presence.taken_down(id));
        let epoch: Arc<str> = self.presence.epoch().into();
        StreamFrame::encode(&self.stream_id, events, &epoch, after).map(Arc::new)
    }

    fn into_session(
        self,
        frames: Receiver<Arc<StreamFrame>>,
        position: Vec<JoinPosition>,
    ) -> Session {
        Session {
            epoch: self.presence.epoch().into(),
            state: self.state,
            stream_id: self.stream_id,
            transport: self.transport,
            frames,
            position,
            presence: self.presence,
        }
    }
}

/// A viewer subscribed to its stream's frames; it leaves the room when dropped.
#[derive(Debug)]
pub struct Session {
    epoch: Arc<str>,
    state: ViewerState,
    stream_id: String,
    transport: Transport,
    frames: Receiver<Arc<StreamFrame>>,
    /// What the viewer has been sent (from where it joined or resumed), moved past each frame it takes;
    /// each frame is filtered against it.
    position: Vec<JoinPosition>,
    presence: Presence,
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
        cursor::encode(&self.epoch, &self.stream_id, &self.position)
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

    /// What `frame` holds for this viewer; a cursor moves past it. A comment taken down since the frame was
    /// broadcast (while it waited in this viewer's queue) is not sent.
    pub fn take(&mut self, frame: &StreamFrame) -> Taken {
        let presence = &self.presence;
        let gone = |id: &str| presence.taken_down(id);
        let later = frame.comments.is_some() && presence.take_downs() > frame.take_downs_before;
        if later && frame.holds_any(&gone) {
            let Some(left) = frame.without(&self.stream_id, &gone) else {
                frame.advance(&mut self.position);
                return Taken {
                    texts: Vec::new(),
                    events: 0,
                };
            };
            return self.take_whole(&left);
        }
        self.take_whole(frame)
    }

    fn take_whole(&mut self, frame: &StreamFrame) -> Taken {
        let taken = Taken {
            texts: frame.for_viewer(&self.stream_id, &self.position),
            events: frame.event_count(&self.position) as u64,
        };
        frame.advance(&mut self.position);
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
            cursor: &self.cursor(),
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
