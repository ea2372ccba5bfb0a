//! A bounded memory of recent event ids, to drop the repeats at-least-once delivery brings.
//!
//! Ids are kept as 64-bit hashes (16 bytes an id with the set's and queue's entries, instead of a string of
//! 36 or more): two different events in one window of 4096 collide with a probability near 10^-12, and a
//! collision only hides one comment from that stream's viewers on one edge.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};

/// Remembers the last `capacity` ids; memory is bounded by that many ids whatever the traffic.
#[derive(Debug)]
pub struct RecentIds {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

fn digest(id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        RecentIds {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// True the first time an id is offered (within the window), false for a repeat.
    pub fn first_time(&mut self, id: &str) -> bool {
        let id = digest(id);
        if self.seen.contains(&id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(id);
        self.order.push_back(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::RecentIds;

    #[test]
    fn repeats_are_caught_within_the_window_and_memory_is_bounded() {
        let mut ids = RecentIds::new(3);
        assert!(ids.first_time("a"));
        assert!(!ids.first_time("a"));
        assert!(ids.first_time("b"));
        assert!(ids.first_time("c"));
        assert!(ids.first_time("d"), "evicts a");
        assert!(!ids.first_time("d"));
        assert!(ids.first_time("a"), "a fell out of the window");
        assert_eq!(ids.order.len(), 3);
        assert_eq!(ids.seen.len(), 3);
    }
}
