//! A bounded memory of recent event ids, to drop the repeats at-least-once delivery brings.

use std::collections::{HashSet, VecDeque};

/// Remembers the last `capacity` ids; memory is bounded by that many ids whatever the traffic.
#[derive(Debug)]
pub struct RecentIds {
    seen: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
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
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(id.to_owned());
        self.order.push_back(id.to_owned());
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
