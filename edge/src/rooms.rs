//! The streams that have viewers on this edge ("rooms"), and how events reach them.
//!
//! One lock per room orders two things that must not interleave: a push batch being broadcast and the room's
//! position advanced, and a viewer subscribing and reading its join position. So a viewer receives every event
//! at or after its join position and can filter out everything before it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chorus_schemas::wire::{Position, PushedEvent};
use chorus_schemas::{partition_for, PartitionPosition};
use chorus_service::clock;
use tokio::sync::broadcast;

use tokio_util::sync::CancellationToken;

use crate::coalesce::Coalescing;
use crate::config::EdgeConfig;
use crate::dedup::RecentIds;
use crate::frames::{JoinPosition, StreamFrame};
use crate::membership::Membership;
use crate::metrics::EdgeMetrics;

/// A session id: one per fanout connection.
pub type SessionId = u64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; if one ever did, its data is still consistent enough to serve.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub struct Room {
    pub stream_id: String,
    partition: i32,
    frames: broadcast::Sender<Arc<StreamFrame>>,
    state: Mutex<RoomState>,
}

#[derive(Debug)]
struct RoomState {
    viewers: usize,
    /// Bumped whenever the last viewer leaves, so a linger timer knows whether someone came back since.
    generation: u64,
    /// Per topic, the next offset of the stream's partition after the last event broadcast here.
    positions: HashMap<String, i64>,
    recent: RecentIds,
    /// The last frames broadcast, for long-poll and SSE clients that come back with a cursor.
    frames: VecDeque<Arc<StreamFrame>>,
    /// Events waiting to go out together, when frames are coalesced, and since when the first one waits.
    pending: Vec<PushedEvent>,
    pending_since: Option<Instant>,
    /// The stream's like count, as fanout last announced it.
    likes_total: u64,
}

/// What a client returning with a cursor missed, and its subscription for what comes next.
#[derive(Debug)]
pub struct Resumed {
    /// Buffered frames with events at or after the cursor, oldest first.
    pub frames: Vec<Arc<StreamFrame>>,
    /// The buffer no longer reaches back to the cursor: events in between are lost to this client.
    pub gap: bool,
    pub next: broadcast::Receiver<Arc<StreamFrame>>,
}

/// What a viewer holds: frames from its join on, and where it joined.
#[derive(Debug)]
pub struct Joined {
    pub frames: broadcast::Receiver<Arc<StreamFrame>>,
    /// One position per topic carrying the stream (the local `events` first).
    pub join: Vec<JoinPosition>,
    /// The stream's like count when the viewer joined.
    pub likes_total: u64,
}

#[derive(Debug)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    sessions: Mutex<HashSet<SessionId>>,
    positions: Mutex<HashMap<(String, i32), i64>>,
    partitions: AtomicI32,
    events_topic: String,
    buffer_frames: usize,
    dedup_window: usize,
    linger: Duration,
    coalescing: Option<Coalescing>,
    /// Rooms with events waiting to go out.
    dirty: Mutex<Vec<Arc<Room>>>,
    membership: Arc<Membership>,
    metrics: EdgeMetrics,
}

impl Rooms {
    pub fn new(
        config: &EdgeConfig,
        events_topic: String,
        partitions: i32,
        membership: Arc<Membership>,
        metrics: EdgeMetrics,
    ) -> Self {
        Rooms {
            rooms: Mutex::default(),
            sessions: Mutex::default(),
            positions: Mutex::default(),
            dirty: Mutex::default(),
            partitions: AtomicI32::new(partitions),
            events_topic,
            buffer_frames: config.stream_buffer_frames.max(1),
            dedup_window: config.dedup_window,
            linger: config.linger(),
            coalescing: Coalescing::from_config(config),
            membership,
            metrics,
        }
    }

