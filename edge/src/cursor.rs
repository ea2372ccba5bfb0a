//! Cursors: what a viewer has been sent of its stream, as text it gives back to resume. The epoch of the
//! positions (the cluster's, see [`epoch`]), `.`, a tag of the stream (a cursor of one stream is no cursor of
//! another on the same partition), `:`, then where the viewer stands in each topic carrying the stream
//! (`topic/partition/offset` joined by `,`; offset `-` when unknown). A cursor is a join position that moves.
//! Only what an edge gives out is taken back: epoch and tag of hex digits, one position per topic,
//! partitions and offsets never negative (and, checked against the rooms, only the stream's partition of
//! topics that carry it).

use chorus_schemas::wire::PushedEvent;
use serde::Serialize;

/// Where a viewer joined: it receives every event at or after these positions and none before.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JoinPosition {
    pub topic: String,
    pub partition: i32,
    /// `None` when no position of this partition is known yet (no event has passed since fanout started).
    pub offset: Option<i64>,
}

/// How a resume ended (the label of `chorus_edge_resumes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Resumed,
    /// What the viewer missed is no longer held (older than the resume window, or held by no one here).
    Window,
    /// The cursor's positions are of another log: another cluster, or a topic since recreated.
    Epoch,
    /// Not a cursor of this stream.
    Malformed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Resumed => "resumed",
            Outcome::Window => "window",
            Outcome::Epoch => "epoch",
            Outcome::Malformed => "malformed",
        }
    }
}

/// A cursor a client came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: String,
    /// The [`tag`] of the stream it was given out for.
    pub stream: String,
    pub positions: Vec<JoinPosition>,
}

/// The epoch of a cluster's positions: a digest of its id (a new cluster has a new one), the same on every
/// edge of the region.
pub fn epoch(cluster_id: &str) -> String {
    format!("{:016x}", digest(cluster_id))
}

/// A stream's tag in its cursors.
pub fn tag(stream_id: &str) -> String {
    format!("{:08x}", digest(stream_id) as u32)
}

fn digest(text: &str) -> u64 {
    use std::hash::Hasher;
    let mut digest = fnv::FnvHasher::default();
    digest.write(text.as_bytes());
    digest.finish()
}

pub fn encode(epoch: &str, stream_id: &str, cursor: &[JoinPosition]) -> String {
    format!("{epoch}.{}:{}", tag(stream_id), positions(cursor))
}

fn positions(cursor: &[JoinPosition]) -> String {
    cursor
        .iter()
        .map(|p| {
            let offset = p.offset.map_or("-".to_owned(), |o| o.to_string());
            format!("{}/{}/{}", p.topic, p.partition, offset)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a cursor; `None` for anything malformed.
pub fn decode(text: &str) -> Option<Cursor> {
    let (head, positions) = text.split_once(':')?;
    let (epoch, stream) = head.split_once('.')?;
    let hex = |t: &str| (1..=32).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(epoch) && hex(stream)).then_some(())?;
    Some(Cursor {
        epoch: epoch.to_owned(),
        stream: stream.to_owned(),
        positions: decode_positions(positions)?,
    })
}

fn decode_positions(text: &str) -> Option<Vec<JoinPosition>> {
    let cursor: Vec<JoinPosition> = text
        .split(',')
        .map(|part| {
            let mut fields = part.rsplitn(3, '/');
            let offset = fields.next()?;
            let partition = natural(fields.next()?)?;
            let topic = fields.next().filter(|t| !t.is_empty())?.to_owned();
            let offset = match offset {
                "-" => None,
                o => Some(natural(o)?),
            };
            Some(JoinPosition {
                topic,
                partition,
                offset,
            })
        })
        .collect::<Option<_>>()?;
    let repeated = cursor
        .iter()
        .enumerate()
        .any(|(i, p)| cursor[..i].iter().any(|q| q.topic == p.topic));
    (!repeated).then_some(cursor)
}

/// Digits only: no sign (`parse` takes `+1` and `-1`).
fn natural<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse().ok())
        .flatten()
}

/// `cursor` moved past `events`.
pub fn past(cursor: &[JoinPosition], events: &[PushedEvent]) -> Vec<JoinPosition> {
    let mut after = cursor.to_vec();
    move_past(
        &mut after,
        events
            .iter()
            .map(|e| (e.topic.as_str(), e.partition, e.offset + 1)),
    );
    after
}

/// Moves `cursor` to at least each `(topic, partition, next offset)`.
pub fn move_past<'a>(
    cursor: &mut Vec<JoinPosition>,
    nexts: impl IntoIterator<Item = (&'a str, i32, i64)>,
) {
    for (topic, partition, next) in nexts {
        match cursor.iter_mut().find(|p| p.topic == topic) {
            Some(p) => p.offset = Some(p.offset.map_or(next, |o| o.max(next))),
            None => cursor.push(JoinPosition {
                topic: topic.to_owned(),
                partition,
                offset: Some(next),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = vec![
            JoinPosition {
                topic: "events".into(),
                partition: 3,
                offset: Some(42),
            },
            JoinPosition {
                topic: "eu.t1.events".into(),
                partition: 3,
                offset: None,
            },
        ];
        let text = encode("00ff", "s", &cursor);
        let expected = format!("00ff.{}:events/3/42,eu.t1.events/3/-", tag("s"));
        assert_eq!(text, expected);
        let decoded = decode(&text).expect("a cursor");
        assert_eq!(decoded.epoch, "00ff");
        assert_eq!((decoded.stream, decoded.positions), (tag("s"), cursor));
        assert_ne!(tag("s"), tag("t"));
        assert_eq!(epoch("chorus-eu"), epoch("chorus-eu"));
        assert_ne!(epoch("chorus-eu"), epoch("chorus-us"));
        for bad in [
            "events/3/42",
            ":events/3/42",
            "00ff:events/3/42",
            "x.1:events/3/42",
            "0.1:",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        for bad in [
            "events/3",
            "events/x/1",
            "/3/1",
            "events/3/1,",
            "events/3/1.5",
            "events/3/-1",
            "events/-3/1",
            "events/3/+1",
            "events/3/1,events/3/2",
        ] {
            assert_eq!(decode(&format!("00ff.01:{bad}")), None, "{bad:?}");
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
