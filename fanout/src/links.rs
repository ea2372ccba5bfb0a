//! The router's ends of the links to edges: one queue per edge. Queueing never waits: a full queue drops the
//! frame (counted), so one slow edge never stalls the others. Opening a link only returns its task's end
//! ([`Link`]); the caller starts it.

use std::collections::HashMap;
use std::sync::Arc;

use chorus_schemas::wire::PushFrame;
use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::handoff::LinkProgress;
use crate::link::{Link, Queued};

/// The router's end of one link.
#[derive(Debug)]
struct LinkHandle {
    url: String,
    frames: mpsc::Sender<Queued>,
    progress: Arc<LinkProgress>,
}

#[derive(Debug)]
pub struct Links {
    /// Frames queued per link at most.
    capacity: usize,
    /// Counts the frames a full queue dropped.
    queue_full: IntCounter,
    open: HashMap<String, LinkHandle>,
}

impl Links {
    pub fn new(capacity: usize, queue_full: IntCounter) -> Self {
        Links {
            capacity: capacity.max(1),
            queue_full,
            open: HashMap::new(),
        }
    }

    /// Opens a link to `edge` at `url` unless one to the same address is open (one to another address is
    /// replaced: its task ends). Returns the new link's task end.
    pub fn open(&mut self, edge: &str, url: &str) -> Option<Link> {
        if self.is_open(edge, url) {
            return None;
        }
        let (tx, rx) = mpsc::channel(self.capacity);
        let progress = Arc::new(LinkProgress::default());
        let handle = LinkHandle {
            url: url.to_owned(),
            frames: tx,
            progress: progress.clone(),
        };
        self.open.insert(edge.to_owned(), handle);
        Some(Link {
            edge: edge.to_owned(),
            url: url.to_owned(),
            frames: rx,
            progress,
        })
    }

    /// Closes the link to `edge` (its task ends); false when it had none.
    pub fn close(&mut self, edge: &str) -> bool {
        self.open.remove(edge).is_some()
    }

    pub fn has(&self, edge: &str) -> bool {
        self.open.contains_key(edge)
    }

    /// Whether `edge` has a link to `url` (the task of an older link stops when it has not).
    pub fn is_open(&self, edge: &str, url: &str) -> bool {
        self.open.get(edge).is_some_and(|l| l.url == url)
    }

    /// Queues a frame routed at `seq` to `edge`; false when it has no link or its queue is full.
    pub fn push(&self, edge: &str, seq: u64, frame: PushFrame) -> bool {
        self.open
            .get(edge)
            .is_some_and(|link| self.queue(link, seq, frame))
    }

    /// Queues a frame (built per link) to each of `edges` with a link; returns how many took it.
    pub fn push_each<'e>(
        &self,
        edges: impl IntoIterator<Item = &'e String>,
        seq: u64,
        frame: impl Fn() -> PushFrame,
    ) -> u64 {
        let links = edges.into_iter().filter_map(|edge| self.open.get(edge));
        links.filter(|link| self.queue(link, seq, frame())).count() as u64
    }

    /// Queues a copy of `frame` to every link.
    pub fn push_all(&self, seq: u64, frame: &PushFrame) {
        for link in self.open.values() {
            self.queue(link, seq, frame.clone());
        }
    }

    fn queue(&self, link: &LinkHandle, seq: u64, frame: PushFrame) -> bool {
        match link.frames.try_send(Queued { seq, frame }) {
            Ok(()) => {
                link.progress.queued(seq);
                true
            }
            Err(_) => {
                self.queue_full.inc();
                false
            }
        }
    }

    /// How far each open link got, for [`crate::handoff::handed_off`].
    pub fn progress(&self) -> impl Iterator<Item = &LinkProgress> {
        self.open.values().map(|l| l.progress.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(capacity: usize) -> Links {
        let full = IntCounter::new("full_total", "full").expect("a valid counter");
        Links::new(capacity, full)
    }

    fn hello() -> PushFrame {
        PushFrame::Hello {
            fanout_id: "f".into(),
            partitions: 1,
        }
    }

    #[test]
    fn one_link_per_edge_and_address() {
        let mut links = links(4);
        let first = links.open("e1", "ws://a").expect("a new link");
        assert!(links.open("e1", "ws://a").is_none(), "already open");
        assert!(links.open("e1", "ws://b").is_some(), "moved: reconnect");
        assert!(first.frames.is_closed(), "the old link's queue is closed");
        assert!(links.is_open("e1", "ws://b") && !links.is_open("e1", "ws://a"));
        assert!(links.close("e1") && !links.close("e1"));
        assert!(!links.has("e1"));
    }

    #[test]
    fn a_full_queue_drops_the_frame_and_counts_it() {
        let mut links = links(1);
        let mut link = links.open("e1", "ws://a").expect("a new link");
        assert!(links.push("e1", 1, hello()));
        assert!(!links.push("e1", 2, hello()), "full");
        assert!(!links.push("e9", 3, hello()), "no link");
        assert_eq!(links.queue_full.get(), 1);
        assert_eq!(link.frames.try_recv().map(|q| q.seq).ok(), Some(1));
        let edges = ["e1".to_owned(), "e9".to_owned()];
        assert_eq!(links.push_each(&edges, 4, hello), 1);
        link.progress.written(4);
        let done = crate::handoff::handed_off(links.progress(), 4, u64::MAX);
        assert_eq!(done, 4, "written up to what was queued");
    }
}
