//! Hand-off: when the offset of a consumed event may be committed. Delivery is at-least-once, so an offset is
//! committed only once its event left this instance for good:
//!
//! - every routed event gets the next routing sequence number (events that route nowhere too);
//! - each link records the last number queued to it and the last one it wrote to its edge's socket
//!   ([`LinkProgress`]);
//! - the likes report up to which number every like is in an acknowledged checkpoint
//!   ([`crate::likes::Likes::barrier`]);
//! - [`handed_off`] is the smallest of those, and [`Pending`] releases the offsets of the events up to it, in
//!   routing order. An edge that gets an event twice (after a restart or a rebalance) drops it by event_id.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use chorus_schemas::TopicPartition;

/// How far one link got: the last sequence number queued to it and the last one it wrote to the edge.
#[derive(Debug, Default)]
pub struct LinkProgress {
    queued: AtomicU64,
    written: AtomicU64,
}

impl LinkProgress {
    /// Called by the router once a frame routed at `seq` is in the link's queue.
    pub fn queued(&self, seq: u64) {
        self.queued.fetch_max(seq, Ordering::Release);
    }

    /// Called by the link once everything up to `seq` is written to the edge's socket.
    pub fn written(&self, seq: u64) {
        self.written.fetch_max(seq, Ordering::Release);
    }

    /// Everything up to this sequence number is handed off (`u64::MAX` when nothing is pending).
    fn handed_off(&self) -> u64 {
        let written = self.written.load(Ordering::Acquire);
        if written >= self.queued.load(Ordering::Acquire) {
            u64::MAX
        } else {
            written
        }
    }
}

/// Every event routed at or before the returned sequence number was written to every edge it was queued for
/// (`links`), and every like among them is in an acknowledged checkpoint (`likes`); `routed` is the latest
/// sequence number given out.
pub fn handed_off<'l>(
    links: impl IntoIterator<Item = &'l LinkProgress>,
    routed: u64,
    likes: u64,
) -> u64 {
    links
        .into_iter()
        .map(LinkProgress::handed_off)
        .min()
        .unwrap_or(u64::MAX)
        .min(routed)
        .min(likes)
}

/// One consumed event whose offset waits for its hand-off.
#[derive(Debug)]
struct Consumed {
    seq: u64,
    at: TopicPartition,
    offset: i64,
}

/// Offsets consumed but not yet handed off, in routing order.
#[derive(Debug, Default)]
pub struct Pending {
    queue: VecDeque<Consumed>,
}

impl Pending {
    /// The event at `offset` of `at` was routed at `seq`.
    pub fn push(&mut self, seq: u64, at: TopicPartition, offset: i64) {
        self.queue.push_back(Consumed { seq, at, offset });
    }

    /// Takes, in routing order, the offset of every event handed off up to sequence number `done`.
    pub fn release(&mut self, done: u64) -> impl Iterator<Item = (TopicPartition, i64)> + '_ {
        std::iter::from_fn(move || {
            if self.queue.front()?.seq > done {
                return None;
            }
            let consumed = self.queue.pop_front()?;
            Some((consumed.at, consumed.offset))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition::new("events", partition)
    }

    #[test]
    fn a_link_holds_back_what_it_queued_and_has_not_written() {
        let link = LinkProgress::default();
        assert_eq!(link.handed_off(), u64::MAX, "nothing queued");
        link.queued(5);
        link.written(3);
        assert_eq!(link.handed_off(), 3);
        link.written(5);
        assert_eq!(link.handed_off(), u64::MAX, "all written");
    }

    #[test]
    fn the_slowest_link_the_latest_routed_and_the_likes_bound_the_hand_off() {
        let (fast, slow) = (LinkProgress::default(), LinkProgress::default());
        fast.queued(9);
        fast.written(9);
        slow.queued(9);
        slow.written(4);
        assert_eq!(handed_off([&fast, &slow], 9, u64::MAX), 4);
        assert_eq!(handed_off([&fast, &slow], 9, 2), 2, "an unflushed like");
        assert_eq!(handed_off([&fast], 7, u64::MAX), 7, "no link is behind");
        assert_eq!(handed_off([], 0, u64::MAX), 0, "nothing routed yet");
    }

    #[test]
    fn offsets_are_released_only_once_every_link_wrote_up_to_their_seq_and_in_order() {
        let (a, b) = (LinkProgress::default(), LinkProgress::default());
        let mut pending = Pending::default();
        for (seq, partition, offset) in [(1, 0, 10), (2, 1, 4), (3, 0, 11)] {
            pending.push(seq, tp(partition), offset);
            a.queued(seq);
            b.queued(seq);
        }
        a.written(3);
        b.written(1);
        let done = handed_off([&a, &b], 3, u64::MAX);
        assert_eq!(pending.release(done).collect::<Vec<_>>(), [(tp(0), 10)]);
        assert_eq!(pending.release(done).count(), 0, "released once");
        b.written(3);
        let done = handed_off([&a, &b], 3, u64::MAX);
        assert_eq!(
            pending.release(done).collect::<Vec<_>>(),
            [(tp(1), 4), (tp(0), 11)]
        );
    }

    #[test]
    fn an_event_routed_nowhere_waits_behind_those_consumed_before_it() {
        let mut pending = Pending::default();
        pending.push(2, tp(0), 7);
        // An undecodable event is routed nowhere (sequence number 0), but its offset is not committed first.
        pending.push(0, tp(0), 8);
        assert_eq!(pending.release(1).count(), 0);
        assert_eq!(
            pending.release(2).collect::<Vec<_>>(),
            [(tp(0), 7), (tp(0), 8)]
        );
    }
}
