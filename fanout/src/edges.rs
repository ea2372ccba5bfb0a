//! The edges as the router sees them: who has viewers of what ([`Tables`]), the link to each live edge
//! ([`Links`]), and the lease lifecycle between them: a new or moved lease opens a link, an expired one closes
//! it and remembers where routing stopped (the lapsed-edge state), a returning one reopens it with that, a
//! departed or long-gone edge is forgotten. Pure: links opened here are started by the router's caller.

use std::collections::HashMap;

use chorus_schemas::wire::PushFrame;
use chorus_schemas::{EdgeLease, PartitionPosition, Subscription};

use crate::handoff::LinkProgress;
use crate::link::Link;
use crate::links::Links;
use crate::tables::{LeaseChange, Tables};

/// An expired edge is forgotten (with its subscriptions) this long after its lease ran out.
const FORGET_AFTER_MS: i64 = 60_000;

/// A link to start; for an edge whose lease had lapsed, where routing to it stopped.
#[derive(Debug)]
pub struct Opened {
    pub link: Link,
    pub lapsed: Option<Vec<PartitionPosition>>,
}

#[derive(Debug)]
pub struct Edges {
    tables: Tables,
    links: Links,
    /// Edges whose lease lapsed while they still had subscriptions: where routing to them stopped. If the
    /// lease comes back (the edge was unreachable, not dead), the events routed meanwhile are sent first.
    lapsed: HashMap<String, Vec<PartitionPosition>>,
}

impl Edges {
    pub fn new(links: Links) -> Self {
        Edges {
            tables: Tables::default(),
            links,
            lapsed: HashMap::new(),
        }
    }

    /// Applies a record of `subscriptions`. Returns the (stream, edge) newly subscribed when that edge has
    /// a link (one without gets the subscription in its opening frames).
    pub fn subscribe(
        &mut self,
        key: &str,
        value: Option<Subscription>,
    ) -> Option<(String, String)> {
        let added = self.tables.apply_subscription(key, value);
        added.filter(|(_, edge)| self.links.has(edge))
    }

    /// Applies a record of `edges`: forgets a departed edge; opens a link to a new, moved or returning live
    /// edge unless one to the same address is open.
    pub fn lease(&mut self, key: &str, value: Option<EdgeLease>, now_ms: i64) -> Option<Opened> {
        let lease = match self.tables.apply_lease(key, value) {
            LeaseChange::Gone(edge) => {
                self.forget(&edge);
                return None;
            }
            LeaseChange::Connect(lease) => lease,
            LeaseChange::Renewed => self.tables.lease(key)?.clone(),
            LeaseChange::None => return None,
        };
        if lease.expires_ms < now_ms {
            return None;
        }
        let link = self.links.open(&lease.edge_id, &lease.push_url)?;
        let lapsed = self.lapsed.remove(&lease.edge_id);
        Some(Opened { link, lapsed })
    }

    /// Closes the links of edges whose lease expired before `now_ms`, remembering `stopped_at()` for each;
    /// returns those edges. Forgets the edges gone for a minute.
    pub fn expire(
        &mut self,
        now_ms: i64,
        stopped_at: impl Fn() -> Vec<PartitionPosition>,
    ) -> Vec<String> {
        let mut closed = Vec::new();
        for edge in self.tables.expired(now_ms) {
            if self.links.close(&edge) {
                self.lapsed.insert(edge.clone(), stopped_at());
                closed.push(edge);
            }
        }
        for edge in self.tables.expired(now_ms - FORGET_AFTER_MS) {
            self.forget(&edge);
        }
        closed
    }

    /// The edge is gone for good: its link, its subscriptions and where it stopped.
    fn forget(&mut self, edge: &str) {
        self.tables.forget_edge(edge);
        self.links.close(edge);
        self.lapsed.remove(edge);
    }

    /// What a (re)connected edge gets first: who we are (`hello`), our positions (so its first viewers get
    /// known join positions at once), and a `Subscribed` for each stream it subscribed to.
    pub fn opening(
        &self,
        edge: &str,
        hello: PushFrame,
        positions: Vec<PartitionPosition>,
    ) -> Vec<PushFrame> {
        let subscribed = self
            .tables
            .streams_of(edge)
            .map(|stream_id| PushFrame::Subscribed {
                stream_id: stream_id.clone(),
                positions: positions.clone(),
            });
        let mut frames = vec![hello, PushFrame::Positions(positions.clone())];
        frames.extend(subscribed);
        frames
    }

    /// Queues a frame to one edge; false when it has no link or its queue is full.
    pub fn push(&self, edge: &str, seq: u64, frame: PushFrame) -> bool {
        self.links.push(edge, seq, frame)
    }

    /// Queues a frame (built per link) to every linked edge with viewers of `stream`; returns how many took it.
    pub fn push_to_viewers(&self, stream: &str, seq: u64, frame: impl Fn() -> PushFrame) -> u64 {
        self.links
            .push_each(self.tables.edges_of(stream), seq, frame)
    }

    /// Queues a copy of `frame` to every linked edge.
    pub fn push_all(&self, seq: u64, frame: &PushFrame) {
        self.links.push_all(seq, frame);
    }

