//! The rule of the `positions` module (written there), pure: what a push session's position or event does to
//! where the edge believes fanout stands. The caller passes the time and holds the locks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chorus_schemas::{PartitionPosition, TopicPartition};

/// One push session (one connection from a fanout instance).
pub type SessionId = u64;

/// Why a position was not adopted (or an event not delivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Invalid,
    NotOwner,
    Backwards,
    Ahead,
}

impl Refused {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Invalid => "invalid",
            Refused::NotOwner => "not_owner",
            Refused::Backwards => "backwards",
            Refused::Ahead => "ahead",
        }
    }
}

/// Who holds a partition's position, and since when it is current.
#[derive(Debug)]
struct Holder {
    /// `None` once the holder's session ended or let the partition go.
    session: Option<SessionId>,
    /// When the holder last announced the partition.
    heard: Instant,
    /// When the position was last adopted or confirmed.
    confirmed: Instant,
}

/// The rule, over the positions it guards (passed in: the rooms share that map with their viewers'
/// joins). Pure: the caller passes the time.
#[derive(Debug)]
pub struct Trust {
    holders: HashMap<TopicPartition, Holder>,
    events_topic: String,
    max_rate: u64,
    lapse: Duration,
}

/// The positions guarded, and the partition count of the events topics.
#[derive(Debug)]
pub struct Known<'a> {
    pub next: &'a mut HashMap<TopicPartition, i64>,
    pub partitions: i32,
}

impl Trust {
    /// `max_rate`: offsets a second a partition may advance (0: any); `lapse`: how long a holder may be silent.
    pub fn new(events_topic: String, max_rate: u64, lapse: Duration) -> Self {
        Trust {
            holders: HashMap::new(),
            events_topic,
            max_rate,
            lapse,
        }
    }

    /// A position `session` announced: adopted into `known` when it fits.
    pub fn claim(
        &mut self,
        known: &mut Known<'_>,
        session: SessionId,
        at: TopicPartition,
        offset: i64,
        now: Instant,
    ) -> Result<(), Refused> {
        if offset < 0 || !self.valid(&at, known.partitions) {
            return Err(Refused::Invalid);
        }
        let Some(current) = known.next.get(&at).copied() else {
            known.next.insert(at.clone(), offset);
            self.holders.insert(at, Holder::new(session, now));
            return Ok(());
        };
        let allowed = self.allowed(&at, now);
        let holder = self
            .holders
            .entry(at.clone())
            .or_insert_with(|| Holder::new(session, now));
        if holder.session == Some(session) {
            holder.heard = now;
            if offset < current {
                return Err(Refused::Backwards);
            }
        } else if holder.holds(now, self.lapse) {
            return Err(Refused::NotOwner);
        }
        if offset > current.saturating_add(allowed) {
            return Err(Refused::Ahead);
        }
        *holder = Holder::new(session, now);
        known.next.insert(at, offset);
        Ok(())
    }

    /// A `Positions` heartbeat lists every partition its session holds: the ones it left out are free.
    pub fn heartbeat(&mut self, session: SessionId, listed: &[PartitionPosition]) {
        for (at, holder) in &mut self.holders {
            let still = listed
                .iter()
                .any(|p| p.partition == at.partition && p.topic == at.topic);
            if holder.session == Some(session) && !still {
                holder.session = None;
            }
        }
    }

    /// Whether an event of `at` at `offset` pushed by `session` may be delivered.
    pub fn check_event(
        &self,
        known: &Known<'_>,
        session: SessionId,
        at: &TopicPartition,
        offset: i64,
        now: Instant,
    ) -> Result<(), Refused> {
        if offset < 0 || !self.valid(at, known.partitions) {
            return Err(Refused::Invalid);
        }
        let (Some(current), Some(holder)) = (known.next.get(at), self.holders.get(at)) else {
            return Ok(());
        };
        let beyond = offset >= current.saturating_add(self.allowed(at, now));
        if beyond && holder.session != Some(session) {
            return Err(Refused::Ahead);
        }
        Ok(())
    }

