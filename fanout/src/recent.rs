//! The recent events of each owned partition, as routed to viewers (after the comment budget), for gap fill
//! and resume: a stream's first viewer on an edge joins at some position, but its subscription reaches fanout
//! a little later, so the edge first gets the events it missed in between; an edge whose lease lapsed and came
//! back gets those routed while it had no link; a viewer coming back with a cursor gets those routed since it.
//! Each buffer is bounded by count and by age (the resume window), and knows from which offset on it holds
//! every routed event: an answer that cannot reach back that far says so. Pure: the router holds it under its
//! lock and passes the time in.

use std::collections::{HashMap, VecDeque};

use chorus_schemas::wire::PushedEvent;
use chorus_schemas::{PartitionPosition, TopicPartition};

use crate::positions::Positions;

/// What a gap fill found: the events to send, and the partitions whose buffer did not reach back far enough
/// (their older events are gone; the edge's viewers miss them). A replay also names the partitions where the
/// position asked for is ahead of this instance's (a position of another log: a recreated topic).
#[derive(Debug, Default, PartialEq)]
pub struct GapFill {
    pub events: Vec<PushedEvent>,
    pub short: Vec<TopicPartition>,
    pub ahead: Vec<TopicPartition>,
}

impl GapFill {
    /// The events as one frame for the edge (none when there are none), how many, and the partitions it
    /// falls short in.
    pub fn into_frame(
        self,
    ) -> (
        Option<chorus_schemas::wire::PushFrame>,
        u64,
        Vec<TopicPartition>,
    ) {
        let filled = self.events.len() as u64;
        let frame = (filled > 0).then_some(chorus_schemas::wire::PushFrame::Events(self.events));
        (frame, filled, self.short)
    }

    /// This fill as the answer to the edge's replay request `request`.
    pub fn replayed(self, request: u64) -> chorus_schemas::wire::PushFrame {
        chorus_schemas::wire::PushFrame::Replayed {
            request,
            events: self.events,
            short: self.short,
            ahead: self.ahead,
        }
    }
}

#[derive(Debug)]
pub struct Recent {
    /// Most events kept per partition (0: none, no gap fill).
    cap: usize,
    /// Events created longer ago than this are dropped.
    max_age_ms: i64,
    /// Per owned partition, what it holds.
    buffers: HashMap<TopicPartition, Held>,
}

/// One partition's routed events, oldest first: every one routed at or after `from` is among them.
#[derive(Debug)]
struct Held {
    from: i64,
    events: VecDeque<PushedEvent>,
}

impl Held {
    /// Whether every routed event at or after `offset` is held.
    fn reaches(&self, offset: i64) -> bool {
        self.from <= offset
    }
}

impl Recent {
    pub fn new(cap: usize, max_age_ms: i64) -> Self {
        Recent {
            cap,
            max_age_ms,
            buffers: HashMap::new(),
        }
    }

    /// The record at `offset` of `at` passed (routed or not): holding starts at the first one seen.
    pub fn saw(&mut self, at: &TopicPartition, offset: i64) {
        if !self.buffers.contains_key(at) {
            let held = Held {
                from: offset,
                events: VecDeque::new(),
            };
            self.buffers.insert(at.clone(), held);
        }
    }

    /// Keeps `pushed` in its partition's buffer, dropping what is over the count or too old at `now_ms`.
    pub fn remember(&mut self, pushed: &PushedEvent, now_ms: i64) {
        let at = TopicPartition::new(&pushed.topic, pushed.partition);
        self.saw(&at, pushed.offset);
        let Some(held) = self.buffers.get_mut(&at) else {
            return;
        };
        held.events.push_back(pushed.clone());
        let oldest_kept = now_ms - self.max_age_ms;
        while held.events.len() > self.cap
            || held
                .events
                .front()
                .is_some_and(|e| e.event.created_ms < oldest_kept)
        {
            if let Some(dropped) = held.events.pop_front() {
                held.from = held.from.max(dropped.offset + 1);
            }
        }
    }

    /// The buffered events of `stream` at or after `since`, for a resuming viewer: like a gap fill, but a
    /// partition not owned here is short too (its events cannot come from here).
    pub fn replay(
        &self,
        stream: &str,
        since: &[PartitionPosition],
        positions: &Positions,
    ) -> GapFill {
        let mut fill = self.gap_fill(stream, since, positions);
        for position in since {
            let at = position.topic_partition();
            match positions.next(&at) {
                None => fill.short.push(at),
                Some(next) if next < position.offset => fill.ahead.push(at),
                Some(_) => {}
            }
        }
        fill
    }

