//! Asking fanout for what a resuming viewer missed: the edge sends an [`EdgeRequest::Replay`] on the push
//! link of the session that holds each partition of the cursor, and waits (bounded) for the `Replayed`
//! answers. Only the session asked may answer a request; an answer is taken only for the stream and the
//! partitions asked, at or after the positions asked. A link that ends drops what waits on it: those
//! viewers are not resumed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chorus_schemas::wire::{EdgeRequest, PushedEvent};
use chorus_schemas::{PartitionPosition, TopicPartition};
use tokio::sync::{mpsc, oneshot};

use crate::cursor::Outcome;
use crate::positions::SessionId;
use crate::room::lock;

/// Requests waiting to be written on one link.
const LINK_REQUESTS: usize = 4_096;

/// One session's answer: the events, or why they are not all there.
type Answer = Result<Vec<PushedEvent>, Outcome>;

#[derive(Debug)]
struct Waiting {
    session: SessionId,
    stream_id: String,
    since: Vec<PartitionPosition>,
    reply: oneshot::Sender<Answer>,
}

#[derive(Debug, Default)]
pub struct Replays {
    next: AtomicU64,
    links: Mutex<HashMap<SessionId, mpsc::Sender<Vec<u8>>>>,
    waiting: Mutex<HashMap<u64, Waiting>>,
}

