//! One stream's room on this edge: the channel its frames are broadcast on, and under one lock what must not
//! interleave with a broadcast: its viewer count, the positions its broadcasts reached, recent event ids (to
//! drop repeats), the last frames and from where on they hold every event (for viewers that come back with a
//! cursor), events waiting to be coalesced and likes waiting for their interval.
//!
//! That lock orders a push batch being broadcast and the room's positions advanced against a viewer
//! subscribing and reading its join position: so a viewer receives every event at or after its join position
//! and can filter out everything before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chorus_schemas::wire::PushedEvent;
use chorus_schemas::{EventKind, TopicPartition};
use tokio::sync::broadcast;

use crate::dedup::RecentIds;
use crate::frames::{JoinPosition, StreamFrame};
use crate::kept::Kept;
use crate::likes::LikesPacing;
use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;
use crate::takedowns::Takedowns;
use crate::viewer_count::ViewersPacing;

mod paced;

/// Locks `m`. No code panics while holding the edge's locks; if one ever did, its data is still consistent
/// enough to serve.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What every room is made with.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    /// Frames kept for returning clients, and the broadcast channel's capacity.
    pub buffer_frames: usize,
    /// How long a frame is kept for returning clients.
    pub resume_window: Duration,
    pub dedup_window: usize,
    pub likes_interval: Duration,
    /// The epoch of the cursors given out (see [`crate::cursor::epoch`]).
    pub epoch: Arc<str>,
}

/// Per topic-partition, the next offset fanout has handed on everything before (shared by the rooms).
pub type Known = Arc<Mutex<HashMap<TopicPartition, i64>>>;

#[derive(Debug)]
pub struct Room {
    pub stream_id: String,
    partition: i32,
    frames: broadcast::Sender<Arc<StreamFrame>>,
    settings: RoomSettings,
    known: Known,
    state: Mutex<RoomState>,
    /// Take-downs applied here so far (read without the lock by every viewer's writer).
    take_downs: AtomicU64,
}

#[derive(Debug)]
struct RoomState {
    viewers: usize,
    /// Bumped whenever the last viewer leaves, so a linger timer knows whether someone came back since.
    generation: u64,
    /// Per topic, the next offset of the stream's partition after the last event broadcast here.
    positions: HashMap<String, i64>,
    recent: RecentIds,
    /// The last frames broadcast, for viewers that come back with a cursor.
    kept: Kept,
    /// Events waiting to go out together, when frames are coalesced, and since when the first one waits.
    pending: Vec<PushedEvent>,
    pending_since: Option<Instant>,
    /// The stream's like count, as fanout last announced it (held likes included).
    likes_total: u64,
    likes: LikesPacing,
    takedowns: Takedowns,
    viewers_count: ViewersPacing,
}

impl RoomState {
    /// Whether something waits for a flush tick.
    fn waiting(&self) -> bool {
        !self.pending.is_empty() || self.likes.holding() || self.viewers_count.holding()
    }

    /// Viewers of the stream everywhere, as fanout last counted them (until it did, those here).
    fn viewers_everywhere(&self) -> u64 {
        self.viewers_count.known().unwrap_or(self.viewers as u64)
    }
}

/// What a viewer holds: frames from its join on, and where it joined.
#[derive(Debug)]
pub struct Joined {
    pub frames: broadcast::Receiver<Arc<StreamFrame>>,
    /// One position per topic carrying the stream (the local `events` first).
    pub join: Vec<JoinPosition>,
    /// The stream's like count when the viewer joined.
    pub likes_total: u64,
    /// Viewers of the stream everywhere when the viewer joined.
    pub viewers: u64,
}

/// What a viewer returning with a cursor finds in the room.
#[derive(Debug)]
pub enum Held {
    /// Every event after the cursor is buffered: the frames with some, oldest first, and the subscription
    /// for the next ones (taken under the room's lock, so nothing falls between).
    Whole {
        frames: Vec<Arc<StreamFrame>>,
        next: broadcast::Receiver<Arc<StreamFrame>>,
        likes_total: u64,
        viewers: u64,
    },
    /// The buffer does not reach back to the cursor, or the cursor is ahead of where the stream stands here
    /// (another edge may be ahead, or the cursor is from a log that is gone: fanout knows which): the
    /// subscription for what comes next and where the stream stands, for fanout to replay what is between.
    Partly(Joined),
}

