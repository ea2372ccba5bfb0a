//! Who has viewers of what, and which edges are alive: the last value per key of the compacted topics
//! `subscriptions` and `edges`. Kept here, not trusted to the broker's compaction (some brokers never compact).

use std::collections::{HashMap, HashSet};

use chorus_schemas::{EdgeLease, Subscription};

#[derive(Debug, Default)]
pub struct Tables {
    /// stream id -> edges with viewers of it.
    streams: HashMap<String, HashSet<String>>,
    /// subscription key -> (stream, edge), to apply tombstones, which carry only the key.
    keys: HashMap<String, (String, String)>,
    /// edge id -> its latest lease.
    leases: HashMap<String, EdgeLease>,
}

/// What changed in the edge table.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseChange {
    /// A new edge, or one whose push address changed: (re)connect.
    Connect(EdgeLease),
    /// Same edge, same address: only the expiry moved.
    Renewed,
    /// The edge left.
    Gone(String),
    None,
}

impl Tables {
    /// Applies one record of `subscriptions`. Returns the (stream, edge) now subscribed, if any.
    pub fn apply_subscription(
        &mut self,
        key: &str,
        value: Option<Subscription>,
    ) -> Option<(String, String)> {
        match value {
            Some(sub) => {
                self.streams
                    .entry(sub.stream_id.clone())
                    .or_default()
                    .insert(sub.edge_id.clone());
                self.keys
                    .insert(key.to_owned(), (sub.stream_id.clone(), sub.edge_id.clone()));
                Some((sub.stream_id, sub.edge_id))
            }
            None => {
                if let Some((stream, edge)) = self.keys.remove(key) {
                    self.unlink(&stream, &edge);
                }
                None
            }
        }
    }

    fn unlink(&mut self, stream: &str, edge: &str) {
        if let Some(edges) = self.streams.get_mut(stream) {
            edges.remove(edge);
            if edges.is_empty() {
                self.streams.remove(stream);
            }
        }
    }

    /// Applies one record of `edges`.
    pub fn apply_lease(&mut self, key: &str, value: Option<EdgeLease>) -> LeaseChange {
        match value {
            Some(lease) => match self.leases.insert(key.to_owned(), lease.clone()) {
                Some(old) if old.push_url == lease.push_url => LeaseChange::Renewed,
                _ => LeaseChange::Connect(lease),
            },
            None => match self.leases.contains_key(key) {
                true => {
                    self.forget_edge(key);
                    LeaseChange::Gone(key.to_owned())
                }
                false => LeaseChange::None,
            },
        }
    }

    /// Removes an edge with everything it subscribed to.
    pub fn forget_edge(&mut self, edge: &str) {
        self.leases.remove(edge);
        let keys: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, (_, e))| e == edge)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some((stream, edge)) = self.keys.remove(&key) {
                self.unlink(&stream, &edge);
            }
        }
    }

    /// Edges whose lease expired before `now_ms` (and was not renewed since).
    pub fn expired(&self, now_ms: i64) -> Vec<String> {
        self.leases
            .values()
            .filter(|l| l.expires_ms < now_ms)
            .map(|l| l.edge_id.clone())
            .collect()
    }

    /// Edges with viewers of `stream` (live or not; the caller knows which links are up).
    pub fn edges_of(&self, stream: &str) -> impl Iterator<Item = &String> {
        self.streams.get(stream).into_iter().flatten()
    }

    /// Streams `edge` subscribed to.
    pub fn streams_of<'a>(&'a self, edge: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.keys
            .values()
            .filter(move |(_, e)| e == edge)
            .map(|(s, _)| s)
    }

    pub fn lease(&self, edge: &str) -> Option<&EdgeLease> {
        self.leases.get(edge)
    }

    /// Edges with a lease valid at `now_ms`.
    pub fn live_edges(&self, now_ms: i64) -> impl Iterator<Item = &EdgeLease> {
        self.leases.values().filter(move |l| l.expires_ms >= now_ms)
    }

    pub fn subscription_count(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(stream: &str, edge: &str) -> Subscription {
        Subscription {
            stream_id: stream.into(),
            edge_id: edge.into(),
            since_ms: 0,
            positions: Vec::new(),
        }
    }

    fn lease(edge: &str, url: &str, expires_ms: i64) -> EdgeLease {
        EdgeLease {
            edge_id: edge.into(),
            region: "r".into(),
            push_url: url.into(),
            started_ms: 0,
            expires_ms,
        }
    }

    #[test]
    fn last_value_per_key_wins_and_tombstones_remove() {
        let mut t = Tables::default();
        t.apply_subscription("s/e1", Some(sub("s", "e1")));
        t.apply_subscription("s/e2", Some(sub("s", "e2")));
        t.apply_subscription("s/e1", Some(sub("s", "e1")));
        let mut edges: Vec<_> = t.edges_of("s").cloned().collect();
        edges.sort();
        assert_eq!(edges, ["e1", "e2"]);
        t.apply_subscription("s/e1", None);
        assert_eq!(t.edges_of("s").collect::<Vec<_>>(), ["e2"]);
        t.apply_subscription("s/e2", None);
        assert_eq!(t.edges_of("s").count(), 0);
        assert_eq!(t.subscription_count(), 0);
        // A tombstone for a key never seen is harmless.
        t.apply_subscription("x/e9", None);
    }

    #[test]
    fn leases_connect_renew_expire_and_leave() {
        let mut t = Tables::default();
        assert!(matches!(
            t.apply_lease("e1", Some(lease("e1", "ws://a", 10))),
            LeaseChange::Connect(_)
        ));
        assert_eq!(
            t.apply_lease("e1", Some(lease("e1", "ws://a", 20))),
            LeaseChange::Renewed
        );
        assert!(matches!(
            t.apply_lease("e1", Some(lease("e1", "ws://b", 30))),
            LeaseChange::Connect(_)
        ));
        t.apply_subscription("s/e1", Some(sub("s", "e1")));
        assert_eq!(t.expired(25), Vec::<String>::new());
        assert_eq!(t.expired(31), ["e1"]);
        assert_eq!(t.apply_lease("e1", None), LeaseChange::Gone("e1".into()));
        assert_eq!(
            t.edges_of("s").count(),
            0,
            "a departed edge's subscriptions go with it"
        );
        assert_eq!(t.apply_lease("e1", None), LeaseChange::None);
    }
}
