//! Where each partition this instance owns stands: the next offset it hands on. Edges learn them from
//! `Positions` and `Subscribed` frames (every event at or after them will be pushed), and gap fill measures
//! against them whether anything passed since a viewer joined.

use std::collections::HashMap;

use chorus_schemas::{PartitionPosition, TopicPartition};

#[derive(Debug, Default)]
pub struct Positions {
    next: HashMap<TopicPartition, i64>,
}

impl Positions {
    /// The event at `offset` of `at` was routed: the partition now stands after it.
    pub fn passed(&mut self, at: &TopicPartition, offset: i64) {
        match self.next.get_mut(at) {
            Some(next) => *next = offset + 1,
            None => {
                self.next.insert(at.clone(), offset + 1);
            }
        }
    }

    /// Records where an owned partition stands when no event passed yet (never moves a position back).
    pub fn seed(&mut self, at: &TopicPartition, next_offset: i64) {
        if next_offset < 0 {
            return;
        }
        let slot = self.next.entry(at.clone()).or_insert(next_offset);
        *slot = (*slot).max(next_offset);
    }

    /// The next offset of `at`; `None` when it is not a partition this instance owns (or knows yet).
    pub fn next(&self, at: &TopicPartition) -> Option<i64> {
        self.next.get(at).copied()
    }

    /// A partition taken away: its position is no longer this instance's to announce.
    pub fn revoke(&mut self, at: &TopicPartition) {
        self.next.remove(at);
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// Whether this instance owns `partition` of some events topic.
    pub fn owns_partition(&self, partition: i32) -> bool {
        self.next.keys().any(|at| at.partition == partition)
    }

    /// Every owned partition's position, as the wire carries them.
    pub fn announce(&self) -> Vec<PartitionPosition> {
        self.next
            .iter()
            .map(|(at, next)| PartitionPosition::new(at, *next))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routed_event_moves_the_position_past_it_and_a_seed_never_moves_it_back() {
        let at = TopicPartition::new("events", 2);
        let mut positions = Positions::default();
        assert_eq!(positions.next(&at), None);
        positions.seed(&at, -1);
        assert!(positions.is_empty(), "no end offset known");
        positions.seed(&at, 7);
        positions.passed(&at, 9);
        assert_eq!(positions.next(&at), Some(10));
        positions.seed(&at, 4);
        assert_eq!(positions.announce(), [PartitionPosition::new(&at, 10)]);
        positions.revoke(&at);
        assert!(positions.announce().is_empty());
    }
}
