//! At most one `likes` frame per stream per tick, as the README promises viewers. Fanout sends a stream's
//! likes once per `--likes-tick-ms`, but its frames can reach the edge bunched: a new fanout catching up after
//! a takeover, a link flushing several batches at once, an edge task starved of CPU. So each room paces its
//! likes: a frame arriving less than `--likes-interval-ms` after the last one broadcast is held, merged with
//! any that follow (deltas summed, the highest total), and broadcast by the flush tick once the interval has
//! passed. Nothing is lost or counted twice; only the moment a delta reaches the viewers moves.

use std::time::{Duration, Instant};

/// The likes of one `likes` frame: new since the previous frame, and the stream's running total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Likes {
    pub delta: u64,
    pub total: u64,
}

impl Likes {
    /// One frame saying what `self` and the `later` one say together.
    pub fn merge(self, later: Likes) -> Likes {
        Likes {
            delta: self.delta.saturating_add(later.delta),
            total: self.total.max(later.total),
        }
    }
}

/// When a room's likes may go out.
#[derive(Debug)]
pub struct LikesPacing {
    /// Zero: every frame goes out as it comes.
    interval: Duration,
    last_sent: Option<Instant>,
    held: Option<Likes>,
}

impl LikesPacing {
    pub fn new(interval: Duration) -> Self {
        LikesPacing {
            interval,
            last_sent: None,
            held: None,
        }
    }

    /// How often held likes should be looked at: a tenth of the interval, so a held frame leaves at most
    /// that late; `None` when pacing is off.
    pub fn tick(interval: Duration) -> Option<Duration> {
        (!interval.is_zero()).then(|| (interval / 10).max(Duration::from_millis(1)))
    }

    /// Likes from fanout at `now`: what to broadcast now (with the held likes merged in), or `None` when
    /// they are held for [`LikesPacing::due`].
    pub fn offer(&mut self, likes: Likes, now: Instant) -> Option<Likes> {
        let merged = self.held.take().map_or(likes, |held| held.merge(likes));
        if self.may_send(now) {
            self.last_sent = Some(now);
            Some(merged)
        } else {
            self.held = Some(merged);
            None
        }
    }

    /// At a flush tick: the held likes, once the interval since the last broadcast has passed.
    pub fn due(&mut self, now: Instant) -> Option<Likes> {
        if self.held.is_none() || !self.may_send(now) {
            return None;
        }
        self.last_sent = Some(now);
        self.held.take()
    }

    /// Whether likes wait for a flush tick.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    fn may_send(&self, now: Instant) -> bool {
        self.last_sent
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(200);

    fn likes(delta: u64, total: u64) -> Option<Likes> {
        Some(Likes { delta, total })
    }

    /// A room's pacing, driven in milliseconds from its start.
    struct Paced {
        start: Instant,
        pacing: LikesPacing,
    }

    impl Paced {
        fn new(interval: Duration) -> Self {
            Paced {
                start: Instant::now(),
                pacing: LikesPacing::new(interval),
            }
        }

        fn offer(&mut self, at_ms: u64, delta: u64, total: u64) -> Option<Likes> {
            let at = self.start + Duration::from_millis(at_ms);
            self.pacing.offer(Likes { delta, total }, at)
        }

        fn due(&mut self, at_ms: u64) -> Option<Likes> {
            self.pacing.due(self.start + Duration::from_millis(at_ms))
        }
    }

    #[test]
    fn frames_a_tick_apart_go_out_as_they_come() {
        let mut paced = Paced::new(INTERVAL);
        assert_eq!(paced.offer(0, 3, 3), likes(3, 3));
        assert_eq!(paced.offer(200, 2, 5), likes(2, 5));
        assert!(!paced.pacing.holding());
        assert_eq!(paced.due(900), None, "nothing held");
    }

    #[test]
    fn bunched_frames_are_merged_and_sent_once_the_interval_has_passed() {
        // The takeover of tests/likes.rs: three frames within 97 ms.
        let mut paced = Paced::new(INTERVAL);
        assert_eq!(paced.offer(0, 24, 24), likes(24, 24));
        assert_eq!(paced.offer(6, 30, 54), None);
        assert_eq!(paced.offer(97, 16, 70), None);
        assert!(paced.pacing.holding());
        assert_eq!(paced.due(199), None, "not before the interval");
        assert_eq!(paced.due(200), likes(46, 70));
        assert!(!paced.pacing.holding());
        // The interval counts from that broadcast.
        assert_eq!(paced.offer(300, 1, 71), None);
        assert_eq!(paced.due(400), likes(1, 71));
    }

    #[test]
    fn a_frame_after_the_interval_takes_the_held_ones_with_it() {
        let mut paced = Paced::new(INTERVAL);
        paced.offer(0, 1, 1);
        assert_eq!(paced.offer(50, 2, 3), None);
        assert_eq!(paced.offer(250, 4, 7), likes(6, 7));
        assert!(!paced.pacing.holding());
    }

    #[test]
    fn a_total_without_new_likes_is_held_like_any_other_and_the_highest_total_wins() {
        let mut paced = Paced::new(INTERVAL);
        paced.offer(0, 5, 100);
        assert_eq!(paced.offer(10, 0, 120), None);
        assert_eq!(paced.offer(20, 0, 110), None);
        assert_eq!(paced.due(210), likes(0, 120));
    }

    #[test]
    fn with_no_interval_nothing_is_held() {
        let mut paced = Paced::new(Duration::ZERO);
        assert_eq!(paced.offer(0, 1, 1), likes(1, 1));
        assert_eq!(paced.offer(0, 1, 2), likes(1, 2));
        let ms = Duration::from_millis;
        assert_eq!(LikesPacing::tick(Duration::ZERO), None);
        assert_eq!(LikesPacing::tick(INTERVAL), Some(ms(20)));
        assert_eq!(LikesPacing::tick(ms(3)), Some(ms(1)));
    }
}