impl Room {
    /// A room for its first viewer, whose broadcasts start at `start` (per topic, the next offset).
    /// `held_from`: the first viewer's join position, per topic (fanout sends every event from there).
    pub fn new(
        stream_id: &str,
        partition: i32,
        held_from: HashMap<String, i64>,
        settings: RoomSettings,
        known: Known,
    ) -> Self {
        Room {
            stream_id: stream_id.to_owned(),
            partition,
            frames: broadcast::channel(settings.buffer_frames).0,
            state: Mutex::new(RoomState {
                viewers: 1,
                generation: 0,
                positions: HashMap::new(),
                recent: RecentIds::new(settings.dedup_window),
                kept: Kept::new(held_from, settings.buffer_frames, settings.resume_window),
                pending: Vec::new(),
                pending_since: None,
                likes_total: 0,
                likes: LikesPacing::new(settings.likes_interval),
                takedowns: Takedowns::new(settings.dedup_window, settings.resume_window),
                viewers_count: ViewersPacing::default(),
            }),
            settings,
            known,
            take_downs: AtomicU64::new(0),
        }
    }

    pub fn epoch(&self) -> &str {
        &self.settings.epoch
    }

    /// Viewers here now, and the stream's partition.
    pub fn count(&self) -> (u64, i32) {
        (lock(&self.state).viewers as u64, self.partition)
    }

    /// Take-downs applied here so far.
    pub fn take_downs(&self) -> u64 {
        self.take_downs.load(Ordering::Acquire)
    }

    /// Whether the comment `event_id` was taken down here (within the resume window).
    pub fn taken_down(&self, event_id: &str) -> bool {
        lock(&self.state).takedowns.taken_down(event_id)
    }

    /// Another viewer arrives.
    pub fn arrive(&self) {
        lock(&self.state).viewers += 1;
    }

    /// A viewer left: the room's generation when it was the last one.
    pub fn depart(&self) -> Option<u64> {
        let mut state = lock(&self.state);
        state.viewers = state.viewers.saturating_sub(1);
        if state.viewers > 0 {
            return None;
        }
        state.generation += 1;
        Some(state.generation)
    }

    /// The stream's partition (of every topic carrying it).
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Whether events of `topic` were broadcast here.
    pub fn broadcast_from(&self, topic: &str) -> bool {
        lock(&self.state).positions.contains_key(topic)
    }

    /// Whether nobody came back since the last viewer of `generation` left.
    pub fn abandoned_since(&self, generation: u64) -> bool {
        let state = lock(&self.state);
        state.viewers == 0 && state.generation == generation
    }

    /// Subscribes a viewer to the room's frames and tells it where it joined: per topic, the furthest of what
    /// fanout announced (`known`, taken under the room's lock) and what was broadcast here.
    pub fn join(&self, events_topic: &str) -> Joined {
        let state = lock(&self.state);
        self.join_locked(&state, events_topic)
    }

    fn join_locked(&self, state: &RoomState, events_topic: &str) -> Joined {
        let frames = self.frames.subscribe();
        let known = lock(&self.known);
        let mut topics: Vec<&str> = known
            .keys()
            .filter(|at| at.partition == self.partition)
            .map(|at| at.topic.as_str())
            .chain(state.positions.keys().map(String::as_str))
            .filter(|topic| *topic != events_topic)
            .collect();
        topics.sort_unstable();
        topics.dedup();
        let join = std::iter::once(events_topic)
            .chain(topics)
            .map(|topic| {
                let announced = known
                    .get(&TopicPartition::new(topic, self.partition))
                    .copied();
                let broadcast = state.positions.get(topic).copied();
                JoinPosition {
                    topic: topic.to_owned(),
                    partition: self.partition,
                    offset: announced.max(broadcast),
                }
            })
            .collect();
        Joined {
            frames,
            join,
            likes_total: state.likes_total,
            viewers: state.viewers_everywhere(),
        }
    }

    /// A viewer comes back at `cursor` (what it was sent, per topic): what the room holds of what it missed.
    pub fn resume(&self, cursor: &[JoinPosition], events_topic: &str) -> Held {
        let state = lock(&self.state);
        let standing = |topic: &str| {
            let known = lock(&self.known)
                .get(&TopicPartition::new(topic, self.partition))
                .copied();
            known.max(state.positions.get(topic).copied())
        };
        let ahead = cursor.iter().any(|c| {
            c.offset
                .zip(standing(&c.topic))
                .is_some_and(|(at, stands)| at > stands)
        });
        if ahead || !state.kept.covers(cursor) {
            return Held::Partly(self.join_locked(&state, events_topic));
        }
        Held::Whole {
            frames: state.kept.after(cursor),
            next: self.frames.subscribe(),
            likes_total: state.likes_total,
            viewers: state.viewers_everywhere(),
        }
    }

