//! How long a stream's events wait to leave together as one frame. One frame costs a write per viewer, so a
//! stream with many viewers on this edge waits longest (`--coalesce-ms`, fewest writes) and one with a single
//! viewer least (`--coalesce-min-ms`, lowest latency), growing linearly with the viewers in between.

use std::time::Duration;

use crate::config::EdgeConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalescing {
    least: Duration,
    most: Duration,
    full_viewers: usize,
}

impl Coalescing {
    /// `None` when coalescing is off (`--coalesce-ms 0`): a frame per batch from fanout.
    pub fn from_config(config: &EdgeConfig) -> Option<Self> {
        if config.coalesce_ms == 0 {
            return None;
        }
        let most = Duration::from_millis(config.coalesce_ms);
        let least = Duration::from_millis(config.coalesce_min_ms.clamp(1, config.coalesce_ms));
        Some(Coalescing {
            least,
            most,
            full_viewers: config.coalesce_full_viewers.max(1),
        })
    }

    /// How often pending events are looked at: the shortest wait.
    pub fn tick(&self) -> Duration {
        self.least
    }

    /// The longest a stream with `viewers` viewers here keeps its first pending event.
    pub fn wait(&self, viewers: usize) -> Duration {
        let share =
            viewers.saturating_sub(1).min(self.full_viewers) as f64 / self.full_viewers as f64;
        self.least + (self.most - self.least).mul_f64(share)
    }

    /// Whether events pending since `since` (an `elapsed` ago) go out at this tick: the last tick before
    /// their wait is over, so none waits longer than its wait.
    pub fn due(&self, elapsed: Duration, viewers: usize) -> bool {
        elapsed + self.tick() >= self.wait(viewers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coalescing(least: u64, most: u64, full: usize) -> Coalescing {
        let config: EdgeConfig = chorus_service::parse_args(&[
            "--coalesce-ms",
            &most.to_string(),
            "--coalesce-min-ms",
            &least.to_string(),
            "--coalesce-full-viewers",
            &full.to_string(),
        ])
        .expect("edge options");
        Coalescing::from_config(&config).expect("coalescing on")
    }

    #[test]
    fn the_wait_grows_with_the_viewers_from_least_to_most() {
        let c = coalescing(5, 20, 1000);
        assert_eq!(c.wait(1), Duration::from_millis(5));
        assert_eq!(c.wait(1001), Duration::from_millis(20));
        assert_eq!(c.wait(100_000), Duration::from_millis(20));
        let half = c.wait(501);
        assert!(half > Duration::from_micros(12_400) && half < Duration::from_micros(12_600));
        assert_eq!(c.tick(), Duration::from_millis(5));
    }

    #[test]
    fn events_leave_at_the_last_tick_within_their_wait() {
        let c = coalescing(5, 20, 1000);
        assert!(
            c.due(Duration::ZERO, 1),
            "a single viewer's stream goes at the next tick"
        );
        assert!(!c.due(Duration::from_millis(14), 5000));
        assert!(c.due(Duration::from_millis(15), 5000));
    }

    #[test]
    fn off_and_out_of_range_settings() {
        let off: EdgeConfig =
            chorus_service::parse_args(&["--coalesce-ms", "0"]).expect("edge options");
        assert_eq!(Coalescing::from_config(&off), None);
        let c = coalescing(50, 20, 0);
        assert_eq!(
            c.wait(1),
            Duration::from_millis(20),
            "least is at most most"
        );
        assert_eq!(c.wait(2), Duration::from_millis(20));
    }
}