    /// A partition taken away: its events are no longer this instance's to fill gaps with.
    pub fn forget(&mut self, at: &TopicPartition) {
        self.buffers.remove(at);
    }

    /// The buffered events of `stream` at or after `since` (a join position per partition), in the partitions
    /// `positions` says this instance owns and where something passed since.
    pub fn gap_fill(
        &self,
        stream: &str,
        since: &[PartitionPosition],
        positions: &Positions,
    ) -> GapFill {
        let mut fill = GapFill::default();
        for position in since {
            let at = position.topic_partition();
            let Some(next) = positions.next(&at) else {
                continue; // not a partition this instance owns
            };
            if next <= position.offset {
                continue; // nothing passed since the join
            }
            let held = self.buffers.get(&at);
            let reaches = held.is_some_and(|h| h.reaches(position.offset));
            fill.events.extend(
                held.into_iter()
                    .flat_map(|h| &h.events)
                    .filter(|e| e.offset >= position.offset && e.event.stream_id == stream)
                    .cloned(),
            );
            if !reaches {
                fill.short.push(at);
            }
        }
        fill
    }

    /// For an edge whose lease lapsed at `stopped_at` and came back: one gap fill per stream it subscribed to.
    pub fn refill<'s>(
        &self,
        streams: impl IntoIterator<Item = &'s String>,
        stopped_at: &[PartitionPosition],
        positions: &Positions,
    ) -> Vec<GapFill> {
        streams
            .into_iter()
            .map(|stream| self.gap_fill(stream, stopped_at, positions))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chorus_schemas::{EventKind, StreamEvent, UserRole};

    use super::*;

    const STALE_MS: i64 = 5_000;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition::new("events", partition)
    }

    fn event(stream: &str, partition: i32, offset: i64, created_ms: i64) -> PushedEvent {
        PushedEvent {
            topic: "events".into(),
            partition,
            offset,
            event: StreamEvent {
                event_id: format!("{stream}-{partition}-{offset}"),
                stream_id: stream.into(),
                user_id: "u".into(),
                kind: EventKind::Comment,
                text: Some("hi".into()),
                created_ms,
                origin: "r".into(),
                role: UserRole::default(),
                retraction: None,
            },
        }
    }

    /// A buffer of `cap` that saw `events` routed as the router routes them (each moves its partition's
    /// position), each at its creation time.
    fn routed(cap: usize, events: &[PushedEvent]) -> (Recent, Positions) {
        let (mut recent, mut positions) = (Recent::new(cap, STALE_MS), Positions::default());
        for e in events {
            positions.passed(&tp(e.partition), e.offset);
            recent.remember(e, e.event.created_ms);
        }
        (recent, positions)
    }

    fn offsets(fill: &GapFill) -> Vec<i64> {
        fill.events.iter().map(|e| e.offset).collect()
    }

    fn at(partition: i32, offset: i64) -> PartitionPosition {
        PartitionPosition::new(&tp(partition), offset)
    }

    #[test]
    fn the_buffer_is_bounded_by_count() {
        let events: Vec<_> = (0..5).map(|o| event("s", 0, o, 1_000)).collect();
        let (recent, positions) = routed(3, &events);
        let fill = recent.gap_fill("s", &[at(0, 0)], &positions);
        assert_eq!(offsets(&fill), [2, 3, 4]);
        assert_eq!(fill.short, [tp(0)], "offsets 0 and 1 are gone");
        let (recent, positions) = routed(0, &events);
        let fill = recent.gap_fill("s", &[at(0, 0)], &positions);
        assert!(fill.events.is_empty(), "a buffer of 0 keeps nothing");
    }

    #[test]
    fn the_buffer_is_bounded_by_age() {
        let created = [0, 4_000, 6_000];
        let events: Vec<_> = (0..3)
            .map(|o| event("s", 0, o, created[o as usize]))
            .collect();
        let (recent, positions) = routed(100, &events);
        let fill = recent.gap_fill("s", &[at(0, 1)], &positions);
        assert_eq!(
            offsets(&fill),
            [1, 2],
            "created at 0, older than 5 s at 6 s"
        );
        assert!(fill.short.is_empty());
        assert_eq!(recent.gap_fill("s", &[at(0, 0)], &positions).short, [tp(0)]);
    }

    #[test]
    fn gap_fill_sends_only_the_streams_events_at_or_after_the_join() {
        let events = [
            event("s", 0, 10, 0),
            event("other", 0, 11, 0),
            event("s", 0, 12, 0),
            event("s", 1, 3, 0),
            event("s", 1, 4, 0),
        ];
        let (recent, positions) = routed(100, &events);
        let fill = recent.gap_fill("s", &[at(0, 11), at(1, 4)], &positions);
        assert_eq!(offsets(&fill), [12, 4]);
        assert!(fill.short.is_empty(), "both buffers reach back to the join");
    }

    #[test]
    fn nothing_to_fill_when_nothing_passed_since_the_join() {
        let (recent, mut positions) = routed(100, &[event("s", 0, 5, 0)]);
        positions.seed(&tp(1), 40);
        // Not short either: nothing is missing.
        for since in [at(0, 6), at(1, 40)] {
            assert_eq!(
                recent.gap_fill("s", &[since], &positions),
                GapFill::default()
            );
        }
    }

    #[test]
    fn gap_fill_is_short_when_the_buffer_does_not_reach_back() {
        let (recent, mut positions) = routed(100, &[event("s", 0, 8, 0)]);
        let fill = recent.gap_fill("s", &[at(0, 5)], &positions);
        assert_eq!(offsets(&fill), [8]);
        assert_eq!(fill.short, [tp(0)]);
        // Owned, something passed, nothing buffered (a position moved on by likes only).
        positions.passed(&tp(1), 3);
        assert_eq!(recent.gap_fill("s", &[at(1, 2)], &positions).short, [tp(1)]);
    }

    #[test]
    fn nothing_for_a_partition_not_owned() {
        let (mut recent, mut positions) = routed(100, &[event("s", 0, 1, 0)]);
        assert_eq!(
            recent.gap_fill("s", &[at(7, 0)], &positions),
            GapFill::default()
        );
        positions.revoke(&tp(0));
        recent.forget(&tp(0));
        assert_eq!(
            recent.gap_fill("s", &[at(0, 0)], &positions),
            GapFill::default()
        );
    }

    #[test]
    fn refill_after_a_lapse_returns_what_was_routed_meanwhile_per_stream() {
        let before = [event("a", 0, 0, 0), event("b", 0, 1, 0)];
        let stopped_at = routed(100, &before).1.announce();
        let meanwhile = [
            event("a", 0, 2, 0),
            event("b", 0, 3, 0),
            event("c", 0, 4, 0),
        ];
        let (recent, positions) = routed(100, &[before.as_slice(), &meanwhile].concat());
        let streams = ["a".to_owned(), "b".to_owned()];
        let fills = recent.refill(&streams, &stopped_at, &positions);
        let got: Vec<_> = fills.iter().map(offsets).collect();
        assert_eq!(
            got,
            [vec![2], vec![3]],
            "not what the edge had, not other streams'"
        );
    }

    #[test]
    fn records_not_kept_between_held_events_do_not_make_a_replay_short() {
        let (mut recent, mut positions) = (Recent::new(100, STALE_MS), Positions::default());
        // A like at 20 (counted, not kept), then comments at 21 and 22: a viewer at 20 missed nothing held.
        positions.passed(&tp(0), 20);
        recent.saw(&tp(0), 20);
        for offset in [21, 22] {
            let e = event("s", 0, offset, 0);
            positions.passed(&tp(0), offset);
            recent.remember(&e, 0);
        }
        let fill = recent.replay("s", &[at(0, 20)], &positions);
        assert_eq!(offsets(&fill), [21, 22]);
        assert!(fill.short.is_empty());
        assert_eq!(
            recent.replay("s", &[at(0, 19)], &positions).short,
            [tp(0)],
            "before the first record this instance saw"
        );
    }

    #[test]
    fn a_replay_is_short_where_events_were_dropped_or_the_partition_is_not_owned() {
        let events: Vec<_> = (0..5).map(|o| event("s", 0, o, 1_000)).collect();
        let (recent, positions) = routed(3, &events);
        let fill = recent.replay("s", &[at(0, 2)], &positions);
        assert_eq!((offsets(&fill), fill.short), (vec![2, 3, 4], vec![]));
        assert_eq!(recent.replay("s", &[at(0, 1)], &positions).short, [tp(0)]);
        assert_eq!(recent.replay("s", &[at(3, 0)], &positions).short, [tp(3)]);
        let fill = recent.replay("s", &[at(0, 9)], &positions);
        assert_eq!(
            (fill.ahead, fill.short),
            (vec![tp(0)], vec![]),
            "beyond offset 4"
        );
    }
}
