//! The routing state of one fanout instance: the tables, the link to every live edge, and the positions of the
//! partitions it owns. One lock orders routing an event and confirming a subscription, so a `Subscribed`
//! frame's positions are exact: every event at or after them goes to that edge.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chorus_schemas::wire::{Position, PushFrame, PushedEvent};
use chorus_schemas::{
    EdgeLease, EventKind, LikeTotal, PartitionPosition, StreamEvent, Subscription,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::budget::Budgets;
use crate::config::FanoutConfig;
use crate::likes::{Likes, Tick};
use crate::link;
use crate::metrics::FanoutMetrics;
use crate::tables::{LeaseChange, Tables};

/// An expired edge is forgotten (with its subscriptions) this long after its lease ran out.
const FORGET_AFTER_MS: i64 = 60_000;

/// A frame on its way to one edge, with the routing sequence number it was queued at.
#[derive(Debug)]
pub struct Queued {
    pub seq: u64,
    pub frame: PushFrame,
}

/// How far one link got: the last sequence number queued to it and the last one it wrote to the edge.
#[derive(Debug, Default)]
pub struct LinkProgress {
    queued: AtomicU64,
    written: AtomicU64,
}

impl LinkProgress {
    /// Called by the link once everything up to `seq` is written to the edge's socket.
    pub fn written(&self, seq: u64) {
        self.written.fetch_max(seq, Ordering::Release);
    }

    /// Everything up to this sequence number is handed off (`u64::MAX` when nothing is pending).
    fn handed_off(&self) -> u64 {
        let written = self.written.load(Ordering::Acquire);
        if written >= self.queued.load(Ordering::Acquire) {
            u64::MAX
        } else {
            written
        }
    }
}

#[derive(Debug)]
struct LinkHandle {
    url: String,
    frames: mpsc::Sender<Queued>,
    progress: Arc<LinkProgress>,
}

#[derive(Debug, Default)]
struct Inner {
    tables: Tables,
    links: HashMap<String, LinkHandle>,
    /// Next offset to hand on, per owned topic-partition.
    positions: HashMap<(String, i32), i64>,
    likes: Likes,
    budgets: Budgets,
    /// Recent events per owned topic-partition, oldest first, for gap fill.
    recent: HashMap<(String, i32), VecDeque<PushedEvent>>,
    /// Incremented for every routed event; links report how far they wrote in these numbers.
    seq: u64,
    /// Edges whose lease lapsed while they still had subscriptions: where routing to them stopped. If the
    /// lease comes back (the edge was unreachable, not dead), the events routed meanwhile are sent first.
    lapsed: HashMap<String, Vec<PartitionPosition>>,
}

impl Inner {
    fn positions(&self) -> Vec<Position> {
        self.positions
            .iter()
            .map(|((topic, partition), next)| Position {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next,
            })
            .collect()
    }
}

#[derive(Debug)]
pub struct Router {
    inner: Mutex<Inner>,
    fanout_id: String,
    partitions: i32,
    config: FanoutConfig,
    metrics: FanoutMetrics,
    shutdown: CancellationToken,
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
        shutdown: CancellationToken,
    ) -> Self {
        let budgets = Budgets::new(
            config.comment_budget,
            config.comment_budget_overrides.iter().cloned().collect(),
        );
        Router {
            inner: Mutex::new(Inner {
                budgets,
                ..Inner::default()
            }),
            fanout_id,
            partitions,
            config,
            metrics,
            shutdown,
        }
    }

    /// Hands one event to the links of the edges with viewers of its stream. Returns the sequence number
    /// to compare with [`Router::handed_off`]: once that reaches it, the event's offset may be committed.
    pub fn route(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        event: StreamEvent,
        now_ms: i64,
    ) -> u64 {
        let mut inner = lock(&self.inner);
        inner.seq += 1;
        let seq = inner.seq;
        inner
            .positions
            .insert((topic.to_owned(), partition), offset + 1);
        if event.kind == EventKind::Like {
            // Likes are counted, not pushed one by one: the likes tick announces them per stream.
            if inner
                .likes
                .count(&event.stream_id, topic, partition, offset, seq)
            {
                self.metrics.likes_counted.inc();
            }
            return seq;
        }
        if now_ms - event.created_ms > self.config.staleness_ms as i64 {
            self.metrics.events_stale.inc();
            return seq;
        }
        if event.kind == EventKind::Comment && !inner.budgets.admit(&event) {
            self.metrics.comments_sampled_out.inc();
            return seq;
        }
        let pushed = PushedEvent {
            topic: topic.to_owned(),
            partition,
            offset,
            event,
        };
        self.remember(&mut inner, &pushed, now_ms);
        let inner = &*inner;
        for edge in inner.tables.edges_of(&pushed.event.stream_id) {
            if let Some(link) = inner.links.get(edge) {
                if self.push(link, seq, PushFrame::Events(vec![pushed.clone()])) {
                    self.metrics.deliveries_pushed.inc();
                }
            }
        }
        seq
    }

    /// Keeps `pushed` in its partition's buffer, bounded by count and by the staleness bound.
    fn remember(&self, inner: &mut Inner, pushed: &PushedEvent, now_ms: i64) {
        let cap = self.config.gap_fill_buffer;
        if cap == 0 {
            return;
        }
        let buffer = inner
            .recent
            .entry((pushed.topic.clone(), pushed.partition))
            .or_default();
        buffer.push_back(pushed.clone());
        let oldest_kept = now_ms - self.config.staleness_ms as i64;
        while buffer.len() > cap
            || buffer
                .front()
                .is_some_and(|e| e.event.created_ms < oldest_kept)
        {
            buffer.pop_front();
        }
    }

    /// The buffered events of `stream` at or after `positions`, for a new subscription's first viewer.
    fn gap_fill(
        &self,
        inner: &Inner,
        stream: &str,
        positions: &[PartitionPosition],
    ) -> Vec<PushedEvent> {
        let mut fill = Vec::new();
        for position in positions {
            let key = (position.topic.clone(), position.partition);
            let Some(&next) = inner.positions.get(&key) else {
                continue; // not a partition this instance owns
            };
            if next <= position.offset {
                continue; // nothing passed since the join
            }
            let buffer = inner.recent.get(&key);
            let reaches = buffer
                .and_then(|b| b.front())
                .is_some_and(|e| e.offset <= position.offset);
            if !reaches {
                self.metrics.gap_fill_short.inc();
                tracing::warn!(topic = %position.topic, partition = position.partition, "gap fill buffer does not reach back to a join position");
            }
            fill.extend(
                buffer
                    .into_iter()
                    .flatten()
                    .filter(|e| e.offset >= position.offset && e.event.stream_id == stream)
                    .cloned(),
            );
        }
        fill
    }

    /// Queues a frame to a link; a full queue drops it (counted): one slow edge never stalls the others.
    fn push(&self, link: &LinkHandle, seq: u64, frame: PushFrame) -> bool {
        match link.frames.try_send(Queued { seq, frame }) {
            Ok(()) => {
                link.progress.queued.fetch_max(seq, Ordering::Release);
                true
            }
            Err(_) => {
                self.metrics.link_queue_full.inc();
                false
            }
        }
    }

    /// Every event routed at or before this sequence number was written to every edge it was queued for.
    pub fn handed_off(&self) -> u64 {
        let inner = lock(&self.inner);
        inner
            .links
            .values()
            .map(|l| l.progress.handed_off())
            .min()
            .unwrap_or(u64::MAX)
            .min(inner.seq)
            .min(inner.likes.barrier())
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
        let added = inner.tables.apply_subscription(key, value);
        self.metrics
            .subscriptions
            .set(inner.tables.subscription_count() as i64);
        if let Some((stream_id, edge)) = added {
            if let Some(link) = inner.links.get(&edge) {
                let fill = self.gap_fill(&inner, &stream_id, &joined_at);
                tracing::debug!(%stream_id, %edge, ?joined_at, filled = fill.len(), "new subscription");
                if !fill.is_empty() {
                    self.metrics.gap_fill_events.inc_by(fill.len() as u64);
                    self.push(link, inner.seq, PushFrame::Events(fill));
                }
                let positions = inner.positions();
                let likes_total = inner.likes.total(&stream_id);
                self.push(
                    link,
                    inner.seq,
                    PushFrame::Subscribed {
                        stream_id: stream_id.clone(),
                        positions,
                    },
                );
                if let Some(total) = likes_total.filter(|t| *t > 0) {
                    self.push(
                        link,
                        inner.seq,
                        PushFrame::Likes {
                            stream_id,
                            delta: 0,
                            total,
                        },
                    );
                }
            }
        }
    }

    /// Applies a record of `edges`: connects to new edges, disconnects from departed ones.
    pub fn on_lease(self: &Arc<Self>, key: &str, value: Option<EdgeLease>, now_ms: i64) {
        let mut inner = lock(&self.inner);
        match inner.tables.apply_lease(key, value) {
            LeaseChange::Gone(edge) => {
                inner.links.remove(&edge);
                inner.lapsed.remove(&edge);
            }
            LeaseChange::Connect(lease) => self.connect(&mut inner, &lease, now_ms),
            LeaseChange::Renewed => {
                if let Some(lease) = inner.tables.lease(key).cloned() {
                    self.connect(&mut inner, &lease, now_ms);
                }
            }
            LeaseChange::None => {}
        }
        self.metrics
            .edges_live
            .set(inner.tables.live_edges(now_ms).count() as i64);
    }

    /// Starts a link to a live edge unless one to the same address runs.
    fn connect(self: &Arc<Self>, inner: &mut Inner, lease: &EdgeLease, now_ms: i64) {
        if lease.expires_ms < now_ms {
            return;
        }
        if inner
            .links
            .get(&lease.edge_id)
            .is_some_and(|l| l.url == lease.push_url)
        {
            return;
        }
        let (tx, rx) = mpsc::channel(self.config.link_queue.max(1));
        let progress = Arc::new(LinkProgress::default());
        let handle = LinkHandle {
            url: lease.push_url.clone(),
            frames: tx,
            progress: progress.clone(),
        };
        if let Some(stopped_at) = inner.lapsed.remove(&lease.edge_id) {
            self.refill(inner, &handle, &lease.edge_id, &stopped_at);
        }
        inner.links.insert(lease.edge_id.clone(), handle);
        let link = link::Link {
            edge: lease.edge_id.clone(),
            url: lease.push_url.clone(),
            frames: rx,
            progress,
        };
        tokio::spawn(link::run(
            self.clone(),
            link,
            self.config.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        ));
    }

    /// A lapsed edge's lease is back: before anything newer, it gets the buffered events of its streams that
    /// were routed while it had no link (its own dedup drops any it already had).
    fn refill(
        &self,
        inner: &Inner,
        link: &LinkHandle,
        edge: &str,
        stopped_at: &[PartitionPosition],
    ) {
        let mut refilled = 0;
        for stream in inner.tables.streams_of(edge) {
            let fill = self.gap_fill(inner, stream, stopped_at);
            if !fill.is_empty() {
                refilled += fill.len();
                self.push(link, inner.seq, PushFrame::Events(fill));
            }
        }
        self.metrics.gap_fill_events.inc_by(refilled as u64);
        tracing::info!(%edge, refilled, "edge lease renewed after it lapsed; sent what was routed meanwhile");
    }

    /// Stops pushing to edges whose lease expired; forgets those long gone.
    pub fn expire(&self, now_ms: i64) {
        let mut inner = lock(&self.inner);
        for edge in inner.tables.expired(now_ms) {
            if inner.links.remove(&edge).is_some() {
                self.metrics.lease_expiries.inc();
                tracing::info!(%edge, "edge lease expired; no longer pushing to it");
                let stopped_at: Vec<PartitionPosition> = inner
                    .positions
                    .iter()
                    .map(|((topic, partition), next)| PartitionPosition {
                        topic: topic.clone(),
                        partition: *partition,
                        offset: *next,
                    })
                    .collect();
                inner.lapsed.insert(edge, stopped_at);
            }
        }
        for edge in inner.tables.expired(now_ms - FORGET_AFTER_MS) {
            inner.tables.forget_edge(&edge);
            inner.lapsed.remove(&edge);
        }
        self.metrics
            .edges_live
            .set(inner.tables.live_edges(now_ms).count() as i64);
        self.metrics
            .subscriptions
            .set(inner.tables.subscription_count() as i64);
    }

    /// Sends the position of every owned partition to every edge.
    pub fn heartbeat(&self) {
        let inner = lock(&self.inner);
        if inner.positions.is_empty() {
            return;
        }
        let positions = inner.positions();
        for link in inner.links.values() {
            self.push(link, inner.seq, PushFrame::Positions(positions.clone()));
        }
    }

    pub fn knows_position(&self, topic: &str, partition: i32) -> bool {
        lock(&self.inner)
            .positions
            .contains_key(&(topic.to_owned(), partition))
    }

    /// Records where an owned partition stands when no event passed yet (never moves a position back).
    pub fn seed_position(&self, topic: &str, partition: i32, next_offset: i64) {
        if next_offset < 0 {
            return;
        }
        let mut inner = lock(&self.inner);
        let slot = inner
            .positions
            .entry((topic.to_owned(), partition))
            .or_insert(next_offset);
        *slot = (*slot).max(next_offset);
    }

    /// Partitions taken away by a rebalance: their positions are no longer this instance's to announce.
    pub fn revoke(&self, revoked: &[(String, i32)]) {
        let mut inner = lock(&self.inner);
        for tp in revoked {
            inner.positions.remove(tp);
            inner.recent.remove(tp);
        }
        let numbers = revoked.iter().map(|(_, p)| *p).collect();
        inner.likes.revoke(&numbers);
    }

    /// Partitions assigned by a rebalance: their like counts wait for a read barrier on `like-totals`.
    pub fn assign(&self, assigned: &[(String, i32)]) {
        let mut inner = lock(&self.inner);
        let numbers: Vec<i32> = assigned.iter().map(|(_, p)| *p).collect();
        inner.likes.assign(numbers, &self.fanout_id);
    }

    /// A like total read from `like-totals`.
    pub fn apply_like_total(&self, record: &LikeTotal, partition: i32) {
        lock(&self.inner).likes.apply(record, partition);
    }

    /// A read barrier read back from `like-totals`: when it is ours, that partition's counts are complete.
    pub fn like_barrier_read(&self, partition: i32, key: &str) {
        let mut inner = lock(&self.inner);
        if inner.likes.barrier_read(partition, key) {
            tracing::debug!(partition, "like totals of partition settled");
        }
    }

    pub fn like_barrier_failed(&self, partition: i32) {
        lock(&self.inner).likes.barrier_failed(partition);
    }

    /// One tick: pushes a `Likes` frame per stream with new likes and a `Sampled` frame per stream with
    /// comments left out to each edge with its viewers; returns the like checkpoints and barriers to write.
    pub fn likes_tick(&self, now_ms: i64) -> Tick {
        let mut inner = lock(&self.inner);
        let seq = inner.seq;
        let tick = inner.likes.tick(seq, now_ms);
        let left_out = inner.budgets.take_left_out(now_ms);
        let inner = &*inner;
        for (stream_id, left_out) in left_out {
            for edge in inner.tables.edges_of(&stream_id) {
                if let Some(link) = inner.links.get(edge) {
                    let frame = PushFrame::Sampled {
                        stream_id: stream_id.clone(),
                        left_out,
                    };
                    self.push(link, seq, frame);
                }
            }
        }
        for (stream_id, delta, total) in &tick.announce {
            for edge in inner.tables.edges_of(stream_id) {
                if let Some(link) = inner.links.get(edge) {
                    let frame = PushFrame::Likes {
                        stream_id: stream_id.clone(),
                        delta: *delta,
                        total: *total,
                    };
                    if self.push(link, seq, frame) {
                        self.metrics.likes_frames.inc();
                    }
                }
            }
        }
        tick
    }

    /// The outcome of writing one like checkpoint.
    pub fn like_total_written(&self, record: &LikeTotal, acknowledged: bool) {
        lock(&self.inner)
            .likes
            .written(&record.stream_id, &record.topic, acknowledged);
    }

    /// What a (re)connected link sends first: who we are, our positions (so the edge's first viewers get
    /// known join positions at once), every subscription of that edge.
    pub fn opening_frames(&self, edge: &str) -> Vec<PushFrame> {
        let inner = lock(&self.inner);
        let positions = inner.positions();
        let mut frames = vec![
            PushFrame::Hello {
                fanout_id: self.fanout_id.clone(),
                partitions: self.partitions,
            },
            PushFrame::Positions(positions.clone()),
        ];
        frames.extend(
            inner
                .tables
                .streams_of(edge)
                .map(|stream_id| PushFrame::Subscribed {
                    stream_id: stream_id.clone(),
                    positions: positions.clone(),
                }),
        );
        frames
    }

    /// Whether `edge` still has a link (its task stops when it has not).
    pub fn has_link(&self, edge: &str, url: &str) -> bool {
        lock(&self.inner)
            .links
            .get(edge)
            .is_some_and(|l| l.url == url)
    }
}
