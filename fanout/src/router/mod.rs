//! The routing state of one fanout instance under one lock: the edges and their links, the positions and
//! recent events of the partitions it owns, the like counts and comment budgets. One lock orders routing an
//! event and confirming a subscription, so a `Subscribed` frame's positions are exact: every event at or
//! after them goes to that edge. The router decides and queues frames; its callers do the I/O (a lease that
//! needs a link comes back from [`Router::on_lease`] for the caller to start).

use std::sync::{Mutex, MutexGuard, PoisonError};

use chorus_schemas::wire::{PushFrame, PushedEvent};
use chorus_schemas::{
    EdgeLease, EventKind, PartitionPosition, StreamEvent, Subscription, TopicPartition,
};

use crate::budget::Budgets;
use crate::config::FanoutConfig;
use crate::edges::Edges;
use crate::handoff;
use crate::likes::Likes;
use crate::link::{Link, LinkOwner};
use crate::links::Links;
use crate::metrics::FanoutMetrics;
use crate::positions::Positions;
use crate::recent::{GapFill, Recent};
use crate::viewers::ViewerCounts;

mod ticks;

#[derive(Debug)]
struct Inner {
    edges: Edges,
    positions: Positions,
    likes: Likes,
    budgets: Budgets,
    recent: Recent,
    viewers: ViewerCounts,
    /// The routing sequence number of the latest routed event (see [`crate::handoff`]).
    seq: u64,
}

