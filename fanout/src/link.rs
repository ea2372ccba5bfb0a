//! One persistent connection from this fanout instance to one edge. Frames queued for the edge are written
//! in batches: everything queued (up to a bound) goes out as one binary message.

use std::sync::Arc;
use std::time::Duration;

use chorus_schemas::wire::PushBatch;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::config::FanoutConfig;
use crate::metrics::FanoutMetrics;
use crate::router::{LinkProgress, Queued, Router};

/// A write to an edge that takes longer than this means the edge is stuck: reconnect.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one link task owns: the edge, its address, its queue and where it reports progress.
#[derive(Debug)]
pub struct Link {
    pub edge: String,
    pub url: String,
    pub frames: mpsc::Receiver<Queued>,
    pub progress: Arc<LinkProgress>,
}

#[tracing::instrument(name = "fanout.link", skip_all, fields(edge = %link.edge))]
pub async fn run(
    router: Arc<Router>,
    link: Link,
    config: FanoutConfig,
    metrics: FanoutMetrics,
    shutdown: CancellationToken,
) {
    let Link {
        edge,
        url,
        mut frames,
        progress,
    } = link;
    let mut backoff = Duration::from_millis(50);
    while !shutdown.is_cancelled() && router.has_link(&edge, &url) {
        let attempt = tokio::time::timeout(
            config.connect_timeout(),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await;
        let mut socket = match attempt {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(error)) => {
                metrics.link_connects.with_label_values(&["error"]).inc();
                tracing::debug!(%error, "cannot connect to edge");
                if !pause(&shutdown, &mut backoff).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                metrics.link_connects.with_label_values(&["timeout"]).inc();
                if !pause(&shutdown, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        metrics.link_connects.with_label_values(&["ok"]).inc();
        metrics.links_connected.inc();
        backoff = Duration::from_millis(50);
        tracing::info!(%url, "connected to edge");
        let mut batch = router.opening_frames(&edge);
        let mut batch_seq = 0;
        let ended = loop {
            if !batch.is_empty() {
                let bytes = match (PushBatch {
                    frames: std::mem::take(&mut batch),
                })
                .encode()
                {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        tracing::error!(%error, "cannot encode a push batch");
                        continue;
                    }
                };
                let len = bytes.len() as u64;
                match tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::binary(bytes))).await
                {
                    Ok(Ok(())) => {
                        metrics.push_batches.inc();
                        metrics.push_bytes.inc_by(len);
                        // Written to the edge's socket: the events' offsets may now be committed.
                        progress.written(batch_seq);
                    }
                    Ok(Err(error)) => break Some(error.to_string()),
                    Err(_) => break Some("write timed out".to_owned()),
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break None,
                queued = frames.recv() => match queued {
                    Some(queued) => {
                        batch_seq = queued.seq;
                        batch.push(queued.frame);
                        while batch.len() < config.max_batch_frames {
                            match frames.try_recv() {
                                Ok(queued) => {
                                    batch_seq = queued.seq;
                                    batch.push(queued.frame);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    // The router dropped this link (edge gone or expired).
                    None => break None,
                },
                inbound = socket.next() => match inbound {
                    Some(Ok(Message::Close(_))) | None => break Some("closed by edge".to_owned()),
                    Some(Err(error)) => break Some(error.to_string()),
                    Some(Ok(_)) => {}
                },
            }
        };
        metrics.links_connected.dec();
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

/// Waits the backoff (doubling it, up to 2 s); false when shutting down.
async fn pause(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => return false,
        () = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
    true
}
