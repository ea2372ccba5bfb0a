//! Viewers over WebSocket: `GET /v1/streams/{stream_id}/ws[?cursor=]`. The server sends `hello` (with the join
//! position and the cursor; resumed or not when the viewer came back with one), what a resumed viewer
//! missed, then `events` and `likes` frames as they come, `gap` when the viewer fell behind, and `reconnect` when the
//! connection's lifetime ends or the edge drains. It pings every heartbeat and closes a viewer silent for two;
//! one that keeps falling behind is let go. What a viewer sends is bounded by [`crate::inbound`]: a viewer
//! in breach of it is closed with its close code. The same stream is served over Server-Sent Events
//! ([`crate::sse`]) and long-poll ([`crate::poll`]); what they share is the [`Session`].

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

use crate::admission::Viewer;
use crate::attendance::Transport;
use crate::config::EdgeConfig;
use crate::frames::{merge_likes, StreamFrame};
use crate::inbound::{Heard, Inbound, Violation};
use crate::metrics::EdgeMetrics;
use crate::occurrences::Occurrence;
use crate::session::{Arrival, Next, Session};
use crate::state::ViewerState;

/// Frames written between two flushes, at most.
const MAX_FRAMES_PER_FLUSH: usize = 16;

pub async fn upgrade(
    State(state): State<ViewerState>,
    ws: WebSocketUpgrade,
    viewer: Viewer,
) -> Response {
    let max = state.config.max_inbound_bytes;
    // Viewers send only small control frames: a small read buffer keeps an idle connection cheap, and with
    // no write buffer each frame goes straight to the socket. What may wait in it is bounded: by default it
    // takes without limit the pongs to a viewer that does not read (the WebSocket layer answers every ping it
    // reads, and reads on while the write blocks). The bound must be above 0, or the layer panics.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(max.clamp(512, 8192))
        .write_buffer_size(0)
        .max_write_buffer_size(state.config.max_write_buffer_bytes.max(1024))
        .on_upgrade(move |socket| watch(state, viewer, socket))
}

/// How a connection ended, when the server ended it.
#[derive(Debug)]
enum Ending {
    Reconnect(&'static str),
    Silent,
    /// The viewer sent a Close (answered by the WebSocket layer).
    Closing,
    /// The viewer broke the protocol or its allowance.
    Violation(Violation),
    Gone,
}

#[tracing::instrument(name = "edge.viewer", skip_all, fields(stream_id = %viewer.stream_id))]
async fn watch(state: ViewerState, viewer: Viewer, socket: WebSocket) {
    let cursor = viewer.cursor.clone();
    let arrival = Arrival::new(&state, viewer, Transport::WebSocket);
    let opened = arrival.open(cursor.as_deref()).await;
    let mut session = opened.session;
    let mut wire = Wire {
        socket,
        metrics: state.metrics.clone(),
        timeout: Duration::from_millis(state.config.write_timeout_ms.max(1)),
    };
    for text in opened.opening {
        if wire.send(text).await.is_err() {
            return;
        }
    }
    session.greeted();
    for frame in opened.missed {
        let taken = session.take(&frame);
        if wire.write_all(taken.texts).await.is_err() {
            return;
        }
        session.delivered(taken.events);
    }
    let ending = serve(&mut session, &mut wire).await;
    wire.finish(ending, &session).await;
}

/// Until the connection ends: frames out as they come, pings out and signs of life in.
async fn serve(session: &mut Session, wire: &mut Wire) -> Ending {
    let config = session.state().config.clone();
    let shutdown = session.state().shutdown.clone();
    let lifetime = tokio::time::sleep(config.connection_ttl());
    tokio::pin!(lifetime);
    // On drain, each viewer leaves at a random moment of the window: no reconnect storm.
    let drain = async {
        shutdown.cancelled().await;
        tokio::time::sleep(config.drain_delay()).await;
    };
    tokio::pin!(drain);
    let heartbeat = Duration::from_millis(config.heartbeat_ms.max(10));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut inbound = Inbound::new(config.max_inbound_frames_per_s, config.inbound_frames_burst);
    let mut pace = Pace::new(&config);
    loop {
        let step = tokio::select! {
            () = &mut lifetime => Err(Ending::Reconnect("ttl")),
            () = &mut drain => Err(Ending::Reconnect("drain")),
            _ = ping.tick() => {
                if inbound.last_heard.elapsed() > heartbeat * 2 {
                    Occurrence::LivenessTimeout.emit(&wire.metrics);
                    Err(Ending::Silent)
                } else {
                    wire.ping().await
                }
            }
            next = session.next() => match next {
                Next::Frame(frame) => pace.write(session, wire, frame).await,
                Next::Gap(gap) => pace.gap(wire, gap).await,
                Next::Closed => Err(Ending::Gone),
            },
            heard = wire.socket.next() => match inbound.hear(heard) {
                Heard::Alive => Ok(()),
                // The pong goes out before anything more is read: a viewer that does not read cannot make the
                // edge queue pongs (the WebSocket layer would, reading on), and one that stopped is let go.
                Heard::Ping => wire.flush().await,
                Heard::Closing => Err(Ending::Closing),
                Heard::Violation(violation) => Err(Ending::Violation(violation)),
                Heard::Gone => Err(Ending::Gone),
            },
        };
        if let Err(ending) = step {
            return ending;
        }
    }
}

/// How this viewer keeps up: since when it is behind (told of a gap, and not caught up since), and whether
/// its first event has reached it.
#[derive(Debug)]
struct Pace {
    behind_since: Option<Instant>,
    /// A bounded lag, then it is let go.
    slow_bound: Duration,
    /// Caught up: at most this many frames (half the buffer) still waiting after a write.
    caught_up: usize,
    joined_at: Instant,
    first_event_seen: bool,
}

impl Pace {
    fn new(config: &EdgeConfig) -> Self {
        Pace {
            behind_since: None,
            slow_bound: Duration::from_millis(config.slow_viewer_ms),
            caught_up: config.stream_buffer_frames / 2,
            joined_at: Instant::now(),
            first_event_seen: false,
        }
    }

