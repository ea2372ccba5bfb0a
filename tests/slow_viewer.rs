//! One slow viewer, one that stops reading, and 100 healthy ones on one stream at 200 comments/s: the healthy
//! ones lose nothing and their latency does not suffer; the slow one is told (`gap`) and then disconnected;
//! the one that stopped reading is disconnected; the edge's memory stays bounded.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use support::load::post_at_rate;
use support::viewer::{latencies_without_loss, read_until, small_socket};
use support::{metric, percentile, Cluster, Process};
use tokio_tungstenite::tungstenite::Message;

const HEALTHY: usize = 100;

/// The longest any viewer here keeps reading: the load lasts 10 s. Server pings arrive more often than
/// the per-message wait, so a per-message timeout alone would never end a viewer whose last frame does not come.
const RUN: Duration = Duration::from_secs(60);

/// A viewer on a socket with a small receive buffer that reads one frame every 200 ms (a quarter of the frame
/// rate at 200 comments/s); returns its frame types.
async fn slow(url: String) -> Vec<String> {
    let mut socket = small_socket(&url).await;
    let mut types = Vec::new();
    let deadline = tokio::time::Instant::now() + RUN;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
        match message {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                types.push(frame["type"].as_str().unwrap_or_default().to_owned());
                if frame["type"] == "reconnect" {
                    assert_eq!(frame["reason"], "too_slow");
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    types
}

/// Runs the load against `edge` with the healthy viewers (and the bad ones when `with_bad_viewers`).
async fn run(cluster: &Cluster, edge: &Process, stream: &str, with_bad_viewers: bool) -> i64 {
    let url = format!("ws://{}/v1/streams/{stream}/ws", edge.addr);
    let (slow_viewer, stalled) = if with_bad_viewers {
        let slow_viewer = tokio::spawn(slow(url.clone()));
        // One that connects and then never reads again.
        let (stalled, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        (Some(slow_viewer), Some(stalled))
    } else {
        (None, None)
    };
    let viewers: Vec<_> = (0..HEALTHY)
        .map(|_| tokio::spawn(read_until(url.clone(), "the end", RUN)))
        .collect();
    support::wait_metric(edge.admin, "chorus_edge_joins_total", |v| {
        v >= (HEALTHY + 2 * usize::from(with_bad_viewers)) as f64
    })
    .await;
    let posted = post_at_rate(
        cluster.ingest_url(""),
        vec![stream.to_owned()],
        200,
        Duration::from_secs(10),
        64,
    )
    .await;
    assert_eq!(posted.len(), 2000, "every comment acknowledged");
    cluster.comment(stream, "test", "the end").await;
    let latencies = latencies_without_loss(viewers, &posted).await;
    if let Some(slow_viewer) = slow_viewer {
        let types = slow_viewer.await.expect("slow viewer");
        let tail = &types[types.len().saturating_sub(6)..];
        assert!(
            types.iter().any(|t| t == "gap"),
            "the slow viewer was told it fell behind: {} frames, ending {tail:?}",
            types.len()
        );
        assert_eq!(
            types.last().map(String::as_str),
            Some("reconnect"),
            "then disconnected: {types:?}"
        );
    }
    drop(stalled);
    percentile(&latencies, 0.99)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_viewer_never_hurts_the_healthy_ones() {
    let cluster = Cluster::start(0, 1).await;
    let mut flags = cluster.kafka_flags();
    flags.extend([
        "--socket-send-buffer-bytes=4096".to_owned(),
        "--stream-buffer-frames=32".to_owned(),
        "--write-timeout-ms=3000".to_owned(),
        "--slow-viewer-ms=2000".to_owned(),
        "--max-connections-per-address=1000".to_owned(),
    ]);
    let edge = Process::start("edge", &flags).await;
    support::wait_metric(edge.admin, "chorus_edge_push_sessions", |v| v >= 1.0).await;
    let idle_kib = edge.rss_kib();

    let baseline = run(&cluster, &edge, "calm", false).await;
    let with_bad = run(&cluster, &edge, "rough", true).await;
    let rss_kib = edge.rss_kib();
    let slow_disconnects = metric(edge.admin, "chorus_edge_slow_disconnects_total").await;
    println!(
        "p99 ingest-to-viewer latency of 100 healthy viewers: {baseline} ms alone, {with_bad} ms beside a slow and a \
         stalled viewer; edge RSS {idle_kib} KiB idle, {rss_kib} KiB after; slow disconnects {slow_disconnects}"
    );
    assert_eq!(
        slow_disconnects, 2.0,
        "the slow viewer and the stalled one were disconnected"
    );
    // Within 2x of the run without them (with 25 ms of slack for scheduling noise on a shared machine).
    assert!(
        with_bad <= 2 * baseline.max(25),
        "p99 {with_bad} ms vs {baseline} ms"
    );
    assert!(
        rss_kib < 256 * 1024,
        "edge memory stayed bounded: {rss_kib} KiB"
    );
    cluster.stop().await;
}
