//! The router's periodic work: the likes tick (likes and sampling notes per stream) and the viewer counts
//! (a stream's total on every edge of every region, pushed by the owner of its partition when it changed).

use chorus_schemas::wire::PushFrame;
use chorus_schemas::{partition_for, ViewerCount};

use crate::likes::Tick;

use super::{lock, Inner, Router};

impl Router {
    /// One tick: pushes a `Likes` frame per stream with new likes and a `Sampled` frame per stream with
    /// comments left out to each edge with its viewers; returns the like checkpoints and barriers to write.
    pub fn likes_tick(&self, now_ms: i64) -> Tick {
        let mut inner = lock(&self.inner);
        let seq = inner.seq;
        let tick = inner.likes.tick(seq, now_ms);
        let left_out = inner.budgets.take_left_out(now_ms);
        let edges = &inner.edges;
        for (stream_id, left_out) in left_out {
            let sampled = || PushFrame::sampled(&stream_id, left_out);
            edges.push_to_viewers(&stream_id, seq, sampled);
        }
        for (stream_id, delta, total) in &tick.announce {
            let likes = || PushFrame::likes(stream_id, *delta, *total);
            let pushed = edges.push_to_viewers(stream_id, seq, likes);
            self.metrics.routing.likes_frames.inc_by(pushed);
        }
        tick
    }

    /// A record of a (local or mirrored) `viewer-counts` topic.
    pub fn on_viewer_count(&self, topic: &str, key: &str, value: Option<ViewerCount>) {
        lock(&self.inner).viewers.apply(topic, key, value);
    }

    /// Pushes a `Viewers` frame to the edges of each stream this instance owns whose total changed.
    pub fn viewers_tick(&self, now_ms: i64) {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let partitions = self.partitions;
        let positions = &inner.positions;
        let owned = |stream: &str| positions.owns_partition(partition_for(stream, partitions));
        for (stream_id, count) in inner.viewers.changed(now_ms, owned) {
            let viewers = || PushFrame::Viewers {
                stream_id: stream_id.clone(),
                count,
            };
            let pushed = inner.edges.push_to_viewers(&stream_id, inner.seq, viewers);
            self.metrics.routing.viewer_counts_pushed.inc_by(pushed);
        }
    }

    /// A new subscription's edge learns the stream's viewer count at once.
    pub(super) fn tell_viewers(&self, inner: &Inner, edge: &str, stream_id: &str) {
        let count = inner
            .viewers
            .total(stream_id, chorus_service::clock::now_ms());
        if count > 0 {
            let viewers = PushFrame::Viewers {
                stream_id: stream_id.to_owned(),
                count,
            };
            inner.edges.push(edge, inner.seq, viewers);
        }
    }
}