    /// Every tick until `stop`, sends the coalesced events of each stream whose wait is over as one frame.
    pub async fn flush_every(self: Arc<Self>, coalescing: Coalescing, stop: CancellationToken) {
        let mut tick = tokio::time::interval(coalescing.tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => self.flush(&coalescing),
            }
        }
    }

    fn flush(&self, coalescing: &Coalescing) {
        let dirty = std::mem::take(&mut *lock(&self.dirty));
        let mut waiting = Vec::new();
        for room in dirty {
            let mut state = lock(&room.state);
            let due = state
                .pending_since
                .is_none_or(|since| coalescing.due(since.elapsed(), state.viewers));
            if due {
                let events = std::mem::take(&mut state.pending);
                state.pending_since = None;
                self.publish(&room, &mut state, events);
            } else {
                drop(state);
                waiting.push(room);
            }
        }
        if !waiting.is_empty() {
            lock(&self.dirty).extend(waiting);
        }
    }

    /// A viewer arrives: its room, created (and its subscription announced) if it is the stream's first.
    pub fn enter(&self, stream_id: &str) -> Arc<Room> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(stream_id) {
            lock(&room.state).viewers += 1;
            return room.clone();
        }
        let partition = partition_for(stream_id, self.partitions.load(Ordering::Relaxed));
        // Where the pipeline stands now in the stream's partition of every events topic: the first viewer joins
        // here, and fanout fills the gap between this and the moment the subscription reaches it.
        let start: HashMap<String, i64> = lock(&self.positions)
            .iter()
            .filter(|((_, p), _)| *p == partition)
            .map(|((topic, _), offset)| (topic.clone(), *offset))
            .collect();
        let positions = start
            .iter()
            .map(|(topic, offset)| PartitionPosition {
                topic: topic.clone(),
                partition,
                offset: *offset,
            })
            .collect();
        let room = Arc::new(Room {
            stream_id: stream_id.to_owned(),
            partition,
            frames: broadcast::channel(self.buffer_frames).0,
            state: Mutex::new(RoomState {
                viewers: 1,
                generation: 0,
                positions: start,
                recent: RecentIds::new(self.dedup_window),
                frames: VecDeque::new(),
                pending: Vec::new(),
                pending_since: None,
                likes_total: 0,
            }),
        });
        rooms.insert(stream_id.to_owned(), room.clone());
        self.metrics.streams.set(rooms.len() as i64);
        self.membership.subscribe(stream_id, positions);
        room
    }

    /// Subscribes a viewer to the room's frames and tells it where it joined: per topic, the furthest of what
    /// fanout announced and what was broadcast here.
    pub fn join(&self, room: &Room) -> Joined {
        let state = lock(&room.state);
        let frames = room.frames.subscribe();
        let known = lock(&self.positions);
        let mut topics: Vec<&String> = known
            .keys()
            .filter(|(_, p)| *p == room.partition)
            .map(|(t, _)| t)
            .chain(state.positions.keys())
            .filter(|t| **t != self.events_topic)
            .collect();
        topics.sort();
        topics.dedup();
        let join = std::iter::once(&self.events_topic)
            .chain(topics)
            .map(|topic| {
                let announced = known.get(&(topic.clone(), room.partition)).copied();
                let broadcast = state.positions.get(topic).copied();
                JoinPosition {
                    topic: topic.clone(),
                    partition: room.partition,
                    offset: announced.max(broadcast),
                }
            })
            .collect();
        Joined {
            frames,
            join,
            likes_total: state.likes_total,
        }
    }

    /// A client comes back at `cursor` (where its last response left it): the buffered frames it has not
    /// seen, and a subscription for the next ones, taken under the room's lock so nothing falls between.
    pub fn resume(&self, room: &Room, cursor: &[JoinPosition]) -> Resumed {
        let state = lock(&room.state);
        let next = room.frames.subscribe();
        let frames: Vec<Arc<StreamFrame>> = state
            .frames
            .iter()
            .filter(|f| f.event_count(cursor) > 0)
            .cloned()
            .collect();
        let oldest = state.frames.front();
        let gap = state.frames.len() == self.buffer_frames
            && oldest.is_some_and(|f| {
                f.first_offsets.iter().any(|(topic, first)| {
                    cursor
                        .iter()
                        .any(|c| &c.topic == topic && c.offset.is_some_and(|o| o < *first))
                })
            });
        Resumed { frames, gap, next }
    }

    /// A viewer left. When it was the last, the subscription is withdrawn after the linger, unless a viewer
    /// came back meanwhile.
    pub fn leave(self: &Arc<Self>, room: &Arc<Room>) {
        let generation = {
            let mut state = lock(&room.state);
            state.viewers = state.viewers.saturating_sub(1);
            if state.viewers > 0 {
                return;
            }
            state.generation += 1;
            state.generation
        };
        // The timer holds the rooms weakly: an edge that stopped meanwhile (and withdrew everything) is gone.
        let rooms = Arc::downgrade(self);
        let room = room.clone();
        let linger = self.linger;
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            if let Some(rooms) = rooms.upgrade() {
                rooms.close_if_empty(&room, generation);
            }
        });
    }

    fn close_if_empty(&self, room: &Arc<Room>, generation: u64) {
        let mut rooms = lock(&self.rooms);
        {
            let state = lock(&room.state);
            if state.viewers > 0 || state.generation != generation {
                return;
            }
        }
        if rooms
            .get(&room.stream_id)
            .is_some_and(|r| Arc::ptr_eq(r, room))
        {
            rooms.remove(&room.stream_id);
            self.metrics.streams.set(rooms.len() as i64);
            self.membership.unsubscribe(&room.stream_id);
        }
    }

    /// Streams with a room, for the tombstones written at shutdown.
    pub fn streams(&self) -> Vec<String> {
        lock(&self.rooms).keys().cloned().collect()
    }

    pub fn session_opened(&self, session: SessionId, partitions: i32) {
        lock(&self.sessions).insert(session);
        if partitions > 0 {
            self.partitions.store(partitions, Ordering::Relaxed);
        }
        self.metrics.push_sessions.inc();
    }

    pub fn session_closed(&self, session: SessionId) {
        if lock(&self.sessions).remove(&session) {
            self.metrics.push_sessions.dec();
        }
    }

    pub fn note_batch(&self) {
        self.metrics.push_batches.inc();
    }

    /// Fanout's likes of a stream for one tick: broadcast at once (they are aggregated already) and
    /// remembered for the `hello` of viewers who join later.
    pub fn likes(&self, stream_id: &str, delta: u64, total: u64) {
        let Some(room) = lock(&self.rooms).get(stream_id).cloned() else {
            return;
        };
        let mut state = lock(&room.state);
        let grew = total > state.likes_total;
        state.likes_total = state.likes_total.max(total);
        // A delta of 0 announces a total the viewers may not know yet (a new subscription's first one).
        if delta > 0 || grew {
            self.metrics.likes_frames.inc();
            let frame = StreamFrame::likes(stream_id, delta, state.likes_total);
            // Not kept for returning clients: the next likes frame carries the total anyway.
            let _ = room.frames.send(Arc::new(frame));
        }
    }

    /// Comments of a stream that its budget left out: the viewers are told how many.
    pub fn sampled(&self, stream_id: &str, left_out: u64) {
        let Some(room) = lock(&self.rooms).get(stream_id).cloned() else {
            return;
        };
        let _state = lock(&room.state);
        let _ = room
            .frames
            .send(Arc::new(StreamFrame::sampled(stream_id, left_out)));
    }

    /// Fanout's heartbeat: it has handed on every event before these positions.
    pub fn advance(&self, positions: Vec<Position>) {
        let mut known = lock(&self.positions);
        for p in positions {
            let slot = known.entry((p.topic, p.partition)).or_insert(p.next_offset);
            *slot = (*slot).max(p.next_offset);
        }
    }

    /// Broadcasts a batch from fanout to the viewers of each stream in it, dropping repeats.
    pub fn deliver(&self, events: Vec<PushedEvent>) {
        self.metrics.events_received.inc_by(events.len() as u64);
        let now = clock::now_ms();
        let mut by_stream: HashMap<String, Vec<PushedEvent>> = HashMap::new();
        let mut last: HashMap<(String, i32), i64> = HashMap::new();
        for event in events {
            let age_ms = now.saturating_sub(event.event.created_ms).max(0);
            self.metrics
                .event_age
                .with_label_values(&[&event.topic])
                .observe(age_ms as f64 / 1000.0);
            let slot = last
                .entry((event.topic.clone(), event.partition))
                .or_insert(event.offset);
            *slot = (*slot).max(event.offset);
            by_stream
                .entry(event.event.stream_id.clone())
                .or_default()
                .push(event);
        }
        for (stream_id, events) in by_stream {
            let room = lock(&self.rooms).get(&stream_id).cloned();
            match room {
                Some(room) => self.broadcast(&room, events),
                None => self.metrics.events_unrouted.inc_by(events.len() as u64),
            }
        }
        self.advance(
            last.into_iter()
                .map(|((topic, partition), offset)| Position {
                    topic,
                    partition,
                    next_offset: offset + 1,
                })
                .collect(),
        );
    }

    fn broadcast(&self, room: &Arc<Room>, events: Vec<PushedEvent>) {
        let mut state = lock(&room.state);
        let before = events.len();
        let fresh: Vec<PushedEvent> = events
            .into_iter()
            .filter(|e| state.recent.first_time(&e.event.event_id))
            .collect();
        self.metrics
            .duplicates_dropped
            .inc_by((before - fresh.len()) as u64);
        if self.coalescing.is_none() {
            self.publish(room, &mut state, fresh);
        } else if !fresh.is_empty() {
            if state.pending.is_empty() {
                state.pending_since = Some(Instant::now());
                lock(&self.dirty).push(room.clone());
            }
            state.pending.extend(fresh);
        }
    }

    /// Encodes `events` once, keeps the frame for returning clients, broadcasts it, and moves the room's
    /// positions past it (all under the room's lock, taken by the caller).
    fn publish(&self, room: &Room, state: &mut RoomState, events: Vec<PushedEvent>) {
        let frame_events: Vec<(String, i64)> =
            events.iter().map(|e| (e.topic.clone(), e.offset)).collect();
        if let Some(frame) = StreamFrame::encode(&room.stream_id, events) {
            let frame = Arc::new(frame);
            if state.frames.len() == self.buffer_frames {
                state.frames.pop_front();
            }
            state.frames.push_back(frame.clone());
            // No receiver is fine: the room is lingering.
            let _ = room.frames.send(frame);
        }
        for event in &frame_events {
            let next = state
                .positions
                .entry(event.0.clone())
                .or_insert(event.1 + 1);
            *next = (*next).max(event.1 + 1);
        }
    }
}
