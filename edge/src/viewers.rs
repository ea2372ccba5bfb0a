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

/// At most one `viewers` frame per stream per this interval.
pub const VIEWERS_INTERVAL: Duration = Duration::from_secs(1);

/// When a room's viewer count may go out: a changed count at once if the last one left at least a second
/// ago, else held (the latest wins) for the flush tick.
#[derive(Debug, Default)]
pub struct ViewersPacing {
    last_sent: Option<Instant>,
    sent: Option<u64>,
    held: Option<u64>,
    known: Option<u64>,
}

impl ViewersPacing {
    /// The count fanout announced at `now`: what to broadcast now, or `None` (held, or nothing new).
    pub fn offer(&mut self, count: u64, now: Instant) -> Option<u64> {
        self.known = Some(count);
        self.held = None;
        if self.sent == Some(count) {
            return None;
        }
        if self.may_send(now) {
            self.last_sent = Some(now);
            self.sent = Some(count);
            return Some(count);
        }
        self.held = Some(count);
        None
    }

    /// At a flush tick: the held count, once a second has passed since the last one went out.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        if self.held.is_none() || !self.may_send(now) {
            return None;
        }
        self.last_sent = Some(now);
        self.sent = self.held.take();
        self.sent
    }

    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// The latest count fanout announced, if any.
    pub fn known(&self) -> Option<u64> {
        self.known
    }

    fn may_send(&self, now: Instant) -> bool {
        self.last_sent
            .is_none_or(|last| now.saturating_duration_since(last) >= VIEWERS_INTERVAL)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_count_goes_out_at_most_once_a_second_and_the_latest_wins() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut pacing = ViewersPacing::default();
        assert_eq!(pacing.offer(3, start), Some(3));
        assert_eq!(pacing.offer(3, start + ms(10)), None, "unchanged");
        assert_eq!(pacing.offer(4, start + ms(100)), None, "held");
        assert_eq!(pacing.offer(5, start + ms(200)), None, "held");
        assert!(pacing.holding());
        assert_eq!(pacing.due(start + ms(900)), None);
        assert_eq!(pacing.due(start + ms(1000)), Some(5), "the latest");
        assert_eq!(pacing.due(start + ms(3000)), None, "once");
        assert_eq!(pacing.offer(5, start + ms(3000)), None);
        assert_eq!(pacing.offer(2, start + ms(3000)), Some(2));
        assert_eq!(pacing.known(), Some(2));
        assert_eq!(pacing.offer(5, start + ms(3100)), None);
        assert_eq!(
            pacing.offer(2, start + ms(3200)),
            None,
            "back to what was sent"
        );
        assert!(!pacing.holding(), "nothing to say");
    }
}
