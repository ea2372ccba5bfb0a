//! The frames a stream's viewers receive ([`crate::protocol`] has their JSON): each is serialised once per
//! stream and shared by every socket.

use std::sync::Arc;

use crate::likes::Likes;
use axum::extract::ws::Utf8Bytes;
use chorus_schemas::wire::PushedEvent;
use chorus_schemas::EventKind;

pub use crate::cursor::JoinPosition;
pub use crate::protocol::{ServerFrame, ViewerEvent};

/// Where a viewer joined, per topic (the local `events` and each mirrored `<region>.events`).
pub type Join = [JoinPosition];

fn join_offset(join: &Join, topic: &str) -> i64 {
    join.iter()
        .find(|j| j.topic == topic)
        .and_then(|j| j.offset)
        .unwrap_or(i64::MIN)
}

/// What one push batch means to the viewers of one stream, encoded once.
#[derive(Debug)]
pub struct StreamFrame {
    /// Per topic, the next offset after everything broadcast to the stream up to this frame (the cursor
    /// its `events` frame carries).
    pub cursor: Vec<JoinPosition>,
    /// The epoch of that cursor.
    pub epoch: std::sync::Arc<str>,
    /// Lowest offset per topic in the frame; a viewer that joined at or before all of them takes the frame as
    /// it is.
    pub first_offsets: Vec<(String, i64)>,
    /// The events, for the rare viewer that joined in the middle of this frame.
    pub events: Vec<PushedEvent>,
    /// Pre-encoded `events` frame (comments), if any.
    pub comments: Option<Utf8Bytes>,
    /// Pre-encoded `retract` frame, when the frame holds take-downs.
    pub retract: Option<Utf8Bytes>,
    /// Pre-encoded `likes` frame, in a frame of its own (likes come aggregated from fanout, once per tick),
    /// with what it says (to merge it with others a viewer has yet to be sent).
    pub likes: Option<(Likes, Utf8Bytes)>,
    /// The room's take-downs before this frame was broadcast: a viewer that reaches it after a later one
    /// filters it (see `Session::take`).
    pub take_downs_before: u64,
    /// A status (the viewer count) rather than news: a long-poll does not answer for it alone.
    pub status: bool,
}

impl StreamFrame {
    /// Encodes `events` (all of one stream, in offset order per topic) for its viewers, with the cursor of
    /// the stream after them.
    pub fn encode(
        stream_id: &str,
        events: Vec<PushedEvent>,
        epoch: &std::sync::Arc<str>,
        cursor: Vec<JoinPosition>,
    ) -> Option<StreamFrame> {
        if events.is_empty() {
            return None;
        }
        let text = crate::cursor::encode(epoch, stream_id, &cursor);
        let mut first_offsets: Vec<(String, i64)> = Vec::new();
        for e in &events {
            match first_offsets.iter_mut().find(|(t, _)| *t == e.topic) {
                Some((_, first)) => *first = (*first).min(e.offset),
                None => first_offsets.push((e.topic.clone(), e.offset)),
            }
        }
        let comments = encode_comments(stream_id, &events, &text);
        let retract = encode_retract(stream_id, &events);
        Some(StreamFrame {
            cursor,
            epoch: epoch.clone(),
            first_offsets,
            events,
            comments,
            retract,
            likes: None,
            take_downs_before: 0,
            status: false,
        })
    }

    /// The frame without the comments in `taken_down` (re-encoded, same cursor); `None` when nothing is left.
    pub fn without(&self, stream_id: &str, taken_down: &dyn Fn(&str) -> bool) -> Option<Self> {
        let events = self
            .events
            .iter()
            .filter(|e| e.event.kind != EventKind::Comment || !taken_down(&e.event.event_id))
            .cloned()
            .collect();
        StreamFrame::encode(stream_id, events, &self.epoch, self.cursor.clone())
    }

    /// Whether the frame holds a comment in `taken_down`.
    pub fn holds_any(&self, taken_down: &dyn Fn(&str) -> bool) -> bool {
        self.events
            .iter()
            .any(|e| e.event.kind == EventKind::Comment && taken_down(&e.event.event_id))
    }

