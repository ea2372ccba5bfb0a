//! When a room's viewer count may go out to its viewers: at most once a second, and only when it changed.
//! Pure: the room holds it under its lock and passes the time in.

use std::time::{Duration, Instant};

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