    /// Events of `at` up to `next_offset` (exclusive) were delivered from `session`: the holder's move the
    /// position, within rule 3.
    pub fn passed(
        &mut self,
        next: &mut HashMap<TopicPartition, i64>,
        session: SessionId,
        at: &TopicPartition,
        next_offset: i64,
        now: Instant,
    ) {
        let allowed = self.allowed(at, now);
        let (Some(current), Some(holder)) = (next.get_mut(at), self.holders.get_mut(at)) else {
            return;
        };
        if holder.session == Some(session)
            && next_offset > *current
            && next_offset <= current.saturating_add(allowed)
        {
            *current = next_offset;
            holder.confirmed = now;
        }
    }

    /// `session` ended: the partitions it held are free.
    pub fn ended(&mut self, session: SessionId) {
        for holder in self.holders.values_mut() {
            if holder.session == Some(session) {
                holder.session = None;
            }
        }
    }

    /// The session holding `at` now, if one does.
    pub fn holder(&self, at: &TopicPartition, now: Instant) -> Option<SessionId> {
        self.holders
            .get(at)
            .filter(|h| h.holds(now, self.lapse))
            .and_then(|h| h.session)
    }

    /// How far past the current position of `at` a new one may be, now.
    fn allowed(&self, at: &TopicPartition, now: Instant) -> i64 {
        if self.max_rate == 0 {
            return i64::MAX;
        }
        let since = self.holders.get(at).map_or(Duration::ZERO, |h| {
            now.saturating_duration_since(h.confirmed)
        });
        let seconds = since.as_secs_f64().max(1.0);
        // Saturates at i64::MAX for absurd rates or ages.
        (self.max_rate as f64 * seconds) as i64
    }

    /// `events` or a mirrored `<region>.events` (the region one name without dots), in range.
    fn valid(&self, at: &TopicPartition, partitions: i32) -> bool {
        let events = self.events_topic.as_str();
        let mirrored = at
            .topic
            .strip_suffix(events)
            .and_then(|region| region.strip_suffix('.'))
            .is_some_and(|region| !region.is_empty() && !region.contains('.'));
        (at.topic == events || mirrored) && (0..partitions.max(1)).contains(&at.partition)
    }
}

impl Holder {
    fn new(session: SessionId, now: Instant) -> Self {
        Holder {
            session: Some(session),
            heard: now,
            confirmed: now,
        }
    }

