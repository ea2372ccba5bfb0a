//! Viewer counts: every edge of every region writes how many viewers of each stream it holds to
//! `viewer-counts` (mirrored as `<region>.viewer-counts`); this table holds the latest of each, and the
//! fanout instance that owns a stream's partition pushes the sum to the stream's edges when it changed. Pure:
//! the router holds it under its lock and passes the time in.

use std::collections::HashMap;

use chorus_schemas::{ViewerCount, ViewerTally};

#[derive(Debug, Default)]
pub struct ViewerCounts {
    tally: ViewerTally,
    /// Per stream, the total last pushed to its edges.
    pushed: HashMap<String, u64>,
}

impl ViewerCounts {
    /// A record of `topic` (a local or mirrored `viewer-counts`): a count, or a tombstone (`None`).
    pub fn apply(&mut self, topic: &str, key: &str, value: Option<ViewerCount>) {
        self.tally.apply(topic, key, value);
    }

    /// Viewers of `stream_id` on every edge whose count has not expired at `now_ms`.
    pub fn total(&self, stream_id: &str, now_ms: i64) -> u64 {
        self.tally.total(stream_id, now_ms)
    }

    /// The streams `owned` here whose total at `now_ms` differs from the last one pushed, with the new
    /// totals (now remembered as pushed).
    pub fn changed(&mut self, now_ms: i64, owned: impl Fn(&str) -> bool) -> Vec<(String, u64)> {
        let mut streams: Vec<String> = self.tally.streams().cloned().collect();
        let gone = self.pushed.keys().filter(|s| !self.tally.knows(s));
        streams.extend(gone.cloned());
        let mut changed = Vec::new();
        for stream in streams {
            if !owned(&stream) {
                self.pushed.remove(&stream);
                continue;
            }
            let total = self.total(&stream, now_ms);
            if self.pushed.get(&stream) != Some(&total) {
                changed.push((stream.clone(), total));
            }
            if total == 0 && !self.tally.knows(&stream) {
                self.pushed.remove(&stream);
            } else {
                self.pushed.insert(stream, total);
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(stream: &str, edge: &str, count: i64, expires_ms: i64) -> Option<ViewerCount> {
        Some(ViewerCount {
            stream_id: stream.into(),
            edge_id: edge.into(),
            region: "a".into(),
            count,
            updated_ms: 0,
            expires_ms,
        })
    }

    #[test]
    fn every_edge_of_every_region_adds_up_and_expired_or_withdrawn_counts_do_not() {
        let mut table = ViewerCounts::default();
        table.apply("viewer-counts", "s/e1", count("s", "e1", 2, 1000));
        table.apply("b.viewer-counts", "s/e2", count("s", "e2", 1, 1000));
        table.apply("viewer-counts", "t/e1", count("t", "e1", 5, 1000));
        assert_eq!(table.total("s", 0), 3);
        let all = |_: &str| true;
        let mut changed = table.changed(0, all);
        changed.sort();
        assert_eq!(changed, [("s".to_owned(), 3), ("t".to_owned(), 5)]);
        assert_eq!(table.changed(0, all), [], "nothing new");
        table.apply("viewer-counts", "s/e1", count("s", "e1", 1, 1000));
        assert_eq!(table.changed(0, all), [("s".to_owned(), 2)]);
        table.apply("b.viewer-counts", "s/e2", None);
        assert_eq!(table.changed(0, all), [("s".to_owned(), 1)]);
        assert_eq!(table.changed(1000, all).len(), 2, "both expired");
        assert_eq!(table.total("s", 1000), 0);
        table.apply("viewer-counts", "s/e1", None);
        assert_eq!(table.changed(2000, all), [], "zero was told already");
    }

    #[test]
    fn a_stream_not_owned_is_not_pushed_and_is_pushed_once_owned() {
        let mut table = ViewerCounts::default();
        table.apply("viewer-counts", "s/e1", count("s", "e1", 4, 1000));
        assert_eq!(table.changed(0, |_| false), []);
        assert_eq!(table.changed(0, |_| true), [("s".to_owned(), 4)]);
    }
}
