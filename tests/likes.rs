//! Likes on a hot stream: aggregated by fanout into at most one `likes` frame per stream per tick, with a total
//! that is exact (every like acknowledged with 202 counted once) even when fanout is killed in the middle and
//! another instance takes over; a viewer who joins later gets the total in its `hello`.

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use support::load::post_likes;
use support::{metric, wait_metric, Cluster, Process, Viewer};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const VIEWERS: usize = 100;
const TICK_MS: u64 = 200;
/// The longest a viewer waits, from its start, for the final total.
const RUN: Duration = Duration::from_secs(120);

/// What one viewer saw: each `likes` frame's arrival, delta and total.
type LikesFrames = Vec<(Instant, u64, u64)>;

/// Reads `likes` frames until one carries a total at least what `expected` says (once it says anything).
async fn watch_likes(url: String, mut expected: watch::Receiver<Option<u64>>) -> LikesFrames {
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let deadline = tokio::time::Instant::now() + RUN;
    let mut frames: LikesFrames = Vec::new();
    loop {
        let message = tokio::select! {
            message = tokio::time::timeout_at(deadline, socket.next()) => message,
            Ok(()) = expected.changed() => {
                // The final total may have come before the count of acknowledged likes was known.
                let reached = *expected.borrow();
                if frames.last().zip(reached).is_some_and(|(last, e)| last.2 >= e) {
                    return frames;
                }
                continue;
            }
        };
        let Ok(Some(Ok(message))) = message else {
            let tail: Vec<u64> = frames.iter().rev().take(8).map(|f| f.2).collect();
            panic!(
                "the final likes total ({:?}) did not arrive; {} likes frames, last totals {tail:?}",
                *expected.borrow() as Option<u64>,
                frames.len()
            );
        };
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).expect("JSON");
        if frame["type"] != "likes" {
            continue;
        }
        let total = frame["total"].as_u64().expect("total");
        frames.push((
            Instant::now(),
            frame["delta"].as_u64().expect("delta"),
            total,
        ));
        if expected.borrow().is_some_and(|e| total >= e) {
            return frames;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_are_aggregated_per_tick_and_the_total_is_exact_across_a_fanout_crash() {
    let rate: u32 = std::env::var("CHORUS_TEST_LIKES_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10_000);
    let cluster = Cluster::start(1, 0).await;
    let edge = cluster.edges[0].admin;
    let mut flags = cluster.kafka_flags();
    flags.extend([
        format!("--group={}", cluster.fanout_group()),
        "--kafka-session-timeout-ms=6000".to_owned(),
        format!("--likes-tick-ms={TICK_MS}"),
    ]);
    let first = Process::start("fanout", &flags).await;
    wait_metric(edge, "chorus_edge_push_sessions", |v| v == 1.0).await;

    let (expected_tx, expected) = watch::channel(None);
    let url = cluster.viewer_url(0, "final");
    let viewers: Vec<_> = (0..VIEWERS)
        .map(|_| tokio::spawn(watch_likes(url.clone(), expected.clone())))
        .collect();
    wait_metric(edge, "chorus_edge_joins_total", |v| v == VIEWERS as f64).await;

    let started = Instant::now();
    let ingest = cluster.ingest_url("");
    let load = tokio::spawn(async move {
        let acked = post_likes(ingest, "final", rate, Duration::from_secs(10), 256).await;
        (acked, started.elapsed())
    });
    // In the middle of the load: SIGKILL the fanout, start another. The new one takes the partitions over
    // when the dead member's session expires, from the last committed offsets.
    let half = f64::from(rate) * 3.0;
    wait_metric(first.admin, "chorus_fanout_likes_counted_total", |v| {
        v >= half
    })
    .await;
    let first_cpu = first.cpu();
    first.kill().await;
    let second = Process::start("fanout", &flags).await;
    let (acked, posting) = load.await.expect("load");
    expected_tx.send_replace(Some(acked));
    println!(
        "{acked} likes acknowledged in {posting:?} ({:.0}/s)",
        acked as f64 / posting.as_secs_f64()
    );
    assert!(acked > 0, "likes were accepted");

    let mut frame_counts = Vec::new();
    for viewer in viewers {
        let frames = viewer.await.expect("viewer");
        if frame_counts.is_empty() {
            let seen: Vec<String> = frames
                .iter()
                .map(|(at, delta, total)| {
                    format!("{}ms +{delta}={total}", (*at - started).as_millis())
                })
                .collect();
            println!("one viewer's likes frames: {seen:?}");
        }
        let (_, _, last_total) = *frames.last().expect("likes frames");
        assert_eq!(
            last_total, acked,
            "the total is every acknowledged like, once"
        );
        let totals: Vec<u64> = frames.iter().map(|f| f.2).collect();
        assert!(
            totals.windows(2).all(|w| w[0] <= w[1]),
            "the total never goes back: {totals:?}"
        );
        // At most one frame per tick: three frames never arrive within one tick (two may, when the reading
        // of one was delayed).
        let tick = Duration::from_millis(TICK_MS);
        assert!(
            frames.windows(3).all(|w| w[2].0 - w[0].0 >= tick),
            "more than one likes frame in a tick"
        );
        frame_counts.push(frames.len());
    }
    let fanout_cpu = first_cpu + second.cpu();
    println!(
        "{VIEWERS} viewers: {}..{} likes frames each for {acked} likes; fanout CPU {fanout_cpu:?} ({:.1} us per like)",
        frame_counts.iter().min().unwrap_or(&0),
        frame_counts.iter().max().unwrap_or(&0),
        fanout_cpu.as_secs_f64() * 1e6 / acked as f64
    );
    let counted = metric(second.admin, "chorus_fanout_likes_counted_total").await;
    println!("the second fanout counted {counted} likes itself");

    // A viewer who joins now learns the total from its hello.
    let late = Viewer::connect(&url).await;
    assert_eq!(late.hello["likes_total"].as_u64(), Some(acked));
    cluster.stop().await;
}