    /// Whether a session still holds the partition at `now`.
    fn holds(&self, now: Instant, lapse: Duration) -> bool {
        self.session.is_some() && now.saturating_duration_since(self.heard) < lapse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FANOUT: SessionId = 1;
    const OTHER: SessionId = 2;

    struct Edge {
        trust: Trust,
        next: HashMap<TopicPartition, i64>,
        start: Instant,
    }

    impl Edge {
        fn new() -> Self {
            Edge {
                trust: Trust::new("events".into(), 1_000, Duration::from_secs(1)),
                next: HashMap::new(),
                start: Instant::now(),
            }
        }

        fn at_ms(&self, ms: u64) -> Instant {
            self.start + Duration::from_millis(ms)
        }

        fn claim(&mut self, session: SessionId, offset: i64, ms: u64) -> Result<(), Refused> {
            let now = self.at_ms(ms);
            let mut known = Known {
                next: &mut self.next,
                partitions: 4,
            };
            self.trust.claim(&mut known, session, tp(), offset, now)
        }

        fn event(&mut self, session: SessionId, offset: i64, ms: u64) -> Result<(), Refused> {
            let now = self.at_ms(ms);
            let known = Known {
                next: &mut self.next,
                partitions: 4,
            };
            self.trust
                .check_event(&known, session, &tp(), offset, now)?;
            self.trust
                .passed(known.next, session, &tp(), offset + 1, now);
            Ok(())
        }

        fn position(&self) -> Option<i64> {
            self.next.get(&tp()).copied()
        }
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("events", 0)
    }

    #[test]
    fn the_holder_moves_forward_at_a_believable_pace_and_nothing_else_moves_it() {
        let mut edge = Edge::new();
        assert_eq!(edge.claim(FANOUT, 100, 0), Ok(()), "first sight");
        assert_eq!(edge.claim(FANOUT, 150, 50), Ok(()));
        assert_eq!(edge.claim(FANOUT, 140, 100), Err(Refused::Backwards));
        assert_eq!(edge.claim(FANOUT, 100_150, 150), Err(Refused::Ahead));
        assert_eq!(edge.claim(OTHER, 160, 200), Err(Refused::NotOwner));
        assert_eq!(edge.claim(OTHER, 100_000, 200), Err(Refused::NotOwner));
        assert_eq!(edge.claim(FANOUT, -1, 250), Err(Refused::Invalid));
        assert_eq!(edge.position(), Some(150), "no refused position adopted");
        assert_eq!(edge.claim(FANOUT, 1_000, 300), Ok(()), "a second's worth");
    }

    #[test]
    fn a_position_refused_during_a_burst_fits_once_time_caught_up() {
        let mut edge = Edge::new();
        edge.claim(FANOUT, 0, 0).expect("first");
        assert_eq!(edge.claim(FANOUT, 3_000, 50), Err(Refused::Ahead));
        assert_eq!(edge.claim(FANOUT, 3_100, 3_500), Ok(()));
    }

    #[test]
    fn a_partition_changes_hands_when_its_holder_lets_it_go_ends_or_falls_silent() {
        let mut edge = Edge::new();
        edge.claim(FANOUT, 500, 0).expect("first");
        edge.trust.heartbeat(FANOUT, &[]);
        assert_eq!(edge.claim(OTHER, 450, 10), Ok(()), "may start lower");
        assert_eq!(edge.claim(FANOUT, 600, 20), Err(Refused::NotOwner));
        edge.trust.ended(OTHER);
        assert_eq!(edge.claim(FANOUT, 600, 30), Ok(()));
        assert_eq!(edge.claim(OTHER, 700, 900), Err(Refused::NotOwner));
        assert_eq!(edge.claim(OTHER, 700, 1_100), Ok(()), "the holder lapsed");
        assert_eq!(edge.position(), Some(700));
    }

    #[test]
    fn events_move_the_position_only_from_the_holder_and_unbelievable_ones_are_dropped() {
        let mut edge = Edge::new();
        edge.claim(FANOUT, 10, 0).expect("first");
        assert_eq!(edge.event(FANOUT, 10, 10), Ok(()));
        assert_eq!(edge.position(), Some(11));
        assert_eq!(edge.event(OTHER, 11, 20), Ok(()), "delivered");
        assert_eq!(edge.position(), Some(11), "not the holder's");
        assert_eq!(edge.event(OTHER, 5_000, 30), Err(Refused::Ahead));
        assert_eq!(edge.event(FANOUT, 3, 40), Ok(()), "a repeat is no claim");
        assert_eq!(
            edge.event(FANOUT, 5_000, 50),
            Ok(()),
            "the holder's are real"
        );
        assert_eq!(edge.position(), Some(11), "but too far to adopt at once");
    }

    #[test]
    fn only_events_topics_and_known_partitions_are_valid() {
        let mut edge = Edge::new();
        let now = edge.at_ms(0);
        let mut known = Known {
            next: &mut edge.next,
            partitions: 4,
        };
        let mut claim = |topic: &str, partition: i32| {
            edge.trust.claim(
                &mut known,
                FANOUT,
                TopicPartition::new(topic, partition),
                1,
                now,
            )
        };
        assert_eq!(claim("eu.events", 3), Ok(()));
        assert_eq!(claim("events", 4), Err(Refused::Invalid));
        assert_eq!(claim("subscriptions", 0), Err(Refused::Invalid));
        assert_eq!(claim("a.b.events", 0), Err(Refused::Invalid));
        assert_eq!(claim(".events", 0), Err(Refused::Invalid));
    }
}