    /// Streams `edge` subscribed to.
    pub fn streams_of<'a>(&'a self, edge: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.tables.streams_of(edge)
    }

    /// Whether `edge` has a link to `url`.
    pub fn is_open(&self, edge: &str, url: &str) -> bool {
        self.links.is_open(edge, url)
    }

    /// How far each link got.
    pub fn progress(&self) -> impl Iterator<Item = &LinkProgress> {
        self.links.progress()
    }

    /// Edges with a lease valid at `now_ms`.
    pub fn live(&self, now_ms: i64) -> usize {
        self.tables.live_edges(now_ms).count()
    }

    pub fn subscriptions(&self) -> usize {
        self.tables.subscription_count()
    }
}

#[cfg(test)]
mod tests {
    use chorus_schemas::TopicPartition;
    use prometheus::IntCounter;

    use super::*;

    fn edges() -> Edges {
        let full = IntCounter::new("full_total", "full").expect("a valid counter");
        Edges::new(Links::new(8, full))
    }

    fn lease(edge: &str, url: &str, expires_ms: i64) -> Option<EdgeLease> {
        Some(EdgeLease {
            edge_id: edge.into(),
            region: "r".into(),
            push_url: url.into(),
            started_ms: 0,
            expires_ms,
        })
    }

    fn subscription(stream: &str, edge: &str) -> Option<Subscription> {
        Some(Subscription {
            stream_id: stream.into(),
            edge_id: edge.into(),
            since_ms: 0,
            positions: Vec::new(),
        })
    }

    fn stopped_at() -> Vec<PartitionPosition> {
        vec![PartitionPosition::new(&TopicPartition::new("events", 0), 9)]
    }

    #[test]
    fn a_live_lease_opens_one_link_per_address() {
        let mut edges = edges();
        assert!(
            edges.lease("e0", lease("e0", "ws://x", 5), 10).is_none(),
            "expired"
        );
        let opened = edges
            .lease("e1", lease("e1", "ws://a", 100), 10)
            .expect("a link");
        assert!(opened.lapsed.is_none());
        assert!(
            edges.lease("e1", lease("e1", "ws://a", 200), 10).is_none(),
            "renewed"
        );
        assert!(
            edges.lease("e1", lease("e1", "ws://b", 300), 10).is_some(),
            "moved"
        );
        assert!(edges.is_open("e1", "ws://b"));
        assert_eq!(edges.live(150), 1);
        assert!(edges.lease("e1", None, 10).is_none(), "gone");
        assert!(!edges.is_open("e1", "ws://b"));
    }

    #[test]
    fn a_new_subscription_is_reported_only_for_a_linked_edge() {
        let mut edges = edges();
        assert_eq!(edges.subscribe("s/e1", subscription("s", "e1")), None);
        let _link = edges.lease("e1", lease("e1", "ws://a", 100), 10);
        let added = edges.subscribe("t/e1", subscription("t", "e1"));
        assert_eq!(added, Some(("t".into(), "e1".into())));
        assert_eq!(edges.subscriptions(), 2);
        assert_eq!(
            edges.push_to_viewers("s", 1, || PushFrame::Positions(Vec::new())),
            1
        );
    }

    #[test]
    fn a_reconnected_edge_opens_with_hello_positions_and_its_subscriptions() {
        let mut edges = edges();
        edges.subscribe("s/e1", subscription("s", "e1"));
        edges.subscribe("t/e2", subscription("t", "e2"));
        let hello = PushFrame::Hello {
            fanout_id: "f".into(),
            partitions: 1,
        };
        let opening = edges.opening("e1", hello.clone(), stopped_at());
        let subscribed = PushFrame::Subscribed {
            stream_id: "s".into(),
            positions: stopped_at(),
        };
        let positions = PushFrame::Positions(stopped_at());
        assert_eq!(opening, [hello, positions, subscribed]);
    }

    #[test]
    fn an_expired_lease_lapses_and_a_returning_one_gets_where_routing_stopped() {
        let mut edges = edges();
        let _link = edges.lease("e1", lease("e1", "ws://a", 100), 10);
        edges.subscribe("s/e1", subscription("s", "e1"));
        assert!(edges.expire(50, stopped_at).is_empty(), "not yet");
        assert_eq!(edges.expire(101, stopped_at), ["e1"]);
        assert!(edges.expire(102, stopped_at).is_empty(), "already closed");
        assert_eq!(
            edges.streams_of("e1").count(),
            1,
            "subscriptions kept for a while"
        );
        let back = edges
            .lease("e1", lease("e1", "ws://a", 500), 103)
            .expect("reopened");
        assert_eq!(back.lapsed, Some(stopped_at()));
    }

    #[test]
    fn an_edge_gone_long_is_forgotten_with_its_subscriptions() {
        let mut edges = edges();
        let _link = edges.lease("e1", lease("e1", "ws://a", 100), 10);
        edges.subscribe("s/e1", subscription("s", "e1"));
        edges.expire(101, stopped_at);
        edges.expire(100 + FORGET_AFTER_MS + 1, stopped_at);
        assert_eq!(edges.subscriptions(), 0);
        let back = edges.lease("e1", lease("e1", "ws://a", 200_000), 200_000);
        assert!(back.is_some_and(|o| o.lapsed.is_none()), "a new edge now");
    }
}
