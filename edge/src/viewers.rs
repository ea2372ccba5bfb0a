//! Viewer counts. Each edge writes, per stream with a room here, how many viewers it holds to the compacted
//! topic `viewer-counts` (when it changed, at most every `--viewer-count-ms`, renewed before it expires, a
//! tombstone once the room is gone): O(streams x edges) records, never one per viewer. Fanout adds up every
//! edge of every region and pushes the total when it changed; each room then tells its viewers at most once a
//! second ([`ViewersPacing`]) and gives it in `hello.viewers`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::membership::Membership;
use crate::rooms::Rooms;

/// Writes this edge's viewer count of each stream every `period` when it changed, renews each before `ttl`
/// runs out, and tombstones the streams whose room is gone, until `stop`.
pub async fn count_every(
    rooms: Arc<Rooms>,
    membership: Arc<Membership>,
    period: Duration,
    ttl: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written: HashMap<String, Written> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let counts: HashMap<String, (u64, i32)> = rooms
            .all()
            .iter()
            .map(|room| (room.stream_id.clone(), room.count()))
            .collect();
        for (stream, (count, partition)) in &counts {
            let stale = written.get(stream).is_none_or(|w| {
                w.count != *count || now.saturating_duration_since(w.at) >= ttl / 3
            });
            if stale {
                membership.count_viewers(stream, *count, *partition, ttl);
                let entry = Written {
                    count: *count,
                    partition: *partition,
                    at: now,
                };
                written.insert(stream.clone(), entry);
            }
        }
        written.retain(|stream, w| {
            let here = counts.contains_key(stream);
            if !here {
                membership.uncount_viewers(stream, w.partition);
            }
            here
        });
    }
}

/// The last count written for a stream.
#[derive(Debug)]
struct Written {
    count: u64,
    partition: i32,
    at: Instant,
}