    /// Writes `first` and everything already queued behind it together (their likes as one frame), then
    /// one flush.
    async fn write(
        &mut self,
        session: &mut Session,
        wire: &mut Wire,
        first: std::sync::Arc<StreamFrame>,
    ) -> Result<(), Ending> {
        Occurrence::Backlog {
            frames: session.backlog() + 1,
        }
        .emit(&wire.metrics);
        let mut queued = vec![first];
        while queued.len() < MAX_FRAMES_PER_FLUSH {
            match session.try_next() {
                Some(frame) => queued.push(frame),
                None => break,
            }
        }
        let mut events = 0;
        let mut texts = Vec::new();
        for frame in merge_likes(session.stream_id(), queued) {
            let taken = session.take(&frame);
            events += taken.events;
            texts.extend(taken.texts);
        }
        wire.write_all(texts).await?;
        session.delivered(events);
        if events > 0 && !self.first_event_seen {
            self.first_event_seen = true;
            Occurrence::FirstEvent {
                after: self.joined_at.elapsed(),
            }
            .emit(&wire.metrics);
        }
        if session.backlog() <= self.caught_up {
            self.behind_since = None;
        }
        self.keeping_up(&wire.metrics)
    }

    /// Tells the viewer it fell behind; from then on it has the slow bound to catch up.
    async fn gap(&mut self, wire: &mut Wire, gap: Utf8Bytes) -> Result<(), Ending> {
        self.behind_since.get_or_insert_with(Instant::now);
        wire.write(gap, true).await?;
        self.keeping_up(&wire.metrics)
    }

    fn keeping_up(&self, metrics: &EdgeMetrics) -> Result<(), Ending> {
        if self
            .behind_since
            .is_some_and(|since| since.elapsed() >= self.slow_bound)
        {
            Occurrence::SlowDisconnect { why: "too_slow" }.emit(metrics);
            return Err(Ending::Reconnect("too_slow"));
        }
        Ok(())
    }
}

/// A viewer's socket. Each write must complete within `timeout`: a viewer that reads, however slowly, keeps
/// up with that (and falls behind, to be told with `gap`); one that stopped reading does not, and nothing
/// more can reach it, not even a reconnect frame.
struct Wire {
    socket: WebSocket,
    metrics: EdgeMetrics,
    timeout: Duration,
}

/// `write`, bounded by `timeout`; a stalled one is a slow disconnect.
async fn within(
    timeout: Duration,
    metrics: &EdgeMetrics,
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Result<(), Ending> {
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ending::Gone),
        Err(_) => {
            Occurrence::SlowDisconnect { why: "stalled" }.emit(metrics);
            Err(Ending::Gone)
        }
    }
}

impl Wire {
    /// Sends one frame, without a bound of its own.
    async fn send(&mut self, text: Utf8Bytes) -> Result<(), axum::Error> {
        let bytes = text.len();
        self.socket.send(Message::Text(text)).await?;
        Occurrence::FrameSent { bytes }.emit(&self.metrics);
        Ok(())
    }

    /// Writes one frame within the timeout: sent at once (`flush`), or left for the next flush.
    async fn write(&mut self, text: Utf8Bytes, flush: bool) -> Result<(), Ending> {
        let bytes = text.len();
        let message = Message::Text(text);
        if flush {
            within(self.timeout, &self.metrics, self.socket.send(message)).await?;
        } else {
            within(self.timeout, &self.metrics, self.socket.feed(message)).await?;
        }
        Occurrence::FrameSent { bytes }.emit(&self.metrics);
        Ok(())
    }

    /// Writes every text, then flushes once.
    async fn write_all(&mut self, texts: Vec<Utf8Bytes>) -> Result<(), Ending> {
        for text in texts {
            self.write(text, false).await?;
        }
        self.flush().await
    }

    /// Flushes what was written, and what the WebSocket layer queued itself (a pong).
    async fn flush(&mut self) -> Result<(), Ending> {
        within(self.timeout, &self.metrics, self.socket.flush()).await
    }

    /// Not even a ping that fits means the viewer stopped reading.
    async fn ping(&mut self) -> Result<(), Ending> {
        let ping = self.socket.send(Message::Ping(Default::default()));
        within(self.timeout, &self.metrics, ping).await
    }

    async fn finish(&mut self, ending: Ending, session: &Session) {
        let timeout = self.timeout;
        match ending {
            Ending::Reconnect(reason) => {
                let reconnect = session.reconnect(reason);
                let goodbye = async {
                    self.send(reconnect).await?;
                    self.socket.send(Message::Close(None)).await
                };
                let _ = tokio::time::timeout(timeout, goodbye).await;
            }
            Ending::Silent => {
                let _ = tokio::time::timeout(timeout, self.socket.send(Message::Close(None))).await;
            }
            Ending::Closing => {
                let _ = tokio::time::timeout(timeout, self.socket.flush()).await;
            }
            // The Close with its code goes out (bounded as any write), then the TCP close. A viewer that did
            // not read what came before gets to it too: the allowance is small enough for all of it to fit
            // in even a small receive buffer.
            Ending::Violation(violation) => {
                Occurrence::Violation {
                    reason: violation.label(),
                    code: violation.code(),
                }
                .emit(&self.metrics);
                let close = Message::Close(Some(violation.close_frame()));
                let _ = tokio::time::timeout(timeout, self.socket.send(close)).await;
            }
            Ending::Gone => {}
        }
    }
}