#[derive(Debug)]
pub struct Router {
    inner: Mutex<Inner>,
    fanout_id: String,
    partitions: i32,
    config: FanoutConfig,
    metrics: FanoutMetrics,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Router {
    pub fn new(
        fanout_id: String,
        partitions: i32,
        config: FanoutConfig,
        metrics: FanoutMetrics,
    ) -> Self {
        let links = Links::new(config.link_queue, metrics.edges.link_queue_full.clone());
        let overrides = config.comment_budget_overrides.iter().cloned().collect();
        Router {
            inner: Mutex::new(Inner {
                edges: Edges::new(links),
                positions: Positions::default(),
                likes: Likes::default(),
                budgets: Budgets::new(config.comment_budget, overrides),
                recent: Recent::new(config.gap_fill_buffer, config.held_for_ms()),
                viewers: ViewerCounts::default(),
                seq: 0,
            }),
            fanout_id,
            partitions,
            config,
            metrics,
        }
    }

    /// Hands one event to the links of the edges with viewers of its stream. Returns the sequence number
    /// to compare with [`Router::handed_off`]: once that reaches it, the event's offset may be committed.
    pub fn route(&self, at: &TopicPartition, offset: i64, event: StreamEvent, now_ms: i64) -> u64 {
        let metrics = &self.metrics.routing;
        let mut inner = lock(&self.inner);
        inner.seq += 1;
        let seq = inner.seq;
        inner.positions.passed(at, offset);
        inner.recent.saw(at, offset);
        if event.kind == EventKind::Like {
            // Likes are counted, not pushed one by one: the likes tick announces them per stream.
            let stream = &event.stream_id;
            if inner
                .likes
                .count(stream, &at.topic, at.partition, offset, seq)
            {
                metrics.likes_counted.inc();
            }
            return seq;
        }
        // A take-down is never stale: the comments it takes down may have been seen.
        let stale = now_ms - event.created_ms > self.config.staleness_ms as i64;
        if stale && event.kind != EventKind::Retract {
            metrics.events_stale.inc();
            return seq;
        }
        if event.kind == EventKind::Comment && !inner.budgets.admit(&event) {
            metrics.comments_sampled_out.inc();
            return seq;
        }
        let pushed = PushedEvent {
            topic: at.topic.clone(),
            partition: at.partition,
            offset,
            event,
        };
        inner.recent.remember(&pushed, now_ms);
        let frame = || PushFrame::Events(vec![pushed.clone()]);
        let delivered = inner
            .edges
            .push_to_viewers(&pushed.event.stream_id, seq, frame);
        metrics.deliveries_pushed.inc_by(delivered);
        seq
    }

    /// Every event routed at or before this sequence number is handed off (see [`crate::handoff`]).
    pub fn handed_off(&self) -> u64 {
        let inner = lock(&self.inner);
        handoff::handed_off(inner.edges.progress(), inner.seq, inner.likes.barrier())
    }

    /// Applies a record of `subscriptions`. For a new subscription, the edge first gets the buffered events of
    /// the stream from its first viewer's join position on (routing it from now on happens under the same
    /// lock, so nothing falls between), then the positions the pushes continue from.
    pub fn on_subscription(&self, key: &str, value: Option<Subscription>) {
        let mut inner = lock(&self.inner);
        let joined_at = value
            .as_ref()
            .map(|s| s.positions.clone())
            .unwrap_or_default();
        let added = inner.edges.subscribe(key, value);
        let subscriptions = inner.edges.subscriptions() as i64;
        self.metrics.edges.subscriptions.set(subscriptions);
        let Some((stream_id, edge)) = added else {
            return;
        };
        let fill = inner
            .recent
            .gap_fill(&stream_id, &joined_at, &inner.positions);
        let filled = self.send_fill(&inner, &edge, fill);
        self.metrics.routing.gap_fill_events.inc_by(filled);
        tracing::debug!(%stream_id, %edge, ?joined_at, filled, "new subscription");
        let subscribed = PushFrame::Subscribed {
            stream_id: stream_id.clone(),
            positions: inner.positions.announce(),
        };
        inner.edges.push(&edge, inner.seq, subscribed);
        if let Some(total) = inner.likes.total(&stream_id).filter(|t| *t > 0) {
            let likes = PushFrame::likes(&stream_id, 0, total);
            inner.edges.push(&edge, inner.seq, likes);
        }
        self.tell_viewers(&inner, &edge, &stream_id);
    }

    /// Applies a record of `edges`; returns the link to start for a new, moved or returning live edge.
    #[must_use = "the link returned must be started"]
    pub fn on_lease(&self, key: &str, value: Option<EdgeLease>, now_ms: i64) -> Option<Link> {
        let mut inner = lock(&self.inner);
        let opened = inner.edges.lease(key, value, now_ms);
        if let Some(opened) = &opened {
            if let Some(stopped_at) = &opened.lapsed {
                self.refill(&inner, &opened.link.edge, stopped_at);
            }
        }
        let live = inner.edges.live(now_ms) as i64;
        self.metrics.edges.edges_live.set(live);
        opened.map(|opened| opened.link)
    }

    /// A lapsed edge's lease is back: before anything newer, it gets the buffered events of its streams that
    /// were routed while it had no link (its own dedup drops any it already had).
    fn refill(&self, inner: &Inner, edge: &str, stopped_at: &[PartitionPosition]) {
        let streams = inner.edges.streams_of(edge);
        let fills = inner.recent.refill(streams, stopped_at, &inner.positions);
        let refilled: u64 = fills
            .into_iter()
            .map(|fill| self.send_fill(inner, edge, fill))
            .sum();
        self.metrics.routing.gap_fill_events.inc_by(refilled);
        tracing::info!(%edge, refilled, "edge lease renewed after it lapsed; sent what was routed meanwhile");
    }

    /// Queues a gap fill's events to `edge` as one frame, counting each partition it falls short in; returns
    /// how many events it holds.
    fn send_fill(&self, inner: &Inner, edge: &str, fill: GapFill) -> u64 {
        let (frame, filled, short) = fill.into_frame();
        if !short.is_empty() {
            self.metrics
                .routing
                .gap_fill_short
                .inc_by(short.len() as u64);
            tracing::warn!(
                ?short,
                "gap fill buffer does not reach back to a join position"
            );
        }
        if let Some(frame) = frame {
            inner.edges.push(edge, inner.seq, frame);
        }
        filled
    }

    /// Stops pushing to edges whose lease expired; forgets those long gone.
    pub fn expire(&self, now_ms: i64) {
        let metrics = &self.metrics.edges;
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        for edge in inner.edges.expire(now_ms, || inner.positions.announce()) {
            metrics.lease_expiries.inc();
            tracing::info!(%edge, "edge lease expired; no longer pushing to it");
        }
        let (live, subscriptions) = (inner.edges.live(now_ms), inner.edges.subscriptions());
        metrics.edges_live.set(live as i64);
        metrics.subscriptions.set(subscriptions as i64);
    }

    /// Sends the position of every owned partition to every edge.
    pub fn heartbeat(&self) {
        let inner = lock(&self.inner);
        if !inner.positions.is_empty() {
            let positions = PushFrame::Positions(inner.positions.announce());
            inner.edges.push_all(inner.seq, &positions);
        }
    }

    pub fn knows_position(&self, at: &TopicPartition) -> bool {
        lock(&self.inner).positions.next(at).is_some()
    }

    /// Records where an owned partition stands when no event passed yet (never moves a position back).
    pub fn seed_position(&self, at: &TopicPartition, next_offset: i64) {
        lock(&self.inner).positions.seed(at, next_offset);
    }

    /// Partitions taken away by a rebalance: their positions are no longer this instance's to announce.
    pub fn revoke(&self, revoked: &[TopicPartition]) {
        let mut inner = lock(&self.inner);
        for at in revoked {
            inner.positions.revoke(at);
            inner.recent.forget(at);
        }
        let numbers = revoked.iter().map(|at| at.partition).collect();
        inner.likes.revoke(&numbers);
    }

    /// Partitions assigned by a rebalance: their like counts wait for a read barrier on `like-totals`.
    pub fn assign(&self, assigned: &[TopicPartition]) {
        let numbers: Vec<i32> = assigned.iter().map(|at| at.partition).collect();
        lock(&self.inner).likes.assign(numbers, &self.fanout_id);
    }

    /// The like counts, under the routing lock: for what is read from and written to `like-totals`.
    pub fn with_likes<R>(&self, f: impl FnOnce(&mut Likes) -> R) -> R {
        f(&mut lock(&self.inner).likes)
    }
}

impl LinkOwner for Router {
    fn opening_frames(&self, edge: &str) -> Vec<PushFrame> {
        let inner = lock(&self.inner);
        let hello = PushFrame::Hello {
            fanout_id: self.fanout_id.clone(),
            partitions: self.partitions,
        };
        inner.edges.opening(edge, hello, inner.positions.announce())
    }

    fn wants(&self, edge: &str, url: &str) -> bool {
        lock(&self.inner).edges.is_open(edge, url)
    }

    fn replay(&self, request: u64, stream_id: &str, since: &[PartitionPosition]) -> PushFrame {
        let inner = lock(&self.inner);
        let fill = inner.recent.replay(stream_id, since, &inner.positions);
        let events = fill.events.len();
        self.metrics.routing.replayed_events.inc_by(events as u64);
        fill.replayed(request)
    }
}
