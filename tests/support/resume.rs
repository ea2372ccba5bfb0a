//! A viewer that comes back with its cursor, as a good client does: over WebSocket, SSE or long-poll, it keeps
//! the last cursor it was given (every `hello`, `events` and `reconnect` frame, SSE's `id:`, long-poll's
//! answer), and whenever its connection ends or the edge asks it to reconnect, it connects to the next edge of
//! its list with that cursor. What it sees is shared, for the test to wait on and check.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    WebSocket,
    Sse,
    LongPoll,
}

/// One event as the viewer received it.
#[derive(Debug, Clone)]
pub struct Got {
    pub event_id: String,
    pub offset: i64,
    pub at: Instant,
}

/// Everything the viewer saw, in order.
#[derive(Debug, Default)]
pub struct Seen {
    pub events: Vec<Got>,
    pub hellos: Vec<Value>,
    pub gaps: Vec<Value>,
    pub cursor: Option<String>,
}

/// A running resuming viewer.
pub struct Resumer {
    pub seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// How long one connection attempt may take, and the most a lost connection waits before the next (a random
/// part of it, so viewers that lost their edge together do not all come back at once).
const CONNECT: Duration = Duration::from_secs(5);
const RETRY_MS: u64 = 300;
/// The longest a `reconnect` frame's delay is honoured here (tests keep their jitter short).
const MAX_DELAY: Duration = Duration::from_millis(500);

impl Resumer {
    /// Watches `stream` on `edges[0]` first (then the next edge at each reconnect), with `cursor` if given.
    pub fn start(
        wire: Wire,
        edges: Vec<SocketAddr>,
        stream: &str,
        cursor: Option<String>,
    ) -> Resumer {
        let seen = Arc::new(Mutex::new(Seen {
            cursor,
            ..Seen::default()
        }));
        let changed = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let watching = Watching {
            wire,
            edges,
            stream: stream.to_owned(),
            seen: seen.clone(),
            changed: changed.clone(),
            http: reqwest::Client::new(),
        };
        let task = tokio::spawn(watching.run(stop.clone()));
        Resumer {
            seen,
            changed,
            stop,
            task,
        }
    }

    /// Waits until `done` holds of what was seen, at most `within`; false if it did not.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            if done(&self.seen.lock().expect("lock")) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return done(&self.seen.lock().expect("lock"));
            }
        }
    }

    /// Stops watching; returns what was seen.
    pub async fn stop(self) -> Seen {
        self.stop.cancel();
        let _ = self.task.await;
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

struct Watching {
    wire: Wire,
    edges: Vec<SocketAddr>,
    stream: String,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    http: reqwest::Client,
}

/// How one connection ended: asked to come back after a delay, or lost.
enum Ended {
    Reconnect(Duration),
    Lost,
}

impl Watching {
    async fn run(self, stop: CancellationToken) {
        let mut edge = 0;
        loop {
            let addr = self.edges[edge % self.edges.len()];
            let ended = tokio::select! {
                () = stop.cancelled() => return,
                ended = self.connection(addr) => ended,
            };
            let pause = match ended {
                Ended::Reconnect(delay) => delay.min(MAX_DELAY),
                Ended::Lost => Duration::from_millis(rand::random::<u64>() % RETRY_MS),
            };
            edge += 1;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    fn cursor(&self) -> Option<String> {
        self.seen.lock().expect("lock").cursor.clone()
    }

    /// One connection, until it ends.
    async fn connection(&self, addr: SocketAddr) -> Ended {
        match self.wire {
            Wire::WebSocket => self.websocket(addr).await,
            Wire::Sse => self.sse(addr).await,
            Wire::LongPoll => self.long_poll(addr).await,
        }
    }

    fn url(&self, addr: SocketAddr, path: &str) -> reqwest::Url {
        let mut url =
            reqwest::Url::parse(&format!("http://{addr}/v1/streams/{}/{path}", self.stream))
                .expect("url");
        if let Some(cursor) = self.cursor() {
            url.query_pairs_mut().append_pair("cursor", &cursor);
        }
        url
    }

    async fn websocket(&self, addr: SocketAddr) -> Ended {
        let url = self
            .url(addr, "ws")
            .to_string()
            .replacen("http://", "ws://", 1);
        let connected = tokio::time::timeout(CONNECT, tokio_tungstenite::connect_async(url)).await;
        let Ok(Ok((mut socket, _))) = connected else {
            return Ended::Lost;
        };
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                if let Some(ended) = self.take(&frame, None) {
                    return ended;
                }
            }
        }
        Ended::Lost
    }

    async fn sse(&self, addr: SocketAddr) -> Ended {
        let mut request = self
            .http
            .get(self.url(addr, "sse"))
            .timeout(Duration::from_secs(120));
        if let Some(cursor) = self.cursor() {
            request = request.header("last-event-id", cursor);
        }
        let Ok(Ok(response)) = tokio::time::timeout(CONNECT, request.send()).await else {
            return Ended::Lost;
        };
        if response.status() != 200 {
            return Ended::Lost;
        }
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_owned()))
                };
                let Some(data) = field("data:") else { continue };
                let frame: Value = serde_json::from_str(&data).expect("JSON data");
                if let Some(ended) = self.take(&frame, field("id:")) {
                    return ended;
                }
            }
        }
        Ended::Lost
    }

    async fn long_poll(&self, addr: SocketAddr) -> Ended {
        loop {
            let mut url = self.url(addr, "poll");
            url.query_pairs_mut().append_pair("wait_ms", "2000");
            let answer = self
                .http
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let Ok(answer) = answer else {
                return Ended::Lost;
            };
            if answer.status() != 200 {
                return Ended::Lost;
            }
            let Ok(body) = answer.json::<Value>().await else {
                return Ended::Lost;
            };
            let cursor = body["cursor"].as_str().map(str::to_owned);
            let mut ended = None;
            for frame in body["frames"].as_array().expect("frames") {
                ended = ended.or(self.take(frame, None));
            }
            if let Some(cursor) = cursor {
                self.seen.lock().expect("lock").cursor = Some(cursor);
            }
            if let Some(ended) = ended {
                return ended;
            }
        }
    }

    /// Records a frame (and the cursor it carries, or SSE's `id`); `Some` when the connection must end.
    fn take(&self, frame: &Value, id: Option<String>) -> Option<Ended> {
        let mut seen = self.seen.lock().expect("lock");
        if let Some(cursor) = id.or_else(|| frame["cursor"].as_str().map(str::to_owned)) {
            seen.cursor = Some(cursor);
        }
        let ended = match frame["type"].as_str() {
            Some("hello") => {
                seen.hellos.push(frame.clone());
                None
            }
            Some("gap") => {
                seen.gaps.push(frame.clone());
                None
            }
            Some("events") => {
                let at = Instant::now();
                for e in frame["events"].as_array().expect("events") {
                    seen.events.push(Got {
                        event_id: e["event_id"].as_str().expect("id").to_owned(),
                        offset: e["offset"].as_i64().expect("offset"),
                        at,
                    });
                }
                None
            }
            Some("reconnect") => Some(Ended::Reconnect(Duration::from_millis(
                frame["delay_ms"].as_u64().unwrap_or(0),
            ))),
            _ => None,
        };
        drop(seen);
        self.changed.notify_waiters();
        ended
    }
}
