//! A viewer over WebSocket, as a browser or `chorus watch` would be.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::WAIT;

/// A viewer over WebSocket.
pub struct Viewer {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
    /// The stream's viewer count, as the last `viewers` frame (or the `hello`) said: the frame readers below
    /// take `viewers` frames in passing, as a browser's status line would.
    pub viewers: Option<u64>,
}

impl Viewer {
    pub async fn connect(url: &str) -> Viewer {
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("websocket handshake");
        let mut viewer = Viewer {
            socket,
            hello: Value::Null,
            viewers: None,
        };
        let hello = viewer.next_frame().await;
        assert_eq!(hello["type"], "hello", "first frame is hello: {hello}");
        viewer.viewers = hello["viewers"].as_u64();
        viewer.hello = hello;
        viewer
    }

    /// The next frame, within [`WAIT`].
    pub async fn next_frame(&mut self) -> Value {
        self.try_next_frame(WAIT).await.expect("a frame in time")
    }

    /// The next frame within `wait` (a `viewers` frame is taken into [`Viewer::viewers`] and skipped), or
    /// `None`.
    pub async fn try_next_frame(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = self.frame_by(deadline).await?;
            if frame["type"] == "viewers" {
                self.viewers = frame["count"].as_u64();
                continue;
            }
            return Some(frame);
        }
    }

    /// The next frame of any type before `deadline`, or `None`.
    pub async fn frame_by(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??;
            match message.expect("websocket read") {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"))
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads (other frames dropped) until the viewer count is `count` (true), or `within` passes (false).
    pub async fn wait_viewers(&mut self, count: u64, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.viewers != Some(count) {
            match self.frame_by(deadline).await {
                None => return false,
                Some(frame) if frame["type"] == "viewers" => self.viewers = frame["count"].as_u64(),
                Some(_) => {}
            }
        }
        true
    }

    /// Events of the next `events` frames until one with `event_id` arrives; panics after [`WAIT`].
    pub async fn events_until(&mut self, event_id: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.try_next_frame(left).await.unwrap_or_else(|| {
                panic!("{event_id} did not arrive within {WAIT:?}; saw {seen:?}")
            });
            if frame["type"] != "events" {
                continue;
            }
            for event in frame["events"].as_array().expect("events array") {
                seen.push(event.clone());
            }
            if seen.iter().any(|e| e["event_id"] == event_id) {
                return seen;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.send(Message::Close(None)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }
}

/// A viewer that reads everything until a comment with text `until`, for at most `limit`: the event ids it
/// saw before it, and each one's latency in ms (from its `created_ms` at ingest to its arrival here).
pub async fn read_until(
    url: String,
    until: &'static str,
    limit: Duration,
) -> (HashSet<String>, Vec<i64>) {
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let (mut ids, mut latencies) = (HashSet::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).expect("JSON");
        if frame["type"] != "events" {
            continue;
        }
        let now = chorus_service::clock::now_ms();
        for event in frame["events"].as_array().expect("events") {
            if event["text"] == until {
                return (ids, latencies);
            }
            ids.insert(event["event_id"].as_str().expect("id").to_owned());
            latencies.push(now - event["created_ms"].as_i64().expect("created"));
        }
    }
    panic!("a viewer did not see {until:?} within {limit:?}");
}

/// A WebSocket over a socket with a 4 KB receive buffer, as a client that means to stop reading would open.
pub async fn small_socket(url: &str) -> WebSocketStream<TcpStream> {
    let address = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("host")
        .parse()
        .expect("address");
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let stream = tokio::time::timeout(WAIT, socket.connect(address))
        .await
        .expect("connect in time")
        .expect("connect");
    let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("handshake in time")
        .expect("handshake");
    socket
}

/// Waits for the viewers started with [`read_until`]; asserts that none lost any of `posted`, and returns
/// all their latencies, sorted.
pub async fn latencies_without_loss(
    viewers: Vec<tokio::task::JoinHandle<(HashSet<String>, Vec<i64>)>>,
    posted: &[super::load::Posted],
) -> Vec<i64> {
    let mut latencies = Vec::new();
    for viewer in viewers {
        let (ids, mut seen) = viewer.await.expect("viewer");
        let lost = posted.iter().filter(|p| !ids.contains(&p.event_id)).count();
        assert_eq!(lost, 0, "a healthy viewer lost {lost} comments");
        latencies.append(&mut seen);
    }
    latencies.sort_unstable();
    latencies
}
