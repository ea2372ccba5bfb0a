//! The sum of `viewer-counts` records, as fanout (to tell the viewers) and ingest (`GET /v1/streams/{id}`)
//! must both compute it: per stream, the latest record of each edge of each region (topic and key), counted
//! until its `expires_ms`. Pure; the caller passes the time in.

use std::collections::HashMap;

use crate::records::ViewerCount;

/// Per (topic, key) of a count record: its count and until when it holds.
type EdgeCounts = HashMap<(String, String), (u64, i64)>;

#[derive(Debug, Default)]
pub struct ViewerTally {
    /// Per stream, its edges' counts.
    counts: HashMap<String, EdgeCounts>,
}

impl ViewerTally {
    /// A record of `topic` (a local or mirrored `viewer-counts`): a count, or a tombstone (`None`).
    pub fn apply(&mut self, topic: &str, key: &str, value: Option<ViewerCount>) {
        let Some(stream) = ViewerCount::stream_of(key) else {
            return;
        };
        let slot = (topic.to_owned(), key.to_owned());
        match value {
            Some(record) => {
                let count = u64::try_from(record.count).unwrap_or(0);
                self.counts
                    .entry(record.stream_id)
                    .or_default()
                    .insert(slot, (count, record.expires_ms));
            }
            None => {
                if let Some(edges) = self.counts.get_mut(stream) {
                    edges.remove(&slot);
                    if edges.is_empty() {
                        self.counts.remove(stream);
                    }
                }
            }
        }
    }

    /// Viewers of `stream_id` on every edge whose count has not expired at `now_ms`.
    pub fn total(&self, stream_id: &str, now_ms: i64) -> u64 {
        self.counts.get(stream_id).map_or(0, |edges| {
            edges
                .values()
                .filter(|(_, expires)| *expires > now_ms)
                .map(|(count, _)| count)
                .sum()
        })
    }

    /// Whether any edge has (or had, until its record is withdrawn) a count of `stream_id`.
    pub fn knows(&self, stream_id: &str) -> bool {
        self.counts.contains_key(stream_id)
    }

    /// The streams with a count.
    pub fn streams(&self) -> impl Iterator<Item = &String> {
        self.counts.keys()
    }
}
