//! Like counts of the streams whose partitions this instance owns: counted exactly once per Kafka offset,
//! announced once per tick (delta and total), and checkpointed to the compacted topic `like-totals` so the
//! count survives restarts and rebalances.
//!
//! Exactness rests on three rules:
//! - A checkpoint `(next_offset, total)` says: the likes of the stream in that topic before `next_offset` number
//!   `total`. A tally counts a like only at or after its checkpoint's `next_offset`, so a replayed like is never
//!   counted twice, and a newer checkpoint (from this instance or the partition's previous owner) replaces an
//!   older one together with the likes it covers.
//! - The consumer offset of a like is committed only once a checkpoint that covers it is acknowledged
//!   ([`Likes::barrier`]), so a new owner never starts past a like that no checkpoint holds.
//! - After an assignment, a partition's counts are neither announced nor checkpointed until this instance has
//!   read its own read barrier back from that partition of `like-totals`: every checkpoint the previous owner
//!   wrote is then applied.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use chorus_schemas::LikeTotal;

/// The count of one stream in one events topic.
#[derive(Debug, Default)]
struct Tally {
    /// The latest checkpoint known: likes before `base_next` number `base_total`.
    base_next: i64,
    base_total: i64,
    /// Offsets of the likes counted at or after `base_next`, ascending.
    counted: VecDeque<i64>,
    /// Routing sequence number of the first like that no acknowledged checkpoint covers.
    unflushed_since: Option<u64>,
    /// The checkpoint being written: it covers likes routed up to this sequence number.
    writing: Option<(u64, LikeTotal)>,
    /// The first like routed while a checkpoint was being written (not covered by it).
    after_writing: Option<u64>,
}

impl Tally {
    fn total(&self) -> i64 {
        self.base_total + self.counted.len() as i64
    }

    fn next_offset(&self) -> i64 {
        self.counted.back().map_or(self.base_next, |o| o + 1)
    }

    /// Adopts a checkpoint when it is newer than the one held; drops the likes it covers.
    fn rebase(&mut self, next_offset: i64, total: i64) {
        if next_offset <= self.base_next {
            return;
        }
        self.base_next = next_offset;
        self.base_total = total;
        while self.counted.front().is_some_and(|o| *o < next_offset) {
            self.counted.pop_front();
        }
    }
}

/// A stream's tallies (one per events topic carrying it) and its likes since the last announcement.
#[derive(Debug, Default)]
struct StreamLikes {
    partition: i32,
    delta: u64,
    topics: Vec<(String, Tally)>,
}

impl StreamLikes {
    fn total(&self) -> u64 {
        self.topics
            .iter()
            .map(|(_, t)| t.total())
            .sum::<i64>()
            .max(0) as u64
    }

    fn tally(&mut self, topic: &str) -> &mut Tally {
        match self.topics.iter().position(|(t, _)| t == topic) {
            Some(i) => &mut self.topics[i].1,
            None => {
                self.topics.push((topic.to_owned(), Tally::default()));
                let last = self.topics.len() - 1;
                &mut self.topics[last].1
            }
        }
    }
}

/// What one tick has to do: announce these streams' likes and write these checkpoints.
#[derive(Debug, Default)]
pub struct Tick {
    /// (stream, delta, total) for every stream with new likes in a settled partition.
    pub announce: Vec<(String, u64, u64)>,
    /// Checkpoints to write to `like-totals`, each in the partition of its stream.
    pub checkpoints: Vec<(i32, LikeTotal)>,
    /// Read barriers to write: (partition, key).
    pub barriers: Vec<(i32, String)>,
}

#[derive(Debug, Default)]
pub struct Likes {
    streams: HashMap<String, StreamLikes>,
    /// Partitions whose earlier checkpoints are all applied.
    settled: HashSet<i32>,
    /// Partitions waiting for their read barrier: the key to look for, and whether it was written.
    barriers: HashMap<i32, (String, bool)>,
    /// Sequence numbers of unflushed first likes, with how many tallies wait on each.
    unflushed: BTreeMap<u64, usize>,
    next_barrier: u64,
}

