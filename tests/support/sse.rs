//! A Server-Sent Events client: reads a `text/event-stream` response event by event.

use futures_util::StreamExt;
use serde_json::Value;

use super::WAIT;

/// One Server-Sent Event: its `id:`, `retry:` and the JSON of its `data:`.
#[derive(Debug)]
pub struct SseEvent {
    pub id: Option<String>,
    pub retry: Option<String>,
    pub data: Value,
}

type Body =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// Reads events from an SSE response body.
pub struct SseReader {
    body: Body,
    buffer: String,
}

impl SseReader {
    /// `GET url` (with `Last-Event-ID` when given); the answer must be a `200` event stream.
    pub async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> SseReader {
        let mut request = http.get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("sse request");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().expect("type"),
            "text/event-stream"
        );
        SseReader {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event with data (keep-alive comments are skipped), within [`WAIT`].
    pub async fn next(&mut self) -> SseEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_owned()))
                };
                if let Some(data) = field("data:") {
                    return SseEvent {
                        id: field("id:"),
                        retry: field("retry:"),
                        data: serde_json::from_str(&data).expect("JSON data"),
                    };
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an event in time")
                .expect("stream open")
                .expect("body chunk");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The data of the next frame of type `kind`, skipping others.
    pub async fn next_of_type(&mut self, kind: &str) -> Value {
        loop {
            let event = self.next().await;
            if event.data["type"] == kind {
                return event.data;
            }
        }
    }

    /// Events of `events` frames until `event_id` arrives; returns them with the last frame's id.
    pub async fn events_until(&mut self, event_id: &str) -> (Vec<Value>, Option<String>) {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            if event.data["type"] == "events" {
                seen.extend(
                    event.data["events"]
                        .as_array()
                        .expect("events")
                        .iter()
                        .cloned(),
                );
                if seen.iter().any(|e| e["event_id"] == event_id) {
                    return (seen, event.id);
                }
            }
        }
    }
}
