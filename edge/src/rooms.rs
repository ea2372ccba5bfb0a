//! The streams that have viewers on this edge ("rooms"), and where fanout stands in their partitions.
//!
//! A room's first viewer and its last one's leaving matter to the cluster (the edge subscribes to the stream,
//! and withdraws after a linger): the rooms say when, and their caller (`attendance`) does the writing.
//! How events reach a room is `broadcast`'s; what a room holds, `room`'s; which positions are believed, `positions`'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use chorus_schemas::topics::mirrored_region;
use chorus_schemas::wire::PushedEvent;
use chorus_schemas::{partition_for, PartitionPosition, TopicPartition};

use crate::config::EdgeConfig;
use crate::frames::JoinPosition;
use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;
use crate::positions::{Guard, SessionId, SessionId as Session, Trust};
use crate::room::{lock, Joined, Known, Room, RoomSettings};

#[derive(Debug)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// Per topic-partition, the next offset fanout has handed on everything before (its heartbeats and
    /// the batches broadcast here), as far as `trust` believes it.
    positions: Known,
    /// Who may move each position, and how far (its lock is taken before `positions`, never after).
    trust: Guard,
    partitions: AtomicI32,
    events_topic: String,
    settings: RoomSettings,
    metrics: EdgeMetrics,
}

impl Rooms {
    /// `epoch`: of the cursors given out (see [`crate::cursor::epoch`]).
    pub fn new(
        config: &EdgeConfig,
        events_topic: String,
        partitions: i32,
        epoch: &str,
        metrics: EdgeMetrics,
    ) -> Self {
        Rooms {
            rooms: Mutex::default(),
            positions: Known::default(),
            trust: Guard::new(
                Trust::new(
                    events_topic.clone(),
                    config.position_max_rate,
                    config.position_owner_lapse(),
                ),
                metrics.clone(),
            ),
            partitions: AtomicI32::new(partitions),
            events_topic,
            settings: RoomSettings {
                buffer_frames: config.stream_buffer_frames.max(1),
                resume_window: config.resume_window(),
                dedup_window: config.dedup_window,
                likes_interval: config.likes_interval(),
                epoch: epoch.into(),
            },
            metrics,
        }
    }

