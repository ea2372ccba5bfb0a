//! What the analytics consumer shows: a table of the top streams, and JSON lines of per-minute counts.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::state::{Counts, State};
use crate::AnalyticsError;

/// The top `top` streams by events in the minute containing `now_ms`, with their totals.
pub fn table(state: &State, top: usize, now_ms: i64) -> String {
    let minute = now_ms - now_ms.rem_euclid(60_000);
    let mut rows: Vec<(&String, Counts, Counts)> = state
        .totals
        .iter()
        .map(|(stream, total)| {
            let this_minute = state
                .minutes
                .get(stream)
                .and_then(|m| m.get(&minute))
                .copied()
                .unwrap_or_default();
            (stream, this_minute, *total)
        })
        .collect();
    rows.sort_by(|a, b| {
        b.1.total()
            .cmp(&a.1.total())
            .then(b.2.total().cmp(&a.2.total()))
    });
    let mut out = String::new();
    let all = state.grand_total();
    let _ = writeln!(
        out,
        "{} streams, {} comments, {} likes in total",
        state.totals.len(),
        all.comments,
        all.likes
    );
    let _ = writeln!(
        out,
        "{:<40} {:>12} {:>10} {:>14} {:>12}",
        "stream", "comments/min", "likes/min", "comments total", "likes total"
    );
    for (stream, now, total) in rows.into_iter().take(top) {
        let _ = writeln!(
            out,
            "{:<40} {:>12} {:>10} {:>14} {:>12}",
            stream, now.comments, now.likes, total.comments, total.likes
        );
    }
    out
}

#[derive(Serialize)]
struct MinuteLine<'a> {
    stream_id: &'a str,
    minute_ms: i64,
    comments: u64,
    likes: u64,
}

/// Appends the per-minute counts changed since the last call, one JSON object a line, and forgets them.
pub fn append_changed(state: &mut State, path: &Path) -> Result<(), AnalyticsError> {
    let io = |source| AnalyticsError::State {
        path: path.display().to_string(),
        source,
    };
    let mut out = String::new();
    let mut changed: Vec<(String, i64)> = state.changed.drain().map(|(k, ())| k).collect();
    changed.sort();
    for (stream, minute) in changed {
        let counts = state
            .minutes
            .get(&stream)
            .and_then(|m| m.get(&minute))
            .copied()
            .unwrap_or_default();
        let line = MinuteLine {
            stream_id: &stream,
            minute_ms: minute,
            comments: counts.comments,
            likes: counts.likes,
        };
        if let Ok(json) = serde_json::to_string(&line) {
            out.push_str(&json);
            out.push('\n');
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(out.as_bytes()).map_err(io)
}
