//! What the analytics consumer knows: counts per stream (in total and per minute) and, for every partition,
//! the next offset to read. Both are saved together, so counts never include an event twice or miss one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use chorus_schemas::{EventKind, StreamEvent};
use serde::{Deserialize, Serialize};

use crate::AnalyticsError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub comments: u64,
    pub likes: u64,
}

impl Counts {
    fn add(&mut self, kind: EventKind) {
        match kind {
            EventKind::Comment => self.comments += 1,
            EventKind::Like => self.likes += 1,
            EventKind::Other | EventKind::Retract => {}
        }
    }

    pub fn total(&self) -> u64 {
        self.comments + self.likes
    }
}

const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// `topic/partition` -> next offset to read.
    pub offsets: BTreeMap<String, i64>,
    /// stream -> counts since the consumer first started.
    pub totals: BTreeMap<String, Counts>,
    /// stream -> minute (epoch ms of its start) -> counts, for the last minutes kept.
    pub minutes: BTreeMap<String, BTreeMap<i64, Counts>>,
    /// Per-minute counts changed since the last checkpoint, for the JSON lines output.
    #[serde(skip)]
    pub changed: HashMap<(String, i64), ()>,
}

pub fn partition_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

impl State {
    /// Loads the checkpoint, or starts empty when there is none.
    pub fn load(path: &Path) -> Result<State, AnalyticsError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| AnalyticsError::StateFormat {
                    path: path.display().to_string(),
                    source,
                })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(AnalyticsError::State {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Counts one record unless its offset was already counted (a redelivery). Returns whether it counted.
    pub fn count(&mut self, topic: &str, partition: i32, offset: i64, event: &StreamEvent) -> bool {
        let key = partition_key(topic, partition);
        if self.offsets.get(&key).is_some_and(|next| offset < *next) {
            return false;
        }
        self.offsets.insert(key, offset + 1);
        self.totals
            .entry(event.stream_id.clone())
            .or_default()
            .add(event.kind);
        let minute = event.created_ms - event.created_ms.rem_euclid(MINUTE_MS);
        self.minutes
            .entry(event.stream_id.clone())
            .or_default()
            .entry(minute)
            .or_default()
            .add(event.kind);
        self.changed.insert((event.stream_id.clone(), minute), ());
        true
    }

    /// Records that a partition was read up to `next` without anything to count (an undecodable record).
    pub fn skip(&mut self, topic: &str, partition: i32, offset: i64) {
        let key = partition_key(topic, partition);
        let next = self.offsets.entry(key).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }

    /// Drops per-minute counts older than `keep` minutes before `now_ms`.
    pub fn forget_before(&mut self, now_ms: i64, keep_minutes: i64) {
        let horizon = now_ms - keep_minutes * MINUTE_MS;
        for minutes in self.minutes.values_mut() {
            minutes.retain(|minute, _| *minute >= horizon);
        }
        self.minutes.retain(|_, m| !m.is_empty());
    }

    /// Writes the checkpoint atomically: a temporary file, synced, then renamed over the old one.
    pub fn save(&self, path: &Path) -> Result<(), AnalyticsError> {
        let io = |source| AnalyticsError::State {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(self).map_err(|source| AnalyticsError::StateFormat {
            path: path.display().to_string(),
            source,
        })?;
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Sum of all totals.
    pub fn grand_total(&self) -> Counts {
        self.totals
            .values()
            .fold(Counts::default(), |acc, c| Counts {
                comments: acc.comments + c.comments,
                likes: acc.likes + c.likes,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, kind: EventKind, created_ms: i64) -> StreamEvent {
        StreamEvent {
            event_id: format!("{stream}-{created_ms}"),
            stream_id: stream.into(),
            user_id: "u".into(),
            kind,
            text: None,
            created_ms,
            origin: "local".into(),
            role: Default::default(),
            retraction: None,
        }
    }

    #[test]
    fn counts_each_offset_once_and_survives_a_reload() -> Result<(), AnalyticsError> {
        let mut state = State::default();
        assert!(state.count("events", 0, 0, &event("a", EventKind::Comment, 60_000)));
        assert!(state.count("events", 0, 1, &event("a", EventKind::Like, 61_000)));
        assert!(
            !state.count("events", 0, 1, &event("a", EventKind::Like, 61_000)),
            "redelivery"
        );
        assert!(state.count("eu.events", 0, 0, &event("b", EventKind::Comment, 125_000)));
        assert_eq!(
            state.totals["a"],
            Counts {
                comments: 1,
                likes: 1
            }
        );
        assert_eq!(
            state.minutes["b"][&120_000],
            Counts {
                comments: 1,
                likes: 0
            }
        );

        let path =
            std::env::temp_dir().join(format!("chorus-analytics-{}.json", std::process::id()));
        state.save(&path)?;
        let reloaded = State::load(&path)?;
        std::fs::remove_file(&path).ok();
        assert_eq!(reloaded.offsets["events/0"], 2);
        assert_eq!(
            reloaded.grand_total(),
            Counts {
                comments: 2,
                likes: 1
            }
        );
        Ok(())
    }

    #[test]
    fn old_minutes_are_forgotten_totals_are_not() {
        let mut state = State::default();
        state.count("events", 0, 0, &event("a", EventKind::Comment, 0));
        state.count(
            "events",
            0,
            1,
            &event("a", EventKind::Comment, 10 * MINUTE_MS),
        );
        state.forget_before(11 * MINUTE_MS, 5);
        assert_eq!(state.minutes["a"].len(), 1);
        assert_eq!(state.totals["a"].comments, 2);
    }
}
