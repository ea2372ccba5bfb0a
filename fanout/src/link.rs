//! One persistent connection from this fanout instance to one edge. Frames queued for the edge are written
//! in batches: everything queued (up to a bound) goes out as one binary message. The task knows nothing of
//! the router: what it asks of whoever keeps the links is the [`LinkOwner`] trait.

use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::wire::{EdgeRequest, PushBatch, PushFrame};
use chorus_schemas::PartitionPosition;
use chorus_service::credential::Secret;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::config::FanoutConfig;
use crate::handoff::LinkProgress;
use crate::metrics::FanoutMetrics;

/// A write to an edge that takes longer than this means the edge is stuck: reconnect.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// First wait after a failed attempt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A frame on its way to one edge, with the routing sequence number it was queued at.
#[derive(Debug)]
pub struct Queued {
    pub seq: u64,
    pub frame: PushFrame,
}

/// What one link task owns: the edge, its address, its queue and where it reports progress.
#[derive(Debug)]
pub struct Link {
    pub edge: String,
    pub url: String,
    pub frames: mpsc::Receiver<Queued>,
    pub progress: Arc<LinkProgress>,
}

/// What a link asks of whoever keeps the links (the router).
pub trait LinkOwner: std::fmt::Debug + Send + Sync {
    /// What a (re)connected link sends first.
    fn opening_frames(&self, edge: &str) -> Vec<PushFrame>;
    /// Whether `edge` still has a link to `url`: the task stops when it has not.
    fn wants(&self, edge: &str, url: &str) -> bool;
    /// The answer to an edge's [`EdgeRequest::Replay`]: a [`PushFrame::Replayed`].
    fn replay(&self, request: u64, stream_id: &str, since: &[PartitionPosition]) -> PushFrame;
}

/// Starts link tasks; everything a link needs besides its own [`Link`].
#[derive(Debug, Clone)]
pub struct Connector {
    owner: Arc<dyn LinkOwner>,
    config: FanoutConfig,
    /// `Bearer <internal token>`, sent on every upgrade (marked sensitive: never logged).
    authorization: HeaderValue,
    metrics: FanoutMetrics,
    shutdown: CancellationToken,
}

impl Connector {
    pub fn new(
        owner: Arc<dyn LinkOwner>,
        config: FanoutConfig,
        token: &Secret,
        metrics: FanoutMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        // A secret is printable ASCII, so the header value is valid; the fallback is never taken.
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        authorization.set_sensitive(true);
        Connector {
            owner,
            config,
            authorization,
            metrics,
            shutdown,
        }
    }

    /// Runs `link` in its own task until the owner drops it or fanout shuts down.
    pub fn spawn(&self, link: Link) {
        tokio::spawn(run(self.clone(), link));
    }
}

#[tracing::instrument(name = "fanout.link", skip_all, fields(edge = %link.edge))]
async fn run(connector: Connector, link: Link) {
    let Connector {
        owner,
        config,
        authorization,
        metrics,
        shutdown,
    } = connector;
    let Link {
        edge,
        url,
        mut frames,
        progress,
    } = link;
    let mut backoff = FIRST_BACKOFF;
    while !shutdown.is_cancelled() && owner.wants(&edge, &url) {
        let Some(mut socket) = dial(&url, &authorization, &config, &metrics).await else {
            if !pause(&shutdown, &mut backoff).await {
                return;
            }
            continue;
        };
        metrics.edges.link_connects.with_label_values(&["ok"]).inc();
        metrics.edges.links_connected.inc();
        backoff = FIRST_BACKOFF;
        tracing::info!(%url, "connected to edge");
        let opening = owner.opening_frames(&edge);
        let session = Session {
            owner: owner.as_ref(),
            socket: &mut socket,
            frames: &mut frames,
            progress: &progress,
            config: &config,
            metrics: &metrics,
        };
        let ended = session.serve(opening, &shutdown).await;
        metrics.edges.links_connected.dec();
        match ended {
            None => {
                let _ = socket.close(None).await;
                return;
            }
            Some(reason) => {
                tracing::info!(%reason, "edge link lost; reconnecting");
                if !pause(&shutdown, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

/// One connection attempt, presenting the internal token; counted by outcome unless it succeeds (the caller
/// counts that).
async fn dial(
    url: &str,
    authorization: &HeaderValue,
    config: &FanoutConfig,
    metrics: &FanoutMetrics,
) -> Option<Socket> {
    let failed = |outcome: &str| {
        metrics
            .edges
            .link_connects
            .with_label_values(&[outcome])
            .inc();
        None
    };
    let mut request = match url.into_client_request() {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, %url, "an edge advertises a push URL that cannot be dialled");
            return failed("error");
        }
    };
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, authorization.clone());
    let attempt = tokio::time::timeout(
        config.connect_timeout(),
        tokio_tungstenite::connect_async(request),
    )
    .await;
    match attempt {
        Ok(Ok((socket, _))) => Some(socket),
        Ok(Err(WsError::Http(response))) if response.status() == StatusCode::UNAUTHORIZED => {
            tracing::warn!(%url, "the edge refused fanout's internal token: --internal-token differs");
            failed("unauthorized")
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "cannot connect to edge");
            failed("error")
        }
        Err(_) => failed("timeout"),
    }
}

/// One connection to the edge, from its opening frames until it is lost or the link is dropped.
struct Session<'s> {
    owner: &'s dyn LinkOwner,
    socket: &'s mut Socket,
    frames: &'s mut mpsc::Receiver<Queued>,
    progress: &'s LinkProgress,
    config: &'s FanoutConfig,
    metrics: &'s FanoutMetrics,
}