    /// A frame of one text that is neither kept nor filtered (gap, viewers).
    fn notice(text: Utf8Bytes) -> StreamFrame {
        StreamFrame {
            cursor: Vec::new(),
            epoch: "".into(),
            first_offsets: Vec::new(),
            events: Vec::new(),
            comments: Some(text),
            retract: None,
            likes: None,
            take_downs_before: 0,
            status: false,
        }
    }

    /// A `viewers` frame: how many watch the stream everywhere.
    pub fn viewers(stream_id: &str, count: u64) -> StreamFrame {
        StreamFrame {
            status: true,
            ..StreamFrame::notice(ServerFrame::Viewers { stream_id, count }.to_text())
        }
    }

    /// A `gap` frame telling the viewers how many comments the stream's budget left out.
    pub fn sampled(stream_id: &str, left_out: u64) -> StreamFrame {
        StreamFrame::notice(
            ServerFrame::Sampled {
                stream_id,
                reason: "sampled",
                missed_events: left_out,
            }
            .to_text(),
        )
    }

    /// A `likes` frame: the likes of a stream that fanout counted in one tick, and the running total.
    pub fn likes(stream_id: &str, likes: Likes) -> StreamFrame {
        let text = ServerFrame::Likes {
            stream_id,
            delta: likes.delta,
            total: likes.total,
        }
        .to_text();
        StreamFrame {
            cursor: Vec::new(),
            epoch: "".into(),
            first_offsets: Vec::new(),
            events: Vec::new(),
            comments: None,
            retract: None,
            likes: Some((likes, text)),
            take_downs_before: 0,
            status: false,
        }
    }

    fn whole_for(&self, join: &Join) -> bool {
        self.first_offsets
            .iter()
            .all(|(topic, first)| join_offset(join, topic) <= *first)
    }

    /// Whether the frame's cursor is at or past `position` in every topic (a viewer ahead of the room, just
    /// resumed from fanout's replay, must not be given a cursor behind what it was sent).
    fn cursor_covers(&self, position: &Join) -> bool {
        position.iter().all(|p| {
            p.offset.is_none_or(|o| {
                self.cursor
                    .iter()
                    .any(|c| c.topic == p.topic && c.offset.is_some_and(|next| next >= o))
            })
        })
    }

    /// The frame as a viewer at `position` (where it joined, or what it was sent) must see it: whole when
    /// the frame is all after it, re-encoded without the events before it (and with the viewer's cursor)
    /// otherwise.
    pub fn for_viewer(&self, stream_id: &str, position: &Join) -> Vec<Utf8Bytes> {
        let events_whole =
            self.comments.is_none() || self.events.is_empty() || self.cursor_covers(position);
        if self.whole_for(position) && events_whole {
            return self
                .comments
                .iter()
                .chain(&self.retract)
                .chain(self.likes.iter().map(|(_, text)| text))
                .cloned()
                .collect();
        }
        let later: Vec<PushedEvent> = self
            .events
            .iter()
            .filter(|e| e.offset >= join_offset(position, &e.topic))
            .cloned()
            .collect();
        let mut after = position.to_vec();
        self.advance(&mut after);
        let text = crate::cursor::encode(&self.epoch, stream_id, &after);
        encode_comments(stream_id, &later, &text)
            .into_iter()
            .chain(self.retract.clone())
            .collect()
    }

    /// Moves `cursor` past this frame: past its events, and to the frame's own cursor (everything of the
    /// stream before it was broadcast, so a viewer that has the frame has been sent all of it from its join
    /// on).
    pub fn advance(&self, cursor: &mut Vec<JoinPosition>) {
        let stands = self
            .cursor
            .iter()
            .filter_map(|c| Some((c.topic.as_str(), c.partition, c.offset?)));
        let past = self
            .events
            .iter()
            .map(|e| (e.topic.as_str(), e.partition, e.offset + 1));
        crate::cursor::move_past(cursor, stands.chain(past));
    }