    /// A batch of the stream's events from fanout, repeats dropped: broadcast now, or kept to go out
    /// together at a flush tick when `coalesce`. True when the room has just started waiting for one.
    pub fn offer_events(
        &self,
        events: Vec<PushedEvent>,
        coalesce: bool,
        metrics: &EdgeMetrics,
    ) -> bool {
        let mut state = lock(&self.state);
        let before = events.len();
        let fresh: Vec<PushedEvent> = events
            .into_iter()
            .filter(|e| state.recent.first_time(&e.event.event_id))
            .collect();
        Occurrence::DuplicatesDropped {
            count: before - fresh.len(),
        }
        .emit(metrics);
        let was_waiting = state.waiting();
        if fresh.iter().any(|e| e.event.kind == EventKind::Retract) {
            // A take-down never waits for a tick, and what it takes down never leaves from here.
            self.take_down(&mut state, fresh, metrics);
            return !was_waiting && state.waiting();
        }
        if !coalesce {
            self.publish(&mut state, fresh);
            return false;
        }
        if !fresh.is_empty() && state.pending.is_empty() {
            state.pending_since = Some(Instant::now());
        }
        state.pending.extend(fresh);
        !was_waiting && state.waiting()
    }

    /// Broadcasts `fresh` (with take-downs) and what waited to be coalesced, without the comments taken down;
    /// the frames kept for returning viewers lose them too.
    fn take_down(&self, state: &mut RoomState, mut fresh: Vec<PushedEvent>, metrics: &EdgeMetrics) {
        let ids = state.takedowns.resolve(&mut fresh, Instant::now());
        let gone = |id: &str| ids.contains(id);
        let mut events = std::mem::take(&mut state.pending);
        state.pending_since = None;
        events.extend(fresh);
        events.retain(|e| e.event.kind != EventKind::Comment || !gone(&e.event.event_id));
        state.kept.take_down(&self.stream_id, &gone);
        self.take_downs.fetch_add(1, Ordering::AcqRel);
        Occurrence::TakenDown {
            stream_id: &self.stream_id,
            count: ids.len(),
        }
        .emit(metrics);
        self.publish(state, events);
    }

    /// Encodes `events` once (with the cursor after them), keeps the frame for returning clients, broadcasts
    /// it, and moves the room's positions past it (all under the room's lock, taken by the caller).
    fn publish(&self, state: &mut RoomState, events: Vec<PushedEvent>) {
        let now = Instant::now();
        for e in &events {
            state.kept.saw(&e.topic, e.offset);
            state.takedowns.saw(e, now);
            let next = state
                .positions
                .entry(e.topic.clone())
                .or_insert(e.offset + 1);
            *next = (*next).max(e.offset + 1);
        }
        let cursor = self.cursor_locked(state);
        let Some(mut frame) =
            StreamFrame::encode(&self.stream_id, events, &self.settings.epoch, cursor)
        else {
            return;
        };
        frame.take_downs_before = self.take_downs.load(Ordering::Acquire);
        let frame = Arc::new(frame);
        state.kept.keep(frame.clone(), now);
        // No receiver is fine: the room is lingering.
        let _ = self.frames.send(frame);
    }

    /// Where everything broadcast here stands, per topic carrying the stream: past the last event broadcast,
    /// and past what fanout handed on since (nothing of the stream is in it, or it would be broadcast).
    fn cursor_locked(&self, state: &RoomState) -> Vec<JoinPosition> {
        let known = lock(&self.known);
        let mut at: HashMap<&str, i64> = HashMap::new();
        let announced = known
            .iter()
            .filter(|(tp, _)| tp.partition == self.partition)
            .map(|(tp, next)| (tp.topic.as_str(), *next));
        let here = state.positions.iter().chain(state.kept.from());
        for (topic, next) in announced.chain(here.map(|(t, n)| (t.as_str(), *n))) {
            let slot = at.entry(topic).or_insert(next);
            *slot = (*slot).max(next);
        }
        let mut cursor: Vec<JoinPosition> = at
            .into_iter()
            .map(|(topic, next)| JoinPosition {
                topic: topic.to_owned(),
                partition: self.partition,
                offset: Some(next),
            })
            .collect();
        cursor.sort_by(|a, b| a.topic.cmp(&b.topic));
        cursor
    }
}
