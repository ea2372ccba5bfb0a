//! The comment budget of hot streams: at most `budget` comments per second of event time are pushed to a
//! stream's viewers; beyond it comments are sampled, the same ones for every edge (this instance decides for
//! the stream's partition, and the choice depends only on the events), with the stream owner's and
//! moderators' comments always kept. What is left out is counted and told to the viewers each tick.
//! Analytics consumers still read every event in Kafka.

use std::collections::{HashMap, VecDeque};

use chorus_schemas::StreamEvent;

/// Event-time window over which the budget applies.
const WINDOW_MS: i64 = 1_000;
/// A stream with no comment for this long forgets its window.
const IDLE_MS: i64 = 10_000;

#[derive(Debug, Default)]
struct Window {
    /// Event times of the comments seen (kept or not) in the last window, oldest first.
    seen: VecDeque<i64>,
    /// Event times of the comments kept in the last window.
    kept: VecDeque<i64>,
    /// Comments left out since the last tick.
    left_out: u64,
    last_ms: i64,
}

fn trim(times: &mut VecDeque<i64>, now_ms: i64) {
    while times.front().is_some_and(|t| *t <= now_ms - WINDOW_MS) {
        times.pop_front();
    }
}

/// A stable 64-bit hash of an event id (FNV-1a): every fanout instance, in every region, agrees on it.
fn stable_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug, Default)]
pub struct Budgets {
    default: u32,
    overrides: HashMap<String, u32>,
    streams: HashMap<String, Window>,
}

impl Budgets {
    /// `default` comments per second per stream (0: no budget), `overrides` per stream id.
    pub fn new(default: u32, overrides: HashMap<String, u32>) -> Self {
        Budgets {
            default,
            overrides,
            streams: HashMap::new(),
        }
    }

    fn budget_of(&self, stream_id: &str) -> u32 {
        self.overrides
            .get(stream_id)
            .copied()
            .unwrap_or(self.default)
    }

    /// Whether this comment goes to viewers. Beyond the budget, a comment is kept when its id's hash falls
    /// in the fraction `budget / rate` (so the kept ones spread over the second rather than being its first
    /// ones) and the window still has room; the owner's and moderators' are always kept.
    pub fn admit(&mut self, event: &StreamEvent) -> bool {
        let budget = self.budget_of(&event.stream_id);
        if budget == 0 {
            return true;
        }
        let window = self.streams.entry(event.stream_id.clone()).or_default();
        let at = event.created_ms;
        window.last_ms = window.last_ms.max(at);
        trim(&mut window.seen, at);
        trim(&mut window.kept, at);
        window.seen.push_back(at);
        let keep = if event.role.is_privileged() {
            true
        } else if window.kept.len() >= budget as usize {
            false
        } else {
            let rate = window.seen.len() as u64;
            rate <= u64::from(budget) || stable_hash(&event.event_id) % rate < u64::from(budget)
        };
        if keep {
            window.kept.push_back(at);
        } else {
            window.left_out += 1;
        }
        keep
    }

    /// Streams with comments left out since the last call, and how many; forgets idle streams.
    pub fn take_left_out(&mut self, now_ms: i64) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        self.streams.retain(|stream_id, window| {
            if window.left_out > 0 {
                out.push((stream_id.clone(), std::mem::take(&mut window.left_out)));
            }
            now_ms - window.last_ms < IDLE_MS
        });
        out
    }
}

/// Parses `stream=rate` pairs.
pub fn parse_override(text: &str) -> Result<(String, u32), String> {
    let (stream, rate) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not stream=comments_per_second"))?;
    let rate = rate
        .parse()
        .map_err(|_| format!("`{rate}` is not a number of comments per second"))?;
    Ok((stream.to_owned(), rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_schemas::{EventKind, UserRole};

    fn comment(i: u64, at: i64, role: UserRole) -> StreamEvent {
        StreamEvent {
            event_id: format!("e-{i}"),
            stream_id: "hot".into(),
            user_id: "u".into(),
            kind: EventKind::Comment,
            text: Some("hi".into()),
            created_ms: at,
            origin: "local".into(),
            role,
            retraction: None,
        }
    }

    #[test]
    fn beyond_the_budget_comments_are_sampled_the_same_way_every_time() {
        let run = || {
            let mut budgets = Budgets::new(50, HashMap::new());
            // 2,000 comments a second for three seconds.
            (0..6000u64)
                .map(|i| (i, 1_000 + i as i64 / 2))
                .filter(|(i, at)| budgets.admit(&comment(*i, *at, UserRole::Viewer)))
                .map(|(_, at)| at)
                .collect::<Vec<i64>>()
        };
        let kept = run();
        for (i, at) in kept.iter().enumerate() {
            let in_window = kept[..=i].iter().filter(|t| **t > at - WINDOW_MS).count();
            assert!(in_window <= 50, "{in_window} kept within a second");
        }
        let last_second: Vec<i64> = kept.iter().copied().filter(|t| *t >= 3_000).collect();
        assert!(
            last_second.len() >= 25,
            "the budget is used: {last_second:?}"
        );
        assert!(
            last_second.iter().any(|t| *t >= 3_500),
            "spread over the second: {last_second:?}"
        );
        assert_eq!(kept, run(), "deterministic");
    }

    #[test]
    fn the_owner_and_moderators_are_always_kept_and_left_out_is_counted() {
        let mut budgets = Budgets::new(1, HashMap::from([("other".to_owned(), 5)]));
        assert!(budgets.admit(&comment(0, 0, UserRole::Viewer)));
        assert!(!budgets.admit(&comment(1, 1, UserRole::Viewer)));
        assert!(budgets.admit(&comment(2, 2, UserRole::Owner)));
        assert!(budgets.admit(&comment(3, 3, UserRole::Moderator)));
        assert_eq!(budgets.take_left_out(3), vec![("hot".to_owned(), 1)]);
        assert!(budgets.take_left_out(3).is_empty());
        assert_eq!(parse_override("final=200"), Ok(("final".to_owned(), 200)));
        assert!(parse_override("final").is_err());
    }
}