    /// Events in this frame that a viewer joined at `join` receives.
    pub fn event_count(&self, join: &Join) -> usize {
        if self.whole_for(join) {
            return self.events.len();
        }
        self.events
            .iter()
            .filter(|e| e.offset >= join_offset(join, &e.topic))
            .count()
    }
}

/// Frames a writer sends to one viewer at once: their `likes` frames become one (the deltas summed, the last
/// total) in the place of the last, so a viewer that fell behind by a few ticks still gets one per write.
pub fn merge_likes(stream_id: &str, frames: Vec<Arc<StreamFrame>>) -> Vec<Arc<StreamFrame>> {
    let mut likes = frames
        .iter()
        .filter_map(|f| f.likes.as_ref().map(|(l, _)| *l));
    let Some(first) = likes.next() else {
        return frames;
    };
    let rest: Vec<Likes> = likes.collect();
    let Some(last) = rest.last() else {
        return frames;
    };
    let merged = Likes {
        delta: rest
            .iter()
            .fold(first.delta, |sum, l| sum.saturating_add(l.delta)),
        total: last.total,
    };
    let last_at = frames.iter().rposition(|f| f.likes.is_some());
    frames
        .into_iter()
        .enumerate()
        .filter_map(
            |(at, frame)| match (frame.likes.is_some(), Some(at) == last_at) {
                (false, _) => Some(frame),
                (true, false) => None,
                (true, true) => Some(Arc::new(StreamFrame::likes(stream_id, merged))),
            },
        )
        .collect()
}

fn encode_comments(stream_id: &str, events: &[PushedEvent], cursor: &str) -> Option<Utf8Bytes> {
    let comments: Vec<ViewerEvent<'_>> = events
        .iter()
        .filter(|e| e.event.kind != EventKind::Retract)
        .map(|e| ViewerEvent {
            event_id: &e.event.event_id,
            user_id: &e.event.user_id,
            kind: e.event.kind.label(),
            text: e.event.text.as_deref(),
            created_ms: e.event.created_ms,
            origin: &e.event.origin,
            topic: &e.topic,
            offset: e.offset,
        })
        .collect();
    (!comments.is_empty()).then(|| {
        ServerFrame::Events {
            stream_id,
            events: comments,
            cursor,
        }
        .to_text()
    })
}

/// The `retract` frame of the take-downs among `events`, if any (each id once).
fn encode_retract(stream_id: &str, events: &[PushedEvent]) -> Option<Utf8Bytes> {
    let mut ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e.event.retraction.as_ref())
        .flat_map(|r| r.event_ids.iter().map(String::as_str))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    (!ids.is_empty()).then(|| {
        ServerFrame::Retract {
            stream_id,
            event_ids: &ids,
        }
        .to_text()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(frames: &[Arc<StreamFrame>]) -> Vec<String> {
        frames
            .iter()
            .flat_map(|f| f.for_viewer("s", &[]))
            .map(|t| t.as_str().to_owned())
            .collect()
    }

    #[test]
    fn likes_frames_sent_together_become_one_in_the_place_of_the_last() {
        let likes = |delta, total| Arc::new(StreamFrame::likes("s", Likes { delta, total }));
        let sampled = Arc::new(StreamFrame::sampled("s", 4));
        let frames = vec![likes(2, 10), sampled.clone(), likes(3, 13), likes(0, 13)];
        assert_eq!(
            texts(&merge_likes("s", frames)),
            [
                r#"{"type":"gap","stream_id":"s","reason":"sampled","missed_events":4}"#,
                r#"{"type":"likes","stream_id":"s","delta":5,"total":13}"#,
            ]
        );
        let one = vec![sampled.clone(), likes(1, 1)];
        assert_eq!(texts(&merge_likes("s", one)).len(), 2, "a single one stays");
        assert_eq!(texts(&merge_likes("s", vec![sampled])).len(), 1);
    }
}
