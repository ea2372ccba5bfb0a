//! Cursors of long-poll and SSE clients: where a client stands in each topic carrying its stream, as text
//! (`topic/partition/offset` joined by `,`; offset `-` when unknown). A cursor is a join position that moves.
//! Only what the edge gives out is taken back: one position per topic, partitions and offsets never negative
//! (and, checked against the rooms, only the stream's partition of topics that carry it).

use crate::frames::{JoinPosition, StreamFrame};

pub fn encode(cursor: &[JoinPosition]) -> String {
    cursor
        .iter()
        .map(|p| {
            let offset = p.offset.map_or("-".to_owned(), |o| o.to_string());
            format!("{}/{}/{}", p.topic, p.partition, offset)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a cursor; `None` for anything malformed (the client gets a 400).
pub fn decode(text: &str) -> Option<Vec<JoinPosition>> {
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

/// Moves `cursor` past the events of `frame`.
pub fn advance(cursor: &mut Vec<JoinPosition>, frame: &StreamFrame) {
    for event in &frame.events {
        match cursor.iter_mut().find(|p| p.topic == event.topic) {
            Some(p) => {
                p.offset = Some(
                    p.offset
                        .map_or(event.offset + 1, |o| o.max(event.offset + 1)),
                )
            }
            None => cursor.push(JoinPosition {
                topic: event.topic.clone(),
                partition: event.partition,
                offset: Some(event.offset + 1),
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
        let text = encode(&cursor);
        assert_eq!(text, "events/3/42,eu.t1.events/3/-");
        assert_eq!(decode(&text), Some(cursor));
        for bad in [
            "",
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
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
