//! The JSON frames of the viewer protocol, as the README documents them.

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;

use crate::cursor::JoinPosition;

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    Hello {
        stream_id: &'a str,
        edge_id: &'a str,
        join: &'a [JoinPosition],
        heartbeat_ms: u64,
        /// The stream's like count so far.
        likes_total: u64,
        /// What the viewer has been sent: to come back with.
        cursor: &'a str,
        /// Whether the viewer came back with a cursor and gets everything after it.
        resumed: bool,
        /// Viewers of the stream on every edge of every region, as last counted.
        viewers: u64,
    },
    Events {
        stream_id: &'a str,
        events: Vec<ViewerEvent<'a>>,
        /// What the viewer has been sent once it has this frame.
        cursor: &'a str,
    },
    Likes {
        stream_id: &'a str,
        delta: u64,
        total: u64,
    },
    /// Comments taken down by the stream's owner or moderators: remove them.
    Retract {
        stream_id: &'a str,
        event_ids: &'a [&'a str],
    },
    /// How many watch the stream, on every edge of every region.
    Viewers { stream_id: &'a str, count: u64 },
    Gap {
        stream_id: &'a str,
        missed_frames: u64,
        reason: &'a str,
    },
    /// Comments left out by the stream's comment budget (a `gap` with reason `sampled`).
    #[serde(rename = "gap")]
    Sampled {
        stream_id: &'a str,
        reason: &'a str,
        missed_events: u64,
    },
    /// The connection ends: come back after `delay_ms` (random, so clients do not all come back at once).
    Reconnect {
        stream_id: &'a str,
        reason: &'a str,
        delay_ms: u64,
        cursor: &'a str,
    },
}

/// One comment as a viewer sees it.
#[derive(Debug, Serialize)]
pub struct ViewerEvent<'a> {
    pub event_id: &'a str,
    pub user_id: &'a str,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    pub created_ms: i64,
    pub origin: &'a str,
    pub topic: &'a str,
    pub offset: i64,
}

impl ServerFrame<'_> {
    /// The frame as WebSocket text, validated once and then shared by every socket that sends it.
    pub fn to_text(&self) -> Utf8Bytes {
        // Serialising these plain structs cannot fail.
        Utf8Bytes::from(serde_json::to_string(self).unwrap_or_default())
    }
}
