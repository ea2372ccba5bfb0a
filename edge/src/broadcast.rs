//! How what fanout pushes reaches the viewers: a batch of events is split by stream and offered to each
//! stream's room (which drops repeats and broadcasts, or keeps the events to go out together); likes are
//! paced per room; the flush tick sends what waited long enough.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_schemas::wire::PushedEvent;
use chorus_schemas::TopicPartition;
use chorus_service::clock;
use tokio_util::sync::CancellationToken;

use crate::coalesce::Coalescing;
use crate::config::EdgeConfig;
use crate::likes::LikesPacing;
use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;
use crate::positions::SessionId;
use crate::room::{lock, Room};
use crate::rooms::Rooms;

/// The flush tick when neither coalescing nor likes pacing sets one: held viewer counts (one a second) leave
/// at most this late.
const VIEWERS_TICK: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Broadcast {
    rooms: Arc<Rooms>,
    coalescing: Option<Coalescing>,
    /// How often the flush tick looks at the rooms that wait.
    flush_tick: Duration,
    /// Rooms with events or likes waiting for a flush tick.
    waiting: Mutex<Vec<Arc<Room>>>,
    metrics: EdgeMetrics,
}

impl Broadcast {
    pub fn new(config: &EdgeConfig, rooms: Arc<Rooms>, metrics: EdgeMetrics) -> Self {
        let coalescing = Coalescing::from_config(config);
        // Coalescing's own tick when it is on (its waits are counted in it); held likes are looked at then.
        let flush_tick = coalescing
            .map(|c| c.tick())
            .or_else(|| LikesPacing::tick(config.likes_interval()))
            .unwrap_or(VIEWERS_TICK);
        Broadcast {
            rooms,
            coalescing,
            flush_tick,
            waiting: Mutex::default(),
            metrics,
        }
    }

    /// The rooms it broadcasts to.
    pub fn rooms(&self) -> &Arc<Rooms> {
        &self.rooms
    }

    pub fn metrics(&self) -> &EdgeMetrics {
        &self.metrics
    }

