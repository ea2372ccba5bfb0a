//! Which of fanout's positions the edge believes, so that no single frame, forged or mistaken, can stop
//! delivery.
//!
//! A position ("fanout handed on every event of this partition before offset N") comes in `Positions` and
//! `Subscribed` frames, and with each event (its offset + 1). The edge joins new viewers at the furthest
//! position it knows, and they are shown nothing before it; a stream's first viewer writes it into the
//! subscription, and fanout fills the gap from there. So a position too far ahead would hide every real event
//! from new viewers until the partition got there. A position is adopted only when it fits:
//!
//! 1. **One owner per partition.** Only the push session that holds a partition moves its position: the
//!    session of the fanout instance consuming it. A session takes a partition nobody holds: one never
//!    announced, or whose holder's session ended, left it out of a `Positions` heartbeat (the consumer group
//!    moved it), or has not announced it for `--position-owner-lapse-ms`. While a session holds it, anyone
//!    else's position is refused (`not_owner`).
//! 2. **Forward only.** The holder's positions never go back (`backwards`): fanout hands a partition on in
//!    offset order. A session taking a partition over may start below its predecessor (it resumes from
//!    committed offsets): its position replaces the old one.
//! 3. **At a believable pace.** A position further ahead of the current one than `--position-max-rate`
//!    offsets a second allow since the current one was confirmed (at least one second's worth) is refused
//!    (`ahead`): a partition fills only so fast. One refused during a burst faster than that fits once time
//!    has caught up, so a real position is late, never lost.
//! 4. An offset below 0, a topic that is no events topic (`events` or a mirrored `<region>.events`) or a
//!    partition beyond the count is refused (`invalid`).
//!
//! Events are delivered whoever pushes them (the internal token decides who may push at all), except an
//! invalid one, and one further ahead than rule 3 allows from a session that does not hold its partition
//! (`ahead`): it cannot be real while the holder has not got there, and it is dropped. The holder's events
//! move the position within rule 3; an event below it is no claim (a gap fill, a repeat). Refusals are counted
//! in `chorus_edge_positions_refused_total{reason}`. What this cannot tell apart: the first position of a
//! partition nobody holds is taken as it comes, from any authenticated session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chorus_schemas::wire::PushedEvent;
use chorus_schemas::{PartitionPosition, TopicPartition};

use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;
use crate::room::lock;
use crate::trust::Known;
pub use crate::trust::{Refused, SessionId, Trust};

/// [`Trust`] under its lock, applied to the positions under theirs (always taken second), counting refusals.
#[derive(Debug)]
pub struct Guard {
    trust: Mutex<Trust>,
    metrics: EdgeMetrics,
}

impl Guard {
    pub fn new(trust: Trust, metrics: EdgeMetrics) -> Self {
        Guard {
            trust: Mutex::new(trust),
            metrics,
        }
    }

    /// Positions `session` announced; a `heartbeat` (a `Positions` frame) lists all it holds.
    pub fn announce(
        &self,
        next: &Mutex<HashMap<TopicPartition, i64>>,
        partitions: i32,
        session: SessionId,
        positions: Vec<PartitionPosition>,
        heartbeat: bool,
    ) {
        let now = Instant::now();
        let mut trust = lock(&self.trust);
        if heartbeat {
            trust.heartbeat(session, &positions);
        }
        let mut next = lock(next);
        let mut known = Known {
            next: &mut next,
            partitions,
        };
        for p in positions {
            let claimed = trust.claim(&mut known, session, p.topic_partition(), p.offset, now);
            self.count(claimed);
        }
    }

    /// The events pushed by `session` that may be delivered.
    pub fn admit(
        &self,
        next: &Mutex<HashMap<TopicPartition, i64>>,
        partitions: i32,
        session: SessionId,
        events: Vec<PushedEvent>,
    ) -> Vec<PushedEvent> {
        let now = Instant::now();
        let trust = lock(&self.trust);
        let mut next = lock(next);
        let known = Known {
            next: &mut next,
            partitions,
        };
        events
            .into_iter()
            .filter(|e| {
                let at = TopicPartition::new(&e.topic, e.partition);
                self.count(trust.check_event(&known, session, &at, e.offset, now))
            })
            .collect()
    }

    /// Events from `session` were broadcast: per partition, the next offset after the last of them.
    pub fn passed(
        &self,
        next: &Mutex<HashMap<TopicPartition, i64>>,
        session: SessionId,
        last: HashMap<TopicPartition, i64>,
    ) {
        let now = Instant::now();
        let mut trust = lock(&self.trust);
        let mut next = lock(next);
        for (at, next_offset) in last {
            trust.passed(&mut next, session, &at, next_offset, now);
        }
    }

    /// The push session holding `at` now, if one does.
    pub fn holder(&self, at: &TopicPartition) -> Option<SessionId> {
        lock(&self.trust).holder(at, Instant::now())
    }

    /// A push session ended.
    pub fn ended(&self, session: SessionId) {
        lock(&self.trust).ended(session);
    }

    /// Counts a refusal; true when there was none.
    fn count(&self, outcome: Result<(), Refused>) -> bool {
        match outcome {
            Ok(()) => true,
            Err(refused) => {
                Occurrence::PositionRefused {
                    reason: refused.reason(),
                }
                .emit(&self.metrics);
                false
            }
        }
    }
}