    /// A viewer arrives: its room, created if it is the stream's first. Then `announce` is called with the
    /// positions that first viewer joins at, still under the rooms' lock, so that the subscription it writes
    /// is ordered before the withdrawal of a later [`Rooms::close_if_empty`] (and after an earlier one's).
    pub fn enter(
        &self,
        stream_id: &str,
        announce: impl FnOnce(&str, Vec<PartitionPosition>),
    ) -> Arc<Room> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(stream_id) {
            room.arrive();
            return room.clone();
        }
        let partition = partition_for(stream_id, self.partitions.load(Ordering::Relaxed));
        // Where the pipeline stands now in the stream's partition of every events topic: the first viewer joins
        // here, and fanout fills the gap between this and the moment the subscription reaches it.
        let start: Vec<PartitionPosition> = lock(&self.positions)
            .iter()
            .filter(|(at, _)| at.partition == partition)
            .map(|(at, offset)| PartitionPosition::new(at, *offset))
            .collect();
        // Nothing was broadcast in the room yet: its viewers join at the positions as they stand then (a new
        // holder of the partition may set them below `start`). It holds every event from `start` on.
        let held_from = start.iter().map(|p| (p.topic.clone(), p.offset)).collect();
        let room = Arc::new(Room::new(
            stream_id,
            partition,
            held_from,
            self.settings.clone(),
            self.positions.clone(),
        ));
        rooms.insert(stream_id.to_owned(), room.clone());
        Occurrence::StreamsHere { count: rooms.len() }.emit(&self.metrics);
        announce(stream_id, start);
        room
    }

    /// Subscribes a viewer to the room's frames and tells it where it joined.
    pub fn join(&self, room: &Room) -> Joined {
        room.join(&self.events_topic)
    }

    pub fn events_topic(&self) -> &str {
        &self.events_topic
    }

    /// The push session that holds `at` now, if one does: the one to ask for its recent events.
    pub fn holder(&self, at: &TopicPartition) -> Option<Session> {
        self.trust.holder(at)
    }

    /// A viewer left: when it was the last, the room's generation, to pass to [`Rooms::close_if_empty`] once
    /// the subscription's linger is over.
    pub fn leave(&self, room: &Room) -> Option<u64> {
        room.depart()
    }

    /// Closes the room if nobody came back since its last viewer of `generation` left; then `withdraw` is
    /// called under the rooms' lock (see [`Rooms::enter`]).
    pub fn close_if_empty(&self, room: &Arc<Room>, generation: u64, withdraw: impl FnOnce(&str)) {
        let mut rooms = lock(&self.rooms);
        if !room.abandoned_since(generation) {
            return;
        }
        if rooms
            .get(&room.stream_id)
            .is_some_and(|r| Arc::ptr_eq(r, room))
        {
            rooms.remove(&room.stream_id);
            Occurrence::StreamsHere { count: rooms.len() }.emit(&self.metrics);
            withdraw(&room.stream_id);
        }
    }

    /// The room of `stream_id`, if it has one here.
    pub fn room(&self, stream_id: &str) -> Option<Arc<Room>> {
        lock(&self.rooms).get(stream_id).cloned()
    }

    /// Whether this edge could have given out `cursor` for `stream_id`: every position in the stream's
    /// partition of a topic known to carry it here (`events`, or one fanout announced a position of in that
    /// partition, or one broadcast to the stream's room). Anything else is a cursor made up.
    pub fn carries(&self, stream_id: &str, cursor: &[JoinPosition]) -> bool {
        let room = self.room(stream_id);
        let partition = room.as_ref().map_or_else(
            || partition_for(stream_id, self.partitions.load(Ordering::Relaxed)),
            |room| room.partition(),
        );
        // One lock at a time: a room's state is otherwise taken before the positions. A mirrored copy of the
        // events topic is known by its name too: a viewer coming back to an edge that started since must not
        // be refused before fanout's first positions arrive.
        let known = |topic: &str| {
            topic == self.events_topic
                || mirrored_region(topic, &self.events_topic).is_some()
                || lock(&self.positions).contains_key(&TopicPartition::new(topic, partition))
                || room.as_ref().is_some_and(|room| room.broadcast_from(topic))
        };
        cursor
            .iter()
            .all(|p| p.partition == partition && known(&p.topic))
    }

    /// Every room here (the viewer counts, the tombstones written at shutdown).
    pub fn all(&self) -> Vec<Arc<Room>> {
        lock(&self.rooms).values().cloned().collect()
    }

    /// The partition count of `events`, as a fanout instance announced it.
    pub fn set_partitions(&self, partitions: i32) {
        if partitions > 0 {
            self.partitions.store(partitions, Ordering::Relaxed);
        }
    }

    /// Push session `session` says fanout handed on every event before these positions: adopted where they
    /// fit. A `heartbeat` (a `Positions` frame) lists every partition the session holds.
    pub fn announce(&self, session: SessionId, positions: Vec<PartitionPosition>, heartbeat: bool) {
        let partitions = self.partitions.load(Ordering::Relaxed);
        self.trust
            .announce(&self.positions, partitions, session, positions, heartbeat);
    }

    /// The events pushed by `session` that may be delivered.
    pub fn admit(&self, session: SessionId, events: Vec<PushedEvent>) -> Vec<PushedEvent> {
        let partitions = self.partitions.load(Ordering::Relaxed);
        self.trust
            .admit(&self.positions, partitions, session, events)
    }

    /// Events from `session` were broadcast: per partition, the next offset after the last of them.
    pub fn passed(&self, session: SessionId, last: HashMap<TopicPartition, i64>) {
        self.trust.passed(&self.positions, session, last);
    }

    /// A push session ended: the partitions it held are free for another.
    pub fn session_ended(&self, session: SessionId) {
        self.trust.ended(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms() -> Rooms {
        let config: EdgeConfig = chorus_service::parse_args(&[]).expect("edge options");
        let metrics = EdgeMetrics::register(&prometheus::Registry::new()).expect("metrics");
        Rooms::new(&config, "events".to_owned(), 1, "00", metrics)
    }

    fn position(topic: &str, offset: i64) -> PartitionPosition {
        PartitionPosition::new(&TopicPartition::new(topic, 0), offset)
    }

    #[test]
    fn the_first_viewer_is_announced_with_where_the_pipeline_stands() {
        let rooms = rooms();
        rooms.announce(
            1,
            vec![position("events", 7), position("eu.events", 3)],
            true,
        );
        rooms.announce(1, vec![position("events", 5)], false);
        rooms.announce(2, vec![position("events", 9_000_000)], false);
        let mut announced = Vec::new();
        let room = rooms.enter("s", |stream, mut at| {
            at.sort_by(|a, b| a.topic.cmp(&b.topic));
            announced.push((stream.to_owned(), at));
        });
        assert_eq!(
            announced,
            [(
                "s".to_owned(),
                vec![position("eu.events", 3), position("events", 7)]
            )]
        );
        rooms.enter("s", |_, _| panic!("announced once"));
        let joined = rooms.join(&room);
        let offsets: Vec<_> = joined
            .join
            .iter()
            .map(|j| (j.topic.as_str(), j.offset))
            .collect();
        assert_eq!(offsets, [("events", Some(7)), ("eu.events", Some(3))]);
    }

    #[test]
    fn cursors_name_only_the_streams_partition_of_topics_known_to_carry_it() {
        let rooms = rooms();
        rooms.announce(1, vec![position("eu.events", 3)], true);
        let at = |topic: &str, partition| JoinPosition {
            topic: topic.to_owned(),
            partition,
            offset: Some(1),
        };
        assert!(rooms.carries("s", &[at("events", 0), at("eu.events", 0)]));
        assert!(rooms.carries("s", &[]));
        assert!(
            rooms.carries("s", &[at("us.events", 0)]),
            "a mirrored copy not seen yet (an edge that just started)"
        );
        assert!(!rooms.carries("s", &[at("secrets", 0)]), "a foreign topic");
        assert!(
            !rooms.carries("s", &[at("a.b.events", 0)]),
            "not a mirrored copy"
        );
        assert!(!rooms.carries("s", &[at("events", 1)]), "another partition");
    }

    #[test]
    fn the_room_closes_only_if_nobody_came_back_since_the_last_viewer_left() {
        let rooms = rooms();
        let room = rooms.enter("s", |_, _| {});
        let generation = rooms.leave(&room).expect("the last one left");
        let again = rooms.enter("s", |_, _| panic!("the room is still there"));
        rooms.close_if_empty(&room, generation, |_| panic!("a viewer came back"));
        let generation = rooms.leave(&again).expect("the last one left");
        let mut withdrawn = Vec::new();
        rooms.close_if_empty(&room, generation, |stream| {
            withdrawn.push(stream.to_owned())
        });
        assert_eq!(withdrawn, ["s"]);
        assert!(rooms.all().is_empty());
    }
}
