//! Comments taken down in a room: who wrote the room's recent comments (so a take-down of "everything user U
//! wrote since T", a ban's `retract_recent_s`, becomes a list of ids), and the ids taken down, so a comment
//! waiting to be coalesced, kept for returning viewers or replayed by fanout never reaches a viewer after its
//! take-down. Pure: the room holds it under its lock and passes the time in. Both logs are bounded by count
//! and by the resume window.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use chorus_schemas::wire::PushedEvent;
use chorus_schemas::{EventKind, Retraction};

#[derive(Debug)]
pub struct Takedowns {
    /// Recent comments broadcast here: (event id, author, created_ms, when seen).
    authors: VecDeque<(String, String, i64, Instant)>,
    /// Ids taken down, oldest first, and the same as a set.
    order: VecDeque<(String, Instant)>,
    taken: HashSet<String>,
    cap: usize,
    window: Duration,
}

impl Takedowns {
    pub fn new(cap: usize, window: Duration) -> Self {
        Takedowns {
            authors: VecDeque::new(),
            order: VecDeque::new(),
            taken: HashSet::new(),
            cap: cap.max(1),
            window,
        }
    }

    /// A comment is being broadcast.
    pub fn saw(&mut self, event: &PushedEvent, now: Instant) {
        if event.event.kind != EventKind::Comment {
            return;
        }
        let e = &event.event;
        self.authors
            .push_back((e.event_id.clone(), e.user_id.clone(), e.created_ms, now));
        while self.authors.len() > self.cap
            || self
                .authors
                .front()
                .is_some_and(|(.., at)| now.saturating_duration_since(*at) > self.window)
        {
            self.authors.pop_front();
        }
    }

    /// Makes every take-down among `events` name its comments by id (those of an author since a time, among
    /// the room's recent comments and `events` themselves), and remembers them. Returns the ids taken down.
    pub fn resolve(&mut self, events: &mut [PushedEvent], now: Instant) -> HashSet<String> {
        let mut ids = HashSet::new();
        let comments: Vec<(String, String, i64)> = events
            .iter()
            .filter(|e| e.event.kind == EventKind::Comment)
            .map(|e| {
                (
                    e.event.event_id.clone(),
                    e.event.user_id.clone(),
                    e.event.created_ms,
                )
            })
            .collect();
        for event in events.iter_mut() {
            let Some(retraction) = event.event.retraction.as_mut() else {
                continue;
            };
            let recent = self
                .authors
                .iter()
                .map(|(id, user, created, _)| (id, user, *created))
                .chain(
                    comments
                        .iter()
                        .map(|(id, user, created)| (id, user, *created)),
                );
            let by_author: Vec<String> = recent
                .filter(|(_, user, created)| authored(retraction, user, *created))
                .map(|(id, ..)| id.clone())
                .collect();
            for id in by_author {
                if !retraction.event_ids.contains(&id) {
                    retraction.event_ids.push(id);
                }
            }
            ids.extend(retraction.event_ids.iter().cloned());
        }
        for id in &ids {
            if self.taken.insert(id.clone()) {
                self.order.push_back((id.clone(), now));
            }
        }
        self.forget_old(now);
        ids
    }

    fn forget_old(&mut self, now: Instant) {
        while self.order.len() > self.cap
            || self
                .order
                .front()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) > self.window)
        {
            if let Some((id, _)) = self.order.pop_front() {
                self.taken.remove(&id);
            }
        }
    }

    /// Whether the comment `event_id` was taken down (within the window).
    pub fn taken_down(&self, event_id: &str) -> bool {
        self.taken.contains(event_id)
    }
}

fn authored(retraction: &Retraction, user: &str, created_ms: i64) -> bool {
    retraction
        .author
        .as_deref()
        .zip(retraction.since_ms)
        .is_some_and(|(author, since)| author == user && created_ms >= since)
}

/// `events` (fanout's replay of what a viewer missed) without the comments taken down: by the room
/// (`taken_down`), or by a take-down among the events themselves.
pub fn without_taken_down(
    mut events: Vec<PushedEvent>,
    taken_down: &dyn Fn(&str) -> bool,
) -> Vec<PushedEvent> {
    let retractions: Vec<Retraction> = events
        .iter()
        .filter_map(|e| e.event.retraction.clone())
        .collect();
    events.retain(|e| {
        e.event.kind != EventKind::Comment
            || !(taken_down(&e.event.event_id) || retractions.iter().any(|r| r.covers(&e.event)))
    });
    events
}

#[cfg(test)]
mod tests {
    use chorus_schemas::{StreamEvent, UserRole};

    use super::*;

    fn event(
        offset: i64,
        user: &str,
        kind: EventKind,
        retraction: Option<Retraction>,
    ) -> PushedEvent {
        PushedEvent {
            topic: "events".into(),
            partition: 0,
            offset,
            event: StreamEvent {
                event_id: format!("e{offset}"),
                stream_id: "s".into(),
                user_id: user.into(),
                kind,
                text: (kind == EventKind::Comment).then(|| "hi".into()),
                created_ms: offset * 1000,
                origin: "r".into(),
                role: UserRole::default(),
                retraction,
            },
        }
    }

    #[test]
    fn a_take_down_by_author_names_the_authors_recent_comments() {
        let now = Instant::now();
        let mut room = Takedowns::new(100, Duration::from_secs(60));
        for (offset, user) in [(1, "spam"), (2, "fan"), (3, "spam"), (4, "spam")] {
            room.saw(&event(offset, user, EventKind::Comment, None), now);
        }
        let since = Retraction {
            event_ids: vec![],
            author: Some("spam".into()),
            since_ms: Some(3000),
        };
        let mut batch = vec![
            event(5, "spam", EventKind::Comment, None),
            event(6, "mod", EventKind::Retract, Some(since)),
        ];
        let ids = room.resolve(&mut batch, now);
        let mut named = batch[1]
            .event
            .retraction
            .clone()
            .unwrap_or_default()
            .event_ids;
        named.sort();
        assert_eq!(
            named,
            ["e3", "e4", "e5"],
            "the ban's window, not e1, not the fan's"
        );
        assert_eq!(ids.len(), 3);
        assert!(room.taken_down("e4") && !room.taken_down("e1") && !room.taken_down("e2"));
    }

    #[test]
    fn replays_lose_what_was_taken_down_and_take_downs_stay_bounded() {
        let by_id = Retraction {
            event_ids: vec!["e2".into()],
            author: None,
            since_ms: None,
        };
        let replay = vec![
            event(1, "a", EventKind::Comment, None),
            event(2, "b", EventKind::Comment, None),
            event(3, "c", EventKind::Comment, None),
            event(4, "m", EventKind::Retract, Some(by_id)),
        ];
        let kept = without_taken_down(replay, &|id| id == "e3");
        let ids: Vec<&str> = kept.iter().map(|e| e.event.event_id.as_str()).collect();
        assert_eq!(ids, ["e1", "e4"]);

        let now = Instant::now();
        let mut room = Takedowns::new(2, Duration::from_secs(60));
        for n in 0..5 {
            let r = Retraction {
                event_ids: vec![format!("x{n}")],
                ..Retraction::default()
            };
            room.resolve(&mut [event(n, "m", EventKind::Retract, Some(r))], now);
        }
        assert!(room.taken_down("x4") && room.taken_down("x3") && !room.taken_down("x0"));
        room.resolve(&mut [], now + Duration::from_secs(61));
        assert!(!room.taken_down("x4"), "forgotten after the window");
    }
}
