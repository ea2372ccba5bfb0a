//! The routing state of one fanout instance: the tables, the link to every live edge, and the positions of the
//! partitions it owns. One lock orders routing an event and confirming a subscription, so a `Subscribed`
//! frame's positions are exact: every event at or after them goes to that edge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chorus_schemas::wire::{Position, PushFrame, PushedEvent};
use chorus_schemas::{EdgeLease, EventKind, StreamEvent, Subscription};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::FanoutConfig;
use crate::link;
use crate::metrics::FanoutMetrics;
use crate::tables::{LeaseChange, Tables};

/// An expired edge is forgotten (with its subscriptions) this long after its lease ran out.
const FORGET_AFTER_MS: i64 = 60_000;
/// Streams whose like totals are kept in memory; beyond it, the least recently seen totals restart.
const MAX_LIKE_TOTALS: usize = 100_000;

#[derive(Debug)]
struct LinkHandle {
    url: String,
    frames: mpsc::Sender<PushFrame>,
}

#[derive(Debug, Default)]
struct Inner {
    tables: Tables,
    links: HashMap<String, LinkHandle>,
    /// Next offset to hand on, per owned topic-partition.
    positions: HashMap<(String, i32), i64>,
    likes: HashMap<String, u64>,
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
        Router {
            inner: Mutex::default(),
            fanout_id,
            partitions,
            config,
            metrics,
            shutdown,
        }
    }

    /// Hands one event to the links of the edges with viewers of its stream. Returns once it is queued
    /// there (or counted as dropped), so the caller may then store its offset.
    pub fn route(&self, topic: &str, partition: i32, offset: i64, event: StreamEvent, now_ms: i64) {
        let mut inner = lock(&self.inner);
        inner
            .positions
            .insert((topic.to_owned(), partition), offset + 1);
        let likes_total = if event.kind == EventKind::Like {
            if inner.likes.len() >= MAX_LIKE_TOTALS && !inner.likes.contains_key(&event.stream_id) {
                inner.likes.clear();
            }
            let total = inner.likes.entry(event.stream_id.clone()).or_default();
            *total += 1;
            *total
        } else {
            0
        };
        if now_ms - event.created_ms > self.config.staleness_ms as i64 {
            self.metrics.events_stale.inc();
            return;
        }
        let pushed = PushedEvent {
            topic: topic.to_owned(),
            partition,
            offset,
            likes_total,
            event,
        };
        let inner = &*inner;
        for edge in inner.tables.edges_of(&pushed.event.stream_id) {
            if let Some(link) = inner.links.get(edge) {
                self.push(link, PushFrame::Events(vec![pushed.clone()]));
                self.metrics.deliveries_pushed.inc();
            }
        }
    }

    fn push(&self, link: &LinkHandle, frame: PushFrame) {
        if link.frames.try_send(frame).is_err() {
            self.metrics.link_queue_full.inc();
        }
    }

    /// Applies a record of `subscriptions`; a new subscription is confirmed to its edge with exact positions.
    pub fn on_subscription(&self, key: &str, value: Option<Subscription>) {
        let mut inner = lock(&self.inner);
        let added = inner.tables.apply_subscription(key, value);
        self.metrics
            .subscriptions
            .set(inner.tables.subscription_count() as i64);
        if let Some((stream_id, edge)) = added {
            if let Some(link) = inner.links.get(&edge) {
                let positions = inner.positions();
                self.push(
                    link,
                    PushFrame::Subscribed {
                        stream_id,
                        positions,
                    },
                );
            }
        }
    }

    /// Applies a record of `edges`: connects to new edges, disconnects from departed ones.
    pub fn on_lease(self: &Arc<Self>, key: &str, value: Option<EdgeLease>, now_ms: i64) {
        let mut inner = lock(&self.inner);
        match inner.tables.apply_lease(key, value) {
            LeaseChange::Gone(edge) => {
                inner.links.remove(&edge);
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
        inner.links.insert(
            lease.edge_id.clone(),
            LinkHandle {
                url: lease.push_url.clone(),
                frames: tx,
            },
        );
        tokio::spawn(link::run(
            self.clone(),
            lease.edge_id.clone(),
            lease.push_url.clone(),
            rx,
            self.config.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        ));
    }

    /// Stops pushing to edges whose lease expired; forgets those long gone.
    pub fn expire(&self, now_ms: i64) {
        let mut inner = lock(&self.inner);
        for edge in inner.tables.expired(now_ms) {
            if inner.links.remove(&edge).is_some() {
                self.metrics.lease_expiries.inc();
                tracing::info!(%edge, "edge lease expired; no longer pushing to it");
            }
        }
        for edge in inner.tables.expired(now_ms - FORGET_AFTER_MS) {
            inner.tables.forget_edge(&edge);
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
            self.push(link, PushFrame::Positions(positions.clone()));
        }
    }

    /// Partitions taken away by a rebalance: their positions are no longer this instance's to announce.
    pub fn revoke(&self, revoked: &[(String, i32)]) {
        let mut inner = lock(&self.inner);
        for tp in revoked {
            inner.positions.remove(tp);
        }
    }

    /// What a (re)connected link sends first: who we are, every subscription of that edge, our positions.
    pub fn opening_frames(&self, edge: &str) -> Vec<PushFrame> {
        let inner = lock(&self.inner);
        let positions = inner.positions();
        let mut frames = vec![PushFrame::Hello {
            fanout_id: self.fanout_id.clone(),
            partitions: self.partitions,
        }];
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
