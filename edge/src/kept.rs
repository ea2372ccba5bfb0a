//! The frames a room keeps for viewers coming back with a cursor: its last frames (at most a count, none
//! older than the resume window), and per topic the offset from which on they hold every event of the
//! stream (the first viewer's join position, where fanout's gap fill starts; a topic first seen later, from
//! its first event; moved up as frames are dropped). Pure: the room holds it under its lock and passes the
//! time in.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::frames::{JoinPosition, StreamFrame};

#[derive(Debug)]
pub struct Kept {
    frames: VecDeque<(Instant, Arc<StreamFrame>)>,
    from: HashMap<String, i64>,
    cap: usize,
    window: Duration,
}

impl Kept {
    /// `from`: per topic, where the room starts holding every event.
    pub fn new(from: HashMap<String, i64>, cap: usize, window: Duration) -> Self {
        Kept {
            frames: VecDeque::new(),
            from,
            cap: cap.max(1),
            window,
        }
    }

    /// An event of `topic` at `offset` is being broadcast: a topic not held yet is held from it on.
    pub fn saw(&mut self, topic: &str, offset: i64) {
        if !self.from.contains_key(topic) {
            self.from.insert(topic.to_owned(), offset);
        }
    }

    /// Where holding starts, per topic.
    pub fn from(&self) -> impl Iterator<Item = (&String, &i64)> {
        self.from.iter()
    }

    /// Keeps `frame`, broadcast `now`, dropping what is over the count or older than the window.
    pub fn keep(&mut self, frame: Arc<StreamFrame>, now: Instant) {
        while self.frames.len() >= self.cap
            || self
                .frames
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > self.window)
        {
            let Some((_, dropped)) = self.frames.pop_front() else {
                break;
            };
            for c in &dropped.cursor {
                let Some(next) = c.offset else { continue };
                let from = self.from.entry(c.topic.clone()).or_insert(next);
                *from = (*from).max(next);
            }
        }
        self.frames.push_back((now, frame));
    }

    /// Whether every event after `cursor` is held (a position per topic held, each at or after where holding
    /// starts).
    pub fn covers(&self, cursor: &[JoinPosition]) -> bool {
        let at = |topic: &str| {
            cursor
                .iter()
                .find(|c| c.topic == topic)
                .and_then(|c| c.offset)
        };
        cursor.iter().all(|c| c.offset.is_some())
            && self
                .from
                .iter()
                .all(|(topic, from)| at(topic).is_some_and(|o| o >= *from))
    }

    /// Re-encodes the kept frames holding a comment `taken_down` without it (a frame left with nothing is
    /// dropped; the frames after it still carry the cursor past it).
    pub fn take_down(&mut self, stream_id: &str, taken_down: &dyn Fn(&str) -> bool) {
        self.frames = std::mem::take(&mut self.frames)
            .into_iter()
            .filter_map(|(at, frame)| {
                if !frame.holds_any(taken_down) {
                    return Some((at, frame));
                }
                Some((at, Arc::new(frame.without(stream_id, taken_down)?)))
            })
            .collect();
    }

    /// The kept frames with events after `cursor`, oldest first.
    pub fn after(&self, cursor: &[JoinPosition]) -> Vec<Arc<StreamFrame>> {
        self.frames
            .iter()
            .filter(|(_, f)| f.event_count(cursor) > 0)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chorus_schemas::wire::PushedEvent;
    use chorus_schemas::{EventKind, StreamEvent, UserRole};

    use super::*;

    fn at(offset: i64) -> Vec<JoinPosition> {
        vec![JoinPosition {
            topic: "events".into(),
            partition: 0,
            offset: Some(offset),
        }]
    }

    /// A frame of one event at `offset`, its cursor just after it.
    fn frame(offset: i64) -> Arc<StreamFrame> {
        let event = PushedEvent {
            topic: "events".into(),
            partition: 0,
            offset,
            event: StreamEvent {
                event_id: format!("e{offset}"),
                stream_id: "s".into(),
                user_id: "u".into(),
                kind: EventKind::Comment,
                text: Some("hi".into()),
                created_ms: 0,
                origin: "r".into(),
                role: UserRole::default(),
                retraction: None,
            },
        };
        let frame = StreamFrame::encode("s", vec![event], &"00".into(), at(offset + 1));
        Arc::new(frame.expect("a frame"))
    }

    fn kept(cap: usize) -> (Kept, Instant) {
        let now = Instant::now();
        let from = HashMap::from([("events".to_owned(), 10)]);
        (Kept::new(from, cap, Duration::from_secs(60)), now)
    }

    #[test]
    fn a_cursor_from_where_holding_starts_is_covered_and_gets_what_came_after() {
        let (mut kept, now) = kept(10);
        for offset in [10, 12, 15] {
            kept.keep(frame(offset), now);
        }
        assert!(kept.covers(&at(10)) && kept.covers(&at(13)));
        assert!(!kept.covers(&at(9)), "before the room held the stream");
        let after: Vec<_> = kept
            .after(&at(13))
            .iter()
            .map(|f| f.events[0].offset)
            .collect();
        assert_eq!(after, [15]);
        let none = vec![JoinPosition {
            offset: None,
            ..at(0).remove(0)
        }];
        assert!(!kept.covers(&none), "an unknown position is never covered");
    }

    #[test]
    fn dropped_frames_move_where_holding_starts() {
        let (mut kept, now) = kept(2);
        for offset in [10, 12, 15] {
            kept.keep(frame(offset), now);
        }
        assert!(!kept.covers(&at(10)), "the frame of 10 was dropped");
        assert!(kept.covers(&at(11)), "everything from 11 on is still here");
        let (mut aged, now) = kept_with_window(Duration::from_millis(10));
        aged.keep(frame(10), now);
        aged.keep(frame(12), now + Duration::from_millis(50));
        assert!(
            !aged.covers(&at(10)),
            "the frame of 10 is older than the window"
        );
        assert!(aged.covers(&at(11)));
    }

    fn kept_with_window(window: Duration) -> (Kept, Instant) {
        let from = HashMap::from([("events".to_owned(), 10)]);
        (Kept::new(from, 10, window), Instant::now())
    }

    #[test]
    fn a_topic_first_seen_later_is_held_from_its_first_event() {
        let (mut kept, _) = kept(10);
        kept.saw("eu.events", 40);
        kept.saw("eu.events", 41);
        let mut cursor = at(10);
        cursor.push(JoinPosition {
            topic: "eu.events".into(),
            partition: 0,
            offset: Some(39),
        });
        assert!(!kept.covers(&cursor));
        cursor[1].offset = Some(40);
        assert!(kept.covers(&cursor));
    }
}