impl Likes {
    /// Counts a like at `offset` of `topic` (a replayed offset is ignored). Returns whether it counted.
    pub fn count(
        &mut self,
        stream_id: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        seq: u64,
    ) -> bool {
        let stream = self.streams.entry(stream_id.to_owned()).or_default();
        stream.partition = partition;
        let tally = stream.tally(topic);
        if offset < tally.base_next || tally.counted.back().is_some_and(|o| *o >= offset) {
            return false;
        }
        tally.counted.push_back(offset);
        if tally.writing.is_some() {
            tally.after_writing.get_or_insert(seq);
        }
        if tally.unflushed_since.is_none() {
            tally.unflushed_since = Some(seq);
            *self.unflushed.entry(seq).or_default() += 1;
        }
        stream.delta += 1;
        true
    }

    /// Applies a checkpoint read from `like-totals`.
    pub fn apply(&mut self, record: &LikeTotal, partition: i32) {
        let stream = self.streams.entry(record.stream_id.clone()).or_default();
        stream.partition = partition;
        stream
            .tally(&record.topic)
            .rebase(record.next_offset, record.total);
    }

    /// The total of a stream, if its partition is settled.
    pub fn total(&self, stream_id: &str) -> Option<u64> {
        let stream = self.streams.get(stream_id)?;
        self.settled
            .contains(&stream.partition)
            .then(|| stream.total())
    }

    /// Routing sequence numbers below this one have every like they carry in an acknowledged checkpoint.
    pub fn barrier(&self) -> u64 {
        self.unflushed
            .keys()
            .next()
            .map_or(u64::MAX, |first| first.saturating_sub(1))
    }

