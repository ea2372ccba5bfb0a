//! What a room sends at its own pace rather than as it comes: likes (at most one frame per interval), the
//! viewer count (at most one a second), and what the flush tick finds due (coalesced events included).

use std::sync::Arc;
use std::time::Instant;

use crate::coalesce::Coalescing;
use crate::frames::StreamFrame;
use crate::likes::Likes;
use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;

use super::{lock, Room};

impl Room {
    /// Fanout's count of the stream's viewers everywhere: broadcast unless the last count went out less than
    /// a second ago (then held for a flush tick). True when the room has just started waiting for one.
    pub fn offer_viewers(&self, count: u64, now: Instant, metrics: &EdgeMetrics) -> bool {
        let mut state = lock(&self.state);
        let was_waiting = state.waiting();
        if let Some(count) = state.viewers_count.offer(count, now) {
            self.send_viewers(count, metrics);
        }
        !was_waiting && state.waiting()
    }

    fn send_viewers(&self, count: u64, metrics: &EdgeMetrics) {
        Occurrence::ViewersBroadcast.emit(metrics);
        let _ = self
            .frames
            .send(Arc::new(StreamFrame::viewers(&self.stream_id, count)));
    }

    /// Fanout's likes of the stream for one tick: broadcast unless the last likes frame went out less than
    /// the likes interval ago (then held for a flush tick), and remembered for the `hello` of viewers who join
    /// later. True when the room has just started waiting for a flush tick.
    pub fn offer_likes(&self, delta: u64, total: u64, now: Instant, metrics: &EdgeMetrics) -> bool {
        let mut state = lock(&self.state);
        let grew = total > state.likes_total;
        state.likes_total = state.likes_total.max(total);
        // A delta of 0 announces a total the viewers may not know yet (a new subscription's first one).
        if delta == 0 && !grew {
            return false;
        }
        let was_waiting = state.waiting();
        let likes = Likes {
            delta,
            total: state.likes_total,
        };
        if let Some(likes) = state.likes.offer(likes, now) {
            self.send_likes(likes, metrics);
        }
        !was_waiting && state.waiting()
    }

    /// Comments of the stream that its budget left out: the viewers are told how many.
    pub fn sampled(&self, left_out: u64) {
        let _ordered = lock(&self.state);
        let _ = self
            .frames
            .send(Arc::new(StreamFrame::sampled(&self.stream_id, left_out)));
    }

    /// At a flush tick: sends the coalesced events whose wait is over and the held likes whose interval is.
    /// True while something still waits.
    pub fn flush(
        &self,
        now: Instant,
        coalescing: Option<&Coalescing>,
        metrics: &EdgeMetrics,
    ) -> bool {
        let mut state = lock(&self.state);
        if let Some(coalescing) = coalescing {
            let due = state.pending_since.is_none_or(|since| {
                coalescing.due(now.saturating_duration_since(since), state.viewers)
            });
            if due {
                let events = std::mem::take(&mut state.pending);
                state.pending_since = None;
                self.publish(&mut state, events);
            }
        }
        if let Some(likes) = state.likes.due(now) {
            self.send_likes(likes, metrics);
        }
        if let Some(count) = state.viewers_count.due(now) {
            self.send_viewers(count, metrics);
        }
        state.waiting()
    }

    fn send_likes(&self, likes: Likes, metrics: &EdgeMetrics) {
        Occurrence::LikesBroadcast.emit(metrics);
        // Not kept for returning clients: the next likes frame carries the total anyway.
        let _ = self
            .frames
            .send(Arc::new(StreamFrame::likes(&self.stream_id, likes)));
    }
}