impl Replays {
    /// A push session opened: the requests to write on its link.
    pub fn attach(&self, session: SessionId) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(LINK_REQUESTS);
        lock(&self.links).insert(session, tx);
        rx
    }

    /// A push session ended: what waits on it is dropped (those viewers are not resumed).
    pub fn detach(&self, session: SessionId) {
        lock(&self.links).remove(&session);
        lock(&self.waiting).retain(|_, w| w.session != session);
    }

    /// The events of `stream_id` at or after `since`, asked of the sessions that hold its partitions (per
    /// position) and waited for at most `within`; [`Outcome::Window`] when a link cannot take the request,
    /// an answer falls short or does not come in time, [`Outcome::Epoch`] when a position is ahead of its
    /// holder's.
    pub async fn ask(
        &self,
        stream_id: &str,
        since: Vec<(SessionId, PartitionPosition)>,
        within: Duration,
    ) -> Answer {
        let mut by_session: HashMap<SessionId, Vec<PartitionPosition>> = HashMap::new();
        for (session, position) in since {
            by_session.entry(session).or_default().push(position);
        }
        let mut answers = Vec::new();
        let mut asked = Vec::new();
        for (session, since) in by_session {
            let sent = self.send(session, stream_id, since);
            let Some((request, answer)) = sent else {
                self.give_up(&asked);
                return Err(Outcome::Window);
            };
            asked.push(request);
            answers.push(answer);
        }
        let all = async {
            let mut events = Vec::new();
            for answer in answers {
                events.extend(answer.await.map_err(|_| Outcome::Window)??);
            }
            Ok(events)
        };
        let events = tokio::time::timeout(within, all)
            .await
            .unwrap_or(Err(Outcome::Window));
        self.give_up(&asked);
        events
    }

    /// Forgets `requests` (answered, or no longer waited for).
    fn give_up(&self, requests: &[u64]) {
        let mut waiting = lock(&self.waiting);
        for request in requests {
            waiting.remove(request);
        }
    }

    fn send(
        &self,
        session: SessionId,
        stream_id: &str,
        since: Vec<PartitionPosition>,
    ) -> Option<(u64, oneshot::Receiver<Answer>)> {
        let request = self.next.fetch_add(1, Ordering::Relaxed);
        let bytes = EdgeRequest::Replay {
            request,
            stream_id: stream_id.to_owned(),
            since: since.clone(),
        }
        .encode()
        .ok()?;
        let link = lock(&self.links).get(&session).cloned()?;
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            session,
            stream_id: stream_id.to_owned(),
            since,
            reply,
        };
        lock(&self.waiting).insert(request, waiting);
        if link.try_send(bytes).is_err() {
            lock(&self.waiting).remove(&request);
            return None;
        }
        Some((request, answer))
    }

    /// `session` answered `request`: handed to whoever waits, keeping only what was asked for.
    pub fn answered(
        &self,
        session: SessionId,
        request: u64,
        events: Vec<PushedEvent>,
        short: &[TopicPartition],
        ahead: &[TopicPartition],
    ) {
        let mut waiting = lock(&self.waiting);
        if waiting.get(&request).is_none_or(|w| w.session != session) {
            return; // not this session's to answer, or given up on
        }
        let Some(w) = waiting.remove(&request) else {
            return;
        };
        drop(waiting);
        let asked = |e: &PushedEvent| {
            e.event.stream_id == w.stream_id
                && w.since.iter().any(|p| {
                    p.topic == e.topic && p.partition == e.partition && e.offset >= p.offset
                })
        };
        let answer = if !ahead.is_empty() {
            Err(Outcome::Epoch)
        } else if !short.is_empty() {
            Err(Outcome::Window)
        } else {
            Ok(events.into_iter().filter(asked).collect())
        };
        let _ = w.reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use chorus_schemas::{EventKind, StreamEvent, UserRole};

    use super::*;

    fn event(stream: &str, offset: i64) -> PushedEvent {
        PushedEvent {
            topic: "events".into(),
            partition: 2,
            offset,
            event: StreamEvent {
                event_id: format!("{stream}-{offset}"),
                stream_id: stream.into(),
                user_id: "u".into(),
                kind: EventKind::Comment,
                text: Some("hi".into()),
                created_ms: 0,
                origin: "r".into(),
                role: UserRole::default(),
                retraction: None,
            },
        }
    }

    fn since(offset: i64) -> PartitionPosition {
        PartitionPosition::new(&TopicPartition::new("events", 2), offset)
    }

    /// Answers each request written on `link` with `answer(request)` as `session`.
    fn answer_with(
        replays: std::sync::Arc<Replays>,
        session: SessionId,
        mut link: mpsc::Receiver<Vec<u8>>,
        events: Vec<PushedEvent>,
        short: Vec<TopicPartition>,
        ahead: Vec<TopicPartition>,
    ) {
        tokio::spawn(async move {
            while let Some(bytes) = link.recv().await {
                let Ok(EdgeRequest::Replay { request, .. }) = EdgeRequest::decode(&bytes) else {
                    continue;
                };
                replays.answered(session, request, events.clone(), &short, &ahead);
            }
        });
    }

    #[tokio::test]
    async fn only_what_was_asked_of_the_holder_is_taken() {
        let replays = std::sync::Arc::new(Replays::default());
        let link = replays.attach(1);
        let pushed = vec![
            event("s", 4),
            event("s", 5),
            event("other", 6),
            event("s", 7),
        ];
        answer_with(replays.clone(), 1, link, pushed, vec![], vec![]);
        let got = replays
            .ask("s", vec![(1, since(5))], Duration::from_secs(5))
            .await
            .expect("answered");
        let offsets: Vec<i64> = got.iter().map(|e| e.offset).collect();
        assert_eq!(
            offsets,
            [5, 7],
            "not before the cursor, not another stream's"
        );
    }

    #[tokio::test]
    async fn a_short_answer_no_holder_or_no_answer_resumes_nothing() {
        let replays = std::sync::Arc::new(Replays::default());
        let at = vec![TopicPartition::new("events", 2)];
        answer_with(
            replays.clone(),
            1,
            replays.attach(1),
            vec![event("s", 5)],
            at.clone(),
            vec![],
        );
        answer_with(replays.clone(), 4, replays.attach(4), vec![], vec![], at);
        let within = Duration::from_secs(5);
        let asked = |session| replays.ask("s", vec![(session, since(5))], within);
        assert_eq!(asked(1).await, Err(Outcome::Window), "short");
        assert_eq!(asked(4).await, Err(Outcome::Epoch), "ahead");
        assert_eq!(asked(9).await, Err(Outcome::Window), "no link");
        let _silent = replays.attach(2);
        let quick = Duration::from_millis(50);
        let silent = replays.ask("s", vec![(2, since(5))], quick).await;
        assert_eq!(silent, Err(Outcome::Window), "no answer in time");
        assert!(lock(&replays.waiting).is_empty(), "nothing left waiting");
    }
}