    /// Partitions newly assigned: their counts wait for a read barrier, which the next tick writes.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = i32>, owner: &str) {
        for partition in partitions {
            if self.settled.contains(&partition) || self.barriers.contains_key(&partition) {
                continue;
            }
            self.next_barrier += 1;
            let key = LikeTotal::barrier_key(owner, self.next_barrier, partition);
            self.barriers.insert(partition, (key, false));
        }
    }

    /// A barrier key read back from `like-totals` partition `partition`.
    pub fn barrier_read(&mut self, partition: i32, key: &str) -> bool {
        if self
            .barriers
            .get(&partition)
            .is_some_and(|(expected, _)| expected == key)
        {
            self.barriers.remove(&partition);
            self.settled.insert(partition);
            return true;
        }
        false
    }

    /// A barrier could not be written: the next tick tries again.
    pub fn barrier_failed(&mut self, partition: i32) {
        if let Some((_, written)) = self.barriers.get_mut(&partition) {
            *written = false;
        }
    }

    /// Partitions taken away: their counting is the new owner's now. The checkpoints read stay (they are
    /// facts, and the table is not read again if the partitions come back).
    pub fn revoke(&mut self, partitions: &HashSet<i32>) {
        let mut released = Vec::new();
        for stream in self.streams.values_mut() {
            if !partitions.contains(&stream.partition) {
                continue;
            }
            stream.delta = 0;
            for (_, tally) in &mut stream.topics {
                released.extend(tally.unflushed_since.take());
                tally.counted.clear();
                tally.writing = None;
                tally.after_writing = None;
            }
        }
        for seq in released {
            self.release(seq);
        }
        for partition in partitions {
            self.settled.remove(partition);
            self.barriers.remove(partition);
        }
    }

    fn release(&mut self, seq: u64) {
        if let Some(waiting) = self.unflushed.get_mut(&seq) {
            *waiting -= 1;
            if *waiting == 0 {
                self.unflushed.remove(&seq);
            }
        }
    }

    /// Takes what this tick must announce and write; `seq` is the latest routing sequence number.
    pub fn tick(&mut self, seq: u64, now_ms: i64) -> Tick {
        let mut tick = Tick::default();
        for (partition, (key, written)) in &mut self.barriers {
            if !*written {
                *written = true;
                tick.barriers.push((*partition, key.clone()));
            }
        }
        for (stream_id, stream) in &mut self.streams {
            if !self.settled.contains(&stream.partition) {
                continue;
            }
            if stream.delta > 0 {
                tick.announce
                    .push((stream_id.clone(), stream.delta, stream.total()));
                stream.delta = 0;
            }
            for (topic, tally) in &mut stream.topics {
                if tally.unflushed_since.is_none() || tally.writing.is_some() {
                    continue;
                }
                let record = LikeTotal {
                    stream_id: stream_id.clone(),
                    topic: topic.clone(),
                    next_offset: tally.next_offset(),
                    total: tally.total(),
                    updated_ms: now_ms,
                };
                tally.writing = Some((seq, record.clone()));
                tick.checkpoints.push((stream.partition, record));
            }
        }
        tick
    }

    /// The outcome of writing the checkpoint of `stream_id` in `topic`.
    pub fn written(&mut self, stream_id: &str, topic: &str, acknowledged: bool) {
        let Some(stream) = self.streams.get_mut(stream_id) else {
            return; // revoked meanwhile
        };
        let Some((_, tally)) = stream.topics.iter_mut().find(|(t, _)| t == topic) else {
            return;
        };
        let Some((_, record)) = tally.writing.take() else {
            return;
        };
        let after = tally.after_writing.take();
        if !acknowledged {
            return; // still unflushed: the next tick writes a newer checkpoint
        }
        tally.rebase(record.next_offset, record.total);
        let before = tally.unflushed_since;
        tally.unflushed_since = after;
        if before != after {
            if let Some(seq) = before {
                self.release(seq);
            }
            if let Some(seq) = after {
                *self.unflushed.entry(seq).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(partition: i32) -> Likes {
        let mut likes = Likes::default();
        likes.assign([partition], "me");
        let tick = likes.tick(0, 0);
        let (p, key) = &tick.barriers[0];
        assert!(likes.barrier_read(*p, key));
        likes
    }

    #[test]
    fn each_offset_counts_once_and_ticks_announce_the_delta() {
        let mut likes = settled(3);
        assert!(likes.count("s", "events", 3, 10, 1));
        assert!(likes.count("s", "events", 3, 11, 2));
        assert!(!likes.count("s", "events", 3, 11, 3), "a replay");
        let tick = likes.tick(3, 0);
        assert_eq!(tick.announce, vec![("s".to_owned(), 2, 2)]);
        assert_eq!(tick.checkpoints.len(), 1);
        assert_eq!(tick.checkpoints[0].1.next_offset, 12);
        assert!(likes.tick(3, 0).announce.is_empty(), "nothing new");
    }

    #[test]
    fn commits_wait_for_the_checkpoint_of_every_like() {
        let mut likes = settled(0);
        likes.count("s", "events", 0, 5, 7);
        assert_eq!(likes.barrier(), 6);
        let tick = likes.tick(7, 0);
        likes.count("s", "events", 0, 6, 9);
        likes.written("s", "events", true);
        assert_eq!(
            likes.barrier(),
            8,
            "the like routed during the write is not covered"
        );
        assert_eq!(tick.checkpoints[0].1.total, 1);
        likes.tick(9, 0);
        likes.written("s", "events", true);
        assert_eq!(likes.barrier(), u64::MAX);
        assert_eq!(likes.total("s"), Some(2));
    }

    #[test]
    fn a_new_owner_counts_on_from_the_previous_owners_checkpoint() {
        let mut likes = Likes::default();
        likes.assign([1], "new");
        // It starts consuming at the committed offset 20 before the old owner's checkpoint is read.
        likes.count("s", "events", 1, 20, 1);
        likes.count("s", "events", 1, 21, 2);
        assert_eq!(likes.total("s"), None, "not announced before the barrier");
        let checkpoint = LikeTotal {
            stream_id: "s".into(),
            topic: "events".into(),
            next_offset: 21,
            total: 100,
            updated_ms: 0,
        };
        likes.apply(&checkpoint, 1);
        let tick = likes.tick(2, 0);
        assert!(tick.announce.is_empty());
        assert!(likes.barrier_read(1, &tick.barriers[0].1));
        assert_eq!(
            likes.total("s"),
            Some(101),
            "offset 20 was in the checkpoint, 21 was not"
        );
    }

    #[test]
    fn revoked_partitions_release_their_commits() {
        let mut likes = settled(2);
        likes.count("s", "events", 2, 1, 4);
        assert_eq!(likes.barrier(), 3);
        likes.revoke(&HashSet::from([2]));
        assert_eq!(likes.barrier(), u64::MAX);
        assert_eq!(likes.total("s"), None);
    }
}