    /// Every flush tick until `stop`, sends the coalesced events and the held likes whose wait is over.
    pub async fn flush_every(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.flush_tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => self.flush(Instant::now()),
            }
        }
    }

    fn flush(&self, now: Instant) {
        let waiting = std::mem::take(&mut *lock(&self.waiting));
        let still: Vec<Arc<Room>> = waiting
            .into_iter()
            .filter(|room| room.flush(now, self.coalescing.as_ref(), &self.metrics))
            .collect();
        if !still.is_empty() {
            lock(&self.waiting).extend(still);
        }
    }

    /// Broadcasts a batch from push session `session` to the viewers of each stream in it (the events the
    /// `positions` rule lets through).
    pub fn deliver(&self, session: SessionId, events: Vec<PushedEvent>) {
        Occurrence::EventsReceived {
            count: events.len(),
        }
        .emit(&self.metrics);
        let events = self.rooms.admit(session, events);
        let now = clock::now_ms();
        let mut by_stream: HashMap<String, Vec<PushedEvent>> = HashMap::new();
        let mut last: HashMap<TopicPartition, i64> = HashMap::new();
        for event in events {
            Occurrence::EventAge {
                topic: &event.topic,
                age_ms: now.saturating_sub(event.event.created_ms),
            }
            .emit(&self.metrics);
            let slot = last
                .entry(TopicPartition::new(&event.topic, event.partition))
                .or_insert(event.offset);
            *slot = (*slot).max(event.offset);
            by_stream
                .entry(event.event.stream_id.clone())
                .or_default()
                .push(event);
        }
        for (stream_id, events) in by_stream {
            match self.rooms.room(&stream_id) {
                Some(room) => {
                    if room.offer_events(events, self.coalescing.is_some(), &self.metrics) {
                        lock(&self.waiting).push(room);
                    }
                }
                None => Occurrence::Unrouted {
                    count: events.len(),
                }
                .emit(&self.metrics),
            }
        }
        self.rooms.passed(
            session,
            last.into_iter()
                .map(|(at, offset)| (at, offset + 1))
                .collect(),
        );
    }

    /// Fanout's likes of a stream for one tick (see [`crate::likes`]).
    pub fn likes(&self, stream_id: &str, delta: u64, total: u64) {
        self.likes_at(stream_id, delta, total, Instant::now());
    }

    fn likes_at(&self, stream_id: &str, delta: u64, total: u64, now: Instant) {
        let Some(room) = self.rooms.room(stream_id) else {
            return;
        };
        if room.offer_likes(delta, total, now, &self.metrics) {
            lock(&self.waiting).push(room);
        }
    }

    /// Fanout's count of a stream's viewers everywhere (see [`crate::viewers`]).
    pub fn viewers(&self, stream_id: &str, count: u64) {
        let Some(room) = self.rooms.room(stream_id) else {
            return;
        };
        if room.offer_viewers(count, Instant::now(), &self.metrics) {
            lock(&self.waiting).push(room);
        }
    }

    /// Comments of a stream that its budget left out: the viewers are told how many.
    pub fn sampled(&self, stream_id: &str, left_out: u64) {
        if let Some(room) = self.rooms.room(stream_id) {
            room.sampled(left_out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tokio::sync::broadcast::Receiver;

    use crate::frames::StreamFrame;

    fn edge(args: &[&str]) -> (Broadcast, Arc<Room>, EdgeMetrics) {
        let config: EdgeConfig = chorus_service::parse_args(args).expect("edge options");
        let metrics = EdgeMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let rooms = Arc::new(Rooms::new(
            &config,
            "events".into(),
            1,
            "00",
            metrics.clone(),
        ));
        let room = rooms.enter("s", |_, _| {});
        (
            Broadcast::new(&config, rooms, metrics.clone()),
            room,
            metrics,
        )
    }

    fn likes_seen(frames: &mut Receiver<Arc<StreamFrame>>) -> Vec<(u64, u64)> {
        std::iter::from_fn(|| frames.try_recv().ok())
            .filter_map(|f| f.likes.as_ref().map(|(_, text)| text.clone()))
            .map(|text| {
                let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                let number = |field: &str| frame[field].as_u64().expect("number");
                (number("delta"), number("total"))
            })
            .collect()
    }

    #[test]
    fn bunched_likes_reach_the_viewers_one_interval_apart() {
        let (broadcast, room, metrics) = edge(&["--likes-interval-ms", "200"]);
        let mut frames = broadcast.rooms.join(&room).frames;
        let start = Instant::now();
        let ms = Duration::from_millis;
        broadcast.likes_at("s", 24, 24, start);
        broadcast.likes_at("s", 30, 54, start + ms(6));
        broadcast.likes_at("s", 16, 70, start + ms(97));
        assert_eq!(likes_seen(&mut frames), [(24, 24)]);
        assert_eq!(
            broadcast.rooms.join(&room).likes_total,
            70,
            "hello has the held total"
        );
        broadcast.flush(start + ms(150));
        assert_eq!(likes_seen(&mut frames), []);
        broadcast.flush(start + ms(200));
        assert_eq!(likes_seen(&mut frames), [(46, 70)]);
        assert_eq!(metrics.feed.likes_frames.get(), 2, "counted when broadcast");
        broadcast.flush(start + ms(500));
        assert_eq!(likes_seen(&mut frames), [], "nothing held twice");
    }

    #[test]
    fn a_total_without_new_likes_still_reaches_the_viewers_and_a_known_one_does_not() {
        let (broadcast, room, metrics) = edge(&["--likes-interval-ms", "0", "--coalesce-ms", "0"]);
        assert_eq!(
            broadcast.flush_tick, VIEWERS_TICK,
            "only viewer counts wait"
        );
        let mut frames = broadcast.rooms.join(&room).frames;
        broadcast.likes("s", 0, 120);
        broadcast.likes("s", 0, 120);
        broadcast.likes("s", 2, 122);
        assert_eq!(likes_seen(&mut frames), [(0, 120), (2, 122)]);
        assert_eq!(metrics.feed.likes_frames.get(), 2);
    }

    #[test]
    fn the_flush_tick_runs_for_likes_when_coalescing_is_off() {
        let (broadcast, _, _) = edge(&["--coalesce-ms", "0"]);
        assert_eq!(broadcast.flush_tick, Duration::from_millis(20));
        let (broadcast, _, _) = edge(&[]);
        assert_eq!(broadcast.flush_tick, Duration::from_millis(5));
    }
}