impl Session<'_> {
    /// Writes batches until the connection is lost (`Some(reason)`) or the link ends (`None`: the owner
    /// dropped it, or fanout shuts down).
    async fn serve(
        mut self,
        opening: Vec<PushFrame>,
        shutdown: &CancellationToken,
    ) -> Option<String> {
        let mut batch = opening;
        let mut batch_seq = 0;
        loop {
            if !batch.is_empty() {
                if let Err(reason) = self.write(std::mem::take(&mut batch), batch_seq).await {
                    return Some(reason);
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                queued = self.frames.recv() => match queued {
                    Some(first) => batch_seq = self.collect(first, &mut batch),
                    // The router dropped this link (edge gone or expired).
                    None => return None,
                },
                inbound = self.socket.next() => match inbound {
                    Some(Ok(Message::Close(_))) | None => return Some("closed by edge".to_owned()),
                    Some(Err(error)) => return Some(error.to_string()),
                    Some(Ok(Message::Binary(bytes))) => match self.answer(&bytes) {
                        Some(answer) => batch.push(answer),
                        None => return Some("the edge sent an unreadable request".to_owned()),
                    },
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// The answer to a request from the edge, to go out with the next batch; `None` for a request that cannot
    /// be read (the edge does not speak this link's protocol: the connection is dropped).
    fn answer(&self, bytes: &[u8]) -> Option<PushFrame> {
        match EdgeRequest::decode(bytes) {
            Ok(EdgeRequest::Replay {
                request,
                stream_id,
                since,
            }) => Some(self.owner.replay(request, &stream_id, &since)),
            Err(error) => {
                tracing::warn!(%error, "the edge sent a request that cannot be read");
                None
            }
        }
    }

    /// Adds `first` and whatever else is queued (up to the batch bound) to `batch`; returns the last seq.
    fn collect(&mut self, first: Queued, batch: &mut Vec<PushFrame>) -> u64 {
        let mut seq = first.seq;
        batch.push(first.frame);
        while batch.len() < self.config.max_batch_frames {
            match self.frames.try_recv() {
                Ok(queued) => {
                    seq = queued.seq;
                    batch.push(queued.frame);
                }
                Err(_) => break,
            }
        }
        seq
    }

    /// Writes one batch; once it is on the edge's socket, everything up to `seq` is handed off. A batch that
    /// cannot be encoded is dropped (logged), and the link goes on.
    async fn write(&mut self, frames: Vec<PushFrame>, seq: u64) -> Result<(), String> {
        let bytes = match (PushBatch { frames }).encode() {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, "cannot encode a push batch");
                return Ok(());
            }
        };
        let len = bytes.len() as u64;
        match tokio::time::timeout(WRITE_TIMEOUT, self.socket.send(Message::binary(bytes))).await {
            Ok(Ok(())) => {
                self.metrics.edges.push_batches.inc();
                self.metrics.edges.push_bytes.inc_by(len);
                // Written to the edge's socket: the events' offsets may now be committed.
                self.progress.written(seq);
                Ok(())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("write timed out".to_owned()),
        }
    }
}

/// Waits the backoff (doubling it, up to [`MAX_BACKOFF`]); false when shutting down.
async fn pause(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => return false,
        () = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    true
}
