//! Who is here, and what the cluster is told of it: a viewer's [`Presence`] in its stream's room, whichever
//! transport carries it. A stream's first viewer subscribes the edge to the stream (the record fanout routes
//! by); after its last viewer left the subscription lingers (`--subscription-linger-ms`, absorbing churn and
//! long-poll clients between polls), then is withdrawn unless a viewer came back.

use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus::IntGauge;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admitted;
use crate::frames::JoinPosition;
use crate::membership::Membership;
use crate::metrics::EdgeMetrics;
use crate::positions::SessionId;
use crate::room::{Held, Joined, Room};
use crate::rooms::Rooms;

/// How a viewer is connected (the label of the connection gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Sse,
    LongPoll,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::LongPoll => "long_poll",
        }
    }
}

#[derive(Debug)]
pub struct Attendance {
    rooms: Arc<Rooms>,
    membership: Arc<Membership>,
    linger: Duration,
    /// Every viewer holds a token of it, so a draining edge knows when all are gone.
    tracker: TaskTracker,
    metrics: EdgeMetrics,
}

impl Attendance {
    pub fn new(
        rooms: Arc<Rooms>,
        membership: Arc<Membership>,
        linger: Duration,
        tracker: TaskTracker,
        metrics: EdgeMetrics,
    ) -> Self {
        Attendance {
            rooms,
            membership,
            linger,
            tracker,
            metrics,
        }
    }

    /// A viewer arrives in the room of `stream_id` (subscribing the edge to the stream if it is the first).
    pub fn enter(
        self: &Arc<Self>,
        admitted: Admitted,
        stream_id: &str,
        transport: Transport,
    ) -> Presence {
        let gauge = self
            .metrics
            .viewers
            .connections
            .with_label_values(&[transport.label()]);
        gauge.inc();
        let membership = &self.membership;
        let room = self.rooms.enter(stream_id, |stream_id, positions| {
            membership.subscribe(stream_id, positions)
        });
        Presence {
            attendance: self.clone(),
            room,
            gauge,
            _admitted: admitted,
            _tracked: self.tracker.token(),
        }
    }

    /// Whether `cursor` is one this edge could have given out for `stream_id` (see [`Rooms::carries`]).
    pub fn carries(&self, stream_id: &str, cursor: &[JoinPosition]) -> bool {
        self.rooms.carries(stream_id, cursor)
    }

    /// The push session that holds `at` now: the one to ask for what a resuming viewer missed.
    pub fn holder(&self, at: &chorus_schemas::TopicPartition) -> Option<SessionId> {
        self.rooms.holder(at)
    }

    /// A viewer left; when it was the last, the subscription is withdrawn after the linger, unless a viewer
    /// came back meanwhile.
    fn leave(&self, room: &Arc<Room>) {
        let Some(generation) = self.rooms.leave(room) else {
            return;
        };
        // The timer holds the edge weakly: one that stopped meanwhile (and withdrew everything) is gone.
        let rooms = Arc::downgrade(&self.rooms);
        let membership: Weak<Membership> = Arc::downgrade(&self.membership);
        let room = room.clone();
        let linger = self.linger;
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            if let (Some(rooms), Some(membership)) = (rooms.upgrade(), membership.upgrade()) {
                rooms.close_if_empty(&room, generation, |stream_id| {
                    membership.unsubscribe(stream_id)
                });
            }
        });
    }
}

/// A viewer in a room: it leaves the room, gives its admission back and lowers the connection gauge however
/// it ends; until then the edge's drain waits for it.
#[derive(Debug)]
pub struct Presence {
    attendance: Arc<Attendance>,
    room: Arc<Room>,
    gauge: IntGauge,
    _admitted: Admitted,
    _tracked: TaskTrackerToken,
}

impl Presence {
    /// Subscribes to the room's frames from the join position on.
    pub fn join(&self) -> Joined {
        self.attendance.rooms.join(&self.room)
    }

    /// What the room holds of what a viewer coming back at `cursor` missed.
    pub fn resume(&self, cursor: &[JoinPosition]) -> Held {
        self.room
            .resume(cursor, self.attendance.rooms.events_topic())
    }

    /// The epoch of the cursors this room gives out.
    pub fn epoch(&self) -> &str {
        self.room.epoch()
    }

    /// Take-downs applied in the room so far.
    pub fn take_downs(&self) -> u64 {
        self.room.take_downs()
    }

    /// Whether the comment `event_id` was taken down in the room.
    pub fn taken_down(&self, event_id: &str) -> bool {
        self.room.taken_down(event_id)
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.gauge.dec();
        self.attendance.leave(&self.room);
    }
}
